r"""Kernel density estimation.

The estimate from points $x_1,\dots,x_n$ with weights $w_i$ (summing to one) and a bandwidth
matrix $H$ (the kernel's scale, a covariance for the Gaussian kernel) is

$$
\hat f(x) = \sum_{i=1}^n w_i K_H(x - x_i), \qquad
K_H(u) = |H|^{-1/2} K\!\left(H^{-1/2} u\right),
$$

with $w_i = 1/n$ without weights. Kernels (`KERNELS`), for $z \in \mathbb R^D$:

* `"gaussian"`: $K(z) = (2\pi)^{-D/2} \exp(-\lVert z\rVert^2/2)$;
* `"epanechnikov"`: $K(z) = \frac{D+2}{2 V_D} (1 - \lVert z\rVert^2)_+$ with $V_D$ the volume
  of the unit ball (compact support: the log-density is $-\infty$ far from every point);
* `"tophat"`: $K(z) = \mathbb 1[\lVert z\rVert < 1] / V_D$. The ball is open, as in scikit-learn's
  `KernelDensity` (whose kernel is 1 for a distance `< h`): a point exactly one bandwidth away from a query adds
  nothing. The test is made on the differences of the coordinates, not on the expanded squared norms, so that
  it is exact where the data allow it (integer data and an integer scalar bandwidth), and not decided by
  rounding.

A scalar bandwidth $h$ means $H = h^2 I$ (scikit-learn's `KernelDensity(bandwidth=h)`).

The log-density is a log-sum-exp over the points, evaluated in blocks of queries (`lax.map`) and blocks of
points (`lax.scan` with a running maximum), so memory is `query_chunk x point_chunk` whatever the sizes:
100k queries against 100k points run in a few dozen megabytes.

Bandwidths: Scott's rule $H = n_\text{eff}^{-2/(D+4)}\,\hat\Sigma$, Silverman's rule
$H = \left(n_\text{eff}(D+2)/4\right)^{-2/(D+4)}\hat\Sigma$ ($\hat\Sigma$ the weighted covariance,
full or its diagonal; $n_\text{eff} = (\sum w)^2 / \sum w^2$), and [`select_bandwidth`][jaxprob.kde.select_bandwidth],
which scales a base bandwidth by each factor of a grid and keeps the one with the highest held-out log-likelihood
(one vmapped program over the grid).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxprob import numerics
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
    "KERNELS",
    "BANDWIDTH_RULES",
    "KDE",
    "BandwidthSearch",
    "bandwidth_scott",
    "bandwidth_silverman",
    "fit",
    "log_prob",
    "score",
    "sample",
    "select_bandwidth",
]

KERNELS = ("gaussian", "epanechnikov", "tophat")
"""Kernels of the density estimate."""
BANDWIDTH_RULES = ("scott", "silverman")
"""Rules of thumb for the bandwidth."""
_BANDWIDTH_TYPES = ("full", "diag")


class KDE(eqx.Module):
    r"""A fitted kernel density estimate (a pytree; `kernel` is static).

    Attributes:
        points: `(n, D)` the data points.
        weights: `(n,)` non-negative weights summing to one.
        bandwidth: `(D, D)` bandwidth matrix $H$ (symmetric positive definite).
        bandwidth_cholesky: `(D, D)` lower Cholesky factor $L$ of $H = L L^\top$.
        kernel: one of `KERNELS`.
    """

    points: jax.Array
    weights: jax.Array
    bandwidth: jax.Array
    bandwidth_cholesky: jax.Array
    kernel: str = eqx.field(static=True)

    @property
    def n_points(self) -> int:
        return self.points.shape[0]

    @property
    def n_features(self) -> int:
        return self.points.shape[1]


class BandwidthSearch(NamedTuple):
    """Result of [`select_bandwidth`][jaxprob.kde.select_bandwidth].

    Attributes:
        scales: `(G,)` the grid of factors applied to the base bandwidth's scale ($H = s^2 H_0$).
        scores: `(G,)` mean held-out log-density for each scale (`-inf` where a held-out point falls
            outside the support of a compact kernel).
        best_index: index of the best scale.
        best_scale: the best factor.
        best_bandwidth: `(D, D)` the bandwidth matrix at the best factor.
    """

    scales: jax.Array
    scores: jax.Array
    best_index: jax.Array
    best_scale: jax.Array
    best_bandwidth: jax.Array


# ----------------------------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------------------------
def _log_unit_ball_volume(d):
    return 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1.0)


def _log_kernel(sq, kernel, d):
    """log K(z) from the squared norm of z (elementwise)."""
    if kernel == "gaussian":
        return -0.5 * sq - 0.5 * d * math.log(2 * math.pi)
    if kernel == "epanechnikov":
        log_c = math.log((d + 2) / 2.0) - _log_unit_ball_volume(d)
        inside = sq < 1.0
        return jnp.where(inside, log_c + jnp.log1p(-jnp.where(inside, sq, 0.0)), -jnp.inf)
    return jnp.where(sq < 1.0, -_log_unit_ball_volume(d), -jnp.inf)


# ----------------------------------------------------------------------------------------------------------
# bandwidth rules
# ----------------------------------------------------------------------------------------------------------
def _weighted_cov(x, w):
    w = w / jnp.sum(w)
    mu = numerics.matmul(w, x)
    xc = x - mu
    n_eff = 1.0 / jnp.sum(jnp.square(w))
    cov = numerics.matmul((xc * w[:, None]).T, xc) / (1.0 - jnp.sum(jnp.square(w)))  # unbiased for weights
    return cov, n_eff


def _rule_bandwidth(x, w, rule, bandwidth_type):
    d = x.shape[1]
    cov, n_eff = _weighted_cov(x, w)
    if bandwidth_type == "diag":
        cov = jnp.diag(jnp.diagonal(cov))
    if rule == "scott":
        factor = n_eff ** (-1.0 / (d + 4))
    else:
        factor = (n_eff * (d + 2) / 4.0) ** (-1.0 / (d + 4))
    return cov * jnp.square(factor)


def _check_data(x, name="x"):
    x = as_float_array(x, name, 2)
    check_finite(x, name)
    if x.shape[0] < 1:
        raise ValueError(f"`{name}` must hold at least one point")
    return x


def _rule(x, rule, sample_weight, bandwidth_type):
    x = _check_data(x)
    check_choice(bandwidth_type, "bandwidth_type", _BANDWIDTH_TYPES)
    if x.shape[0] < 2:
        raise ValueError(f"the {rule} rule needs at least two points in `x`, got {x.shape[0]}")
    w = check_sample_weight(sample_weight, x.shape[0], x.dtype)
    if not is_tracer(x) and not is_tracer(w):
        _check_spread(np.asarray(x), np.asarray(w), rule)
    h = _rule_bandwidth(x, w, rule, bandwidth_type)
    if not is_tracer(h) and not _well_conditioned(np.asarray(h, np.float64), x.dtype):
        raise ValueError(
            f"the {rule} bandwidth is singular: `x` has collinear features (up to rounding in {x.dtype}); pass "
            "an explicit bandwidth or use bandwidth_type='diag'"
        )
    return h


def _check_spread(x, w, rule):
    """Refuse a feature that is constant over the points of positive weight, exactly or up to a few units in the
    last place of its values (its variance is then rounding error: a constant column of 5.0 in float32 gets a
    variance of about 1e-11 from the rounding of its mean, not 0, and the rule would return that as a
    bandwidth)."""
    xs = x[w > 0]
    spread = xs.max(axis=0) - xs.min(axis=0)
    magnitude = np.abs(xs).max(axis=0)
    flat = spread <= 4 * np.finfo(x.dtype).eps * magnitude
    if np.any(flat):
        j = int(np.flatnonzero(flat)[0])
        raise ValueError(
            f"feature {j} of `x` is constant ({float(xs[0, j])!r} at every point of positive weight, up to "
            f"rounding in {x.dtype}): the {rule} bandwidth along it would be 0; drop the feature or pass an "
            "explicit bandwidth"
        )


def _well_conditioned(h, dtype) -> bool:
    """Whether the correlation matrix of `h` is positive definite beyond the rounding of `dtype`."""
    d = np.sqrt(np.diagonal(h))
    if not np.all(d > 0):
        return False
    corr = h / np.outer(d, d)
    return bool(np.linalg.eigvalsh(corr).min() > 16 * h.shape[0] * np.finfo(dtype).eps)


def bandwidth_scott(x: ArrayLike, *, sample_weight: ArrayLike | None = None, bandwidth_type: str = "full") -> jax.Array:
    r"""Scott's rule: $H = n_\text{eff}^{-2/(D+4)}\,\hat\Sigma$.

    Args:
        x: `(n, D)` data, `n >= 2`.
        sample_weight: optional `(n,)` non-negative weights.
        bandwidth_type: `"full"` (the covariance) or `"diag"` (its diagonal).

    Returns:
        `(D, D)` bandwidth matrix.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import kde
        >>> h = kde.bandwidth_scott(jnp.array([[0.0], [1.0], [2.0], [3.0]]))
        >>> round(float(h[0, 0]), 4)  # var 5/3 times 4**(-2/5)
        0.9572
    """
    return _rule(x, "scott", sample_weight, bandwidth_type)


def bandwidth_silverman(x: ArrayLike, *, sample_weight: ArrayLike | None = None,
                        bandwidth_type: str = "full") -> jax.Array:
    r"""Silverman's rule: $H = \left(n_\text{eff}(D+2)/4\right)^{-2/(D+4)}\,\hat\Sigma$.

    Args:
        x: `(n, D)` data, `n >= 2`.
        sample_weight: optional `(n,)` non-negative weights.
        bandwidth_type: `"full"` (the covariance) or `"diag"` (its diagonal).

    Returns:
        `(D, D)` bandwidth matrix.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import kde
        >>> h = kde.bandwidth_silverman(jnp.array([[0.0], [1.0], [2.0], [3.0]]))
        >>> round(float(h[0, 0]), 4)  # var 5/3 times 3**(-2/5)
        1.074
    """
    return _rule(x, "silverman", sample_weight, bandwidth_type)


def _bandwidth_matrix(bandwidth, d, dtype):
    """Turn a scalar, (D,) or (D, D) bandwidth into H (D, D), validated."""
    if isinstance(bandwidth, (int, float, np.integer, np.floating)) and not isinstance(bandwidth, bool):
        h = float(bandwidth)
        if not (math.isfinite(h) and h > 0):
            raise ValueError(f"`bandwidth` must be positive and finite, got {bandwidth}")
        return jnp.eye(d, dtype=dtype) * (h * h)
    if isinstance(bandwidth, bool):
        raise TypeError("`bandwidth` must be a rule name, a positive number or an array, got a bool")
    b = as_float_array(bandwidth, "bandwidth", (0, 1, 2), dtype=dtype)
    if b.ndim == 0:
        b = jnp.full((d,), b)
    if b.ndim == 1:
        if b.shape != (d,):
            raise ValueError(f"a 1-D `bandwidth` holds per-feature scales, shape ({d},), "
                             f"got {tuple(b.shape)}")
        if not is_tracer(b) and not (np.all(np.isfinite(np.asarray(b))) and np.all(np.asarray(b) > 0)):
            raise ValueError("`bandwidth` scales must be positive and finite")
        return jnp.diag(jnp.square(b))
    if b.shape != (d, d):
        raise ValueError(f"a 2-D `bandwidth` must be a ({d}, {d}) matrix, got {tuple(b.shape)}")
    if not is_tracer(b):
        arr = np.asarray(b, np.float64)
        symmetric = np.allclose(arr, arr.T, rtol=1e-5, atol=1e-8 * np.abs(arr).max())
        if not np.all(np.isfinite(arr)) or not symmetric:
            raise ValueError("a matrix `bandwidth` must be finite and symmetric")
        if not np.all(np.linalg.eigvalsh(arr) > 0):
            raise ValueError("a matrix `bandwidth` must be positive definite")
    return b


def fit(x: ArrayLike, *, bandwidth: str | float | ArrayLike = "scott", kernel: str = "gaussian",
        sample_weight: ArrayLike | None = None, bandwidth_type: str = "full") -> KDE:
    r"""Build a kernel density estimate from data.

    Args:
        x: `(n, D)` data points (float16 and bfloat16 are computed in float32, the library's policy).
        bandwidth: `"scott"` or `"silverman"` (rules, see [`bandwidth_scott`][jaxprob.kde.bandwidth_scott]), a positive
            number $h$ ($H = h^2 I$), a `(D,)` array of per-feature scales
            ($H = \mathrm{diag}(h^2)$) or a `(D, D)` bandwidth matrix $H$.
        kernel: one of `KERNELS`.
        sample_weight: optional `(n,)` non-negative weights (normalised to sum to one).
        bandwidth_type: for the rules, `"full"` covariance or `"diag"` (its diagonal).

    Returns:
        A [`KDE`][jaxprob.kde.KDE].

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import kde
        >>> model = kde.fit(jnp.array([[0.0], [1.0]]), bandwidth=1.0)
        >>> round(float(kde.log_prob(jnp.array([[0.5]]), model)[0]), 4)  # log N(0.5; 0, 1)
        -1.0439
    """
    x = _check_data(x)
    check_choice(kernel, "kernel", KERNELS)
    check_choice(bandwidth_type, "bandwidth_type", _BANDWIDTH_TYPES)
    w = check_sample_weight(sample_weight, x.shape[0], x.dtype)
    w = w / jnp.sum(w)
    if isinstance(bandwidth, str):
        check_choice(bandwidth, "bandwidth", BANDWIDTH_RULES)
        h = _rule(x, bandwidth, sample_weight, bandwidth_type)
    else:
        h = _bandwidth_matrix(bandwidth, x.shape[1], x.dtype)
    return KDE(x, w, h, jnp.linalg.cholesky(h), kernel)


# ----------------------------------------------------------------------------------------------------------
# chunked log-density
# ----------------------------------------------------------------------------------------------------------
def _pad_rows(a, multiple, value=0.0):
    n = a.shape[0]
    pad = (-n) % multiple
    if pad == 0:
        return a
    return jnp.concatenate([a, jnp.full((pad,) + a.shape[1:], value, a.dtype)], axis=0)


def _log_density(q, points, weights, chol, kernel, query_chunk, point_chunk):
    """(m,) log f(q) for queries q (m, D); chunked over queries and points."""
    m, d = q.shape
    n = points.shape[0]
    dtype = q.dtype
    log_norm = -jnp.sum(jnp.log(jnp.diagonal(chol)))  # -1/2 log|H|
    if kernel == "tophat":
        # The top-hat is discontinuous at its boundary: a pair exactly one bandwidth apart (integer data, an
        # integer bandwidth) must land on the side the rule says, not on the side rounding says. With L = s M
        # (s = L_00), ||L^{-1} u||^2 < 1  <=>  ||M^{-1} u||^2 < s^2, and the squared norm is taken of the
        # differences u = q - p themselves: for a scalar bandwidth M = I and the test is exact whenever the
        # squared distances and s^2 are representable.
        scale = chol[0, 0]
        m_inv = jax.scipy.linalg.solve_triangular(chol / scale, jnp.eye(d, dtype=dtype), lower=True)
        zp, zq = numerics.matmul(points, m_inv.T), numerics.matmul(q, m_inv.T)
        threshold = jnp.square(scale)
    else:
        centre = numerics.matmul(weights, points)
        # whiten: z = L^{-1}(x - centre); the kernel needs ||z_q - z_p||^2
        zp = jax.scipy.linalg.solve_triangular(chol, (points - centre).T, lower=True).T
        zq = jax.scipy.linalg.solve_triangular(chol, (q - centre).T, lower=True).T
    bq = min(query_chunk, m)
    bp = min(point_chunk, n)
    zp = _pad_rows(zp, bp)
    logw = _pad_rows(jnp.log(weights), bp, -jnp.inf)
    zp_blocks = zp.reshape(-1, bp, d)
    pn_blocks = jnp.sum(jnp.square(zp_blocks), axis=-1)
    lw_blocks = logw.reshape(-1, bp)
    zq = _pad_rows(zq, bq).reshape(-1, bq, d)

    def one_query_block(zqb):
        qn = jnp.sum(jnp.square(zqb), axis=-1)

        def body(carry, blk):
            mx, s = carry
            zpb, pnb, lwb = blk
            if kernel == "tophat":
                sq = jnp.sum(jnp.square(zqb[:, None, :] - zpb[None, :, :]), axis=-1)
                lk = jnp.where(sq < threshold, -_log_unit_ball_volume(d), -jnp.inf)
            else:
                sq = jnp.maximum(qn[:, None] + pnb[None, :] - 2.0 * numerics.matmul(zqb, zpb.T), 0.0)
                lk = _log_kernel(sq, kernel, d)
            lk = lk + lwb[None, :]
            new_mx = jnp.maximum(mx, jnp.max(lk, axis=1))
            safe = jnp.where(jnp.isfinite(new_mx), new_mx, 0.0)
            s = s * jnp.exp(mx - safe) + jnp.sum(jnp.exp(lk - safe[:, None]), axis=1)
            return (new_mx, s), None

        init = (jnp.full((bq,), -jnp.inf, dtype), jnp.zeros((bq,), dtype))
        (mx, s), _ = jax.lax.scan(body, init, (zp_blocks, pn_blocks, lw_blocks))
        log_s = jnp.log(jnp.where(s > 0, s, 1.0)) + jnp.where(jnp.isfinite(mx), mx, 0.0)
        return jnp.where(s > 0, log_s, -jnp.inf)

    out = jax.lax.map(one_query_block, zq).reshape(-1)[:m]
    return out + log_norm


@jax.jit(static_argnames=("kernel", "query_chunk", "point_chunk"))
def _log_prob_jit(q, points, weights, chol, kernel, query_chunk, point_chunk):
    return _log_density(q, points, weights, chol, kernel, query_chunk, point_chunk)


def _check_model(model, name="kde"):
    if not isinstance(model, KDE):
        raise TypeError(f"`{name}` must be a KDE (from jaxprob.kde.fit), got {type(model).__name__}")
    return model


def _check_queries(x, model):
    x = as_float_array(x, "x", 2)
    check_finite(x, "x")
    if x.shape[1] != model.n_features:
        raise ValueError(f"`x` has {x.shape[1]} features but the KDE has {model.n_features}")
    if x.shape[0] < 1:
        raise ValueError("`x` must hold at least one query point")
    return x.astype(jnp.result_type(x.dtype, model.points.dtype))


def log_prob(x: ArrayLike, kde: KDE, *, query_chunk: int = 1024, point_chunk: int = 4096) -> jax.Array:
    r"""Log-density $\log \hat f(x)$ at each query, by a chunked log-sum-exp.

    Args:
        x: `(m, D)` queries.
        kde: a [`KDE`][jaxprob.kde.KDE].
        query_chunk: queries per block (memory is `query_chunk x point_chunk`).
        point_chunk: points per block.

    Returns:
        `(m,)` log-densities (`-inf` outside the support of a compact kernel, never NaN).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import kde
        >>> model = kde.fit(jnp.array([[0.0, 0.0]]), bandwidth=1.0, kernel="epanechnikov")
        >>> tuple(round(float(v), 4) for v in kde.log_prob(jnp.array([[0.0, 0.0], [2.0, 0.0]]), model))
        (-0.4516, -inf)
    """
    _check_model(kde)
    x = _check_queries(x, kde)
    query_chunk = check_int(query_chunk, "query_chunk", minimum=1)
    point_chunk = check_int(point_chunk, "point_chunk", minimum=1)
    dtype = x.dtype
    return _log_prob_jit(x, kde.points.astype(dtype), kde.weights.astype(dtype),
                         kde.bandwidth_cholesky.astype(dtype), kde.kernel, query_chunk, point_chunk)


def score(x: ArrayLike, kde: KDE, *, query_chunk: int = 1024, point_chunk: int = 4096) -> jax.Array:
    """Mean log-density of the queries (the held-out log-likelihood per point).

    Args:
        x: `(m, D)` queries.
        kde: a [`KDE`][jaxprob.kde.KDE].
        query_chunk: queries per block.
        point_chunk: points per block.

    Returns:
        Scalar mean of [`log_prob`][jaxprob.kde.log_prob].

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import kde
        >>> model = kde.fit(jnp.array([[0.0]]), bandwidth=1.0)
        >>> round(float(kde.score(jnp.array([[0.0]]), model)), 4)
        -0.9189
    """
    return jnp.mean(log_prob(x, kde, query_chunk=query_chunk, point_chunk=point_chunk))


# ----------------------------------------------------------------------------------------------------------
# sampling
# ----------------------------------------------------------------------------------------------------------
def _kernel_noise(key, kernel, n, d, dtype):
    if kernel == "gaussian":
        return jax.random.normal(key, (n, d), dtype)
    # uniform in the unit ball of dimension D+2 projected onto D coordinates has density prop. to (1 - |z|^2);
    # uniform in the D-ball for the top-hat kernel
    dim = d + 2 if kernel == "epanechnikov" else d
    k1, k2 = jax.random.split(key)
    g = jax.random.normal(k1, (n, dim), dtype)
    g = g / jnp.linalg.norm(g, axis=1, keepdims=True)
    r = jax.random.uniform(k2, (n, 1), dtype) ** (1.0 / dim)
    return (g * r)[:, :d]


@jax.jit(static_argnames=("kernel", "n"))
def _sample_jit(key, points, weights, chol, kernel, n):
    k1, k2 = jax.random.split(key)
    idx = jax.random.choice(k1, points.shape[0], (n,), p=weights)
    z = _kernel_noise(k2, kernel, n, points.shape[1], points.dtype)
    return points[idx] + numerics.matmul(z, chol.T)


def sample(kde: KDE, n_samples: int, *, key: jax.Array) -> jax.Array:
    """Draw samples: pick a point with probability $w_i$, then add kernel noise $L z$.

    Args:
        key: a JAX PRNG key.
        kde: a [`KDE`][jaxprob.kde.KDE].
        n_samples: number of samples.

    Returns:
        `(n_samples, D)` samples.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import kde
        >>> model = kde.fit(jnp.array([[0.0], [10.0]]), bandwidth=0.5, sample_weight=jnp.array([1.0, 0.0]))
        >>> x = kde.sample(model, 1000, key=jax.random.key(0))
        >>> x.shape, bool(jnp.all(jnp.abs(x) < 5.0))
        ((1000, 1), True)
    """
    check_key(key)
    _check_model(kde)
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    return _sample_jit(key, kde.points, kde.weights, kde.bandwidth_cholesky, kde.kernel, n_samples)


# ----------------------------------------------------------------------------------------------------------
# held-out bandwidth selection
# ----------------------------------------------------------------------------------------------------------
@jax.jit(static_argnames=("kernel", "query_chunk", "point_chunk"))
def _grid_scores_jit(x_valid, points, weights, chol0, scales, kernel, query_chunk, point_chunk):
    def one(s):
        return jnp.mean(_log_density(x_valid, points, weights, chol0 * s, kernel, query_chunk, point_chunk))

    return jax.vmap(one)(scales)


def select_bandwidth(x_train: ArrayLike, x_valid: ArrayLike, scales: ArrayLike, *,
                     base: str | float | ArrayLike = "scott", kernel: str = "gaussian",
                     sample_weight: ArrayLike | None = None, bandwidth_type: str = "full", query_chunk: int = 1024,
                     point_chunk: int = 4096) -> BandwidthSearch:
    """Choose the bandwidth $H = s^2 H_0$ maximising the held-out mean log-density over a grid.

    All scales are evaluated in one vmapped program.

    Args:
        x_train: `(n, D)` points of the estimate.
        x_valid: `(m, D)` held-out points.
        scales: `(G,)` positive factors.
        base: the base bandwidth $H_0$ in any form [`fit`][jaxprob.kde.fit] accepts (a rule name by default).
        kernel: one of `KERNELS`.
        sample_weight: optional `(n,)` weights of `x_train`.
        bandwidth_type: for a rule `base`, `"full"` or `"diag"`.
        query_chunk: queries per block.
        point_chunk: points per block.

    Returns:
        A [`BandwidthSearch`][jaxprob.kde.BandwidthSearch]; `fit(x_train, bandwidth=result.best_bandwidth)` builds the
        chosen estimate.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import kde
        >>> x = jax.random.normal(jax.random.key(0), (200, 1))
        >>> res = kde.select_bandwidth(x[:100], x[100:], jnp.array([0.01, 1.0, 100.0]))
        >>> float(res.best_scale)
        1.0
    """
    model = fit(x_train, bandwidth=base, kernel=kernel, sample_weight=sample_weight,
                bandwidth_type=bandwidth_type)
    x_valid = _check_queries(x_valid, model).astype(model.points.dtype)
    scales = as_float_array(scales, "scales", 1, dtype=model.points.dtype)
    if scales.shape[0] < 1:
        raise ValueError("`scales` must hold at least one factor")
    if not is_tracer(scales):
        arr = np.asarray(scales)
        if not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
            raise ValueError("`scales` must be positive and finite")
    query_chunk = check_int(query_chunk, "query_chunk", minimum=1)
    point_chunk = check_int(point_chunk, "point_chunk", minimum=1)
    scores = _grid_scores_jit(x_valid, model.points, model.weights, model.bandwidth_cholesky, scales, kernel,
                              query_chunk, point_chunk)
    best = jnp.argmax(scores)
    return BandwidthSearch(scales, scores, best, scales[best], model.bandwidth * jnp.square(scales[best]))
