"""Kernel density estimation: against scikit-learn, brute-force float64 sums and scipy's bandwidth rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.neighbors import KernelDensity

from jaxprob import kde


def _brute_force(q, x, w, h, kernel):
    """float64 numpy: log sum_i w_i |H|^-1/2 K(H^-1/2 (q - x_i))."""
    d = x.shape[1]
    w = w / w.sum()
    l_inv = np.linalg.inv(np.linalg.cholesky(h))
    z = (q[:, None, :] - x[None, :, :]) @ l_inv.T
    sq = np.sum(z**2, axis=-1)
    log_vol = 0.5 * d * np.log(np.pi) - scipy.special.gammaln(d / 2 + 1)
    if kernel == "gaussian":
        k = np.exp(-0.5 * sq) / (2 * np.pi) ** (d / 2)
    elif kernel == "epanechnikov":
        k = np.where(sq < 1, (d + 2) / 2 * np.exp(-log_vol) * (1 - sq), 0.0)
    else:
        k = np.where(sq < 1, np.exp(-log_vol), 0.0)
    with np.errstate(divide="ignore"):
        return np.log(k @ w) - 0.5 * np.log(np.linalg.det(h))


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov", "tophat"])
def test_matches_sklearn_score_samples(rng, kernel):
    x = rng.standard_normal((300, 2))
    q = 1.5 * rng.standard_normal((200, 2))
    w = rng.uniform(0.1, 1.0, 300)
    ref = KernelDensity(bandwidth=0.6, kernel=kernel).fit(x, sample_weight=w).score_samples(q)
    with jax.enable_x64(True):
        model = kde.fit(x, bandwidth=0.6, kernel=kernel, sample_weight=w)
        got = np.asarray(kde.log_prob(q, model, query_chunk=37, point_chunk=64))
    # scikit-learn returns log(tiny) (about -40) instead of -inf outside a compact kernel's support
    inside = ref > -30
    np.testing.assert_allclose(got[inside], ref[inside], rtol=1e-9, atol=1e-9)
    assert np.all(np.isneginf(got[~inside]))
    assert not np.any(np.isnan(got))


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov", "tophat"])
def test_full_bandwidth_matches_brute_force(rng, kernel):
    x = rng.standard_normal((150, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.5]]) + 10.0
    q = x[:40] + 0.3 * rng.standard_normal((40, 3))
    h = np.array([[0.5, 0.2, 0.0], [0.2, 0.4, 0.1], [0.0, 0.1, 0.3]])
    w = rng.uniform(0.0, 1.0, 150)
    ref = _brute_force(q, x, w, h, kernel)
    with jax.enable_x64(True):
        got = np.asarray(kde.log_prob(q, kde.fit(x, bandwidth=h, kernel=kernel, sample_weight=w),
                                      query_chunk=16, point_chunk=50))
    fin = np.isfinite(ref)
    np.testing.assert_array_equal(np.isfinite(got), fin)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-10, atol=1e-10)


def test_float32_chunked_agrees_with_float64(rng):
    x = (rng.standard_normal((3000, 2)) * [1.0, 10.0] + [3.0, 70.0]).astype(np.float32)
    q = x[::7] + np.float32(0.1)
    model = kde.fit(x)
    got = kde.log_prob(q, model, query_chunk=100, point_chunk=512)
    assert got.dtype == jnp.float32
    with jax.enable_x64(True):
        ref = _brute_force(q.astype(np.float64), x.astype(np.float64), np.ones(3000),
                           np.asarray(kde.bandwidth_scott(x.astype(np.float64))), "gaussian")
    np.testing.assert_allclose(np.asarray(got), ref, atol=2e-4)


@pytest.mark.parametrize("rule", ["scott", "silverman"])
def test_bandwidth_rules_match_scipy(rng, rule):
    x = rng.standard_normal((200, 2)) @ np.array([[1.0, 0.4], [0.0, 2.0]])
    w = rng.uniform(0.2, 1.0, 200)
    with jax.enable_x64(True):
        fn = kde.bandwidth_scott if rule == "scott" else kde.bandwidth_silverman
        h = np.asarray(fn(x, sample_weight=w))
        h_diag = np.asarray(fn(x, sample_weight=w, bandwidth_type="diag"))
    ref = scipy.stats.gaussian_kde(x.T, bw_method=rule, weights=w).covariance
    np.testing.assert_allclose(h, ref, rtol=1e-10)
    np.testing.assert_allclose(h_diag, np.diag(np.diag(ref)), rtol=1e-10)


def test_scott_log_density_matches_scipy(rng):
    x = rng.standard_normal((100, 2))
    q = rng.standard_normal((20, 2))
    with jax.enable_x64(True):
        got = np.asarray(kde.log_prob(q, kde.fit(x, bandwidth="scott")))
    np.testing.assert_allclose(got, scipy.stats.gaussian_kde(x.T).logpdf(q.T), rtol=1e-10)


def test_select_bandwidth_grid_equals_individual_scores(rng):
    x = rng.standard_normal((300, 1)).astype(np.float32)
    train, valid = x[:200], x[200:]
    scales = jnp.array([0.1, 0.5, 1.0, 2.0, 8.0])
    res = kde.select_bandwidth(train, valid, scales)
    h0 = kde.bandwidth_scott(train)
    for s, sc in zip(scales, res.scores, strict=True):
        one = kde.score(valid, kde.fit(train, bandwidth=h0 * s**2))
        np.testing.assert_allclose(float(sc), float(one), rtol=1e-5)
    assert int(res.best_index) == int(np.argmax(np.asarray(res.scores)))
    assert float(res.best_scale) in (0.5, 1.0, 2.0)
    np.testing.assert_allclose(np.asarray(res.best_bandwidth), np.asarray(h0 * res.best_scale**2), rtol=1e-6)


def test_select_bandwidth_compact_kernel_is_never_nan(rng):
    x = rng.standard_normal((100, 1))
    res = kde.select_bandwidth(x[:50], x[50:] + 5.0, jnp.array([0.01, 1.0, 40.0]), kernel="epanechnikov")
    scores = np.asarray(res.scores)
    assert not np.any(np.isnan(scores)) and np.isneginf(scores[0]) and np.isfinite(scores[-1])


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov"])
def test_sample_moments(rng, kernel):
    x = rng.standard_normal((50, 2)) * [1.0, 3.0]
    w = rng.uniform(0.0, 1.0, 50)
    h = np.array([[0.5, 0.1], [0.1, 0.2]])
    with jax.enable_x64(True):
        model = kde.fit(x, bandwidth=h, kernel=kernel, sample_weight=w)
        s = np.asarray(kde.sample(model, 100_000, key=jax.random.key(0)))
    wn = w / w.sum()
    mean = wn @ x
    cov_points = (x - mean).T @ ((x - mean) * wn[:, None])
    kernel_cov = h if kernel == "gaussian" else h / (2 + 4)  # Epanechnikov: Cov z = I / (D + 4)
    np.testing.assert_allclose(s.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(s.T), cov_points + kernel_cov, atol=0.06)


def test_epanechnikov_integrates_to_one():
    x = jnp.array([[0.0], [0.3], [2.0]])
    model = kde.fit(x, bandwidth=0.5, kernel="epanechnikov")
    grid = jnp.linspace(-2.0, 4.0, 6001)[:, None]
    dens = jnp.exp(kde.log_prob(grid, model))
    assert abs(float(jnp.sum(dens) * (grid[1, 0] - grid[0, 0])) - 1.0) < 1e-3


def test_no_retrace_and_user_jit(rng):
    x = rng.standard_normal((100, 2)).astype(np.float32)
    model = kde.fit(x, bandwidth=0.5)
    kde.log_prob(x[:30], model)
    n = kde._log_prob_jit._cache_size()
    kde.log_prob(x[30:60] + 1.0, kde.fit(x + 1.0, bandwidth=0.7))
    assert kde._log_prob_jit._cache_size() == n
    jitted = jax.jit(lambda q, m: kde.log_prob(q, m))
    expected = np.asarray(kde.log_prob(x[:5], model))
    np.testing.assert_allclose(np.asarray(jitted(x[:5], model)), expected, rtol=1e-6)
    vm = jax.vmap(lambda q: kde.log_prob(q[None], model)[0])(x[:5])
    np.testing.assert_allclose(np.asarray(vm), expected, rtol=1e-5)


@settings(max_examples=3, deadline=None)
@given(qc=st.integers(1, 40), pc=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_chunk_sizes_do_not_change_result(qc, pc, seed):
    r = np.random.default_rng(seed)
    x = r.standard_normal((30, 2))
    q = 3.0 * r.standard_normal((25, 2))
    with jax.enable_x64(True):
        model = kde.fit(x, bandwidth=0.4, kernel="epanechnikov")
        a = np.asarray(kde.log_prob(q, model, query_chunk=qc, point_chunk=pc))
        b = np.asarray(kde.log_prob(q, model, query_chunk=1000, point_chunk=1000))
    assert not np.any(np.isnan(a))
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_bad_input():
    x = np.array([[0.0, 1.0], [2.0, 0.5], [2.0, -1.0], [5.0, 0.5], [5.0, -1.0]])
    model = kde.fit(x, bandwidth=1.0)
    with pytest.raises(TypeError, match="x"):
        kde.fit(np.ones((5, 2), int))
    with pytest.raises(ValueError, match="NaN"):
        kde.fit(np.array([[np.nan, 0.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="bandwidth"):
        kde.fit(x, bandwidth=-1.0)
    with pytest.raises(ValueError, match="bandwidth"):
        kde.fit(x, bandwidth="plugin")
    with pytest.raises(ValueError, match="positive definite"):
        kde.fit(x, bandwidth=np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="bandwidth"):
        kde.fit(x, bandwidth=np.ones(3))
    with pytest.raises(ValueError, match="kernel"):
        kde.fit(x, kernel="cosine")
    with pytest.raises(ValueError, match="feature 1 of `x` is constant"):
        kde.fit(np.c_[np.arange(5.0), np.ones(5)])
    with pytest.raises(ValueError, match="singular"):
        kde.fit(np.c_[np.arange(5.0), 2.0 * np.arange(5.0)])
    with pytest.raises(ValueError, match="two points"):
        kde.fit(np.ones((1, 2)))
    with pytest.raises(ValueError, match="features"):
        kde.log_prob(np.ones((3, 3)), model)
    with pytest.raises(ValueError, match="sample_weight"):
        kde.fit(x, sample_weight=-np.ones(5))
    with pytest.raises(TypeError, match="key"):
        kde.sample(model, 3, key=None)
    with pytest.raises(ValueError, match="n_samples"):
        kde.sample(model, 0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="scales"):
        kde.select_bandwidth(x, x, jnp.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="KDE"):
        kde.log_prob(x, "model")


# ----------------------------------------------------------------------------------------------------------
# issue 18: top-hat boundary, constant features, permutations
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("h", [1.0, 3.0])
def test_tophat_boundary_is_open_as_in_sklearn_on_integer_old_faithful(h):
    # Old Faithful rounded to integers: many pairs of points lie exactly h apart (3-4-5 triangles too), where
    # the decision must follow the rule (an open ball, as scikit-learn's `dist < h`), not the rounding
    from jaxprob import datasets

    x = np.round(datasets.load_faithful(np.float64))
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    assert np.sum(d == h) > 50  # the data do test the boundary
    ref = KernelDensity(kernel="tophat", bandwidth=h).fit(x).score_samples(x)
    brute = np.log((d < h).mean(1)) - np.log(np.pi * h * h)  # the 2-D unit ball has area pi
    np.testing.assert_allclose(ref, brute, rtol=1e-12)
    got32 = np.asarray(kde.log_prob(x.astype(np.float32), kde.fit(x.astype(np.float32), bandwidth=h,
                                                                  kernel="tophat")))
    np.testing.assert_allclose(got32, ref, rtol=1e-6)
    with jax.enable_x64(True):
        got64 = np.asarray(kde.log_prob(x, kde.fit(x, bandwidth=h, kernel="tophat"), point_chunk=100))
    np.testing.assert_allclose(got64, ref, rtol=1e-12)


def test_constant_feature_is_refused_whatever_its_value():
    # float32 rounding of the mean of a constant 5.0 gives it a variance of about 1e-11, not 0
    x = np.random.default_rng(0).standard_normal((100, 2)).astype(np.float32)
    for value in (0.0, 5.0, -3e7):
        x[:, 1] = value
        for rule in ("scott", "silverman"):
            with pytest.raises(ValueError, match="feature 1 of `x` is constant"):
                kde.fit(x, bandwidth=rule, bandwidth_type="diag")
    # a feature constant among the points of positive weight only
    x[:, 1] = np.r_[np.full(99, 5.0), 6.0]
    with pytest.raises(ValueError, match="constant"):
        kde.fit(x, sample_weight=np.r_[np.ones(99), 0.0])
    kde.fit(x)  # with the 6.0 weighted in, the feature varies


@settings(max_examples=5, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), kernel=st.sampled_from(["gaussian", "tophat"]))
def test_permuting_the_points_gives_the_same_estimate(seed, kernel):
    r = np.random.default_rng(seed)
    x, q = r.standard_normal((40, 2)), r.standard_normal((15, 2))
    w = r.uniform(0.1, 1.0, 40)
    perm = r.permutation(40)
    with jax.enable_x64(True):
        a = kde.fit(x, kernel=kernel, sample_weight=w)
        b = kde.fit(x[perm], kernel=kernel, sample_weight=w[perm])
        np.testing.assert_allclose(np.asarray(b.bandwidth), np.asarray(a.bandwidth), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(kde.log_prob(q, b)), np.asarray(kde.log_prob(q, a)), rtol=1e-12)
