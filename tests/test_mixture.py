"""Gaussian mixtures by EM: scikit-learn traces, invariants, weights, restarts, vmap, sampling, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_blobs
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.mixture import GaussianMixture as SkGMM
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky, _estimate_gaussian_parameters

import jaxprob as jp
from jaxprob import mixture

CTS = jp.COVARIANCE_TYPES


def initial_params(rng, x, k, ct, reg=1e-6):
    """Initial parameters from random responsibilities, computed by scikit-learn's own estimator."""
    resp = rng.uniform(size=(x.shape[0], k))
    resp /= resp.sum(axis=1, keepdims=True)
    nk, means, covs = _estimate_gaussian_parameters(x.astype(np.float64), resp, reg, ct)
    return nk / nk.sum(), means, covs


def sklearn_trace(x, weights, means, covs, ct, n_iter, reg=1e-6):
    """Mean log-likelihood at each E-step of scikit-learn's EM from the given parameters (float64)."""
    gm = SkGMM(len(weights), covariance_type=ct, reg_covar=reg)
    gm.weights_, gm.means_, gm.covariances_ = weights, means, covs
    gm.precisions_cholesky_ = _compute_precision_cholesky(covs, ct)
    trace = []
    for _ in range(n_iter):
        log_prob_norm, log_resp = gm._e_step(x)
        trace.append(log_prob_norm)
        gm._m_step(x, log_resp)
    return np.array(trace), gm


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(1)
    x, y = make_blobs(rng, 100, [[0, 0, 0], [4, 4, 0], [0, 5, 5]], scale=1.0)
    x = x @ np.array([[1.0, 0.3, 0.0], [0.0, 1.0, 0.5], [0.2, 0.0, 0.7]]) + 10.0  # correlated, off-centre
    return x, y


@pytest.mark.parametrize("ct", CTS)
def test_em_trace_matches_sklearn_float64(blobs, ct):
    x, _ = blobs
    w0, m0, c0 = initial_params(np.random.default_rng(2), x, 3, ct)
    ref, gm = sklearn_trace(x, w0, m0, c0, ct, 25)
    with jax.enable_x64(True):
        init = mixture.make_gmm(w0, m0, c0, ct)
        params, info = mixture.fit(jnp.asarray(x), 3, covariance_type=ct, init_params=init, max_iter=25, tol=0.0)
        trace = np.asarray(info.trace)
        final = float(mixture.score(jnp.asarray(x), params))
    np.testing.assert_allclose(trace, ref, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(params.means), gm.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.asarray(params.covariances), gm.covariances_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.asarray(params.weights), gm.weights_, rtol=1e-8)
    assert int(info.n_iter) == 25 and not bool(info.converged)
    assert float(info.log_likelihood) == pytest.approx(final, rel=1e-12)
    assert final == pytest.approx(gm.score(x), rel=1e-10)


@pytest.mark.parametrize("ct", CTS)
def test_em_trace_matches_sklearn_float32(blobs, ct):
    x, _ = blobs
    w0, m0, c0 = initial_params(np.random.default_rng(3), x, 3, ct)
    ref, _ = sklearn_trace(x, w0, m0, c0, ct, 25)
    init = mixture.make_gmm(w0.astype(np.float32), m0.astype(np.float32), c0.astype(np.float32), ct)
    params, info = mixture.fit(x.astype(np.float32), 3, covariance_type=ct, init_params=init, max_iter=25, tol=0.0)
    assert params.means.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(info.trace), ref, rtol=1e-4)


def test_convergence_rule_and_n_iter_match_sklearn(blobs):
    x, _ = blobs
    w0, m0, c0 = initial_params(np.random.default_rng(4), x, 3, "full")
    gm = SkGMM(3, covariance_type="full", weights_init=w0, means_init=m0,
               precisions_init=np.linalg.inv(c0), tol=1e-3, max_iter=200).fit(x)
    with jax.enable_x64(True):
        _, info = mixture.fit(jnp.asarray(x), 3, init_params=mixture.make_gmm(w0, m0, c0, "full"), tol=1e-3,
                              max_iter=200)
        assert bool(info.converged) == gm.converged_
        assert int(info.n_iter) == gm.n_iter_
        assert float(info.trace[int(info.n_iter) - 1]) == pytest.approx(gm.lower_bound_, rel=1e-9)
        assert np.all(np.isnan(np.asarray(info.trace)[int(info.n_iter):]))


