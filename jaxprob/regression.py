r"""Regression by likelihood: linear-Gaussian models, heteroscedastic noise, mixtures of linear regressions.

Every model here is a conditional density :math:`L(y \mid x)` and, in one form, a mixture of ``K``
Gaussian lines

.. math:: L(y \mid x) = \sum_{k=1}^K \pi_k \, \mathcal N\big(y \mid w_{k0} + w_k^\top x,\; \sigma_k(x)^2\big),

* :class:`LinearGaussian` — :math:`Y = w_0 + w^\top X + \sigma\varepsilon` (``K = 1``, constant
  :math:`\sigma`). The maximum-likelihood estimate is closed-form: :math:`\hat w` by least squares (an SVD
  solver on the centred design) and :math:`\hat\sigma^2 = \frac1n \sum_i (y_i - \hat w_0 - \hat w^\top
  x_i)^2` (divided by ``n``, not ``n - d - 1``: the MLE). :func:`fit_linear_gaussian_optax` reaches the same
  point by minimising the negative log-likelihood with Optax.
* :class:`HeteroscedasticGaussian` — :math:`\log \sigma(x) = a_0 + a^\top x`, fitted by the NLL.
* :class:`MixtureOfRegressions` — ``K`` lines with mixing weights :math:`\pi_k` that do not depend on ``x``
  (the hidden-variable case: flat prices against surface when the district is unknown), fitted by EM:
  responsibilities :math:`r_{ik} \propto \pi_k \mathcal N(y_i \mid \mu_k(x_i), \sigma_k^2)`, then a weighted
  least-squares line per component, :math:`\pi_k = \frac1n\sum_i r_{ik}` and
  :math:`\sigma_k^2 = \sum_i r_{ik} (y_i - \mu_k(x_i))^2 / \sum_i r_{ik}` (or one pooled :math:`\sigma`).

Predictions from a density: :func:`predict_mean` is the expectation :math:`\int y \, L(y\mid x)\,dy
= \sum_k \pi_k \mu_k(x)`; :func:`predict_mode` is :math:`\arg\max_y L(y \mid x)`, found by fixed-point
(mean-shift) iterations started at every component mean. They coincide for a single Gaussian and differ for a
multimodal mixture predictive, where the mean can fall between the modes where the density is low.

``x`` may be ``(n, d)`` or ``(n,)`` (one feature); ``y`` is ``(n,)``. Densities accept ``y`` of shape
``(n, m)`` too, to evaluate :math:`L(\cdot \mid x_i)` on a grid of ``m`` values per sample.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxprob import nn
from jaxprob._validation import (
    as_float_array,
    check_finite,
    check_int,
    check_key,
    check_sample_weight,
    is_tracer,
)
from jaxprob.densities import logsumexp

__all__ = [
    "LinearGaussian",
    "HeteroscedasticGaussian",
    "MixtureOfRegressions",
    "MixtureFitInfo",
    "fit_linear_gaussian",
    "fit_linear_gaussian_optax",
    "fit_heteroscedastic",
    "fit_mixture",
    "responsibilities",
    "em_step",
    "log_prob",
    "negative_log_likelihood",
    "predict_mean",
    "predict_mode",
    "grid_mode_and_mean",
]

_LOG_2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------------------------------------
# models: each one exposes its components (log pi_k, mu_k(x), sigma_k(x))
# ----------------------------------------------------------------------------------------------------------
class LinearGaussian(eqx.Module):
    r"""Linear-Gaussian conditional density :math:`y \mid x \sim \mathcal N(w_0 + w^\top x, \sigma^2)`.

    Attributes:
        coef: ``(d,)`` slopes :math:`w`.
        intercept: scalar :math:`w_0`.
        sigma: scalar noise standard deviation :math:`\sigma`.
    """

    coef: jax.Array
    intercept: jax.Array
    sigma: jax.Array

    def components(self, x):
        """``(log_weights (1,), means (n, 1), sigmas (n, 1))`` for ``x`` of shape ``(n, d)``."""
        mu = x @ self.coef + self.intercept
        return jnp.zeros((1,), mu.dtype), mu[:, None], jnp.broadcast_to(self.sigma, mu.shape)[:, None]


class HeteroscedasticGaussian(eqx.Module):
    r"""Gaussian with a mean and a log standard deviation both linear in ``x``.

    .. math:: y \mid x \sim \mathcal N\big(w_0 + w^\top x,\; \sigma(x)^2\big), \qquad
        \log\sigma(x) = a_0 + a^\top x

    Attributes:
        coef: ``(d,)`` slopes :math:`w` of the mean.
        intercept: scalar :math:`w_0`.
        log_sigma_coef: ``(d,)`` slopes :math:`a` of :math:`\log\sigma(x)`.
        log_sigma_intercept: scalar :math:`a_0`.
    """

    coef: jax.Array
    intercept: jax.Array
    log_sigma_coef: jax.Array
    log_sigma_intercept: jax.Array

    def sigma(self, x):
        """``(n,)`` noise standard deviations :math:`\\sigma(x_i)` for ``x`` of shape ``(n, d)``."""
        return jnp.exp(x @ self.log_sigma_coef + self.log_sigma_intercept)

    def components(self, x):
        """``(log_weights (1,), means (n, 1), sigmas (n, 1))`` for ``x`` of shape ``(n, d)``."""
        mu = x @ self.coef + self.intercept
        return jnp.zeros((1,), mu.dtype), mu[:, None], self.sigma(x)[:, None]


class MixtureOfRegressions(eqx.Module):
    r"""Mixture of ``K`` linear-Gaussian regressions with mixing weights independent of ``x``.

    Attributes:
        weights: ``(K,)`` mixing weights :math:`\pi_k`.
        coefs: ``(K, d)`` slopes.
        intercepts: ``(K,)``.
        sigmas: ``(K,)`` noise standard deviations (all equal when fitted with ``shared_sigma=True``).
    """

    weights: jax.Array
    coefs: jax.Array
    intercepts: jax.Array
    sigmas: jax.Array

    @property
    def n_components(self) -> int:
        return self.weights.shape[0]

    def components(self, x):
        """``(log_weights (K,), means (n, K), sigmas (n, K))`` for ``x`` of shape ``(n, d)``."""
        mu = x @ self.coefs.T + self.intercepts
        return jnp.log(self.weights), mu, jnp.broadcast_to(self.sigmas, mu.shape)


_MODELS = (LinearGaussian, HeteroscedasticGaussian, MixtureOfRegressions)


class MixtureFitInfo(NamedTuple):
    """Diagnostics returned by :func:`fit_mixture` (a pytree of arrays).

    Attributes:
        converged: bool, the change of the mean log-likelihood fell below ``tol``.
        n_iter: number of EM iterations run.
        log_likelihood: mean log-likelihood of the returned model.
        log_likelihood_trace: ``(max_iter,)`` mean log-likelihood before every M-step; NaN after ``n_iter``.
        nonfinite: bool, a non-finite log-likelihood stopped the iterations.
        restart_log_likelihoods: ``(n_init,)`` final mean log-likelihood of every restart.
        best_restart: index of the restart that was kept.
    """

    converged: jax.Array
    n_iter: jax.Array
    log_likelihood: jax.Array
    log_likelihood_trace: jax.Array
    nonfinite: jax.Array
    restart_log_likelihoods: jax.Array
    best_restart: jax.Array


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
    if not isinstance(model, _MODELS):
        raise TypeError(
            f"`model` must be one of {', '.join(m.__name__ for m in _MODELS)}, got {type(model).__name__}"
        )
    return model


def _model_dim(model):
    return model.coefs.shape[1] if isinstance(model, MixtureOfRegressions) else model.coef.shape[0]


def _model_dtype(model):
    return model.intercepts.dtype if isinstance(model, MixtureOfRegressions) else model.intercept.dtype


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


def fit_linear_gaussian(x, y, *, sample_weight=None, return_rank: bool = False):
    r"""Maximum-likelihood linear-Gaussian regression in closed form.

    .. math:: \hat w = \arg\min_w \sum_i s_i (y_i - w_0 - w^\top x_i)^2, \qquad
        \hat\sigma^2 = \frac{\sum_i s_i (y_i - \hat w_0 - \hat w^\top x_i)^2}{\sum_i s_i}

    Solved on the centred design by an SVD least-squares solver (``jnp.linalg.lstsq``), which stays accurate
    for ill-conditioned but full-rank designs.

    Args:
        x: ``(n, d)`` or ``(n,)`` features.
        y: ``(n,)`` targets.
        sample_weight: optional ``(n,)`` non-negative weights :math:`s_i` (default all ones).
        return_rank: also return the numerical rank of the centred design.

    Returns:
        A :class:`LinearGaussian` (and the rank when ``return_rank``).

    Raises:
        ValueError: NaN/inf, mismatched lengths, or a singular design (collinear or constant columns, fewer
            than ``d + 1`` samples) — checked on concrete inputs; under ``jit`` use ``return_rank`` and
            compare with ``d``.

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
    log_w, mu, sig = model.components(x)  # (K,), (n, K), (n, K)
    if y.ndim == 2:
        yy, mu, sig = y[:, :, None], mu[:, None, :], sig[:, None, :]
    else:
        yy = y[:, None]
    z = (yy - mu) / sig
    return logsumexp(log_w - 0.5 * (_LOG_2PI + z * z) - jnp.log(sig), axis=-1)


