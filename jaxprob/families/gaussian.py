r"""Gaussian components with full, tied, diagonal or spherical covariances.

Each covariance type is one entry of a dispatch table ([COVARIANCE_TABLE][jaxprob.families.gaussian.COVARIANCE_TABLE]):
its parameter shapes, its quadratic features, its natural parameters, its covariance from moments, its parameter
count and its noise for sampling. Nothing else in the family branches on the type.

**The fused E-step.** Every EM iteration is two matrix products over a feature matrix computed once per fit,
$\Phi = [q(x - c), x - c, 1]$ with $q$ the quadratic terms of the type ($\operatorname{vech}((x-c)(x-c)^\top)$
for full covariances, the squares for diagonal ones, the squared norm for spherical ones, none for tied ones)
and $c$ the weighted data mean, which keeps the quadratic terms well conditioned. The component log-densities
are $\Phi W^\top$ for natural parameters $W$ built from the current parameters (plus, for a tied covariance,
one shared quadratic form), and all sufficient statistics are $R^\top \Phi$.

**The M-step.** $\mu_k = S_k / N_k$ and $\Sigma_k = Q_k / N_k - \mu_k \mu_k^\top + \lambda I$ with
$\lambda$ = `reg_covar`. A covariance that is not positive definite after rounding (points on a line in
float32, say) is refactorised with $\lambda$ multiplied by 10 up to six times, the way a careful library
retries; the component is flagged in `info.regularized`, and the returned covariance is the one factorised, so
the log-likelihood trace and `score` agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxprob._validation import as_float_array, check_choice, check_finite, is_tracer
from jaxprob.densities import (
    COVARIANCE_TYPES,
    component_log_prob,
    diagonal_entries,
    log_det_precisions_cholesky,
    precisions_cholesky,
)
from jaxprob.em import Family, fold_log_weights
from jaxprob.numerics import matmul_precision

__all__ = [
    "GaussianParams",
    "Gaussian",
    "CovarianceType",
    "COVARIANCE_TABLE",
    "gaussian",
    "make_params",
    "check_reg_covar",
    "regularized_cholesky",
]

_LOG_2PI = math.log(2.0 * math.pi)
# products over samples (E-step, statistics) take the library policy (jaxprob.numerics); products of
# parameters alone cost nothing and always run at full precision
_HIGHEST = jax.lax.Precision.HIGHEST
_RETRIES = 6  # reg_covar x 10, 100, ..., 1e6 before a covariance is declared hopeless


class GaussianParams(eqx.Module):
    """Parameters of $K$ Gaussian components (a pytree).

    Attributes:
        means: `(K, D)`.
        covariances: `(K, D, D)` full, `(D, D)` tied, `(K, D)` diag, `(K,)` spherical.
        precisions_cholesky: same shape as `covariances` (see [jaxprob.densities.precisions_cholesky][]).
    """

    means: jax.Array
    covariances: jax.Array
    precisions_cholesky: jax.Array


class CovarianceType(NamedTuple):
    """One covariance type: the functions that differ between types (an entry of the dispatch table).

    Attributes:
        shape: `(K, D) -> ` shape of the covariances.
        n_quad: `D ->` number of quadratic features.
        features: `(n, D)` centred data `->` `(n, n_quad)` quadratic features.
        natural: `(precision factors, centred means) -> ((K, n_quad), (K, D))` coefficients of the quadratic and
            linear features in the log-density.
        moments: `(K, n_quad) summed quadratic features -> ` second moments shaped like the covariances (None for
            the tied type, whose moments are a sum over all samples).
        covariance: `(moments, counts (K,), centred means (K, D), reg_covar) -> ` covariances.
        n_params: `(K, D) ->` number of covariance parameters.
        noise: `(z (m, D), covariances, labels (m,)) -> ` correlated noise for sampling.
        per_component: the covariances have a leading `(K,)` axis.
    """

    shape: Callable
    n_quad: Callable
    features: Callable
    natural: Callable
    moments: Callable | None
    covariance: Callable
    n_params: Callable
    noise: Callable
    per_component: bool


def _unpack_symmetric(packed, d):
    """(K, D(D+1)/2) upper-triangle entries (`np.triu_indices` order) to exactly symmetric (K, D, D), one gather."""
    iu, ju = np.triu_indices(d)
    pos = np.zeros((d, d), np.int32)
    pos[iu, ju] = pos[ju, iu] = np.arange(iu.size)
    return packed[:, pos]


def _full_features(xc):
    iu, ju = np.triu_indices(xc.shape[1])
    return xc[:, iu] * xc[:, ju]


def _full_natural(u, mu):
    d = mu.shape[1]
    lam = jnp.einsum("kij,klj->kil", u, u, precision=_HIGHEST)
    iu, ju = np.triu_indices(d)
    quad = -0.5 * lam[:, iu, ju] * jnp.asarray(np.where(iu == ju, 1.0, 2.0), mu.dtype)
    return quad, jnp.einsum("kij,kj->ki", lam, mu, precision=_HIGHEST)


def _full_covariance(sxx, nk, mu_c, reg):
    # exactly symmetric already (symmetric moments minus a product that commutes): no symmetrisation
    eye = jnp.eye(mu_c.shape[1], dtype=mu_c.dtype)
    return sxx / nk[:, None, None] - mu_c[:, :, None] * mu_c[:, None, :] + reg * eye


def _tied_natural(u, mu):
    lam = jnp.matmul(u, u.T, precision=_HIGHEST)
    return jnp.zeros((mu.shape[0], 0), mu.dtype), jnp.matmul(mu, lam, precision=_HIGHEST)


def _tied_covariance(sxx, nk, mu_c, reg):
    cov = (sxx - jnp.einsum("k,ki,kj->ij", nk, mu_c, mu_c, precision=_HIGHEST)) / jnp.sum(nk)
    return 0.5 * (cov + cov.T) + reg * jnp.eye(mu_c.shape[1], dtype=mu_c.dtype)


def _diag_natural(u, mu):
    p = jnp.square(u)
    return -0.5 * p, p * mu


def _spherical_natural(u, mu):
    p = jnp.square(u)[:, None]
    return -0.5 * p, p * mu


def regularized_cholesky(cov: ArrayLike, reg: float | ArrayLike) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""Precision Cholesky factors, refactorising covariances that are not positive definite with a larger ridge.

    The covariances are factorised in one batched call. Only when one of them fails (a `lax.cond`) is the ridge
    grown, from `reg` (or $10^{-6}$ times the mean variance when `reg` is 0) by $10^j$, $j = 1, \dots, 6$, all
    candidates in one more batched call; the first candidate that factorises is kept. Differentiable while every
    covariance factorises (the gradient through a failed factorisation is NaN). No data-dependent loop, and never
    two LAPACK calls side by side in one XLA program: jaxlib 0.10's CPU LAPACK kernels spread a batch over the
    same thread pool they run on, and two such calls at once can take every thread and wait for ever. The
    candidates read the first call's result, which orders the two calls also where `vmap` turns the `cond` into
    a select and runs both branches.

    Args:
        cov: `(K, D, D)` or `(D, D)` covariances, `reg` already on their diagonals.
        reg: the ridge already on the diagonals.

    Returns:
        `(cov, prec, retried)`: the covariances actually factorised, their upper-triangular precision factors
        (as [`precisions_cholesky`][jaxprob.densities.precisions_cholesky]), and a `(K,)` (or scalar) flag of those
        that needed a larger ridge.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob.families.gaussian import regularized_cholesky
        >>> cov, prec, retried = regularized_cholesky(jnp.array([[[1.0, 1.0], [1.0, 1.0]]]), 0.0)
        >>> bool(retried[0]), bool(jnp.all(jnp.isfinite(prec)))
        (True, True)
    """
    cov = jnp.asarray(cov)
    d = cov.shape[-1]
    reg = jnp.asarray(reg, cov.dtype)

    def factor(c):
        return precisions_cholesky(c.reshape((-1, d, d)), "full", symmetrize=False).reshape(c.shape)

    prec = factor(cov)
    ok = jnp.all(jnp.isfinite(prec), axis=(-2, -1))

    def retry(args):
        cov, prec, ok = args
        # The ridge goes only onto the covariances that failed (the others keep candidate 0 anyway). That makes
        # the candidates read the first call's result, so XLA cannot run the two calls side by side; an
        # optimisation barrier does not order them, since XLA's CPU runtime orders calls by the buffers they read.
        eye = jnp.where(ok[..., None, None], 0.0, jnp.eye(d, dtype=cov.dtype))
        # the ridge starts at reg_covar, or at a tiny multiple of the scale when reg_covar is 0
        scale = jnp.maximum(jnp.mean(diagonal_entries(cov), axis=-1), jnp.finfo(cov.dtype).tiny)
        base = jnp.maximum(reg, 1e-6 * scale)[..., None, None]
        steps = jnp.asarray(np.concatenate([[0.0], 10.0 ** np.arange(1, _RETRIES + 1)]), cov.dtype)
        tries = cov[None] + steps.reshape((-1,) + (1,) * cov.ndim) * base * eye  # (R + 1, ...): tries[0] is cov
        p_tries = jnp.concatenate([prec[None], factor(tries[1:])])
        ok_tries = jnp.concatenate([ok[None], jnp.all(jnp.isfinite(p_tries[1:]), axis=(-2, -1))])
        first = jnp.argmax(ok_tries, axis=0)  # the smallest ridge that works (0, none added, when cov factorises)
        pick_c = jnp.take_along_axis(tries, first[None, ..., None, None], axis=0)[0]
        pick_p = jnp.take_along_axis(p_tries, first[None, ..., None, None], axis=0)[0]
        return pick_c, pick_p  # nothing factorises: cov and its NaN factor (the engine reports it as non-finite)

    pick_c, pick_p = jax.lax.cond(jnp.all(ok), lambda args: args[:2], retry, (cov, prec, ok))
    return pick_c, pick_p, ~ok


