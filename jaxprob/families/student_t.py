r"""Student-t components with full scale matrices: a mixture that resists outliers, fitted by ECM.

A multivariate $t$ component with location $\mu_k$, scale matrix $\Sigma_k$ and $\nu_k$ degrees of freedom is a
Gaussian whose precision is scaled by a latent weight $u \sim \mathrm{Gamma}(\nu_k/2, \nu_k/2)$:
$x \mid u \sim \mathcal N(\mu_k, \Sigma_k / u)$. Its density is

$$p(x \mid \theta_k) = \frac{\Gamma(\frac{\nu_k + D}{2})}{\Gamma(\frac{\nu_k}{2}) (\nu_k \pi)^{D/2}
|\Sigma_k|^{1/2}} \Big(1 + \frac{\delta_k(x)}{\nu_k}\Big)^{-\frac{\nu_k + D}{2}},
\qquad \delta_k(x) = (x - \mu_k)^\top \Sigma_k^{-1} (x - \mu_k).$$

**EM with latent scales** (McLachlan and Peel, *Finite Mixture Models*, 2000, ch. 7; Peel and McLachlan, 2000).
The E-step gives, besides the responsibilities $r_{ik}$, the expected weights
$u_{ik} = (\nu_k + D) / (\nu_k + \delta_k(x_i))$ under the parameters of the E-step: a sample far from a
component gets a small weight in it, which is what makes the fit robust. The conditional M-steps are

$$\mu_k = \frac{\sum_i r_{ik} u_{ik} x_i}{\sum_i r_{ik} u_{ik}}, \qquad
\Sigma_k = \frac{\sum_i r_{ik} u_{ik} (x_i - \mu_k)(x_i - \mu_k)^\top}{N_k} + \lambda I,$$

and, when the degrees of freedom are estimated, $\nu_k$ solves

$$\log\frac{\nu}{2} - \psi\Big(\frac{\nu}{2}\Big) + 1 + \frac{1}{N_k} \sum_i r_{ik} (\log u_{ik} - u_{ik})
+ \psi\Big(\frac{\nu_k^{\text{old}} + D}{2}\Big) - \log\frac{\nu_k^{\text{old}} + D}{2} = 0,$$

whose left side decreases in $\nu$; it is solved by bisection on $\log \nu$ within `dof_bounds`, with a fixed
number of steps (`n_bisection`), so the M-step compiles to a fixed program. Every term is an additive statistic
of the E-step (the terms in $\nu^{\text{old}}$ are multiplied by $N_k$), so the sharded, chunked and online
drivers need nothing more.

**The fused E-step.** As for the Gaussian family, the data are prepared once as
$\Phi = [\operatorname{vech}((x - c)(x - c)^\top), x - c, 1]$ about the weighted mean $c$; the Mahalanobis
distances of all components are one product $\Phi W^\top$ (the full-covariance natural parameters of
[COVARIANCE_TABLE][jaxprob.families.gaussian.COVARIANCE_TABLE]), and all statistics are one product
$(R \odot U)^\top \Phi$. At the initial M-step (statistics from starting responsibilities, no parameters yet)
$u_{ik} = 1$ and the degrees-of-freedom statistic is set so that the initial $\nu_k$ is the family's `dof`.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import digamma, gammaln
from jax.typing import ArrayLike

from jaxprob._validation import as_float_array, check_finite, check_int, is_tracer
from jaxprob.densities import log_det_precisions_cholesky, precisions_cholesky
from jaxprob.em import Family
from jaxprob.families._checks import check_number, check_param_array
from jaxprob.families.gaussian import COVARIANCE_TABLE, regularized_cholesky
from jaxprob.numerics import matmul_precision

__all__ = ["StudentTParams", "StudentT", "student_t", "make_params", "solve_dof"]

# products over samples (E-step, statistics) take the library policy (jaxprob.numerics); products of
# parameters alone cost nothing and always run at full precision
_HIGHEST = jax.lax.Precision.HIGHEST
_FULL = COVARIANCE_TABLE["full"]


class StudentTParams(eqx.Module):
    r"""Parameters of $K$ Student-t components (a pytree).

    Attributes:
        means: `(K, D)` locations $\mu_k$ (the means when $\nu_k > 1$).
        covariances: `(K, D, D)` scale matrices $\Sigma_k$ (the covariance is $\Sigma_k \nu_k / (\nu_k - 2)$
            when $\nu_k > 2$).
        precisions_cholesky: `(K, D, D)` upper-triangular $U_k$ with $\Sigma_k^{-1} = U_k U_k^\top$.
        dof: `(K,)` degrees of freedom $\nu_k$.
    """

    means: jax.Array
    covariances: jax.Array
    precisions_cholesky: jax.Array
    dof: jax.Array


def _dof_gap(nu):
    r"""$\log(\nu/2) - \psi(\nu/2)$, positive and decreasing from $+\infty$ to 0."""
    return jnp.log(0.5 * nu) - digamma(0.5 * nu)


def solve_dof(mean_stat: ArrayLike, bounds: tuple[float, float] = (0.1, 1000.0), n_steps: int = 60) -> jax.Array:
    r"""Solve the degrees-of-freedom equation $\log\frac{\nu}{2} - \psi(\frac{\nu}{2}) + 1 + \bar c = 0$ by
    bisection on $\log \nu$ (traceable; a fixed number of steps).

    Args:
        mean_stat: `(K,)` $\bar c$, the per-component mean of the degrees-of-freedom statistic (see the module
            notes); the root exists when $\bar c < -1$.
        bounds: `(low, high)` bracket of $\nu$; a root outside it gives the nearer bound.
        n_steps: bisection steps (static); 60 halve the bracket of $\log\nu$ to below float64 resolution.

    Returns:
        `(K,)` degrees of freedom.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jax.scipy.special import digamma
        >>> from jaxprob.families.student_t import solve_dof
        >>> nu = 5.0  # the statistic implied by nu = 5 gives 5 back
        >>> c = digamma(nu / 2) - jnp.log(nu / 2) - 1.0
        >>> solve_dof(jnp.array([c])).round(4).tolist()
        [5.0]
    """
    mean_stat = jnp.asarray(mean_stat)
    lo = jnp.full(mean_stat.shape, math.log(bounds[0]), mean_stat.dtype)
    hi = jnp.full(mean_stat.shape, math.log(bounds[1]), mean_stat.dtype)

    def body(_, carry):
        a, b = carry
        mid = 0.5 * (a + b)
        below_root = _dof_gap(jnp.exp(mid)) + 1.0 + mean_stat > 0  # the left side decreases in nu
        return jnp.where(below_root, mid, a), jnp.where(below_root, b, mid)

    lo, hi = jax.lax.fori_loop(0, n_steps, body, (lo, hi))
    return jnp.exp(0.5 * (lo + hi))


class StudentT(Family):
    r"""Student-t components with full scale matrices, fitted by ECM with latent scales (see the module notes).

    Statistics (about the weighted data mean $c$), with $r$ the weighted responsibilities and $u$ the expected
    latent scales: `(su (K,), sx (K, D), sxx (K, D, D), sdof (K,))`, the sums $\sum_i r_{ik} u_{ik}$,
    $\sum_i r_{ik} u_{ik} (x_i - c)$, $\sum_i r_{ik} u_{ik} (x_i - c)(x_i - c)^\top$ and the
    degrees-of-freedom statistic (zeros when `estimate_dof` is False).

    Attributes:
        dof: the degrees of freedom when they are fixed, their starting value when they are estimated.
        reg_covar: non-negative value $\lambda$ added to the scale-matrix diagonals.
        estimate_dof: estimate $\nu_k$ per component (static).
        dof_bounds: `(low, high)` bracket of the estimated $\nu_k$ (static).
        n_bisection: bisection steps of the degrees-of-freedom update (static).
    """

    dof: float | jax.Array = 10.0
    reg_covar: float | jax.Array = 1e-6
    estimate_dof: bool = eqx.field(static=True, default=True)
    dof_bounds: tuple[float, float] = eqx.field(static=True, default=(0.1, 1000.0))
    n_bisection: int = eqx.field(static=True, default=60)

    # ---- parameters ----------------------------------------------------------------------------------------
    def make_params(self, means, covariances, dof=None) -> StudentTParams:
        """Component parameters from locations, scale matrices and degrees of freedom, checked eagerly.

        Args:
            means: `(K, D)` locations.
            covariances: `(K, D, D)` symmetric positive definite scale matrices.
            dof: `(K,)` or scalar positive degrees of freedom (default: the family's `dof`).

        Returns:
            [StudentTParams][jaxprob.families.student_t.StudentTParams] (the precision factors are computed).

        Examples:
            >>> import jax.numpy as jnp
            >>> from jaxprob import families
            >>> p = families.student_t(dof=3.0).make_params(jnp.zeros((2, 1)), jnp.ones((2, 1, 1)))
            >>> p.dof.tolist()
            [3.0, 3.0]
        """
        means = check_param_array(means, "means", 2)
        k, d = means.shape
        covariances = as_float_array(covariances, "covariances", 3, dtype=means.dtype)
        if tuple(covariances.shape) != (k, d, d):
            raise ValueError(f"`covariances` must have shape {(k, d, d)}, got {tuple(covariances.shape)}")
        check_finite(covariances, "covariances")
        dof = self.dof if dof is None else dof
        dof = as_float_array(dof, "dof", (0, 1), dtype=means.dtype)
        if dof.ndim == 1 and dof.shape != (k,):
            raise ValueError(f"`dof` must be a scalar or have shape ({k},), got {tuple(dof.shape)}")
        check_finite(dof, "dof")
        dof = jnp.broadcast_to(dof, (k,))
        prec = precisions_cholesky(covariances, "full")
        if not is_tracer(prec) and not np.all(np.isfinite(np.asarray(prec))):
            raise ValueError("`covariances` must be symmetric positive definite (a Cholesky factorisation failed)")
        params = StudentTParams(means, covariances, prec, dof)
        self.check_params(params)
        return params

    def check_params(self, params, n_features: int | None = None) -> None:
        if not isinstance(params, StudentTParams):
            raise TypeError(f"Student-t components must be StudentTParams, got {type(params).__name__}")
        if params.means.ndim != 2:
            raise ValueError(f"`means` must have shape (K, D), got {tuple(params.means.shape)}")
        k, d = params.means.shape
        if n_features is not None and d != n_features:
            raise ValueError(f"`x` has {n_features} features but the model has {d}")
        for name in ("covariances", "precisions_cholesky"):
            if tuple(getattr(params, name).shape) != (k, d, d):
                raise ValueError(f"`{name}` must have shape {(k, d, d)}, got {tuple(getattr(params, name).shape)}")
        if tuple(params.dof.shape) != (k,):
            raise ValueError(f"`dof` must have shape ({k},), got {tuple(params.dof.shape)}")
        if not is_tracer(params.dof) and not np.all(np.asarray(params.dof) > 0):
            raise ValueError("`dof` must be positive")

    def n_features(self, params: StudentTParams) -> int:
        return params.means.shape[-1]

    def n_parameters(self, params: StudentTParams) -> int:
        k, d = params.means.shape
        return k * d + k * d * (d + 1) // 2 + (k if self.estimate_dof else 0)

    def model_center(self, weights, params: StudentTParams):
        return jnp.matmul(weights, params.means, precision=_HIGHEST)

    # ---- the E-step ----------------------------------------------------------------------------------------
    def prepare(self, x, w, center):
        xc = x - center
        return jnp.concatenate([_FULL.features(xc), xc, jnp.ones((xc.shape[0], 1), xc.dtype)], axis=1)

    def _mahalanobis(self, data, params: StudentTParams, center):
        """`(n, K)` squared Mahalanobis distances from prepared data, one matrix product."""
        mu = params.means - center
        quad, lin = _FULL.natural(params.precisions_cholesky, mu)
        const = -0.5 * jnp.sum(mu * lin, axis=-1)
        half = jnp.matmul(data, jnp.concatenate([quad, lin, const[:, None]], axis=1).T, precision=matmul_precision())
        return jnp.maximum(-2.0 * half, 0.0)  # rounding can leave a tiny negative distance

    def _log_density(self, maha, params: StudentTParams):
        nu = params.dof
        d = params.means.shape[1]
        log_det = log_det_precisions_cholesky(params.precisions_cholesky, "full", d)
        const = gammaln(0.5 * (nu + d)) - gammaln(0.5 * nu) - 0.5 * d * jnp.log(nu * math.pi) + log_det
        return const - 0.5 * (nu + d) * jnp.log1p(maha / nu)

    def log_prob(self, data, params: StudentTParams, center):
        return self._log_density(self._mahalanobis(data, params, center), params)

    def component_log_prob(self, x, params: StudentTParams):
        u = params.precisions_cholesky
        y = (jnp.einsum("nd,kde->nke", x, u, precision=matmul_precision())
             - jnp.einsum("kd,kde->ke", params.means, u, precision=_HIGHEST)[None])
        return self._log_density(jnp.sum(jnp.square(y), axis=-1), params)

    def _initial_dof_stat(self, dtype):
        nu = jnp.asarray(self.dof, dtype)
        return digamma(0.5 * nu) - jnp.log(0.5 * nu) - 1.0  # the statistic whose solution is nu itself

    def statistics(self, data, resp, params, center):
        d = center.shape[0]
        q = d * (d + 1) // 2
        nk = jnp.sum(resp, axis=0)
        if params is None:  # initialisation: no E-step parameters, unit latent scales
            ru = resp
            sdof = nk * self._initial_dof_stat(resp.dtype) if self.estimate_dof else jnp.zeros_like(nk)
        else:
            nu, dnu = params.dof, params.dof + d
            u = dnu / (nu + self._mahalanobis(data, params, center))
            ru = resp * u
            if self.estimate_dof:
                sdof = (jnp.sum(resp * (jnp.log(u) - u), axis=0)
                        + nk * (digamma(0.5 * dnu) - jnp.log(0.5 * dnu)))
            else:
                sdof = jnp.zeros_like(nk)
        s = jnp.matmul(ru.T, data, precision=matmul_precision())
        return s[:, q + d], s[:, q:q + d], _FULL.moments(s[:, :q], d), sdof

    # ---- the M-step ----------------------------------------------------------------------------------------
    def m_step(self, stats, counts, center, previous, keep):
        su, sx, sxx, sdof = stats
        k, d = sx.shape
        mu_c = sx / jnp.where(su > 0, su, 1.0)[:, None]
        eye = jnp.eye(d, dtype=sx.dtype)
        reg = jnp.asarray(self.reg_covar, sx.dtype)
        cov = (sxx - su[:, None, None] * mu_c[:, :, None] * mu_c[:, None, :]) / counts[:, None, None] + reg * eye
        means = mu_c + center
        if self.estimate_dof:
            dof = solve_dof(sdof / counts, self.dof_bounds, self.n_bisection)
        else:
            dof = jnp.broadcast_to(jnp.asarray(self.dof, sx.dtype), (k,))
        if previous is not None:
            means = jnp.where(keep[:, None], previous.means, means)
            cov = jnp.where(keep[:, None, None], previous.covariances, cov)
            dof = jnp.where(keep, previous.dof, dof)
        cov, prec, regularized = self._factorise(cov)
        return StudentTParams(means, cov, prec, dof), regularized

    def _factorise(self, cov):
        """Precision factors; a scale matrix that is not positive definite after rounding gets the Gaussian
        family's larger-ridge retries, and is flagged."""
        return regularized_cholesky(cov, jnp.asarray(self.reg_covar, cov.dtype))

    def implied_statistics(self, params: StudentTParams, weights, center):
        a = weights
        mu = params.means - center
        d = mu.shape[1]
        reg = jnp.asarray(self.reg_covar, mu.dtype)
        outer = mu[:, :, None] * mu[:, None, :]
        sxx = a[:, None, None] * (params.covariances - reg * jnp.eye(d, dtype=mu.dtype) + outer)
        if self.estimate_dof:
            nu = params.dof
            sdof = a * (digamma(0.5 * nu) - jnp.log(0.5 * nu) - 1.0)
        else:
            sdof = jnp.zeros_like(a)
        return a, a[:, None] * mu, sxx, sdof

    # ---- sampling ------------------------------------------------------------------------------------------
    def sample(self, key, params: StudentTParams, labels):
        k_z, k_g = jax.random.split(key)
        mu = params.means
        m, d = labels.shape[0], mu.shape[1]
        z = jax.random.normal(k_z, (m, d), mu.dtype)
        half_nu = 0.5 * params.dof[labels]
        g = jax.random.gamma(k_g, half_nu, dtype=mu.dtype) / half_nu  # u ~ Gamma(nu/2, rate nu/2)
        chol = jnp.linalg.cholesky(params.covariances)[labels]
        noise = jnp.einsum("nij,nj->ni", chol, z, precision=_HIGHEST)
        return mu[labels] + noise / jnp.sqrt(g)[:, None]


def student_t(dof: float = 10.0, *, estimate_dof: bool = True, reg_covar: float = 1e-6,
              dof_bounds: tuple[float, float] = (0.1, 1000.0), n_bisection: int = 60) -> StudentT:
    r"""The Student-t family (full scale matrices), with degrees of freedom fixed or estimated.

    Args:
        dof: positive degrees of freedom: the fixed value, or the starting value when `estimate_dof`.
        estimate_dof: estimate $\nu_k$ per component by the ECM update (see the module notes).
        reg_covar: non-negative value added to the scale-matrix diagonals.
        dof_bounds: `(low, high)`, $0 < \text{low} < \text{high}$, the bracket of the estimated degrees of freedom.
        n_bisection: bisection steps of the update (at least 1).

    Returns:
        A [StudentT][jaxprob.families.student_t.StudentT] family.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import families, mixture
        >>> x = jax.random.t(jax.random.key(1), 3.0, (400, 2))
        >>> model, info = mixture.fit(x, 1, key=jax.random.key(0), family=families.student_t(), max_iter=300,
        ...                           tol=1e-6)
        >>> 2.0 < float(model.dof[0]) < 4.5  # the data have 3 degrees of freedom
        True
    """
    check_number(dof, "dof", strict=True)
    check_number(reg_covar, "reg_covar")
    if not isinstance(estimate_dof, bool):
        raise TypeError(f"`estimate_dof` must be a bool, got {type(estimate_dof).__name__}")
    if not (isinstance(dof_bounds, (tuple, list)) and len(dof_bounds) == 2):
        raise TypeError(f"`dof_bounds` must be a pair (low, high), got {dof_bounds!r}")
    lo, hi = dof_bounds
    check_number(lo, "dof_bounds[0]", strict=True)
    check_number(hi, "dof_bounds[1]", strict=True)
    if not float(lo) < float(hi):
        raise ValueError(f"`dof_bounds` must satisfy low < high, got {dof_bounds!r}")
    n_bisection = check_int(n_bisection, "n_bisection", minimum=1)
    return StudentT(dof, reg_covar, estimate_dof, (float(lo), float(hi)), n_bisection)


def make_params(means: ArrayLike, covariances: ArrayLike, dof: ArrayLike) -> StudentTParams:
    """[StudentTParams][jaxprob.families.student_t.StudentTParams] from locations, scale matrices and degrees of
    freedom, checked eagerly.

    Args:
        means: `(K, D)` locations.
        covariances: `(K, D, D)` positive definite scale matrices.
        dof: `(K,)` or scalar positive degrees of freedom.

    Returns:
        The component parameters.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob.families.student_t import make_params
        >>> make_params(jnp.zeros((1, 2)), 4.0 * jnp.eye(2)[None], 5.0).precisions_cholesky[0].tolist()
        [[0.5, 0.0], [0.0, 0.5]]
    """
    return StudentT().make_params(means, covariances, dof)
