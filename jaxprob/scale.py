r"""Scaling mixtures of every family and k-means: several devices, data larger than memory, streams, gradients.

Everything here rests on one seam of [`jaxprob.mixture`][jaxprob.mixture] and [`jaxprob.kmeans`][jaxprob.kmeans]: an
iteration is a sum over samples (the E-step's sufficient statistics $N_k=\sum_i w_i r_{ik}$, $S_k=\sum_i w_i r_{ik}x_i$,
$Q_k=\sum_i w_i r_{ik}x_ix_i^\top$; Lloyd's per-cluster sums $\sum_{i:z_i=k} w_i x_i$ and weights)
followed by a small update that only needs those sums. So

* **several devices** ([`fit_sharded`][jaxprob.scale.fit_sharded],
  [`kmeans_fit_sharded`][jaxprob.scale.kmeans_fit_sharded]): the samples are split along a 1-D device mesh
  (`jax.sharding.Mesh`); each device computes the statistics of its shard and `lax.psum` adds them, inside
  `jax.shard_map`; the update is then computed identically on every device. The statistics (`(K,)`, `(K, D)`,
  `(K, D, D)` and scalars) are the only values reduced across devices, once per iteration, so the communication does not
  grow with the number of samples. Padding rows (when `n` is not a multiple of the number of devices) carry weight 0 and
  change nothing;
* **data larger than memory** ([`fit_chunked`][jaxprob.scale.fit_chunked],
  [`kmeans_fit_chunked`][jaxprob.scale.kmeans_fit_chunked]): one pass reads the data chunk by chunk (a NumPy array, a
  `np.memmap`, a JAX array or a function returning an iterable of chunks) and adds the statistics of each chunk with one
  compiled function; one pass is exactly one full-batch iteration;
* **streams** ([`online_em_step`][jaxprob.scale.online_em_step], [`fit_online`][jaxprob.scale.fit_online],
  [`kmeans_fit_stream`][jaxprob.scale.kmeans_fit_stream]): stepwise EM (Cappé and Moulines, 2009) averages normalised
  statistics with a decaying step size $\eta_t = (t + t_0)^{-\kappa}$, $\tfrac12 < \kappa \le 1$, and mini-batch k-means
  (Sculley, 2010) moves each centroid by a per-centroid rate;
* **gradients** ([`em_steps`][jaxprob.scale.em_steps]): a fixed number of EM iterations under `lax.scan` is
  differentiable with respect to the data and the initial parameters. `mixture.fit` iterates under `lax.while_loop`,
  which JAX cannot differentiate in reverse mode (`jax.grad` raises); use [`em_steps`][jaxprob.scale.em_steps] for
  gradients.
"""

from __future__ import annotations

import functools
import math
import mmap
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.typing import ArrayLike

from jaxprob import em, families, kmeans, mixture, numerics
from jaxprob._validation import (
    as_float_array,
    check_choice,
    check_finite,
    check_int,
    check_key,
    check_sample_weight,
    is_tracer,
)
from jaxprob.em import Family, FitInfo, Mixture, Stats

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "OnlineEMState",
    "OnlineInfo",
    "sample_mesh",
    "shard_samples",
    "fit_sharded",
    "kmeans_fit_sharded",
    "iter_chunks",
    "fit_chunked",
    "kmeans_fit_chunked",
    "online_em_init",
    "online_em_step",
    "fit_online",
    "kmeans_fit_stream",
    "em_steps",
]

DEFAULT_CHUNK_SIZE = 65536
"""Rows read at a time from array data by [`iter_chunks`][jaxprob.scale.iter_chunks] when `chunk_size` is not given (4
MiB of float32 at D=16). The chunked fits compute on smaller pieces (see [`fit_chunked`][jaxprob.scale.fit_chunked])."""

_TARGET_ENTRIES = 2**20  # a computed piece holds about this many feature entries (EM) or 2**19 distances (Lloyd)


def _auto_rows(entries_per_row: int, target: int = _TARGET_ENTRIES) -> int:
    """Rows per computed piece: the power of two nearest to target / entries_per_row, within [1024, 65536].

    On CPU, pieces whose intermediates stay in cache are 2-3x faster than 65,536-row pieces (measured at D=16,
    K=16: full-covariance EM is fastest at 8,192 rows, diagonal EM and Lloyd at 32,768)."""
    return int(min(65536, max(1024, 2 ** round(math.log2(target / entries_per_row)))))


class OnlineEMState(NamedTuple):
    """State of stepwise (online) EM (a pytree).

    Attributes:
        params: the current [Mixture][jaxprob.em.Mixture] (the M-step of `stats`).
        stats: running average of the per-unit-weight sufficient statistics ([Stats][jaxprob.em.Stats] with
            `total_weight = 1`), about the fixed `center`.
        center: the reference of the family's moments (the mean of the initial model).
        step: number of steps taken $t$ (int32 scalar).
        n_skipped: number of batches skipped because their total weight was zero (int32 scalar).
    """

    params: Mixture
    stats: Stats
    center: jax.Array
    step: jax.Array
    n_skipped: jax.Array


class OnlineInfo(NamedTuple):
    """Diagnostics of [`fit_online`][jaxprob.scale.fit_online] and
[`kmeans_fit_stream`][jaxprob.scale.kmeans_fit_stream].

    Attributes:
        n_steps: number of batches processed.
        trace: `(n_steps,)` per batch: mean log-likelihood under the parameters before the step (online EM) or
            mean batch inertia under the centroids before the step (mini-batch k-means); NaN for a skipped batch.
        n_skipped: number of batches skipped because their total weight was zero (online EM).
    """

    n_steps: int
    trace: np.ndarray
    n_skipped: int = 0


