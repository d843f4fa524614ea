r"""A fused Lloyd pass for GPUs and TPUs, written in Pallas: distances, arg min and per-cluster sums in one pass.

One pass of Lloyd's algorithm reads the samples $x_i$ (weights $w_i$) and the centroids $c_k$ and returns, for every
sample, its closest centroid $z_i = \arg\min_k \lVert x_i - c_k\rVert^2$ and that squared distance, and for every
cluster the weighted sums $\sum_{i: z_i = k} w_i x_i$ and weights $\sum_{i: z_i = k} w_i$. Written with XLA
operations it materialises the $n \times K$ distances (in chunks) and scatters the sums; this kernel keeps a block of
distances in registers (or VMEM) and never writes an $n \times K$ matrix.

**Layout.** The rows are cut into `n_segments` segments, each processed by one program (a thread block on a GPU,
a core's loop on a TPU) in blocks of `block_rows` rows. For each block the kernel computes the scores
$\lVert c_k\rVert^2 - 2 x_i^\top c_k$ against tiles of `block_clusters` centroids, keeps the running minimum and
its index (ties go to the lowest index, as [jaxprob.kmeans.assign][]), then adds the one-hot products
$E^\top (w \odot x)$ of the block, tile by tile, to the segment's own partial sums. The partial sums of the
segments are added afterwards in a fixed order: no atomic addition, so the result is bit-for-bit reproducible.

**Precision.** The distance products take the library's policy ([jaxprob.numerics.matmul_precision][]: full
float32 unless the user chose otherwise); the one-hot products of the sums always run at full precision (IEEE
float32 on a GPU), so the sums are float32 sums of the data.

**Where it runs.** Compiled by Triton on NVIDIA GPUs and by Mosaic on TPUs (a TPU runs the blocks of a segment as a
sequential grid axis accumulating in place). On a CPU it runs only in Pallas interpret mode (`interpret=True`), which
the test suite uses to check it against the pure-JAX pass; [jaxprob.kmeans][] uses the pure-JAX pass on CPUs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.typing import ArrayLike, DTypeLike

from jaxprob import numerics
from jaxprob._validation import as_float_array, check_int

__all__ = ["LloydPass", "lloyd_pass", "supported", "MAX_PARTIAL_ENTRIES"]

MAX_PARTIAL_ENTRIES = 2**17
"""Largest padded `K x D` (centroids times features) the kernel accepts: each segment keeps a partial sum of that
size (512 KiB in float32)."""


class LloydPass(NamedTuple):
    r"""The outputs of one fused Lloyd pass (a pytree of arrays).

    Attributes:
        labels: `(n,)` int32 index of the closest centroid (lowest index among ties).
        distances: `(n,)` squared distance to it, from the expanded form $\lVert x\rVert^2 - 2 x^\top c +
            \lVert c\rVert^2$ (clipped at 0).
        sums: `(K, D)` per-cluster weighted sums $\sum_{i: z_i = k} w_i x_i$.
        counts: `(K,)` per-cluster weights $\sum_{i: z_i = k} w_i$.
    """

    labels: jax.Array
    distances: jax.Array
    sums: jax.Array
    counts: jax.Array


def _pow2(v: int, least: int) -> int:
    return max(least, 1 << max(0, math.ceil(math.log2(max(v, 1)))))


def supported(n_clusters: int, n_features: int, dtype: DTypeLike) -> bool:
    """Whether the kernel handles this problem: float32 data, padded `K x D` at most
    [MAX_PARTIAL_ENTRIES][jaxprob.pallas_kmeans.MAX_PARTIAL_ENTRIES].

    Args:
        n_clusters: `K`.
        n_features: `D`.
        dtype: the data's dtype.

    Returns:
        True when [lloyd_pass][jaxprob.pallas_kmeans.lloyd_pass] accepts the problem.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import pallas_kmeans
        >>> pallas_kmeans.supported(64, 16, jnp.float32), pallas_kmeans.supported(64, 16, jnp.float64)
        (True, False)
    """
    return jnp.dtype(dtype) == jnp.float32 and _pow2(n_clusters, 16) * _pow2(n_features, 16) <= MAX_PARTIAL_ENTRIES


class _Layout(NamedTuple):
    rows: int  # block_rows
    tile: int  # block_clusters
    k_pad: int
    d_pad: int
    segments: int  # grid axis 0 (parallel)
    steps: int  # grid axis 1 (sequential on a TPU; 1 elsewhere)
    sub_blocks: int  # blocks of `rows` rows per grid step (an in-kernel loop)

    @property
    def n_pad(self) -> int:
        return self.segments * self.steps * self.sub_blocks * self.rows


def _layout(n, k, d, block_rows, block_clusters, n_segments, platform) -> _Layout:
    k_pad, d_pad = _pow2(k, 16), _pow2(d, 16)
    rows = _pow2(block_rows, 16)
    tile = min(k_pad, _pow2(block_clusters, 16))
    n_blocks = -(-n // rows)
    if platform == "tpu":
        # a sequential grid axis over the blocks, accumulating in the resident output block
        segments = max(1, min(n_segments, n_blocks))
        return _Layout(rows, tile, k_pad, d_pad, segments, -(-n_blocks // segments), 1)
    # GPU (and interpret mode): every segment is one program looping over its blocks
    segments = max(1, min(n_segments, n_blocks))
    return _Layout(rows, tile, k_pad, d_pad, segments, 1, -(-n_blocks // segments))


def _kernel(lay: _Layout, precision):
    rows, tile, n_tiles = lay.rows, lay.tile, lay.k_pad // lay.tile
    dims_xc = (((1,), (1,)), ((), ()))  # x (rows, D) . c (tile, D) -> (rows, tile)
    dims_ex = (((0,), (0,)), ((), ()))  # onehot (rows, tile) . x (rows, D) -> (tile, D)

    def kernel(x_ref, w_ref, xsq_ref, c_ref, csq_ref, lab_ref, d_ref, sums_ref, cnt_ref):
        @pl.when(pl.program_id(1) == 0)
        def _():
            sums_ref[...] = jnp.zeros(sums_ref.shape, sums_ref.dtype)
            cnt_ref[...] = jnp.zeros(cnt_ref.shape, cnt_ref.dtype)

        def block(b, carry):
            r = pl.ds(pl.multiple_of(b * rows, rows), rows)
            xb = x_ref[r, :]
            wb = w_ref[r]

            def nearest(j, best_lab):
                best, lab = best_lab
                cols = pl.ds(pl.multiple_of(j * tile, tile), tile)
                dot = jax.lax.dot_general(xb, c_ref[cols, :], dims_xc, precision=precision)
                scores = csq_ref[cols][None, :] - 2.0 * dot
                t_min = jnp.min(scores, axis=1)
                t_arg = jnp.argmin(scores, axis=1).astype(jnp.int32) + j * tile
                better = t_min < best  # strict: an earlier tile keeps its tie
                return jnp.where(better, t_min, best), jnp.where(better, t_arg, lab)

            init = (jnp.full((rows,), jnp.inf, jnp.float32), jnp.zeros((rows,), jnp.int32))
            best, lab = jax.lax.fori_loop(0, n_tiles, nearest, init)
            lab_ref[r] = lab
            d_ref[r] = jnp.maximum(best + xsq_ref[r], 0.0)

            def add_sums(j, carry):
                cols = pl.ds(pl.multiple_of(j * tile, tile), tile)
                ids = j * tile + jax.lax.broadcasted_iota(jnp.int32, (rows, tile), 1)
                onehot = jnp.where(lab[:, None] == ids, wb[:, None], 0.0)
                part = jax.lax.dot_general(onehot, xb, dims_ex, precision=jax.lax.Precision.HIGHEST)
                sums_ref[0, cols, :] += part
                cnt_ref[0, cols] += jnp.sum(onehot, axis=0)
                return carry

            return jax.lax.fori_loop(0, n_tiles, add_sums, carry)

        jax.lax.fori_loop(0, lay.sub_blocks, block, 0)

    return kernel


def _lloyd_pass(x, w, c, x_sq, *, block_rows: int, block_clusters: int, n_segments: int, interpret: bool,
                platform: str | None = None) -> LloydPass:
    """The traceable pass (no validation): `x (n, D)`, `w (n,)`, `c (K, D)`, `x_sq (n,)` or None; float32."""
    n, d = x.shape
    k = c.shape[0]
    if platform is None:
        platform = "interpret" if interpret else jax.default_backend()
    lay = _layout(n, k, d, block_rows, block_clusters, n_segments, platform)
    if x_sq is None:
        x_sq = jnp.sum(jnp.square(x), axis=1)
    pad = lay.n_pad - n
    xp = jnp.pad(x, ((0, pad), (0, lay.d_pad - d)))
    wp = jnp.pad(w, (0, pad))
    sp = jnp.pad(x_sq, (0, pad))
    cp = jnp.pad(c, ((0, lay.k_pad - k), (0, lay.d_pad - d)))
    # padded centroids score +inf and are never the nearest
    csq = jnp.pad(jnp.sum(jnp.square(c), axis=1), (0, lay.k_pad - k), constant_values=jnp.inf)
    step_rows = lay.sub_blocks * lay.rows

    def rows_map(s, t):
        return (s * lay.steps + t, 0)

    def vec_map(s, t):
        return (s * lay.steps + t,)

    in_specs = [
        pl.BlockSpec((step_rows, lay.d_pad), rows_map),
        pl.BlockSpec((step_rows,), vec_map),
        pl.BlockSpec((step_rows,), vec_map),
        pl.BlockSpec((lay.k_pad, lay.d_pad), lambda s, t: (0, 0)),
        pl.BlockSpec((lay.k_pad,), lambda s, t: (0,)),
    ]
    out_specs = [
        pl.BlockSpec((step_rows,), vec_map),
        pl.BlockSpec((step_rows,), vec_map),
        pl.BlockSpec((1, lay.k_pad, lay.d_pad), lambda s, t: (s, 0, 0)),
        pl.BlockSpec((1, lay.k_pad), lambda s, t: (s, 0)),
    ]
    out_shape = [
        jax.ShapeDtypeStruct((lay.n_pad,), jnp.int32),
        jax.ShapeDtypeStruct((lay.n_pad,), jnp.float32),
        jax.ShapeDtypeStruct((lay.segments, lay.k_pad, lay.d_pad), jnp.float32),
        jax.ShapeDtypeStruct((lay.segments, lay.k_pad), jnp.float32),
    ]
    compiler_params = None
    if not interpret and platform == "tpu":
        from jax.experimental.pallas import tpu as pltpu

        compiler_params = pltpu.CompilerParams(dimension_semantics=("parallel", "arbitrary"))
    elif not interpret and platform == "gpu":
        from jax.experimental.pallas import triton as pltriton

        compiler_params = pltriton.CompilerParams(num_warps=4, num_stages=2)
    labels, dist, sums, counts = pl.pallas_call(
        _kernel(lay, numerics.matmul_precision()),
        out_shape=out_shape,
        grid=(lay.segments, lay.steps),
        in_specs=in_specs,
        out_specs=out_specs,
        interpret=interpret,
        compiler_params=compiler_params,
        name="jaxprob_lloyd_pass",
    )(xp, wp, sp, cp, csq)
    # the segments' partial sums are added in a fixed order (a plain reduction)
    return LloydPass(labels[:n], dist[:n], jnp.sum(sums, axis=0)[:k, :d], jnp.sum(counts, axis=0)[:k])


def lloyd_pass(x: ArrayLike, centroids: ArrayLike, *, sample_weight: ArrayLike | None = None,
               x_sq: ArrayLike | None = None, block_rows: int = 64, block_clusters: int = 64, n_segments: int = 512,
               interpret: bool | None = None) -> LloydPass:
    """One fused Lloyd pass: labels, squared distances, per-cluster weighted sums and weights.

    Compiled on a GPU or TPU; elsewhere (a CPU) it runs in Pallas interpret mode, which is slow and meant for
    tests. Usable inside `jit` (only shapes and dtypes are checked).

    Args:
        x: `(n, D)` float32 samples.
        centroids: `(K, D)`.
        sample_weight: optional `(n,)` non-negative weights (default ones).
        x_sq: optional `(n,)` squared norms of the rows of `x`, when the caller already has them.
        block_rows: rows per block (rounded up to a power of two, at least 16).
        block_clusters: centroids per tile of the distance block (a power of two, at least 16, at most the
            padded `K`).
        n_segments: number of row segments, one program each; their partial sums are added at the end.
        interpret: run in Pallas interpret mode; default: only where JAX's default backend is neither a GPU nor a
            TPU.

    Returns:
        A [LloydPass][jaxprob.pallas_kmeans.LloydPass].

    Raises:
        ValueError / TypeError: naming the argument, for wrong ranks, mismatched features, a dtype other than
            float32 or a problem larger than [MAX_PARTIAL_ENTRIES][jaxprob.pallas_kmeans.MAX_PARTIAL_ENTRIES].

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import pallas_kmeans
        >>> x = jnp.array([[0.0], [1.0], [9.0], [11.0]])
        >>> out = pallas_kmeans.lloyd_pass(x, jnp.array([[0.0], [10.0]]))
        >>> out.labels.tolist(), out.sums.ravel().tolist(), out.counts.tolist()
        ([0, 0, 1, 1], [1.0, 20.0], [2.0, 2.0])
    """
    x = as_float_array(x, "x", 2)
    c = as_float_array(centroids, "centroids", 2)
    if c.shape[1] != x.shape[1]:
        raise ValueError(f"`centroids` has {c.shape[1]} features but `x` has {x.shape[1]}")
    if not supported(c.shape[0], x.shape[1], x.dtype):
        raise ValueError(f"the fused pass takes float32 data with a padded K x D of at most {MAX_PARTIAL_ENTRIES}, "
                         f"got {x.dtype} with K={c.shape[0]}, D={x.shape[1]}")
    c = c.astype(x.dtype)
    if sample_weight is None:
        w = jnp.ones((x.shape[0],), x.dtype)
    else:
        w = as_float_array(sample_weight, "sample_weight", 1, dtype=x.dtype)
        if w.shape[0] != x.shape[0]:
            raise ValueError(f"`sample_weight` must have shape ({x.shape[0]},), got {tuple(w.shape)}")
    block_rows = check_int(block_rows, "block_rows", minimum=1)
    block_clusters = check_int(block_clusters, "block_clusters", minimum=1)
    n_segments = check_int(n_segments, "n_segments", minimum=1)
    if interpret is None:
        interpret = jax.default_backend() not in ("gpu", "tpu")
    if x_sq is not None:
        x_sq = as_float_array(x_sq, "x_sq", 1, dtype=x.dtype)
        if x_sq.shape[0] != x.shape[0]:
            raise ValueError(f"`x_sq` must have shape ({x.shape[0]},), got {tuple(x_sq.shape)}")
    return _lloyd_pass(x, w, c, x_sq, block_rows=block_rows, block_clusters=block_clusters, n_segments=n_segments,
                       interpret=bool(interpret))
