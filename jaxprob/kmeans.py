r"""k-means: seeding (k-means++ and random points), Lloyd iterations, restarts and mini-batch k-means.

The objective is the (weighted) *inertia*, the sum of squared distances of the samples to their closest
centroid,

$$
J(c, z) = \sum_{i=1}^n w_i \lVert x_i - c_{z_i} \rVert^2 .
$$

**Seeding.** k-means++ (Arthur and Vassilvitskii, 2007) picks the first centre with probability proportional
to
the sample weight, then each next centre with probability proportional to $w_i D(x_i)^2$, the weighted
squared distance to the closest centre already chosen. The *greedy* variant draws `n_local_trials`
candidates at
each step and keeps the one that lowers the potential $\sum_i w_i D(x_i)^2$ the most
(`n_local_trials = 2 + floor(log K)` by default, as in scikit-learn).

**Lloyd's algorithm** alternates the assignment $z_i = \arg\min_k \lVert x_i - c_k\rVert^2$ (distances
as
$\lVert x\rVert^2 - 2 x^\top c + \lVert c\rVert^2$, one matrix product) and the update
$c_k = \sum_{i: z_i = k} w_i x_i / \sum_{i: z_i = k} w_i$ (segment sums). Neither step can
increase $J$. [`fit`][jaxprob.kmeans.fit] runs it inside one `lax.while_loop` and `n_init` restarts in one compiled
program (`lax.map`, vmapped in groups of `restart_batch`). When the `n x K` distance matrix would be
large the samples are processed in chunks of rows (`lax.scan`), so memory grows as `chunk_size x K`
rather than `n x K`.

**Precision of the assignments.** Inside the iterations the label of a sample travels in the low
`ceil(log2 K)` mantissa bits of its distances, so that one min reduction gives the closest centroid and its
index at once (1.5x faster per step than a second reduction for the index). Distances are then compared to
`nmant - ceil(log2 K)` significant bits (17 of float32's 23 with `K = 64`, 46 of float64's 52), and ties
at that precision go to the lowest index; float32 with `K > 256` keeps the two reductions. The labels and
inertia that [`fit`][jaxprob.kmeans.fit] returns, and those of [`predict`][jaxprob.kmeans.predict] and
[`inertia`][jaxprob.kmeans.inertia], come from a separate pass at full precision on the returned centroids.

**Empty clusters.** A cluster that receives no weight is moved onto the sample farthest from its own centroid
(the second empty one onto the second farthest, ...), and that sample is taken out of its former cluster, as
in
scikit-learn. This cannot increase $J$, never produces a NaN centroid, and is counted in the info.

**Scale.** Squared distances square the data: float32 values beyond about $2^{32}$ (or below $2^{-31}$)
overflow to infinity (or lose their precision in subnormals) once squared and summed. The public functions
therefore run on the data multiplied by a power of two $2^{-e}$ bringing the largest magnitude into $[1/2, 1)$
whenever it lies outside that range ($2^{\pm 256}$ in float64), and multiply the results back. Multiplying by a
power of two is exact and Lloyd's algorithm commutes with it, so the labels and centroids are those of the
unscaled problem computed without overflow. An inertia that is not finite in the dtype after scaling back is
reported, with `converged=False`, by `info.nonfinite`. The pure kernels ([assign][jaxprob.kmeans.assign],
[squared_distances][jaxprob.kmeans.squared_distances], the seeding kernels) do not rescale.

**Mini-batch k-means** (Sculley, 2010) updates each centroid towards the mean of the batch samples assigned
to it
with a per-centroid learning rate $\eta_k = b_k / N_k$ (batch weight over cumulated weight), see
[`fit_minibatch`][jaxprob.kmeans.fit_minibatch] and [`minibatch_step`][jaxprob.kmeans.minibatch_step].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from jaxprob import numerics, pallas_kmeans
from jaxprob._validation import (
    as_float_array,
    check_choice,
    check_finite,
    check_int,
    check_key,
    check_sample_weight,
    is_tracer,
)

__all__ = [
    "INIT_METHODS",
    "KMeans",
    "KMeansInfo",
    "MiniBatchState",
    "kmeans_plusplus",
    "kmeans_plusplus_uniforms",
    "kmeans_plusplus_from_uniforms",
    "kmeans_plusplus_refined",
    "default_local_trials",
    "random_centroids",
    "init",
    "squared_distances",
    "assign",
    "lloyd_step",
    "fit",
    "predict",
    "transform",
    "inertia",
    "minibatch_init",
    "minibatch_step",
    "fit_minibatch",
]

INIT_METHODS = ("kmeans++", "random")
"""Seedings of k-means: greedy k-means++ or distinct samples drawn by weight."""

# The n x K distance matrix is computed chunk by chunk (rows) under lax.scan: memory then grows as chunk x K, not
# n x K. On a CPU the automatic chunk holds about 2**19 entries (2 MiB in float32), which stays in the L2/L3 caches
# while keeping the number of scan steps (each with its own small matrix product and scatter) low. Measured on a
# 2-core CPU at N=1M, D=16, K=64: 1,024-row chunks 0.11 s per Lloyd step, 4,096 to 16,384 rows 0.054-0.058 s,
# 65,536 rows 0.11 s (benchmarks/bench_kmeans.py --chunks).
_CHUNK_ENTRIES = 2**19
# A matrix of at most 2**20 entries (4 MiB in float32) is computed whole: a scan of two chunks costs more per
# Lloyd step than one pass (session 5, Intel Xeon, 2 cores, marginal ms per step, one chunk against the chunks of
# the rule above: N=100k D=2 K=8 1.05 vs 1.52; 60k x 16, K=16 1.20 vs 1.80; 200k x 4, K=4 1.77 vs 2.52; 30k x 8,
# K=32 0.79 vs 0.99).
_WHOLE_ENTRIES = 2**20


class _BackendChoices(NamedTuple):
    """What the k-means passes do on one backend (static: read when a program is traced).

    Attributes:
        chunk_entries: target entries of one chunk of the distance matrix (see `_chunk_rows`).
        whole_entries: a distance matrix of at most this many entries is computed in one piece.
        pack: carry the labels in the low mantissa bits of the distances in the Lloyd passes (one min reduction
            instead of two, see `_packed_assign`).
        pallas: run the Lloyd passes with the fused Pallas kernel of [jaxprob.pallas_kmeans][] (distances, arg
            min and per-cluster sums in one pass over the data, no chunk x K matrix in memory).
    """

    chunk_entries: int
    whole_entries: int
    pack: bool
    pallas: bool


# CPU: the measured choices above. GPU and TPU: a scan step costs at least a kernel launch and the matrix units want
# large operands, so chunks are 64 times larger (128 MiB of float32 distances); the labels come from two plain
# reductions (bit packing exists to spare a CPU reduction that XLA does not vectorise); the fused Pallas kernel is
# off until it has been measured against this path on the device (docs/accelerators.md lists what is open).
_BACKENDS = {
    "cpu": _BackendChoices(_CHUNK_ENTRIES, _WHOLE_ENTRIES, pack=True, pallas=False),
    "gpu": _BackendChoices(2**25, 2**26, pack=False, pallas=False),
    "tpu": _BackendChoices(2**25, 2**26, pack=False, pallas=False),
}


def _choices() -> _BackendChoices:
    """The choices for JAX's default backend (shapes must be static, so the default backend decides them)."""
    return _BACKENDS.get(jax.default_backend(), _BACKENDS["gpu"])


class KMeans(NamedTuple):
    r"""A fitted k-means model (a pytree of arrays): what `fit` returns and `predict` / `transform` / `inertia`
    take (they also take bare `(K, D)` centroids).

    Attributes:
        centroids: a fitted [KMeans][jaxprob.kmeans.KMeans] model, or `(K, D)` centroids.
        labels: `(n,)` int32 index of the closest centroid of every sample (computed from `centroids`).
        inertia: scalar $\sum_i w_i \lVert x_i - c_{z_i}\rVert^2$ of `centroids` and `labels`.
    """

    centroids: jax.Array
    labels: jax.Array
    inertia: jax.Array


