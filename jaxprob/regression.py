r"""Regression by likelihood: linear-Gaussian models, heteroscedastic noise, mixtures of linear regressions.

Every model here is a conditional density $L(y \mid x)$ and, in one form, a mixture of $K$ Gaussian lines

$$L(y \mid x) = \sum_{k=1}^K \pi_k \, \mathcal N\big(y \mid w_{k0} + w_k^\top x,\; \sigma_k(x)^2\big).$$

* [LinearGaussian][jaxprob.regression.LinearGaussian]: $Y = w_0 + w^\top X + \sigma\varepsilon$ ($K = 1$,
  constant $\sigma$). The maximum-likelihood estimate is closed-form: $\hat w$ by least squares (an SVD solver
  on the centred design) and $\hat\sigma^2 = \frac1n \sum_i (y_i - \hat w_0 - \hat w^\top x_i)^2$ (divided by
  $n$, not $n - d - 1$: the MLE). [fit_linear_gaussian_optax][jaxprob.regression.fit_linear_gaussian_optax]
  reaches the same point by minimising the negative log-likelihood with Optax.
* [HeteroscedasticGaussian][jaxprob.regression.HeteroscedasticGaussian]: $\log \sigma(x) = a_0 + a^\top x$,
  fitted by the NLL.
* A **mixture of regressions**: $K$ lines with mixing weights $\pi_k$ that do not depend on $x$ (the
  hidden-variable case: flat prices against surface when the district is unknown). It is a
  [jaxprob.em.Mixture][] of the linear-regression family
  ([jaxprob.families.linear_regression][]), whose data are the pair `(X, y)`, fitted by the engine's EM
  ([fit_mixture][jaxprob.regression.fit_mixture]): responsibilities
  $r_{ik} \propto \pi_k \mathcal N(y_i \mid \mu_k(x_i), \sigma_k^2)$, then a weighted least-squares line per
  component, $\pi_k = \frac1n\sum_i r_{ik}$ and $\sigma_k^2 = \sum_i r_{ik} (y_i - \mu_k(x_i))^2 / \sum_i r_{ik}$
  (or one pooled $\sigma$). Its parameters read through the mixture: `model.weights`, `model.coefs` `(K, d)`,
  `model.intercepts` `(K,)`, `model.sigmas` `(K,)`; the engine's functions take it as it is
  (`em.step(em.prepare((X, y), model.family), model)` in a loop of your own), and so do
  [jaxprob.mixture][]'s evaluation functions with the data `(X, y)`.

Predictions from a density: [predict_mean][jaxprob.regression.predict_mean] is the expectation
$\int y \, L(y\mid x)\,dy = \sum_k \pi_k \mu_k(x)$; [predict_mode][jaxprob.regression.predict_mode] is
$\arg\max_y L(y \mid x)$, found by fixed-point (mean-shift) iterations started at every component mean. They
coincide for a single Gaussian and differ for a multimodal mixture predictive, where the mean can fall between
the modes where the density is low.

`x` may be `(n, d)` or `(n,)` (one feature); `y` is `(n,)`. Densities accept `y` of shape `(n, m)` too, to
evaluate $L(\cdot \mid x_i)$ on a grid of $m$ values per sample.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from jaxprob import em, nn
from jaxprob._validation import (
    as_float_array,
    check_finite,
    check_int,
    check_key,
    check_sample_weight,
    is_tracer,
)
from jaxprob.densities import logsumexp
from jaxprob.em import FitInfo, Mixture
from jaxprob.families.linear_regression import LinearRegression, LinearRegressionParams, linear_regression

__all__ = [
    "LinearGaussian",
    "HeteroscedasticGaussian",
    "make_mixture",
    "fit_linear_gaussian",
    "fit_linear_gaussian_optax",
    "fit_heteroscedastic",
    "init_mixture",
    "fit_mixture",
    "responsibilities",
    "em_step",
    "log_prob",
    "negative_log_likelihood",
    "predict_mean",
    "predict_mode",
    "sample_y",
    "grid_mode_and_mean",
]

_LOG_2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------------------------------------
# models: each one exposes its components (log pi_k, mu_k(x), sigma_k(x))
# ----------------------------------------------------------------------------------------------------------
class LinearGaussian(eqx.Module):
    r"""Linear-Gaussian conditional density $y \mid x \sim \mathcal N(w_0 + w^\top x, \sigma^2)$.

    Attributes:
        coef: `(d,)` slopes $w$.
        intercept: scalar $w_0$.
        sigma: scalar noise standard deviation $\sigma$.
    """

    coef: jax.Array
    intercept: jax.Array
    sigma: jax.Array

    def components(self, x):
        """`(log_weights (1,), means (n, 1), sigmas (n, 1))` for `x` of shape `(n, d)`."""
        mu = x @ self.coef + self.intercept
        return jnp.zeros((1,), mu.dtype), mu[:, None], jnp.broadcast_to(self.sigma, mu.shape)[:, None]


class HeteroscedasticGaussian(eqx.Module):
    r"""Gaussian with a mean and a log standard deviation both linear in `x`.

    $$y \mid x \sim \mathcal N\big(w_0 + w^\top x,\; \sigma(x)^2\big), \qquad \log\sigma(x) = a_0 + a^\top x$$

    Attributes:
        coef: `(d,)` slopes $w$ of the mean.
        intercept: scalar $w_0$.
        log_sigma_coef: `(d,)` slopes $a$ of $\log\sigma(x)$.
        log_sigma_intercept: scalar $a_0$.
    """

    coef: jax.Array
    intercept: jax.Array
    log_sigma_coef: jax.Array
    log_sigma_intercept: jax.Array

    def sigma(self, x):
        r"""`(n,)` noise standard deviations $\sigma(x_i)$ for `x` of shape `(n, d)`."""
        return jnp.exp(x @ self.log_sigma_coef + self.log_sigma_intercept)

    def components(self, x):
        """`(log_weights (1,), means (n, 1), sigmas (n, 1))` for `x` of shape `(n, d)`."""
        mu = x @ self.coef + self.intercept
        return jnp.zeros((1,), mu.dtype), mu[:, None], self.sigma(x)[:, None]


def _is_mixture(model) -> bool:
    return isinstance(model, Mixture) and isinstance(model.family, LinearRegression)


def _components(model, x):
    """`(log_weights (K,), means (n, K), sigmas (n, K))` of any model for `x` of shape `(n, d)`."""
    if isinstance(model, Mixture):
        mu = model.family.conditional_means(model.components, x)
        return jnp.log(model.weights), mu, jnp.broadcast_to(model.components.sigmas, mu.shape)
    return model.components(x)


def make_mixture(weights: ArrayLike, coefs: ArrayLike, intercepts: ArrayLike, sigmas: ArrayLike, *,
                 shared_sigma: bool = False, min_sigma: float = 0.0) -> Mixture:
    r"""A mixture of $K$ linear regressions from its parameters (checked eagerly).

    Args:
        weights: `(K,)` mixing weights $\pi_k$, non-negative, summing to one.
        coefs: `(K, d)` slopes $w_k$.
        intercepts: `(K,)` intercepts $w_{k0}$.
        sigmas: `(K,)` positive noise standard deviations $\sigma_k$.
        shared_sigma: the family's rule when the model is refitted: one pooled noise level.
        min_sigma: the family's floor of the noise standard deviations when the model is refitted.

    Returns:
        A [jaxprob.em.Mixture][] of the linear-regression family
        ([jaxprob.families.linear_regression.LinearRegression][]).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import regression
        >>> m = regression.make_mixture([0.5, 0.5], [[1.0], [-1.0]], [0.0, 2.0], [1.0, 1.0])
        >>> m.n_components, m.coefs.shape, m.intercepts.tolist()
        (2, (2, 1), [0.0, 2.0])
    """
    family = linear_regression(shared_sigma, min_sigma)
    params = family.make_params(coefs, intercepts, sigmas)
    k = params.coefs.shape[0]
    weights = as_float_array(weights, "weights", 1, dtype=params.coefs.dtype)
    if weights.shape != (k,):
        raise ValueError(f"`weights` must have shape ({k},) to match the components, got {tuple(weights.shape)}")
    check_finite(weights, "weights")
    if not is_tracer(weights):
        w = np.asarray(weights)
        if np.any(w < 0) or abs(float(w.sum()) - 1.0) > 1e-4:
            raise ValueError("`weights` must be non-negative and sum to one")
    return Mixture(weights, params, family)


# ----------------------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------------------
def _check_x(x, d=None):
    x = as_float_array(x, "x", (1, 2))
    if x.ndim == 1:
        x = x[:, None]
    check_finite(x, "x")
    if x.shape[0] == 0:
        raise ValueError("`x` has no samples")
    if d is not None and x.shape[1] != d:
        raise ValueError(f"`x` has {x.shape[1]} features but the model has {d}")
    return x


def _check_xy(x, y, d=None, y_ndim=1):
    x = _check_x(x, d)
    y = as_float_array(y, "y", y_ndim)
    check_finite(y, "y")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"`y` has {y.shape[0]} samples but `x` has {x.shape[0]}")
    dtype = jnp.result_type(x.dtype, y.dtype)
    return x.astype(dtype), y.astype(dtype)


def _check_model(model):
    if not isinstance(model, (LinearGaussian, HeteroscedasticGaussian)) and not _is_mixture(model):
        raise TypeError(
            "`model` must be a LinearGaussian, a HeteroscedasticGaussian or a mixture of regressions (a "
            f"jaxprob.em.Mixture of the linear-regression family), got {type(model).__name__}"
        )
    return model


def _check_mixture(model, name="model"):
    if not _is_mixture(model):
        raise TypeError(f"`{name}` must be a mixture of regressions (a jaxprob.em.Mixture of the linear-regression "
                        f"family, see make_mixture / fit_mixture), got {type(model).__name__}")
    return model


def _model_dim(model):
    return model.coefs.shape[1] if isinstance(model, Mixture) else model.coef.shape[0]


def _model_dtype(model):
    return model.intercepts.dtype if isinstance(model, Mixture) else model.intercept.dtype


# ----------------------------------------------------------------------------------------------------------
# closed-form maximum likelihood
# ----------------------------------------------------------------------------------------------------------
def _wls(x, y, w):
    """Weighted least squares on the centred design (SVD solver). Returns coef, intercept, sigma, rank."""
    sw = jnp.sum(w)
    xm = w @ x / sw
    ym = w @ y / sw
    sq = jnp.sqrt(w)
    coef, _, rank, _ = jnp.linalg.lstsq((x - xm) * sq[:, None], (y - ym) * sq)
    intercept = ym - xm @ coef
    resid = y - x @ coef - intercept
    sigma2 = jnp.sum(w * jnp.square(resid)) / sw
    return coef, intercept, sigma2, rank


@jax.jit
def _fit_lg(x, y, w):
    coef, intercept, sigma2, rank = _wls(x, y, w)
    return LinearGaussian(coef, intercept, jnp.sqrt(sigma2)), rank


def fit_linear_gaussian(x: ArrayLike, y: ArrayLike, *, sample_weight: ArrayLike | None = None,
                        return_rank: bool = False) -> LinearGaussian | tuple[LinearGaussian, jax.Array]:
    r"""Maximum-likelihood linear-Gaussian regression in closed form.

    $$\hat w = \arg\min_w \sum_i s_i (y_i - w_0 - w^\top x_i)^2, \qquad
    \hat\sigma^2 = \frac{\sum_i s_i (y_i - \hat w_0 - \hat w^\top x_i)^2}{\sum_i s_i}$$

    Solved on the centred design by an SVD least-squares solver (`jnp.linalg.lstsq`), which stays accurate for
    ill-conditioned but full-rank designs.

    Args:
        x: `(n, d)` or `(n,)` features.
        y: `(n,)` targets.
        sample_weight: optional `(n,)` non-negative weights $s_i$ (default all ones).
        return_rank: also return the numerical rank of the centred design.

    Returns:
        A [LinearGaussian][jaxprob.regression.LinearGaussian] (and the rank when `return_rank`).

    Raises:
        ValueError: NaN/inf, mismatched lengths, or a singular design (collinear or constant columns, fewer
            than `d + 1` samples), checked on concrete inputs; under `jit` use `return_rank` and compare with
            `d`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import regression
        >>> x = jnp.array([0.0, 1.0, 2.0, 3.0])
        >>> m = regression.fit_linear_gaussian(x, 1.0 + 2.0 * x + jnp.array([0.1, -0.1, -0.1, 0.1]))
        >>> round(float(m.intercept), 4), round(float(m.coef[0]), 4), round(float(m.sigma), 4)
        (1.0, 2.0, 0.1)
    """
    x, y = _check_xy(x, y)
    w = check_sample_weight(sample_weight, x.shape[0], x.dtype)
    model, rank = _fit_lg(x, y, w)
    if not is_tracer(rank) and not is_tracer(x) and int(rank) < x.shape[1]:
        raise ValueError(
            f"the design matrix is singular: `x` has {x.shape[1]} feature(s) plus an intercept but the "
            "centred "
            f"design has rank {int(rank)} (collinear or constant columns, or too few samples); remove "
            "redundant columns or add more data"
        )
    return (model, rank) if return_rank else model


# ----------------------------------------------------------------------------------------------------------
# densities and predictions (any model)
# ----------------------------------------------------------------------------------------------------------
def _log_prob(model, x, y):
    log_w, mu, sig = _components(model, x)  # (K,), (n, K), (n, K)
    if y.ndim == 2:
        yy, mu, sig = y[:, :, None], mu[:, None, :], sig[:, None, :]
    else:
        yy = y[:, None]
    z = (yy - mu) / sig
    return logsumexp(log_w - 0.5 * (_LOG_2PI + z * z) - jnp.log(sig), axis=-1)


_log_prob_jit = jax.jit(_log_prob)


def log_prob(x: ArrayLike, y: ArrayLike, model: LinearGaussian | HeteroscedasticGaussian | Mixture) -> jax.Array:
    r"""Predictive log-density $\log L(y \mid x)$ of a fitted model.

    Args:
        x: `(n, d)` or `(n,)` features.
        y: `(n,)` targets, or `(n, m)` grids of `m` values per sample.
        model: a [LinearGaussian][jaxprob.regression.LinearGaussian], a
            [HeteroscedasticGaussian][jaxprob.regression.HeteroscedasticGaussian] or a mixture of regressions.

    Returns:
        `(n,)` (or `(n, m)`) log-densities.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import regression
        >>> m = regression.LinearGaussian(jnp.array([2.0]), jnp.array(1.0), jnp.array(1.0))
        >>> round(float(regression.log_prob(jnp.array([1.0]), jnp.array([3.0]), m)[0]), 4)
        -0.9189
    """
    _check_model(model)
    x = _check_x(x, _model_dim(model))
    y = as_float_array(y, "y", (1, 2))
    check_finite(y, "y")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"`y` has {y.shape[0]} rows but `x` has {x.shape[0]}")
    dtype = _model_dtype(model)
    return _log_prob_jit(model, x.astype(dtype), y.astype(dtype))


def negative_log_likelihood(x: ArrayLike, y: ArrayLike,
                            model: LinearGaussian | HeteroscedasticGaussian | Mixture) -> jax.Array:
    r"""Mean negative log-likelihood $-\frac1n \sum_i \log L(y_i \mid x_i)$.

    For the linear-Gaussian model this is
    $\log\sigma + \tfrac12\log 2\pi + \frac{1}{2n\sigma^2}\sum_i (y_i - w_0 - w^\top x_i)^2$.

    Args:
        x: `(n, d)` or `(n,)` features.
        y: `(n,)` targets.
        model: a fitted model.

    Returns:
        Scalar.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import regression
        >>> m = regression.LinearGaussian(jnp.array([0.0]), jnp.array(0.0), jnp.array(1.0))
        >>> round(float(regression.negative_log_likelihood(jnp.zeros(3), jnp.zeros(3), m)), 4)
        0.9189
    """
    return -jnp.mean(log_prob(x, as_float_array(y, "y", 1), model))


@jax.jit
def _predict_mean(model, x):
    log_w, mu, _ = _components(model, x)
    return mu @ jnp.exp(log_w)


def predict_mean(x: ArrayLike, model: LinearGaussian | HeteroscedasticGaussian | Mixture) -> jax.Array:
    r"""Expectation of the predictive density, $\mathbb E[y \mid x] = \sum_k \pi_k \mu_k(x)$.

    Args:
        x: `(n, d)` or `(n,)` features.
        model: a fitted model.

    Returns:
        `(n,)` predictions.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import regression
        >>> m = regression.make_mixture([0.5, 0.5], [[1.0], [-1.0]], [0.0, 0.0], [1.0, 1.0])
        >>> regression.predict_mean(jnp.array([2.0]), m).tolist()
        [0.0]
    """
    _check_model(model)
    x = _check_x(x, _model_dim(model))
    return _predict_mean(model, x.astype(_model_dtype(model)))


@functools.partial(jax.jit, static_argnums=(2,))
def _predict_mode(model, x, n_iter):
    log_w, mu, sig = _components(model, x)  # (n, K)
    prec = 1.0 / jnp.square(sig)

    def log_terms(y):  # y: (n, S) candidate points -> (n, S, K)
        z = (y[:, :, None] - mu[:, None, :]) * jnp.sqrt(prec)[:, None, :]
        return log_w - 0.5 * z * z - jnp.log(sig)[:, None, :]

    def body(_, y):
        lt = log_terms(y)
        r = jnp.exp(lt - logsumexp(lt, axis=-1, keepdims=True)) * prec[:, None, :]
        return jnp.sum(r * mu[:, None, :], axis=-1) / jnp.sum(r, axis=-1)

    y = jax.lax.fori_loop(0, n_iter, body, mu)  # one start per component mean
    dens = logsumexp(log_terms(y), axis=-1)
    best = jnp.argmax(dens, axis=-1)
    return jnp.take_along_axis(y, best[:, None], axis=1)[:, 0]


def predict_mode(x: ArrayLike, model: LinearGaussian | HeteroscedasticGaussian | Mixture, *,
                 n_iter: int = 100) -> jax.Array:
    r"""Mode of the predictive density, $\arg\max_y L(y \mid x)$.

    Fixed-point iterations $y \leftarrow \sum_k \rho_k(y)\mu_k / \sum_k \rho_k(y)$ with
    $\rho_k(y) \propto \pi_k \mathcal N(y\mid\mu_k,\sigma_k^2)/\sigma_k^2$ (mean shift; each iteration increases
    the density) start from every component mean; the highest local maximum is returned.

    Args:
        x: `(n, d)` or `(n,)` features.
        model: a fitted model.
        n_iter: fixed-point iterations (static).

    Returns:
        `(n,)` modes (equal to [predict_mean][jaxprob.regression.predict_mean] for a single Gaussian).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import regression
        >>> m = regression.make_mixture([0.7, 0.3], [[1.0], [-1.0]], [0.0, 0.0], [0.1, 0.1])
        >>> [round(v, 3) for v in regression.predict_mode(jnp.array([2.0]), m).tolist()]
        [2.0]
    """
    _check_model(model)
    x = _check_x(x, _model_dim(model))
    n_iter = check_int(n_iter, "n_iter", minimum=1)
    return _predict_mode(model, x.astype(_model_dtype(model)), n_iter)


@jax.jit
def _sample_y(key, model, x):
    log_w, mu, sig = _components(model, x)
    k_label, k_noise = jax.random.split(key)
    labels = jax.random.categorical(k_label, jnp.broadcast_to(log_w, mu.shape), axis=-1)
    pick = functools.partial(jnp.take_along_axis, indices=labels[:, None], axis=1)
    y = pick(mu)[:, 0] + pick(sig)[:, 0] * jax.random.normal(k_noise, labels.shape, mu.dtype)
    return y, labels


def sample_y(x: ArrayLike, model: LinearGaussian | HeteroscedasticGaussian | Mixture, *,
             key: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""Draws from the predictive density: one $y_i \sim L(y \mid x_i)$ per row of `x`.

    For a mixture, a component $z_i \sim \pi$ is drawn first, then
    $y_i \sim \mathcal N(\mu_{z_i}(x_i), \sigma_{z_i}(x_i)^2)$. (The mixture front-end's `mixture.sample` cannot
    draw from a regression: it has no covariates to condition on.)

    Args:
        x: `(n, d)` or `(n,)` covariates.
        model: a fitted model.
        key: a JAX PRNG key.

    Returns:
        `(y, labels)`: `(n,)` targets and `(n,)` int components (zeros for a single-Gaussian model).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import regression
        >>> m = regression.make_mixture([1.0, 0.0], [[2.0], [-1.0]], [1.0, 0.0], [1e-3, 1.0])
        >>> y, labels = regression.sample_y(jnp.array([0.0, 1.0]), m, key=jax.random.key(0))
        >>> y.round(2).tolist(), labels.tolist()
        ([1.0, 3.0], [0, 0])
    """
    check_key(key)
    _check_model(model)
    x = _check_x(x, _model_dim(model))
    return _sample_y(key, model, x.astype(_model_dtype(model)))