def _full_noise(z, cov, labels):
    return jnp.einsum("nij,nj->ni", jnp.linalg.cholesky(cov)[labels], z, precision=_HIGHEST)


COVARIANCE_TABLE: dict[str, CovarianceType] = {
    "full": CovarianceType(
        shape=lambda k, d: (k, d, d),
        n_quad=lambda d: d * (d + 1) // 2,
        features=_full_features,
        natural=_full_natural,
        moments=lambda s, d: _unpack_symmetric(s, d),
        covariance=_full_covariance,
        n_params=lambda k, d: k * d * (d + 1) // 2,
        noise=_full_noise,
        per_component=True,
    ),
    "tied": CovarianceType(
        shape=lambda k, d: (d, d),
        n_quad=lambda d: 0,
        features=lambda xc: jnp.zeros((xc.shape[0], 0), xc.dtype),
        natural=_tied_natural,
        moments=None,
        covariance=_tied_covariance,
        n_params=lambda k, d: d * (d + 1) // 2,
        noise=lambda z, cov, labels: jnp.matmul(z, jnp.linalg.cholesky(cov).T, precision=_HIGHEST),
        per_component=False,
    ),
    "diag": CovarianceType(
        shape=lambda k, d: (k, d),
        n_quad=lambda d: d,
        features=jnp.square,
        natural=_diag_natural,
        moments=lambda s, d: s,
        covariance=lambda sxx, nk, mu_c, reg: jnp.maximum(sxx / nk[:, None] - jnp.square(mu_c), 0.0) + reg,
        n_params=lambda k, d: k * d,
        noise=lambda z, cov, labels: jnp.sqrt(cov)[labels] * z,
        per_component=True,
    ),
    "spherical": CovarianceType(
        shape=lambda k, d: (k,),
        n_quad=lambda d: 1,
        features=lambda xc: jnp.sum(jnp.square(xc), axis=-1, keepdims=True),
        natural=_spherical_natural,
        moments=lambda s, d: s[:, 0],
        covariance=lambda sxx, nk, mu_c, reg: (
            jnp.maximum(sxx / nk - jnp.sum(jnp.square(mu_c), axis=-1), 0.0) / mu_c.shape[1] + reg
        ),
        n_params=lambda k, d: k,
        noise=lambda z, cov, labels: jnp.sqrt(cov)[labels][:, None] * z,
        per_component=True,
    ),
}
"""The covariance types of the Gaussian family, by name."""