@settings(max_examples=12, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), ct=st.sampled_from(CTS), scale=st.floats(0.2, 5.0))
def test_em_never_decreases_log_likelihood(seed, ct, scale):
    rng = np.random.default_rng(seed)
    k = 3
    centers = rng.normal(0, 3 * scale, (k, 2))
    x = np.concatenate([c + rng.normal(0, 1, (20, 2)) * rng.uniform(0.3, 2.0, 2) for c in centers])
    with jax.enable_x64(True):
        _, info = mixture.fit(jnp.asarray(x), k, key=jax.random.key(seed), covariance_type=ct, max_iter=30,
                              tol=0.0, reg_covar=1e-12)
        trace = np.asarray(info.trace)
    trace = trace[np.isfinite(trace)]
    assert len(trace) == 30
    assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[:-1])), np.diff(trace).min()


def test_second_fit_with_same_shapes_does_not_retrace(blobs):
    x, _ = blobs
    x32 = x.astype(np.float32)
    mixture.fit(x32, 3, key=jax.random.key(0), covariance_type="diag", max_iter=20)
    before = mixture._fit_jit._cache_size()
    mixture.fit(x32 + 1.0, 3, key=jax.random.key(1), covariance_type="diag", max_iter=20, tol=1e-4,
                reg_covar=1e-5)
    assert mixture._fit_jit._cache_size() == before
    gmm = mixture.init(x32, 3, covariance_type="diag", key=jax.random.key(0))
    mixture.fit(x32, 3, init_params=gmm, covariance_type="diag", max_iter=20)
    before = mixture._fit_from_jit._cache_size()
    mixture.fit(x32 - 1.0, 3, init_params=gmm, covariance_type="diag", max_iter=20, tol=1e-4)
    assert mixture._fit_from_jit._cache_size() == before


