"""Human-readable dates -> ISO dates: a generated translation task whose alignment you can see.

    data = kerastk.data.load("dates", seed=0)
    data.x_train = [source (N, S), decoder_in (N, T)]     # int32 character ids, right-padded with 0
    data.y_train = target (N, T)                          # "2019-03-03" + </s>
    data.info["source_vocab"], data.info["target_vocab"]  # token lists (index = id)

Each sample writes one calendar date in one of FORMATS ("3 march 2019", "Mar 3, 2019", "03/03/19",
"Tuesday 3 March 2019", "the 3rd of march 2019" ...) and asks for "2019-03-03". Numeric formats are day first;
two-digit years mean 1950-2049 (yy >= 50 is 19yy). The weekday, where a format has one, is the true one.

The dates are split before the samples are made: every date of the range belongs to exactly one of train,
validation and test, so the test score is on dates the model never saw in any format.

Token ids: 0 = padding, 1 = <s> (start), 2 = </s> (end), as in every kerastk vocabulary. The decoder input is
the target shifted right by one step behind the start token (teacher forcing); ``target_length`` = 11 (ten
characters and </s>).
"""
from __future__ import annotations

import datetime
import string

import numpy as np

PAD, START, END = 0, 1, 2
SPECIALS = ["", "<s>", "</s>"]
SOURCE_CHARS = " ,./-" + string.digits + string.ascii_lowercase + string.ascii_uppercase
SOURCE_VOCAB = SPECIALS + list(SOURCE_CHARS)
TARGET_VOCAB = SPECIALS + list("-" + string.digits)
TARGET_LENGTH = 11  # "yyyy-mm-dd" + </s>
FIRST_DATE, LAST_DATE = datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _month(d):
    return MONTHS[d.month - 1]


def _weekday(d):
    return WEEKDAYS[d.weekday()]


#: name -> function(date) -> text. Numeric formats are day first; "yy" is the year mod 100.
FORMATS = {
    "d month yyyy": lambda d: f"{d.day} {_month(d).lower()} {d.year}",
    "dd Month yyyy": lambda d: f"{d.day:02d} {_month(d)} {d.year}",
    "Mon d, yyyy": lambda d: f"{_month(d)[:3]} {d.day}, {d.year}",
    "Month d, yyyy": lambda d: f"{_month(d)} {d.day}, {d.year}",
    "d Mon yyyy": lambda d: f"{d.day} {_month(d)[:3]} {d.year}",
    "dd/mm/yy": lambda d: f"{d.day:02d}/{d.month:02d}/{d.year % 100:02d}",
    "dd/mm/yyyy": lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}",
    "d.m.yyyy": lambda d: f"{d.day}.{d.month}.{d.year}",
    "Weekday d Month yyyy": lambda d: f"{_weekday(d)} {d.day} {_month(d)} {d.year}",
    "Wkd, d Mon yyyy": lambda d: f"{_weekday(d)[:3]}, {d.day} {_month(d)[:3]} {d.year}",
    "Month dth, yyyy": lambda d: f"{_month(d)} {_ordinal(d.day)}, {d.year}",
    "the dth of month yyyy": lambda d: f"the {_ordinal(d.day)} of {_month(d).lower()} {d.year}",
    "MONTH d yyyy": lambda d: f"{_month(d).upper()} {d.day} {d.year}",
    "mon d yy": lambda d: f"{_month(d)[:3].lower()} {d.day} {d.year % 100:02d}",
}


def _all_dates(first=FIRST_DATE, last=LAST_DATE) -> list:
    return [first + datetime.timedelta(days=i) for i in range((last - first).days + 1)]


def source_length() -> int:
    """The longest text any format gives for any date (every weekday/month/day-width combination of a year)."""
    return max(len(fmt(d)) for fmt in FORMATS.values() for d in _all_dates(datetime.date(2000, 1, 1),
                                                                           datetime.date(2000, 12, 31)))