class Gaussian(Family):
    r"""Gaussian components $\mathcal N(\mu_k, \Sigma_k)$ (see the module notes for the fused E-step).

    Statistics (about the weighted data mean $c$): `(sum_x (K, D), sum_xx)` with
    $\sum_i r_{ik}(x_i - c)$ and the second moments shaped like the covariances (for tied covariances, the
    moments of all samples).

    Attributes:
        covariance_type: `"full"`, `"tied"`, `"diag"` or `"spherical"` (static).
        reg_covar: non-negative value $\lambda$ added to the covariance diagonals.
    """

    covariance_type: str = eqx.field(static=True, default="full")
    reg_covar: float | jax.Array = 1e-6

    @property
    def table(self) -> CovarianceType:
        return COVARIANCE_TABLE[self.covariance_type]

    def n_features(self, params: GaussianParams) -> int:
        return params.means.shape[-1]

    def prepare(self, x, w, center):
        xc = x - center
        n = xc.shape[0]
        return jnp.concatenate([self.table.features(xc), xc, jnp.ones((n, 1), xc.dtype)], axis=1)

    def _natural(self, params: GaussianParams, center):
        mu = params.means - center
        u = params.precisions_cholesky
        k, d = mu.shape
        quad, lin = self.table.natural(u, mu)
        const = -0.5 * jnp.sum(mu * lin, axis=-1)
        log_det = jnp.broadcast_to(log_det_precisions_cholesky(u, self.covariance_type, d), (k,))
        const = const + log_det - 0.5 * d * _LOG_2PI
        return jnp.concatenate([quad, lin, const[:, None]], axis=1)

    def log_prob(self, data, params: GaussianParams, center):
        return self._log_prob(data, params, center, self._natural(params, center))

    def weighted_log_prob(self, data, params: GaussianParams, center, weights):
        # the log-weights in the constant column: the product gives the weighted log-likelihoods directly, and
        # the E-step's max and exp read it without another (n, K) pass
        return self._log_prob(data, params, center, fold_log_weights(self._natural(params, center), weights))

    def _log_prob(self, data, params, center, natural):
        lp = jnp.matmul(data, natural.T, precision=matmul_precision())
        if self.covariance_type == "tied":
            xc = data[:, self._linear(params.means.shape[1])]
            u = params.precisions_cholesky
            lp = lp - 0.5 * jnp.sum(jnp.square(jnp.matmul(xc, u, precision=matmul_precision())), axis=-1, keepdims=True)
        return lp

    def _linear(self, d):
        q = self.table.n_quad(d)
        return slice(q, q + d)

    def statistics(self, data, resp, params, center):
        return self.statistics_and_counts(data, resp, params, center)[0]

    def statistics_and_counts(self, data, resp, params, center):
        # one product with the prepared columns [quadratic features, x - c, 1]: the last column gives the counts
        d = center.shape[0]
        q = self.table.n_quad(d)
        s = jnp.matmul(resp.T, data, precision=matmul_precision())
        if self.table.moments is None:  # tied: second moments of all samples, weighted by sum_k resp
            xc = data[:, q : q + d]
            sxx = jnp.matmul((xc * jnp.sum(resp, axis=1, keepdims=True)).T, xc, precision=matmul_precision())
        else:
            sxx = self.table.moments(s[:, :q], d)
        return (s[:, q : q + d], sxx), s[:, -1]

    def m_step(self, stats, counts, center, previous, keep):
        sum_x, sum_xx = stats
        ct = self.covariance_type
        mu_c = sum_x / counts[:, None]
        cov = self.table.covariance(sum_xx, counts, mu_c, self.reg_covar)
        means = mu_c + center
        if previous is not None:
            means = jnp.where(keep[:, None], previous.means, means)
            if self.table.per_component:
                cov = jnp.where(keep.reshape((-1,) + (1,) * (cov.ndim - 1)), previous.covariances, cov)
        k = means.shape[0]
        if ct in ("full", "tied"):
            cov, prec, bad = regularized_cholesky(cov, self.reg_covar)
            regularized = jnp.broadcast_to(bad, (k,))
        else:
            prec = precisions_cholesky(cov, ct, symmetrize=False)
            regularized = jnp.zeros((k,), bool)
        return GaussianParams(means, cov, prec), regularized

    def n_parameters(self, params: GaussianParams) -> int:
        k, d = params.means.shape
        return k * d + self.table.n_params(k, d)

    def sample(self, key, params: GaussianParams, labels):
        z = jax.random.normal(key, (labels.shape[0], params.means.shape[1]), params.means.dtype)
        return params.means[labels] + self.table.noise(z, params.covariances, labels)

    def check_params(self, params, n_features=None):
        if not isinstance(params, GaussianParams):
            raise TypeError(f"Gaussian components must be GaussianParams, got {type(params).__name__}")
        k, d = params.means.shape
        if n_features is not None and d != n_features:
            raise ValueError(f"`x` has {n_features} features but the model has {d}")
        if tuple(params.covariances.shape) != self.table.shape(k, d):
            raise ValueError(f"covariances of shape {tuple(params.covariances.shape)} do not fit "
                             f"covariance_type={self.covariance_type!r} with K={k}, D={d}")

    def component_mask(self, params: GaussianParams):
        per = self.table.per_component
        return GaussianParams(True, per, per)

    def model_center(self, weights, params: GaussianParams):
        return jnp.matmul(weights, params.means, precision=_HIGHEST)

    def implied_statistics(self, params: GaussianParams, weights, center):
        m = params.means - center
        cov = params.covariances
        ct = self.covariance_type
        a = weights
        if ct == "full":
            sxx = a[:, None, None] * (cov + m[:, :, None] * m[:, None, :])
        elif ct == "tied":
            sxx = cov + jnp.einsum("k,ki,kj->ij", a, m, m, precision=_HIGHEST)
        elif ct == "diag":
            sxx = a[:, None] * (cov + jnp.square(m))
        else:
            sxx = a * (m.shape[1] * cov + jnp.sum(jnp.square(m), axis=-1))
        return a[:, None] * m, sxx

    def component_log_prob(self, x, params: GaussianParams):
        """`(n, K)` log-densities of raw data (no prepared features): the evaluation path of predict/score."""
        return component_log_prob(x, params.means, params.precisions_cholesky, self.covariance_type)