@jax.jit
def _grid_mode_and_mean(y_grid, log_density):
    mode = y_grid[jnp.argmax(log_density, axis=-1)]
    p = jnp.exp(log_density - jnp.max(log_density, axis=-1, keepdims=True))
    mean = jnp.trapezoid(p * y_grid, y_grid, axis=-1) / jnp.trapezoid(p, y_grid, axis=-1)
    return mode, mean


def grid_mode_and_mean(y_grid: ArrayLike, log_density: ArrayLike) -> tuple[jax.Array, jax.Array]:
    r"""Mode and expectation of any 1-D density tabulated on a grid (numerical check of the two predictions).

    Mode: the grid point of highest density. Expectation: $\int y\,p(y)\,dy / \int p(y)\,dy$ by the
    trapezoidal rule (the density need not be normalised).

    Args:
        y_grid: `(m,)` increasing grid.
        log_density: `(..., m)` log-densities on the grid (e.g. [log_prob][jaxprob.regression.log_prob] on
            `(n, m)` targets).

    Returns:
        `(mode, mean)`, each of shape `log_density.shape[:-1]`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import regression
        >>> grid = jnp.linspace(-10.0, 10.0, 2001)
        >>> mode, mean = regression.grid_mode_and_mean(grid, -0.5 * (grid - 1.0) ** 2)
        >>> round(float(mode), 3), round(float(mean), 3)
        (1.0, 1.0)
    """
    y_grid = as_float_array(y_grid, "y_grid", 1)
    log_density = as_float_array(log_density, "log_density")
    if log_density.ndim == 0 or log_density.shape[-1] != y_grid.shape[0]:
        raise ValueError(
            f"`log_density` must end with an axis of length {y_grid.shape[0]}, "
            f"got shape {tuple(log_density.shape)}"
        )
    dtype = jnp.result_type(y_grid.dtype, log_density.dtype)
    return _grid_mode_and_mean(y_grid.astype(dtype), log_density.astype(dtype))


