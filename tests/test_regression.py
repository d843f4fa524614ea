"""Likelihood regression: closed forms vs float64 numpy, Optax vs closed form, EM on three known lines."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxprob import regression


def _linear_data(rng, n=200, d=3, sigma=0.5):
    x = rng.normal(size=(n, d))
    w = np.arange(1.0, d + 1)
    y = 2.0 + x @ w + sigma * rng.normal(size=n)
    return x, y


def test_closed_form_vs_numpy_lstsq(rng):
    x, y = _linear_data(rng)
    with jax.enable_x64(True):
        m = regression.fit_linear_gaussian(x, y)
        assert m.coef.dtype == jnp.float64
    design = np.column_stack([np.ones(len(y)), x])
    beta = np.linalg.lstsq(design, y, rcond=None)[0]
    sigma = np.sqrt(np.mean((y - design @ beta) ** 2))
    np.testing.assert_allclose(float(m.intercept), beta[0], rtol=1e-10)
    np.testing.assert_allclose(np.asarray(m.coef), beta[1:], rtol=1e-10)
    np.testing.assert_allclose(float(m.sigma), sigma, rtol=1e-10)
    m32 = regression.fit_linear_gaussian(x.astype(np.float32), y.astype(np.float32))
    assert m32.coef.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(m32.coef), beta[1:], atol=1e-4)


def test_weights_equal_repetition(rng):
    x, y = _linear_data(rng, n=50, d=1)
    w = rng.integers(1, 4, 50)
    with jax.enable_x64(True):
        a = regression.fit_linear_gaussian(x, y, sample_weight=w.astype(float))
        b = regression.fit_linear_gaussian(np.repeat(x, w, 0), np.repeat(y, w))
    np.testing.assert_allclose(np.asarray(a.coef), np.asarray(b.coef), rtol=1e-10)
    np.testing.assert_allclose(float(a.sigma), float(b.sigma), rtol=1e-10)


def test_optax_nll_matches_closed_form(rng):
    x, y = _linear_data(rng)
    with jax.enable_x64(True):
        closed = regression.fit_linear_gaussian(x, y)
        m, info = regression.fit_linear_gaussian_optax(x, y, tol=1e-9)
        assert bool(info.converged)
        np.testing.assert_allclose(np.asarray(m.coef), np.asarray(closed.coef), atol=1e-6)
        np.testing.assert_allclose(float(m.intercept), float(closed.intercept), atol=1e-6)
        np.testing.assert_allclose(float(m.sigma), float(closed.sigma), atol=1e-6)
        nll = float(regression.negative_log_likelihood(x, y, closed))
        expected = -np.mean(scipy.stats.norm.logpdf(y, np.asarray(regression.predict_mean(x, closed)),
                                                     float(closed.sigma)))
        assert nll == pytest.approx(expected, rel=1e-10)
        assert float(info.loss) == pytest.approx(nll, abs=1e-10)


def test_heteroscedastic_recovers_log_sigma_slope(rng):
    x = rng.uniform(0, 2, 4000)
    y = 1.0 - x + np.exp(-1.0 + 0.8 * x) * rng.normal(size=4000)
    m, info = regression.fit_heteroscedastic(x.astype(np.float32), y.astype(np.float32))
    assert float(m.log_sigma_coef[0]) == pytest.approx(0.8, abs=0.08)
    assert float(m.log_sigma_intercept) == pytest.approx(-1.0, abs=0.08)
    assert float(m.coef[0]) == pytest.approx(-1.0, abs=0.05)
    homo = regression.fit_linear_gaussian(x.astype(np.float32), y.astype(np.float32))
    assert float(regression.negative_log_likelihood(x, y.astype(np.float32), m)) < float(
        regression.negative_log_likelihood(x, y.astype(np.float32), homo))


def _three_lines(rng, n_per=150):
    slopes, intercepts, sigmas = np.array([2.0, 3.5, 5.0]), np.array([20.0, 40.0, 10.0]), np.array([8.0, 8.0, 8.0])
    x = rng.uniform(20, 120, 3 * n_per)
    z = np.repeat(np.arange(3), n_per)
    y = intercepts[z] + slopes[z] * x + sigmas[z] * rng.normal(size=3 * n_per)
    return x, y, slopes, intercepts


def test_mixture_recovers_three_lines(rng):
    x, y, slopes, intercepts = _three_lines(rng)
    m, info = regression.fit_mixture(x.astype(np.float32), y.astype(np.float32), 3, key=jax.random.key(0),
                                     n_init=5)
    order = np.argsort(np.asarray(m.coefs[:, 0]))
    np.testing.assert_allclose(np.asarray(m.coefs[order, 0]), slopes, atol=0.15)
    np.testing.assert_allclose(np.asarray(m.intercepts[order]), intercepts, atol=10.0)
    np.testing.assert_allclose(np.asarray(m.weights), 1 / 3, atol=0.05)
    np.testing.assert_allclose(np.asarray(m.sigmas), 8.0, atol=1.5)
    trace = np.asarray(info.log_likelihood_trace)[: int(info.n_iter)]
    assert np.all(np.diff(trace) >= -1e-4)  # EM never decreases the likelihood
    assert int(info.best_restart) == int(np.nanargmax(np.asarray(info.restart_log_likelihoods)))
    shared, _ = regression.fit_mixture(x.astype(np.float32), y.astype(np.float32), 3, key=jax.random.key(0),
                                       n_init=3, max_iter=60, shared_sigma=True)
    assert np.ptp(np.asarray(shared.sigmas)) < 1e-4


def test_mixture_log_prob_mode_and_mean():
    m = regression.MixtureOfRegressions(jnp.array([0.6, 0.4]), jnp.array([[1.0], [-1.0]]), jnp.array([0.0, 0.5]),
                                        jnp.array([0.3, 0.5]))
    x = jnp.array([[1.0], [2.0], [3.0]])
    y = jnp.array([0.2, -1.0, 3.0])
    lp = np.asarray(regression.log_prob(x, y, m))
    xs = np.asarray(x)[:, 0]
    dens = 0.6 * scipy.stats.norm.pdf(np.asarray(y), xs, 0.3) + 0.4 * scipy.stats.norm.pdf(np.asarray(y), 0.5 - xs,
                                                                                            0.5)
    np.testing.assert_allclose(lp, np.log(dens), rtol=1e-5)
    grid = jnp.linspace(-8.0, 8.0, 16001)
    lp_grid = regression.log_prob(x, jnp.broadcast_to(grid, (3, grid.shape[0])), m)
    mode_g, mean_g = regression.grid_mode_and_mean(grid, lp_grid)
    np.testing.assert_allclose(np.asarray(regression.predict_mode(x, m)), np.asarray(mode_g), atol=2e-3)
    np.testing.assert_allclose(np.asarray(regression.predict_mean(x, m)), np.asarray(mean_g), atol=2e-3)
    # bimodal predictive: the mean lies between the modes, far from the mode
    assert np.all(np.abs(np.asarray(regression.predict_mode(x, m) - regression.predict_mean(x, m)))[1:] > 0.5)
    # single Gaussian: mode == mean
    lg = regression.LinearGaussian(jnp.array([2.0]), jnp.array(1.0), jnp.array(0.5))
    np.testing.assert_allclose(np.asarray(regression.predict_mode(x, lg)), np.asarray(regression.predict_mean(x, lg)),
                               atol=1e-5)


def test_jit_vmap_and_no_retrace(rng):
    x, y = _linear_data(rng, d=2)
    x, y = x.astype(np.float32), y.astype(np.float32)
    m = regression.fit_linear_gaussian(x, y)
    jitted = jax.jit(lambda a, b: regression.log_prob(a, b, m))
    np.testing.assert_allclose(np.asarray(jitted(x, y)), np.asarray(regression.log_prob(x, y, m)), rtol=1e-5)
    batched = jax.vmap(lambda a, b: regression.fit_linear_gaussian(a, b).coef)(np.stack([x, x]), np.stack([y, y]))
    np.testing.assert_allclose(np.asarray(batched[1]), np.asarray(m.coef), rtol=1e-5)
    from jaxprob.regression import _fit_lg, _fit_mixture

    regression.fit_linear_gaussian(x, y)
    size = _fit_lg._cache_size()
    regression.fit_linear_gaussian(x + 1, y)
    assert _fit_lg._cache_size() == size
    xs, ys = x[:60, 0], y[:60]
    regression.fit_mixture(xs, ys, 2, key=jax.random.key(0), n_init=2, max_iter=5)
    size = _fit_mixture._cache_size()
    regression.fit_mixture(xs + 1, ys, 2, key=jax.random.key(1), n_init=2, max_iter=5)
    assert _fit_mixture._cache_size() == size


def test_bad_input(rng):
    x, y = _linear_data(rng, n=20, d=2)
    with pytest.raises(ValueError, match="singular"):
        regression.fit_linear_gaussian(np.column_stack([x[:, 0], 2 * x[:, 0]]), y)
    with pytest.raises(ValueError, match="singular"):
        regression.fit_linear_gaussian(np.column_stack([x[:, 0], np.ones(20)]), y)
    with pytest.raises(ValueError, match="singular"):
        regression.fit_linear_gaussian(x[:2], y[:2])
    with pytest.raises(ValueError, match="NaN"):
        regression.fit_linear_gaussian(np.where(np.eye(20, 2) > 0, np.nan, x), y)
    with pytest.raises(ValueError, match="NaN"):
        regression.fit_heteroscedastic(x, np.full(20, np.inf))
    with pytest.raises(ValueError, match="samples"):
        regression.fit_linear_gaussian(x, y[:10])
    with pytest.raises(TypeError, match="floating"):
        regression.fit_linear_gaussian(np.arange(20), y)
    with pytest.raises(ValueError, match="needs at least"):
        regression.fit_mixture(x[:5, 0], y[:5], 3, key=jax.random.key(0))
    with pytest.raises(TypeError, match="key"):
        regression.fit_mixture(x[:, 0], y, 2, key=None)
    with pytest.raises(ValueError, match="features"):
        regression.log_prob(x, y, regression.LinearGaussian(jnp.ones(3), jnp.array(0.0), jnp.array(1.0)))
    with pytest.raises(TypeError, match="model"):
        regression.predict_mean(x, object())