_log_prob_jit = jax.jit(_log_prob)


def log_prob(x, y, model):
    r"""Predictive log-density :math:`\log L(y \mid x)` of a fitted model.

    Args:
        x: ``(n, d)`` or ``(n,)`` features.
        y: ``(n,)`` targets, or ``(n, m)`` grids of ``m`` values per sample.
        model: a :class:`LinearGaussian`, :class:`HeteroscedasticGaussian` or :class:`MixtureOfRegressions`.

    Returns:
        ``(n,)`` (or ``(n, m)``) log-densities.

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


def negative_log_likelihood(x, y, model):
    r"""Mean negative log-likelihood :math:`-\frac1n \sum_i \log L(y_i \mid x_i)`.

    For the linear-Gaussian model this is
    :math:`\log\sigma + \tfrac12\log 2\pi + \frac{1}{2n\sigma^2}\sum_i (y_i - w_0 - w^\top x_i)^2`.

    Args:
        x: ``(n, d)`` or ``(n,)`` features.
        y: ``(n,)`` targets.
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
    log_w, mu, _ = model.components(x)
    return mu @ jnp.exp(log_w)


def predict_mean(x, model):
    r"""Expectation of the predictive density, :math:`\mathbb E[y \mid x] = \sum_k \pi_k \mu_k(x)`.

    Args:
        x: ``(n, d)`` or ``(n,)`` features.
        model: a fitted model.

    Returns:
        ``(n,)`` predictions.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import regression
        >>> m = regression.MixtureOfRegressions(jnp.array([0.5, 0.5]), jnp.array([[1.0], [-1.0]]),
        ...                                     jnp.zeros(2), jnp.ones(2))
        >>> regression.predict_mean(jnp.array([2.0]), m).tolist()
        [0.0]
    """
    _check_model(model)
    x = _check_x(x, _model_dim(model))
    return _predict_mean(model, x.astype(_model_dtype(model)))


