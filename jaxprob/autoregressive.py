r"""Gaussian autoregressive models AR(p): maximum-likelihood fit, forecasts and sampling by `lax.scan`.

An AR(p) series follows

$$
y_t = c + \sum_{i=1}^{p} \phi_i \, y_{t-i} + \sigma \varepsilon_t, \qquad \varepsilon_t \sim \mathcal N(0, 1)
\text{ independent},
$$

the slides' AR(1) model $y_t = c + \phi y_{t-1} + \sigma\varepsilon_t$ generalised to $p$ lags.

**Fit.** Conditioned on the first $p$ values, the log-likelihood of $y_p, \dots, y_{T-1}$ is that of a
linear-Gaussian regression of $y_t$ on its lags $(y_{t-1}, \dots, y_{t-p})$, so the maximum-likelihood
estimate is the least-squares solution and $\hat\sigma^2$ the mean squared residual (divided by the number of
regression rows $T - p$, not by the degrees of freedom). [fit][jaxprob.autoregressive.fit] builds the lagged
design ([lagged_design][jaxprob.autoregressive.lagged_design]) and calls
[jaxprob.regression.fit_linear_gaussian][jaxprob.regression.fit_linear_gaussian]. Several series of one
length, `y: (B, T)`, share the parameters: their regression rows are stacked.

**Stationarity.** The process is stationary when the roots of $1 - \sum_i \phi_i z^i$ lie outside the unit
circle. [is_stationary][jaxprob.autoregressive.is_stationary] tests it with the step-down (reverse
Durbin–Levinson) recursion: $\phi$ is stationary if and only if every partial autocorrelation it implies has
modulus below one (plain arithmetic: it runs under `jit` on any backend). The stationary mean is
$\mu = c / (1 - \sum_i \phi_i)$ and the autocovariances $\gamma(h)$ solve the Yule–Walker equations
$\gamma(h) = \sum_i \phi_i \gamma(|h - i|) + \sigma^2 [h = 0]$, $h = 0, \dots, p$ (for AR(1):
$\gamma(0) = \sigma^2 / (1 - \phi^2)$ and $\gamma(h) = \phi^h \gamma(0)$).

**Forecasts** ([forecast][jaxprob.autoregressive.forecast]) iterate the mean recursion from the last $p$
observed values; the $h$-step forecast error has variance $\sigma^2 \sum_{j=0}^{h-1} \psi_j^2$ with the MA(∞)
weights $\psi_0 = 1$, $\psi_j = \sum_{i=1}^{\min(j,p)} \phi_i \psi_{j-i}$. **Sampling**
([sample][jaxprob.autoregressive.sample]) runs the recursion with Gaussian noise. Both are one `lax.scan`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxprob import regression
from jaxprob._validation import as_float_array, check_finite, check_int, check_key, is_tracer

__all__ = [
    "ARModel",
    "Forecast",
    "StationaryMoments",
    "lagged_design",
    "fit",
    "log_likelihood",
    "is_stationary",
    "stationary_moments",
    "forecast",
    "sample",
]

_LOG_2PI = math.log(2.0 * math.pi)


class ARModel(eqx.Module):
    r"""Gaussian AR(p) model $y_t = c + \sum_i \phi_i y_{t-i} + \sigma \varepsilon_t$ (a pytree).

    Attributes:
        coef: `(p,)` lag coefficients $(\phi_1, \dots, \phi_p)$, lag 1 first.
        intercept: scalar $c$.
        sigma: scalar noise standard deviation $\sigma > 0$.
    """

    coef: jax.Array
    intercept: jax.Array
    sigma: jax.Array

    @property
    def order(self) -> int:
        """The number of lags $p$."""
        return self.coef.shape[0]


class Forecast(NamedTuple):
    """Output of [forecast][jaxprob.autoregressive.forecast].

    Attributes:
        mean: `(n_steps,)` conditional means of the next `n_steps` values.
        variance: `(n_steps,)` variances of the forecast errors (they grow towards the stationary variance).
    """

    mean: jax.Array
    variance: jax.Array


class StationaryMoments(NamedTuple):
    r"""Output of [stationary_moments][jaxprob.autoregressive.stationary_moments].

    Attributes:
        mean: scalar stationary mean $\mu$.
        autocovariance: `(n_lags + 1,)` autocovariances $\gamma(0), \dots, \gamma(n_{lags})$.
        stationary: bool scalar; when false (possible only under `jit`: concrete input raises) `mean` and
            `autocovariance` are NaN.
    """

    mean: jax.Array
    autocovariance: jax.Array
    stationary: jax.Array


# ----------------------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------------------
def _check_model(model):
    if not isinstance(model, ARModel):
        raise TypeError(f"`model` must be an ARModel (from jaxprob.autoregressive.fit), got {type(model).__name__}")
    if model.coef.ndim != 1 or model.coef.shape[0] < 1:
        raise ValueError(f"`model.coef` must have shape (p,) with p >= 1, got {tuple(model.coef.shape)}")
    return model


def _check_series(y, name, min_length):
    y = as_float_array(y, name, (1, 2))
    check_finite(y, name)
    if y.shape[-1] < min_length:
        raise ValueError(f"`{name}` must hold at least {min_length} values per series, got {y.shape[-1]}")
    if y.ndim == 2 and y.shape[0] < 1:
        raise ValueError(f"`{name}` must hold at least one series")
    return y


def lagged_design(y: ArrayLike, order: int) -> tuple[jax.Array, jax.Array]:
    r"""Regression rows of an AR(p) fit: the lags of each value and the value.

    Row $t - p$ of a series holds $(y_{t-1}, \dots, y_{t-p})$ and the target $y_t$, for $t = p, \dots, T-1$;
    the rows of several series `(B, T)` are stacked, series after series.

    Args:
        y: `(T,)` series or `(B, T)` series of one length.
        order: $p \ge 1$.

    Returns:
        `(x, target)`: `(B (T - p), p)` lags, lag 1 first, and `(B (T - p),)` targets.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import autoregressive
        >>> x, target = autoregressive.lagged_design(jnp.array([1.0, 2.0, 3.0, 4.0]), 2)
        >>> x.tolist(), target.tolist()
        ([[2.0, 1.0], [3.0, 2.0]], [3.0, 4.0])
    """
    order = check_int(order, "order", minimum=1)
    y = _check_series(y, "y", order + 1)
    return _lagged(y, order)


def _lagged(y, p):
    yy = y if y.ndim == 2 else y[None, :]
    t = yy.shape[1]
    x = jnp.stack([yy[:, p - i : t - i] for i in range(1, p + 1)], axis=-1)  # (B, T - p, p)
    return x.reshape(-1, p), yy[:, p:].reshape(-1)


# ----------------------------------------------------------------------------------------------------------
# fit and likelihood
# ----------------------------------------------------------------------------------------------------------
def fit(y: ArrayLike, order: int) -> ARModel:
    r"""Maximum-likelihood AR(p) fit, conditioned on the first `order` values of each series.

    The least-squares regression of $y_t$ on $(1, y_{t-1}, \dots, y_{t-p})$, by
    [jaxprob.regression.fit_linear_gaussian][jaxprob.regression.fit_linear_gaussian];
    $\hat\sigma^2 = \frac{1}{n}\sum_t (y_t - \hat c - \sum_i \hat\phi_i y_{t-i})^2$ over the $n$ regression
    rows. The fitted model need not be stationary: check with
    [is_stationary][jaxprob.autoregressive.is_stationary].

    Args:
        y: `(T,)` series or `(B, T)` series of one length sharing the parameters.
        order: $p \ge 1$; each series needs $T \ge p + 1$ values and all together at least $p + 1$ rows.

    Returns:
        An [ARModel][jaxprob.autoregressive.ARModel].

    Raises:
        ValueError: NaN or infinite values, too short a series, or a singular lagged design (e.g. a constant
            series) -- checked on concrete input.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import autoregressive
        >>> true = autoregressive.ARModel(jnp.array([0.6, -0.3]), jnp.asarray(1.0), jnp.asarray(0.5))
        >>> y = autoregressive.sample(true, jnp.zeros(2), 5000, key=jax.random.key(0))
        >>> m = autoregressive.fit(y, 2)
        >>> [round(float(v), 1) for v in m.coef], round(float(m.intercept), 1), round(float(m.sigma), 1)
        ([0.6, -0.3], 1.0, 0.5)
    """
    order = check_int(order, "order", minimum=1)
    y = _check_series(y, "y", order + 1)
    x, target = _lagged(y, order)
    if x.shape[0] < order + 1:
        raise ValueError(f"`y` gives {x.shape[0]} regression rows for order={order}: at least {order + 1} "
                         "are needed (a longer series or a lower order)")
    try:
        lg = regression.fit_linear_gaussian(x, target)
    except ValueError as err:
        raise ValueError(f"`y`: the lagged design of order {order} is singular (a constant or periodic series, "
                         f"or too few values); {err}") from err
    return ARModel(coef=lg.coef, intercept=lg.intercept, sigma=lg.sigma)


@jax.jit
def _log_likelihood_jit(model, y):
    p = model.order
    x = jnp.stack([y[:, p - i : y.shape[1] - i] for i in range(1, p + 1)], axis=-1)
    mean = model.intercept + x @ model.coef
    z = (y[:, p:] - mean) / model.sigma
    return jnp.sum(-0.5 * (_LOG_2PI + z * z) - jnp.log(model.sigma), axis=1)


def log_likelihood(model: ARModel, y: ArrayLike) -> jax.Array:
    r"""Conditional log-likelihood $\sum_{t=p}^{T-1} \log \mathcal N(y_t \mid c + \sum_i \phi_i y_{t-i}, \sigma^2)$.

    Args:
        model: an [ARModel][jaxprob.autoregressive.ARModel].
        y: `(T,)` series or `(B, T)` series, $T \ge p + 1$.

    Returns:
        A scalar for `(T,)`, `(B,)` for `(B, T)`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import autoregressive
        >>> m = autoregressive.ARModel(jnp.array([0.5]), jnp.asarray(0.0), jnp.asarray(1.0))
        >>> round(float(autoregressive.log_likelihood(m, jnp.array([2.0, 1.0]))), 4)  # log N(1 | 1, 1)
        -0.9189
    """
    _check_model(model)
    y = _check_series(y, "y", model.order + 1)
    out = _log_likelihood_jit(model, y if y.ndim == 2 else y[None, :])
    return out if y.ndim == 2 else out[0]


# ----------------------------------------------------------------------------------------------------------
# stationarity
# ----------------------------------------------------------------------------------------------------------
def _is_stationary(coef):
    # step-down recursion: phi^(m-1)_j = (phi^(m)_j + k_m phi^(m)_(m-j)) / (1 - k_m^2) with k_m = phi^(m)_m;
    # stationary if and only if |k_m| < 1 for m = p, ..., 1
    p = coef.shape[0]
    a = coef
    ok = jnp.asarray(True)
    for m in range(p, 0, -1):
        k = a[m - 1]
        ok = ok & (jnp.abs(k) < 1)
        if m > 1:
            denom = jnp.where(jnp.abs(k) < 1, 1 - k * k, 1.0)
            a = (a[: m - 1] + k * a[m - 2 :: -1]) / denom
    return ok


def is_stationary(model: ARModel) -> jax.Array:
    r"""Whether the AR polynomial $1 - \sum_i \phi_i z^i$ has all its roots outside the unit circle.

    Args:
        model: an [ARModel][jaxprob.autoregressive.ARModel].

    Returns:
        A bool scalar array (usable under `jit`).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import autoregressive
        >>> def ar(*phi):
        ...     return autoregressive.ARModel(jnp.array(phi), jnp.asarray(0.0), jnp.asarray(1.0))
        >>> bool(autoregressive.is_stationary(ar(0.5, 0.3))), bool(autoregressive.is_stationary(ar(0.5, 0.6)))
        (True, False)
    """
    _check_model(model)
    return _is_stationary(model.coef)


@jax.jit(static_argnames=("n_lags",))
def _moments_jit(model, n_lags):
    phi = model.coef
    p = phi.shape[0]
    dtype = phi.dtype
    # Yule-Walker: gamma(h) - sum_i phi_i gamma(|h - i|) = sigma^2 [h = 0], h = 0..p, unknowns gamma(0..p)
    a = jnp.eye(p + 1, dtype=dtype)
    for h in range(p + 1):
        for i in range(1, p + 1):
            a = a.at[h, abs(h - i)].add(-phi[i - 1])
    b = jnp.zeros((p + 1,), dtype).at[0].set(model.sigma**2)
    gamma = jnp.linalg.solve(a, b)

    def step(window, _):  # window: gamma(h - p .. h - 1), oldest first
        g = jnp.dot(phi, window[::-1])
        return jnp.concatenate([window[1:], g[None]]), g

    extra = max(0, n_lags - p)
    if extra:
        _, more = jax.lax.scan(step, gamma[1:], None, length=extra)
        gamma = jnp.concatenate([gamma, more])
    ok = _is_stationary(phi)
    mean = model.intercept / (1 - jnp.sum(phi))
    nan = jnp.asarray(jnp.nan, dtype)
    return StationaryMoments(jnp.where(ok, mean, nan), jnp.where(ok, gamma[: n_lags + 1], nan), ok)


def stationary_moments(model: ARModel, n_lags: int = 0) -> StationaryMoments:
    r"""Stationary mean $\mu = c / (1 - \sum_i \phi_i)$ and autocovariances $\gamma(0), \dots, \gamma(n_{lags})$.

    Args:
        model: a stationary [ARModel][jaxprob.autoregressive.ARModel].
        n_lags: the largest lag $h$ of $\gamma(h)$.

    Returns:
        A [StationaryMoments][jaxprob.autoregressive.StationaryMoments].

    Raises:
        ValueError: a concrete model that is not stationary (under `jit` the flag `stationary` is false and
            the moments are NaN).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import autoregressive
        >>> m = autoregressive.ARModel(jnp.array([0.8]), jnp.asarray(1.0), jnp.asarray(0.6))
        >>> mom = autoregressive.stationary_moments(m, n_lags=2)   # sigma^2 / (1 - phi^2) = 0.36 / 0.36
        >>> round(float(mom.mean), 4), [round(float(g), 4) for g in mom.autocovariance]
        (5.0, [1.0, 0.8, 0.64])
    """
    _check_model(model)
    n_lags = check_int(n_lags, "n_lags", minimum=0)
    if not is_tracer(model.coef) and not bool(_is_stationary(model.coef)):
        raise ValueError(f"`model` is not stationary (coef={np.asarray(model.coef).tolist()}): the AR "
                         "polynomial has a root on or inside the unit circle, so the moments diverge")
    return _moments_jit(model, n_lags)


# ----------------------------------------------------------------------------------------------------------
# forecasts and sampling
# ----------------------------------------------------------------------------------------------------------
def _check_history(history, model, name):
    h = as_float_array(history, name, 1)
    check_finite(h, name)
    if h.shape[0] < model.order:
        raise ValueError(f"`{name}` must hold at least the last order={model.order} values, got {h.shape[0]}")
    return h[h.shape[0] - model.order :].astype(model.coef.dtype)


@jax.jit(static_argnames=("n_steps",))
def _forecast_jit(model, window, n_steps):
    phi = model.coef
    psi0 = jnp.zeros_like(window).at[-1].set(1.0)  # psi_(1-p), ..., psi_0

    def step(carry, _):
        win, psi, acc = carry
        mean = model.intercept + jnp.dot(phi, win[::-1])
        acc = acc + psi[-1] ** 2
        new_psi = jnp.dot(phi, psi[::-1])
        return (jnp.concatenate([win[1:], mean[None]]), jnp.concatenate([psi[1:], new_psi[None]]), acc), (
            mean, acc)

    _, (mean, acc) = jax.lax.scan(step, (window, psi0, jnp.zeros((), window.dtype)), None, length=n_steps)
    return Forecast(mean, model.sigma**2 * acc)


def forecast(model: ARModel, history: ArrayLike, n_steps: int) -> Forecast:
    r"""Means and error variances of the next `n_steps` values after `history` (one `lax.scan`).

    $\hat y_{T+h} = c + \sum_i \phi_i \hat y_{T+h-i}$ with observed values in place of $\hat y$ up to $T$;
    the error variance is $\sigma^2 \sum_{j<h} \psi_j^2$ (see the module docstring).

    Args:
        model: an [ARModel][jaxprob.autoregressive.ARModel].
        history: `(L,)` observed values, oldest first, $L \ge p$ (only the last $p$ are used).
        n_steps: the horizon.

    Returns:
        A [Forecast][jaxprob.autoregressive.Forecast].

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import autoregressive
        >>> m = autoregressive.ARModel(jnp.array([0.5]), jnp.asarray(1.0), jnp.asarray(1.0))
        >>> f = autoregressive.forecast(m, jnp.array([4.0]), 3)   # mean 2 + 0.5^h (4 - 2)
        >>> f.mean.tolist(), f.variance.tolist()                  # variance 1, 1 + 0.25, 1 + 0.25 + 0.0625
        ([3.0, 2.5, 2.25], [1.0, 1.25, 1.3125])
    """
    _check_model(model)
    window = _check_history(history, model, "history")
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    return _forecast_jit(model, window, n_steps)


@jax.jit(static_argnames=("n_steps",))
def _sample_jit(model, window, n_steps, key):
    phi = model.coef
    noise = jax.random.normal(key, (n_steps,), phi.dtype)

    def step(win, eps):
        y = model.intercept + jnp.dot(phi, win[::-1]) + model.sigma * eps
        return jnp.concatenate([win[1:], y[None]]), y

    return jax.lax.scan(step, window, noise)[1]


def sample(model: ARModel, initial: ArrayLike, n_steps: int, *, key: jax.Array) -> jax.Array:
    r"""Simulate `n_steps` values after `initial` (one `lax.scan`; same key, same path).

    Args:
        model: an [ARModel][jaxprob.autoregressive.ARModel].
        initial: `(L,)` starting values, oldest first, $L \ge p$ (the last $p$ are used). To start from the
            stationary distribution, discard a burn-in or draw it from
            [stationary_moments][jaxprob.autoregressive.stationary_moments].
        n_steps: number of values to draw.
        key: a JAX PRNG key.

    Returns:
        `(n_steps,)` values $y_{T}, \dots, y_{T + n_{steps} - 1}$ following `initial`. `vmap` over keys for
        several paths.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import autoregressive
        >>> m = autoregressive.ARModel(jnp.array([0.9]), jnp.asarray(0.0), jnp.asarray(1.0))
        >>> paths = jax.vmap(lambda k: autoregressive.sample(m, jnp.zeros(1), 200, key=k))(
        ...     jax.random.split(jax.random.key(1), 2000))
        >>> round(float(paths[:, -1].var()), 0)    # sigma^2 / (1 - phi^2) = 5.26
        5.0
    """
    _check_model(model)
    window = _check_history(initial, model, "initial")
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    check_key(key)
    return _sample_jit(model, window, n_steps, key)
