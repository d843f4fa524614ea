r"""The numerical policy of jaxprob on every backend: matrix-product precision and deterministic sums.

**Precision of matrix products.** On GPUs and TPUs a float32 matrix product at JAX's default precision runs with
reduced-precision inputs (TF32 on NVIDIA tensor cores, one bfloat16 pass on TPUs: about 10 and 8 significant
bits). EM then drifts from its float64 result by about $10^{-3}$ in the mean log-likelihood, k-means labels flip
near ties and the KDE log-density moves by $10^{-2}$. On CPUs every float32 product runs at full precision anyway.
jaxprob therefore states the precision of every float32 matrix product in its likelihood, EM, k-means, KDE and
network code, through one rule, [matmul_precision][jaxprob.numerics.matmul_precision]:

* by default, `"highest"`: full float32 products on every backend (the results of the CPU, to rounding);
* inside `jax.default_matmul_precision(...)` (or with the `jax_default_matmul_precision` option set), the
  precision the user chose there, e.g. `"tensorfloat32"` (fast, about $10^{-3}$ relative error per product),
  `"BF16_BF16_F32_X3"` (three bfloat16 passes, about $10^{-5}$) or `"bfloat16"` (the backend's default).

The choice is read when a function is traced. JAX's own context is part of the cache key of `jax.jit`, so a
program compiled under one precision is never reused under another: for example
`with jax.default_matmul_precision("tensorfloat32"): model, info = jaxprob.mixture.fit(x, 16, key=key)` is
faster on a GPU and less accurate.

**Deterministic sums.** Per-cluster sums by scatter-add are not deterministic on GPUs (atomic additions in any
order). [segment_sum][jaxprob.numerics.segment_sum] computes them by XLA's scatter on CPUs, where it runs
sequentially (deterministic, and the fastest), and by a one-hot matrix product at full precision elsewhere (a
fixed order of additions). The platform is chosen when the program is compiled (`jax.lax.platform_dependent`), not
from the default backend.

**Checking code.** [default_precision_dots][jaxprob.numerics.default_precision_dots] lists the float32 matrix
products of a function that would run at the backend's default precision; the test suite runs it on the public
kernels.

See `docs/accelerators.md` for the per-backend choices and what has been measured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jex_core
from jax.typing import ArrayLike

__all__ = [
    "DEFAULT_PRECISION",
    "matmul_precision",
    "matmul",
    "einsum",
    "segment_sum",
    "one_hot_segment_sum",
    "add_at",
    "default_precision_dots",
]

DEFAULT_PRECISION = "highest"
"""jaxprob's matrix-product precision when the user chose none: full float32 on every backend."""


def matmul_precision() -> Any:
    """The precision of jaxprob's float32 matrix products, read when the calling code is traced.

    Returns:
        The value of JAX's `jax_default_matmul_precision` option when the user set it (globally or by the
        `jax.default_matmul_precision(...)` context), else [DEFAULT_PRECISION][jaxprob.numerics.DEFAULT_PRECISION].
        Either is a valid `precision=` argument of `jnp.matmul` / `jnp.einsum` / `jax.lax.dot_general`.

    Examples:
        >>> import jax
        >>> from jaxprob import numerics
        >>> numerics.matmul_precision()
        'highest'
        >>> with jax.default_matmul_precision("tensorfloat32"):
        ...     numerics.matmul_precision()
        'tensorfloat32'
    """
    chosen = jax.config.jax_default_matmul_precision
    return DEFAULT_PRECISION if chosen is None else chosen


def matmul(a: ArrayLike, b: ArrayLike) -> jax.Array:
    """`jnp.matmul(a, b)` at the policy's precision ([matmul_precision][jaxprob.numerics.matmul_precision]).

    Args:
        a: `(..., n, k)` or `(k,)` array.
        b: `(..., k, m)` or `(k,)` array.

    Returns:
        The product, as `jnp.matmul`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import numerics
        >>> numerics.matmul(jnp.ones((2, 3)), jnp.ones((3,))).tolist()
        [3.0, 3.0]
    """
    return jnp.matmul(a, b, precision=matmul_precision())


def einsum(subscripts: str, *operands: ArrayLike) -> jax.Array:
    """`jnp.einsum` at the policy's precision ([matmul_precision][jaxprob.numerics.matmul_precision]).

    Args:
        subscripts: the einsum specification, e.g. `"nd,kde->nke"`.
        *operands: the arrays.

    Returns:
        The contraction, as `jnp.einsum`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import numerics
        >>> numerics.einsum("ij,j->i", jnp.eye(2), jnp.array([1.0, 2.0])).tolist()
        [1.0, 2.0]
    """
    return jnp.einsum(subscripts, *operands, precision=matmul_precision())


def one_hot_segment_sum(data: ArrayLike, segment_ids: ArrayLike, num_segments: int) -> jax.Array:
    r"""Per-segment sums as the product of a one-hot matrix with `data`, at full precision.

    $s_k = \sum_i [z_i = k]\, d_i$ as $E^\top d$ with $E_{ik} = [z_i = k]$: the additions run in a fixed order on
    every backend (no atomic scatter), and the one-hot entries are exact, so the result is the float32 sum of the
    selected rows. Ids outside `[0, num_segments)` are dropped, as `jax.ops.segment_sum` drops them.

    Args:
        data: `(n, ...)` values.
        segment_ids: `(n,)` integer ids.
        num_segments: number of segments `K` (static).

    Returns:
        `(K, ...)` sums.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import numerics
        >>> numerics.one_hot_segment_sum(jnp.array([1.0, 2.0, 4.0]), jnp.array([0, 2, 0]), 3).tolist()
        [5.0, 0.0, 2.0]
    """
    data = jnp.asarray(data)
    one_hot = (segment_ids[:, None] == jnp.arange(num_segments, dtype=segment_ids.dtype)[None, :]).astype(data.dtype)
    flat = data.reshape(data.shape[0], -1)
    # full precision whatever the policy: these are sums of the data, not products of estimates
    out = jnp.matmul(one_hot.T, flat, precision=lax.Precision.HIGHEST)
    return out.reshape((num_segments,) + data.shape[1:])