class KMeansInfo(NamedTuple):
    """Diagnostics returned by [`fit`][jaxprob.kmeans.fit] and [`fit_minibatch`][jaxprob.kmeans.fit_minibatch] (a
pytree of arrays).

    Attributes:
        converged: bool, the assignments were stable or the squared centroid shift fell below the tolerance
            before `max_iter`.
        n_iter: number of iterations (Lloyd steps or mini-batch steps) run.
        inertia_trace: `(max_iter,)` inertia of the centroids at the start of every iteration (for
            mini-batch k-means: the batch inertia divided by the batch weight); NaN after `n_iter`.
        n_relocated: total number of empty-cluster relocations over all iterations.
        empty_clusters: `(K,)` bool, clusters holding no (positive) weight in the returned `labels`: this
            happens when `K` exceeds the number of distinct samples (the returned centroids then include
            duplicates), never with `K` distinct points.
        restart_inertias: `(n_init,)` final inertia of every restart (different seeds reach different local
            minima).
        best_restart: index of the restart that was kept (lowest inertia).
        nonfinite: bool, the returned inertia (or a centroid) is not finite in the dtype of `x`: the data is so
            large that its squared distances overflow even though every value is finite. The iterations run on
            the data rescaled by a power of two (see "Scale" in the module notes), so the centroids and labels
            are right, but `converged` is then always False: a non-finite objective is never reported as
            converged.
    """

    converged: jax.Array
    n_iter: jax.Array
    inertia_trace: jax.Array
    n_relocated: jax.Array
    empty_clusters: jax.Array
    restart_inertias: jax.Array
    best_restart: jax.Array
    # a default so that drivers building a KMeansInfo of their own (jaxprob.scale) need not set it
    nonfinite: jax.Array = np.False_


class MiniBatchState(NamedTuple):
    """State of mini-batch k-means (a pytree).

    Attributes:
        centroids: a fitted [KMeans][jaxprob.kmeans.KMeans] model, or `(K, D)` centroids.
        counts: `(K,)` cumulated weight of the samples assigned to each centroid so far.
    """

    centroids: jax.Array
    counts: jax.Array


# ----------------------------------------------------------------------------------------------------------
# distances and seeding
# ----------------------------------------------------------------------------------------------------------
def _sq_dist(x, x_sq, c):
    """(n, m) squared Euclidean distances from rows of x to rows of c, with ||x||^2 precomputed; clipped at
    0."""
    c_sq = jnp.sum(jnp.square(c), axis=-1)
    return jnp.maximum(x_sq[:, None] - 2.0 * numerics.matmul(x, c.T) + c_sq[None, :], 0.0)


def squared_distances(x: ArrayLike, centroids: ArrayLike, *, x_sq: ArrayLike | None = None) -> jax.Array:
    r"""Squared Euclidean distances $\lVert x_i - c_k \rVert^2 = \lVert x_i\rVert^2 - 2 x_i^\top c_k
    + \lVert c_k\rVert^2$, computed with one matrix product (clipped at 0).

    Pure and usable inside `jit` / `vmap` (only the ranks and shapes are checked on traced arguments).

    Args:
        x: `(n, D)` samples.
        centroids: `(K, D)`.
        x_sq: optional `(n,)` squared norms of the rows of `x`, when the caller already has them.

    Returns:
        `(n, K)` non-negative squared distances, in the dtype of `x`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import squared_distances
        >>> squared_distances(jnp.array([[0.0, 0.0]]), jnp.array([[3.0, 4.0]])).tolist()
        [[25.0]]
    """
    x = as_float_array(x, "x", 2)
    centroids = as_float_array(centroids, "centroids", 2)
    if centroids.shape[1] != x.shape[1]:
        raise ValueError(f"`centroids` has {centroids.shape[1]} features but `x` has {x.shape[1]}")
    if x_sq is None:
        x_sq = jnp.sum(jnp.square(x), axis=-1)
    return _sq_dist(x, x_sq, centroids.astype(x.dtype))


def _inverse_cdf(cdf, u):
    """Indices `i` with `cdf[i-1] <= u * cdf[-1] < cdf[i]` for uniforms `u` of any shape (entries of
    probability 0 are never drawn). Counting `cdf <= target` is one fused reduction: it compiles to less code
    than a binary search."""
    target = u * cdf[-1]
    hit = cdf <= target[..., None]
    if cdf.shape[0] < 2**24:  # a float count is exact here; XLA on CPU hands float sums to a library kernel
        idx = jnp.sum(hit.astype(cdf.dtype), axis=-1).astype(jnp.int32)
    else:
        idx = jnp.sum(hit, axis=-1, dtype=jnp.int32)
    return jnp.minimum(idx, cdf.shape[0] - 1)


def _kpp_uniforms(key, n_restarts: int, n_clusters: int, n_local_trials: int, dtype):
    """All the uniforms k-means++ needs for `n_restarts` restarts, `(n_restarts, K, n_local_trials)`, in one
    draw: `u[r, 0, 0]` picks the first centre of restart `r` and `u[r, c]` the candidates of its centre
    `c`. A 1-D draw reshaped: the generator compiles about twice as fast as for a 3-D shape."""
    u = jax.random.uniform(key, (n_restarts * n_clusters * n_local_trials,), dtype)
    return u.reshape(n_restarts, n_clusters, n_local_trials)


def kmeans_plusplus_uniforms(n_restarts: int, n_clusters: int, n_local_trials: int, dtype: DTypeLike = jnp.float32, *,
                             key: jax.Array) -> jax.Array:
    """All the uniform draws that greedy k-means++ needs for `n_restarts` restarts, in one draw.

    Restart `r` of [kmeans_plusplus_from_uniforms][jaxprob.kmeans.kmeans_plusplus_from_uniforms] takes `u[r]`:
    `u[r, 0, 0]` picks its first centre and `u[r, c]` the candidates of its centre `c`. Drawing them together lets
    a caller run many restarts (or models) from one key without splitting it.

    Args:
        key: a JAX PRNG key.
        n_restarts: number of restarts.
        n_clusters: `K`.
        n_local_trials: candidates per step, e.g. `default_local_trials(K)`.
        dtype: floating dtype of the draws (that of the data).

    Returns:
        `(n_restarts, K, n_local_trials)` uniforms in $[0, 1)$.

    Examples:
        >>> import jax
        >>> from jaxprob import kmeans
        >>> kmeans.kmeans_plusplus_uniforms(2, 3, 4, key=jax.random.key(0)).shape
        (2, 3, 4)
    """
    check_key(key)
    n_restarts = check_int(n_restarts, "n_restarts", minimum=1)
    n_clusters = check_int(n_clusters, "n_clusters", minimum=1)
    n_local_trials = check_int(n_local_trials, "n_local_trials", minimum=1)
    return _kpp_uniforms(key, n_restarts, n_clusters, n_local_trials, dtype)