# ----------------------------------------------------------------------------------------------------------
# likelihood fitted with Optax
# ----------------------------------------------------------------------------------------------------------
def _lg_nll(p, x, y):
    coef, intercept, log_sigma = p
    r = (y - x @ coef - intercept) * jnp.exp(-log_sigma)
    return log_sigma + 0.5 * _LOG_2PI + 0.5 * jnp.mean(r * r)


def _hetero_nll(p, x, y):
    coef, intercept, a, a0 = p
    log_sigma = x @ a + a0
    r = (y - x @ coef - intercept) * jnp.exp(-log_sigma)
    return jnp.mean(log_sigma + 0.5 * _LOG_2PI + 0.5 * r * r)


def fit_linear_gaussian_optax(x: ArrayLike, y: ArrayLike, *, optimizer: optax.GradientTransformation | None = None,
                              max_iter: int = 500, tol: float = 1e-6) -> tuple[LinearGaussian, nn.MinimizeInfo]:
    r"""Linear-Gaussian regression by minimising the mean negative log-likelihood with Optax.

    The parameters are $(w, w_0, \log\sigma)$, started at $w = 0$, $w_0 = \bar y$, $\sigma = \operatorname{sd}(y)$;
    [jaxprob.nn.minimize][] runs the optimizer (L-BFGS by default). The optimum is the closed form of
    [fit_linear_gaussian][jaxprob.regression.fit_linear_gaussian].

    Args:
        x: `(n, d)` or `(n,)` features.
        y: `(n,)` targets.
        optimizer: an Optax gradient transformation (`None`: L-BFGS). First-order optimizers such as
            `optax.adam(1e-2)` need many more iterations and a looser `tol`.
        max_iter: iteration limit.
        tol: stop when the gradient norm is at most `tol`.

    Returns:
        `(model, info)`: a [LinearGaussian][jaxprob.regression.LinearGaussian] and a
        [MinimizeInfo][jaxprob.nn.MinimizeInfo].

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import regression
        >>> x = jnp.array([0.0, 1.0, 2.0, 3.0])
        >>> y = 1.0 + 2.0 * x + jnp.array([0.1, -0.1, -0.1, 0.1])
        >>> m, info = regression.fit_linear_gaussian_optax(x, y)
        >>> round(float(m.intercept), 3), round(float(m.coef[0]), 3), round(float(m.sigma), 3)
        (1.0, 2.0, 0.1)
    """
    x, y = _check_xy(x, y)
    std = jnp.std(y)
    init = (jnp.zeros(x.shape[1], x.dtype), jnp.mean(y), jnp.log(jnp.where(std > 0, std, 1.0)))
    (coef, intercept, log_sigma), info = nn.minimize(_lg_nll, init, x, y, optimizer=optimizer,
                                                     max_iter=max_iter, tol=tol)
    return LinearGaussian(coef, intercept, jnp.exp(log_sigma)), info


