"""Bad and awkward inputs across the public API, as one matrix: (entry point, input kind) -> expected outcome.

Three tables:

* `ENTRIES`: an entry point is a `good(tmp_path) -> dict` of valid arguments and a `call(args)` that runs it.
* `INPUTS`: an input kind turns valid arguments into awkward ones (`args -> args`); kinds refer to arguments
  by name (`x` is the data, `y_true` / `y_pred` labels, `path` a checkpoint file, `model` a fitted model).
* `MATRIX`: `(entry, kind) -> outcome`, where an outcome is `Raises(exception, message fragment)`, `Returns(check,
  why)` (no exception; `check(result, args)` asserts the flag or the values), or `SAME_AS_FLOAT32` (the input in
  half precision gives the result of its float32 conversion, in float32: the library's policy, see
  `jaxprob._validation`).

A new entry point is one line in `ENTRIES` and its rows in `MATRIX`; a new kind of input, one line in `INPUTS`.
Entry points that share the shapes of their valid arguments share compiled programs, which keeps this file fast.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprob import classifiers, kde, kmeans, metrics, mixture, nn, scale, selection

KEY = jax.random.key(0)


# ----------------------------------------------------------------------------------------------------------
# valid arguments
# ----------------------------------------------------------------------------------------------------------
def _blobs(n=40, d=4):
    """Two well separated float32 blobs, `(n, d)`."""
    r = np.random.default_rng(0)
    return (r.standard_normal((n, d)) + np.repeat([[0.0], [8.0]], n // 2, axis=0)).astype(np.float32)


@functools.cache
def _mlp4():
    return classifiers.mlp_classifier(4, 2, (8,), key=jax.random.key(1))


@functools.cache
def _kde4():
    return kde.fit(_blobs())


def _checkpoint(tmp_path):
    path = tmp_path / "model.eqx"
    nn.save_model(path, _mlp4())
    return {"path": path, "like": _mlp4()}


@dataclass(frozen=True)
class Entry:
    good: Callable[[Any], dict]
    call: Callable[[dict], Any]


ENTRIES: dict[str, Entry] = {
    "kmeans.fit": Entry(lambda _: {"x": _blobs()}, lambda a: kmeans.fit(a["x"], 2, key=KEY, max_iter=20)),
    "kmeans.predict": Entry(lambda _: {"x": _blobs(), "centroids": _blobs()[[0, -1]]},
                            lambda a: kmeans.predict(a["x"], a["centroids"])),
    "kmeans.inertia": Entry(lambda _: {"x": _blobs(), "centroids": _blobs()[[0, -1]]},
                            lambda a: kmeans.inertia(a["x"], a["centroids"])),
    "kde.fit": Entry(lambda _: {"x": _blobs()}, lambda a: kde.fit(a["x"])),
    "kde.log_prob": Entry(lambda _: {"x": _blobs()}, lambda a: kde.log_prob(a["x"], _kde4())),
    "classifiers.predict_proba": Entry(lambda _: {"x": _blobs(), "model": _mlp4()},
                                       lambda a: classifiers.predict_proba(a["x"], a["model"])),
    "classifiers.fit": Entry(
        lambda _: {"x": _blobs(), "y": np.repeat([0, 1], 20), "model": _mlp4()},
        lambda a: classifiers.fit(a["model"], a["x"], a["y"], key=KEY, n_epochs=2, batch_size=20),
    ),
    "classifiers.fit_softmax_regression": Entry(
        lambda _: {"x": _blobs(), "y": np.repeat([0, 1], 20)},
        lambda a: classifiers.fit_softmax_regression(a["x"], a["y"], l2=1e-2, max_iter=50),
    ),
    "nn.MLP": Entry(lambda _: {"x": _blobs(), "model": _mlp4()}, lambda a: a["model"](a["x"])),
    "nn.load_model": Entry(_checkpoint, lambda a: nn.load_model(a["path"], a["like"])),
    "metrics.f1_score": Entry(lambda _: {"y_true": np.array([0, 1, 1, 0]), "y_pred": np.array([0, 1, 0, 0])},
                              lambda a: metrics.f1_score(a["y_true"], a["y_pred"])),
    "metrics.auc": Entry(lambda _: {"x": np.array([0.0, 0.5, 1.0]), "y": np.array([0.0, 1.0, 1.0])},
                         lambda a: metrics.auc(a["x"], a["y"])),
    "metrics.auc under jit": Entry(lambda _: {"x": np.array([0.0, 0.5, 1.0]), "y": np.array([0.0, 1.0, 1.0])},
                                   lambda a: jax.jit(metrics.auc)(a["x"], a["y"])),
}


# ----------------------------------------------------------------------------------------------------------
# input kinds
# ----------------------------------------------------------------------------------------------------------
def _with(a, **changes):
    return {**a, **changes}


def _nan(x):
    x = np.array(x)
    x[0, 0] = np.nan
    return x


def _constant_column(x, value):
    x = np.array(x)
    x[:, 1] = value
    return x


def _rewrite(a, edit: Callable[[bytes], bytes]):
    """The checkpoint file at `a["path"]` with its bytes edited."""
    data = a["path"].read_bytes()
    a["path"].write_bytes(edit(data))
    return a


def _flip_last_bit(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


def _raw_equinox(a):
    """A file written by equinox itself (no jaxprob header): the format before checkpoints had one."""
    import equinox as eqx

    eqx.tree_serialise_leaves(a["path"], a["like"])
    return a


def _other_version(data: bytes) -> bytes:
    return data[:8] + (99).to_bytes(4, "little") + data[12:]


INPUTS: dict[str, Callable[[dict], dict]] = {
    "x: NaN": lambda a: _with(a, x=_nan(a["x"])),
    "x: float16": lambda a: _with(a, x=np.asarray(a["x"]).astype(np.float16)),
    "x: bfloat16": lambda a: _with(a, x=jnp.asarray(np.asarray(a["x"], np.float32), jnp.bfloat16)),
    "x: float32 times 1e19": lambda a: _with(a, x=np.asarray(a["x"]) * np.float32(1e19),
                                              **({"centroids": a["centroids"] * np.float32(1e19)}
                                                 if "centroids" in a else {})),
    "x: no features (D=0)": lambda a: _with(a, x=np.asarray(a["x"])[:, :0],
                                             **({"centroids": a["centroids"][:, :0]} if "centroids" in a else {})),
    "x: one feature too few": lambda a: _with(a, x=np.asarray(a["x"])[:, :-1]),
    "x: constant column of 0.0": lambda a: _with(a, x=_constant_column(a["x"], 0.0)),
    "x: constant column of 5.0": lambda a: _with(a, x=_constant_column(a["x"], 5.0)),
    "x: not monotone": lambda a: _with(a, x=np.array([0.0, 1.0, 0.5])),
    "labels: a third class": lambda a: _with(a, y_true=np.array([0, 1, 2, 0])),
    "file: empty": lambda a: _rewrite(a, lambda b: b""),
    "file: truncated payload": lambda a: _rewrite(a, lambda b: b[: len(b) - 7]),
    "file: truncated header": lambda a: _rewrite(a, lambda b: b[:20]),
    "file: bit flip in the payload": lambda a: _rewrite(a, _flip_last_bit),
    "file: trailing garbage": lambda a: _rewrite(a, lambda b: b + b"\x00garbage"),
    "file: foreign (raw equinox leaves)": _raw_equinox,
    "file: foreign (text)": lambda a: _rewrite(a, lambda b: b"hello, this is not a model\n"),
    "file: unknown format version": lambda a: _rewrite(a, _other_version),
    "file: missing": lambda a: _with(a, path=a["path"].with_name("absent.eqx")),
    "like: another architecture": lambda a: _with(a, like=nn.MLP(4, 2, (9,), key=KEY)),
    "like: fewer leaves": lambda a: _with(a, like=a["like"].weights),
}


# ----------------------------------------------------------------------------------------------------------
# expected outcomes
# ----------------------------------------------------------------------------------------------------------
class Raises(NamedTuple):
    exception: type[BaseException]
    match: str

    def check(self, entry: Entry, args: dict):
        with pytest.raises(self.exception, match=self.match) as info:
            entry.call(args)
        if "path" in args and issubclass(self.exception, nn.CheckpointError):
            assert os.fspath(args["path"]) in str(info.value), "the message must name the file"


class Returns(NamedTuple):
    check_result: Callable[[Any, dict], None]
    why: str

    def check(self, entry: Entry, args: dict):
        self.check_result(entry.call(args), args)


class _SameAsFloat32:
    """No error; the result equals that of the float32 conversion of `x`, and its JAX floats are float32."""

    def check(self, entry: Entry, args: dict):
        got = entry.call(args)
        ref = entry.call(_with(args, x=np.asarray(args["x"]).astype(np.float32)))
        got_leaves, ref_leaves = jax.tree.leaves(got), jax.tree.leaves(ref)
        assert len(got_leaves) == len(ref_leaves)
        for g, r in zip(got_leaves, ref_leaves, strict=True):
            if isinstance(g, jax.Array) and jnp.issubdtype(g.dtype, jnp.floating):  # host histories stay float64
                assert g.dtype == jnp.float32, g.dtype
            np.testing.assert_array_equal(np.asarray(g), np.asarray(r))


SAME_AS_FLOAT32 = _SameAsFloat32()


def _kmeans_huge(result, args):
    res, info = result
    # the clusters are found on the rescaled data; the inertia (about 1e40) overflows float32 and says so
    assert np.bincount(np.asarray(res.labels), minlength=2).min() == 20
    assert bool(info.nonfinite) and not bool(info.converged) and np.isposinf(float(res.inertia))


def _labels_of_the_blobs(result, args):
    np.testing.assert_array_equal(np.asarray(result), np.repeat([0, 1], 20))


def _inertia_beyond_float32(result, args):
    assert np.isposinf(float(result))


def _nan_result(result, args):
    assert np.isnan(float(result))


CHECKPOINT = nn.CheckpointError
MATRIX: dict[tuple[str, str], Raises | Returns | _SameAsFloat32] = {
    # k-means
    ("kmeans.fit", "x: NaN"): Raises(ValueError, "`x` contains 1 NaN"),
    ("kmeans.fit", "x: float16"): SAME_AS_FLOAT32,
    ("kmeans.fit", "x: bfloat16"): SAME_AS_FLOAT32,
    ("kmeans.fit", "x: float32 times 1e19"): Returns(_kmeans_huge, "rescaled by a power of two, flagged"),
    ("kmeans.fit", "x: no features (D=0)"): Raises(ValueError, r"`x` must have at least one feature \(D >= 1\)"),
    ("kmeans.predict", "x: float16"): SAME_AS_FLOAT32,
    ("kmeans.predict", "x: float32 times 1e19"): Returns(_labels_of_the_blobs, "rescaled by a power of two"),
    ("kmeans.predict", "x: no features (D=0)"): Raises(ValueError, "at least one feature"),
    ("kmeans.predict", "x: one feature too few"): Raises(ValueError, "`centroids` has 4 features but `x` has 3"),
    ("kmeans.inertia", "x: float16"): SAME_AS_FLOAT32,
    ("kmeans.inertia", "x: float32 times 1e19"): Returns(_inertia_beyond_float32, "no finite float32 holds it"),
    # kernel density estimation
    ("kde.fit", "x: NaN"): Raises(ValueError, "`x` contains 1 NaN"),
    ("kde.fit", "x: float16"): SAME_AS_FLOAT32,
    ("kde.fit", "x: bfloat16"): SAME_AS_FLOAT32,
    ("kde.fit", "x: constant column of 0.0"): Raises(ValueError, "feature 1 of `x` is constant"),
    ("kde.fit", "x: constant column of 5.0"): Raises(ValueError, "feature 1 of `x` is constant"),
    ("kde.log_prob", "x: float16"): SAME_AS_FLOAT32,
    ("kde.log_prob", "x: one feature too few"): Raises(ValueError, "`x` has 3 features but the KDE has 4"),
    # classifiers and networks
    ("classifiers.predict_proba", "x: float16"): SAME_AS_FLOAT32,
    ("classifiers.predict_proba", "x: NaN"): Raises(ValueError, "`x` contains"),
    ("classifiers.predict_proba", "x: one feature too few"): Raises(ValueError, r"expects inputs .*\(4 features\)"),
    ("classifiers.fit", "x: float16"): SAME_AS_FLOAT32,
    ("classifiers.fit", "x: one feature too few"): Raises(ValueError, r"expects inputs .*\(4 features\), got shape"),
    ("classifiers.fit_softmax_regression", "x: float16"): SAME_AS_FLOAT32,
    ("nn.MLP", "x: one feature too few"): Raises(ValueError, r"expects inputs of shape \(4,\) or \(n, 4\)"),
    # checkpoints
    ("nn.load_model", "file: empty"): Raises(CHECKPOINT, "is empty"),
    ("nn.load_model", "file: truncated payload"): Raises(CHECKPOINT, "is truncated: .* of .* payload bytes"),
    ("nn.load_model", "file: truncated header"): Raises(CHECKPOINT, "is truncated: 20 bytes"),
    ("nn.load_model", "file: bit flip in the payload"): Raises(CHECKPOINT, "is corrupted: the SHA-256"),
    ("nn.load_model", "file: trailing garbage"): Raises(CHECKPOINT, "8 bytes of trailing data"),
    ("nn.load_model", "file: foreign (raw equinox leaves)"): Raises(CHECKPOINT, "is not a jaxprob checkpoint"),
    ("nn.load_model", "file: foreign (text)"): Raises(CHECKPOINT, "is not a jaxprob checkpoint"),
    ("nn.load_model", "file: unknown format version"): Raises(CHECKPOINT, "format version 99"),
    ("nn.load_model", "file: missing"): Raises(FileNotFoundError, "absent.eqx"),
    ("nn.load_model", "like: another architecture"): Raises(CHECKPOINT, "does not match the structure of `like`"),
    ("nn.load_model", "like: fewer leaves"): Raises(CHECKPOINT, "holds more leaves"),
    # metrics
    ("metrics.f1_score", "labels: a third class"): Raises(ValueError, "average='binary' needs binary labels"),
    ("metrics.auc", "x: not monotone"): Raises(ValueError, r"`x` is neither non-decreasing nor non-increasing"),
    ("metrics.auc under jit", "x: not monotone"): Returns(_nan_result, "values unknown when traced: NaN"),
}

# ----------------------------------------------------------------------------------------------------------
# mixtures, the EM engine's drivers and model selection
# ----------------------------------------------------------------------------------------------------------
@functools.cache
def _gmm4():
    return mixture.fit(_blobs(), 2, key=KEY, covariance_type="diag", max_iter=20)[0]


def _memmap_edited_in_memory(tmp_path):
    path = tmp_path / "x.f32"
    _blobs().tofile(path)
    x = np.memmap(path, dtype=np.float32, mode="c", shape=(40, 4))
    x -= x.mean(axis=0)  # copy-on-write: the file keeps the old values, the array the new ones
    return {"x": x, "model": _gmm4()}


def _zero_weight_first_batch(_):
    x = _blobs()
    return {"batches": [(x[:20], np.zeros(20, np.float32)), (x[20:], np.ones(20, np.float32)), (x[:20], None)],
            "model": _gmm4()}


ENTRIES.update({
    "mixture.fit": Entry(lambda _: {"x": _blobs()}, lambda a: mixture.fit(a["x"], 2, key=KEY, max_iter=20)),
    "mixture.make_gmm under jit": Entry(
        lambda _: {"weights": np.array([0.5, 0.5]), "covariances": np.ones((2, 4))},
        lambda a: mixture.check_model(jax.jit(lambda w, c: mixture.make_gmm(w, np.zeros((2, 4)), c, "diag"))(
            a["weights"], a["covariances"])),
    ),
    "scale.fit_chunked": Entry(lambda _: {"x": _blobs(), "model": _gmm4()},
                               lambda a: scale.fit_chunked(a["x"], a["model"], chunk_size=16, max_iter=5)),
    "scale.fit_online": Entry(lambda _: {"batches": [_blobs()[:20], _blobs()[20:]], "model": _gmm4()},
                              lambda a: scale.fit_online(a["batches"], a["model"])),
    "selection.fit_grid": Entry(lambda _: {"x": _blobs()},
                                lambda a: selection.fit_grid(a["x"], 2, key=KEY, covariance_types="diag",
                                                             max_iter=10)),
})
INPUTS.update({
    "weights: sum to 0.6": lambda a: _with(a, weights=np.array([0.3, 0.3])),
    "covariances: not positive": lambda a: _with(a, covariances=-np.ones((2, 4))),
    "memmap: edited in memory (mode c)": lambda a: _memmap_edited_in_memory(a["tmp_path"]),
    "batches: first batch of zero weight": _zero_weight_first_batch,
})


def _mixture_huge(result, args):
    model, info = result
    # squares of 1e19 overflow float32: flagged, never converged
    assert bool(info.nonfinite) and not bool(info.converged)


def _false(result, args):
    assert not bool(result)


def _fits_the_array_not_the_file(result, args):
    model, info = result
    ref, ref_info = scale.fit_chunked(np.array(args["x"]), args["model"], chunk_size=16, max_iter=5)
    assert float(info.log_likelihood) == pytest.approx(float(ref_info.log_likelihood), rel=1e-6)
    np.testing.assert_allclose(np.asarray(model.means), np.asarray(ref.means), rtol=1e-5, atol=1e-5)


def _skipped_and_finite(result, args):
    model, info = result
    assert info.n_skipped == 1 and np.isnan(info.trace[0]) and np.all(np.isfinite(info.trace[1:]))
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(model))


MATRIX.update({
    ("mixture.fit", "x: NaN"): Raises(ValueError, "`x` contains 1 NaN"),
    ("mixture.fit", "x: float16"): SAME_AS_FLOAT32,
    ("mixture.fit", "x: bfloat16"): SAME_AS_FLOAT32,
    ("mixture.fit", "x: float32 times 1e19"): Returns(_mixture_huge, "overflow flagged as nonfinite"),
    ("mixture.fit", "x: no features (D=0)"): Raises(ValueError, "at least one feature"),
    ("mixture.make_gmm under jit", "weights: sum to 0.6"): Returns(_false, "check_model reports it as data"),
    ("mixture.make_gmm under jit", "covariances: not positive"): Returns(_false, "NaN factors, reported"),
    ("scale.fit_chunked", "memmap: edited in memory (mode c)"): Returns(_fits_the_array_not_the_file,
                                                                       "reads what the array holds"),
    ("scale.fit_online", "batches: first batch of zero weight"): Returns(_skipped_and_finite,
                                                                         "skipped and counted"),
    ("selection.fit_grid", "x: float32 times 1e19"): Raises(ValueError, "NaN in every cell"),
})


@pytest.mark.parametrize("entry, kind", list(MATRIX), ids=[f"{e} | {k}" for e, k in MATRIX])
def test_bad_input(entry, kind, tmp_path):
    args = INPUTS[kind]({**ENTRIES[entry].good(tmp_path), "tmp_path": tmp_path})
    MATRIX[(entry, kind)].check(ENTRIES[entry], args)


def test_every_row_names_a_known_entry_and_input():
    assert {e for e, _ in MATRIX} <= set(ENTRIES) and {k for _, k in MATRIX} <= set(INPUTS)
