"""Token-sequence datasets: a character corpus for language models, a memory task, and IMDB reviews.

    kerastk.data.load("text", sequence_length=64)      # next-character prediction on real English text
    kerastk.data.load("memory", length=100)            # the label is a marker anywhere in 100 tokens
    kerastk.data.load("imdb")                           # keras.datasets.imdb online, a generated stand-in offline

Every vocabulary reserves id 0 for padding (""). Inputs are int32 token ids; the Dataset's x arrays are never
cast to float.
"""
from __future__ import annotations

import ast
import os
import platform
import sysconfig
from pathlib import Path

import numpy as np

from kerastk.data import Dataset, notice, split_dataset

#: Pure-Python standard-library modules whose docstrings make the default corpus: fixed and sorted, so the
#: corpus is the same on every machine with the same Python version (the source records which).
CORPUS_MODULES = (
    "argparse", "ast", "base64", "calendar", "collections", "configparser", "contextlib", "csv", "dataclasses",
    "difflib", "enum", "fractions", "functools", "getopt", "gettext", "gzip", "heapq", "hmac", "http.client",
    "inspect", "ipaddress", "json.decoder", "json.encoder", "logging", "mailbox", "optparse", "os", "pathlib",
    "pickle", "pprint", "queue", "random", "sched", "secrets", "selectors", "shlex", "shutil", "smtplib",
    "socket", "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "timeit",
    "tokenize", "traceback", "typing", "unittest.case", "urllib.parse", "uuid", "warnings", "weakref", "zipfile",
)

TOKENS_PREPROCESSING = {"type": "tokens", "pad_id": 0}


def _docstrings(source: str) -> list[str]:
    """Docstrings of a module, its classes and functions (nested too), in source order."""
    tree = ast.parse(source)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                out.append((getattr(node, "lineno", 0), doc))
    return [doc for _, doc in sorted(out, key=lambda item: item[0])]


def _prose(doc: str) -> list[str]:
    """The paragraphs of a docstring that read as English: no interactive examples, printable ASCII only."""
    keep = []
    for para in doc.replace("\t", "    ").split("\n\n"):
        para = para.strip("\n")
        if not para.strip() or ">>>" in para or any(not (32 <= ord(c) < 127 or c == "\n") for c in para):
            continue
        keep.append(para)
    return keep