def fit_heteroscedastic(x: ArrayLike, y: ArrayLike, *, optimizer: optax.GradientTransformation | None = None,
                        max_iter: int = 500, tol: float = 1e-6) -> tuple[HeteroscedasticGaussian, nn.MinimizeInfo]:
    r"""Heteroscedastic regression, $\log\sigma(x) = a_0 + a^\top x$, by minimising the NLL with Optax.

    $$\text{NLL} = \frac1n \sum_i \Big[\log\sigma(x_i) + \tfrac12\log 2\pi
    + \frac{(y_i - w_0 - w^\top x_i)^2}{2\sigma(x_i)^2}\Big]$$

    Started from the closed-form homoscedastic fit ($a = 0$).

    Args:
        x: `(n, d)` or `(n,)` features.
        y: `(n,)` targets.
        optimizer: an Optax gradient transformation (`None`: L-BFGS).
        max_iter: iteration limit.
        tol: stop when the gradient norm is at most `tol`.

    Returns:
        `(model, info)`: a [HeteroscedasticGaussian][jaxprob.regression.HeteroscedasticGaussian] and a
        [MinimizeInfo][jaxprob.nn.MinimizeInfo].

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import regression
        >>> x = jnp.linspace(0.0, 1.0, 2000)
        >>> y = 1.0 + x + jnp.exp(-2.0 + 1.5 * x) * jax.random.normal(jax.random.key(0), (2000,))
        >>> m, info = regression.fit_heteroscedastic(x, y)
        >>> abs(float(m.log_sigma_coef[0]) - 1.5) < 0.2, abs(float(m.log_sigma_intercept) + 2.0) < 0.2
        (True, True)
    """
    x, y = _check_xy(x, y)
    base = fit_linear_gaussian(x, y)
    init = (base.coef, base.intercept, jnp.zeros_like(base.coef), jnp.log(base.sigma))
    (coef, intercept, a, a0), info = nn.minimize(_hetero_nll, init, x, y, optimizer=optimizer,
                                                 max_iter=max_iter, tol=tol)
    return HeteroscedasticGaussian(coef, intercept, a, a0), info


