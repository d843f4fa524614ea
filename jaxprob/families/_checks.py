"""Eager checks shared by the count and Student-t families: hyper-parameters, count data, parameter arrays."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxprob._validation import as_float_array, check_finite, is_tracer

__all__ = ["check_number", "as_count_array", "check_param_array", "default_float"]


def default_float():
    """The default JAX float dtype: float64 when x64 is enabled, float32 otherwise."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def check_number(value, name: str, *, minimum: float = 0.0, strict: bool = False) -> None:
    """Raise a `TypeError` / `ValueError` unless `value` is a finite number `>= minimum` (`> minimum` when
    `strict`). Tracers pass (their values are not available)."""
    if is_tracer(value):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer, jax.Array, np.ndarray)):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__}")
    if np.ndim(value) != 0:
        raise ValueError(f"`{name}` must be a scalar, got shape {np.shape(value)}")
    v = float(value)
    ok = np.isfinite(v) and (v > minimum if strict else v >= minimum)
    if not ok:
        relation = ">" if strict else ">="
        raise ValueError(f"`{name}` must be a finite number {relation} {minimum}, got {value}")


def as_count_array(x, name: str, *, binary: bool = False):
    """Count data (or binary data) as a float `(n, D)` array, checked eagerly.

    Booleans and integers are converted explicitly to the default float dtype; float arrays keep their dtype.
    Concrete values must be finite, non-negative and whole numbers (0 or 1 when `binary`); under tracing only
    the rank is checked.
    """
    if x is None:
        raise TypeError(f"`{name}` must be an array, got None")
    if not is_tracer(x) and not isinstance(x, jax.Array):
        x = np.asarray(x)
        if x.dtype == object:
            raise TypeError(f"`{name}` must be a numeric array, got an object array")
    dtype = x.dtype
    if jnp.issubdtype(dtype, jnp.bool_) or jnp.issubdtype(dtype, jnp.integer):
        x = jnp.asarray(x).astype(default_float())
    elif not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"`{name}` must hold counts (integer, boolean or float dtype), got {dtype}")
    x = as_float_array(x, name, 2)
    if is_tracer(x):
        return x
    check_finite(x, name)
    arr = np.asarray(x)
    if np.any(arr < 0):
        raise ValueError(f"`{name}` must be non-negative counts, got {int(np.sum(arr < 0))} negative value(s)")
    if binary:
        if np.any((arr != 0) & (arr != 1)):
            raise ValueError(f"`{name}` must be binary (every value 0 or 1), got {int(np.sum((arr != 0) & (arr != 1)))}"
                             " other value(s); binarise it first, e.g. `(x > threshold).astype(float)`")
    elif np.any(arr != np.floor(arr)):
        raise ValueError(f"`{name}` must hold whole-number counts, got {int(np.sum(arr != np.floor(arr)))} "
                         "fractional value(s)")
    return x


def check_param_array(a, name: str, ndim: int):
    """A floating parameter array of rank `ndim`, finite when concrete."""
    a = as_float_array(a, name, ndim)
    check_finite(a, name)
    return a
