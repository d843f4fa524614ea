"""Densities against scipy.stats in float64, closed forms and invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp as np_logsumexp

import jaxprob as jp


def random_spd(rng, d, k=None):
    shape = (d, d) if k is None else (k, d, d)
    a = rng.standard_normal(shape)
    return a @ np.swapaxes(a, -1, -2) + d * np.eye(d)


def covs_for(rng, ct, k, d):
    if ct == "full":
        return random_spd(rng, d, k)
    if ct == "tied":
        return random_spd(rng, d)
    if ct == "diag":
        return rng.uniform(0.3, 3.0, (k, d))
    return rng.uniform(0.3, 3.0, k)


def full_cov(ct, covs, k, d):
    """Dense (K, D, D) covariances for any covariance type (the reference representation)."""
    if ct == "full":
        return covs
    if ct == "tied":
        return np.broadcast_to(covs, (k, d, d))
    if ct == "diag":
        return np.stack([np.diag(c) for c in covs])
    return np.stack([c * np.eye(d) for c in covs])


@pytest.mark.parametrize("ct", jp.COVARIANCE_TYPES)
def test_component_and_mixture_log_prob_match_scipy(rng, ct):
    k, d, n = 3, 4, 50
    means = rng.standard_normal((k, d)) * 3
    covs = covs_for(rng, ct, k, d)
    weights = rng.dirichlet(np.ones(k))
    x = rng.standard_normal((n, d)) * 3
    dense = full_cov(ct, covs, k, d)
    ref = np.stack([stats.multivariate_normal(means[j], dense[j]).logpdf(x) for j in range(k)], axis=1)
    with jax.enable_x64(True):
        prec = jp.precisions_cholesky(jnp.asarray(covs), ct)
        got = np.asarray(jp.component_log_prob(jnp.asarray(x), jnp.asarray(means), prec, ct))
        mix = np.asarray(jp.mixture_log_prob(jnp.asarray(x), jnp.asarray(weights), jnp.asarray(means), prec, ct))
        back = np.asarray(jp.covariances_from_precisions_cholesky(prec, ct))
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(mix, np_logsumexp(ref + np.log(weights), axis=1), rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(back, covs, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("ct", jp.COVARIANCE_TYPES)
def test_precisions_cholesky_matches_sklearn(rng, ct):
    from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

    covs = covs_for(rng, ct, 3, 4)
    with jax.enable_x64(True):
        got = np.asarray(jp.precisions_cholesky(jnp.asarray(covs), ct))
    np.testing.assert_allclose(got, _compute_precision_cholesky(covs, ct), rtol=1e-12, atol=1e-13)


def test_single_gaussians_match_scipy(rng):
    d = 3
    mean = rng.standard_normal(d)
    cov = random_spd(rng, d)
    var = rng.uniform(0.5, 2.0, d)
    x = rng.standard_normal((20, d))
    with jax.enable_x64(True):
        full = np.asarray(jp.gaussian_log_prob(x, mean, cov))
        diag = np.asarray(jp.gaussian_log_prob_diag(x, mean, var))
        sph = np.asarray(jp.gaussian_log_prob_spherical(x, mean, 1.7))
        one = float(jp.gaussian_log_prob(x[0], mean, cov))
    np.testing.assert_allclose(full, stats.multivariate_normal(mean, cov).logpdf(x), rtol=1e-12)
    np.testing.assert_allclose(diag, stats.multivariate_normal(mean, np.diag(var)).logpdf(x), rtol=1e-12)
    np.testing.assert_allclose(sph, stats.multivariate_normal(mean, 1.7 * np.eye(d)).logpdf(x), rtol=1e-12)
    assert one == pytest.approx(full[0], rel=1e-13)


def test_densities_integrate_to_one_on_grids():
    # 1-D mixture on a wide grid (trapezoid rule)
    weights = jnp.array([0.3, 0.7])
    means = jnp.array([[-2.0], [1.5]])
    prec = jp.precisions_cholesky(jnp.array([0.5, 2.0]), "spherical")
    grid = np.linspace(-15, 15, 20001)
    with jax.enable_x64(True):
        dens = np.exp(np.asarray(jp.mixture_log_prob(jnp.asarray(grid[:, None]), weights, means, prec, "spherical")))
    assert np.trapezoid(dens, grid) == pytest.approx(1.0, abs=1e-8)
    # 2-D full-covariance Gaussian on a grid
    cov = np.array([[1.0, 0.6], [0.6, 0.8]])
    g = np.linspace(-8, 8, 401)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
    with jax.enable_x64(True):
        dens2 = np.exp(np.asarray(jp.gaussian_log_prob(pts, np.zeros(2), cov))).reshape(xx.shape)
    assert np.trapezoid(np.trapezoid(dens2, g, axis=1), g) == pytest.approx(1.0, abs=1e-6)


def test_discrete_information_measures_match_scipy(rng):
    p = rng.dirichlet(np.ones(6), size=5)
    q = rng.dirichlet(np.ones(6), size=5)
    p[0, 2] = 0.0
    p[0] /= p[0].sum()
    with jax.enable_x64(True):
        h = np.asarray(jp.entropy(p))
        ce = np.asarray(jp.cross_entropy(p, q))
        kl = np.asarray(jp.kl_divergence(p, q))
    np.testing.assert_allclose(h, stats.entropy(p, axis=1), rtol=1e-12)
    np.testing.assert_allclose(kl, stats.entropy(p, q, axis=1), rtol=1e-10)
    np.testing.assert_allclose(ce, h + kl, rtol=1e-12)
    assert np.all(kl >= 0)
    # zero of q where p > 0: infinite divergence; zero of p: no contribution
    assert np.isinf(float(jp.kl_divergence(jnp.array([0.5, 0.5]), jnp.array([1.0, 0.0]))))
    assert float(jp.kl_divergence(jnp.array([1.0, 0.0]), jnp.array([0.5, 0.5]))) == pytest.approx(np.log(2))


def test_gaussian_kl_and_entropy_closed_forms(rng):
    d = 3
    m0, m1 = rng.standard_normal(d), rng.standard_normal(d)
    s0, s1 = random_spd(rng, d), random_spd(rng, d)
    inv1 = np.linalg.inv(s1)
    ref = 0.5 * (np.trace(inv1 @ s0) + (m1 - m0) @ inv1 @ (m1 - m0) - d
                 + np.log(np.linalg.det(s1) / np.linalg.det(s0)))
    with jax.enable_x64(True):
        kl = float(jp.gaussian_kl(m0, s0, m1, s1))
        kl_self = float(jp.gaussian_kl(m0, s0, m0, s0))
        h = float(jp.gaussian_entropy(s0))
    assert kl == pytest.approx(ref, rel=1e-11)
    assert kl_self == pytest.approx(0.0, abs=1e-12)
    assert h == pytest.approx(stats.multivariate_normal(m0, s0).entropy(), rel=1e-12)


def test_softmax_helpers_and_categorical(rng):
    z = rng.standard_normal((4, 5)) * 50
    with jax.enable_x64(True):
        ls = np.asarray(jp.log_softmax(z))
        s = np.asarray(jp.softmax(z))
        lab = jnp.array([0, 1, 2, 4])
        cat = np.asarray(jp.categorical_log_prob(lab, z))
    np.testing.assert_allclose(ls, z - np_logsumexp(z, axis=1, keepdims=True), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s.sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(cat, ls[np.arange(4), [0, 1, 2, 4]], rtol=1e-12, atol=1e-12)


def test_grad_and_vmap_compose():
    cov = jnp.array([[2.0, 0.3], [0.3, 1.0]])
    mean = jnp.array([0.5, -1.0])
    x = jnp.array([1.0, 2.0])
    with jax.enable_x64(True):
        cov64, mean64, x64 = (jnp.asarray(a, jnp.float64) for a in (cov, mean, x))
        g = jax.grad(lambda m: jp.gaussian_log_prob(x64, m, cov64))(mean64)
        expected = np.linalg.solve(np.asarray(cov64), np.asarray(x64 - mean64))
        np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-12)
        batch = jax.vmap(lambda xi: jp.gaussian_log_prob(xi, mean64, cov64))(jnp.stack([x64, -x64]))
        np.testing.assert_allclose(np.asarray(batch), np.asarray(jp.gaussian_log_prob(jnp.stack([x64, -x64]),
                                                                                     mean64, cov64)))
    jitted = jax.jit(jp.mixture_log_prob, static_argnums=4)
    out = jitted(jnp.zeros((2, 2)), jnp.array([1.0]), jnp.zeros((1, 2)), jnp.ones((1, 2)), "diag")
    assert out.shape == (2,) and out.dtype == jnp.float32


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="covariance_type"):
        jp.precisions_cholesky(jnp.ones((2, 2)), "banana")
    with pytest.raises(ValueError, match="`x` has 3 features"):
        jp.component_log_prob(jnp.zeros((2, 3)), jnp.zeros((1, 2)), jnp.ones((1, 2)), "diag")
    with pytest.raises(ValueError, match="precisions_cholesky"):
        jp.component_log_prob(jnp.zeros((2, 2)), jnp.zeros((1, 2)), jnp.ones((2, 2)), "diag")
    with pytest.raises(TypeError, match="`x` must have a floating dtype"):
        jp.gaussian_log_prob(jnp.zeros((2, 2), jnp.int32), jnp.zeros(2), jnp.eye(2))
    with pytest.raises(ValueError, match="`p` and `q`"):
        jp.kl_divergence(jnp.ones(2) / 2, jnp.ones(3) / 3)
    with pytest.raises(ValueError, match="`cov` must have shape"):
        jp.gaussian_log_prob(jnp.zeros((2, 2)), jnp.zeros(2), jnp.eye(3))