def segment_sum(data: ArrayLike, segment_ids: ArrayLike, num_segments: int) -> jax.Array:
    """Deterministic per-segment sums on every backend (same input, same bits).

    On CPUs, XLA's scatter-add (`jax.ops.segment_sum`), which runs sequentially there; on GPUs and TPUs,
    [one_hot_segment_sum][jaxprob.numerics.one_hot_segment_sum], with no atomic additions. The branch is chosen for
    the platform the program is compiled for (`jax.lax.platform_dependent`). Both give the float32 sum of the
    selected rows; they may differ from each other in the last bits (the order of the additions).

    Args:
        data: `(n, ...)` values.
        segment_ids: `(n,)` integer ids; ids outside `[0, num_segments)` are dropped.
        num_segments: number of segments `K` (static).

    Returns:
        `(K, ...)` sums.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import numerics
        >>> numerics.segment_sum(jnp.array([[1.0], [2.0], [4.0]]), jnp.array([1, 1, 0]), 2).tolist()
        [[4.0], [3.0]]
    """

    def scatter(d, s):
        return jax.ops.segment_sum(d, s, num_segments)

    def one_hot(d, s):
        return one_hot_segment_sum(d, s, num_segments)

    return lax.platform_dependent(jnp.asarray(data), jnp.asarray(segment_ids), cpu=scatter, default=one_hot)


def add_at(target: ArrayLike, indices: ArrayLike, values: ArrayLike) -> jax.Array:
    """Deterministic `target.at[indices].add(values)` along the first axis on every backend.

    On CPUs, XLA's scatter-add (sequential there); on GPUs and TPUs, `target` plus the
    [one_hot_segment_sum][jaxprob.numerics.one_hot_segment_sum] of `values`, so that repeated indices are added in
    a fixed order.

    Args:
        target: `(K, ...)` array.
        indices: `(m,)` integer indices into the first axis of `target`.
        values: `(m, ...)` values to add.

    Returns:
        `(K, ...)` the updated copy of `target`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import numerics
        >>> numerics.add_at(jnp.zeros(3), jnp.array([2, 0, 2]), jnp.array([1.0, 2.0, 3.0])).tolist()
        [2.0, 0.0, 4.0]
    """

    def scatter(t, i, v):
        return t.at[i].add(v)

    def one_hot(t, i, v):
        return t + one_hot_segment_sum(v, i, t.shape[0])

    return lax.platform_dependent(jnp.asarray(target), jnp.asarray(indices), jnp.asarray(values), cpu=scatter,
                                  default=one_hot)


# ----------------------------------------------------------------------------------------------------------
# checking the precision of traced code
# ----------------------------------------------------------------------------------------------------------
def _sub_jaxprs(value) -> Iterator[Any]:
    if isinstance(value, jex_core.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, jex_core.Jaxpr):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _sub_jaxprs(v)


def _dot_equations(jaxpr) -> Iterator[Any]:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            yield eqn
        for value in eqn.params.values():
            for sub in _sub_jaxprs(value):
                yield from _dot_equations(sub)


def _is_default(precision) -> bool:
    if precision is None:
        return True
    if isinstance(precision, (tuple, list)):
        return any(p is None or p == lax.Precision.DEFAULT for p in precision)
    return precision == lax.DotAlgorithmPreset.DEFAULT


def default_precision_dots(fn: Callable, *args: Any, **kwargs: Any) -> list[str]:
    """The float32 matrix products of `fn(*args, **kwargs)` that run at the backend's default precision.

    Traces `fn` (no computation) and walks its jaxpr, including the bodies of loops, conditionals, nested `jit`s,
    custom derivatives and Pallas kernels. A `dot_general` is reported when an operand is float32 and its
    precision is unset or `DEFAULT` on either side; on a GPU or TPU such a product runs with reduced-precision
    inputs unless the user chose otherwise (see the module notes). Products of float64 or integer arrays are not
    reported (their precision is always full).

    Args:
        fn: a function of arrays.
        *args: its arguments (arrays or shape-dtype structs).
        **kwargs: its keyword arguments.

    Returns:
        One line per offending product (operand shapes and dtypes, precision), empty when there is none.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import numerics
        >>> a = jnp.ones((3, 3))
        >>> len(numerics.default_precision_dots(lambda a: a @ a, a))
        1
        >>> numerics.default_precision_dots(lambda a: numerics.matmul(a, a), a)
        []
    """
    closed = jax.make_jaxpr(lambda *a: fn(*a, **kwargs))(*args)
    found = []
    for eqn in _dot_equations(closed.jaxpr):
        avals = [v.aval for v in eqn.invars]
        if not any(np.dtype(a.dtype) == np.float32 for a in avals):
            continue
        precision = eqn.params.get("precision")
        if _is_default(precision):
            shapes = " x ".join(f"{a.dtype}{list(a.shape)}" for a in avals)
            found.append(f"dot_general {shapes} precision={precision}")
    return found