# ----------------------------------------------------------------------------------------------------------
# meshes and sharded data
# ----------------------------------------------------------------------------------------------------------
def sample_mesh(n_devices: int | None = None, *, axis_name: str = "samples",
                devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
    """A 1-D device mesh whose single axis splits the samples.

    Args:
        n_devices: number of devices; default all of `devices`.
        axis_name: name of the mesh axis.
        devices: the devices to use (default `jax.devices()`, every device of every process after
            `jax.distributed.initialize()`).

    Returns:
        A `jax.sharding.Mesh` of shape `(n_devices,)`.

    Examples:
        >>> from jaxprob import scale
        >>> mesh = scale.sample_mesh(1)
        >>> mesh.axis_names, mesh.size
        (('samples',), 1)
    """
    devices = list(jax.devices() if devices is None else devices)
    if n_devices is None:
        n_devices = len(devices)
    n_devices = check_int(n_devices, "n_devices", minimum=1, maximum=len(devices))
    if not isinstance(axis_name, str) or not axis_name:
        raise TypeError(f"`axis_name` must be a non-empty string, got {axis_name!r}")
    return jax.make_mesh(
        (n_devices,), (axis_name,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices[:n_devices]
    )


def _check_mesh(mesh):
    if mesh is None:
        return sample_mesh()
    if not isinstance(mesh, jax.sharding.Mesh):
        raise TypeError(f"`mesh` must be a jax.sharding.Mesh (see sample_mesh), got {type(mesh).__name__}")
    if len(mesh.axis_names) != 1:
        raise ValueError(f"`mesh` must have one axis (the samples), got axes {mesh.axis_names}")
    return mesh


def _is_global(x) -> bool:
    """A jax.Array spread over several processes (its values cannot be read by this process alone)."""
    return isinstance(x, jax.Array) and not x.is_fully_addressable


@jax.jit
def _all_finite(x):
    return jnp.all(jnp.isfinite(x))


def _check_data(x, name="x"):
    """Float (n, D) data with n >= 1, finite; device arrays are checked on device (no copy to the host)."""
    x = x if isinstance(x, jax.Array) else as_float_array(x, name, 2)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"`{name}` must have a floating dtype (float32 or float64), got {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"`{name}` must have 2 dimension(s), got shape {tuple(x.shape)}")
    if x.shape[0] < 1:
        raise ValueError(f"`{name}` must hold at least one sample")
    if not is_tracer(x) and not bool(_all_finite(x)):
        raise ValueError(f"`{name}` contains NaN or infinite value(s)")
    return x


@jax.jit
def _weights_ok(w):
    return jnp.all(jnp.isfinite(w) & (w >= 0)) & jnp.any(w > 0)


def _check_weights(sample_weight, x):
    """Sample weights as `check_sample_weight`; arrays spread over devices are checked on device."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, jax.Array) and len(sample_weight.devices()) > 1:
        if sample_weight.shape != (x.shape[0],):
            raise ValueError(f"`sample_weight` must have shape ({x.shape[0]},) to match x, got "
                             f"{tuple(sample_weight.shape)}")
        if not jnp.issubdtype(sample_weight.dtype, jnp.floating):
            raise TypeError(f"`sample_weight` must have a floating dtype, got {sample_weight.dtype}")
        if not bool(_weights_ok(sample_weight)):
            raise ValueError("`sample_weight` must be finite, non-negative and not all zero")
        return sample_weight.astype(x.dtype)
    return check_sample_weight(sample_weight, x.shape[0], x.dtype)


def _pad_rows(x, w, n_pad):
    n = x.shape[0]
    if n_pad == n:
        return x, w
    x = jnp.concatenate([x, jnp.zeros((n_pad - n, x.shape[1]), x.dtype)])
    return x, jnp.concatenate([w, jnp.zeros((n_pad - n,), w.dtype)])


_pad_jit = jax.jit(_pad_rows, static_argnums=(2,))


def shard_samples(x: ArrayLike, mesh: jax.sharding.Mesh, *,
                  sample_weight: ArrayLike | None = None) -> tuple[jax.Array, jax.Array]:
    """Place `(n, D)` data on a 1-D mesh, split along the samples; rows are padded with weight 0 to a multiple of
    the number of devices.

    Args:
        x: `(n, D)` float data (NumPy or JAX; a JAX array already spread over the devices is resharded there).
        mesh: a 1-D `jax.sharding.Mesh` (see [`sample_mesh`][jaxprob.scale.sample_mesh]).
        sample_weight: optional `(n,)` non-negative weights (default ones).

    Returns:
        `(x, w)`: `(n_pad, D)` and `(n_pad,)` arrays sharded as `PartitionSpec(axis)`, with
        `n_pad` the smallest multiple of `mesh.size` that is at least `n`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import scale
        >>> xs, ws = scale.shard_samples(jnp.ones((5, 2)), scale.sample_mesh(1))
        >>> xs.shape, ws.tolist()
        ((5, 2), [1.0, 1.0, 1.0, 1.0, 1.0])
    """
    mesh = _check_mesh(mesh)
    x = _check_data(x)
    w = _check_weights(sample_weight, x)
    return _shard(x, w, mesh)


def _pad_weights(x, w, n_pad):
    return _pad_rows(x, jnp.ones((x.shape[0],), x.dtype) if w is None else w, n_pad)


@functools.cache
def _placement(mesh):
    """Jitted function that pads rows (weight 0) and places them on `mesh` along the samples (one per mesh)."""
    axis = mesh.axis_names[0]
    xs, ws = NamedSharding(mesh, P(axis, None)), NamedSharding(mesh, P(axis))
    return jax.jit(_pad_weights, static_argnums=(2,), out_shardings=(xs, ws))


def _shard(x, w, mesh):
    n_pad = -(-x.shape[0] // mesh.size) * mesh.size
    return _placement(mesh)(x, w, n_pad)


# ----------------------------------------------------------------------------------------------------------
# sharded EM
# ----------------------------------------------------------------------------------------------------------
def _sharded_em_program(mesh, max_iter: int, callback):
    axis = mesh.axis_names[0]

    def local(x, w, starts, tol):
        family = jax.tree.map(lambda a: a[0], starts.family)
        # the reference of the moments: the weighted data mean (two sums reduced once, before the iterations)
        total, sum_x = jax.lax.psum((jnp.sum(w), numerics.matmul(w, x)), axis)
        prepared = em.prepare(x, family, w, sum_x / total)

        def e_step_fn(model):
            # the statistics pytree is the only value reduced across devices, once per iteration
            return jax.lax.psum(em.e_step(prepared, model), axis)

        return em.fit_from(prepared, family, models=starts, max_iter=max_iter, tol=tol, e_step_fn=e_step_fn,
                           callback=callback)

    spec = (P(axis, None), P(axis), P(), P())
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=spec, out_specs=P()))


_SHARDED_PROGRAMS: dict = {}


def _cached(kind, mesh, *args):
    key = (kind, mesh, *args)
    if key not in _SHARDED_PROGRAMS:
        build = {"em": _sharded_em_program, "lloyd": _sharded_lloyd_program}[kind]
        _SHARDED_PROGRAMS[key] = build(mesh, *args)
    return _SHARDED_PROGRAMS[key]


def _check_tol(tol):
    if is_tracer(tol):
        return
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating, np.integer, jax.Array)):
        raise TypeError(f"`tol` must be a number, got {type(tol).__name__}")
    if not np.isfinite(float(tol)) or float(tol) < 0:
        raise ValueError(f"`tol` must be a finite non-negative number, got {tol}")


def _check_init_params(init_params, d, n_components, dtype):
    if not isinstance(init_params, Mixture):
        raise TypeError(f"`init_params` must be a jaxprob Mixture, got {type(init_params).__name__}")
    if d is not None and init_params.n_features != d:
        raise ValueError(f"`x` has {d} features but `init_params` has {init_params.n_features}")
    if n_components is not None and init_params.n_components != n_components:
        raise ValueError(f"`init_params` has {init_params.n_components} components, not {n_components}")
    return _as_dtype(init_params, dtype)


def _as_dtype(tree, dtype):
    return jax.tree.map(lambda a: jnp.asarray(a, dtype) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)
                        else a, tree)


def fit_sharded(x: ArrayLike, n_components: int, *, mesh: jax.sharding.Mesh | None = None, key: jax.Array | None = None,
                family: Family | None = None, covariance_type: str | None = None, n_init: int = 1,
                init_method: str = "kmeans++", init_params: Mixture | None = None, max_iter: int = 100,
                tol: float = 1e-3, reg_covar: float = 1e-6, sample_weight: ArrayLike | None = None,
                callback: Callable | None = None) -> tuple[Mixture, FitInfo]:
    r"""EM for a Gaussian mixture with the samples split over the devices of a 1-D mesh (`shard_map` + `psum`).

    Same model, iteration, stopping rule and outputs as [`jaxprob.mixture.fit`][jaxprob.mixture.fit]: every device
    computes the sufficient statistics $(N_k, S_k, Q_k, \sum_i w_i \log p(x_i))$ of its shard, `lax.psum` adds them,
    and every device runs the same M-step on the sums. Only the statistics cross devices; the result does not
    depend on the number of devices beyond floating-point rounding of the sums. The initialisation (when
    `init_params` is not given) is that of `mixture.fit` with the same `key`: the restarts start from the
    same parameters.

    On several hosts (after `jax.distributed.initialize()`), pass `x` as a global `jax.Array` (e.g.
    `jax.make_array_from_process_local_data`) and `init_params` (the same on every process).

    Args:
        x: `(n, D)` float data: NumPy or JAX; a JAX array sharded along its rows is used in place.
        n_components: `K`, between 1 and `n`.
        mesh: 1-D `jax.sharding.Mesh` (default: all devices, [`sample_mesh`][jaxprob.scale.sample_mesh]).
        key: JAX PRNG key (required unless `init_params` is given).
        family: a [Family][jaxprob.em.Family] (default Gaussian with `covariance_type` and `reg_covar`); every
            family works, since only its additive statistics cross devices.
        covariance_type: `"full"`, `"tied"`, `"diag"` or `"spherical"`.
        n_init: number of restarts (vmapped on every device; the highest final log-likelihood is kept — restarts
            that reach the same optimum, up to rounding and a permutation of the components, may then be chosen
            differently on different numbers of devices).
        init_method: one of [`jaxprob.mixture.INIT_METHODS`][jaxprob.em.INIT_METHODS].
        init_params: optional starting [`Mixture`][jaxprob.em.Mixture] (every restart starts there).
        max_iter: hard limit on EM iterations (static).
        tol: threshold on the change of the mean log-likelihood.
        reg_covar: non-negative value added to the covariance diagonals.
        sample_weight: optional `(n,)` non-negative weights.
        callback: optional progress callback, as in [jaxprob.mixture.fit][].

    Returns:
        `(params, info)`: a [`Mixture`][jaxprob.em.Mixture] (replicated on the mesh) and a
        [`FitInfo`][jaxprob.em.FitInfo].

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import scale
        >>> x = jnp.concatenate([jax.random.normal(jax.random.key(1), (200, 2)) - 4,
        ...                      jax.random.normal(jax.random.key(2), (200, 2)) + 4])
        >>> gmm, info = scale.fit_sharded(x, 2, key=jax.random.key(0), mesh=scale.sample_mesh())
        >>> bool(info.converged), sorted(gmm.means[:, 0].round(0).tolist())
        (True, [-4.0, 4.0])
    """
    check_choice(init_method, "init_method", em.INIT_METHODS)
    mesh = _check_mesh(mesh)
    if init_params is not None:
        family = mixture.family_for(family, covariance_type, reg_covar, init_params)
    else:
        family = _family(family, covariance_type, reg_covar)
    # the family's own data rules (binary data, counts, ...) on data this process can read
    x = _check_data(x) if _is_global(x) else _check_data(family.validate(x, "x"))
    n_components = check_int(n_components, "n_components", minimum=1, maximum=x.shape[0])
    n_init = check_int(n_init, "n_init", minimum=1)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    _check_tol(tol)
    w = _check_weights(sample_weight, x)
    if init_params is not None:
        start = _check_init_params(init_params, x.shape[1], n_components, x.dtype)
        starts = jax.tree.map(lambda a: jnp.broadcast_to(a, (n_init,) + jnp.shape(a)), start)
    else:
        check_key(key)
        if _is_global(x):
            raise ValueError("`init_params` is required when `x` spans several processes (multi-host): fit "
                             "initial parameters on a sample every process reads, e.g. with mixture.fit")
        w0 = jnp.ones((x.shape[0],), x.dtype) if w is None else w
        starts = _starts_jit(key, x, w0, family, n_components, init_method, n_init)
    xs, ws = _shard(x, w, mesh)
    starts = jax.device_put(starts, NamedSharding(mesh, P()))
    program = _cached("em", mesh, max_iter, callback)
    return program(xs, ws, starts, jnp.asarray(tol, x.dtype))


@jax.jit(static_argnums=(4, 5, 6))
def _starts_jit(key, x, w, family, n_components, init_method, n_init):
    return em.initial_models(x, family, n_components, sample_weight=w, init_method=init_method, n_init=n_init, key=key)


def _family(family, covariance_type, reg_covar):
    if family is not None:
        if not isinstance(family, Family):
            raise TypeError(f"`family` must be a jaxprob.em.Family, got {type(family).__name__}")
        return family
    return families.gaussian("full" if covariance_type is None else covariance_type, reg_covar)


# ----------------------------------------------------------------------------------------------------------
# sharded Lloyd
# ----------------------------------------------------------------------------------------------------------
def _lloyd_sums(x, w, c, x_sq=None):
    """Per-cluster weighted sums and weights, inertia and labels of one pass, by the assignment of
    [`jaxprob.kmeans`][jaxprob.kmeans]: as in its Lloyd iterations when the rows' squared norms `x_sq` are given, else
    at full precision (exact distances)."""
    labels, d = kmeans.assign(x, c, exact=x_sq is None, x_sq=x_sq)
    k = c.shape[0]
    # deterministic on every backend (no atomic scatter-add on GPUs, see jaxprob.numerics)
    sums, counts = numerics.segment_sum(w[:, None] * x, labels, k), numerics.segment_sum(w, labels, k)
    return sums, counts, jnp.sum(w * d), labels


def _lloyd_update(c, sums, counts):
    """New centroids; a cluster with no weight keeps its centroid (no relocation, see kmeans_fit_sharded)."""
    safe = jnp.where(counts > 0, counts, 1.0)
    return jnp.where((counts > 0)[:, None], sums / safe[:, None], c)


class _LloydState(NamedTuple):
    centroids: jax.Array
    labels: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    trace: jax.Array


def _sharded_lloyd_program(mesh, max_iter: int):
    axis = mesh.axis_names[0]

    def local(x, w, starts, tol):
        total, sum_x = jax.lax.psum((jnp.sum(w), numerics.matmul(w, x)), axis)
        mean = sum_x / total
        var = jax.lax.psum(numerics.matmul(w, jnp.square(x - mean)), axis) / total
        tol_abs = tol * jnp.mean(var)  # tolerance relative to the mean feature variance, as kmeans.fit
        x_sq = jnp.sum(jnp.square(x), axis=-1)  # once, not in every iteration (as kmeans.fit)

        def one(c0):
            def body(s: _LloydState):
                sums, counts, inert, labels = _lloyd_sums(x, w, s.centroids, x_sq)
                changed = jnp.sum(labels != s.labels).astype(x.dtype)
                sums, counts, inert, changed = jax.lax.psum((sums, counts, inert, changed), axis)
                new = _lloyd_update(s.centroids, sums, counts)
                shift = jnp.sum(jnp.square(new - s.centroids))
                converged = (changed == 0) | (shift <= tol_abs)
                return _LloydState(new, labels, s.n_iter + 1, converged, s.trace.at[s.n_iter].set(inert))

            no_labels = jax.lax.pcast(jnp.full((x.shape[0],), -1, jnp.int32), (axis,), to="varying")
            s0 = _LloydState(c0, no_labels, jnp.zeros((), jnp.int32),
                             jnp.zeros((), bool), jnp.full((max_iter,), jnp.nan, x.dtype))
            s = jax.lax.while_loop(lambda s: (s.n_iter < max_iter) & ~s.converged, body, s0)
            _, counts, inert, labels = _lloyd_sums(x, w, s.centroids)
            counts, inert = jax.lax.psum((counts, inert), axis)
            return s, inert, counts, labels

        s, inert, counts, labels = jax.vmap(one)(starts)
        best = jnp.argmin(inert)
        result = kmeans.KMeans(s.centroids[best], labels[best], inert[best])
        info = kmeans.KMeansInfo(
            converged=s.converged[best],
            n_iter=s.n_iter[best],
            inertia_trace=s.trace[best],
            n_relocated=jnp.zeros((), jnp.int32),
            empty_clusters=counts[best] <= 0,
            restart_inertias=inert,
            best_restart=best.astype(jnp.int32),
        )
        return result, info

    out = (kmeans.KMeans(P(), P(axis), P()), P())
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(axis, None), P(axis), P(), P()), out_specs=out))


def kmeans_fit_sharded(x: ArrayLike, n_clusters: int, *, mesh: jax.sharding.Mesh | None = None,
                       key: jax.Array | None = None, init_method: str = "kmeans++",
                       init_centroids: ArrayLike | None = None, n_init: int = 1, max_iter: int = 300, tol: float = 1e-4,
                       sample_weight: ArrayLike | None = None) -> tuple[kmeans.KMeans, kmeans.KMeansInfo]:
    r"""Lloyd's k-means with the samples split over the devices of a 1-D mesh (`shard_map` + `psum`).

    Each device assigns its samples to the closest centroid and computes the per-cluster weighted sums
    $\sum_{i:z_i=k} w_i x_i$, weights and inertia; `lax.psum` adds them (the only cross-device
    reduction, together with the number of samples whose label changed) and every device computes the same new
    centroids. Iterations stop, as in [`jaxprob.kmeans.fit`][jaxprob.kmeans.fit], when no label changes or the squared
    centroid shift is at most `tol` times the mean feature variance, or after `max_iter` steps. Seeding is
    [`jaxprob.kmeans.init`][jaxprob.kmeans.init] on `x` with `jax.random.split(key, n_init)[r]` for restart `r`.

    Unlike [`jaxprob.kmeans.fit`][jaxprob.kmeans.fit], a cluster that receives no weight keeps its centroid (relocating
    it onto the farthest samples would need those samples from every device); such clusters are flagged in
    `info.empty_clusters`.

    Args:
        x: `(n, D)` float data (NumPy or JAX; a JAX array sharded along its rows is used in place).
        n_clusters: `K`, between 1 and `n`.
        mesh: 1-D `jax.sharding.Mesh` (default: all devices).
        key: JAX PRNG key (required unless `init_centroids` is given).
        init_method: `"kmeans++"` or `"random"`.
        init_centroids: optional `(K, D)` starting centroids (then `n_init` must be 1).
        n_init: number of restarts (vmapped; the lowest inertia is kept).
        max_iter: hard limit on Lloyd steps (static).
        tol: relative tolerance on the squared centroid shift.
        sample_weight: optional `(n,)` non-negative weights.

    Returns:
        `(result, info)`: a [`KMeans`][jaxprob.kmeans.KMeans] (`labels` sharded like the padded `x`
        and cut to `n`) and a [`KMeansInfo`][jaxprob.kmeans.KMeansInfo].

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import scale
        >>> x = jnp.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
        >>> result, info = scale.kmeans_fit_sharded(x, 2, key=jax.random.key(0), n_init=3)
        >>> sorted(result.centroids[:, 0].tolist()), float(result.inertia)
        ([0.0, 10.0], 1.0)
    """
    check_choice(init_method, "init_method", kmeans.INIT_METHODS)
    mesh = _check_mesh(mesh)
    x = _check_data(x)
    n_clusters = check_int(n_clusters, "n_clusters", minimum=1, maximum=x.shape[0])
    n_init = check_int(n_init, "n_init", minimum=1)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    _check_tol(tol)
    w = _check_weights(sample_weight, x)
    if init_centroids is not None:
        c0 = as_float_array(init_centroids, "init_centroids", 2, dtype=x.dtype)
        check_finite(c0, "init_centroids")
        if c0.shape != (n_clusters, x.shape[1]):
            raise ValueError(f"`init_centroids` must have shape ({n_clusters}, {x.shape[1]}), got {tuple(c0.shape)}")
        if n_init != 1:
            raise ValueError(f"`n_init` must be 1 when `init_centroids` is given, got {n_init}")
        starts = c0[None]
    else:
        check_key(key)
        if _is_global(x):
            raise ValueError("`init_centroids` is required when `x` spans several processes (multi-host)")

        def one(k):
            return kmeans.init(x, n_clusters, init_method=init_method, sample_weight=w, key=k)

        starts = jax.vmap(one)(jax.random.split(key, n_init))
    n = x.shape[0]
    xs, ws = _shard(x, w, mesh)
    program = _cached("lloyd", mesh, max_iter)
    result, info = program(xs, ws, jax.device_put(starts, NamedSharding(mesh, P())), jnp.asarray(tol, x.dtype))
    if result.labels.shape[0] != n:
        result = result._replace(labels=result.labels[:n])
    return result, info


# ----------------------------------------------------------------------------------------------------------
# chunked data
# ----------------------------------------------------------------------------------------------------------
def _file_reader(x):
    """Read rows [a, b) of a C-ordered `np.memmap` with ordinary file reads (no pages left mapped), or None.

    Only a read-only map (`mode="r"`) of the whole array, whose file is still there and long enough, is read
    from its file: a copy-on-write map (`mode="c"`) may hold edits the file does not, and a view, a deleted or
    a truncated file would give other bytes than the array; those are read from the array itself."""
    if not (isinstance(x, np.memmap) and isinstance(x.base, mmap.mmap) and x.flags.c_contiguous and x.filename):
        return None
    if getattr(x, "mode", None) != "r" or x.base is None:
        return None
    row = int(np.prod(x.shape[1:], dtype=np.int64)) * x.dtype.itemsize
    path, offset, dtype, shape = x.filename, int(x.offset), x.dtype, x.shape[1:]
    try:
        if os.path.getsize(path) < offset + x.shape[0] * row:
            return None
    except OSError:
        return None
    if len(x.base) != offset % mmap.ALLOCATIONGRANULARITY + x.shape[0] * row:
        # the map covers more than this array (a slice of a larger map): slicing the array is exact
        return None

    def read(a, b):
        out = np.fromfile(path, dtype=dtype, count=(b - a) * row // dtype.itemsize, offset=offset + a * row)
        return out.reshape((b - a,) + shape)

    return read


def _array_chunks(x, w, chunk_size):
    n = x.shape[0]
    read_x = _file_reader(x) or (lambda a, b: x[a:b])
    read_w = None if w is None else (_file_reader(w) or (lambda a, b: w[a:b]))
    for a in range(0, n, chunk_size):
        b = min(n, a + chunk_size)
        yield read_x(a, b), None if read_w is None else read_w(a, b)


def _split_item(item):
    if isinstance(item, tuple):
        if len(item) != 2:
            raise ValueError(f"a chunk must be an array `x` or a pair `(x, sample_weight)`, got a tuple of {len(item)}")
        return item
    return item, None


def _check_chunk_arrays(xc, wc, where, d, check_values: bool, validate=None):
    """Shape and dtype checks of one chunk (values only when `check_values`, with the family's `validate` when
    given); returns (x, w) as arrays. `where` names the chunk in error messages."""
    if not isinstance(xc, jax.Array):
        xc = np.asarray(xc)
    if not jnp.issubdtype(xc.dtype, jnp.floating):
        raise TypeError(f"{where} must have a floating dtype (float32 or float64), got {xc.dtype}")
    if xc.ndim != 2 or (d is not None and xc.shape[1] != d):
        want = f"(m, {d})" if d is not None else "(m, D)"
        raise ValueError(f"{where} must have shape {want}, got {tuple(xc.shape)}")
    if wc is not None:
        wc = wc if isinstance(wc, jax.Array) else np.asarray(wc)
        if wc.shape != (xc.shape[0],):
            raise ValueError(f"the weights of {where} must have shape ({xc.shape[0]},), got {tuple(wc.shape)}")
    if check_values:
        if not (bool(_all_finite(xc)) if isinstance(xc, jax.Array) else bool(np.all(np.isfinite(xc)))):
            raise ValueError(f"{where} contains NaN or infinite value(s)")
        if wc is not None:
            arr = np.asarray(wc)
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise ValueError(f"the weights of {where} must be finite and non-negative")
        if validate is not None:
            try:
                validate(xc, "data")
            except (TypeError, ValueError) as err:
                raise type(err)(f"{where}: {err}") from None
    return xc, wc


def iter_chunks(data: ArrayLike | Callable[[], Iterable[Any]], *, chunk_size: int | None = None,
                sample_weight: ArrayLike | None = None) -> Iterator[tuple[ArrayLike, ArrayLike | None]]:
    """One pass over the data, chunk by chunk: yields `(x_chunk, w_chunk)` pairs (`w_chunk` may be None).

    `data` is either an array of shape `(n, D)` — NumPy, `np.memmap` or JAX, read `chunk_size` rows at a
    time (a C-ordered `np.memmap` is read with ordinary file reads at its offset, so the pages read do not stay
    mapped into the process and resident memory stays near one chunk) — or a function with no arguments that
    returns an iterable of chunks, each an array `x` or a pair `(x, sample_weight)` (called once per pass, so
    iterative fits can read the data several times). A bare generator or iterator is refused: it can be read only
    once.

    Args:
        data: an `(n, D)` array or a function returning an iterable of chunks.
        chunk_size: rows per chunk for array data (default [`DEFAULT_CHUNK_SIZE`][jaxprob.scale.DEFAULT_CHUNK_SIZE]);
            ignored for functions.
        sample_weight: optional `(n,)` weights for array data (sliced like `data`).

    Returns:
        An iterator of `(x_chunk, w_chunk)`.

    Examples:
        >>> import numpy as np
        >>> from jaxprob import scale
        >>> [x.shape for x, _ in scale.iter_chunks(np.zeros((5, 2)), chunk_size=2)]
        [(2, 2), (2, 2), (1, 2)]
    """
    if chunk_size is not None:
        chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    if callable(data) and not hasattr(data, "shape"):
        if sample_weight is not None:
            raise ValueError("`sample_weight` is for array data; a function yields `(x, sample_weight)` pairs")

        def gen():
            for item in data():
                yield _split_item(item)

        return gen()
    if isinstance(data, Iterable) and not hasattr(data, "shape"):
        raise TypeError(
            "`data` must be an (n, D) array or a function returning an iterable of chunks (called once per "
            f"pass); got {type(data).__name__}, which can be read only once — wrap it, e.g. `lambda: make_chunks()`"
        )
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        raise TypeError(f"`data` must be an (n, D) array or a function returning chunks, got {type(data).__name__}")
    if len(data.shape) != 2:
        raise ValueError(f"`data` must have 2 dimension(s), got shape {tuple(data.shape)}")
    if data.shape[0] < 1:
        raise ValueError("`data` must hold at least one sample")
    if not jnp.issubdtype(data.dtype, jnp.floating):
        raise TypeError(f"`data` must have a floating dtype (float32 or float64), got {data.dtype}")
    if sample_weight is not None and tuple(np.shape(sample_weight)) != (data.shape[0],):
        raise ValueError(f"`sample_weight` must have shape ({data.shape[0]},) to match data, got "
                         f"{tuple(np.shape(sample_weight))}")
    return _array_chunks(data, sample_weight, chunk_size or DEFAULT_CHUNK_SIZE)


class _Chunks:
    """Repeatable passes over a data source, cut into pieces of a fixed number of rows (the last piece of every
    chunk is padded with weight-0 rows), so each jitted per-piece function compiles once."""

    def __init__(self, data, chunk_size, sample_weight, dtype, auto_rows, validate=None):
        if chunk_size is not None:
            chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
        self.rows = chunk_size or auto_rows
        self.read = max(self.rows, DEFAULT_CHUNK_SIZE)  # rows read at a time from array data
        iter_chunks(data, chunk_size=self.read, sample_weight=sample_weight)  # eager argument checks
        self.data, self.sample_weight = data, sample_weight
        self.d = data.shape[1] if hasattr(data, "shape") else None
        self.dtype = dtype
        self.checked = False
        self.validate = validate

    def passes(self):
        """Yield (x, w) device arrays of one pass; the first pass checks the values of every chunk."""
        count, start = 0, 0
        for i, (xc, wc) in enumerate(iter_chunks(self.data, chunk_size=self.read, sample_weight=self.sample_weight)):
            m = np.shape(xc)[0] if np.ndim(xc) else 0
            where = f"rows {start}:{start + m} of `data`" if hasattr(self.data, "shape") else f"chunk {i} of `data`"
            start += m
            xc, wc = _check_chunk_arrays(xc, wc, where, self.d, not self.checked, self.validate)
            for a in range(0, xc.shape[0], self.rows):
                xb = xc[a:a + self.rows]
                wb = None if wc is None else wc[a:a + self.rows]
                yield self._pad(xb, wb)
                count += 1
        if count == 0:
            raise ValueError("`data` yielded no samples")
        self.checked = True

    def _pad(self, xb, wb):
        m = xb.shape[0]
        xb = jnp.asarray(xb, self.dtype)
        wb = jnp.ones((m,), self.dtype) if wb is None else jnp.asarray(wb, self.dtype)
        if m < self.rows:
            xb, wb = _pad_jit(xb, wb, self.rows)
        return xb, wb


@jax.jit
def _em_chunk_jit(acc, x, w, model, center):
    stats = em.e_step(em.prepare(x, model.family, w, center), model)
    return jax.tree.map(jnp.add, acc, stats)


@jax.jit
def _center_chunk_jit(acc, x, w):
    return acc[0] + jnp.sum(w), acc[1] + numerics.matmul(w, x)


@jax.jit
def _m_step_prev_jit(stats, center, previous):
    return em.m_step(previous.family, stats, center, previous)


def _check_chunked_args(max_iter, tol):
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    _check_tol(tol)
    return max_iter


def _zeros_like_stats(model, center, x0, w0):
    shapes = jax.eval_shape(lambda m, c, x, w: em.e_step(em.prepare(x, m.family, w, c), m), model, center, x0, w0)
    return jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)


def fit_chunked(data: ArrayLike | Callable[[], Iterable[Any]], init_params: Mixture, *, chunk_size: int | None = None,
                sample_weight: ArrayLike | None = None, max_iter: int = 100, tol: float = 1e-3,
                callback: Callable | None = None) -> tuple[Mixture, FitInfo]:
    r"""Exact EM over data read chunk by chunk (larger than memory): one pass over the chunks is one EM iteration.

    Works for every family: a pass adds the additive statistics of the chunks (`jax.tree.map(jnp.add, ...)`, one
    compiled function over pieces of a fixed number of rows, the last piece of a chunk padded with weight-0 rows)
    and then runs the M-step on the sums, so an iteration equals the full-batch iteration of
    [jaxprob.mixture.fit][] up to the rounding of the sums. A first pass computes the weighted data mean, the
    reference of the moments (as `mixture.fit`). Iterations stop as in `mixture.fit` (change of the mean
    log-likelihood below `tol`, or `max_iter` M-steps); the last pass scores the returned model, and a
    non-finite log-likelihood ends the fit on the last model whose likelihood was finite (`info.nonfinite`).
    Memory: one chunk read and the prepared features of one piece, not the data.

    Initial parameters usually come from a fit on a sample, e.g. `mixture.fit(x[:100_000], K, key=key)[0]`.

    Args:
        data: an `(n, D)` array (NumPy, `np.memmap`, JAX) or a function returning an iterable of chunks, each
            `x` or `(x, sample_weight)` (see [iter_chunks][jaxprob.scale.iter_chunks]). A memory-mapped array is
            read as the array holds it (a read-only map is read with file reads, which give the same bytes).
        init_params: starting [Mixture][jaxprob.em.Mixture] (its family is used).
        chunk_size: rows per computed piece; default automatic, about $2^{20}$ feature entries per piece (8,192
            rows for a full covariance at $D=16$), which keeps the piece in cache. Array data are read
            `max(chunk_size, 65536)` rows at a time.
        sample_weight: optional `(n,)` non-negative weights for array data.
        max_iter: hard limit on EM iterations.
        tol: threshold on the change of the mean log-likelihood.
        callback: optional `callback(n_iter, mean_log_likelihood)` called after every pass.

    Returns:
        `(model, info)`: a [Mixture][jaxprob.em.Mixture] and a [FitInfo][jaxprob.em.FitInfo] (one restart).

    Examples:
        >>> import jax, numpy as np
        >>> from jaxprob import mixture, scale
        >>> rng = np.random.default_rng(0)
        >>> x = np.concatenate([rng.normal(-4, 1, (500, 2)), rng.normal(4, 1, (500, 2))]).astype(np.float32)
        >>> init = mixture.init(x[::10], 2, key=jax.random.key(0))
        >>> gmm, info = scale.fit_chunked(x, init, chunk_size=256)
        >>> bool(info.converged), sorted(gmm.means[:, 0].round(0).tolist())
        (True, [-4.0, 4.0])
    """
    max_iter = _check_chunked_args(max_iter, tol)
    init_params = _check_init_params(init_params, None, None, jnp.result_type(init_params.weights.dtype)
                                     if isinstance(init_params, Mixture) else None)
    dtype = init_params.weights.dtype
    d = init_params.n_features
    width = jax.eval_shape(lambda: init_params.family.prepare(jnp.zeros((1, d), dtype), jnp.ones((1,), dtype),
                                                              jnp.zeros((d,), dtype)))
    entries = sum(int(np.prod(a.shape[1:], dtype=np.int64)) for a in jax.tree.leaves(width))
    chunks = _Chunks(data, chunk_size, sample_weight, dtype, _auto_rows(max(entries, 1)),
                     init_params.family.validate)
    if chunks.d is not None and chunks.d != d:
        raise ValueError(f"`data` has {chunks.d} features but `init_params` has {d}")
    chunks.d = d
    model = init_params
    k = model.n_components

    acc = (jnp.zeros((), dtype), jnp.zeros((d,), dtype))
    for xb, wb in chunks.passes():
        acc = _center_chunk_jit(acc, xb, wb)
    center = acc[1] / acc[0]

    prev, n_iter, converged, nonfinite = -np.inf, 0, False, False
    trace = np.full(max_iter, np.nan)
    collapsed = np.zeros(k, bool)
    regularized = np.zeros(k, bool)
    good, good_ll = model, np.nan
    zeros = None
    while True:
        for xb, wb in chunks.passes():
            if zeros is None:
                zeros = _zeros_like_stats(model, center, xb, wb)
                acc = zeros
            acc = _em_chunk_jit(acc, xb, wb, model, center)
        stats, acc = acc, zeros
        ll = float(stats.log_likelihood / stats.total_weight)
        nonfinite = not np.isfinite(ll)
        if nonfinite:  # the last model whose likelihood was finite (as mixture.fit)
            if n_iter > 0:
                model, ll = good, good_ll
            converged = False
            break
        good, good_ll = model, ll
        if converged or n_iter >= max_iter:
            break
        model, col, regd = _m_step_prev_jit(stats, center, model)
        trace[n_iter] = ll
        n_iter += 1
        if callback is not None:
            callback(n_iter, ll)
        converged = abs(ll - prev) < tol
        prev = ll
        collapsed = np.asarray(col)
        regularized |= np.asarray(regd)
    info = em.info_of_one_run(converged=converged, n_iter=n_iter, log_likelihood=ll, trace=trace,
                              collapsed=collapsed, regularized=regularized, nonfinite=nonfinite, dtype=dtype)
    return model, info


@jax.jit
def _lloyd_chunk_jit(acc, x, w, c, center):
    sums, counts, inert, _ = _lloyd_sums(x, w, c)
    xc = x - center
    mom = (jnp.sum(w), numerics.matmul(w, xc), numerics.matmul(w, jnp.square(xc)))
    a_sums, a_counts, a_inert, a_mom = acc
    return a_sums + sums, a_counts + counts, a_inert + inert, tuple(u + v for u, v in zip(a_mom, mom, strict=True))


def kmeans_fit_chunked(data: ArrayLike | Callable[[], Iterable[Any]], init_centroids: ArrayLike, *,
                       chunk_size: int | None = None, sample_weight: ArrayLike | None = None, max_iter: int = 300,
                       tol: float = 1e-4) -> tuple[kmeans.KMeans, kmeans.KMeansInfo]:
    """Exact Lloyd iterations over data read chunk by chunk: one pass is one full-batch Lloyd step.

    Each pass adds, over the chunks, the per-cluster weighted sums, weights and the inertia of the current
    centroids (one compiled function); the centroids then move to the means. Iterations stop when the squared
    centroid shift is at most `tol` times the mean feature variance (measured in the first pass; `tol=0`
    stops when the centroids no longer move) or after `max_iter` steps. A cluster that receives no weight keeps
    its centroid (flagged in `info.empty_clusters`). Labels are not kept (the data are not in memory): compute
    them chunk by chunk with [`jaxprob.kmeans.predict`][jaxprob.kmeans.predict].

    Args:
        data: an `(n, D)` array (NumPy, `np.memmap`, JAX) or a function returning an iterable of chunks (see
            [`iter_chunks`][jaxprob.scale.iter_chunks]).
        init_centroids: `(K, D)` starting centroids, e.g. [`jaxprob.kmeans.init`][jaxprob.kmeans.init] on a sample.
        chunk_size: rows per computed piece; default automatic, about $2^{19}$ distances per piece
            (32,768 rows at $K=16$). Array data are read `max(chunk_size, 65536)` rows at a time.
        sample_weight: optional `(n,)` non-negative weights for array data.
        max_iter: hard limit on Lloyd steps.
        tol: relative tolerance on the squared centroid shift.

    Returns:
        `(result, info)`: a [`KMeans`][jaxprob.kmeans.KMeans] with `labels=None` and the inertia of the
        returned centroids, and a [`KMeansInfo`][jaxprob.kmeans.KMeansInfo] (one restart).

    Examples:
        >>> import numpy as np
        >>> from jaxprob import scale
        >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
        >>> result, info = scale.kmeans_fit_chunked(x, x[[0, 2]], chunk_size=3)
        >>> sorted(result.centroids[:, 0].tolist()), float(result.inertia), int(info.n_iter)
        ([0.0, 10.0], 1.0, 2)
    """
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    _check_tol(tol)
    c = as_float_array(init_centroids, "init_centroids", 2)
    check_finite(c, "init_centroids")
    chunks = _Chunks(data, chunk_size, sample_weight, c.dtype, _auto_rows(max(c.shape), _TARGET_ENTRIES // 2))
    if chunks.d is not None and chunks.d != c.shape[1]:
        raise ValueError(f"`data` has {chunks.d} features but `init_centroids` has {c.shape[1]}")
    chunks.d = c.shape[1]
    k, d = c.shape
    dtype = c.dtype
    center = jnp.mean(c, axis=0)
    tol_abs = None
    n_iter, converged = 0, False
    trace = np.full(max_iter, np.nan)
    while True:
        z = jnp.zeros((), dtype)
        acc = (jnp.zeros((k, d), dtype), jnp.zeros((k,), dtype), z, (z, jnp.zeros((d,), dtype),
                                                                       jnp.zeros((d,), dtype)))
        for xb, wb in chunks.passes():
            acc = _lloyd_chunk_jit(acc, xb, wb, c, center)
        sums, counts, inert, (sw, s1, s2) = acc
        if tol_abs is None:
            m = s1 / sw
            tol_abs = float(tol * jnp.mean(s2 / sw - jnp.square(m)))
        if converged or n_iter >= max_iter:
            break
        new = _lloyd_update(c, sums, counts)
        trace[n_iter] = float(inert)
        n_iter += 1
        converged = float(jnp.sum(jnp.square(new - c))) <= tol_abs
        c = new
    result = kmeans.KMeans(c, None, inert)
    info = kmeans.KMeansInfo(
        converged=jnp.asarray(converged),
        n_iter=jnp.asarray(n_iter, jnp.int32),
        inertia_trace=jnp.asarray(trace, dtype),
        n_relocated=jnp.zeros((), jnp.int32),
        empty_clusters=counts <= 0,
        restart_inertias=inert[None],
        best_restart=jnp.asarray(0, jnp.int32),
    )
    return result, info


# ----------------------------------------------------------------------------------------------------------
# online (stepwise) EM and streaming mini-batch k-means
# ----------------------------------------------------------------------------------------------------------
def online_em_init(params: Mixture) -> OnlineEMState:
    """Stepwise-EM state from initial parameters (the statistics implied by `params`, about their mean).

    Args:
        params: initial [Mixture][jaxprob.em.Mixture], e.g. fitted on the first batch. Its family must provide
            `implied_statistics` (every family of [jaxprob.families][] does).

    Returns:
        An [OnlineEMState][jaxprob.scale.OnlineEMState] with `step = 0`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture, scale
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]), jnp.ones(2), "spherical")
        >>> state = scale.online_em_init(gmm)
        >>> int(state.step), state.stats.counts.tolist()
        (0, [0.5, 0.5])
    """
    _check_init_params(params, None, None, params.weights.dtype if isinstance(params, Mixture) else None)
    return _online_init_jit(params)


@jax.jit
def _online_init_jit(params):
    family, a = params.family, params.weights
    center = family.model_center(params.weights, params.components)
    fam = family.implied_statistics(params.components, a, center)
    one, zero = jnp.ones((), a.dtype), jnp.zeros((), a.dtype)
    stats = Stats(a, fam, zero, one, one)
    return OnlineEMState(params, stats, center, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


@jax.jit
def _online_step_jit(state: OnlineEMState, x, w, kappa, t0):
    params, avg = state.params, state.stats
    batch = em.e_step(em.prepare(x, params.family, w, state.center), params)
    tw = batch.total_weight
    eta = (state.step.astype(x.dtype) + t0) ** (-kappa)
    safe_tw = jnp.where(tw > 0, tw, 1.0)
    stats = jax.tree.map(lambda a, b: (1.0 - eta) * a + eta * b / safe_tw, avg, batch)
    # total weight stays 1; the collapse test compares with one batch sample's share
    stats = stats._replace(total_weight=jnp.ones((), x.dtype), n_samples=batch.n_samples)
    new, _, _ = em.m_step(params.family, stats, state.center, params)
    skip = tw <= 0  # a batch of zero weight carries no information: skipped, counted, never a NaN model
    out = OnlineEMState(new, stats, state.center, state.step + 1, state.n_skipped)
    out = jax.tree.map(lambda a, b: jnp.where(skip, a, b), state, out)
    out = out._replace(n_skipped=state.n_skipped + skip.astype(jnp.int32))
    return out, jnp.where(skip, jnp.nan, batch.log_likelihood / safe_tw)


def _check_step_size(kappa, t0):
    for name, v in (("kappa", kappa), ("t0", t0)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
            raise TypeError(f"`{name}` must be a number, got {type(v).__name__}")
    if not 0.5 < float(kappa) <= 1.0:
        raise ValueError(f"`kappa` must be in (0.5, 1] (Robbins-Monro conditions), got {kappa}")
    if not (math.isfinite(float(t0)) and float(t0) >= 1.0):
        raise ValueError(f"`t0` must be a finite number >= 1 (so that every step size is at most 1), got {t0}")


def online_em_step(state: OnlineEMState, x_batch: ArrayLike, *, kappa: float = 0.6, t0: float = 1.0,
                   sample_weight: ArrayLike | None = None) -> tuple[OnlineEMState, jax.Array]:
    r"""One stepwise-EM update (Cappé and Moulines, 2009) from a batch.

    With $\hat s_t$ the batch's sufficient statistics divided by its total weight and
    $\eta_t = (t + t_0)^{-\kappa}$, the running statistics become
    $s_{t+1} = (1-\eta_t)\, s_t + \eta_t\, \hat s_t$ and the parameters their M-step. With `t0=1` the
    first step ($\eta_0 = 1$) is a full EM step on the first batch. $\tfrac12 < \kappa \le 1$
    ($\sum\eta_t = \infty$, $\sum\eta_t^2 < \infty$); smaller $\kappa$ forgets faster.

    Args:
        state: an [`OnlineEMState`][jaxprob.scale.OnlineEMState] (see [`online_em_init`][jaxprob.scale.online_em_init]).
        x_batch: `(b, D)` samples.
        kappa: decay exponent of the step size, in `(0.5, 1]`.
        t0: step-size offset, `>= 1`.
        sample_weight: optional `(b,)` non-negative weights.

    Returns:
        `(state, batch_log_likelihood)`: the new state and the batch's mean log-likelihood under the parameters
        *before* the step. A batch whose weights are all zero is skipped (`state.n_skipped` grows, the
        parameters stay) and gives NaN.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture, scale
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]), jnp.ones(2), "spherical")
        >>> state = scale.online_em_init(gmm)
        >>> state, ll = scale.online_em_step(state, jnp.array([[-2.0], [-1.5], [1.5], [2.0]]))
        >>> int(state.step), [round(float(m), 2) for m in state.params.means.ravel()]
        (1, [-1.64, 1.64])
    """
    if not isinstance(state, OnlineEMState):
        raise TypeError(f"`state` must be an OnlineEMState (see online_em_init), got {type(state).__name__}")
    _check_step_size(kappa, t0)
    xb = mixture.validate_data(x_batch, state.params, "x_batch")
    wb = check_sample_weight(sample_weight, xb.shape[0], xb.dtype, allow_all_zero=True)
    state = _as_dtype(state, xb.dtype)
    return _online_step_jit(state, xb, wb, jnp.asarray(kappa, xb.dtype), jnp.asarray(t0, xb.dtype))


def _stream(batches, n_epochs):
    """Batches of a stream: an iterable read once, or a function returning one (read `n_epochs` times)."""
    if callable(batches) and not hasattr(batches, "shape"):
        for _ in range(n_epochs):
            yield from batches()
    else:
        if n_epochs != 1:
            raise ValueError("`n_epochs` > 1 needs `batches` to be a function returning a fresh iterable")
        if not isinstance(batches, Iterable) or hasattr(batches, "shape"):
            raise TypeError(f"`batches` must be an iterable of arrays or a function returning one, got "
                            f"{type(batches).__name__}")
        yield from batches


def fit_online(batches: Iterable[Any] | Callable[[], Iterable[Any]], init_params: Mixture, *, kappa: float = 0.6,
               t0: float = 1.0, n_epochs: int = 1, callback: Callable | None = None) -> tuple[Mixture, OnlineInfo]:
    """Stepwise EM over a stream of batches (each `x` or `(x, sample_weight)`), one