def test_same_key_gives_bit_identical_results(blobs):
    x = blobs[0].astype(np.float32)
    a, ia = mixture.fit(x, 3, key=jax.random.key(7), n_init=3)
    b, ib = mixture.fit(x, 3, key=jax.random.key(7), n_init=3)
    for u, v in zip(jax.tree.leaves((a, ia)), jax.tree.leaves((b, ib)), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_restarts_keep_the_best(blobs):
    x = blobs[0].astype(np.float32)
    params, info = mixture.fit(x, 3, key=jax.random.key(3), n_init=5, init_method="random", max_iter=200)
    lls = np.asarray(info.restart_log_likelihoods)
    assert lls.shape == (5,)
    assert int(info.best_restart) == int(np.argmax(lls))
    assert float(info.log_likelihood) == pytest.approx(lls.max())
    assert float(mixture.score(x, params)) == pytest.approx(lls.max(), rel=1e-5)
    # restart i starts from mixture.init with the i-th split key, then runs the same EM
    keys = jax.random.split(jax.random.key(3), 5)
    start = mixture.init(x, 3, init_method="random", key=keys[2])
    _, single = mixture.fit(x, 3, init_params=start, max_iter=200)
    assert float(single.log_likelihood) == pytest.approx(lls[2], rel=1e-5)


@pytest.mark.parametrize("ct", CTS)
def test_integer_weights_equal_repeated_points(blobs, ct):
    x, _ = blobs
    rng = np.random.default_rng(5)
    reps = rng.integers(0, 4, x.shape[0])
    reps[0] = max(reps[0], 1)
    w0, m0, c0 = initial_params(rng, x, 3, ct)
    with jax.enable_x64(True):
        init = mixture.make_gmm(w0, m0, c0, ct)
        pw, iw = mixture.fit(jnp.asarray(x), 3, covariance_type=ct, init_params=init, max_iter=15, tol=0.0,
                             sample_weight=reps.astype(float))
        xr = np.repeat(x, reps, axis=0)
        pr, ir = mixture.fit(jnp.asarray(xr), 3, covariance_type=ct, init_params=init, max_iter=15, tol=0.0)
    for u, v in zip(jax.tree.leaves(pw), jax.tree.leaves(pr), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(np.asarray(iw.trace), np.asarray(ir.trace), rtol=1e-10)


def test_vmap_over_independent_data_sets(blobs):
    x = blobs[0].astype(np.float32)
    xs = jnp.stack([x, x[::-1] * 0.5, x + 3.0])
    init = mixture.init(x, 3, key=jax.random.key(0))

    def fit_one(xi):
        return mixture.fit(xi, 3, init_params=init, max_iter=40)

    batched, binfo = jax.vmap(fit_one)(xs)
    for i in range(3):
        p, info = fit_one(xs[i])
        np.testing.assert_allclose(np.asarray(batched.means[i]), np.asarray(p.means), rtol=1e-4, atol=1e-4)
        assert int(binfo.n_iter[i]) == int(info.n_iter)


def test_chunked_statistics_add_up(blobs):
    x, _ = blobs
    with jax.enable_x64(True):
        params = mixture.init(jnp.asarray(x), 3, key=jax.random.key(0))
        shift = jnp.asarray(x.mean(axis=0))
        whole = mixture.e_step(jnp.asarray(x), params, center=shift)
        parts = jax.tree.map(jnp.add, mixture.e_step(jnp.asarray(x[:120]), params, center=shift),
                             mixture.e_step(jnp.asarray(x[120:]), params, center=shift))
        for u, v in zip(jax.tree.leaves(whole), jax.tree.leaves(parts), strict=True):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-11, atol=1e-9)
        a = mixture.m_step(whole, params.family, shift)
        b, ll = mixture.em_step(jnp.asarray(x), params)
        np.testing.assert_allclose(np.asarray(a.covariances), np.asarray(b.covariances), rtol=1e-10)
        assert float(ll) == pytest.approx(float(whole.log_likelihood / whole.total_weight), rel=1e-12)


def test_predict_proba_predict_and_log_prob(blobs):
    x, y = blobs
    with jax.enable_x64(True):
        params, _ = mixture.fit(jnp.asarray(x), 3, key=jax.random.key(0))
        proba = np.asarray(mixture.predict_proba(jnp.asarray(x), params))
        labels = np.asarray(mixture.predict(jnp.asarray(x), params))
        lp = np.asarray(mixture.log_prob(jnp.asarray(x), params))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(labels, proba.argmax(axis=1))
    covs = np.asarray(params.covariances)
    ref = np.log(sum(float(params.weights[k]) * stats.multivariate_normal(np.asarray(params.means[k]), covs[k]).pdf(x)
                     for k in range(3)))
    np.testing.assert_allclose(lp, ref, rtol=1e-10)
    # the clusters are recovered up to a permutation of labels
    agree = max(np.mean(np.asarray([perm[v] for v in labels]) == y)
                for perm in __import__("itertools").permutations(range(3)))
    assert agree > 0.95


@pytest.mark.parametrize("ct", CTS)
def test_bic_aic_match_sklearn(blobs, ct):
    x, _ = blobs
    w0, m0, c0 = initial_params(np.random.default_rng(6), x, 3, ct)
    _, gm = sklearn_trace(x, w0, m0, c0, ct, 3)
    with jax.enable_x64(True):
        params = mixture.make_gmm(gm.weights_, gm.means_, gm.covariances_, ct)
        assert mixture.n_parameters(params) == gm._n_parameters()
        assert float(mixture.bic(jnp.asarray(x), params)) == pytest.approx(gm.bic(x), rel=1e-10)
        assert float(mixture.aic(jnp.asarray(x), params)) == pytest.approx(gm.aic(x), rel=1e-10)


@pytest.mark.parametrize("ct", CTS)
def test_sampling_matches_the_parameters(ct):
    rng = np.random.default_rng(8)
    k, d = 2, 2
    means = np.array([[-4.0, 0.0], [4.0, 2.0]])
    covs = {"full": np.array([[[1.0, 0.5], [0.5, 2.0]], [[0.5, -0.2], [-0.2, 0.3]]]),
            "tied": np.array([[1.0, 0.4], [0.4, 0.8]]), "diag": np.array([[1.0, 2.0], [0.5, 0.3]]),
            "spherical": np.array([1.0, 0.4])}[ct]
    del rng
    params = mixture.make_gmm(np.array([0.3, 0.7]), means, covs, ct)
    n = 100_000
    x, labels = mixture.sample(params, n, key=jax.random.key(0))
    x, labels = np.asarray(x), np.asarray(labels)
    assert abs(labels.mean() - 0.7) < 5 * np.sqrt(0.21 / n)
    dense = np.asarray(jp.covariances_from_precisions_cholesky(params.precisions_cholesky, ct))
    for j in range(k):
        xj = x[labels == j]
        np.testing.assert_allclose(xj.mean(axis=0), means[j], atol=0.03)
        if ct == "full":
            cj = dense[j]
        elif ct == "tied":
            cj = dense
        elif ct == "diag":
            cj = np.diag(dense[j])
        else:
            cj = dense[j] * np.eye(d)
        # five standard errors of the sample covariance: Var(S_ab) = (S_aa S_bb + S_ab^2) / n
        se = np.sqrt((np.outer(np.diag(cj), np.diag(cj)) + cj**2) / len(xj))
        assert np.all(np.abs(np.cov(xj.T) - cj) <= 5 * se)
    one = np.asarray(mixture.sample_component(params, 1, 20_000, key=jax.random.key(1)))
    np.testing.assert_allclose(one.mean(axis=0), means[1], atol=0.05)
    x2, _ = mixture.sample(params, n, key=jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(x2), x)


def test_anomaly_threshold_and_mask():
    params = mixture.make_gmm(np.array([1.0]), np.zeros((1, 2)), np.eye(2)[None], "full")
    x, _ = mixture.sample(params, 10_000, key=jax.random.key(0))
    scores = mixture.anomaly_score(x, params)
    t = mixture.anomaly_threshold(scores, contamination=0.05)
    mask = np.asarray(mixture.detect_anomalies(x, params, t))
    assert abs(mask.mean() - 0.05) < 0.002
    # for a standard 2-D normal, -log p(x) > t  <=>  |x|^2 > 2 (t - log 2 pi): a chi-square(2) tail
    eps = 1e-3
    t_eps = float(mixture.anomaly_threshold(None, epsilon=eps))
    radius2 = 2 * (t_eps - np.log(2 * np.pi))
    mask_eps = np.asarray(mixture.detect_anomalies(x, params, t_eps))
    np.testing.assert_array_equal(mask_eps, np.sum(np.asarray(x) ** 2, axis=1) > radius2)
    with pytest.raises(ValueError, match="exactly one"):
        mixture.anomaly_threshold(scores)
    with pytest.raises(ValueError, match="contamination"):
        mixture.anomaly_threshold(scores, contamination=1.5)


def test_fit_starts_where_init_and_kmeans_plusplus_start(blobs):
    # one restart of fit is seeded by the same k-means++ draw as init and kmeans.kmeans_plusplus with the same key
    x = jnp.asarray(blobs[0], jnp.float32)
    key = jax.random.key(3)
    starts = jax.jit(jp.em.initial_models, static_argnums=(1, 2))(x, jp.families.gaussian("diag"), 3, key=key)
    start = jax.tree.map(lambda a: a[0], starts)
    ref = mixture.init(x, 3, covariance_type="diag", key=key)
    for u, v in zip(jax.tree.leaves(start), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-6)
    centers, _ = jp.kmeans.kmeans_plusplus(x - jnp.mean(x, axis=0), 3, key=key)
    labels = np.argmin(((np.asarray(x - jnp.mean(x, axis=0))[:, None] - np.asarray(centers)) ** 2).sum(-1), 1)
    means = np.stack([np.asarray(x)[labels == j].mean(0) for j in range(3)])
    np.testing.assert_allclose(np.asarray(ref.means), means, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", mixture.INIT_METHODS)
def test_init_methods_give_valid_params(blobs, method):
    x = blobs[0].astype(np.float32)
    w = np.ones(x.shape[0], np.float32)
    w[:100] = 0.0  # first cluster excluded: seeds must come from weighted points
    params = mixture.init(x, 2, init_method=method, sample_weight=w, key=jax.random.key(0))
    assert np.all(np.isfinite(np.asarray(params.means)))
    assert float(params.weights.sum()) == pytest.approx(1.0, rel=1e-5)
    if method != "random":
        d_first = np.linalg.norm(np.asarray(params.means)[:, None] - x[:100].mean(axis=0), axis=-1)
        assert np.all(d_first > 2.0)


@pytest.mark.parametrize("ct", CTS)
def test_degenerate_data_fit_without_nan(ct):
    rng = np.random.default_rng(9)
    base = rng.normal(size=(30, 3)).astype(np.float32)
    base[:, 2] = 7.0  # zero-variance feature
    dup = np.concatenate([base, base, base[:5]])  # duplicate points
    for x in (dup, np.full_like(dup, 3.0)):  # and constant data
        params, info = mixture.fit(x, 3, key=jax.random.key(0), covariance_type=ct, max_iter=50)
        assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(params))
        assert np.isfinite(float(info.log_likelihood)) and not bool(info.nonfinite)


def test_collapsed_component_is_flagged():
    x = np.concatenate([np.random.default_rng(0).normal(size=(50, 2)), [[50.0, 50.0]]]).astype(np.float32)
    init = mixture.make_gmm(np.array([0.5, 0.25, 0.25]), np.array([[0.0, 0.0], [1.0, 1.0], [-200.0, -200.0]]),
                            np.ones(3), "spherical")
    params, info = mixture.fit(x, 3, covariance_type="spherical", init_params=init, max_iter=20)
    assert bool(info.collapsed[2])
    np.testing.assert_array_equal(np.asarray(params.means[2]), [-200.0, -200.0])
    assert np.all(np.isfinite(np.asarray(params.precisions_cholesky)))


def test_bad_input_is_named():
    x = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    key = jax.random.key(0)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="`x` contains 1 NaN"):
        mixture.fit(bad, 2, key=key)
    with pytest.raises(ValueError, match="`x` must have 2 dimension"):
        mixture.fit(x[:, 0], 2, key=key)
    with pytest.raises(TypeError, match="`x` must have a floating dtype"):
        mixture.fit(x.astype(np.int32), 2, key=key)
    with pytest.raises(ValueError, match="`n_components` must be <= 20"):
        mixture.fit(x, 21, key=key)
    with pytest.raises(ValueError, match="`n_components` must be >= 1"):
        mixture.fit(x, 0, key=key)
    with pytest.raises(ValueError, match="`sample_weight` must be non-negative"):
        mixture.fit(x, 2, key=key, sample_weight=-np.ones(20))
    with pytest.raises(ValueError, match="all are zero"):
        mixture.fit(x, 2, key=key, sample_weight=np.zeros(20))
    with pytest.raises(ValueError, match="covariance_type"):
        mixture.fit(x, 2, key=key, covariance_type="circular")
    with pytest.raises(TypeError, match="`key` is required"):
        mixture.fit(x, 2)
    params = mixture.init(x, 2, key=key)
    with pytest.raises(ValueError, match="`x` has 3 features"):
        mixture.log_prob(np.zeros((4, 3), np.float32), params)
    with pytest.raises(ValueError, match="covariance_type='diag'"):
        mixture.fit(x, 2, covariance_type="full", init_params=mixture.init(x, 2, covariance_type="diag", key=key))
    with pytest.raises(ValueError, match="positive definite"):
        mixture.make_gmm(np.ones(1), np.zeros((1, 2)), -np.eye(2)[None], "full")
    with pytest.raises(ValueError, match="`reg_covar`"):
        mixture.fit(x, 2, key=key, reg_covar=-1.0)