def gaussian(covariance_type: str = "full", reg_covar: float = 1e-6) -> Gaussian:
    """The Gaussian family with a covariance type and a ridge `reg_covar` on the covariance diagonals.

    Args:
        covariance_type: `"full"`, `"tied"`, `"diag"` or `"spherical"`.
        reg_covar: non-negative number added to the covariance diagonals.

    Returns:
        A [Gaussian][jaxprob.families.gaussian.Gaussian] family.

    Examples:
        >>> from jaxprob import families
        >>> families.gaussian("diag").covariance_type
        'diag'
    """
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    check_reg_covar(reg_covar)
    return Gaussian(covariance_type, reg_covar)


def check_reg_covar(reg_covar: float) -> None:
    """Raise a `TypeError` / `ValueError` unless `reg_covar` is a finite non-negative number (tracers pass)."""
    if is_tracer(reg_covar):
        return
    if isinstance(reg_covar, bool) or not isinstance(reg_covar, (int, float, np.floating, np.integer, jax.Array)):
        raise TypeError(f"`reg_covar` must be a number, got {type(reg_covar).__name__}")
    if not np.isfinite(float(reg_covar)) or float(reg_covar) < 0:
        raise ValueError(f"`reg_covar` must be a finite non-negative number, got {reg_covar}")