[`online_em_step`][jaxprob.scale.online_em_step] per
    batch; a batch shorter than the first is padded with weight-0 rows, so the step compiles once.

    Args:
        batches: an iterable of batches (read once), or a function returning one (read `n_epochs` times).
        init_params: starting [`Mixture`][jaxprob.em.Mixture].
        kappa: decay exponent of the step size, in `(0.5, 1]`.
        t0: step-size offset, `>= 1`.
        n_epochs: passes over `batches` when it is a function.
        callback: optional `callback(step, batch_mean_log_likelihood)` called after every batch.

    Returns:
        `(params, info)`: the final [`Mixture`][jaxprob.em.Mixture] and an [`OnlineInfo`][jaxprob.scale.OnlineInfo]
        (mean batch log-likelihood before every step; batches of zero total weight are skipped and counted in
        `info.n_skipped`).

    Examples:
        >>> import jax, numpy as np
        >>> from jaxprob import mixture, scale
        >>> rng = np.random.default_rng(0)
        >>> def stream():
        ...     for _ in range(50):
        ...         z = rng.integers(0, 2, 200)
        ...         yield (rng.normal(0, 1, (200, 1)) + np.where(z, 4.0, -4.0)[:, None]).astype(np.float32)
        >>> init = mixture.make_gmm(np.array([0.5, 0.5]), np.array([[-1.0], [1.0]]), np.ones(2), "spherical")
        >>> gmm, info = scale.fit_online(stream(), init)
        >>> info.n_steps, sorted(gmm.means.ravel().round(0).tolist())
        (50, [-4.0, 4.0])
    """
    _check_step_size(kappa, t0)
    n_epochs = check_int(n_epochs, "n_epochs", minimum=1)
    state = online_em_init(init_params)
    dtype = init_params.weights.dtype
    kap, off = (jnp.asarray(v, dtype) for v in (kappa, t0))
    trace = []
    for xa, wa in _stream_pieces(batches, n_epochs, init_params.n_features, dtype, init_params.family.validate):
        state, ll = _online_step_jit(state, xa, wa, kap, off)
        trace.append(ll)
        if callback is not None:
            callback(len(trace), float(ll))
    if not trace:
        raise ValueError("`batches` yielded no samples")
    return state.params, OnlineInfo(len(trace), np.asarray(jnp.stack(trace)), int(state.n_skipped))


def _stream_pieces(batches, n_epochs, d, dtype, validate=None):
    """Checked `(x, w)` pieces of a stream, all as long as the first non-empty batch (longer batches are cut,
    shorter pieces padded with weight-0 rows), so the step consuming them compiles once."""
    rows = None
    for i, item in enumerate(_stream(batches, n_epochs)):
        xb, wb = _split_item(item)
        xb, wb = _check_chunk_arrays(xb, wb, f"batch {i} of `batches`", d, True, validate)
        m = xb.shape[0]
        if m == 0:
            continue
        rows = rows or m
        for a in range(0, m, rows):
            xa = jnp.asarray(xb[a:a + rows], dtype)
            wa = jnp.ones((xa.shape[0],), dtype) if wb is None else jnp.asarray(wb[a:a + rows], dtype)
            if xa.shape[0] < rows:
                xa, wa = _pad_jit(xa, wa, rows)
            yield xa, wa


def kmeans_fit_stream(batches: Iterable[Any] | Callable[[], Iterable[Any]], init_centroids: ArrayLike, *,
                      n_epochs: int = 1) -> tuple[kmeans.MiniBatchState, OnlineInfo]:
    """Mini-batch k-means ([`jaxprob.kmeans.minibatch_step`][jaxprob.kmeans.minibatch_step]) over a stream of batches