# ----------------------------------------------------------------------------------------------------------
# mixture of linear regressions: the linear-regression family on the EM engine
# ----------------------------------------------------------------------------------------------------------
def _init_model(key, x, y, w, k, family):
    r"""One restart's start: each component is the least-squares line through `d + 1` random samples (drawn in
    proportion to the weights, when given), $\sigma_k = \max(\operatorname{sd}(y), \sigma_{\min})$, equal
    mixing weights."""
    n, d = x.shape
    m = d + 1
    if w is None:
        idx = jax.random.permutation(key, n)[: k * m]
        rest, sd = 1e-6, jnp.std(y)
    else:
        idx = jax.random.choice(key, n, (k * m,), replace=False, p=w / jnp.sum(w))
        rest = 1e-6 * w
        mean = w @ y / jnp.sum(w)
        sd = jnp.sqrt(w @ jnp.square(y - mean) / jnp.sum(w))
    onehot = jnp.zeros((k, n), x.dtype).at[jnp.arange(k)[:, None], idx.reshape(k, m)].set(1.0)
    # the tiny pull towards all the data keeps the solve defined for degenerate draws
    coefs, intercepts, _, _ = jax.vmap(_wls, in_axes=(None, None, 0))(x, y, onehot + rest)
    sig = jnp.maximum(sd, family.min_sigma).astype(x.dtype)
    weights = jnp.full((k,), 1.0 / k, x.dtype)
    return Mixture(weights, LinearRegressionParams(coefs, intercepts, jnp.full((k,), sig, x.dtype)), family)