def _points_on_lines():
    """Two groups of points on lines in 3-D (nearly singular covariances), plus 1e-6 noise."""
    rng = np.random.default_rng(0)
    t = rng.normal(size=(500, 1))
    x = np.concatenate([t @ np.array([[1.0, 2.0, -1.0]]), t[:250] @ np.array([[0.5, -1.0, 3.0]]) + 5.0])
    return x + 1e-6 * rng.normal(size=x.shape)


@pytest.mark.parametrize("ct", ["full", "tied", "diag"])
def test_nearly_singular_data_against_sklearn(ct):
    x = _points_on_lines()
    sk = SkGMM(2, covariance_type=ct, random_state=0, n_init=3).fit(x)
    with jax.enable_x64(True):  # float64: the same optimum as scikit-learn
        model, info = mixture.fit(jnp.asarray(x), 2, key=jax.random.key(0), covariance_type=ct, n_init=3)
        assert float(info.log_likelihood) == pytest.approx(sk.score(x), rel=1e-6)
    # float32 cannot resolve variances of 1e-12 next to 25 (its resolution there is about 3e-6): the covariance is
    # regularised (flagged when it had to be), nothing is NaN, and the reported log-likelihood is the score of the
    # returned model. Where it lands between float32's floor and the float64 optimum depends on the rounding of the
    # second moments (it moves by nats with XLA's fusion choices), so the bound is the fit float32 can resolve: with
    # a ridge of 1e-3 it matches scikit-learn's float64 fit with that ridge, and the default ridge does no worse.
    x32 = x.astype(np.float32)
    model, info = mixture.fit(x32, 2, key=jax.random.key(0), covariance_type=ct, n_init=3)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(model.components))
    assert float(info.log_likelihood) == float(mixture.score(x32, model))
    if ct == "full":
        assert bool(jnp.any(info.regularized))
    sk_ridge = SkGMM(2, covariance_type=ct, random_state=0, n_init=3, reg_covar=1e-3).fit(x)
    _, info_ridge = mixture.fit(x32, 2, key=jax.random.key(0), covariance_type=ct, n_init=3, reg_covar=1e-3)
    assert float(info_ridge.log_likelihood) == pytest.approx(sk_ridge.score(x), abs=1e-2)
    assert float(info.log_likelihood) > sk_ridge.score(x) - 1e-2