def stdlib_corpus(modules=CORPUS_MODULES) -> tuple[str, int]:
    """The default corpus: prose paragraphs of the docstrings of `modules`, read (not imported) from their
    source files with ``ast``. Returns (text, number of modules found)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts, found = [], 0
    for name in modules:
        base = stdlib.joinpath(*name.split("."))
        files = [f for f in (base.with_suffix(".py"), base / "__init__.py") if f.is_file()]
        if not files:
            continue
        found += 1
        for doc in _docstrings(files[0].read_text(encoding="utf-8")):
            parts.extend(_prose(doc))
    return "\n\n".join(parts) + "\n", found


def _check_positive(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; received {name}={value!r}.")
    return int(value)


def _check_fractions(val_fraction, test_fraction):
    for name, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v < 0.5:
            raise ValueError(f"`{name}` must be a float in (0, 0.5); received {name}={v!r}.")


def load_text(seed, text=None, sequence_length: int = 64, max_chars: int | None = None, block_windows: int = 8,
              val_fraction: float = 0.1, test_fraction: float = 0.1) -> Dataset:
    """Character windows for next-character prediction (task "sequence").

    x is (N, sequence_length) int32 character ids, y the same windows shifted by one character (the target at
    step t is the character after step t). Windows do not overlap; runs of `block_windows` consecutive windows
    are dealt to train / validation / test by `seed`, so held-out text was never trained on.

    Args:
        seed: seeds the split.
        text: path to a UTF-8 text file (the recipes' --text FILE); None = the docstrings of a fixed list of
            Python standard-library modules (:func:`stdlib_corpus`), present on every machine.
        sequence_length: characters per window.
        max_chars: use only the first `max_chars` characters (a shorter, faster run).
        block_windows: consecutive windows kept together in one split.
        val_fraction, test_fraction: share of the blocks held out for validation and test.

    Returns:
        Dataset; info["vocab"] lists the characters (index = id, id 0 = padding "").
    """
    sequence_length = _check_positive("sequence_length", sequence_length, 2)
    block_windows = _check_positive("block_windows", block_windows)
    _check_fractions(val_fraction, test_fraction)
    if text is None:
        corpus, found = stdlib_corpus()
        source = (f"docstrings of {found} Python {platform.python_version()} standard-library modules "
                  f"(kerastk.data.text.CORPUS_MODULES)")
    else:
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"No text file at {str(path)!r} (load_text(text=...) needs a UTF-8 text file).")
        corpus = path.read_text(encoding="utf-8", errors="replace")
        source = f"text file {path.name}"
    if max_chars is not None:
        corpus = corpus[:_check_positive("max_chars", max_chars, sequence_length + 1)]
    n_windows = (len(corpus) - 1) // sequence_length
    n_blocks = -(-n_windows // block_windows)
    if n_blocks < 3:
        needed = (2 * block_windows + 1) * sequence_length + 1
        raise ValueError(f"The text has {len(corpus):,} characters: too short for train/validation/test windows of "
                         f"{sequence_length} characters (needs at least {needed:,}).")

    vocab = [""] + sorted(set(corpus))
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.fromiter((index[c] for c in corpus), dtype=np.int32, count=len(corpus))
    starts = np.arange(n_windows) * sequence_length
    x = ids[starts[:, None] + np.arange(sequence_length)]
    y = ids[starts[:, None] + np.arange(1, sequence_length + 1)]

    order = np.random.default_rng(seed).permutation(n_blocks)
    n_test = max(1, round(test_fraction * n_blocks))
    n_val = max(1, round(val_fraction * n_blocks))
    block_of = np.arange(n_windows) // block_windows
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    rows = {k: np.flatnonzero(np.isin(block_of, np.sort(v))) for k, v in parts.items()}
    info = {
        "task": "sequence",
        "source": f"{source}, {len(corpus):,} characters",
        "input_shape": [sequence_length],
        "preprocessing": {**TOKENS_PREPROCESSING, "unit": "char"},
        "vocab": vocab,
        "sequence_length": sequence_length,
        "corpus_chars": len(corpus),
    }
    return Dataset("text", x[rows["train"]], y[rows["train"]], x[rows["val"]], y[rows["val"]], x[rows["test"]],
                   y[rows["test"]], info)


def memory_task(n_samples: int = 2000, length: int = 40, min_gap: int = 0, num_classes: int = 2,
                num_distractors: int = 8, seed: int = 0):
    """Sequences of random distractor tokens with one marker token; the label is which marker it was.

    The marker sits at a uniform random position with at least `min_gap` distractors after it, so the model
    must carry it to the end through up to `length - 1` steps - and, since the position varies, it must latch it
    (a gate that opens and then holds), not merely let it fade at a fixed rate. Markers close to the end are
    easy, so training gets a signal from the start; the longer the sequence, the more of them lie beyond the
    reach of a simple RNN's vanishing gradient.

    Token ids: 0 padding (unused), 1..num_classes the markers (marker c+1 means class c), then the distractors.

    Returns:
        x (n_samples, length) int32, y (n_samples,) int64, marker positions (n_samples,), vocab (token names).
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, size=n_samples)
    x = rng.integers(num_classes + 1, num_classes + 1 + num_distractors, size=(n_samples, length)).astype(np.int32)
    position = rng.integers(0, length - min_gap, size=n_samples)
    x[np.arange(n_samples), position] = y + 1
    vocab = [""] + [chr(ord("A") + i) for i in range(num_classes)] + [str(i) for i in range(num_distractors)]
    return x, y.astype(np.int64), position, vocab