def _mixture_args(x, y, n_components, shared_sigma, min_sigma, sample_weight, need_starts):
    """Eager checks shared by `init_mixture` and `fit_mixture`; returns the arrays, the weights (None when not
    given), K and the family."""
    x, y = _check_xy(x, y)
    n, d = x.shape
    w = None if sample_weight is None else check_sample_weight(sample_weight, n, x.dtype)
    k = check_int(n_components, "n_components", minimum=1)
    if need_starts:
        n_pos = n if w is None or is_tracer(w) else int(np.count_nonzero(np.asarray(w) > 0))
        if k * (d + 1) > n_pos:
            raise ValueError(f"`n_components`={k} needs at least {k * (d + 1)} samples ({d + 1} per line) of "
                             f"positive weight, got {n_pos}")
    linear_regression(shared_sigma, 0.0 if min_sigma is None else min_sigma)  # type and range checks
    if min_sigma is None:
        if is_tracer(y) or is_tracer(w):
            ww = jnp.ones((n,), x.dtype) if w is None else w
            mean = ww @ y / jnp.sum(ww)
            min_sigma = 1e-3 * jnp.sqrt(ww @ jnp.square(y - mean) / jnp.sum(ww))
        else:  # on the host: no small eager programs to compile
            yy = np.asarray(y, np.float64)
            ww = np.ones(n) if w is None else np.asarray(w, np.float64)
            min_sigma = 1e-3 * float(np.sqrt(ww @ np.square(yy - ww @ yy / ww.sum()) / ww.sum()))
            if min_sigma == 0:
                raise ValueError("`y` is constant: there is nothing to fit")
    elif not is_tracer(min_sigma) and not float(min_sigma) > 0:
        raise ValueError(f"`min_sigma` must be positive, got {min_sigma}")
    family = LinearRegression(bool(shared_sigma), jnp.asarray(min_sigma, x.dtype))
    return x, y, w, k, family


