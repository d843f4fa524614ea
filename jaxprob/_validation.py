"""Eager argument checks shared by the public entry points.

Every public function validates its inputs *before* tracing: shapes, dtypes and finiteness are checked on
concrete arrays and a `ValueError` / `TypeError` names the offending argument. When an argument is a JAX
tracer (the function is being traced under `jit`/`vmap`/`grad` by the caller) only the static checks
(rank, shape, dtype) run: values are not available, and problems are then reported as data by the algorithms.

**Floating dtypes (one policy for the library).** Computations run in float32 or float64: the dtype of the
input when it is one of these. Half-precision inputs (float16, bfloat16, and any floating dtype narrower than
32 bits) are converted to float32 at the edge by [as_float_array][jaxprob._validation.as_float_array], so the
results come back in float32. Their 5 to 8 exponent bits overflow in squared distances and sums of squares
(float16 stops at 65504), and LAPACK has no half-precision kernels; converting is exact, so nothing the input
holds is lost. [compute_dtype][jaxprob._validation.compute_dtype] gives the dtype an input dtype is computed in.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "is_tracer",
    "as_float_array",
    "compute_dtype",
    "check_finite",
    "check_int",
    "check_key",
    "check_sample_weight",
    "check_choice",
    "as_labels",
    "check_labels",
]


def is_tracer(x) -> bool:
    """True when `x` is an abstract value being traced (its values are not available)."""
    return isinstance(x, jax.core.Tracer)


def compute_dtype(dtype) -> np.dtype:
    """The floating dtype the library computes in for an input of floating `dtype`.

    float32 and float64 stay as they are; half precision (float16, bfloat16 and any narrower float) becomes
    float32 (see the module notes).

    Args:
        dtype: a floating dtype.

    Returns:
        The NumPy dtype of the computation.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob._validation import compute_dtype
        >>> compute_dtype(jnp.float16), compute_dtype(jnp.bfloat16), compute_dtype(jnp.float32)
        (dtype('float32'), dtype('float32'), dtype('float32'))
    """
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32:
        return np.dtype(np.float32)
    return dtype


def as_float_array(x, name: str, ndim: int | tuple[int, ...] | None = None, *, dtype=None):
    """Convert `x` to a floating JAX array and check its rank.

    Integer and boolean inputs are refused with a `TypeError` (silently casting labels or counts to floats
    hides bugs); lists of Python floats are accepted. Half-precision inputs (float16, bfloat16) are converted
    to float32, the library's policy (see the module notes and [compute_dtype][jaxprob._validation.compute_dtype]).

    Args:
        x: array-like.
        name: the argument's name, for the error messages.
        ndim: the allowed rank(s); `None` accepts any.
        dtype: forces a floating dtype (e.g. the dtype of another argument); a half-precision `dtype` means
            float32, as for the input.

    Returns:
        A JAX array of dtype float32 or float64 (or `dtype`).

    Examples:
        >>> import numpy as np
        >>> from jaxprob._validation import as_float_array
        >>> as_float_array(np.ones((2, 3), np.float16), "x", 2).dtype
        dtype('float32')
    """
    if x is None:
        raise TypeError(f"`{name}` must be an array, got None")
    if not is_tracer(x) and not isinstance(x, jax.Array):
        x = np.asarray(x)
        if x.dtype == object:
            raise TypeError(f"`{name}` must be a numeric array, got an object array")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"`{name}` must have a floating dtype (float32 or float64), got {x.dtype}; "
            f"convert it explicitly, e.g. `{name}.astype(float)`"
        )
    if dtype is not None:
        dtype = compute_dtype(dtype)
    elif compute_dtype(x.dtype) != x.dtype:
        dtype = compute_dtype(x.dtype)
    x = jnp.asarray(x, dtype=dtype)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if x.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"`{name}` must have {want} dimension(s), got shape {tuple(x.shape)}")
    return x


def check_finite(x, name: str):
    """Raise `ValueError` if a concrete `x` holds NaN or infinity (no-op on tracers)."""
    if is_tracer(x):
        return x
    arr = np.asarray(x)
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"`{name}` contains {n_bad} NaN or infinite value(s)")
    return x


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Check that `value` is a Python/NumPy integer within `[minimum, maximum]`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer, got {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}, got {value}")
    return value


def check_key(key, name: str = "key"):
    """Check that `key` is a PRNG key (typed `jax.random.key` or raw `PRNGKey` uint32[2])."""
    if key is None:
        raise TypeError(f"`{name}` is required: pass an explicit key, e.g. jax.random.key(0)")
    if is_tracer(key):
        return key
    if not isinstance(key, jax.Array):
        raise TypeError(f"`{name}` must be a JAX PRNG key, got {type(key).__name__}")
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.ndim != 0:
            raise ValueError(f"`{name}` must be a single key, got shape {tuple(key.shape)}")
        return key
    if key.dtype != jnp.uint32 or key.shape != (2,):
        raise TypeError(f"`{name}` must be a JAX PRNG key, got an array of {key.dtype} {tuple(key.shape)}")
    return key


def check_sample_weight(sample_weight, n: int, dtype, name: str = "sample_weight", *, allow_all_zero: bool = False):
    """Return per-sample weights of shape `(n,)`; `None` means all ones. Refuses negative weights, and all-zero
    weights unless `allow_all_zero` (a batch of a stream, which is then skipped and reported)."""
    if sample_weight is None:
        return jnp.asarray(np.ones((n,), dtype))  # a transfer, not a program to compile
    w = as_float_array(sample_weight, name, 1, dtype=dtype)
    if w.shape[0] != n:
        raise ValueError(f"`{name}` must have shape ({n},) to match x, got {tuple(w.shape)}")
    if not is_tracer(w):
        check_finite(w, name)
        arr = np.asarray(w)
        if np.any(arr < 0):
            raise ValueError(f"`{name}` must be non-negative")
        if not allow_all_zero and not np.any(arr > 0):
            raise ValueError(f"`{name}` must have at least one positive entry (all are zero)")
    return w


def check_choice(value, name: str, choices) -> str:
    """Check that `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {sorted(choices)}, got {value!r}")
    return value


def as_labels(y, name: str):
    """`y` as a 1-D, non-empty JAX array of integer class labels (booleans become 0/1); floats are refused."""
    if y is None:
        raise TypeError(f"`{name}` must be an array of integer labels, got None")
    y = y if isinstance(y, jax.Array) or is_tracer(y) else jnp.asarray(np.asarray(y))
    if y.dtype == jnp.bool_:
        y = y.astype(jnp.int32)
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise TypeError(f"`{name}` must hold integer class labels, got {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"`{name}` must have 1 dimension, got shape {tuple(y.shape)}")
    if y.shape[0] == 0:
        raise ValueError(f"`{name}` is empty")
    return y


def check_labels(y, name: str, n_classes: int | None = None):
    """Integer labels `(n,)` in `[0, n_classes)`; returns `(y, n_classes)` (inferred when `None`)."""
    y = as_labels(y, name)
    if is_tracer(y):
        if n_classes is None:
            raise ValueError(f"`n_classes` must be given when `{name}` is traced")
    else:
        arr = np.asarray(y)
        if arr.min() < 0:
            raise ValueError(f"`{name}` must hold class indices >= 0, got {int(arr.min())}")
        if n_classes is None:
            n_classes = int(arr.max()) + 1
        if arr.max() >= n_classes:
            raise ValueError(f"`{name}` holds label {int(arr.max())}, out of range for n_classes={n_classes}")
    return y, check_int(n_classes, "n_classes", minimum=1)