def load_memory(seed, n_samples: int = 2000, length: int = 40, min_gap: int = 0, num_classes: int = 2,
                num_distractors: int = 8) -> Dataset:
    """The memory task (:func:`memory_task`) as a classification Dataset: which marker hides in the sequence?

    Args:
        seed: seeds the sequences and the stratified split.
        n_samples: sequences in all (70% train, 15% validation, 15% test).
        length: tokens per sequence; the knob that makes the task need longer memory.
        min_gap: fewest distractors after the marker (0: the marker may be the last token).
        num_classes: number of distinct markers (chance accuracy is 1 / num_classes).
        num_distractors: distinct distractor tokens.
    """
    n_samples = _check_positive("n_samples", n_samples, 20)
    length = _check_positive("length", length, 1)
    min_gap = _check_positive("min_gap", min_gap, 0)
    if min_gap >= length:
        raise ValueError(f"`min_gap` must be smaller than `length`; received min_gap={min_gap}, length={length}.")
    num_classes = _check_positive("num_classes", num_classes, 2)
    num_distractors = _check_positive("num_distractors", num_distractors)
    x, y, _, vocab = memory_task(n_samples, length, min_gap, num_classes, num_distractors, seed)
    info = {
        "task": "classification",
        "source": (f"kerastk.data.text.memory_task ({n_samples} sequences of {length} tokens, one marker with "
                   f">= {min_gap} distractors after it, seed {seed})"),
        "input_shape": [length],
        "preprocessing": dict(TOKENS_PREPROCESSING),
        "class_names": [f"marker {vocab[c + 1]}" for c in range(num_classes)],
        "num_classes": num_classes,
        "vocab": vocab,
        "sequence_length": length,
        "min_gap": min_gap,
    }
    return Dataset("memory", *split_dataset(x, y, seed), info)


# --- IMDB --------------------------------------------------------------------------------------------------

#: Word lists of the generated stand-in for IMDB (ids follow keras.datasets.imdb: 0 pad, 1 start, 2 unknown).
_POSITIVE = ("good", "great", "wonderful", "excellent", "moving", "funny", "beautiful", "brilliant", "enjoyable",
             "charming", "superb", "memorable")
_NEGATIVE = ("bad", "boring", "awful", "terrible", "dull", "predictable", "weak", "poor", "silly", "tedious",
             "forgettable", "clumsy")
_SUBJECTS = ("the movie", "the film", "the plot", "the acting", "the script", "the ending", "the music",
             "the cast", "the story", "the director", "the dialogue", "the camera work")
_FILLER = ("i watched it with my family", "it runs about two hours", "the cinema felt full",
           "it is based on a novel", "i saw it last week", "there is a long chase in the middle",
           "the trailer shows most of it", "they filmed it in the winter", "my friend recommended it",
           "the sequel comes out next year")
_INTENSIFIERS = ("very", "really", "quite", "truly", "")


def _imdb_vocab() -> list[str]:
    words = set()
    for phrase in (*_SUBJECTS, *_FILLER, "was is not at all", *_INTENSIFIERS):
        words.update(phrase.split())
    words.update(_POSITIVE + _NEGATIVE)
    return ["", "<s>", "<unk>"] + sorted(words)


def generated_reviews(n_samples: int = 4000, maxlen: int = 120, seed: int = 0):
    """Review-like token sequences: opinion sentences ("the acting was not very good") among neutral filler.
    The label (1 = positive) is the majority polarity of the opinions, a "not" flipping its sentence - so word
    order matters, not only which words occur. Left-padded to `maxlen` like keras.datasets.imdb + pad_sequences.

    Returns:
        x (n_samples, maxlen) int32, y (n_samples,) int64, vocab (index = id).
    """
    rng = np.random.default_rng(seed)
    vocab = _imdb_vocab()
    index = {w: i for i, w in enumerate(vocab)}
    x = np.zeros((n_samples, maxlen), dtype=np.int32)
    y = np.zeros(n_samples, dtype=np.int64)
    for i in range(n_samples):
        n_opinions = int(rng.choice([1, 3, 5]))  # odd: no ties
        sentences, score = [], 0
        for _ in range(n_opinions):
            positive = rng.random() < 0.5
            negated = rng.random() < 0.3
            adjective = rng.choice(_POSITIVE if positive else _NEGATIVE)
            words = [*rng.choice(_SUBJECTS).split(), "was"]
            if negated:
                words.append("not")
            intensifier = rng.choice(_INTENSIFIERS)
            words += ([intensifier] if intensifier else []) + [adjective]
            sentences.append(words)
            score += 1 if positive != negated else -1
        for _ in range(int(rng.integers(0, 4))):
            sentences.insert(int(rng.integers(0, len(sentences) + 1)), rng.choice(_FILLER).split())
        tokens = [1] + [index[w] for s in sentences for w in s]
        tokens = tokens[-maxlen:]
        x[i, maxlen - len(tokens):] = tokens
        y[i] = int(score > 0)
    return x, y, vocab