@functools.partial(jax.jit, static_argnums=(2,))
def _predict_mode(model, x, n_iter):
    log_w, mu, sig = model.components(x)  # (n, K)
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


def predict_mode(x, model, *, n_iter: int = 100):
    r"""Mode of the predictive density, :math:`\arg\max_y L(y \mid x)`.

    Fixed-point iterations :math:`y \leftarrow \sum_k \rho_k(y)\mu_k / \sum_k \rho_k(y)` with
    :math:`\rho_k(y) \propto \pi_k \mathcal N(y\mid\mu_k,\sigma_k^2)/\sigma_k^2` (mean shift; each iteration
    increases the density) start from every component mean; the highest local maximum is returned.

    Args:
        x: ``(n, d)`` or ``(n,)`` features.
        model: a fitted model.
        n_iter: fixed-point iterations (static).

    Returns:
        ``(n,)`` modes (equal to :func:`predict_mean` for a single Gaussian).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import regression
        >>> m = regression.MixtureOfRegressions(jnp.array([0.7, 0.3]), jnp.array([[1.0], [-1.0]]),
        ...                                     jnp.zeros(2), jnp.full(2, 0.1))
        >>> [round(v, 3) for v in regression.predict_mode(jnp.array([2.0]), m).tolist()]
        [2.0]
    """
    _check_model(model)
    x = _check_x(x, _model_dim(model))
    n_iter = check_int(n_iter, "n_iter", minimum=1)
    return _predict_mode(model, x.astype(_model_dtype(model)), n_iter)