@functools.partial(jax.jit, static_argnums=(5,))
def _init_jit(key, x, y, w, family, k):
    return _init_model(key, x, y, w, k, family)


def init_mixture(x: ArrayLike, y: ArrayLike, n_components: int, *, key: jax.Array, shared_sigma: bool = False,
                 min_sigma: float | None = None, sample_weight: ArrayLike | None = None) -> Mixture:
    r"""The starting model of one restart of [fit_mixture][jaxprob.regression.fit_mixture].

    Each component is the least-squares line through $d + 1$ distinct random samples (drawn with probabilities
    proportional to `sample_weight` when it is given), with $\sigma_k = \max(\operatorname{sd}(y), \sigma_{\min})$
    and equal mixing weights. Restart $i$ of `fit_mixture(..., key=key, n_init=n)` starts from
    `init_mixture(..., key=jax.random.split(key, n)[i])`.

    Args:
        x: `(n, d)` or `(n,)` features.
        y: `(n,)` targets.
        n_components: number of lines $K$, with $K (d + 1)$ at most the number of samples of positive weight.
        key: a JAX PRNG key.
        shared_sigma: one noise level for all components (the family's rule).
        min_sigma: floor on every $\sigma_k$; default $10^{-3}\operatorname{sd}(y)$ (weighted).
        sample_weight: optional `(n,)` non-negative weights.

    Returns:
        A [jaxprob.em.Mixture][] of the linear-regression family.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import regression
        >>> x = jnp.array([0.0, 1.0, 2.0, 3.0])
        >>> start = regression.init_mixture(x, 2.0 * x, 1, key=jax.random.key(0))
        >>> start.coefs.round(3).tolist(), start.weights.tolist()
        ([[2.0]], [1.0])
    """
    check_key(key)
    x, y, w, k, family = _mixture_args(x, y, n_components, shared_sigma, min_sigma, sample_weight, True)
    return _init_jit(key, x, y, w, family, k)


def _final(x, y, w, model, info):
    """The returned model's mean log-likelihood by the direct evaluation path (that of `log_prob`), so that
    `info.log_likelihood` and `-negative_log_likelihood` agree (the loop scores through prepared features)."""
    lp = em.weight_log_probs(model.family.component_log_prob((x, y), model.components), model.weights)
    lp = jax.nn.logsumexp(lp, axis=1)
    ll = jnp.sum(jnp.where(w > 0, w * lp, 0.0)) / jnp.sum(w)
    ll = jnp.where(jnp.isfinite(info.log_likelihood), ll, info.log_likelihood)
    restarts = info.restart_log_likelihoods.at[info.best_restart].set(ll)
    return model, info._replace(log_likelihood=ll, restart_log_likelihoods=restarts)


def _stack(tree, n):
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (n,) + jnp.shape(a)), tree)


@functools.partial(jax.jit, static_argnums=(7, 8, 9, 10))
def _fit_mixture(key, x, y, w, family, tol, start, k, n_init, max_iter, callback):
    if start is None:
        models = jax.vmap(lambda kk: _init_model(kk, x, y, w, k, family))(jax.random.split(key, n_init))
    else:
        models = _stack(start, 1)
    # every restart carries the same family (its leaves stacked like the parameters)
    models = Mixture(models.weights, models.components, _stack(family, models.weights.shape[0]))
    ww = jnp.ones((x.shape[0],), x.dtype) if w is None else w
    prepared = em.prepare((x, y), family, ww)
    model, info = em.fit_from(prepared, family, models=models, max_iter=max_iter, tol=tol, callback=callback)
    return _final(x, y, ww, model, info)