def test_progress_callback_reports_the_trace():
    x = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    seen = []
    model, info = mixture.fit(x, 2, key=jax.random.key(0), callback=lambda i, v: seen.append((int(i), float(v))),
                              max_iter=15, tol=0.0)
    jax.effects_barrier()
    iters = [i for i, _ in seen]
    assert iters[0] == 0 and iters[1:int(info.n_iter) + 1] == list(range(1, int(info.n_iter) + 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_permuted_rows_give_the_same_mixture_up_to_label_order(seed):
    # property (#18): fit on x and on x with its rows permuted gives the same model up to the order of components
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    x = np.concatenate([c + rng.normal(size=(80, 2)) for c in centers]).astype(np.float32)
    perm = rng.permutation(x.shape[0])
    a, _ = mixture.fit(x, 3, key=jax.random.key(seed), n_init=4)
    b, _ = mixture.fit(x[perm], 3, key=jax.random.key(seed + 10), n_init=4)
    oa, ob = np.argsort(np.asarray(a.means)[:, 0] + 10 * np.asarray(a.means)[:, 1]), \
        np.argsort(np.asarray(b.means)[:, 0] + 10 * np.asarray(b.means)[:, 1])
    np.testing.assert_allclose(np.asarray(a.means)[oa], np.asarray(b.means)[ob], atol=1e-3)
    np.testing.assert_allclose(np.asarray(a.weights)[oa], np.asarray(b.weights)[ob], atol=1e-4)
    np.testing.assert_allclose(np.asarray(a.covariances)[oa], np.asarray(b.covariances)[ob], atol=1e-3)


@pytest.mark.parametrize("ct", CTS)
def test_zero_weight_component_drops_out_of_the_e_step(ct):
    # The Gaussian family folds the log-weights into its product; a component of weight 0 holding NaN and inf
    # parameters must contribute nothing: the E-step equals the E-step of the mixture without it, and its
    # live columns equal the generic log-likelihood plus log-weight.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    weights, means, covs = initial_params(rng, x, 3, ct)
    live = mixture.make_gmm(weights.astype(np.float32), means.astype(np.float32), covs.astype(np.float32), ct)
    comps = live.components
    nan_row = lambda a: jnp.concatenate([a, jnp.full_like(a[:1], jnp.nan)])  # noqa: E731
    inf_row = lambda a: jnp.concatenate([a, jnp.full_like(a[:1], jnp.inf)])  # noqa: E731
    if ct == "tied":  # the covariance is shared: only the mean is per component
        dead = type(comps)(nan_row(comps.means), comps.covariances, comps.precisions_cholesky)
    else:
        dead = type(comps)(nan_row(comps.means), nan_row(comps.covariances), inf_row(comps.precisions_cholesky))
    with_dead = jp.em.Mixture(jnp.concatenate([live.weights, jnp.zeros(1, jnp.float32)]), dead, live.family)
    prep = jp.em.prepare(jnp.asarray(x), live.family)
    lp = live.family.weighted_log_prob(prep.data, with_dead.components, prep.center, with_dead.weights)
    generic = jp.em.weight_log_probs(live.family.log_prob(prep.data, live.components, prep.center), live.weights)
    np.testing.assert_allclose(np.asarray(lp[:, :3]), np.asarray(generic), rtol=1e-5, atol=1e-4)
    assert np.all(np.isfinite(np.asarray(lp[:, 3]))) and float(jnp.max(lp[:, 3] - jnp.max(lp[:, :3], 1))) < -1e30
    a, b = jp.em.e_step(prep, with_dead), jp.em.e_step(prep, live)
    assert float(a.counts[3]) == 0.0
    np.testing.assert_allclose(np.asarray(a.counts[:3]), np.asarray(b.counts), rtol=1e-5)
    np.testing.assert_allclose(float(a.log_likelihood), float(b.log_likelihood), rtol=1e-6)
    fam_a = jax.tree.map(lambda s: s[:3] if s.shape[0] == 4 else s, a.family)
    chex.assert_trees_all_close(fam_a, b.family, rtol=1e-5, atol=1e-4)


def test_regularized_cholesky_grows_the_ridge_only_where_needed():
    # Reference: NumPy's Cholesky on the same ladder of ridges (reg x 10**j), the first that succeeds.
    from jaxprob.families.gaussian import regularized_cholesky

    rng = np.random.default_rng(4)
    a = rng.normal(size=(4, 3, 3))
    good = np.einsum("kij,klj->kil", a, a) + 0.5 * np.eye(3)
    v = rng.normal(size=(3, 1))
    cov = np.stack([good[0], v @ v.T, good[1], np.ones((3, 3))]).astype(np.float32)  # two of rank one
    reg = np.float32(1e-4)

    def reference(c):
        for j in range(7):
            trial = c + (0.0 if j == 0 else reg * 10.0**j) * np.eye(3, dtype=np.float32)
            try:
                lower = np.linalg.cholesky(trial.astype(np.float64))
            except np.linalg.LinAlgError:
                continue
            return trial, np.linalg.inv(lower).T, j > 0
        raise AssertionError("no candidate factorises")

    for fn in (regularized_cholesky, jax.jit(regularized_cholesky)):
        got_c, got_p, retried = fn(jnp.asarray(cov), reg)
        for k in range(4):
            want_c, want_p, want_r = reference(cov[k])
            assert bool(retried[k]) == want_r
            np.testing.assert_allclose(np.asarray(got_c[k]), want_c, rtol=1e-6)
            np.testing.assert_allclose(np.asarray(got_p[k]), want_p, rtol=2e-3, atol=2e-3)
    # vmap turns the cond into a select of both branches: the same answer
    pair = jnp.stack([jnp.asarray(cov), jnp.asarray(good, jnp.float32)])
    batched = jax.vmap(regularized_cholesky, in_axes=(0, None))(pair, reg)
    np.testing.assert_array_equal(np.asarray(batched[2][0]), np.asarray(retried))
    assert not np.any(np.asarray(batched[2][1]))
    np.testing.assert_allclose(np.asarray(batched[1][0]), np.asarray(got_p), rtol=1e-6, atol=1e-6)
    # where every covariance factorises, the gradient is the plain factor's (up to its symmetric part: one
    # reads a triangle, the other symmetrises)
    good32 = jnp.asarray(good, jnp.float32)
    g = jax.grad(lambda c: jnp.sum(jnp.sin(regularized_cholesky(c, reg)[1])))(good32)
    plain = jax.grad(lambda c: jnp.sum(jnp.sin(jnp.linalg.inv(jnp.linalg.cholesky(c)).mT)))(good32)
    np.testing.assert_allclose(np.asarray(g + g.mT) / 2, np.asarray(plain + plain.mT) / 2, rtol=1e-3, atol=1e-4)
