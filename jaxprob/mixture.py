r"""Gaussian mixtures fitted by expectation-maximisation.

Model: :math:`p(x) = \sum_{k=1}^K \alpha_k \mathcal N(x \mid \mu_k, \Sigma_k)`, with full, tied, diagonal or
spherical covariances (see :mod:`jaxprob.densities` for the parametrisation).

EM alternates

* **E-step** — responsibilities :math:`r_{ik} = \alpha_k \mathcal N(x_i\mid\theta_k) / p(x_i)`, summarised as
  sufficient statistics :math:`N_k = \sum_i w_i r_{ik}`, :math:`S_k = \sum_i w_i r_{ik} x_i`,
  :math:`Q_k = \sum_i w_i r_{ik} x_i x_i^\top` (:class:`SuffStats`, the seam for weights, chunks and devices);
* **M-step** — :math:`\alpha_k = N_k / \sum_j N_j`, :math:`\mu_k = S_k / N_k`,
  :math:`\Sigma_k = Q_k / N_k - \mu_k\mu_k^\top + \lambda I` (``reg_covar`` :math:`= \lambda`).

Each EM iteration is two matrix products over a fixed feature matrix
:math:`\Phi = [\operatorname{vech}(x x^\top), x, 1]` computed once per fit: the log-densities of all components
are :math:`\Phi W^\top` for natural parameters :math:`W` built from the current parameters, and all sufficient
statistics are :math:`R^\top \Phi`. The data are centred on their (weighted) mean before the features are
formed, which keeps the quadratic terms well conditioned.

The log-likelihood never decreases along EM iterations (up to rounding); :func:`fit` stops when the change of
the mean log-likelihood is below ``tol`` or after ``max_iter`` iterations, inside one ``lax.while_loop``, and
runs ``n_init`` restarts as one vmapped program.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxprob._validation import (
    as_float_array,
    check_choice,
    check_finite,
    check_int,
    check_key,
    check_sample_weight,
    is_tracer,
)
from jaxprob.densities import (
    _LOG_2PI,
    COVARIANCE_TYPES,
    _component_log_prob,
    _diagonal,
    _log_det_prec_chol,
    _precisions_cholesky,
)
from jaxprob.kmeans import (
    default_local_trials,
    kmeans_plusplus_from_uniforms,
    kmeans_plusplus_refined,
    kmeans_plusplus_uniforms,
    random_centroids,
    squared_distances,
)

__all__ = [
    "GaussianMixture",
    "SuffStats",
    "FitInfo",
    "INIT_METHODS",
    "make_gmm",
    "init",
    "e_step",
    "m_step",
    "em_step",
    "fit",
    "log_prob",
    "score",
    "predict_proba",
    "predict",
    "sample",
    "sample_component",
    "n_parameters",
    "bic",
    "aic",
    "anomaly_score",
    "anomaly_threshold",
    "detect_anomalies",
]

INIT_METHODS = ("kmeans++", "random_from_data", "random", "kmeans")


class GaussianMixture(eqx.Module):
    """Parameters of a Gaussian mixture (a pytree; ``covariance_type`` is static).

    Attributes:
        weights: ``(K,)`` mixing weights :math:`\\alpha_k`, summing to one.
        means: ``(K, D)``.
        covariances: ``(K, D, D)`` full, ``(D, D)`` tied, ``(K, D)`` diag, ``(K,)`` spherical.
        precisions_cholesky: same shape as ``covariances`` (see :func:`jaxprob.precisions_cholesky`).
        covariance_type: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.
    """

    weights: jax.Array
    means: jax.Array
    covariances: jax.Array
    precisions_cholesky: jax.Array
    covariance_type: str = eqx.field(static=True)

    @property
    def n_components(self) -> int:
        return self.means.shape[-2]

    @property
    def n_features(self) -> int:
        return self.means.shape[-1]


class SuffStats(eqx.Module):
    """Weighted sufficient statistics of a data set under the responsibilities of a mixture.

    Statistics are sums, so statistics of disjoint chunks (or devices) add up — provided they share ``shift``.

    Attributes:
        sum_weights: ``(K,)`` :math:`N_k = \\sum_i w_i r_{ik}`.
        sum_x: ``(K, D)`` :math:`\\sum_i w_i r_{ik} (x_i - c)`.
        sum_xx: second moments about ``shift`` :math:`c`: ``(K, D, D)`` full, ``(K, D)`` diag (squares),
            ``(K,)`` spherical (squared norms), ``(D, D)`` tied (all samples, :math:`\\sum_i w_i (x_i-c)(x_i-c)^\\top`).
        shift: ``(D,)`` the centre :math:`c` the moments are taken about.
        log_likelihood: scalar :math:`\\sum_i w_i \\log p(x_i)` under the mixture used in the E-step.
        total_weight: scalar :math:`\\sum_i w_i`.
        n_samples: scalar number of samples with positive weight.
        covariance_type: static.
    """

    sum_weights: jax.Array
    sum_x: jax.Array
    sum_xx: jax.Array
    shift: jax.Array
    log_likelihood: jax.Array
    total_weight: jax.Array
    n_samples: jax.Array
    covariance_type: str = eqx.field(static=True)

    def __add__(self, other: SuffStats) -> SuffStats:
        return SuffStats(
            self.sum_weights + other.sum_weights,
            self.sum_x + other.sum_x,
            self.sum_xx + other.sum_xx,
            self.shift,
            self.log_likelihood + other.log_likelihood,
            self.total_weight + other.total_weight,
            self.n_samples + other.n_samples,
            self.covariance_type,
        )


class FitInfo(NamedTuple):
    """Diagnostics returned by :func:`fit` (a pytree of arrays).

    Attributes:
        converged: bool, the change of the mean log-likelihood fell below ``tol``.
        n_iter: number of EM iterations run (as scikit-learn's ``n_iter_``).
        log_likelihood: mean (weighted) log-likelihood of the *returned* parameters.
        log_likelihood_trace: ``(max_iter,)`` mean log-likelihood at the E-step of each iteration (the value
            before that iteration's M-step, as scikit-learn's ``lower_bound_``); NaN after ``n_iter``.
        collapsed: ``(K,)`` components holding less than one sample's worth of responsibility at the last
            M-step (their mean and covariance were kept from the previous iteration).
        regularized: ``(K,)`` components whose covariance was not positive definite at some iteration and were
            replaced by their diagonal (plus ``reg_covar``) for that iteration.
        nonfinite: bool, a non-finite log-likelihood stopped the iterations.
        restart_log_likelihoods: ``(n_init,)`` final mean log-likelihood of every restart.
        best_restart: index of the restart that was kept.
    """

    converged: jax.Array
    n_iter: jax.Array
    log_likelihood: jax.Array
    log_likelihood_trace: jax.Array
    collapsed: jax.Array
    regularized: jax.Array
    nonfinite: jax.Array
    restart_log_likelihoods: jax.Array
    best_restart: jax.Array


# ----------------------------------------------------------------------------------------------------------
# construction and validation
# ----------------------------------------------------------------------------------------------------------
def _cov_shape(covariance_type, k, d):
    return {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[covariance_type]


def make_gmm(weights, means, covariances, covariance_type: str = "full") -> GaussianMixture:
    """Build mixture parameters from weights, means and covariances (the precision factors are computed).

    Args:
        weights: ``(K,)`` non-negative, summing to one.
        means: ``(K, D)``.
        covariances: shaped for ``covariance_type`` (see :class:`GaussianMixture`), positive definite.
        covariance_type: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.

    Returns:
        A :class:`GaussianMixture`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([0.3, 0.7]), jnp.array([[0.0], [5.0]]), jnp.ones(2), "spherical")
        >>> gmm.n_components, gmm.n_features
        (2, 1)
    """
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    means = as_float_array(means, "means", 2)
    k, d = means.shape
    weights = as_float_array(weights, "weights", 1, dtype=means.dtype)
    covariances = as_float_array(covariances, "covariances", dtype=means.dtype)
    if weights.shape != (k,):
        raise ValueError(f"`weights` must have shape ({k},) to match `means`, got {tuple(weights.shape)}")
    if tuple(covariances.shape) != _cov_shape(covariance_type, k, d):
        raise ValueError(
            f"`covariances` must have shape {_cov_shape(covariance_type, k, d)} for "
            f"covariance_type={covariance_type!r}, got {tuple(covariances.shape)}"
        )
    for name, arr in (("weights", weights), ("means", means), ("covariances", covariances)):
        check_finite(arr, name)
    if not is_tracer(weights):
        w = np.asarray(weights)
        if np.any(w < 0) or abs(float(w.sum()) - 1.0) > 1e-4:
            raise ValueError("`weights` must be non-negative and sum to one")
    prec = _precisions_cholesky(covariances, covariance_type)
    if not is_tracer(prec) and not np.all(np.isfinite(np.asarray(prec))):
        raise ValueError("`covariances` must be symmetric positive definite (a Cholesky factorisation failed)")
    return GaussianMixture(weights, means, covariances, prec, covariance_type)


def _check_params(params, d=None, name="params"):
    if not isinstance(params, GaussianMixture):
        raise TypeError(f"`{name}` must be a GaussianMixture, got {type(params).__name__}")
    if d is not None and params.means.shape[-1] != d:
        raise ValueError(f"`x` has {d} features but `{name}` has {params.means.shape[-1]}")
    return params


def _check_x(x, name="x", params=None):
    x = as_float_array(x, name, 2)
    check_finite(x, name)
    if x.shape[0] < 1:
        raise ValueError(f"`{name}` must hold at least one sample")
    if params is not None:
        _check_params(params, x.shape[1])
        x = x.astype(jnp.result_type(x.dtype, params.means.dtype))
    return x


# ----------------------------------------------------------------------------------------------------------
# fused E-step: features and natural parameters
# ----------------------------------------------------------------------------------------------------------
def _n_quad(covariance_type, d):
    return {"full": d * (d + 1) // 2, "diag": d, "spherical": 1, "tied": 0}[covariance_type]


def _features(xc, covariance_type):
    """Phi = [quadratic terms, x, 1] (n, F) of centred data."""
    n, d = xc.shape
    if covariance_type == "full":
        iu, ju = np.triu_indices(d)
        quad = xc[:, iu] * xc[:, ju]
    elif covariance_type == "diag":
        quad = jnp.square(xc)
    elif covariance_type == "spherical":
        quad = jnp.sum(jnp.square(xc), axis=-1, keepdims=True)
    else:
        quad = jnp.zeros((n, 0), xc.dtype)
    return jnp.concatenate([quad, xc, jnp.ones((n, 1), xc.dtype)], axis=1)


def _unpack_symmetric(packed, d):
    """(K, D(D+1)/2) upper-triangle entries (in ``np.triu_indices`` order) to exactly symmetric (K, D, D)
    matrices, by one gather."""
    iu, ju = np.triu_indices(d)
    pos = np.zeros((d, d), np.int32)
    pos[iu, ju] = pos[ju, iu] = np.arange(iu.size)
    return packed[:, pos]


def _natural_params(params: GaussianMixture, shift):
    """W (K, F) such that log alpha_k + log N(x | k) = Phi(x - shift) @ W_k (+ the tied quadratic term)."""
    ct = params.covariance_type
    mu = params.means - shift
    u = params.precisions_cholesky
    k, d = mu.shape
    if ct == "full":
        lam = jnp.einsum("kij,klj->kil", u, u)
        iu, ju = np.triu_indices(d)
        quad = -0.5 * lam[:, iu, ju] * jnp.asarray(np.where(iu == ju, 1.0, 2.0), mu.dtype)
        lin = jnp.einsum("kij,kj->ki", lam, mu)
    elif ct == "tied":
        lam = u @ u.T
        quad = jnp.zeros((k, 0), mu.dtype)
        lin = mu @ lam
    elif ct == "diag":
        p = jnp.square(u)
        quad = -0.5 * p
        lin = p * mu
    else:
        p = jnp.square(u)[:, None]
        quad = -0.5 * p
        lin = p * mu
    const = -0.5 * jnp.sum(mu * lin, axis=-1)
    log_det = jnp.broadcast_to(_log_det_prec_chol(u, ct, d), (k,))
    const = const + log_det - 0.5 * d * _LOG_2PI + jnp.log(params.weights)
    return jnp.concatenate([quad, lin, const[:, None]], axis=1)


def _weighted_log_probs(phi, params, shift):
    """(n, K) log alpha_k + log N(x_i | k) from the feature matrix."""
    lp = phi @ _natural_params(params, shift).T
    if params.covariance_type == "tied":
        xc = phi[:, : params.n_features]
        lp = lp - 0.5 * jnp.sum(jnp.square(xc @ params.precisions_cholesky), axis=-1, keepdims=True)
    return lp


def _e_step_phi(phi, w, params, shift, tied_sxx=None):
    """E-step on precomputed features; returns SuffStats."""
    ct = params.covariance_type
    k, d = params.means.shape
    lp = _weighted_log_probs(phi, params, shift)
    # log-sum-exp and responsibilities from one exponential (XLA's CPU code for each exp takes ~0.2 s to compile)
    top = jax.lax.stop_gradient(jnp.max(lp, axis=1))
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    e = jnp.exp(lp - top[:, None])
    total = jnp.sum(e, axis=1)
    log_norm = top + jnp.log(total)
    resp = e * jnp.where(total > 0, w / total, 0.0)[:, None]
    s = resp.T @ phi
    q = _n_quad(ct, d)
    if ct == "full":
        sum_xx = _unpack_symmetric(s[:, :q], d)
    elif ct == "diag":
        sum_xx = s[:, :q]
    elif ct == "spherical":
        sum_xx = s[:, 0]
    else:
        sum_xx = tied_sxx
    ll = jnp.sum(jnp.where(w > 0, w * log_norm, 0.0))
    return SuffStats(
        s[:, -1], s[:, q : q + d], sum_xx, shift, ll, jnp.sum(w), jnp.sum((w > 0).astype(phi.dtype)), ct
    )


def _tied_sxx(phi, w, d):
    xc = phi[:, :d]
    return (xc * w[:, None]).T @ xc


# ----------------------------------------------------------------------------------------------------------
# M-step
# ----------------------------------------------------------------------------------------------------------
def _m_step(stats: SuffStats, reg_covar, previous: GaussianMixture | None = None, use_previous=True):
    """Parameters from sufficient statistics; returns (params, collapsed (K,), regularized (K,)).

    A collapsed component keeps its ``previous`` mean and covariance (when ``previous`` is given and the traced
    boolean ``use_previous`` holds).
    """
    ct = stats.covariance_type
    dtype = stats.sum_x.dtype
    k, d = stats.sum_x.shape
    eps = 10 * jnp.finfo(dtype).eps
    nk = stats.sum_weights + eps
    mu_c = stats.sum_x / nk[:, None]
    eye = jnp.eye(d, dtype=dtype)
    if ct == "full":
        # exactly symmetric already (symmetric moments minus a product that commutes): no symmetrisation
        cov = stats.sum_xx / nk[:, None, None] - mu_c[:, :, None] * mu_c[:, None, :] + reg_covar * eye
    elif ct == "tied":
        cov = (stats.sum_xx - jnp.einsum("k,ki,kj->ij", nk, mu_c, mu_c)) / jnp.sum(nk)
        cov = 0.5 * (cov + cov.T) + reg_covar * eye
    elif ct == "diag":
        cov = jnp.maximum(stats.sum_xx / nk[:, None] - jnp.square(mu_c), 0.0) + reg_covar
    else:
        cov = jnp.maximum(stats.sum_xx / nk - jnp.sum(jnp.square(mu_c), axis=-1), 0.0) / d + reg_covar
    means = mu_c + stats.shift
    weights = nk / jnp.sum(nk)
    mean_weight = stats.total_weight / jnp.maximum(stats.n_samples, 1.0)
    collapsed = stats.sum_weights < mean_weight
    if previous is not None:
        replace = collapsed & use_previous
        means = jnp.where(replace[:, None], previous.means, means)
        if ct != "tied":
            keep = replace.reshape((k,) + (1,) * (cov.ndim - 1))
            cov = jnp.where(keep, previous.covariances, cov)
    prec = _precisions_cholesky(cov, ct, symmetrize=False)
    if ct in ("full", "tied"):
        # Cholesky failure (not positive definite after rounding): fall back to the diagonal, flag it
        bad = jnp.any(~jnp.isfinite(prec), axis=(-2, -1))
        floor = jnp.maximum(reg_covar, jnp.finfo(dtype).eps)
        dvals = jnp.maximum(_diagonal(cov), floor)
        diag = dvals[..., None] * eye
        safe_prec = jax.lax.rsqrt(dvals)[..., None] * eye
        sel = bad[..., None, None]
        cov = jnp.where(sel, diag, cov)
        prec = jnp.where(sel, safe_prec, prec)
        regularized = jnp.broadcast_to(bad, (k,))
    else:
        regularized = jnp.zeros((k,), bool)
    return GaussianMixture(weights, means, cov, prec, ct), collapsed, regularized


# ----------------------------------------------------------------------------------------------------------
# public E / M / EM steps
# ----------------------------------------------------------------------------------------------------------
@jax.jit
def _e_step_jit(x, w, params, shift):
    phi = _features(x - shift, params.covariance_type)
    tied = _tied_sxx(phi, w, x.shape[1]) if params.covariance_type == "tied" else None
    return _e_step_phi(phi, w, params, shift, tied)


def e_step(x, params: GaussianMixture, *, sample_weight=None, shift=None) -> SuffStats:
    r"""E-step: sufficient statistics of ``x`` under the responsibilities of ``params``.

    Args:
        x: ``(n, D)`` data.
        params: a :class:`GaussianMixture`.
        sample_weight: optional ``(n,)`` non-negative weights.
        shift: ``(D,)`` centre for the moments; defaults to the mixture's mean :math:`\sum_k \alpha_k\mu_k`
            (any fixed value gives the same M-step; pass the same one to every chunk whose statistics you add).

    Returns:
        :class:`SuffStats` (``stats.log_likelihood / stats.total_weight`` is the mean log-likelihood).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]), jnp.ones(2), "spherical")
        >>> stats = mixture.e_step(jnp.array([[-1.0], [1.0]]), gmm)
        >>> stats.sum_weights.round(3).tolist()
        [1.0, 1.0]
    """
    x = _check_x(x, params=params)
    w = check_sample_weight(sample_weight, x.shape[0], x.dtype)
    if shift is None:
        shift = params.weights @ params.means
    shift = as_float_array(shift, "shift", 1, dtype=x.dtype)
    if shift.shape != (x.shape[1],):
        raise ValueError(f"`shift` must have shape ({x.shape[1]},), got {tuple(shift.shape)}")
    return _e_step_jit(x, w, params, shift)


def m_step(stats: SuffStats, *, reg_covar: float = 1e-6) -> GaussianMixture:
    r"""M-step: maximum-likelihood parameters from sufficient statistics (plus ``reg_covar`` on the diagonal).

    Args:
        stats: :class:`SuffStats` from :func:`e_step` (possibly summed over chunks).
        reg_covar: non-negative value added to the covariance diagonals.

    Returns:
        A :class:`GaussianMixture`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([1.0]), jnp.array([[0.0]]), jnp.ones(1), "spherical")
        >>> new = mixture.m_step(mixture.e_step(jnp.array([[1.0], [3.0]]), gmm), reg_covar=0.0)
        >>> new.means.round(4).tolist(), new.covariances.round(4).tolist()
        ([[2.0]], [1.0])
    """
    if not isinstance(stats, SuffStats):
        raise TypeError(f"`stats` must be a SuffStats, got {type(stats).__name__}")
    _check_reg(reg_covar)
    return _m_step_jit(stats, reg_covar)


@jax.jit
def _m_step_jit(stats, reg_covar):
    return _m_step(stats, reg_covar)[0]


@jax.jit
def _em_step_jit(x, w, params, reg_covar):
    shift = jnp.sum(w[:, None] * x, axis=0) / jnp.sum(w)
    phi = _features(x - shift, params.covariance_type)
    tied = _tied_sxx(phi, w, x.shape[1]) if params.covariance_type == "tied" else None
    stats = _e_step_phi(phi, w, params, shift, tied)
    new, _, _ = _m_step(stats, reg_covar, params)
    return new, stats.log_likelihood / stats.total_weight


def em_step(x, params: GaussianMixture, *, sample_weight=None, reg_covar: float = 1e-6):
    """One EM iteration.

    Args:
        x: ``(n, D)`` data.
        params: current :class:`GaussianMixture`.
        sample_weight: optional ``(n,)`` non-negative weights.
        reg_covar: non-negative value added to the covariance diagonals.

    Returns:
        ``(new_params, mean_log_likelihood)``, the latter under the *input* ``params``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]), jnp.ones(2), "spherical")
        >>> x = jnp.array([[-2.0], [-1.5], [1.5], [2.0]])
        >>> new, ll = mixture.em_step(x, gmm)
        >>> bool(mixture.score(x, new) >= ll)
        True
    """
    x = _check_x(x, params=params)
    w = check_sample_weight(sample_weight, x.shape[0], x.dtype)
    _check_reg(reg_covar)
    return _em_step_jit(x, w, params, reg_covar)


def _check_reg(reg_covar):
    if not is_tracer(reg_covar):
        if not isinstance(reg_covar, (int, float, np.floating, np.integer, jax.Array)):
            raise TypeError(f"`reg_covar` must be a number, got {type(reg_covar).__name__}")
        if not np.isfinite(float(reg_covar)) or float(reg_covar) < 0:
            raise ValueError(f"`reg_covar` must be a finite non-negative number, got {reg_covar}")


# ----------------------------------------------------------------------------------------------------------
# initialisation
# ----------------------------------------------------------------------------------------------------------
def _hard_resp(xc, centers):
    labels = jnp.argmin(squared_distances(xc, centers), axis=1)
    return jax.nn.one_hot(labels, centers.shape[0], dtype=xc.dtype)


def _restart_draws(key, n_init, n_components, method, dtype):
    """The randomness of every restart, stacked on ``(n_init,)``: for k-means++ its uniforms, all from one draw
    of ``key`` (:func:`jaxprob.kmeans.kmeans_plusplus_uniforms`), else keys split from ``key``."""
    if method == "kmeans++":
        return kmeans_plusplus_uniforms(key, n_init, n_components, default_local_trials(n_components), dtype)
    return jax.random.split(key, n_init)


def _initial_resp(key, xc, w, n_components, method):
    """Initial responsibilities; ``key`` is one restart's entry of :func:`_restart_draws` (for k-means++ its
    ``(K, trials)`` uniforms)."""
    if method == "random":
        r = jax.random.uniform(key, (xc.shape[0], n_components), xc.dtype)
        return r / jnp.sum(r, axis=1, keepdims=True)
    if method == "kmeans++":
        centers, _ = kmeans_plusplus_from_uniforms(key, xc, w)
    elif method == "kmeans":  # k-means++ seeds refined by (at most 10) weighted Lloyd steps
        centers = kmeans_plusplus_refined(key, xc, n_components, sample_weight=w)
    else:
        centers, _ = random_centroids(key, xc, n_components, sample_weight=w)
    return _hard_resp(xc, centers)


def _stats_from_resp(phi, w, resp, shift, covariance_type, tied_sxx):
    d = shift.shape[0]
    rw = resp * w[:, None]
    s = rw.T @ phi
    q = _n_quad(covariance_type, d)
    if covariance_type == "full":
        sum_xx = _unpack_symmetric(s[:, :q], d)
    elif covariance_type == "diag":
        sum_xx = s[:, :q]
    elif covariance_type == "spherical":
        sum_xx = s[:, 0]
    else:
        sum_xx = tied_sxx
    zero = jnp.zeros((), phi.dtype)
    return SuffStats(
        s[:, -1], s[:, q : q + d], sum_xx, shift, zero, jnp.sum(w), jnp.sum((w > 0).astype(phi.dtype)),
        covariance_type,
    )


def _prepare(x, w, covariance_type):
    shift = jnp.sum(w[:, None] * x, axis=0) / jnp.sum(w)
    phi = _features(x - shift, covariance_type)
    tied = _tied_sxx(phi, w, x.shape[1]) if covariance_type == "tied" else None
    return shift, phi, tied


def _init_from_data(key, x, w, phi, shift, tied, n_components, covariance_type, method, reg_covar):
    if method == "kmeans++":  # the draw of one restart of fit
        key = _restart_draws(key, 1, n_components, method, x.dtype)[0]
    resp = _initial_resp(key, x - shift, w, n_components, method)
    stats = _stats_from_resp(phi, w, resp, shift, covariance_type, tied)
    return _m_step(stats, reg_covar)[0]


@jax.jit(static_argnums=(3, 4, 5))
def _init_jit(key, x, w, n_components, covariance_type, method, reg_covar):
    shift, phi, tied = _prepare(x, w, covariance_type)
    return _init_from_data(key, x, w, phi, shift, tied, n_components, covariance_type, method, reg_covar)


def init(key, x, n_components: int, *, covariance_type: str = "full", method: str = "kmeans++",
         reg_covar: float = 1e-6, sample_weight=None) -> GaussianMixture:
    """Initial mixture parameters from data.

    ``"kmeans++"`` seeds ``K`` centres by greedy k-means++ and ``"random_from_data"`` picks ``K`` distinct
    samples; both then assign every sample to its nearest centre and run one M-step. ``"kmeans"`` refines the
    k-means++ seeds by at most 10 weighted Lloyd steps (:mod:`jaxprob.kmeans`) before that assignment.
    ``"random"`` draws random responsibilities and runs one M-step.

    Args:
        key: a JAX PRNG key.
        x: ``(n, D)`` data.
        n_components: ``K``, between 1 and ``n``.
        covariance_type: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.
        method: one of :data:`INIT_METHODS`.
        reg_covar: non-negative value added to the covariance diagonals.
        sample_weight: optional ``(n,)`` non-negative weights.

    Returns:
        A :class:`GaussianMixture`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> x = jnp.array([[0.0, 0.0], [0.2, 0.1], [5.0, 5.0], [5.1, 4.8]])
        >>> gmm = mixture.init(jax.random.key(0), x, 2, covariance_type="diag")
        >>> gmm.means.shape, gmm.covariances.shape
        ((2, 2), (2, 2))
    """
    check_key(key)
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    check_choice(method, "method", INIT_METHODS)
    x = _check_x(x)
    n_components = check_int(n_components, "n_components", minimum=1, maximum=x.shape[0])
    _check_reg(reg_covar)
    w = check_sample_weight(sample_weight, x.shape[0], x.dtype)
    return _init_jit(key, x, w, n_components, covariance_type, method, reg_covar)


# ----------------------------------------------------------------------------------------------------------
# fit
# ----------------------------------------------------------------------------------------------------------
class _State(NamedTuple):
    params: GaussianMixture
    stats: SuffStats
    first: jax.Array
    prev_ll: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    nonfinite: jax.Array
    trace: jax.Array
    collapsed: jax.Array
    regularized: jax.Array
    done: jax.Array
    final_ll: jax.Array


def _run_em(params, stats, given, e_step, max_iter, tol, reg_covar, project=None):
    """EM as a loop whose pass is an M-step followed by an E-step.

    The first pass starts either from the initial statistics ``stats`` (its M-step gives the initial parameters,
    not counted as an iteration) or, when ``given`` (a Python bool), from ``params`` (its M-step is discarded).
    Pass ``j`` scores the parameters it made; once the change of the mean log-likelihood between passes ``j-2``
    and ``j-1`` is below ``tol`` (or ``j`` reaches ``max_iter``) pass ``j`` is the last, and its E-step gives the
    log-likelihood of the returned parameters. The compiled program holds one M-step and one E-step, shared by
    every initialisation.

    ``e_step(params) -> SuffStats`` gives the statistics of the data (one pass over the features here, a pass
    summed over devices in :mod:`jaxprob.scale`); ``project`` (optional) maps each M-step's parameters onto the
    model's parameter set (:mod:`jaxprob.selection` masks padded components). Returns the final loop state and
    the mean log-likelihood of the returned parameters.
    """
    k = params.n_components
    dtype = params.means.dtype

    def body(s: _State):
        new, collapsed, regularized = _m_step(s.stats, reg_covar, s.params, ~s.first)
        if project is not None:
            new = project(new)
        if given:  # a Python bool: the program that starts from statistics holds no selection
            params = jax.tree.map(lambda a, b: jnp.where(s.first, a, b), s.params, new)
        else:
            params = new
        counted = ~s.first
        n_iter = s.n_iter + counted.astype(jnp.int32)
        stats = e_step(params)
        ll = stats.log_likelihood / stats.total_weight
        nonfinite = ~jnp.isfinite(ll)
        last = (counted & s.converged) | (n_iter >= max_iter) | nonfinite
        record = ~last
        return _State(
            params,
            stats,
            jnp.asarray(False),
            jnp.where(record, ll, s.prev_ll),
            n_iter,
            jnp.where(record, jnp.abs(ll - s.prev_ll) < tol, s.converged),
            nonfinite,
            jnp.where(record, s.trace.at[jnp.minimum(n_iter, max_iter - 1)].set(ll), s.trace),
            jnp.where(counted, collapsed, s.collapsed),
            s.regularized | (regularized & counted),
            last,
            ll,
        )

    state = _State(
        params,
        stats,
        jnp.asarray(True),
        jnp.asarray(-jnp.inf, dtype),
        jnp.asarray(0, jnp.int32),
        jnp.asarray(False),
        jnp.asarray(False),
        jnp.full((max_iter,), jnp.nan, dtype),
        jnp.zeros((k,), bool),
        jnp.zeros((k,), bool),
        jnp.asarray(False),
        jnp.asarray(jnp.nan, dtype),
    )
    s = jax.lax.while_loop(lambda s: ~s.done, body, state)
    return s, s.final_ll


def _init_stats(key, x, w, n_components, covariance_type, method, n_init):
    """Initial statistics of every restart (responsibilities from the chosen method), stacked on ``(n_init,)``.

    k-means++ takes the uniforms of all restarts from one draw of ``key`` (with one restart, the seeds are those
    of :func:`init` and :func:`jaxprob.kmeans.kmeans_plusplus` with ``key``); the other methods split ``key``."""
    shift, phi, tied = _prepare(x, w, covariance_type)
    xc = x - shift

    def one(r):
        return _stats_from_resp(phi, w, _initial_resp(r, xc, w, n_components, method), shift, covariance_type, tied)

    rs = _restart_draws(key, n_init, n_components, method, x.dtype)
    if n_init == 1:  # same values as the vmapped program, compiles faster
        return jax.tree.map(lambda a: a[None], one(rs[0]))
    return jax.vmap(one)(rs)


def _placeholder_params(n_init, k, d, covariance_type, dtype):
    """Zero parameters of the right shapes (never used: they stand in when EM starts from statistics)."""
    cov = np.zeros((n_init,) + _cov_shape(covariance_type, k, d), dtype)
    return GaussianMixture(np.zeros((n_init, k), dtype), np.zeros((n_init, k, d), dtype), cov, cov,
                           covariance_type)


def _placeholder_stats(n_init, k, d, covariance_type, dtype):
    """Statistics of the right shapes (never used: they stand in when EM starts from parameters)."""
    z = np.zeros((n_init,), dtype)
    sum_xx = np.zeros((n_init,) + _cov_shape(covariance_type, k, d), dtype)
    return SuffStats(np.ones((n_init, k), dtype), np.zeros((n_init, k, d), dtype), sum_xx,
                     np.zeros((n_init, d), dtype), z, z + 1, z + 1, covariance_type)


def _em_restarts(params, stats, given, x, w, max_iter, tol, reg_covar):
    """EM from every stacked start (one vmapped while_loop); keeps the restart with the best final likelihood."""
    shift, phi, tied = _prepare(x, w, params.covariance_type)

    def e_step(p):
        return _e_step_phi(phi, w, p, shift, tied)

    def one(p, st):
        return _run_em(p, st, given, e_step, max_iter, tol, reg_covar)

    if params.weights.shape[0] == 1:  # one restart: no batched while_loop (same values, faster compile)
        states, final_ll = jax.tree.map(lambda a: a[None], one(*jax.tree.map(lambda a: a[0], (params, stats))))
    else:
        states, final_ll = jax.vmap(one)(params, stats)
    return _best_restart(states, final_ll)


def _best_restart(states, final_ll):
    """Params and :class:`FitInfo` of the restart with the highest final log-likelihood (NaN never wins).

    ``states`` is any loop state stacked over restarts with fields ``params``, ``converged``, ``n_iter``,
    ``trace``, ``collapsed``, ``regularized`` and ``nonfinite`` (shared by :mod:`jaxprob.scale`)."""
    best = jnp.argmax(jnp.where(jnp.isnan(final_ll), -jnp.inf, final_ll))
    s = jax.tree.map(lambda a: a[best], states)
    info = FitInfo(
        converged=s.converged,
        n_iter=s.n_iter,
        log_likelihood=final_ll[best],
        log_likelihood_trace=s.trace,
        collapsed=s.collapsed,
        regularized=s.regularized,
        nonfinite=s.nonfinite,
        restart_log_likelihoods=final_ll,
        best_restart=best.astype(jnp.int32),
    )
    return s.params, info


def _fit_core(key, x, w, n_components, covariance_type, method, n_init, max_iter, tol, reg_covar):
    """Initialisation and EM in one traceable function (used inside other jitted programs)."""
    stats = _init_stats(key, x, w, n_components, covariance_type, method, n_init)
    params = _placeholder_params(n_init, n_components, x.shape[1], covariance_type, x.dtype)
    return _em_restarts(params, stats, False, x, w, max_iter, tol, reg_covar)


@jax.jit(static_argnums=(3, 4, 5, 6))
def _starts_jit(key, x, w, n_components, covariance_type, method, n_init, reg_covar):
    """The starting parameters of the ``n_init`` restarts of :func:`fit` for ``key`` (stacked), for the fits of
    :mod:`jaxprob.scale` that must start where :func:`fit` does."""
    stats = _init_stats(key, x, w, n_components, covariance_type, method, n_init)
    return jax.vmap(lambda st: _m_step(st, reg_covar)[0])(stats)


# One compiled program for a fit initialised from data (initialisation and EM together compile about 15% faster
# than as two programs, which both need the features), one for a fit from init_params (whose first pass keeps the
# given parameters).
_fit_jit = jax.jit(_fit_core, static_argnums=(3, 4, 5, 6, 7))
_em_jit = jax.jit(_em_restarts, static_argnums=(2, 5))


def fit(x, n_components: int, *, key=None, covariance_type: str = "full", n_init: int = 1,
        init_method: str = "kmeans++", init_params: GaussianMixture | None = None, max_iter: int = 100,
        tol: float = 1e-3, reg_covar: float = 1e-6, sample_weight=None):
    r"""Fit a Gaussian mixture by EM (``lax.while_loop``), with ``n_init`` restarts run as one vmapped program.

    Iterations stop when :math:`|\bar\ell_t - \bar\ell_{t-1}| < \text{tol}` (mean log-likelihood per unit
    weight) or after ``max_iter`` iterations. The restart with the highest final log-likelihood is kept.

    Args:
        x: ``(n, D)`` data, float32 or float64 (the computation runs in this dtype).
        n_components: ``K``, between 1 and ``n``.
        key: a JAX PRNG key (required unless ``init_params`` is given).
        covariance_type: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.
        n_init: number of restarts.
        init_method: one of :data:`INIT_METHODS` (ignored when ``init_params`` is given).
        init_params: optional starting :class:`GaussianMixture` (then every restart starts from it).
        max_iter: hard limit on EM iterations (static: the trace has this length).
        tol: convergence threshold on the change of the mean log-likelihood.
        reg_covar: non-negative value added to the covariance diagonals.
        sample_weight: optional ``(n,)`` non-negative weights; integer weights give the same fit as repeating
            the samples.

    Returns:
        ``(params, info)``: the fitted :class:`GaussianMixture` and a :class:`FitInfo`.

    Raises:
        ValueError / TypeError: naming the argument, for NaN/inf, wrong shapes, non-float ``x``,
            ``n_components`` outside ``[1, n]``, negative weights, an unknown ``covariance_type``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> x = jnp.concatenate([jax.random.normal(jax.random.key(1), (200, 2)) - 4,
        ...                      jax.random.normal(jax.random.key(2), (200, 2)) + 4])
        >>> gmm, info = mixture.fit(x, 2, key=jax.random.key(0))
        >>> bool(info.converged), sorted(gmm.means[:, 0].round(0).tolist())
        (True, [-4.0, 4.0])
    """
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    check_choice(init_method, "init_method", INIT_METHODS)
    x = _check_x(x)
    n_components = check_int(n_components, "n_components", minimum=1, maximum=x.shape[0])
    n_init = check_int(n_init, "n_init", minimum=1)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    _check_reg(reg_covar)
    if not is_tracer(tol) and (not np.isfinite(float(tol)) or float(tol) < 0):
        raise ValueError(f"`tol` must be a finite non-negative number, got {tol}")
    w = check_sample_weight(sample_weight, x.shape[0], x.dtype)
    if init_params is not None:
        _check_params(init_params, x.shape[1], "init_params")
        if init_params.covariance_type != covariance_type:
            raise ValueError(
                f"`init_params` has covariance_type={init_params.covariance_type!r} but "
                f"covariance_type={covariance_type!r} was asked for"
            )
        if init_params.n_components != n_components:
            raise ValueError(f"`init_params` has {init_params.n_components} components, not {n_components}")
        init_params = jax.tree.map(lambda a: jnp.asarray(a, x.dtype), init_params)
    else:
        check_key(key)
    # host-side scalars: no tiny eager programs to compile on the first call
    tol = tol if is_tracer(tol) else np.asarray(tol, x.dtype)
    reg_covar = reg_covar if is_tracer(reg_covar) else np.asarray(reg_covar, x.dtype)
    if init_params is None:
        return _fit_jit(key, x, w, n_components, covariance_type, init_method, n_init, max_iter, tol, reg_covar)
    params = jax.tree.map(lambda a: jnp.broadcast_to(a, (n_init,) + a.shape), init_params)
    stats = _placeholder_stats(n_init, n_components, x.shape[1], covariance_type, x.dtype)
    return _em_jit(params, stats, True, x, w, max_iter, tol, reg_covar)


# ----------------------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------------------
@jax.jit
def _weighted_component_log_probs(x, params):
    return _component_log_prob(x, params.means, params.precisions_cholesky, params.covariance_type) + jnp.log(
        params.weights
    )


def log_prob(x, params: GaussianMixture):
    r"""Per-sample log-density :math:`\log p(x_i) = \log\sum_k \alpha_k \mathcal N(x_i\mid\mu_k,\Sigma_k)`.

    Args:
        x: ``(n, D)``.
        params: a :class:`GaussianMixture`.

    Returns:
        ``(n,)`` log-densities.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([1.0]), jnp.zeros((1, 1)), jnp.ones(1), "spherical")
        >>> [round(float(v), 4) for v in mixture.log_prob(jnp.zeros((1, 1)), gmm)]
        [-0.9189]
    """
    x = _check_x(x, params=params)
    return jax.nn.logsumexp(_weighted_component_log_probs(x, params), axis=1)


def score(x, params: GaussianMixture, *, sample_weight=None):
    """Mean (weighted) log-likelihood of ``x``, as scikit-learn's ``score``.

    Args:
        x: ``(n, D)``.
        params: a :class:`GaussianMixture`.
        sample_weight: optional ``(n,)`` non-negative weights.

    Returns:
        Scalar.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([1.0]), jnp.zeros((1, 1)), jnp.ones(1), "spherical")
        >>> round(float(mixture.score(jnp.zeros((3, 1)), gmm)), 4)
        -0.9189
    """
    lp = log_prob(x, params)
    w = check_sample_weight(sample_weight, lp.shape[0], lp.dtype)
    return jnp.sum(w * lp) / jnp.sum(w)


def predict_proba(x, params: GaussianMixture):
    r"""Responsibilities :math:`r_{ik} = p(k \mid x_i)`.

    Args:
        x: ``(n, D)``.
        params: a :class:`GaussianMixture`.

    Returns:
        ``(n, K)``, rows summing to one.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]), jnp.ones(2), "spherical")
        >>> mixture.predict_proba(jnp.zeros((1, 1)), gmm).round(3).tolist()
        [[0.5, 0.5]]
    """
    x = _check_x(x, params=params)
    return jax.nn.softmax(_weighted_component_log_probs(x, params), axis=1)


def predict(x, params: GaussianMixture):
    """Most responsible component :math:`\\arg\\max_k r_{ik}`.

    Args:
        x: ``(n, D)``.
        params: a :class:`GaussianMixture`.

    Returns:
        ``(n,)`` int32 labels.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]), jnp.ones(2), "spherical")
        >>> mixture.predict(jnp.array([[-3.0], [2.0]]), gmm).tolist()
        [0, 1]
    """
    x = _check_x(x, params=params)
    return jnp.argmax(_weighted_component_log_probs(x, params), axis=1).astype(jnp.int32)


# ----------------------------------------------------------------------------------------------------------
# sampling
# ----------------------------------------------------------------------------------------------------------
def _draw(key, params, labels):
    n = labels.shape[0]
    d = params.n_features
    z = jax.random.normal(key, (n, d), params.means.dtype)
    ct = params.covariance_type
    if ct == "full":
        chol = jnp.linalg.cholesky(params.covariances)
        noise = jnp.einsum("nij,nj->ni", chol[labels], z)
    elif ct == "tied":
        noise = z @ jnp.linalg.cholesky(params.covariances).T
    elif ct == "diag":
        noise = jnp.sqrt(params.covariances)[labels] * z
    else:
        noise = jnp.sqrt(params.covariances)[labels][:, None] * z
    return params.means[labels] + noise


@jax.jit(static_argnums=(2,))
def _sample_jit(key, params, n):
    k_lab, k_x = jax.random.split(key)
    labels = jax.random.categorical(k_lab, jnp.log(params.weights), shape=(n,)).astype(jnp.int32)
    return _draw(k_x, params, labels), labels


@jax.jit(static_argnums=(3,))
def _sample_component_jit(key, params, component, n):
    labels = jnp.full((n,), component, jnp.int32)
    return _draw(key, params, labels)


def sample(key, params: GaussianMixture, n_samples: int):
    """Draw samples from the mixture: a component :math:`k \\sim \\mathrm{Cat}(\\alpha)`, then
    :math:`x \\sim \\mathcal N(\\mu_k, \\Sigma_k)`.

    Args:
        key: a JAX PRNG key.
        params: a :class:`GaussianMixture`.
        n_samples: number of samples (static).

    Returns:
        ``(x, labels)``: ``(n_samples, D)`` samples and the ``(n_samples,)`` components they came from.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.array([[-5.0], [5.0]]), jnp.ones(2), "spherical")
        >>> x, labels = mixture.sample(jax.random.key(0), gmm, 1000)
        >>> x.shape, bool(jnp.all((x[:, 0] > 0) == (labels == 1)))
        ((1000, 1), True)
    """
    check_key(key)
    _check_params(params)
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    return _sample_jit(key, params, n_samples)


def sample_component(key, params: GaussianMixture, component: int, n_samples: int):
    """Draw samples from one component :math:`\\mathcal N(\\mu_k, \\Sigma_k)`.

    Args:
        key: a JAX PRNG key.
        params: a :class:`GaussianMixture`.
        component: index ``k`` in ``[0, K)``.
        n_samples: number of samples (static).

    Returns:
        ``(n_samples, D)`` samples.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.array([[-5.0], [5.0]]), jnp.ones(2), "spherical")
        >>> x = mixture.sample_component(jax.random.key(0), gmm, 1, 2000)
        >>> round(float(x.mean()), 1)
        5.0
    """
    check_key(key)
    _check_params(params)
    component = check_int(component, "component", minimum=0, maximum=params.n_components - 1)
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    return _sample_component_jit(key, params, component, n_samples)


# ----------------------------------------------------------------------------------------------------------
# model selection
# ----------------------------------------------------------------------------------------------------------
def n_parameters(params: GaussianMixture) -> int:
    """Number of free parameters: :math:`K-1` weights, :math:`KD` means and the covariance parameters
    (:math:`KD(D+1)/2` full, :math:`D(D+1)/2` tied, :math:`KD` diag, :math:`K` spherical).

    Args:
        params: a :class:`GaussianMixture`.

    Returns:
        A Python int.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.zeros((2, 3)), jnp.ones(2), "spherical")
        >>> mixture.n_parameters(gmm)  # 1 weight + 6 means + 2 variances
        9
    """
    _check_params(params)
    k, d = params.n_components, params.n_features
    cov = {"full": k * d * (d + 1) // 2, "tied": d * (d + 1) // 2, "diag": k * d, "spherical": k}
    return k - 1 + k * d + cov[params.covariance_type]


def _total_ll_and_n(x, params, sample_weight):
    lp = log_prob(x, params)
    w = check_sample_weight(sample_weight, lp.shape[0], lp.dtype)
    return jnp.sum(w * lp), jnp.sum(w)


def bic(x, params: GaussianMixture, *, sample_weight=None):
    r"""Bayesian information criterion :math:`-2 \log L + p \log n` (lower is better).

    With weights, :math:`\log L = \sum_i w_i \log p(x_i)` and :math:`n = \sum_i w_i`.

    Args:
        x: ``(n, D)``.
        params: a :class:`GaussianMixture`.
        sample_weight: optional ``(n,)`` non-negative weights.

    Returns:
        Scalar.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([1.0]), jnp.zeros((1, 1)), jnp.ones(1), "spherical")
        >>> round(float(mixture.bic(jnp.zeros((4, 1)), gmm)), 4)  # 2 * 4 * 0.9189 + 2 log 4
        10.1241
    """
    total, n = _total_ll_and_n(x, params, sample_weight)
    return -2.0 * total + n_parameters(params) * jnp.log(n)


def aic(x, params: GaussianMixture, *, sample_weight=None):
    r"""Akaike information criterion :math:`-2\log L + 2p` (lower is better).

    Args:
        x: ``(n, D)``.
        params: a :class:`GaussianMixture`.
        sample_weight: optional ``(n,)`` non-negative weights.

    Returns:
        Scalar.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([1.0]), jnp.zeros((1, 1)), jnp.ones(1), "spherical")
        >>> round(float(mixture.aic(jnp.zeros((4, 1)), gmm)), 4)
        11.3515
    """
    total, _ = _total_ll_and_n(x, params, sample_weight)
    return -2.0 * total + 2.0 * n_parameters(params)


# ----------------------------------------------------------------------------------------------------------
# anomaly detection
# ----------------------------------------------------------------------------------------------------------
def anomaly_score(x, params: GaussianMixture):
    """Anomaly score :math:`s(x) = -\\log p(x)` (higher is more anomalous).

    Args:
        x: ``(n, D)``.
        params: a :class:`GaussianMixture`.

    Returns:
        ``(n,)`` scores.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([1.0]), jnp.zeros((1, 1)), jnp.ones(1), "spherical")
        >>> s = mixture.anomaly_score(jnp.array([[0.0], [5.0]]), gmm)
        >>> bool(s[1] > s[0])
        True
    """
    return -log_prob(x, params)


def anomaly_threshold(scores, *, contamination: float | None = None, epsilon: float | None = None):
    r"""Threshold on anomaly scores, from a density level or from an expected contamination.

    Exactly one of:

    * ``epsilon``: a sample is anomalous when :math:`p(x) < \varepsilon`, i.e. :math:`s(x) > -\log\varepsilon`;
    * ``contamination``: the fraction of the given ``scores`` to flag; the threshold is their
      :math:`(1-\text{contamination})` quantile (linear interpolation).

    Args:
        scores: ``(n,)`` anomaly scores (e.g. of the training data) — only used with ``contamination``.
        contamination: in ``(0, 1)``.
        epsilon: density level, ``> 0``.

    Returns:
        Scalar threshold; anomalies are ``scores > threshold``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> float(mixture.anomaly_threshold(jnp.arange(101.0), contamination=0.1))
        90.0
    """
    if (contamination is None) == (epsilon is None):
        raise ValueError("give exactly one of `contamination` and `epsilon`")
    if epsilon is not None:
        if not float(epsilon) > 0:
            raise ValueError(f"`epsilon` must be > 0, got {epsilon}")
        return -jnp.log(jnp.asarray(epsilon, dtype=float))
    if not 0.0 < float(contamination) < 1.0:
        raise ValueError(f"`contamination` must be in (0, 1), got {contamination}")
    scores = as_float_array(scores, "scores", 1)
    check_finite(scores, "scores")
    return jnp.quantile(scores, 1.0 - contamination)


def detect_anomalies(x, params: GaussianMixture, threshold):
    """Boolean anomaly mask :math:`-\\log p(x_i) > \\text{threshold}`.

    Args:
        x: ``(n, D)``.
        params: a :class:`GaussianMixture`.
        threshold: scalar from :func:`anomaly_threshold`.

    Returns:
        ``(n,)`` booleans.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> gmm = mixture.make_gmm(jnp.array([1.0]), jnp.zeros((1, 1)), jnp.ones(1), "spherical")
        >>> t = mixture.anomaly_threshold(None, epsilon=1e-3)
        >>> mixture.detect_anomalies(jnp.array([[0.0], [5.0]]), gmm, t).tolist()
        [False, True]
    """
    return anomaly_score(x, params) > threshold