def load_imdb(seed, num_words: int = 10_000, maxlen: int = 200, n_samples: int = 4000, source: str = "auto"):
    """IMDB movie-review sentiment (binary) as token ids, left-padded / truncated to `maxlen`.

    keras.datasets.imdb (25,000 train + 25,000 test reviews, ids 0 pad / 1 start / 2 unknown, words from 3)
    when the machine is online or has it cached; else, with a one-line notice, `n_samples` generated review-like
    sequences (:func:`generated_reviews`). KERASTK_OFFLINE=1 skips the network attempt.

    Args:
        seed: seeds the validation split (and the generated stand-in).
        num_words: keep the most frequent words (others become id 2).
        maxlen: sequence length after padding (at the start) or truncation (keeping the end).
        n_samples: size of the generated stand-in.
        source: "auto", "keras" (fail when unreachable) or "generated".
    """
    num_words = _check_positive("num_words", num_words, 4)
    maxlen = _check_positive("maxlen", maxlen, 2)
    n_samples = _check_positive("n_samples", n_samples, 20)
    if source not in ("auto", "keras", "generated"):
        raise ValueError(f"`source` must be 'auto', 'keras' or 'generated'; received source={source!r}.")
    preprocessing = {**TOKENS_PREPROCESSING, "unit": "word", "start_id": 1, "unknown_id": 2, "padding": "pre"}
    classes = ["negative", "positive"]
    if source == "keras" and os.environ.get("KERASTK_OFFLINE", "0") == "1":
        raise ValueError("source='keras' asks for keras.datasets.imdb, but KERASTK_OFFLINE=1 forbids the download. "
                         "Unset KERASTK_OFFLINE (online, or with the file cached in ~/.keras/datasets), or use "
                         "source='auto' / 'generated' for the offline stand-in.")
    if source in ("auto", "keras") and os.environ.get("KERASTK_OFFLINE", "0") != "1":
        try:
            import keras

            (x_tr, y_tr), (x_te, y_te) = keras.datasets.imdb.load_data(num_words=num_words)
            pad = keras.utils.pad_sequences
            x_tr, x_te = (pad(a, maxlen=maxlen, padding="pre", truncating="pre").astype(np.int32)
                          for a in (x_tr, x_te))
            try:  # the word list is a second download; the model works without it
                words = {i + 3: w for w, i in keras.datasets.imdb.get_word_index().items() if i + 3 < num_words}
                vocab = ["", "<s>", "<unk>"] + [words.get(i, "<unk>") for i in range(3, num_words)]
            except Exception:
                vocab = None
            order = np.random.default_rng(seed).permutation(len(x_tr))
            val, train = order[:5000], order[5000:]
            info = {"task": "classification", "source": "keras.datasets.imdb (50,000 reviews)",
                    "input_shape": [maxlen], "preprocessing": preprocessing, "class_names": classes,
                    "num_classes": 2, "sequence_length": maxlen, "num_words": num_words}
            if vocab is not None:
                info["vocab"] = vocab
            return Dataset("imdb", x_tr[train], y_tr[train].astype(np.int64), x_tr[val],
                           y_tr[val].astype(np.int64), x_te, y_te.astype(np.int64), info)
        except Exception as exc:  # offline, or the download failed
            if source == "keras":
                raise
            notice(f"keras.datasets.imdb unavailable ({type(exc).__name__}); using {n_samples} generated "
                    "review-like token sequences instead (kerastk.data.text.generated_reviews).")
    x, y, vocab = generated_reviews(n_samples, maxlen, seed)
    info = {"task": "classification",
            "source": f"kerastk.data.text.generated_reviews ({n_samples} review-like sequences, seed {seed})",
            "input_shape": [maxlen], "preprocessing": preprocessing, "class_names": classes, "num_classes": 2,
            "vocab": vocab, "sequence_length": maxlen, "num_words": len(vocab)}
    return Dataset("imdb", *split_dataset(x, y, seed), info)
