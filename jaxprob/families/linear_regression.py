r"""Linear-regression components: a family with covariates, for mixtures of linear regressions.

A sample is a pair $(x_i, y_i)$ of covariates $x_i \in \mathbb R^d$ and a target $y_i \in \mathbb R$; the data
set is the pytree `(X (n, d), y (n,))`. Component $k$ is a Gaussian line,

$$p(y \mid x, \theta_k) = \mathcal N\big(y \mid w_{k0} + w_k^\top x,\; \sigma_k^2\big),$$

and the covariates are conditioned on, not modelled: a mixture of this family is the conditional density
$L(y \mid x) = \sum_k \pi_k \, p(y \mid x, \theta_k)$ with mixing weights that do not depend on $x$.

**Statistics.** With $z = [x - c_x, 1]$ and $\tilde y = y - c_y$ about the weighted data mean $c = (c_x, c_y)$
(which keeps the sums well conditioned), the statistics of component $k$ are
$A_k = \sum_i r_{ik} z_i z_i^\top$, $b_k = \sum_i r_{ik} z_i \tilde y_i$ and $s_k = \sum_i r_{ik} \tilde y_i^2$:
additive, so chunks, devices and streams add them. The data are prepared once as
$\Phi = [z, \tilde y, z \tilde y, \tilde y^2, \operatorname{vech}((x - c_x)(x - c_x)^\top)]$, and every E-step
reduces to one matrix product $R^\top \Phi$.

**The M-step** is a weighted least-squares solve per component, $\beta_k = A_k^{-1} b_k$ (a Cholesky
factorisation), then $\sigma_k^2 = \mathrm{RSS}_k / N_k$ with
$\mathrm{RSS}_k = s_k - 2 \beta_k^\top b_k + \beta_k^\top A_k \beta_k$, or one pooled
$\sigma^2 = \sum_k \mathrm{RSS}_k / \sum_k N_k$ when `shared_sigma`. The floor $\sigma_k \ge$ `min_sigma` keeps
the likelihood bounded (a line through $d + 1$ points has a zero residual); the floored value is the maximiser
of the expected log-likelihood over $\sigma \ge$ `min_sigma`, so EM stays monotone. A component whose $A_k$ is
singular (fewer than $d + 1$ samples in it, collinear covariates) is solved with a ridge
$\lambda I$, $\lambda = \sqrt{\epsilon}\,\overline{\operatorname{diag} A_k}$ times $1, 10, \dots, 10^5$ (the
first that factorises), and flagged in `info.regularized`.

**Precision.** The residual sum of squares from the statistics is a difference of sums: in float32 the noise
levels lose about $\log_{10}(\operatorname{var}(y) / \sigma_k^2)$ of their 7 digits (the lines themselves do
not), as the Gaussian covariances from moments do; float64 input computes in float64.

**Sampling** needs covariates: [sample_y][jaxprob.families.linear_regression.LinearRegression.sample_y] draws
$y$ given $X$; the protocol's `sample(key, params, labels)`, which has no $X$, raises `NotImplementedError`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxprob._validation import as_float_array, check_finite, is_tracer
from jaxprob.em import Family
from jaxprob.families._checks import check_number
from jaxprob.numerics import matmul_precision

__all__ = [
    "LinearRegressionParams",
    "LinearRegressionStats",
    "LinearRegression",
    "linear_regression",
    "make_params",
]

_LOG_2PI = math.log(2.0 * math.pi)
# products over samples take the library policy (jaxprob.numerics); products of parameters alone always run
# at full precision
_HIGHEST = jax.lax.Precision.HIGHEST
_RIDGES = 6  # ridge sqrt(eps) * mean diagonal times 1, 10, ..., 1e5 for a singular weighted design


class LinearRegressionParams(eqx.Module):
    r"""Parameters of $K$ linear-Gaussian regressions (a pytree).

    Attributes:
        coefs: `(K, d)` slopes $w_k$.
        intercepts: `(K,)` intercepts $w_{k0}$.
        sigmas: `(K,)` positive noise standard deviations $\sigma_k$ (all equal for a shared noise level).
    """

    coefs: jax.Array
    intercepts: jax.Array
    sigmas: jax.Array


class LinearRegressionStats(NamedTuple):
    r"""Sufficient statistics of responsibility-weighted data about the centre $c = (c_x, c_y)$ (a pytree).

    Attributes:
        zz: `(K, d + 1, d + 1)` $A_k = \sum_i r_{ik} z_i z_i^\top$, $z_i = [x_i - c_x, 1]$.
        zy: `(K, d + 1)` $b_k = \sum_i r_{ik} z_i (y_i - c_y)$.
        yy: `(K,)` $s_k = \sum_i r_{ik} (y_i - c_y)^2$.
    """

    zz: jax.Array
    zy: jax.Array
    yy: jax.Array


def _vech_index(d):
    return np.triu_indices(d)


def _symmetric(packed, d):
    """`(K, d(d+1)/2)` upper-triangle entries (`np.triu_indices` order) to exactly symmetric `(K, d, d)`."""
    iu, ju = _vech_index(d)
    pos = np.zeros((d, d), np.int32)
    pos[iu, ju] = pos[ju, iu] = np.arange(iu.size)
    return packed[:, pos]


def _gaussian_log_density(y, mu, sigmas):
    r"""$\log \mathcal N(y \mid \mu, \sigma^2)$ for `y` `(n, 1)`, `mu` `(n, K)`, `sigmas` `(K,)`."""
    z = (y - mu) / sigmas
    return -0.5 * _LOG_2PI - jnp.log(sigmas) - 0.5 * jnp.square(z)


def _solve(zz, zy):
    r"""$\beta_k = A_k^{-1} b_k$ by Cholesky, with the ridge retries of the module notes for singular $A_k$.

    All candidates are factorised at once (one batched Cholesky: no data-dependent loop). Returns `(beta (K, p),
    regularized (K,))`."""
    p = zz.shape[-1]
    dtype = zz.dtype
    eye = jnp.eye(p, dtype=dtype)
    diag = jnp.mean(jnp.diagonal(zz, axis1=-2, axis2=-1), axis=-1)
    scale = jnp.where(diag > 0, diag, 1.0)  # an empty component (A_k = 0) gets beta = 0
    steps = jnp.concatenate([jnp.zeros((1,), dtype), math.sqrt(jnp.finfo(dtype).eps) * 10.0 ** jnp.arange(
        _RIDGES, dtype=dtype)])
    tries = zz[None] + (steps[:, None] * scale)[:, :, None, None] * eye  # (R, K, p, p)
    chol = jnp.linalg.cholesky(tries)
    ok = jnp.all(jnp.isfinite(chol), axis=(-2, -1))  # (R, K)
    first = jnp.argmax(ok, axis=0)  # the smallest ridge that factorises (0, no ridge, when A_k is definite)
    factor = jnp.take_along_axis(chol, first[None, :, None, None], axis=0)[0]
    beta = jax.scipy.linalg.cho_solve((factor, True), zy[..., None])[..., 0]
    return beta, first > 0


class LinearRegression(Family):
    r"""Linear-Gaussian regressions of $y$ on covariates $x$ (see the module notes).

    Data: the pair `(X (n, d), y (n,))`. Statistics:
    [LinearRegressionStats][jaxprob.families.linear_regression.LinearRegressionStats].

    Attributes:
        shared_sigma: one noise level pooled over the components instead of one each (static).
        min_sigma: non-negative floor $\sigma_{\min}$ of the noise standard deviations (a numeric leaf: a new
            value does not recompile).
    """

    shared_sigma: bool = eqx.field(static=True, default=False)
    min_sigma: float | jax.Array = 0.0

    # -------------------------------------------------------------------------------- eager checks
    def validate(self, x, name: str = "x"):
        """`x` as the pair `(X (n, d), y (n,))` of finite floats in one dtype (`X` of shape `(n,)` is one
        covariate)."""
        if not isinstance(x, (tuple, list)) or len(x) != 2:
            raise TypeError(f"`{name}` must be a pair (X, y) of covariates (n, d) and targets (n,) for the "
                            f"linear-regression family, got {type(x).__name__}")
        xs = as_float_array(x[0], f"{name}[0]", (1, 2))
        if xs.ndim == 1:
            xs = xs[:, None]
        ys = as_float_array(x[1], f"{name}[1]", 1)
        if ys.shape[0] != xs.shape[0]:
            raise ValueError(f"`{name}[1]` (the targets) has {ys.shape[0]} samples but `{name}[0]` has "
                             f"{xs.shape[0]}")
        check_finite(xs, f"{name}[0]")
        check_finite(ys, f"{name}[1]")
        dtype = jnp.result_type(xs.dtype, ys.dtype)
        return xs.astype(dtype), ys.astype(dtype)

    def make_params(self, coefs, intercepts, sigmas) -> LinearRegressionParams:
        """Component parameters, checked eagerly.

        Args:
            coefs: `(K, d)` slopes.
            intercepts: `(K,)` intercepts.
            sigmas: `(K,)` positive noise standard deviations.

        Returns:
            [LinearRegressionParams][jaxprob.families.linear_regression.LinearRegressionParams].

        Examples:
            >>> from jaxprob.families.linear_regression import linear_regression
            >>> linear_regression().make_params([[2.0]], [1.0], [0.5]).coefs.tolist()
            [[2.0]]
        """
        coefs = as_float_array(coefs, "coefs", 2)
        params = LinearRegressionParams(coefs, as_float_array(intercepts, "intercepts", 1, dtype=coefs.dtype),
                                        as_float_array(sigmas, "sigmas", 1, dtype=coefs.dtype))
        self.check_params(params)
        return params

    def check_params(self, params, n_features: int | None = None) -> None:
        if not isinstance(params, LinearRegressionParams):
            raise TypeError(f"linear-regression components must be LinearRegressionParams, got "
                            f"{type(params).__name__}")
        if jnp.ndim(params.coefs) != 2:
            raise ValueError(f"`coefs` must have shape (K, d), got {tuple(jnp.shape(params.coefs))}")
        k, d = params.coefs.shape
        for name in ("intercepts", "sigmas"):
            shape = tuple(jnp.shape(getattr(params, name)))
            if shape != (k,):
                raise ValueError(f"`{name}` must have shape ({k},) to match `coefs` {k, d}, got {shape}")
        if n_features is not None and d != n_features:
            raise ValueError(f"`x` has {n_features} covariates but the model has {d}")
        for name in ("coefs", "intercepts", "sigmas"):
            check_finite(getattr(params, name), name)
        if not is_tracer(params.sigmas) and not np.all(np.asarray(params.sigmas) > 0):
            raise ValueError("`sigmas` must be positive")

    # -------------------------------------------------------------------------------- the engine's hooks
    def prepare(self, x, w, center):
        xs, ys = x
        cx, cy = center
        xc = xs - cx
        yc = ys - cy
        n, d = xc.shape
        iu, ju = _vech_index(d)
        one = jnp.ones((n, 1), xc.dtype)
        z = jnp.concatenate([xc, one], axis=1)
        return jnp.concatenate([z, yc[:, None], z * yc[:, None], jnp.square(yc)[:, None], xc[:, iu] * xc[:, ju]],
                               axis=1)

    def _centred(self, params: LinearRegressionParams, center):
        r"""`(K, d + 1)` coefficients $\beta_k$ of $y - c_y$ on $z = [x - c_x, 1]$."""
        cx, cy = center
        b0 = params.intercepts + jnp.matmul(params.coefs, cx, precision=_HIGHEST) - cy
        return jnp.concatenate([params.coefs, b0[:, None]], axis=1)

    def log_prob(self, data, params: LinearRegressionParams, center):
        p = params.coefs.shape[1] + 1
        mu = jnp.matmul(data[:, :p], self._centred(params, center).T, precision=matmul_precision())
        return _gaussian_log_density(data[:, p : p + 1], mu, params.sigmas)

    def statistics(self, data, resp, params, center):
        d = center[0].shape[0]
        p = d + 1
        s = jnp.matmul(resp.T, data, precision=matmul_precision())  # (K, F)
        zy = s[:, p + 1 : 2 * p + 1]
        yy = s[:, 2 * p + 1]
        sxx = _symmetric(s[:, 2 * p + 2 :], d)  # (K, d, d)
        sx = s[:, :d]
        n_k = s[:, d]
        top = jnp.concatenate([sxx, sx[:, :, None]], axis=2)
        bottom = jnp.concatenate([sx, n_k[:, None]], axis=1)[:, None, :]
        return LinearRegressionStats(jnp.concatenate([top, bottom], axis=1), zy, yy)

    def m_step(self, stats: LinearRegressionStats, counts, center, previous, keep):
        zz, zy, yy = stats
        beta, regularized = _solve(zz, zy)
        if previous is not None:  # collapsed components keep their line
            beta = jnp.where(keep[:, None], self._centred(previous, center), beta)
        # residual sum of squares of the line actually kept, from the statistics alone
        rss = yy - 2.0 * jnp.sum(beta * zy, axis=1) + jnp.einsum("ki,kij,kj->k", beta, zz, beta, precision=_HIGHEST)
        rss = jnp.maximum(rss, 0.0)
        if self.shared_sigma:
            var = jnp.broadcast_to(jnp.sum(rss) / jnp.sum(counts), counts.shape)
        else:
            var = rss / counts
        dtype = var.dtype
        floor = jnp.maximum(jnp.square(jnp.asarray(self.min_sigma, dtype)), jnp.finfo(dtype).tiny)
        sigmas = jnp.sqrt(jnp.maximum(var, floor))
        if previous is not None and not self.shared_sigma:
            sigmas = jnp.where(keep, previous.sigmas, sigmas)
        cx, cy = center
        coefs = beta[:, :-1]
        intercepts = beta[:, -1] + cy - jnp.matmul(coefs, cx, precision=_HIGHEST)
        return LinearRegressionParams(coefs, intercepts, sigmas), regularized

    def n_parameters(self, params: LinearRegressionParams) -> int:
        k, d = params.coefs.shape
        return k * (d + 1) + (1 if self.shared_sigma else k)

    def n_features(self, params: LinearRegressionParams) -> int:
        return params.coefs.shape[-1]

    def sample(self, key, params, labels):
        """Not available: a regression draws $y$ given covariates, which this signature lacks. Use
        [sample_y][jaxprob.families.linear_regression.LinearRegression.sample_y] (or
        [jaxprob.regression.sample_y][] on a model)."""
        raise NotImplementedError(
            "the linear-regression family draws y given covariates X: use family.sample_y(key, params, X, labels) "
            "or jaxprob.regression.sample_y(x, model, key=key)"
        )

    def sample_y(self, key, params: LinearRegressionParams, x, labels) -> jax.Array:
        r"""Draws $y_j \sim \mathcal N(w_{z_j 0} + w_{z_j}^\top x_j, \sigma_{z_j}^2)$ (traceable).

        Args:
            key: a PRNG key.
            params: the component parameters.
            x: `(m, d)` covariates.
            labels: `(m,)` component of each draw.

        Returns:
            `(m,)` targets.

        Examples:
            >>> import jax, jax.numpy as jnp
            >>> from jaxprob.families.linear_regression import linear_regression
            >>> fam = linear_regression()
            >>> params = fam.make_params([[2.0], [-1.0]], [0.0, 5.0], [1e-3, 1e-3])
            >>> y = fam.sample_y(jax.random.key(0), params, jnp.array([[1.0], [1.0]]), jnp.array([0, 1]))
            >>> y.round(2).tolist()
            [2.0, 4.0]
        """
        mu = jnp.sum(x * params.coefs[labels], axis=1) + params.intercepts[labels]
        return mu + params.sigmas[labels] * jax.random.normal(key, mu.shape, mu.dtype)

    def seeding_matrix(self, x):
        """`(n, d + 1)` matrix `[X, y]` on which k-means style initialisations run."""
        xs, ys = x
        return jnp.concatenate([xs, ys[:, None]], axis=1)

    def model_center(self, weights, params: LinearRegressionParams):
        """The origin `(zeros (d,), 0)`: the covariates are not modelled, so a model implies no data mean."""
        dtype = params.coefs.dtype
        return jnp.zeros((params.coefs.shape[1],), dtype), jnp.zeros((), dtype)

    def implied_statistics(self, params: LinearRegressionParams, weights, center):
        r"""Statistics per unit weight whose M-step returns `params`, as if the covariates had identity second
        moments about `center`: $A_k = \alpha_k I$, $b_k = A_k \beta_k$, $s_k = \alpha_k \sigma_k^2 +
        \beta_k^\top A_k \beta_k$. (For a shared noise level the sigmas must be equal; floors apply.)"""
        beta = self._centred(params, center)
        p = beta.shape[1]
        zz = weights[:, None, None] * jnp.eye(p, dtype=beta.dtype)
        zy = weights[:, None] * beta
        yy = weights * (jnp.square(params.sigmas) + jnp.sum(jnp.square(beta), axis=1))
        return LinearRegressionStats(zz, zy, yy)

    def conditional_means(self, params: LinearRegressionParams, x) -> jax.Array:
        r"""`(n, K)` means $\mu_k(x_i) = w_{k0} + w_k^\top x_i$ for covariates `x` `(n, d)`."""
        return jnp.matmul(x, params.coefs.T, precision=matmul_precision()) + params.intercepts

    def component_log_prob(self, x, params: LinearRegressionParams) -> jax.Array:
        r"""`(n, K)` $\log \mathcal N(y_i \mid \mu_k(x_i), \sigma_k^2)$ of raw data `x = (X, y)` (the evaluation
        path of predict and score)."""
        xs, ys = x
        return _gaussian_log_density(ys[:, None], self.conditional_means(params, xs), params.sigmas)


def linear_regression(shared_sigma: bool = False, min_sigma: float = 0.0) -> LinearRegression:
    """The linear-regression family (data `(X (n, d), y (n,))`), with a shared or per-component noise level.

    Args:
        shared_sigma: pool the noise level over the components.
        min_sigma: non-negative floor of the noise standard deviations; a positive floor keeps the likelihood
            bounded when a component collapses onto $d + 1$ samples.

    Returns:
        A [LinearRegression][jaxprob.families.linear_regression.LinearRegression] family.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import mixture
        >>> from jaxprob.families.linear_regression import linear_regression
        >>> x = jnp.tile(jnp.linspace(0.0, 1.0, 50), 2)
        >>> y = jnp.concatenate([2.0 * x[:50], 3.0 - x[50:]]) + 0.01 * jax.random.normal(jax.random.key(1), (100,))
        >>> fam = linear_regression(min_sigma=1e-3)
        >>> model, info = mixture.fit((x, y), 2, key=jax.random.key(0), family=fam, n_init=3)
        >>> sorted(model.coefs[:, 0].round(1).tolist()), sorted(model.intercepts.round(1).tolist())[1]
        ([-1.0, 2.0], 3.0)
    """
    if not isinstance(shared_sigma, (bool, np.bool_)):
        raise TypeError(f"`shared_sigma` must be a bool, got {type(shared_sigma).__name__}")
    check_number(min_sigma, "min_sigma")
    return LinearRegression(bool(shared_sigma), min_sigma)


def make_params(coefs: ArrayLike, intercepts: ArrayLike, sigmas: ArrayLike) -> LinearRegressionParams:
    """[LinearRegressionParams][jaxprob.families.linear_regression.LinearRegressionParams], checked eagerly.

    Args:
        coefs: `(K, d)` slopes.
        intercepts: `(K,)` intercepts.
        sigmas: `(K,)` positive noise standard deviations.

    Returns:
        The component parameters.

    Examples:
        >>> from jaxprob.families.linear_regression import make_params
        >>> make_params([[1.0, 2.0]], [0.5], [1.0]).intercepts.tolist()
        [0.5]
    """
    return LinearRegression().make_params(coefs, intercepts, sigmas)
