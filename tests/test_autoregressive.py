"""AR(p): least squares in float64, stationary moments in closed form, forecasts, sampling, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxprob import autoregressive as ar


def _simulate(rng, phi, c, sigma, n, burn=500):
    """NumPy AR(p) path, independent of the library."""
    p = len(phi)
    y = np.zeros(n + burn + p)
    for t in range(p, y.shape[0]):
        y[t] = c + sum(phi[i] * y[t - 1 - i] for i in range(p)) + sigma * rng.standard_normal()
    return y[burn + p :]


def _design(series, p):
    rows, target = [], []
    for y in series:
        for t in range(p, len(y)):
            rows.append([y[t - i] for i in range(1, p + 1)])
            target.append(y[t])
    return np.array(rows), np.array(target)


def _model(phi, c=0.0, sigma=1.0):
    return ar.ARModel(jnp.asarray(phi), jnp.asarray(c, jnp.asarray(phi).dtype), jnp.asarray(sigma,
                                                                                           jnp.asarray(phi).dtype))


def test_fit_equals_closed_form_least_squares_in_float64(rng):
    phi, c, sigma = [0.5, -0.3, 0.2], 2.0, 0.7
    series = [_simulate(rng, phi, c, sigma, 300) for _ in range(3)]
    x, target = _design(series, 3)
    design = np.column_stack([np.ones(len(target)), x])
    beta = np.linalg.solve(design.T @ design, design.T @ target)  # normal equations
    resid = target - design @ beta
    with jax.enable_x64(True):
        xs, ts = ar.lagged_design(jnp.asarray(np.stack(series)), 3)
        np.testing.assert_array_equal(np.asarray(xs), x)
        np.testing.assert_array_equal(np.asarray(ts), target)
        model = ar.fit(jnp.asarray(np.stack(series)), 3)
        assert model.coef.dtype == jnp.float64 and model.order == 3
        np.testing.assert_allclose(np.asarray(model.coef), beta[1:], rtol=1e-10)
        assert float(model.intercept) == pytest.approx(beta[0], rel=1e-10)
        assert float(model.sigma) ** 2 == pytest.approx(np.mean(resid**2), rel=1e-10)  # MLE: divided by n
        ll = ar.log_likelihood(model, jnp.asarray(np.stack(series)))
        mean = beta[0] + x @ beta[1:]
        ref = stats.norm.logpdf(target, mean, np.sqrt(np.mean(resid**2))).reshape(3, -1).sum(axis=1)
        np.testing.assert_allclose(np.asarray(ll), ref, rtol=1e-12)
        # the least-squares solution maximises the likelihood: a nudged model scores lower
        nudged = ar.ARModel(model.coef + 0.01, model.intercept, model.sigma)
        assert float(ar.log_likelihood(nudged, jnp.asarray(series[0]))) < float(ll[0])
        # under jit the same fit
        jitted = jax.jit(lambda y: ar.fit(y, 3))(jnp.asarray(np.stack(series)))
        np.testing.assert_allclose(np.asarray(jitted.coef), np.asarray(model.coef), rtol=1e-12)


def test_float32_fit_recovers_the_parameters(rng):
    y = _simulate(rng, [0.6, -0.25], 1.0, 0.5, 20_000).astype(np.float32)
    model = ar.fit(y, 2)
    assert model.coef.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(model.coef), [0.6, -0.25], atol=0.02)
    assert float(model.sigma) == pytest.approx(0.5, rel=0.02)


def test_ar1_stationary_variance_closed_form_and_by_simulation():
    phi, c, sigma = 0.8, 1.0, 0.6
    with jax.enable_x64(True):
        mom = ar.stationary_moments(_model([phi], c, sigma), n_lags=4)
        gamma0 = sigma**2 / (1 - phi**2)
        assert bool(mom.stationary) and float(mom.mean) == pytest.approx(c / (1 - phi), rel=1e-12)
        np.testing.assert_allclose(np.asarray(mom.autocovariance), gamma0 * phi ** np.arange(5), rtol=1e-12)
    # simulated paths, started at the stationary mean, after a burn-in of 60 steps (phi^120 < 1e-11)
    model = _model(np.float32([phi]), c, sigma)
    paths = jax.vmap(lambda k: ar.sample(model, jnp.full(1, c / (1 - phi)), 61, key=k))(
        jax.random.split(jax.random.key(0), 20_000))
    last = np.asarray(paths[:, -1], np.float64)
    n = last.shape[0]
    assert abs(last.mean() - c / (1 - phi)) < 4 * np.sqrt(gamma0 / n)
    assert last.var() == pytest.approx(gamma0, abs=4 * gamma0 * np.sqrt(2 / n))
    # lag-1 covariance of successive values of the paths: phi * gamma0
    lag1 = np.mean((np.asarray(paths[:, -2]) - c / (1 - phi)) * (last - c / (1 - phi)))
    assert lag1 == pytest.approx(phi * gamma0, abs=5 * gamma0 * np.sqrt(2 / n))


def test_ar2_autocovariance_closed_form():
    phi1, phi2, sigma = 0.5, -0.3, 1.3
    with jax.enable_x64(True):
        mom = ar.stationary_moments(_model([phi1, phi2], 0.0, sigma), n_lags=6)
    g0 = (1 - phi2) * sigma**2 / ((1 + phi2) * ((1 - phi2) ** 2 - phi1**2))
    g = [g0, phi1 * g0 / (1 - phi2)]
    for _ in range(5):
        g.append(phi1 * g[-1] + phi2 * g[-2])
    np.testing.assert_allclose(np.asarray(mom.autocovariance), g, rtol=1e-12)


def test_is_stationary_agrees_with_the_roots(rng):
    coefs = rng.uniform(-1.6, 1.6, (400, 3)) * np.array([1.0, 0.8, 0.6])
    roots = [np.roots(np.concatenate([[1.0], -c])) for c in coefs]  # z^p - phi_1 z^(p-1) - ... - phi_p
    inside = np.array([np.max(np.abs(r)) < 1 for r in roots])
    margin = np.array([abs(np.max(np.abs(r)) - 1) > 1e-6 for r in roots])
    with jax.enable_x64(True):
        got = jax.vmap(lambda c: ar.is_stationary(_model(c)))(jnp.asarray(coefs))
    assert 0.2 < inside.mean() < 0.8  # both cases are well represented
    np.testing.assert_array_equal(np.asarray(got)[margin], inside[margin])
    # a unit root is not stationary
    assert not bool(ar.is_stationary(_model([1.0]))) and not bool(ar.is_stationary(_model([0.5, 0.5])))


def test_forecast_matches_recursions_and_simulation(rng):
    phi, c, sigma = 0.7, 0.5, 0.8
    with jax.enable_x64(True):
        f = ar.forecast(_model([phi], c, sigma), jnp.array([9.0, 3.0]), 6)
        mu, h = c / (1 - phi), np.arange(1, 7)
        np.testing.assert_allclose(np.asarray(f.mean), mu + phi**h * (3.0 - mu), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(f.variance), sigma**2 * (1 - phi ** (2 * h)) / (1 - phi**2),
                                   rtol=1e-12)
        # AR(3): means by the plain recursion, variances from the psi weights
        coef, history = np.array([0.4, 0.3, -0.2]), np.array([1.0, -2.0, 0.5, 1.5])
        f3 = ar.forecast(_model(coef, 0.2, 1.1), jnp.asarray(history), 8)
        win, means = list(history[-3:]), []
        for _ in range(8):
            means.append(0.2 + sum(coef[i] * win[-1 - i] for i in range(3)))
            win.append(means[-1])
        psi = [1.0]
        for j in range(1, 8):
            psi.append(sum(coef[i - 1] * psi[j - i] for i in range(1, min(j, 3) + 1)))
        np.testing.assert_allclose(np.asarray(f3.mean), means, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(f3.variance), 1.21 * np.cumsum(np.square(psi)), rtol=1e-12)
    # simulated paths from the same history have these means and variances
    model = _model(np.float32(coef), 0.2, 1.1)
    paths = jax.vmap(lambda k: ar.sample(model, jnp.asarray(history, jnp.float32), 8, key=k))(
        jax.random.split(jax.random.key(3), 20_000))
    sd = np.sqrt(np.asarray(f3.variance))
    assert np.all(np.abs(np.asarray(paths).mean(0) - means) < 4 * sd / np.sqrt(20_000))
    np.testing.assert_allclose(np.asarray(paths).var(0), sd**2, rtol=4 * np.sqrt(2 / 20_000))


def test_sampling_is_reproducible_and_compiles_once():
    model = _model(np.float32([0.5, 0.2]), 0.0, 1.0)
    a = ar.sample(model, jnp.zeros(2), 50, key=jax.random.key(4))
    b = ar.sample(model, jnp.zeros(2), 50, key=jax.random.key(4))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(ar.sample(model, jnp.zeros(2), 50, key=jax.random.key(5))))
    n = ar._sample_jit._cache_size()
    ar.sample(_model(np.float32([0.1, 0.3]), 2.0, 0.5), jnp.ones(5), 50, key=jax.random.key(6))
    assert ar._sample_jit._cache_size() == n  # new parameters and history: the same program


def test_bad_input():
    y = np.sin(np.arange(50.0)) + 0.1 * np.random.default_rng(0).standard_normal(50)
    model = ar.fit(y, 2)
    with pytest.raises(ValueError, match="order"):
        ar.fit(y, 0)
    with pytest.raises(TypeError, match="order"):
        ar.fit(y, 1.5)
    with pytest.raises(TypeError, match="`y`"):
        ar.fit(np.arange(50), 2)  # integers
    with pytest.raises(ValueError, match="`y`.*NaN"):
        ar.fit(np.where(np.arange(50) == 7, np.nan, y), 2)
    with pytest.raises(ValueError, match="`y` must hold at least 3"):
        ar.fit(y[:2], 2)
    with pytest.raises(ValueError, match="regression rows"):
        ar.fit(y[:4], 3)
    with pytest.raises(ValueError, match="`y`.*singular"):
        ar.fit(np.full(40, 3.0), 1)
    with pytest.raises(ValueError, match="`y` must have 1 or 2"):
        ar.fit(y.reshape(1, 1, -1), 2)
    with pytest.raises(TypeError, match="model"):
        ar.forecast("ar", y, 3)
    with pytest.raises(ValueError, match="history"):
        ar.forecast(model, y[:1], 3)
    with pytest.raises(ValueError, match="n_steps"):
        ar.forecast(model, y, 0)
    with pytest.raises(TypeError, match="key"):
        ar.sample(model, y, 3, key=None)
    with pytest.raises(ValueError, match="initial"):
        ar.sample(model, np.array([1.0, np.inf]), 3, key=jax.random.key(0))
    with pytest.raises(ValueError, match="not stationary"):
        ar.stationary_moments(_model([1.2]))
    # under jit a non-stationary model is a flag, and its moments are NaN, not numbers
    mom = jax.jit(lambda c: ar.stationary_moments(_model(c), 2))(jnp.array([1.2]))
    assert not bool(mom.stationary) and np.isnan(np.asarray(mom.autocovariance)).all()