def kmeans_plusplus_from_uniforms(u: ArrayLike, x: ArrayLike, weights: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Greedy weighted k-means++ driven by given uniform draws: a pure kernel with no random-number generator.

    The same uniforms give the same centres; [kmeans_plusplus][jaxprob.kmeans.kmeans_plusplus] is this function on
    `kmeans_plusplus_uniforms(key, 1, K, n_local_trials)[0]`. Usable inside `jit` / `vmap` (no value checks).

    Args:
        u: `(K, n_local_trials)` uniforms in $[0, 1)$, one restart's entry of
            [kmeans_plusplus_uniforms][jaxprob.kmeans.kmeans_plusplus_uniforms].
        x: `(n, D)` samples.
        weights: `(n,)` non-negative sample weights, not all zero.

    Returns:
        `(centers, indices)`: `(K, D)` centres (rows of `x`) and their `(K,)` int32 row indices.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import kmeans
        >>> x = jnp.array([[0.0], [0.1], [10.0], [10.1]])
        >>> u = kmeans.kmeans_plusplus_uniforms(1, 2, 3, key=jax.random.key(0))[0]
        >>> centers, idx = kmeans.kmeans_plusplus_from_uniforms(u, x, jnp.ones(4))
        >>> sorted(float(c[0]) > 5 for c in centers)
        [False, True]
    """
    x = as_float_array(x, "x", 2)
    u = as_float_array(u, "u", 2, dtype=x.dtype)
    weights = as_float_array(weights, "weights", 1, dtype=x.dtype)
    if weights.shape[0] != x.shape[0]:
        raise ValueError(f"`weights` must have shape ({x.shape[0]},) to match x, got {tuple(weights.shape)}")
    return _kmeans_plusplus_u(u, x, weights)


def default_local_trials(n_clusters: int) -> int:
    r"""Greedy k-means++ candidates per step by default: $2 + \lfloor \ln K \rfloor$ (as scikit-learn).

    Args:
        n_clusters: `K`, at least 1.

    Returns:
        The number of candidates.

    Examples:
        >>> from jaxprob import kmeans
        >>> kmeans.default_local_trials(1), kmeans.default_local_trials(64)
        (2, 6)
    """
    return _default_trials(check_int(n_clusters, "n_clusters", minimum=1))


def _kmeans_plusplus(key, x, weights, n_clusters: int, n_local_trials: int):
    """Greedy weighted k-means++; returns (centers (K, D), indices (K,)). Pure, jittable, vmappable."""
    return _kmeans_plusplus_u(_kpp_uniforms(key, 1, n_clusters, n_local_trials, x.dtype)[0], x, weights)


def _kmeans_plusplus_u(u, x, weights):
    """k-means++ driven by the uniforms `u` of shape `(K, n_local_trials)` (see `_kpp_uniforms`): the
    loop body holds no random-number generator. The first centre is drawn by the same loop body (step 0 samples
    by weight and keeps its first candidate), so that the inverse-CDF code is compiled once."""
    n_clusters = u.shape[0]
    x_sq = jnp.sum(jnp.square(x), axis=-1)
    w_prob = weights / jnp.sum(weights)

    def body(c, carry):
        indices, closest = carry
        first = c == 0
        potential = weights * jnp.where(first, 1.0, closest)  # step 0 samples by weight (closest is inf)
        total = jnp.sum(potential)
        # when every point coincides with a chosen centre the D^2 distribution is undefined: fall back to
        # weights
        probs = jnp.where(total > 0, potential, w_prob)
        candidates = _inverse_cdf(jnp.cumsum(probs), u[c])
        d_cand = jnp.minimum(closest[:, None], _sq_dist(x, x_sq, x[candidates]))
        best = jnp.where(first, 0, jnp.argmin(jnp.sum(weights[:, None] * d_cand, axis=0)))
        return indices.at[c].set(candidates[best]), d_cand[:, best]

    init = (jnp.zeros((n_clusters,), jnp.int32), jnp.full(x.shape[:1], jnp.inf, x.dtype))
    indices, _ = jax.lax.fori_loop(0, n_clusters, body, init)
    return x[indices], indices


def _random_centroids(key, x, weights, n_clusters: int):
    """K distinct sample indices drawn without replacement with probability proportional to the weights."""
    idx = jax.random.choice(key, x.shape[0], shape=(n_clusters,), replace=False, p=weights / jnp.sum(weights))
    return x[idx], idx.astype(jnp.int32)


def _check_x(x, name="x"):
    x = as_float_array(x, name, 2)
    check_finite(x, name)
    if x.shape[0] < 1:
        raise ValueError(f"`{name}` must hold at least one sample, got shape {tuple(x.shape)}")
    if x.shape[1] < 1:
        raise ValueError(f"`{name}` must have at least one feature (D >= 1), got shape {tuple(x.shape)}")
    return x


def _scale_for(x):
    """The power of two $2^{-e}$ that brings max |x| into [1/2, 1) when it lies outside the range where squared
    distances neither overflow nor underflow (`None`: no rescaling). On traced data, an array that is 1 inside
    that range. `e` is clipped so that both $2^{-e}$ and $2^e$ are normal numbers (exact to multiply by)."""
    fi = jnp.finfo(x.dtype)
    lo, hi = fi.minexp // 4, fi.maxexp // 4
    if is_tracer(x):
        e = jnp.frexp(jnp.max(jnp.abs(x)))[1]
        e = jnp.where((e > hi) | (e < lo), jnp.clip(e, fi.minexp, -fi.minexp), 0)
        return jax.lax.stop_gradient(jnp.ldexp(jnp.ones((), x.dtype), -e))
    m = float(np.max(np.abs(np.asarray(x))))
    e = math.frexp(m)[1]
    if m == 0.0 or lo <= e <= hi:
        return None
    return np.asarray(2.0 ** -min(max(e, fi.minexp), -fi.minexp), x.dtype)


@jax.jit
def _times(a, s):
    return a * s


@jax.jit
def _times_sq(a, s):
    """`a` times `s` squared, as two products: `s * s` may overflow where the result does not."""
    return a * s * s


def _scale_for_pair(x, c):
    """`_scale_for` of the samples and centroids together."""
    if is_tracer(x) or is_tracer(c):
        return _scale_for(jnp.concatenate([x, c]))
    m = np.maximum(np.max(np.abs(np.asarray(x)), axis=0), np.max(np.abs(np.asarray(c)), axis=0))
    return _scale_for(m[None])


def _scaled(s, *arrays):
    """The arrays times the power of two `s` (unchanged when `s` is None)."""
    return tuple(a if s is None or a is None else _times(a, s) for a in arrays)


def _check_seeding_args(key, x, n_clusters, sample_weight):
    check_key(key)
    x = _check_x(x)
    n_clusters = check_int(n_clusters, "n_clusters", minimum=1, maximum=x.shape[0])
    w = check_sample_weight(sample_weight, x.shape[0], x.dtype)
    return x, n_clusters, w


def _default_trials(n_clusters):
    return 2 + int(math.log(n_clusters))


def kmeans_plusplus(x: ArrayLike, n_clusters: int, *, key: jax.Array, sample_weight: ArrayLike | None = None,
                    n_local_trials: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Greedy k-means++ seeding.

    Args:
        key: a JAX PRNG key.
        x: `(n, D)` samples.
        n_clusters: number of centres `K` (`1 <= K <= n`).
        sample_weight: optional `(n,)` non-negative weights (a point of weight 0 is never chosen
            while a point of positive weight remains at positive distance).
        n_local_trials: candidates per step; default `2 + floor(log K)`.

    Returns:
        `(centers, indices)`: `(K, D)` centres and the `(K,)` indices of the chosen samples.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import kmeans_plusplus
        >>> x = jnp.array([[0.0, 0.0], [0.1, 0.0], [10.0, 10.0], [10.1, 10.0]])
        >>> centers, idx = kmeans_plusplus(x, 2, key=jax.random.key(0))
        >>> sorted(float(c[0]) > 5 for c in centers)
        [False, True]
    """
    x, n_clusters, w = _check_seeding_args(key, x, n_clusters, sample_weight)
    if n_local_trials is None:
        n_local_trials = _default_trials(n_clusters)
    n_local_trials = check_int(n_local_trials, "n_local_trials", minimum=1)
    scale = _scale_for(x)
    centers, idx = _kmeans_plusplus_jit(key, *_scaled(scale, x), w, n_clusters, n_local_trials)
    return (centers if scale is None else x[idx]), idx


def random_centroids(x: ArrayLike, n_clusters: int, *, key: jax.Array,
                     sample_weight: ArrayLike | None = None) -> tuple[jax.Array, jax.Array]:
    """Random initial centres: `K` distinct samples drawn with probability proportional to their weight.

    Args:
        key: a JAX PRNG key.
        x: `(n, D)` samples.
        n_clusters: number of centres `K` (`1 <= K <= n`).
        sample_weight: optional `(n,)` non-negative weights.

    Returns:
        `(centers, indices)`: `(K, D)` and `(K,)`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import random_centroids
        >>> centers, idx = random_centroids(jnp.arange(10.0)[:, None], 3, key=jax.random.key(0))
        >>> centers.shape, len(set(idx.tolist()))
        ((3, 1), 3)
    """
    x, n_clusters, w = _check_seeding_args(key, x, n_clusters, sample_weight)
    return _random_centroids_jit(key, x, w, n_clusters)


_kmeans_plusplus_jit = jax.jit(_kmeans_plusplus, static_argnums=(3, 4))
_random_centroids_jit = jax.jit(_random_centroids, static_argnums=(3,))


def _seed(key, x, w, n_clusters, method, n_local_trials):
    if method == "kmeans++":
        return _kmeans_plusplus(key, x, w, n_clusters, n_local_trials)[0]
    return _random_centroids(key, x, w, n_clusters)[0]


def init(
    x: ArrayLike,
    n_clusters: int,
    *,
    key: jax.Array,
    init_method: str = "kmeans++",
    sample_weight: ArrayLike | None = None,
    n_local_trials: int | None = None,
) -> jax.Array:
    """Initial centroids from an explicit key: greedy k-means++ (`"kmeans++"`) or random samples
    (`"random"`).

    Args:
        key: a JAX PRNG key.
        x: `(n, D)` samples.
        n_clusters: `K`, between 1 and `n`.
        init_method: one of `INIT_METHODS`.
        sample_weight: optional `(n,)` non-negative weights.
        n_local_trials: k-means++ candidates per step; default `2 + floor(log K)`.

    Returns:
        `(K, D)` centroids (rows of `x`).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import kmeans
        >>> kmeans.init(jnp.arange(8.0).reshape(4, 2), 2, init_method="random", key=jax.random.key(0)).shape
        (2, 2)
    """
    check_choice(init_method, "init_method", INIT_METHODS)
    method = init_method
    x, n_clusters, w = _check_seeding_args(key, x, n_clusters, sample_weight)
    trials = _check_trials(n_local_trials, n_clusters)
    scale = _scale_for(x) if method == "kmeans++" else None  # random draws use no distance
    c = _init_jit(key, *_scaled(scale, x), w, n_clusters, method, trials)
    return c if scale is None else _times(c, 1 / scale)


def _check_trials(n_local_trials, n_clusters):
    if n_local_trials is None:
        return _default_trials(n_clusters)
    return check_int(n_local_trials, "n_local_trials", minimum=1)


_init_jit = jax.jit(_seed, static_argnums=(3, 4, 5))


# ----------------------------------------------------------------------------------------------------------
# the chunked assignment pass (the seam shared by Lloyd, mini-batch, predict and inertia)
# ----------------------------------------------------------------------------------------------------------
def _chunk_rows(n: int, k: int, chunk_size: int | None) -> int:
    """Rows per chunk: `chunk_size` if given; else all `n` rows when `n * K` is at most the backend's
    `whole_entries`, otherwise at most `chunk_entries / K` rows (at least 256), preferably a divisor of `n`
    no smaller than half of that (the data then reshapes into chunks without a padded copy); at most n."""
    if chunk_size is None:
        choices = _choices()
        target = max(256, choices.chunk_entries // k)
        if target >= n or n * k <= choices.whole_entries:
            return n
        return next((c for c in range(target, target // 2 - 1, -1) if n % c == 0), target)
    return max(1, min(int(chunk_size), n))


def _pad_chunks(x, w, chunk: int):
    """Reshape (n, D) / (n,) to (n_chunks, chunk, D) / (n_chunks, chunk); padded rows are zeros of weight
    0."""
    n = x.shape[0]
    n_chunks = -(-n // chunk)
    pad = n_chunks * chunk - n
    if pad:
        x = jnp.concatenate([x, jnp.zeros((pad, x.shape[1]), x.dtype)])
        w = jnp.concatenate([w, jnp.zeros((pad,), w.dtype)])
    return x.reshape(n_chunks, chunk, x.shape[1]), w.reshape(n_chunks, chunk)


# In the Lloyd passes the label of a row is carried in the low mantissa bits of its distances (see
# _packed_assign): one min reduction then gives the minimum and its index together. The comparison keeps at
# least this many significant mantissa bits; when ceil(log2 K) leaves fewer (float32 with K > 256, float16),
# the label is found by a second reduction instead.
_PACK_KEEP_BITS = 15
_INT_OF_WIDTH = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}


def _index_bits(k: int) -> int:
    return max(1, math.ceil(math.log2(k)))


def _packable(k: int, dtype) -> bool:
    fi = jnp.finfo(dtype)
    return fi.bits // 8 in _INT_OF_WIDTH and _index_bits(k) <= fi.nmant - _PACK_KEEP_BITS


def _packed_assign(xb, c, c_sq, x_sq):
    """Labels and squared distances of the rows of one block by one min reduction.

    The distances `||x||^2 - 2 x.c + ||c||^2` are clipped to [smallest normal, largest finite], where the
    bit patterns of floats are ordered as their values; the low `b = ceil(log2 K)` mantissa bits of each are
    replaced by the column index, and the row minimum of these floats holds both the (truncated) minimum and
    its index. Distances are thus compared to `nmant - b` significant bits (17 in float32 with K = 64), ties
    at that precision going to the lowest index; the returned distance is the truncated one, at most
    `2**(b - nmant)` relative below (0 when it was clipped to the smallest normal). Measured at N=1M, D=16,
    K=64 on a 2-core CPU: 41 ms per Lloyd pass against 62 ms for a min and a second, label, reduction (XLA
    hands the product and the min reduction to its library kernels, not the label selection)."""
    dtype = xb.dtype
    fi = jnp.finfo(dtype)
    itype = _INT_OF_WIDTH[fi.bits // 8]
    low = (1 << _index_bits(c.shape[0])) - 1
    d = jnp.clip(x_sq[:, None] + c_sq[None, :] - 2.0 * numerics.matmul(xb, c.T), fi.tiny, fi.max)
    bits = jax.lax.bitcast_convert_type(d, itype)
    ids = jnp.arange(c.shape[0], dtype=itype)
    packed = jax.lax.bitcast_convert_type((bits & ~low) | ids[None, :], dtype)
    m = jax.lax.bitcast_convert_type(jnp.min(packed, axis=1), itype)
    best = jax.lax.bitcast_convert_type(m & ~low, dtype)
    return (m & low).astype(jnp.int32), jnp.where(best > fi.tiny, best, 0.0)


def _assign_block(xb, c, c_sq, exact: bool, x_sq):
    """Labels (lowest index among ties) and squared distances of the rows of one block (`x_sq`: the rows'
    squared norms, used when not `exact`). Not `exact` (the Lloyd passes): by `_packed_assign` when
    `K` allows it and the backend packs labels."""
    if not exact and _choices().pack and _packable(c.shape[0], xb.dtype):
        return _packed_assign(xb, c, c_sq, x_sq)
    # the minimum of ||c||^2 - 2 x.c is found by a plain min reduction and the label as the smallest index
    # reaching it, a second min reduction over the indices held as floats (exact below 2^24): XLA on CPU runs
    # float min reductions vectorised, integer ones and a variadic argmin several times slower.
    # How XLA fuses the two reductions depends on the form of the test. Measured on CPU (N=1M, D=16, K=64): when
    # ``best`` is used only here (the exact pass), ``scores <= best`` runs twice as slowly as ``scores - best <= 0``
    # (the broadcast of ``best`` is fused into the first reduction); when ``best`` also gives the distances (the
    # Lloyd pass), it is the other way round. Both tests select the same entries.
    scores = c_sq[None, :] - 2.0 * numerics.matmul(xb, c.T)
    best = jnp.min(scores, axis=1)
    ids = jnp.arange(c.shape[0], dtype=scores.dtype)
    hit = (scores - best[:, None] <= 0) if exact else (scores <= best[:, None])
    labels = jnp.min(jnp.where(hit, ids[None, :], c.shape[0] - 1), axis=1).astype(jnp.int32)
    if exact:  # no cancellation: used for the returned inertia
        d = jnp.sum(jnp.square(xb - c[labels]), axis=1)
    else:
        d = jnp.maximum(best + x_sq, 0.0)
    return labels, d


def assign(x: ArrayLike, centroids: ArrayLike, *, exact: bool = True,
           x_sq: ArrayLike | None = None) -> tuple[jax.Array, jax.Array]:
    """Labels and squared distances of a block of samples: the assignment step of Lloyd's algorithm.

    A pure kernel, usable inside `jit`, `vmap` and `shard_map` (only ranks and shapes are checked); the drivers in
    [jaxprob.scale][] assign their shards with it, so that every k-means in the library labels a sample alike.

    Args:
        x: `(n, D)` samples.
        centroids: `(K, D)`.
        exact: `True` (default): distances summed from the differences $x_i - c_{z_i}$ (no cancellation), as
            the labels and inertia that [fit][jaxprob.kmeans.fit] returns. `False`: as inside the Lloyd
            iterations, distances from the expanded form with distances compared to fewer mantissa bits (see
            "Precision of the assignments" in the module notes); faster.
        x_sq: `(n,)` squared norms of the rows of `x`, used when not `exact` (computed when not given).

    Returns:
        `(labels, distances)`: `(n,)` int32 index of the closest centroid (the lowest index among ties) and the
        `(n,)` squared distance to it.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import kmeans
        >>> labels, d = kmeans.assign(jnp.array([[0.0], [4.0]]), jnp.array([[1.0], [5.0]]))
        >>> labels.tolist(), d.tolist()
        ([0, 1], [1.0, 1.0])
    """
    x = as_float_array(x, "x", 2)
    c = as_float_array(centroids, "centroids", 2, dtype=x.dtype)
    if c.shape[1] != x.shape[1]:
        raise ValueError(f"`centroids` has {c.shape[1]} features but `x` has {x.shape[1]}")
    if not exact and x_sq is None:
        x_sq = jnp.sum(jnp.square(x), axis=-1)
    return _assign_block(x, c, jnp.sum(jnp.square(c), axis=-1), bool(exact), x_sq)


def _pass(xr, wr, c, update: bool, exact: bool = False, x_sq=None):
    """One pass over chunked data: labels (n_pad,), per-sample squared distance (n_pad,), inertia and, when
    `update`, the per-cluster weighted sums (K, D) and weights (K,). `x_sq`: the rows' squared norms, chunked
    like `wr`, when known (Lloyd iterations compute them once)."""
    k = c.shape[0]
    if x_sq is None:
        x_sq = jnp.sum(jnp.square(xr), axis=-1)
    if update and not exact and _choices().pallas and pallas_kmeans.supported(k, xr.shape[2], xr.dtype):
        # one fused pass over all rows (the kernel blocks the rows itself): no chunk x K matrix in memory
        n_pad = xr.shape[0] * xr.shape[1]
        wf = wr.reshape(n_pad)
        out = pallas_kmeans.lloyd_pass(xr.reshape(n_pad, xr.shape[2]), c, sample_weight=wf, x_sq=x_sq.reshape(n_pad))
        return out.labels, out.distances, jnp.sum(wf * out.distances), out.sums, out.counts
    c_sq = jnp.sum(jnp.square(c), axis=-1)

    def block(xb, wb, sb):
        labels, d = _assign_block(xb, c, c_sq, exact, sb)
        inert = jnp.sum(wb * d)
        if not update:
            return labels, d, inert, None, None
        # deterministic on every backend: no atomic scatter-add on GPUs (see jaxprob.numerics)
        sums = numerics.segment_sum(wb[:, None] * xb, labels, k)
        return labels, d, inert, sums, numerics.segment_sum(wb, labels, k)

    if xr.shape[0] == 1:
        return block(xr[0], wr[0], x_sq[0])

    def body(carry, xw):
        labels, d, inert, sums, counts = block(*xw)
        carry = (carry[0] + inert, carry[1] + sums, carry[2] + counts) if update else (carry[0] + inert,)
        return carry, (labels, d)

    zero = jnp.zeros((), xr.dtype)
    carry0 = (zero, jnp.zeros((k, xr.shape[2]), xr.dtype), jnp.zeros((k,), xr.dtype)) if update else (zero,)
    carry, (labels, d) = jax.lax.scan(body, carry0, (xr, wr, x_sq))
    labels, d = labels.reshape(-1), d.reshape(-1)
    if update:
        return labels, d, carry[0], carry[1], carry[2]
    return labels, d, carry[0], None, None


def _relocate_empty(x, w, d, labels, sums, counts, empty):
    """Move every `empty` cluster onto one of the samples farthest from their centroid (sklearn's
    policy)."""
    m = min(counts.shape[0], w.shape[0])
    score = jnp.where(w > 0, d, -1.0)
    far_d, far = jax.lax.top_k(score, m)
    rank = jnp.cumsum(empty) - 1
    pick = far[jnp.clip(rank, 0, m - 1)]
    moved = empty & (rank < m) & (far_d[jnp.clip(rank, 0, m - 1)] > 0)
    xp, wp = x[pick], jnp.where(moved, w[pick], 0.0)
    old = labels[pick]
    sums = numerics.add_at(sums, old, -wp[:, None] * xp)
    counts = numerics.add_at(counts, old, -wp)
    sums = jnp.where(moved[:, None], wp[:, None] * xp, sums)
    counts = jnp.where(moved, wp, counts)
    return sums, counts, jnp.sum(moved).astype(jnp.int32)


def _update(x, w, d, labels, sums, counts, c_old):
    """New centroids from the sums, with empty clusters relocated; a cluster left with no weight keeps its old
    centroid (so no NaN can appear)."""
    empty = counts <= 0
    sums, counts, n_moved = jax.lax.cond(
        jnp.any(empty),
        _relocate_empty,
        lambda *a: (a[4], a[5], jnp.zeros((), jnp.int32)),
        x,
        w,
        d,
        labels,
        sums,
        counts,
        empty,
    )
    safe = jnp.where(counts > 0, counts, 1.0)
    return jnp.where((counts > 0)[:, None], sums / safe[:, None], c_old), n_moved


def _lloyd_core(xr, wr, c, x_sq=None):
    """One Lloyd step on chunked data; returns (new centroids, labels, distances, inertia, n_relocated)."""
    labels, d, inert, sums, counts = _pass(xr, wr, c, True, x_sq=x_sq)
    x, w = xr.reshape(-1, xr.shape[2]), wr.reshape(-1)
    new, n_moved = _update(x, w, d, labels, sums, counts, c)
    return new, labels, d, inert, n_moved


class _State(NamedTuple):
    centroids: jax.Array
    labels: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    trace: jax.Array
    n_relocated: jax.Array


def _lloyd_run(xr, wr, c0, max_iter: int, tol_abs, callback=None):
    """Lloyd iterations under lax.while_loop; stop on stable labels or squared centroid shift <= tol_abs.
    `callback(n_iter, inertia)` runs on the host after every step (None compiles no callback)."""
    dtype = xr.dtype
    x_sq = jnp.sum(jnp.square(xr), axis=-1)  # once, not in every iteration

    def cond(s: _State):
        return (s.n_iter < max_iter) & ~s.converged

    def body(s: _State):
        new, labels, _, inert, n_moved = _lloyd_core(xr, wr, s.centroids, x_sq)
        if callback is not None:
            jax.debug.callback(callback, s.n_iter + 1, inert, ordered=True)
        stable = jnp.all(labels == s.labels)
        shift = jnp.sum(jnp.square(new - s.centroids))
        return _State(
            new,
            labels,
            s.n_iter + 1,
            stable | (shift <= tol_abs),
            s.trace.at[s.n_iter].set(inert),
            s.n_relocated + n_moved,
        )

    n_pad = xr.shape[0] * xr.shape[1]
    s0 = _State(
        c0,
        jnp.full((n_pad,), -1, jnp.int32),
        jnp.zeros((), jnp.int32),
        jnp.zeros((), bool),
        jnp.full((max_iter,), jnp.nan, dtype),
        jnp.zeros((), jnp.int32),
    )
    s = jax.lax.while_loop(cond, body, s0)
    labels, _, inert, _, counts = _pass_with_counts(xr, wr, s.centroids)
    return s, labels, inert, counts


def _pass_with_counts(xr, wr, c):
    labels, d, inert, _, counts = _pass(xr, wr, c, True, exact=True)
    return labels, d, inert, None, counts


def _tol_abs(x, w, tol):
    """tol relative to the mean (weighted) per-feature variance of the data, as in scikit-learn."""
    mean = jnp.sum(w[:, None] * x, axis=0) / jnp.sum(w)
    var = jnp.sum(w[:, None] * jnp.square(x - mean), axis=0) / jnp.sum(w)
    return tol * jnp.mean(var)


def _map_restarts(one, keys, restart_batch):
    """Run `one` over the restart keys: directly for one restart, else `lax.map` in vmapped groups of
    `restart_batch`."""
    if keys.shape[0] == 1:
        return jax.tree.map(lambda a: a[None], one(keys[0]))
    return jax.lax.map(one, keys, batch_size=restart_batch if restart_batch > 1 else None)


def _default_restart_batch(n_init: int, restart_batch: int | None) -> int:
    if restart_batch is None:
        # CPU: one restart at a time is faster (a vmapped while_loop runs every restart as long as the slowest,
        # with batched scatters); accelerators: all restarts in one vmapped loop
        return 1 if jax.default_backend() == "cpu" else n_init
    return min(check_int(restart_batch, "restart_batch", minimum=1), n_init)


@jax.jit(static_argnums=(3, 4, 5, 6, 7, 8, 11, 12, 13))
def _fit_jit(key, x, w, n_clusters, method, n_local_trials, n_init, max_iter, chunk, tol, init_centroids,
             restart_batch, zero_tol, callback=None):
    n = x.shape[0]
    xr, wr = _pad_chunks(x, w, chunk)
    tol_abs = jnp.zeros((), x.dtype) if zero_tol else _tol_abs(x, w, tol)  # a pass over the data saved

    def one(key):
        c0 = (
            init_centroids
            if init_centroids is not None
            else _seed(key, x, w, n_clusters, method, n_local_trials)
        )
        return _lloyd_run(xr, wr, c0, max_iter, tol_abs, callback)

    s, labels, inert, counts = _map_restarts(one, jax.random.split(key, n_init), restart_batch)
    best = jnp.argmin(inert)
    result = KMeans(s.centroids[best], labels[best, :n], inert[best])
    info = KMeansInfo(
        converged=s.converged[best],
        n_iter=s.n_iter[best],
        inertia_trace=s.trace[best],
        n_relocated=s.n_relocated[best],
        empty_clusters=counts[best] <= 0,
        restart_inertias=inert,
        best_restart=best.astype(jnp.int32),
    )
    return _flag_nonfinite(result, info)


def _flag_nonfinite(result: KMeans, info: KMeansInfo):
    nonfinite = ~jnp.isfinite(result.inertia) | ~jnp.all(jnp.isfinite(result.centroids))
    return result, info._replace(converged=info.converged & ~nonfinite, nonfinite=nonfinite)


@jax.jit
def _unscale_fit(result: KMeans, info: KMeansInfo, inv):
    """A fit on data times $2^{-e}$ back to the scale of the data (`inv` = $2^e$): exact but for overflow."""
    result = KMeans(result.centroids * inv, result.labels, _times_sq(result.inertia, inv))
    info = info._replace(inertia_trace=_times_sq(info.inertia_trace, inv),
                         restart_inertias=_times_sq(info.restart_inertias, inv))
    return _flag_nonfinite(result, info)


def _check_centroids(centroids, d, dtype, name="centroids"):
    if isinstance(centroids, KMeans):  # a fitted model: its centroids
        centroids = centroids.centroids
    c = as_float_array(centroids, name, 2)
    check_finite(c, name)
    if c.shape[1] != d:
        raise ValueError(f"`{name}` has {c.shape[1]} features but `x` has {d}")
    if c.shape[0] < 1:
        raise ValueError(f"`{name}` must hold at least one centroid")
    return c.astype(dtype)


def _check_tol(tol):
    if is_tracer(tol):
        return
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating, np.integer, jax.Array)):
        raise TypeError(f"`tol` must be a number, got {type(tol).__name__}")
    if not np.isfinite(float(tol)) or float(tol) < 0:
        raise ValueError(f"`tol` must be a finite non-negative number, got {tol}")


def _check_chunk(chunk_size):
    if chunk_size is not None:
        check_int(chunk_size, "chunk_size", minimum=1)


# ----------------------------------------------------------------------------------------------------------
# public Lloyd API
# ----------------------------------------------------------------------------------------------------------
@jax.jit(static_argnums=(3,))
def _step_jit(x, w, c, chunk):
    n = x.shape[0]
    xr, wr = _pad_chunks(x, w, chunk)
    new, labels, _, inert, _ = _lloyd_core(xr, wr, c)
    labels = labels[:n]
    # The packed assignment is bit manipulation: no derivative flows through its distances. The inertia keeps the
    # value the iteration computed and takes its derivative from the same objective at the same labels,
    # sum_i w_i ||x_i - c_{z_i}||^2: the labels are piecewise constant, so this is the derivative of the inertia
    # wherever it has one (no sample equidistant from two centroids).
    smooth = jnp.sum(w * jnp.sum(jnp.square(x - c[labels]), axis=1))
    inert = jax.lax.stop_gradient(inert) + (smooth - jax.lax.stop_gradient(smooth))
    return new, labels, inert


def lloyd_step(x: ArrayLike, centroids: ArrayLike, *, sample_weight: ArrayLike | None = None,
               chunk_size: int | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""One Lloyd step: assign every sample to its closest centroid, then move each centroid to the weighted
    mean of its samples (empty clusters are relocated, see the module notes).

    Args:
        x: `(n, D)` samples.
        centroids: `(K, D)` current centroids.
        sample_weight: optional `(n,)` non-negative weights.
        chunk_size: rows per chunk of the distance computation; default automatic.

    Returns:
        `(new_centroids, labels, inertia)`: `(K, D)` updated centroids, and the `(n,)` labels and scalar
        inertia of the *input* centroids, as the iterations of [`fit`][jaxprob.kmeans.fit] compute them (see "Precision
        of the assignments" in the module notes). The inertia of `new_centroids` is never larger.

        Derivatives: `jax.grad` of the returned inertia with respect to `x` or `centroids` is that of
        $\sum_i w_i \lVert x_i - c_{z_i} \rVert^2$ at the returned labels, the derivative of the inertia
        wherever it has one (no sample equidistant from two centroids), as for [inertia][jaxprob.kmeans.inertia].
        The labels are integers and pass no derivative.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import kmeans
        >>> x = jnp.array([[0.0], [1.0], [9.0], [11.0]])
        >>> c, labels, j = kmeans.lloyd_step(x, jnp.array([[0.0], [1.0]]))
        >>> c.ravel().tolist(), labels.tolist(), float(j)
        ([0.0, 7.0], [0, 1, 1, 1], 164.0)
    """
    x, c, w, chunk, scale = _eval_args(x, centroids, sample_weight, chunk_size)
    new, labels, inert = _step_jit(x, w, c, chunk)
    if scale is None:
        return new, labels, inert
    return _times(new, 1 / scale), labels, _times_sq(inert, 1 / scale)


def fit(
    x: ArrayLike,
    n_clusters: int,
    *,
    key: jax.Array | None = None,
    init_method: str = "kmeans++",
    init_centroids: ArrayLike | None = None,
    n_init: int = 1,
    max_iter: int = 300,
    tol: float = 1e-4,
    sample_weight: ArrayLike | None = None,
    n_local_trials: int | None = None,
    chunk_size: int | None = None,
    restart_batch: int | None = None,
    callback: Callable | None = None,
) -> tuple[KMeans, KMeansInfo]:
    r"""k-means by Lloyd's algorithm under `lax.while_loop`, `n_init` restarts in one compiled program.

    Iterations stop when the assignments do not change, when the squared centroid shift
    $\sum_k \lVert c_k^{t+1} - c_k^t\rVert^2$ is at most `tol` times the mean per-feature variance of
    the data (scikit-learn's convention), or after `max_iter` steps. The restart with the lowest final
    inertia
    is kept; all restarts' inertias are in `info.restart_inertias`. The returned labels and inertia are
    always those of the returned centroids.

    Args:
        x: `(n, D)` samples, float32 or float64 (the computation runs in this dtype; float16 and bfloat16 are
            computed in float32, the library's policy). Values of any magnitude: see "Scale" in the module notes.
        n_clusters: `K`, between 1 and `n`. When `K` exceeds the number of distinct samples some
            clusters are necessarily empty: they are flagged in `info.empty_clusters`.
        key: a JAX PRNG key (required unless `init_centroids` is given).
        init_method: one of `INIT_METHODS` (ignored when `init_centroids` is given).
        init_centroids: optional `(K, D)` starting centroids (then `n_init` must be 1).
        n_init: number of restarts.
        max_iter: hard limit on Lloyd steps (static: the inertia trace has this length).
        tol: relative tolerance on the squared centroid shift (0 runs until the assignments are stable).
        sample_weight: optional `(n,)` non-negative weights, not all zero.
        n_local_trials: k-means++ candidates per step; default `2 + floor(log K)`.
        chunk_size: rows per chunk of the `n x K` distance computation (`lax.scan` over chunks); default
            at most `max(256, 2**19 // K)` rows, which keeps a chunk's distances in cache (a divisor of `n`
            down to half that when there is one, so that the data is not copied into padded chunks).
        restart_batch: restarts run `restart_batch` at a time as one vmapped loop (`lax.map` with this
            batch size); default 1 on CPU (faster there: a vmapped `while_loop` runs every restart for as many
            steps as the slowest) and `n_init` (all at once) on accelerators. The result does not depend on
            it beyond floating-point rounding.
        callback: optional `callback(n_iter, inertia)` called on the host after every Lloyd step of every restart,
            from inside the compiled loop (`jax.debug.callback`); None (the default) compiles no callback.

    Returns:
        `(result, info)`: a [`KMeans`][jaxprob.kmeans.KMeans] and a [`KMeansInfo`][jaxprob.kmeans.KMeansInfo].

    Raises:
        ValueError / TypeError: naming the argument, for NaN/inf, wrong rank, non-float `x`, `n_clusters`
            outside `[1, n]`, negative or all-zero weights, an unknown `init_method`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import kmeans
        >>> x = jnp.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
        >>> result, info = kmeans.fit(x, 2, key=jax.random.key(0), n_init=3)
        >>> sorted(result.centroids[:, 0].tolist()), float(result.inertia), bool(info.converged)
        ([0.0, 10.0], 1.0, True)
    """
    check_choice(init_method, "init_method", INIT_METHODS)
    x = _check_x(x)
    n_clusters = check_int(n_clusters, "n_clusters", minimum=1, maximum=x.shape[0])
    n_init = check_int(n_init, "n_init", minimum=1)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    _check_tol(tol)
    _check_chunk(chunk_size)
    trials = _check_trials(n_local_trials, n_clusters)
    w = check_sample_weight(sample_weight, x.shape[0], x.dtype)
    if init_centroids is not None:
        init_centroids = _check_centroids(init_centroids, x.shape[1], x.dtype, "init_centroids")
        if init_centroids.shape[0] != n_clusters:
            raise ValueError(
                f"`init_centroids` has {init_centroids.shape[0]} rows but n_clusters={n_clusters}"
            )
        if n_init != 1:
            raise ValueError(f"`n_init` must be 1 when `init_centroids` is given, got {n_init}")
        if key is None:
            key = jax.random.key(0)  # unused: the restart starts from init_centroids
    check_key(key)
    chunk = _chunk_rows(x.shape[0], n_clusters, chunk_size)
    restart_batch = _default_restart_batch(n_init, restart_batch)
    scale = _scale_for(x)
    x, init_centroids = _scaled(scale, x, init_centroids)
    out = _fit_jit(
        key,
        x,
        w,
        n_clusters,
        init_method,
        trials,
        n_init,
        max_iter,
        chunk,
        np.asarray(tol, x.dtype) if not is_tracer(tol) else tol,
        init_centroids,
        restart_batch,
        not is_tracer(tol) and float(tol) == 0.0,
        callback if callback is None or scale is None else _rescaled_callback(callback, scale),
    )
    return out if scale is None else _unscale_fit(*out, 1 / scale)


def _rescaled_callback(callback, scale):
    """The user's callback, given the inertia of the data as passed (the loop runs on data times `scale`)."""
    return lambda n_iter, inertia: callback(n_iter, inertia / scale**2)


@jax.jit(static_argnums=(3,))
def _labels_inertia_jit(x, w, c, chunk):
    n = x.shape[0]
    xr, wr = _pad_chunks(x, w, chunk)
    labels, _, inert, _, _ = _pass(xr, wr, c, False, exact=True)
    return labels[:n], inert


def _eval_args(x, centroids, sample_weight, chunk_size):
    """Checked arguments, with `x` and the centroids rescaled together (see "Scale" in the module notes); the
    last entry is the power of two applied (None: none)."""
    x = _check_x(x)
    c = _check_centroids(centroids, x.shape[1], x.dtype)
    _check_chunk(chunk_size)
    w = check_sample_weight(sample_weight, x.shape[0], x.dtype)
    scale = _scale_for_pair(x, c)
    x, c = _scaled(scale, x, c)
    return x, c, w, _chunk_rows(x.shape[0], c.shape[0], chunk_size), scale


def predict(x: ArrayLike, centroids: KMeans | jax.Array, *, chunk_size: int | None = None) -> jax.Array:
    """Index of the closest centroid of every sample (ties go to the lowest index).

    Args:
        x: `(n, D)` samples.
        centroids: a fitted [KMeans][jaxprob.kmeans.KMeans] model, or `(K, D)` centroids.
        chunk_size: rows per chunk of the distance computation; default automatic.

    Returns:
        `(n,)` int32 labels.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import kmeans
        >>> kmeans.predict(jnp.array([[0.2], [8.0]]), jnp.array([[0.0], [10.0]])).tolist()
        [0, 1]
    """
    x, c, w, chunk, _ = _eval_args(x, centroids, None, chunk_size)
    return _labels_inertia_jit(x, w, c, chunk)[0]


def inertia(x: ArrayLike, centroids: KMeans | jax.Array, *, sample_weight: ArrayLike | None = None,
            chunk_size: int | None = None) -> jax.Array:
    r"""Weighted inertia $\sum_i w_i \min_k \lVert x_i - c_k\rVert^2$.

    Args:
        x: `(n, D)` samples.
        centroids: a fitted [KMeans][jaxprob.kmeans.KMeans] model, or `(K, D)` centroids.
        sample_weight: optional `(n,)` non-negative weights.
        chunk_size: rows per chunk of the distance computation; default automatic.

    Returns:
        Scalar inertia.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import kmeans
        >>> float(kmeans.inertia(jnp.array([[1.0], [4.0]]), jnp.array([[0.0], [5.0]])))
        2.0
    """
    x, c, w, chunk, scale = _eval_args(x, centroids, sample_weight, chunk_size)
    inert = _labels_inertia_jit(x, w, c, chunk)[1]
    return inert if scale is None else _times_sq(inert, 1 / scale)


@jax.jit
def _transform_jit(x, c):
    return jnp.sqrt(_sq_dist(x, jnp.sum(jnp.square(x), axis=-1), c))


def transform(x: ArrayLike, centroids: KMeans | jax.Array) -> jax.Array:
    """Euclidean distances from every sample to every centroid (the k-means feature map, as scikit-learn).

    Args:
        x: `(n, D)` samples.
        centroids: a fitted [KMeans][jaxprob.kmeans.KMeans] model, or `(K, D)` centroids.

    Returns:
        `(n, K)` distances.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import kmeans
        >>> kmeans.transform(jnp.array([[0.0, 0.0]]), jnp.array([[3.0, 4.0], [0.0, 1.0]])).tolist()
        [[5.0, 1.0]]
    """
    x, c, _, _, scale = _eval_args(x, centroids, None, None)
    d = _transform_jit(x, c)
    return d if scale is None else _times(d, 1 / scale)


# ----------------------------------------------------------------------------------------------------------
# mini-batch k-means
# ----------------------------------------------------------------------------------------------------------
def _minibatch_core(state: MiniBatchState, xb, wb):
    c, counts = state
    xr, wr = xb[None], wb[None]
    labels, d, inert, sums, bcounts = _pass(xr, wr, c, True)
    # a centroid that has never received any weight is moved onto the batch sample farthest from its centroid
    never = (counts + bcounts) <= 0
    sums, bcounts, _ = jax.lax.cond(
        jnp.any(never),
        _relocate_empty,
        lambda *a: (a[4], a[5], jnp.zeros((), jnp.int32)),
        xb,
        wb,
        d,
        labels,
        sums,
        bcounts,
        never,
    )
    new_counts = counts + bcounts
    safe = jnp.where(new_counts > 0, new_counts, 1.0)
    new_c = jnp.where((new_counts > 0)[:, None], (c * counts[:, None] + sums) / safe[:, None], c)
    return MiniBatchState(new_c, new_counts), inert / jnp.maximum(jnp.sum(wb), jnp.finfo(xb.dtype).tiny)


_minibatch_step_jit = jax.jit(_minibatch_core)


def minibatch_init(centroids: ArrayLike) -> MiniBatchState:
    """Mini-batch state from initial centroids (all counts zero).

    Args:
        centroids: `(K, D)` initial centroids, e.g. from [`init`][jaxprob.kmeans.init] on a sample of the data.

    Returns:
        A [`MiniBatchState`][jaxprob.kmeans.MiniBatchState].

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import kmeans
        >>> kmeans.minibatch_init(jnp.zeros((3, 2))).counts.tolist()
        [0.0, 0.0, 0.0]
    """
    c = as_float_array(centroids, "centroids", 2)
    check_finite(c, "centroids")
    return MiniBatchState(c, jnp.zeros((c.shape[0],), c.dtype))


def minibatch_step(state: MiniBatchState, x_batch: ArrayLike, *,
                   sample_weight: ArrayLike | None = None) -> tuple[MiniBatchState, jax.Array]:
    r"""One mini-batch k-means update (Sculley, 2010) from a batch, for data streamed from disk.

    Each centroid moves towards the weighted mean $\bar x_k$ of the batch samples assigned to it:
    $c_k \leftarrow (N_k c_k + b_k \bar x_k) / (N_k + b_k)$, with $N_k$ the weight it received so
    far and $b_k$ its weight in this batch.

    Args:
        state: a [`MiniBatchState`][jaxprob.kmeans.MiniBatchState] (see
            [`minibatch_init`][jaxprob.kmeans.minibatch_init]).
        x_batch: `(b, D)` samples.
        sample_weight: optional `(b,)` non-negative weights.

    Returns:
        `(state, batch_inertia)`: the updated state and the mean inertia of the batch under the old
        centroids.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import kmeans
        >>> state = kmeans.minibatch_init(jnp.array([[0.0], [10.0]]))
        >>> state, j = kmeans.minibatch_step(state, jnp.array([[1.0], [9.0], [11.0]]))
        >>> state.centroids.ravel().tolist(), state.counts.tolist()
        ([1.0, 10.0], [1.0, 2.0])
    """
    if not isinstance(state, MiniBatchState):
        raise TypeError(f"`state` must be a MiniBatchState (see minibatch_init), got {type(state).__name__}")
    xb = _check_x(x_batch, "x_batch")
    c = _check_centroids(state.centroids, xb.shape[1], xb.dtype, "state.centroids")
    wb = check_sample_weight(sample_weight, xb.shape[0], xb.dtype)
    scale = _scale_for_pair(xb, c)
    xb, c = _scaled(scale, xb, c)
    state, j = _minibatch_step_jit(MiniBatchState(c, jnp.asarray(state.counts, xb.dtype)), xb, wb)
    if scale is None:
        return state, j
    return MiniBatchState(_times(state.centroids, 1 / scale), state.counts), _times_sq(j, 1 / scale)


class _MBState(NamedTuple):
    mb: MiniBatchState
    key: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    trace: jax.Array


@jax.jit(static_argnums=(3, 4, 5, 6, 7, 8, 9, 12))
def _fit_minibatch_jit(
    key, x, w, n_clusters, method, n_local_trials, n_init, max_iter, batch_size, chunk, tol, init_centroids,
    callback=None,
):
    n = x.shape[0]
    init_size = min(n, max(3 * batch_size, 3 * n_clusters))
    tol_abs = _tol_abs(x, w, tol)
    xr, wr = _pad_chunks(x, w, chunk)

    def one(key):
        key, k_sub, k_seed = jax.random.split(key, 3)
        if init_centroids is not None:
            c0 = init_centroids
        else:
            sub = jax.random.choice(k_sub, n, (init_size,), replace=False) if init_size < n else jnp.arange(n)
            ws = w[sub]
            ws = jnp.where(jnp.sum(ws) > 0, ws, jnp.ones_like(ws))  # a subset of zero weights: seed uniformly
            c0 = _seed(k_seed, x[sub], ws, n_clusters, method, n_local_trials)

        def cond(s: _MBState):
            return (s.n_iter < max_iter) & ~s.converged

        def body(s: _MBState):
            k, k_b = jax.random.split(s.key)
            idx = jax.random.randint(k_b, (batch_size,), 0, n)
            mb, j = _minibatch_core(s.mb, x[idx], w[idx])
            if callback is not None:
                jax.debug.callback(callback, s.n_iter + 1, j, ordered=True)
            shift = jnp.sum(jnp.square(mb.centroids - s.mb.centroids))
            return _MBState(mb, k, s.n_iter + 1, shift <= tol_abs, s.trace.at[s.n_iter].set(j))

        s0 = _MBState(
            MiniBatchState(c0, jnp.zeros((n_clusters,), x.dtype)),
            key,
            jnp.zeros((), jnp.int32),
            jnp.zeros((), bool),
            jnp.full((max_iter,), jnp.nan, x.dtype),
        )
        s = jax.lax.while_loop(cond, body, s0)
        labels, _, inert, _, counts = _pass_with_counts(xr, wr, s.mb.centroids)
        return s, labels, inert, counts

    s, labels, inert, counts = _map_restarts(one, jax.random.split(key, n_init), n_init)
    best = jnp.argmin(inert)
    result = KMeans(s.mb.centroids[best], labels[best, :n], inert[best])
    info = KMeansInfo(
        converged=s.converged[best],
        n_iter=s.n_iter[best],
        inertia_trace=s.trace[best],
        n_relocated=jnp.zeros((), jnp.int32),
        empty_clusters=counts[best] <= 0,
        restart_inertias=inert,
        best_restart=best.astype(jnp.int32),
    )
    return _flag_nonfinite(result, info)


def fit_minibatch(
    x: ArrayLike,
    n_clusters: int,
    *,
    key: jax.Array,
    batch_size: int = 1024,
    init_method: str = "kmeans++",
    init_centroids: ArrayLike | None = None,
    n_init: int = 1,
    max_iter: int = 100,
    tol: float = 0.0,
    sample_weight: ArrayLike | None = None,
    n_local_trials: int | None = None,
    chunk_size: int | None = None,
    callback: Callable | None = None,
) -> tuple[KMeans, KMeansInfo]:
    """Mini-batch k-means with the same call shape and results as [`fit`][jaxprob.kmeans.fit].

    Every step draws `batch_size` samples uniformly (with replacement) and applies
    [`minibatch_step`][jaxprob.kmeans.minibatch_step]; the
    seeding runs on a random subset of `max(3 batch_size, 3 K)` samples. The returned labels and inertia are
    computed on all of `x` (chunked) from the final centroids. For data that does not fit in memory, loop
    over
    batches yourself with [`minibatch_init`][jaxprob.kmeans.minibatch_init] /
    [`minibatch_step`][jaxprob.kmeans.minibatch_step] and use [`predict`][jaxprob.kmeans.predict].

    Args:
        x: `(n, D)` samples.
        n_clusters: `K`, between 1 and `n`.
        key: a JAX PRNG key (batches are drawn from it).
        batch_size: samples per step.
        init_method: one of `INIT_METHODS` (ignored when `init_centroids` is given).
        init_centroids: optional `(K, D)` starting centroids.
        n_init: number of restarts (vmapped; the lowest full-data inertia is kept).
        max_iter: number of mini-batch steps at most.
        tol: stop when the squared centroid shift of a step is at most `tol` times the mean feature variance
            (0 disables early stopping).
        sample_weight: optional `(n,)` non-negative weights.
        n_local_trials: k-means++ candidates per step; default `2 + floor(log K)`.
        chunk_size: rows per chunk of the final full-data assignment; default automatic.
        callback: optional `callback(step, batch_inertia)` called on the host after every mini-batch step of every
            restart, from inside the compiled loop; None (the default) compiles no callback.

    Returns:
        `(result, info)`: a [`KMeans`][jaxprob.kmeans.KMeans] and a [`KMeansInfo`][jaxprob.kmeans.KMeansInfo]
        (`inertia_trace` holds the mean
        batch inertia of every step).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import kmeans
        >>> x = jnp.concatenate([jnp.zeros((50, 1)), jnp.full((50, 1), 10.0)])
        >>> result, info = kmeans.fit_minibatch(x, 2, key=jax.random.key(0), batch_size=16, max_iter=20)
        >>> sorted(result.centroids.ravel().round(3).tolist()), float(result.inertia)
        ([0.0, 10.0], 0.0)
    """
    check_choice(init_method, "init_method", INIT_METHODS)
    x = _check_x(x)
    n_clusters = check_int(n_clusters, "n_clusters", minimum=1, maximum=x.shape[0])
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    n_init = check_int(n_init, "n_init", minimum=1)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    _check_tol(tol)
    _check_chunk(chunk_size)
    trials = _check_trials(n_local_trials, n_clusters)
    w = check_sample_weight(sample_weight, x.shape[0], x.dtype)
    check_key(key)
    if init_centroids is not None:
        init_centroids = _check_centroids(init_centroids, x.shape[1], x.dtype, "init_centroids")
        if init_centroids.shape[0] != n_clusters:
            raise ValueError(
                f"`init_centroids` has {init_centroids.shape[0]} rows but n_clusters={n_clusters}"
            )
    chunk = _chunk_rows(x.shape[0], n_clusters, chunk_size)
    scale = _scale_for(x)
    x, init_centroids = _scaled(scale, x, init_centroids)
    out = _fit_minibatch_jit(
        key,
        x,
        w,
        n_clusters,
        init_method,
        trials,
        n_init,
        max_iter,
        batch_size,
        chunk,
        jnp.asarray(tol, x.dtype),
        init_centroids,
        callback if callback is None or scale is None else _rescaled_callback(callback, scale),
    )
    return out if scale is None else _unscale_fit(*out, 1 / scale)


# ----------------------------------------------------------------------------------------------------------
# seeds refined by a few Lloyd steps (Gaussian mixture initialisation)
# ----------------------------------------------------------------------------------------------------------
def _kmeans_centroids(key, x, w, n_clusters: int, max_iter: int = 10):
    """k-means++ seeds refined by at most `max_iter` Lloyd steps (tol 0); pure, jittable, vmappable."""
    c0 = _kmeans_plusplus(key, x, w, n_clusters, _default_trials(n_clusters))[0]
    xr, wr = _pad_chunks(x, w, _chunk_rows(x.shape[0], n_clusters, None))
    s, _, _, _ = _lloyd_run(xr, wr, c0, max_iter, jnp.zeros((), x.dtype))
    return s.centroids


def kmeans_plusplus_refined(x: ArrayLike, n_clusters: int, *, key: jax.Array, sample_weight: ArrayLike | None = None,
                            max_iter: int = 10) -> jax.Array:
    """Greedy k-means++ seeds refined by at most `max_iter` Lloyd steps: a cheap, good start for EM.

    One restart, tolerance 0 (stops earlier only when the assignments are stable). Usable inside `jit` / `vmap`
    (on traced arguments only shapes are checked).

    Args:
        key: a JAX PRNG key.
        x: `(n, D)` samples.
        n_clusters: `K`, between 1 and `n`.
        sample_weight: optional `(n,)` non-negative weights.
        max_iter: Lloyd steps at most.

    Returns:
        `(K, D)` centroids.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import kmeans
        >>> x = jnp.array([[0.0], [1.0], [10.0], [11.0]])
        >>> sorted(kmeans.kmeans_plusplus_refined(x, 2, key=jax.random.key(0)).ravel().tolist())
        [0.5, 10.5]
    """
    x, n_clusters, w = _check_seeding_args(key, x, n_clusters, sample_weight)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    return _kmeans_centroids_jit(key, x, w, n_clusters, max_iter)


_kmeans_centroids_jit = jax.jit(_kmeans_centroids, static_argnums=(3, 4))