@jax.jit
def _grid_mode_and_mean(y_grid, log_density):
    mode = y_grid[jnp.argmax(log_density, axis=-1)]
    p = jnp.exp(log_density - jnp.max(log_density, axis=-1, keepdims=True))
    mean = jnp.trapezoid(p * y_grid, y_grid, axis=-1) / jnp.trapezoid(p, y_grid, axis=-1)
    return mode, mean


def grid_mode_and_mean(y_grid, log_density):
    r"""Mode and expectation of any 1-D density tabulated on a grid (numerical check of the two predictions).

    Mode: the grid point of highest density. Expectation: :math:`\int y\,p(y)\,dy / \int p(y)\,dy` by the
    trapezoidal rule (the density need not be normalised).

    Args:
        y_grid: ``(m,)`` increasing grid.
        log_density: ``(..., m)`` log-densities on the grid (e.g. :func:`log_prob` on ``(n, m)`` targets).

    Returns:
        ``(mode, mean)``, each of shape ``log_density.shape[:-1]``.

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


def fit_linear_gaussian_optax(x, y, *, optimizer=None, max_iter: int = 500, tol: float = 1e-6):
    r"""Linear-Gaussian regression by minimising the mean negative log-likelihood with Optax.

    The parameters are :math:`(w, w_0, \log\sigma)`, started at :math:`w = 0`, :math:`w_0 = \bar y`,
    :math:`\sigma = \operatorname{sd}(y)`; :func:`jaxprob.nn.minimize` runs the optimizer (L-BFGS by default).
    The optimum is the closed form of :func:`fit_linear_gaussian`.

    Args:
        x: ``(n, d)`` or ``(n,)`` features.
        y: ``(n,)`` targets.
        optimizer: an Optax gradient transformation (``None``: L-BFGS). First-order optimizers such as
            ``optax.adam(1e-2)`` need many more iterations and a looser ``tol``.
        max_iter: iteration limit.
        tol: stop when the gradient norm is at most ``tol``.

    Returns:
        ``(model, info)``: a :class:`LinearGaussian` and a :class:`~jaxprob.nn.MinimizeInfo`.

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