def make_params(means: ArrayLike, covariances: ArrayLike, covariance_type: str = "full") -> GaussianParams:
    """Gaussian component parameters from means and covariances (the precision factors are computed).

    Args:
        means: `(K, D)`.
        covariances: shaped for `covariance_type` (see [GaussianParams][jaxprob.families.gaussian.GaussianParams]),
            symmetric positive definite.
        covariance_type: `"full"`, `"tied"`, `"diag"` or `"spherical"`.

    Returns:
        [GaussianParams][jaxprob.families.gaussian.GaussianParams]. Concrete covariances that are not positive
        definite raise a `ValueError`; traced ones give NaN factors (see `jaxprob.mixture.check_model`).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob.families.gaussian import make_params
        >>> make_params(jnp.zeros((1, 2)), jnp.array([[4.0, 1.0]]), "diag").precisions_cholesky.tolist()
        [[0.5, 1.0]]
    """
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    means = as_float_array(means, "means", 2)
    k, d = means.shape
    covariances = as_float_array(covariances, "covariances", dtype=means.dtype)
    want = COVARIANCE_TABLE[covariance_type].shape(k, d)
    if tuple(covariances.shape) != want:
        raise ValueError(f"`covariances` must have shape {want} for covariance_type={covariance_type!r}, got "
                         f"{tuple(covariances.shape)}")
    check_finite(means, "means")
    check_finite(covariances, "covariances")
    prec = precisions_cholesky(covariances, covariance_type)
    if not is_tracer(prec) and not np.all(np.isfinite(np.asarray(prec))):
        raise ValueError("`covariances` must be symmetric positive definite (a Cholesky factorisation failed)")
    return GaussianParams(means, covariances, prec)