def format_date(date: datetime.date, fmt: str) -> str:
    """`date` written in the format named `fmt` (a key of FORMATS)."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown date format {fmt!r}; expected one of {list(FORMATS)}.")
    return FORMATS[fmt](date)


def encode(texts, vocab, length: int, end: bool = False) -> np.ndarray:
    """Character ids of each text, with </s> appended when `end`, right-padded with 0 to `length`."""
    index = {c: i for i, c in enumerate(vocab)}
    out = np.full((len(texts), length), PAD, dtype=np.int32)
    for row, text in enumerate(texts):
        ids = [index[c] for c in text] + ([END] if end else [])
        if len(ids) > length:
            raise ValueError(f"{text!r} needs {len(ids)} tokens; the length is {length}.")
        out[row, :len(ids)] = ids
    return out


def decoder_inputs(target: np.ndarray) -> np.ndarray:
    """Teacher forcing: <s> followed by the target without its last token."""
    return np.concatenate([np.full((len(target), 1), START, dtype=target.dtype), target[:, :-1]], axis=1)


def _samples(dates, n, rng, formats):
    """`n` (source text, ISO text) pairs over `dates` (each date used once before any is repeated)."""
    order = np.concatenate([rng.permutation(len(dates)) for _ in range(-(-n // len(dates)))])[:n]
    chosen = rng.integers(0, len(formats), size=n)
    sources = [FORMATS[formats[f]](dates[i]) for i, f in zip(order, chosen)]
    targets = [dates[i].isoformat() for i in order]
    return sources, targets


def load_dates(seed=0, n_samples: int = 20_000, val_fraction: float = 0.15, test_fraction: float = 0.15,
               formats=None):
    """Generated (human-readable date, ISO date) pairs; splits on disjoint sets of dates.

    Args:
        seed: seeds the split of the dates and the samples; the same seed gives the same arrays.
        n_samples: total pairs over the three splits (divided by the fractions).
        val_fraction, test_fraction: shares of both the dates (1950-2049) and the samples.
        formats: names from FORMATS to use (default all).

    Returns:
        kerastk.data.Dataset, task "sequence": x = [source (N, S), decoder_in (N, T)] int32, y = target (N, T).
    """
    from kerastk.data import Dataset

    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 3:
        raise ValueError(f"`n_samples` must be an integer >= 3; received n_samples={n_samples!r}.")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 0.5:
            raise ValueError(f"`{name}` must be a number in (0, 0.5); received {name}={value!r}.")
    formats = list(FORMATS) if formats is None else list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown:
        raise ValueError(f"`formats` must name formats from {list(FORMATS)}; received {unknown or formats!r}.")

    rng = np.random.default_rng(seed)
    dates = _all_dates()
    dates = [dates[i] for i in rng.permutation(len(dates))]
    n_val_dates, n_test_dates = int(len(dates) * val_fraction), int(len(dates) * test_fraction)
    pools = {"test": dates[:n_test_dates], "val": dates[n_test_dates:n_test_dates + n_val_dates],
             "train": dates[n_test_dates + n_val_dates:]}
    n_val, n_test = max(1, int(n_samples * val_fraction)), max(1, int(n_samples * test_fraction))
    sizes = {"train": n_samples - n_val - n_test, "val": n_val, "test": n_test}

    s_len = source_length()
    arrays, texts = {}, {}
    for split in ("train", "val", "test"):
        sources, targets = _samples(pools[split], sizes[split], rng, formats)
        target = encode(targets, TARGET_VOCAB, TARGET_LENGTH, end=True)
        arrays[split] = ([encode(sources, SOURCE_VOCAB, s_len), decoder_inputs(target)], target)
        texts[split] = (sources, targets)

    info = {
        "task": "sequence",
        "source": f"kerastk.data.dates (generated, seed {seed}): {len(formats)} formats, dates "
                  f"{FIRST_DATE.isoformat()}..{LAST_DATE.isoformat()} split into disjoint train/val/test sets",
        "input_shape": [s_len],
        "preprocessing": {"type": "tokens", "unit": "char", "pad_id": PAD, "start_id": START, "end_id": END},
        "source_vocab": SOURCE_VOCAB,
        "target_vocab": TARGET_VOCAB,
        "source_length": s_len,
        "target_length": TARGET_LENGTH,
        "formats": formats,
        "test_source_text": texts["test"][0],
        "test_target_text": texts["test"][1],
        "dates_per_split": {k: len(v) for k, v in pools.items()},
    }
    return Dataset("dates", arrays["train"][0], arrays["train"][1], arrays["val"][0], arrays["val"][1],
                   arrays["test"][0], arrays["test"][1], info)
