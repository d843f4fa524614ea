"""Likelihood regression: closed forms vs float64 numpy, Optax vs closed form, EM on three known lines, and the
mixture of regressions on the EM engine against an independent float64 NumPy EM."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from jaxprob import em, mixture, regression
from jaxprob.families.linear_regression import LinearRegression, linear_regression


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
    trace = np.asarray(info.trace)[: int(info.n_iter)]
    assert np.all(np.diff(trace) >= -1e-4)  # EM never decreases the likelihood
    assert int(info.best_restart) == int(np.nanargmax(np.asarray(info.restart_log_likelihoods)))
    shared, _ = regression.fit_mixture(x.astype(np.float32), y.astype(np.float32), 3, key=jax.random.key(0),
                                       n_init=3, max_iter=60, shared_sigma=True)
    assert np.ptp(np.asarray(shared.sigmas)) < 1e-4


def test_mixture_log_prob_mode_and_mean():
    m = regression.make_mixture(jnp.array([0.6, 0.4]), jnp.array([[1.0], [-1.0]]), jnp.array([0.0, 0.5]),
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


# ----------------------------------------------------------------------------------------------------------
# the mixture of regressions on the EM engine
# ----------------------------------------------------------------------------------------------------------
_COEFS = np.array([[1.0, -2.0], [-1.5, 0.5], [3.0, 1.0]])
_INTERCEPTS = np.array([0.0, 4.0, -3.0])
_SIGMAS = np.array([0.5, 1.0, 2.0])
_N_ITER = 20


def _lines_data(rng, n_per=40):
    z = np.repeat(np.arange(3), n_per)
    x = rng.normal(size=(3 * n_per, 2))
    y = _INTERCEPTS[z] + np.sum(x * _COEFS[z], axis=1) + _SIGMAS[z] * rng.normal(size=3 * n_per)
    return x, y


def _start(shared_sigma=False):
    """A start near the truth, the same for the library and the reference."""
    return regression.make_mixture(np.array([0.3, 0.3, 0.4]), _COEFS + 0.4, _INTERCEPTS - 0.5, np.full(3, 2.5),
                                   shared_sigma=shared_sigma)


def _numpy_em(x, y, w, weights, coefs, intercepts, sigmas, n_iter, shared_sigma, min_sigma):
    """EM for a mixture of linear regressions in float64, from the textbook: responsibilities from Gaussian
    log-densities, then per component an SVD least-squares fit of sqrt(r)-weighted rows, the weighted residual
    variance (pooled when shared), the floor, and the mean responsibility as the weight."""
    z = np.column_stack([x, np.ones(len(y))])
    beta = np.column_stack([coefs, intercepts]).astype(float)
    pi, s = np.array(weights, float), np.array(sigmas, float)
    trace = []
    for it in range(n_iter + 1):
        logp = np.log(pi) + scipy.stats.norm.logpdf(y[:, None], z @ beta.T, s)
        ll = scipy.special.logsumexp(logp, axis=1)
        trace.append(np.sum(w * ll) / np.sum(w))
        if it == n_iter:
            break
        r = np.exp(logp - ll[:, None]) * w[:, None]
        nk = r.sum(axis=0)
        rss = np.empty(len(pi))
        for k in range(len(pi)):
            sw = np.sqrt(r[:, k])
            beta[k] = np.linalg.lstsq(z * sw[:, None], y * sw, rcond=None)[0]
            rss[k] = np.sum(r[:, k] * (y - z @ beta[k]) ** 2)
        var = np.full(len(pi), rss.sum() / nk.sum()) if shared_sigma else rss / nk
        s = np.sqrt(np.maximum(var, min_sigma**2))
        pi = nk / nk.sum()
    return pi, beta[:, :-1], beta[:, -1], s, np.array(trace[:-1]), trace[-1]


@pytest.mark.parametrize("shared_sigma, min_sigma", [(False, 1e-3), (False, 0.8), (True, 1e-3)])
def test_mixture_em_matches_numpy_reference(rng, shared_sigma, min_sigma):
    """Same start, same iterations: the engine's trace and parameters are the textbook EM's, with the floor
    binding on the sharpest line when min_sigma = 0.8 (its true sigma is 0.5)."""
    x, y = _lines_data(rng)
    with jax.enable_x64(True):
        start = _start(shared_sigma)
        model, info = regression.fit_mixture(x, y, 3, init_params=start, max_iter=_N_ITER, tol=0.0,
                                             shared_sigma=shared_sigma, min_sigma=min_sigma)
        resp = regression.responsibilities(x, y, start)
    pi, coefs, intercepts, sigmas, trace, final = _numpy_em(
        x, y, np.ones(len(y)), start.weights, start.coefs, start.intercepts, start.sigmas, _N_ITER, shared_sigma,
        min_sigma)
    assert int(info.n_iter) == _N_ITER and not bool(info.converged) and not bool(info.nonfinite)
    assert not np.any(np.asarray(info.collapsed)) and not np.any(np.asarray(info.regularized))
    np.testing.assert_allclose(np.asarray(info.trace), trace, rtol=1e-6)
    np.testing.assert_allclose(float(info.log_likelihood), final, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(model.weights), pi, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(model.coefs), coefs, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(model.intercepts), intercepts, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.asarray(model.sigmas), sigmas, rtol=1e-6)
    if min_sigma == 0.8:
        assert float(np.min(sigmas)) == pytest.approx(0.8)  # the floor did bind
    # the E-step alone
    z = np.column_stack([x, np.ones(len(y))])
    beta = np.column_stack([np.asarray(start.coefs), np.asarray(start.intercepts)])
    logp = np.log(np.asarray(start.weights)) + scipy.stats.norm.logpdf(y[:, None], z @ beta.T, np.asarray(start.sigmas))
    np.testing.assert_allclose(np.asarray(resp), scipy.special.softmax(logp, axis=1), rtol=1e-9, atol=1e-12)


def test_mixture_em_never_decreases_the_likelihood(rng):
    """Random starts of fit_mixture (lines through random samples), every restart run to max_iter."""
    x, y = _lines_data(rng)
    y = y + 0.3 * rng.normal(size=y.shape)  # overlapping lines: slow, non-trivial EM paths
    with jax.enable_x64(True):
        for i, key in enumerate(jax.random.split(jax.random.key(3), 4)):
            start = regression.init_mixture(x, y, 3, key=key)
            _, info = regression.fit_mixture(x, y, 3, init_params=start, max_iter=_N_ITER, tol=0.0,
                                             min_sigma=1e-3)
            trace = np.append(np.asarray(info.trace)[: int(info.n_iter)], float(info.log_likelihood))
            assert np.all(np.isfinite(trace)), i
            assert np.all(np.diff(trace) >= -1e-10 * np.abs(trace[:-1])), (i, np.diff(trace).min())


def test_mixture_sample_weights_equal_repeated_rows(rng):
    x, y = _lines_data(rng)
    counts = rng.integers(0, 4, len(y))
    with jax.enable_x64(True):
        start = _start()
        a, ia = regression.fit_mixture(x, y, 3, init_params=start, max_iter=_N_ITER, tol=0.0,
                                       sample_weight=counts.astype(float))
        b, ib = regression.fit_mixture(np.repeat(x, counts, 0), np.repeat(y, counts), 3, init_params=start,
                                       max_iter=_N_ITER, tol=0.0)
    # the default floor is 1e-3 times the weighted sd of y: the sd of the repeated rows
    assert float(a.family.min_sigma) == pytest.approx(1e-3 * np.std(np.repeat(y, counts)), rel=1e-12)
    np.testing.assert_allclose(np.asarray(ia.trace), np.asarray(ib.trace), rtol=1e-10)
    chex.assert_trees_all_close(a, b, rtol=1e-9, atol=1e-12)


def test_mixture_restarts_and_init(rng):
    """Restart i of fit_mixture starts from init_mixture with split(key, n_init)[i]; the best restart is kept."""
    x, y = _lines_data(rng)
    key = jax.random.key(7)
    with jax.enable_x64(True):
        model, info = regression.fit_mixture(x, y, 3, key=key, n_init=3, max_iter=_N_ITER, tol=0.0, min_sigma=1e-3)
        lls = np.asarray(info.restart_log_likelihoods)
        assert int(info.best_restart) == int(np.argmax(lls))
        best = int(info.best_restart)
        start = regression.init_mixture(x, y, 3, key=jax.random.split(key, 3)[best])
        again, info1 = regression.fit_mixture(x, y, 3, init_params=start, max_iter=_N_ITER, tol=0.0, min_sigma=1e-3)
    chex.assert_trees_all_close(again.components, model.components, rtol=1e-9)
    assert float(info1.log_likelihood) == pytest.approx(float(lls[best]), rel=1e-12)
    np.testing.assert_allclose(np.asarray(start.sigmas), np.std(y), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(start.weights), 1 / 3, rtol=1e-12)


def test_mixture_statistics_are_additive_and_steps_agree(rng):
    """E-steps of two halves about the global centre add up to the E-step of the whole; the M-step of the sum is
    em_step; the implied statistics of a model give it back."""
    x, y = _lines_data(rng)
    with jax.enable_x64(True):
        model = _start()
        fam = model.family
        center = em.weighted_center((x, y), jnp.ones(len(y)))
        e_step = jax.jit(lambda a, b, c: em.e_step(em.prepare((a, b), fam, center=c), model))
        halves = [e_step(x[s], y[s], center) for s in (slice(0, 60), slice(60, None))]
        whole = e_step(x, y, center)
        summed = jax.tree.map(jnp.add, *halves)
        chex.assert_trees_all_close(summed, whole, rtol=1e-10)
        new, _, _ = jax.jit(em.m_step)(fam, summed, center, model)
        stepped, ll = regression.em_step(x, y, model)
        chex.assert_trees_all_close(new, stepped, rtol=1e-9)
        assert float(ll) == pytest.approx(float(whole.log_likelihood) / len(y), rel=1e-12)

        @jax.jit
        def round_trip(m, c):
            implied = m.family.implied_statistics(m.components, m.weights, c)
            return m.family.m_step(implied, m.weights, c, None, None)[0]

        chex.assert_trees_all_close(round_trip(model, center), model.components, rtol=1e-10)


def test_mixture_front_end_and_family_hooks(rng):
    """The model is an em.Mixture: the mixture front-end evaluates it on the pair (X, y)."""
    x, y = _lines_data(rng)
    model = _start()
    data = (x.astype(np.float32), y.astype(np.float32))
    lp = np.log(sum(float(w) * scipy.stats.norm.pdf(y, x @ c + b, s) for w, c, b, s in
                    zip(model.weights, np.asarray(model.coefs), model.intercepts, model.sigmas, strict=True)))
    np.testing.assert_allclose(np.asarray(mixture.log_prob(data, model)), lp, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(regression.log_prob(x, y, model)), lp, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(mixture.predict_proba(data, model)),
                               np.asarray(regression.responsibilities(x, y, model)), atol=1e-6)
    n, d, k = len(y), 2, 3
    bic = -2 * np.sum(lp) + (k * (d + 1) + k + (k - 1)) * np.log(n)
    assert float(mixture.bic(data, model)) == pytest.approx(bic, rel=1e-5)
    shared = regression.make_mixture(model.weights, model.coefs, model.intercepts, jnp.ones(3), shared_sigma=True)
    assert mixture.n_parameters(shared) == k * (d + 1) + 1 + (k - 1)
    assert isinstance(model.family, LinearRegression) and model.family == linear_regression()
    with pytest.raises(NotImplementedError, match="sample_y"):
        mixture.sample(model, 3, key=jax.random.key(0))
    with pytest.raises(TypeError, match="pair"):
        mixture.log_prob(x, model)


def test_mixture_singular_design_is_regularized(rng):
    """Collinear covariates: the weighted least-squares solve falls back to a tiny ridge, flags it, and its fitted
    values are those of the minimum-norm least-squares solution."""
    x = rng.normal(size=(30, 1))
    x = np.column_stack([x[:, 0], 2 * x[:, 0]])
    y = 1.0 + x[:, 0] + 0.1 * rng.normal(size=30)
    with jax.enable_x64(True):
        fam = linear_regression()

        @jax.jit
        def one_line(a, b):
            prep = em.prepare((a, b), fam)
            stats = em.statistics_from_responsibilities(prep, jnp.ones((30, 1), a.dtype), fam)
            return fam.m_step(stats.family, stats.counts, prep.center, None, None)

        params, regularized = one_line(x, y)
    assert bool(regularized[0])
    design = np.column_stack([x, np.ones(30)])
    fitted = design @ np.linalg.lstsq(design, y, rcond=None)[0]
    np.testing.assert_allclose(x @ np.asarray(params.coefs[0]) + float(params.intercepts[0]), fitted, rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(params.sigmas)))


def test_sample_y_moments():
    model = regression.make_mixture([0.3, 0.7], [[2.0], [-1.0]], [1.0, 0.0], [0.5, 1.5])
    x = np.full(4000, 2.0, np.float32)
    y, labels = regression.sample_y(x, model, key=jax.random.key(0))
    y, labels = np.asarray(y), np.asarray(labels)
    share = labels.mean()
    assert abs(share - 0.7) < 4 * np.sqrt(0.21 / 4000)
    for k, (mu, sd) in enumerate([(5.0, 0.5), (-2.0, 1.5)]):
        yk = y[labels == k]
        assert abs(yk.mean() - mu) < 4 * sd / np.sqrt(len(yk))
        assert abs(yk.std() / sd - 1) < 0.1
    again, _ = regression.sample_y(x, model, key=jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(again), y)
    lg = regression.LinearGaussian(jnp.array([2.0]), jnp.array(1.0), jnp.array(1e-3))
    y1, l1 = regression.sample_y(x[:3], lg, key=jax.random.key(1))
    np.testing.assert_allclose(np.asarray(y1), 5.0, atol=1e-2)
    assert np.all(np.asarray(l1) == 0)


def test_mixture_bad_input(rng):
    x, y = _lines_data(rng, n_per=5)
    model = _start()
    gmm = mixture.make_gmm(jnp.array([1.0]), jnp.zeros((1, 2)), jnp.ones(1), "spherical")
    with pytest.raises(TypeError, match="init_params"):
        regression.fit_mixture(x, y, 1, init_params=gmm)
    with pytest.raises(ValueError, match="components"):
        regression.fit_mixture(x, y, 2, init_params=model)
    with pytest.raises(TypeError, match="mixture of regressions"):
        regression.responsibilities(x, y, gmm)
    with pytest.raises(ValueError, match="features"):
        regression.em_step(x[:, :1], y, model)
    with pytest.raises(ValueError, match="positive weight"):
        regression.fit_mixture(x, y, 3, key=jax.random.key(0), sample_weight=np.r_[np.ones(8), np.zeros(7)])
    with pytest.raises(ValueError, match="min_sigma"):
        regression.fit_mixture(x, y, 2, key=jax.random.key(0), min_sigma=-1.0)
    with pytest.raises(ValueError, match="sigmas"):
        regression.make_mixture([0.5, 0.5], [[1.0], [2.0]], [0.0, 0.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="sum to one"):
        regression.make_mixture([0.5, 0.6], [[1.0], [2.0]], [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="intercepts"):
        regression.make_mixture([0.5, 0.5], [[1.0], [2.0]], [0.0], [1.0, 1.0])
    with pytest.raises(TypeError, match="shared_sigma"):
        regression.fit_mixture(x, y, 2, key=jax.random.key(0), shared_sigma="yes")
    with pytest.raises(ValueError, match=r"x\[1\]"):
        linear_regression().validate((x, y[:-1]))