(each `x` or
    `(x, sample_weight)`); a batch shorter than the first is padded with weight-0 rows (one compilation).

    Args:
        batches: an iterable of batches (read once), or a function returning one (read `n_epochs` times).
        init_centroids: `(K, D)` starting centroids.
        n_epochs: passes over `batches` when it is a function.

    Returns:
        `(state, info)`: the final [`MiniBatchState`][jaxprob.kmeans.MiniBatchState] (centroids and cumulated counts)
        and an [`OnlineInfo`][jaxprob.scale.OnlineInfo] (mean batch inertia before every step).

    Examples:
        >>> import numpy as np
        >>> from jaxprob import scale
        >>> batches = [np.array([[0.0], [10.0], [0.2], [9.8]])] * 5
        >>> state, info = scale.kmeans_fit_stream(batches, np.array([[1.0], [8.0]]))
        >>> [round(float(c), 2) for c in state.centroids.ravel()], info.n_steps
        ([0.1, 9.9], 5)
    """
    state = kmeans.minibatch_init(init_centroids)
    n_epochs = check_int(n_epochs, "n_epochs", minimum=1)
    d = state.centroids.shape[1]
    dtype = state.centroids.dtype
    trace = []
    for xa, wa in _stream_pieces(batches, n_epochs, d, dtype):
        state, j = kmeans.minibatch_step(state, xa, sample_weight=wa)
        trace.append(j)
    if not trace:
        raise ValueError("`batches` yielded no samples")
    return state, OnlineInfo(len(trace), np.asarray(jnp.stack(trace)))


# ----------------------------------------------------------------------------------------------------------
# differentiable EM
# ----------------------------------------------------------------------------------------------------------
@jax.jit(static_argnums=(3,))
def _em_steps_jit(x, w, params, n_steps):
    prepared = em.prepare(x, params.family, w)
    return jax.lax.scan(lambda m, _: em.step(prepared, m), params, None, length=n_steps)


def em_steps(x: ArrayLike, params: Mixture, n_steps: int, *,
             sample_weight: ArrayLike | None = None) -> tuple[Mixture, jax.Array]:
    r"""A fixed number of EM iterations under `lax.scan`: differentiable with respect to `x`, `params` (and the
    weights).

    [jaxprob.mixture.fit][] stops on a tolerance inside `lax.while_loop`, which JAX cannot differentiate in
    reverse mode (`jax.grad` raises); here the number of iterations is fixed, so `jax.grad` / `jax.vjp` go
    through the unrolled E- and M-steps (memory grows with `n_steps`: the scan keeps every iteration's
    residuals). Gradients with respect to a Gaussian `params` flow through `weights`, `means` and
    `precisions_cholesky` (the E-step's parametrisation); build `params` with [jaxprob.mixture.make_gmm][]
    inside the differentiated function to differentiate with respect to covariances.

    Args:
        x: `(n, D)` data.
        params: initial [Mixture][jaxprob.em.Mixture].
        n_steps: number of EM iterations (static).
        sample_weight: optional `(n,)` non-negative weights.

    Returns:
        `(params, trace)`: the model after `n_steps` iterations and the `(n_steps,)` mean
        log-likelihood at each E-step.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import mixture, scale
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]), jnp.ones(2), "spherical")
        >>> x = jnp.array([[-2.0], [-1.5], [1.5], [2.0]])
        >>> def loss(x):
        ...     fitted, _ = scale.em_steps(x, gmm, 3)
        ...     return fitted.means[1, 0]
        >>> g = jax.grad(loss)(x)
        >>> g.shape, bool(g[3, 0] > 0)
        ((4, 1), True)
    """
    x = mixture.validate_data(x, params, "x")
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    w = check_sample_weight(sample_weight, x.shape[0], x.dtype)
    return _em_steps_jit(x, w, _as_dtype(params, x.dtype), n_steps)