def fit_heteroscedastic(x, y, *, optimizer=None, max_iter: int = 500, tol: float = 1e-6):
    r"""Heteroscedastic regression, :math:`\log\sigma(x) = a_0 + a^\top x`, by minimising the NLL with Optax.

    .. math:: \text{NLL} = \frac1n \sum_i \Big[\log\sigma(x_i) + \tfrac12\log 2\pi
        + \frac{(y_i - w_0 - w^\top x_i)^2}{2\sigma(x_i)^2}\Big]

    Started from the closed-form homoscedastic fit (:math:`a = 0`).

    Args:
        x: ``(n, d)`` or ``(n,)`` features.
        y: ``(n,)`` targets.
        optimizer: an Optax gradient transformation (``None``: L-BFGS).
        max_iter: iteration limit.
        tol: stop when the gradient norm is at most ``tol``.

    Returns:
        ``(model, info)``: a :class:`HeteroscedasticGaussian` and a :class:`~jaxprob.nn.MinimizeInfo`.

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
# mixture of linear regressions by EM
# ----------------------------------------------------------------------------------------------------------
def _e_step(model, x, y):
    log_w, mu, sig = model.components(x)
    z = (y[:, None] - mu) / sig
    joint = log_w - 0.5 * (_LOG_2PI + z * z) - jnp.log(sig)
    ll = logsumexp(joint, axis=-1)
    return jnp.exp(joint - ll[:, None]), jnp.mean(ll)


def _m_step(x, y, resp, shared_sigma, min_sigma):
    nk = jnp.sum(resp, axis=0)
    coefs, intercepts, sigma2, _ = jax.vmap(_wls, in_axes=(None, None, 1))(x, y, resp + 1e-12)
    if shared_sigma:
        sigma2 = jnp.full_like(sigma2, jnp.sum(nk * sigma2) / jnp.sum(nk))
    sigmas = jnp.sqrt(jnp.maximum(sigma2, min_sigma**2))
    return MixtureOfRegressions(nk / jnp.sum(nk), coefs, intercepts, sigmas)


def _init_mixture(key, x, y, k, min_sigma):
    """Each component: the least-squares line through d + 1 random samples; sigma = sd(y); equal weights."""
    n, d = x.shape
    m = d + 1
    idx = jax.random.permutation(key, n)[: k * m].reshape(k, m)
    w = jnp.zeros((k, n), x.dtype).at[jnp.arange(k)[:, None], idx].set(1.0)
    coefs, intercepts, _, _ = jax.vmap(_wls, in_axes=(None, None, 0))(x, y, w + 1e-6)
    sig = jnp.maximum(jnp.std(y), min_sigma)
    weights = jnp.full((k,), 1.0 / k, x.dtype)
    return MixtureOfRegressions(weights, coefs, intercepts, jnp.full((k,), sig, x.dtype))


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6))
def _fit_mixture(key, x, y, k, n_init, max_iter, shared_sigma, tol, min_sigma):
    dtype = x.dtype

    def one(key):
        model = _init_mixture(key, x, y, k, min_sigma)

        def cond(c):
            _, prev, it, conv, bad, _ = c
            return (it < max_iter) & ~conv & ~bad

        def body(c):
            model, prev, it, _, _, trace = c
            resp, ll = _e_step(model, x, y)
            new = _m_step(x, y, resp, shared_sigma, min_sigma)
            bad = ~jnp.isfinite(ll) | ~jnp.all(jnp.isfinite(new.coefs))
            new = jax.tree.map(lambda a, b: jnp.where(bad, a, b), model, new)
            return new, ll, it + 1, jnp.abs(ll - prev) < tol, bad, trace.at[it].set(ll)

        init = (model, jnp.asarray(-jnp.inf, dtype), jnp.asarray(0, jnp.int32), jnp.asarray(False),
                jnp.asarray(False), jnp.full((max_iter,), jnp.nan, dtype))
        model, _, it, conv, bad, trace = jax.lax.while_loop(cond, body, init)
        _, final_ll = _e_step(model, x, y)
        return model, final_ll, it, conv, bad, trace

    models, lls, its, convs, bads, traces = jax.vmap(one)(jax.random.split(key, n_init))
    best = jnp.argmax(jnp.where(jnp.isnan(lls), -jnp.inf, lls))
    model = jax.tree.map(lambda a: a[best], models)
    info = MixtureFitInfo(convs[best], its[best], lls[best], traces[best], bads[best], lls,
                          best.astype(jnp.int32))
    return model, info


def fit_mixture(x, y, n_components: int, *, key, n_init: int = 10, max_iter: int = 300, tol: float = 1e-6,
                shared_sigma: bool = False, min_sigma: float | None = None):
    r"""Fit a mixture of ``K`` linear regressions by EM, with ``n_init`` restarts run as one vmapped program.

    Each restart starts from ``K`` lines through ``d + 1`` random samples each, with :math:`\sigma_k =
    \operatorname{sd}(y)`; EM stops when the mean log-likelihood changes by less than ``tol`` or after
    ``max_iter`` iterations (``lax.while_loop``). The restart with the highest log-likelihood is kept. The
    log-likelihood never decreases along the iterations.

    Args:
        x: ``(n, d)`` or ``(n,)`` features.
        y: ``(n,)`` targets.
        n_components: number of lines ``K`` (static), with ``K (d + 1) <= n``.
        key: a JAX PRNG key for the initialisations.
        n_init: number of restarts (static).
        max_iter: EM iteration limit (static: the trace has this length).
        tol: convergence threshold on the change of the mean log-likelihood.
        shared_sigma: one noise level for all components instead of one each (static).
        min_sigma: floor on every :math:`\sigma_k`, which keeps the likelihood bounded when a component
            collapses onto a few points; default :math:`10^{-3}\operatorname{sd}(y)`.

    Returns:
        ``(model, info)``: a :class:`MixtureOfRegressions` and a :class:`MixtureFitInfo`. Components come in
        no particular order.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import regression
        >>> x = jnp.tile(jnp.linspace(0.0, 1.0, 100), 2)
        >>> noise = 0.05 * jax.random.normal(jax.random.key(1), (200,))
        >>> y = jnp.concatenate([2.0 * x[:100], 3.0 - x[100:]]) + noise
        >>> m, info = regression.fit_mixture(x, y, 2, key=jax.random.key(0))
        >>> sorted(m.intercepts.round(1).tolist())
        [0.0, 3.0]
    """
    check_key(key)
    x, y = _check_xy(x, y)
    k = check_int(n_components, "n_components", minimum=1)
    if k * (x.shape[1] + 1) > x.shape[0]:
        raise ValueError(
            f"`n_components`={k} needs at least {k * (x.shape[1] + 1)} samples ({x.shape[1] + 1} per line), "
            f"got {x.shape[0]}"
        )
    n_init = check_int(n_init, "n_init", minimum=1)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    if not is_tracer(tol) and (not np.isfinite(float(tol)) or float(tol) < 0):
        raise ValueError(f"`tol` must be a finite non-negative number, got {tol}")
    if min_sigma is None:
        min_sigma = 1e-3 * jnp.std(y)
        if not is_tracer(min_sigma) and float(min_sigma) == 0:
            raise ValueError("`y` is constant: there is nothing to fit")
    elif not is_tracer(min_sigma) and not float(min_sigma) > 0:
        raise ValueError(f"`min_sigma` must be positive, got {min_sigma}")
    return _fit_mixture(key, x, y, k, n_init, max_iter, bool(shared_sigma), jnp.asarray(tol, x.dtype),
                        jnp.asarray(min_sigma, x.dtype))


@jax.jit
def _resp_jit(model, x, y):
    return _e_step(model, x, y)[0]


def responsibilities(x, y, model: MixtureOfRegressions):
    r"""Posterior probabilities of the hidden component, :math:`r_{ik} = P(k \mid x_i, y_i)` (the E-step).

    Args:
        x: ``(n, d)`` or ``(n,)`` features.
        y: ``(n,)`` targets.
        model: a :class:`MixtureOfRegressions`.

    Returns:
        ``(n, K)`` responsibilities, rows summing to one.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import regression
        >>> m = regression.MixtureOfRegressions(jnp.array([0.5, 0.5]), jnp.array([[1.0], [-1.0]]),
        ...                                     jnp.zeros(2), jnp.full(2, 0.1))
        >>> regression.responsibilities(jnp.array([1.0]), jnp.array([1.0]), m).round(3).tolist()
        [[1.0, 0.0]]
    """
    if not isinstance(model, MixtureOfRegressions):
        raise TypeError(f"`model` must be a MixtureOfRegressions, got {type(model).__name__}")
    x, y = _check_xy(x, y, model.coefs.shape[1])
    dtype = model.intercepts.dtype
    return _resp_jit(model, x.astype(dtype), y.astype(dtype))


@functools.partial(jax.jit, static_argnums=(3,))
def _em_step_jit(model, x, y, shared_sigma, min_sigma):
    resp, ll = _e_step(model, x, y)
    return _m_step(x, y, resp, shared_sigma, min_sigma), ll


def em_step(x, y, model: MixtureOfRegressions, *, shared_sigma: bool = False, min_sigma: float = 0.0):
    """One EM iteration: responsibilities, then weighted least squares per component.

    Args:
        x: ``(n, d)`` or ``(n,)`` features.
        y: ``(n,)`` targets.
        model: the current :class:`MixtureOfRegressions`.
        shared_sigma: pool the noise level over components (static).
        min_sigma: floor on the noise standard deviations.

    Returns:
        ``(model, log_likelihood)``: the updated model and the mean log-likelihood of the *input* model.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import regression
        >>> m = regression.MixtureOfRegressions(jnp.ones(1), jnp.zeros((1, 1)), jnp.zeros(1), jnp.ones(1))
        >>> new, ll = regression.em_step(jnp.array([0.0, 1.0, 2.0]), jnp.array([1.0, 3.0, 5.0]), m)
        >>> new.coefs.round(4).tolist(), new.intercepts.round(4).tolist()
        ([[2.0]], [1.0])
    """
    if not isinstance(model, MixtureOfRegressions):
        raise TypeError(f"`model` must be a MixtureOfRegressions, got {type(model).__name__}")
    x, y = _check_xy(x, y, model.coefs.shape[1])
    dtype = model.intercepts.dtype
    return _em_step_jit(model, x.astype(dtype), y.astype(dtype), bool(shared_sigma),
                        jnp.asarray(min_sigma, dtype))