def fit_mixture(x: ArrayLike, y: ArrayLike, n_components: int, *, key: jax.Array | None = None, n_init: int = 10,
                max_iter: int = 300, tol: float = 1e-6, shared_sigma: bool = False, min_sigma: float | None = None,
                sample_weight: ArrayLike | None = None, init_params: Mixture | None = None,
                callback: Callable | None = None) -> tuple[Mixture, FitInfo]:
    r"""Fit a mixture of $K$ linear regressions by EM, with `n_init` restarts run as one vmapped program.

    The fit is the engine's ([jaxprob.em.fit_from][]) with the linear-regression family: one `lax.while_loop`
    per restart that stops when the mean log-likelihood changes by less than `tol` or after `max_iter`
    iterations, the restart with the highest final log-likelihood kept. Each restart starts from
    [init_mixture][jaxprob.regression.init_mixture] ($K$ lines through $d + 1$ random samples each). The
    log-likelihood never decreases along the iterations.

    Args:
        x: `(n, d)` or `(n,)` features.
        y: `(n,)` targets.
        n_components: number of lines $K$ (static), with $K (d + 1)$ at most the number of samples of positive
            weight.
        key: a JAX PRNG key for the starts (required unless `init_params` is given).
        n_init: number of restarts (static; one when `init_params` is given).
        max_iter: EM iteration limit (static: the trace has this length).
        tol: convergence threshold on the change of the mean log-likelihood.
        shared_sigma: one noise level for all components instead of one each (static).
        min_sigma: floor on every $\sigma_k$, which keeps the likelihood bounded when a component collapses onto
            a few points; default $10^{-3}\operatorname{sd}(y)$ (weighted).
        sample_weight: optional `(n,)` non-negative weights; integer weights give the fit of repeated rows from
            the same start.
        init_params: optional starting mixture of regressions (its `shared_sigma` and `min_sigma` are replaced
            by those of this call).
        callback: optional `callback(n_iter, mean_log_likelihood)`, called on the host after every iteration
            from inside the compiled loop; None costs nothing.

    Returns:
        `(model, info)`: a [jaxprob.em.Mixture][] of the linear-regression family (`model.coefs`,
        `model.intercepts`, `model.sigmas`, `model.weights`; its family carries `shared_sigma` and the
        `min_sigma` used) and a [jaxprob.em.FitInfo][] (`info.trace`, `info.n_iter`, `info.converged`, the
        flags, every restart's log-likelihood). Components come in no particular order.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import regression
        >>> x = jnp.tile(jnp.linspace(0.0, 1.0, 100), 2)
        >>> noise = 0.05 * jax.random.normal(jax.random.key(1), (200,))
        >>> y = jnp.concatenate([2.0 * x[:100], 3.0 - x[100:]]) + noise
        >>> m, info = regression.fit_mixture(x, y, 2, key=jax.random.key(0))
        >>> sorted(m.intercepts.round(1).tolist()), bool(info.converged)
        ([0.0, 3.0], True)
    """
    x, y, w, k, family = _mixture_args(x, y, n_components, shared_sigma, min_sigma, sample_weight,
                                       init_params is None)
    n_init = check_int(n_init, "n_init", minimum=1)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    if not is_tracer(tol) and (not np.isfinite(float(tol)) or float(tol) < 0):
        raise ValueError(f"`tol` must be a finite non-negative number, got {tol}")
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable, got {type(callback).__name__}")
    start = None
    if init_params is None:
        check_key(key)
    else:
        _check_mixture(init_params, "init_params")
        if init_params.n_components != k:
            raise ValueError(f"`init_params` has {init_params.n_components} components, not {k}")
        if init_params.coefs.shape[1] != x.shape[1]:
            raise ValueError(f"`x` has {x.shape[1]} features but `init_params` has {init_params.coefs.shape[1]}")
        start = Mixture(*jax.tree.map(lambda a: jnp.asarray(a, x.dtype), (init_params.weights,
                                                                            init_params.components)), family)
        key, n_init = None, 1
    return _fit_mixture(key, x, y, w, family, jnp.asarray(tol, x.dtype), start, k, n_init, max_iter, callback)


@jax.jit
def _resp_jit(model, x, y):
    lp = em.weight_log_probs(model.family.component_log_prob((x, y), model.components), model.weights)
    return jax.nn.softmax(lp, axis=1)


def responsibilities(x: ArrayLike, y: ArrayLike, model: Mixture) -> jax.Array:
    r"""Posterior probabilities of the hidden component, $r_{ik} = P(k \mid x_i, y_i)$ (the E-step).

    Args:
        x: `(n, d)` or `(n,)` features.
        y: `(n,)` targets.
        model: a mixture of regressions.

    Returns:
        `(n, K)` responsibilities, rows summing to one.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import regression
        >>> m = regression.make_mixture([0.5, 0.5], [[1.0], [-1.0]], [0.0, 0.0], [0.1, 0.1])
        >>> regression.responsibilities(jnp.array([1.0]), jnp.array([1.0]), m).round(3).tolist()
        [[1.0, 0.0]]
    """
    _check_mixture(model)
    x, y = _check_xy(x, y, model.coefs.shape[1])
    dtype = model.intercepts.dtype
    return _resp_jit(model, x.astype(dtype), y.astype(dtype))


@jax.jit
def _em_step_jit(model, x, y, w):
    return em.step(em.prepare((x, y), model.family, w), model)


def em_step(x: ArrayLike, y: ArrayLike, model: Mixture, *,
            sample_weight: ArrayLike | None = None) -> tuple[Mixture, jax.Array]:
    """One EM iteration: responsibilities, then a weighted least-squares line per component.

    The family of `model` gives the rules of the M-step (`shared_sigma`, `min_sigma`). In a loop of your own,
    prepare once, `prep = em.prepare((x, y), model.family)`, then call `em.step(prep, model)` inside your
    `jit`.

    Args:
        x: `(n, d)` or `(n,)` features.
        y: `(n,)` targets.
        model: the current mixture of regressions.
        sample_weight: optional `(n,)` non-negative weights.

    Returns:
        `(model, log_likelihood)`: the updated model and the mean log-likelihood of the *input* model.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import regression
        >>> m = regression.make_mixture([1.0], [[0.0]], [0.0], [1.0])
        >>> new, ll = regression.em_step(jnp.array([0.0, 1.0, 2.0]), jnp.array([1.0, 3.0, 5.0]), m)
        >>> new.coefs.round(4).tolist(), new.intercepts.round(4).tolist()
        ([[2.0]], [1.0])
    """
    _check_mixture(model)
    x, y = _check_xy(x, y, model.coefs.shape[1])
    dtype = model.intercepts.dtype
    x, y = x.astype(dtype), y.astype(dtype)
    w = check_sample_weight(sample_weight, x.shape[0], dtype)
    return _em_step_jit(model, x, y, w)
