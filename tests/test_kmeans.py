"""Tests of jaxprob.kmeans: agreement with scikit-learn (tests only), invariants, empty clusters, bad
input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_blobs
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxprob import datasets, kmeans, mixture

sklearn_cluster = pytest.importorskip("sklearn.cluster")
sklearn_metrics = pytest.importorskip("sklearn.metrics")

BLOB_MEANS = [[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]]
# most float32 fits below share one configuration ((120, 2) data, K=4, n_init=3) so that one compilation
# serves
# them all; the float64 fits from given centroids share the shape of the "blobs" data set ((300, 2), K=4)
FOUR_MEANS = BLOB_MEANS + [[8.0, 8.0]]


def _fit32(x, key, **kw):
    return kmeans.fit(x, 4, key=jax.random.key(key), n_init=3, **kw)


def _sk_lloyd(x, c0, w=None):
    km = sklearn_cluster.KMeans(
        len(c0), init=np.asarray(c0), n_init=1, max_iter=300, tol=0.0, algorithm="lloyd"
    )
    km.fit(np.asarray(x), sample_weight=None if w is None else np.asarray(w))
    return km


def _datasets(rng):
    blobs, _ = make_blobs(rng, 100, BLOB_MEANS, scale=1.5)
    uniform = rng.uniform(-1, 1, (400, 5))
    digits = datasets.load_digits(np.float64)[0][:600]
    return {"blobs": (blobs, 4), "uniform": (uniform, 8), "digits": (digits, 10)}


@pytest.mark.parametrize("weighted", [False, True])
def test_matches_sklearn_lloyd_float64(rng, weighted):
    with jax.enable_x64(True):
        for name, (x, k) in _datasets(rng).items():
            w = rng.uniform(0.2, 3.0, len(x)) if weighted else None
            c0 = x[rng.choice(len(x), k, replace=False)]
            ref = _sk_lloyd(x, c0, w)
            res, info = kmeans.fit(x, k, init_centroids=c0, tol=0.0, sample_weight=w)
            assert res.centroids.dtype == jnp.float64
            np.testing.assert_allclose(float(res.inertia), ref.inertia_, rtol=1e-5, err_msg=name)
            np.testing.assert_array_equal(np.asarray(res.labels), ref.labels_, err_msg=name)
            np.testing.assert_allclose(np.asarray(res.centroids), ref.cluster_centers_, rtol=1e-5, atol=1e-8)
            assert bool(info.converged)
            # labels and inertia are those of the returned centroids
            np.testing.assert_array_equal(
                np.asarray(kmeans.predict(x, res.centroids)), np.asarray(res.labels)
            )


def test_kmeanspp_recovers_separated_blobs(rng):
    x, y = make_blobs(rng, 30, FOUR_MEANS, scale=0.5, dtype=np.float32)
    res, info = _fit32(x, 3)
    assert res.centroids.dtype == jnp.float32
    assert sklearn_metrics.adjusted_rand_score(y, np.asarray(res.labels)) == 1.0
    true_inertia = sum(np.sum((x[y == j] - x[y == j].mean(0)) ** 2) for j in range(4))
    np.testing.assert_allclose(float(res.inertia), true_inertia, rtol=1e-4)


def test_inverse_cdf_against_brute_force(rng):
    # probabilities with zero runs at both ends and inside; uniforms including 0 and the largest float32 below 1
    p = rng.exponential(size=300).astype(np.float32) * (rng.random(300) < 0.6)
    p[:7] = 0.0
    p[-9:] = 0.0
    cdf = np.cumsum(p, dtype=np.float32)
    u = np.concatenate([[0.0, np.nextafter(np.float32(1), np.float32(0))], rng.random(2000)]).astype(np.float32)
    got = np.asarray(kmeans._inverse_cdf(jnp.asarray(cdf), jnp.asarray(u)))
    target = u * cdf[-1]  # float32, as in the library
    want = np.array([np.argmax(cdf > t) if np.any(cdf > t) else len(cdf) - 1 for t in target])
    np.testing.assert_array_equal(got, want)
    assert np.all(p[got] > 0)  # a zero-probability entry is never drawn


def test_kmeanspp_first_centre_follows_the_weights():
    # K=1: the only centre is the first draw, which must pick point i with probability w_i / sum(w)
    x = jnp.arange(5.0, dtype=jnp.float32)[:, None]
    w = jnp.array([0.0, 1.0, 2.0, 3.0, 4.0], jnp.float32)
    keys = jax.random.split(jax.random.key(0), 4000)
    idx = np.asarray(jax.vmap(lambda k: kmeans.kmeans_plusplus(x, 1, sample_weight=w, key=k)[1][0])(keys))
    freq = np.bincount(idx, minlength=5) / len(idx)
    expected = np.asarray(w) / 10.0
    assert freq[0] == 0.0
    np.testing.assert_allclose(freq, expected, atol=4 * np.sqrt(0.25 / len(idx)))


def test_kmeanspp_never_picks_zero_weight_points(rng):
    x = rng.normal(size=(200, 3)).astype(np.float32)
    w = (rng.random(200) < 0.5).astype(np.float32)
    for seed in range(5):
        _, idx = kmeans.kmeans_plusplus(x, 12, sample_weight=w, key=jax.random.key(seed))
        assert np.all(w[np.asarray(idx)] > 0)
        assert len(set(np.asarray(idx).tolist())) == 12


@settings(max_examples=8, deadline=None, derandomize=True)
@given(
    x=hnp.arrays(np.float64, (40, 2), elements=st.floats(-10, 10, allow_nan=False, width=64)),
    seed=st.integers(0, 2**16),
)
def test_inertia_never_increases(x, seed):
    with jax.enable_x64(True):
        res, info = kmeans.fit(x, 5, key=jax.random.key(seed), init_method="random", tol=0.0, max_iter=30)
        n = int(info.n_iter)
        trace = np.asarray(info.inertia_trace)
        assert np.all(np.isnan(trace[n:])) and np.all(np.isfinite(trace[:n]))
        slack = 1e-9 * (1.0 + np.abs(trace[:n]))
        assert np.all(np.diff(trace[:n]) <= slack[1:])
        assert float(res.inertia) <= trace[n - 1] + slack[n - 1]
        assert np.all(np.isfinite(np.asarray(res.centroids)))


def _assign(x, c):
    """The Lloyd-pass assignment of one block (labels, distances), as the library computes it."""
    return jax.jit(lambda x, c: kmeans.assign(x, c, exact=False))(jnp.asarray(x), jnp.asarray(c))


@pytest.mark.parametrize("k", [1, 2, 7, 64, 256])
def test_packed_assignment_against_float64_brute_force(rng, k):
    # float32 Lloyd pass: the label is a minimiser of the float64 distance up to the documented comparison
    # precision (nmant - ceil(log2 K) bits) plus float32 rounding of the expanded form, and the returned
    # distance is the chosen one's, truncated by at most that precision
    assert kmeans._packable(k, np.float32)
    x = (rng.standard_normal((3000, 5)) * 3 + 1).astype(np.float32)
    c = np.concatenate([x[:1], rng.standard_normal((k - 1, 5)).astype(np.float32) * 3])
    labels, d = map(np.asarray, _assign(x, c))
    x64, c64 = x.astype(np.float64), c.astype(np.float64)
    d64 = ((x64[:, None, :] - c64[None]) ** 2).sum(-1)
    chosen = d64[np.arange(len(x)), labels]
    quantum = 2.0 ** (kmeans._index_bits(k) - np.finfo(np.float32).nmant)
    rounding = 8 * np.finfo(np.float32).eps * ((x64**2).sum(1) + (c64**2).sum(1).max())
    assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() < k
    assert np.all(chosen <= d64.min(1) * (1 + quantum) + rounding)
    assert np.all(d <= chosen + rounding) and np.all(d >= chosen * (1 - quantum) - rounding)
    assert (labels == d64.argmin(1)).mean() > 0.99
    assert labels[0] == 0 and d[0] == 0.0  # a sample on a centroid: distance exactly 0, not the clip bound


def test_packed_assignment_ties_go_to_the_lowest_index():
    # duplicated centroids (columns 1 and 3, 0 and 4) and samples on them: exact ties, zero distances
    c = np.array([[5.0, 5.0], [0.0, 0.0], [9.0, 1.0], [0.0, 0.0], [5.0, 5.0]], np.float32)
    x = np.array([[0.0, 0.0], [5.0, 5.0], [0.1, 0.0], [5.0, 4.9], [9.0, 1.0], [2e19, 0.0]], np.float32)
    labels, d = map(np.asarray, _assign(x, c))
    assert labels[:5].tolist() == [1, 0, 1, 0, 2]
    assert d[0] == d[1] == d[4] == 0.0
    # ||x||^2 = 4e38 overflows float32: every distance is clipped to the largest float (one tie), not inf/NaN
    assert labels[5] == 0 and np.isfinite(d[5]) and d[5] > 3.4e38


def test_float32_lloyd_with_many_clusters_uses_two_reductions_and_agrees(rng):
    # K=300 > 256 leaves fewer than 15 compared bits in float32: the label comes from a second reduction;
    # both paths reach the float64 fit from the same centroids on data without near-ties
    assert not kmeans._packable(300, np.float32) and kmeans._packable(300, np.float64)
    grid = np.stack(np.meshgrid(np.arange(20.0), np.arange(15.0)), -1).reshape(300, 2) * 10
    x = (np.repeat(grid, 4, axis=0) + rng.normal(0, 1.0, (1200, 2))).astype(np.float32)
    c0 = x[rng.permutation(300) * 4 + rng.integers(0, 4, 300)]  # one sample of every blob, shuffled
    a, ia = kmeans.fit(x, 300, init_centroids=c0, tol=0.0, max_iter=20)
    with jax.enable_x64(True):
        b, ib = kmeans.fit(x.astype(np.float64), 300, init_centroids=c0.astype(np.float64), tol=0.0, max_iter=20)
    assert int(ia.n_iter) == int(ib.n_iter)
    np.testing.assert_array_equal(np.asarray(a.labels), np.asarray(b.labels))
    np.testing.assert_allclose(np.asarray(a.centroids), np.asarray(b.centroids), rtol=1e-5, atol=1e-5)


def test_empty_cluster_is_relocated_to_farthest_point():
    x = jnp.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [13.0, 0.0]])
    c0 = jnp.array([[0.0, 0.0], [11.0, 0.0], [100.0, 100.0]])
    new, labels, j = kmeans.lloyd_step(x, c0)
    assert labels.tolist() == [0, 0, 1, 1]
    # cluster 2 is empty; distances to the assigned centroids are 0, 1, 1, 2: the farthest sample x[3] moves
    # to
    # cluster 2 and leaves cluster 1, which keeps x[2]
    np.testing.assert_allclose(np.asarray(new), [[0.5, 0.0], [10.0, 0.0], [13.0, 0.0]])
    res, info = kmeans.fit(x, 3, init_centroids=c0)
    assert int(info.n_relocated) >= 1 and not bool(info.empty_clusters.any())
    np.testing.assert_array_equal(np.asarray(kmeans.predict(x, res.centroids)), np.asarray(res.labels))


def test_more_clusters_than_distinct_points_is_flagged_not_nan():
    x = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 0.0]], np.float32), 40, axis=0)
    res, info = _fit32(x, 0)
    assert np.all(np.isfinite(np.asarray(res.centroids)))
    assert int(info.empty_clusters.sum()) == 1
    assert float(res.inertia) == 0.0
    assert set(np.asarray(res.labels).tolist()) == set(
        np.flatnonzero(~np.asarray(info.empty_clusters)).tolist()
    )


def test_integer_weights_equal_repeated_samples(rng):
    with jax.enable_x64(True):
        # 150 distinct samples with integer weights summing to 300, padded with 150 zero-weight rows, against
        # the 300 repeated samples: same shapes as the "blobs" data of the scikit-learn test (one compilation)
        x, _ = make_blobs(rng, 50, BLOB_MEANS, scale=2.0)
        reps = np.full(150, 2)
        moved = rng.choice(150, 40, replace=False)
        reps[moved[:20]] += 1
        reps[moved[20:]] -= 1
        c0 = x[[0, 60, 120, 140]]
        xp = np.concatenate([x, x[::-1]])
        a, _ = kmeans.fit(
            xp, 4, init_centroids=c0, sample_weight=np.concatenate([reps, np.zeros(150)]), tol=0.0
        )
        b, _ = kmeans.fit(np.repeat(x, reps, axis=0), 4, init_centroids=c0, tol=0.0)
        np.testing.assert_allclose(np.asarray(a.centroids), np.asarray(b.centroids), rtol=1e-10)
        np.testing.assert_allclose(float(a.inertia), float(b.inertia), rtol=1e-10)


def test_chunked_equals_unchunked(rng):
    with jax.enable_x64(True):
        x = rng.standard_normal((300, 2))
        c0 = x[:4]
        full, info_full = kmeans.fit(x, 4, init_centroids=c0, tol=0.0)
        tiny, info_tiny = kmeans.fit(x, 4, init_centroids=c0, tol=0.0, chunk_size=7)
        np.testing.assert_array_equal(np.asarray(full.labels), np.asarray(tiny.labels))
        np.testing.assert_allclose(np.asarray(full.centroids), np.asarray(tiny.centroids), rtol=1e-12)
        np.testing.assert_allclose(float(full.inertia), float(tiny.inertia), rtol=1e-12)
        assert int(info_full.n_iter) == int(info_tiny.n_iter)
        np.testing.assert_array_equal(
            np.asarray(kmeans.predict(x, c0, chunk_size=5)), np.asarray(kmeans.predict(x, c0))
        )
        w = rng.uniform(0, 1, len(x))
        np.testing.assert_allclose(
            float(kmeans.inertia(x, c0, sample_weight=w, chunk_size=10)),
            float(kmeans.inertia(x, c0, sample_weight=w)),
            rtol=1e-12,
        )


def test_predict_transform_inertia_against_numpy(rng):
    with jax.enable_x64(True):
        x, c = rng.standard_normal((50, 4)), rng.standard_normal((7, 4))
        w = rng.uniform(0, 2, 50)
        d2 = ((x[:, None, :] - c[None]) ** 2).sum(-1)
        np.testing.assert_allclose(np.asarray(kmeans.transform(x, c)), np.sqrt(d2), rtol=1e-10)
        np.testing.assert_array_equal(np.asarray(kmeans.predict(x, c)), d2.argmin(1))
        np.testing.assert_allclose(
            float(kmeans.inertia(x, c, sample_weight=w)), (w * d2.min(1)).sum(), rtol=1e-12
        )


def test_same_key_bit_identical_and_restarts_reported(rng):
    x, _ = make_blobs(rng, 30, FOUR_MEANS, scale=3.0, dtype=np.float32)
    a, ia = _fit32(x, 7)
    b, ib = _fit32(x, 7)
    for u, v in zip(jax.tree.leaves((a, ia)), jax.tree.leaves((b, ib)), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    r = np.asarray(ia.restart_inertias)
    assert r.shape == (3,) and int(ia.best_restart) == int(np.argmin(r))
    assert float(a.inertia) == r.min()


def test_restart_batching_does_not_change_restarts(rng):
    # restarts one at a time (the CPU default) and all vmapped reach the same inertias, and each equals a single
    # fit from the k-means++ seeds of its restart key
    x, _ = make_blobs(rng, 30, FOUR_MEANS, scale=3.0, dtype=np.float32)
    runs = [_fit32(x, 3, restart_batch=b) for b in (1, 3)]
    keys = jax.random.split(jax.random.key(3), 3)
    single = [float(kmeans.fit(x, 4, init_centroids=kmeans.kmeans_plusplus(x, 4, key=k)[0])[0].inertia) for k in keys]
    for _, info in runs:
        np.testing.assert_allclose(np.asarray(info.restart_inertias), single, rtol=1e-5)
    with pytest.raises(ValueError, match="restart_batch"):
        _fit32(x, 3, restart_batch=0)


def test_second_call_with_same_shapes_does_not_retrace(rng):
    x1, x2 = (
        rng.standard_normal((120, 2)).astype(np.float32),
        rng.standard_normal((120, 2)).astype(np.float32),
    )
    _fit32(x1, 0)
    before = kmeans._fit_jit._cache_size()
    _fit32(x2, 1)
    _fit32(x1, 2, tol=1e-3, sample_weight=np.ones(120, np.float32))
    assert kmeans._fit_jit._cache_size() == before


def test_fit_under_vmap_over_keys(rng):
    x = rng.standard_normal((64, 2)).astype(np.float32)
    keys = jax.random.split(jax.random.key(0), 3)
    inert = jax.vmap(lambda k: kmeans.fit(x, 3, key=k, init_method="random", max_iter=10)[0].inertia)(keys)
    assert inert.shape == (3,) and np.all(np.isfinite(np.asarray(inert)))


def test_minibatch(rng):
    x, y = make_blobs(rng, 30, FOUR_MEANS, scale=0.5, dtype=np.float32)
    res, info = kmeans.fit_minibatch(x, 4, key=jax.random.key(0), batch_size=64, max_iter=50)
    assert sklearn_metrics.adjusted_rand_score(y, np.asarray(res.labels)) == 1.0
    assert int(info.n_iter) == 50 and np.all(np.isfinite(np.asarray(info.inertia_trace)))
    np.testing.assert_array_equal(np.asarray(kmeans.predict(x, res.centroids)), np.asarray(res.labels))
    # the streaming API: weighted running means, a never-hit centroid is moved onto a batch sample
    state = kmeans.minibatch_init(jnp.array([[0.0], [10.0], [100.0]]))
    state, _ = kmeans.minibatch_step(
        state, jnp.array([[1.0], [3.0], [9.0]]), sample_weight=jnp.array([1.0, 1, 2])
    )
    np.testing.assert_allclose(np.asarray(state.centroids).ravel(), [1.0, 9.0, 3.0])
    np.testing.assert_allclose(np.asarray(state.counts), [1.0, 2.0, 1.0])
    state, _ = kmeans.minibatch_step(
        state, jnp.array([[5.0], [0.0], [0.0]]), sample_weight=jnp.array([1.0, 0, 0])
    )
    np.testing.assert_allclose(np.asarray(state.centroids).ravel(), [1.0, 9.0, 4.0])


def test_gmm_kmeans_init(rng):
    x, y = make_blobs(rng, 100, BLOB_MEANS, scale=0.7, dtype=np.float32)
    assert "kmeans" in mixture.INIT_METHODS
    gmm, info = mixture.fit(
        x,
        3,
        key=jax.random.key(0),
        init_method="kmeans",
        n_init=2,
        covariance_type="diag",
        sample_weight=np.ones(len(x), np.float32),
    )
    assert sklearn_metrics.adjusted_rand_score(y, np.asarray(mixture.predict(x, gmm))) == 1.0
    assert np.all(np.isfinite(np.asarray(gmm.means)))


def test_kmeans_init_methods(rng):
    x = rng.standard_normal((30, 2)).astype(np.float32)
    for method in kmeans.INIT_METHODS:
        c = kmeans.init(x, 4, init_method=method, key=jax.random.key(0))
        assert c.shape == (4, 2)
        assert all(any(np.array_equal(row, xi) for xi in x) for row in np.asarray(c))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(x=np.array([[0.0, np.nan], [1.0, 1.0]])), ValueError, "`x` contains"),
        (dict(x=np.array([[0.0, np.inf], [1.0, 1.0]])), ValueError, "`x` contains"),
        (dict(x=np.zeros(5)), ValueError, "`x` must have 2"),
        (dict(x=np.zeros((5, 2), np.int32)), TypeError, "`x` must have a floating"),
        (dict(n_clusters=0), ValueError, "`n_clusters` must be >= 1"),
        (dict(n_clusters=7), ValueError, "`n_clusters` must be <= 6"),
        (dict(sample_weight=-np.ones(6)), ValueError, "`sample_weight` must be non-negative"),
        (dict(sample_weight=np.zeros(6)), ValueError, "all are zero"),
        (dict(sample_weight=np.ones(5)), ValueError, "`sample_weight` must have shape"),
        (dict(init_method="bogus"), ValueError, "`init_method`"),
        (dict(key=None), TypeError, "`key` is required"),
        (dict(init_centroids=np.zeros((3, 3))), ValueError, "`init_centroids` has 3 features"),
        (dict(init_centroids=np.zeros((2, 2))), ValueError, "`init_centroids` has 2 rows"),
        (dict(init_centroids=np.zeros((3, 2)), n_init=2), ValueError, "`n_init` must be 1"),
        (dict(chunk_size=0), ValueError, "`chunk_size`"),
        (dict(tol=-1.0), ValueError, "`tol`"),
        (dict(max_iter=0), ValueError, "`max_iter`"),
    ],
)
def test_bad_input(kwargs, exc, match):
    args = dict(x=np.arange(12.0).reshape(6, 2), n_clusters=3, key=jax.random.key(0))
    args.update(kwargs)
    x, k = args.pop("x"), args.pop("n_clusters")
    with pytest.raises(exc, match=match):
        kmeans.fit(x, k, **args)


def test_bad_input_other_entry_points():
    x = np.arange(12.0).reshape(6, 2)
    with pytest.raises(ValueError, match="`centroids` has 3 features"):
        kmeans.predict(x, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="`centroids` contains"):
        kmeans.inertia(x, np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match="`batch_size`"):
        kmeans.fit_minibatch(x, 2, key=jax.random.key(0), batch_size=0)
    with pytest.raises(TypeError, match="`state` must be a MiniBatchState"):
        kmeans.minibatch_step((np.zeros((2, 2)), np.zeros(2)), x)
    with pytest.raises(ValueError, match="`x_batch` contains"):
        kmeans.minibatch_step(kmeans.minibatch_init(np.zeros((2, 2))), np.full((2, 2), np.nan))


# ----------------------------------------------------------------------------------------------------------
# scale, half precision, derivatives, permutations (issue 18)
# ----------------------------------------------------------------------------------------------------------
def _blobs32(rng):
    return make_blobs(rng, 30, FOUR_MEANS, scale=1.0, dtype=np.float32)[0]


def test_huge_values_keep_the_clusters_and_flag_the_overflowing_inertia(rng):
    # float32 data times 1e19: squared distances overflow float32. The clusters are still found (the iterations
    # run on the data rescaled by a power of two), and the inertia, which is beyond float32's range, is reported
    # as non-finite, never as converged.
    x = _blobs32(rng)
    ref, info_ref = _fit32(x, 0)
    res, info = _fit32(x * np.float32(1e19), 0)
    np.testing.assert_array_equal(np.asarray(res.labels), np.asarray(ref.labels))
    assert np.bincount(np.asarray(res.labels), minlength=4).min() > 0
    true_inertia = float(np.sum((x.astype(np.float64) * 1e19 - np.asarray(res.centroids, np.float64)[
        np.asarray(res.labels)]) ** 2))
    assert true_inertia > float(np.finfo(np.float32).max)  # so no float32 answer can be finite
    assert bool(info.nonfinite) and not bool(info.converged) and np.isinf(float(res.inertia))
    np.testing.assert_allclose(np.asarray(res.centroids) / 1e19, np.asarray(ref.centroids), rtol=1e-5, atol=1e-5)
    assert not bool(info_ref.nonfinite) and bool(info_ref.converged)


@pytest.mark.parametrize("power", [-70, 70])
def test_evaluation_functions_on_rescaled_data_against_float64(rng, power):
    # far outside the range where float32 squared distances are representable without rescaling
    f = 2.0**power
    x = (rng.standard_normal((40, 3)) * f).astype(np.float32)
    c = (rng.standard_normal((5, 3)) * f).astype(np.float32)
    x64, c64 = x.astype(np.float64), c.astype(np.float64)
    d2 = ((x64[:, None] - c64[None]) ** 2).sum(-1)

    def close(value, expected, rtol):
        if expected < np.finfo(np.float32).tiny:  # only a subnormal could hold it, and XLA flushes those to 0
            assert 0.0 <= float(value) < np.finfo(np.float32).tiny
        elif expected > np.finfo(np.float32).max:  # beyond float32
            assert np.isposinf(float(value))
        else:
            np.testing.assert_allclose(float(value) / f**2, expected / f**2, rtol=rtol)

    np.testing.assert_array_equal(np.asarray(kmeans.predict(x, c)), d2.argmin(1))
    close(kmeans.inertia(x, c), d2.min(1).sum(), 1e-5)
    np.testing.assert_allclose(np.asarray(kmeans.transform(x, c)) / f, np.sqrt(d2) / f, rtol=1e-5)
    new, labels, j = kmeans.lloyd_step(x, c)
    np.testing.assert_array_equal(np.asarray(labels), d2.argmin(1))
    close(j, d2.min(1).sum(), 1e-4)
    nk = np.bincount(labels, minlength=5)
    np.testing.assert_allclose(np.asarray(new)[nk > 0] / f, (np.stack([x64[labels == k].mean(0) for k in range(5)
                                                                       if nk[k] > 0]) / f), rtol=1e-5, atol=1e-6)
    state, jb = kmeans.minibatch_step(kmeans.minibatch_init(c), x)
    close(jb, d2.min(1).mean(), 1e-4)
    np.testing.assert_array_equal(np.asarray(state.centroids), np.asarray(new))
    centers, idx = kmeans.kmeans_plusplus(x, 4, key=jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(centers), x[np.asarray(idx)])
    assert len(set(np.asarray(idx).tolist())) == 4


def test_half_precision_input_is_computed_in_float32(rng):
    # the library's policy (jaxprob._validation): float16 and bfloat16 inputs are converted to float32
    x16 = _blobs32(rng).astype(np.float16)
    res, info = _fit32(x16, 0)
    ref, _ = _fit32(x16.astype(np.float32), 0)
    assert res.centroids.dtype == jnp.float32 and res.inertia.dtype == jnp.float32
    for a, b in zip(jax.tree.leaves(res), jax.tree.leaves(ref), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert bool(info.converged) and np.isfinite(float(res.inertia))
    xb = jnp.asarray(x16.astype(np.float32), jnp.bfloat16)
    assert kmeans.predict(xb, ref.centroids).shape == (120,)
    assert kmeans.inertia(xb, ref.centroids).dtype == jnp.float32


def _np_inertia(x, c):
    return ((x[:, None] - c[None]) ** 2).sum(-1).min(1).sum()


def test_gradient_of_the_lloyd_step_inertia_against_finite_differences(rng):
    # the inertia returned by lloyd_step differentiates as the objective it reports (it used to give exactly 0)
    with jax.enable_x64(True):
        x, c = rng.standard_normal((30, 2)), rng.standard_normal((3, 2))
        g_step = np.asarray(jax.grad(lambda c: kmeans.lloyd_step(x, c)[2])(c))
        g_inertia = np.asarray(jax.grad(lambda c: kmeans.inertia(x, c))(c))
        gx_step = np.asarray(jax.grad(lambda x: kmeans.lloyd_step(x, c)[2])(x))
        eps = 1e-6
        fd = np.zeros_like(c)
        for i in np.ndindex(c.shape):
            e = np.zeros_like(c)
            e[i] = eps
            fd[i] = (_np_inertia(x, c + e) - _np_inertia(x, c - e)) / (2 * eps)
        np.testing.assert_allclose(g_step, fd, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(g_inertia, fd, rtol=1e-6, atol=1e-6)
        fdx = np.zeros(3)
        for j, i in enumerate([(0, 0), (7, 1), (19, 0)]):
            e = np.zeros_like(x)
            e[i] = eps
            fdx[j] = (_np_inertia(x + e, c) - _np_inertia(x - e, c)) / (2 * eps)
        np.testing.assert_allclose(gx_step[[0, 7, 19], [0, 1, 0]], fdx, rtol=1e-6, atol=1e-6)
        assert np.abs(g_step).max() > 1.0  # not the zero gradient of the bit-packed distances


@settings(max_examples=6, deadline=None, derandomize=True)
@given(power=st.integers(-90, 90), seed=st.integers(0, 2**16))
def test_scaling_the_data_by_a_power_of_two_scales_the_centroids_exactly(power, seed):
    # Lloyd's algorithm (and the k-means++ seeding) commute with multiplying by 2**power: same labels, centroids
    # times 2**power exactly, inside and far outside the range where the library rescales internally
    x = _blobs32(np.random.default_rng(seed))
    f = np.float32(2.0**power)
    ref, _ = _fit32(x, seed)
    res, _ = _fit32(x * f, seed)
    np.testing.assert_array_equal(np.asarray(res.labels), np.asarray(ref.labels))
    np.testing.assert_array_equal(np.asarray(res.centroids), np.asarray(ref.centroids) * f)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16))
def test_permuting_rows_gives_the_same_model_up_to_label_order(seed):
    # from the same starting centroids (given in another order), Lloyd on permuted rows reaches the same
    # centroids (rounding of the sums aside) with the labels permuted alike
    r = np.random.default_rng(seed)
    with jax.enable_x64(True):
        x = r.standard_normal((60, 2)) + r.integers(0, 3, (60, 1)) * 4.0
        perm, cperm = r.permutation(60), r.permutation(3)
        c0 = x[r.choice(60, 3, replace=False)]
        a, _ = kmeans.fit(x, 3, init_centroids=c0, tol=0.0)
        b, _ = kmeans.fit(x[perm], 3, init_centroids=c0[cperm], tol=0.0)
        np.testing.assert_allclose(np.asarray(b.centroids), np.asarray(a.centroids)[cperm], rtol=1e-12, atol=1e-12)
        # label l of the permuted run is label cperm[l] of the first
        np.testing.assert_array_equal(cperm[np.asarray(b.labels)], np.asarray(a.labels)[perm])
        np.testing.assert_allclose(float(b.inertia), float(a.inertia), rtol=1e-12)


def test_progress_callback_reports_every_step_and_costs_nothing_when_off():
    x = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    seen = []
    result, info = kmeans.fit(x, 3, key=jax.random.key(0), callback=lambda i, v: seen.append((int(i), float(v))))
    jax.effects_barrier()
    assert [i for i, _ in seen] == list(range(1, int(info.n_iter) + 1))
    np.testing.assert_allclose([v for _, v in seen], np.asarray(info.inertia_trace)[: int(info.n_iter)], rtol=1e-6)
    # without a callback, the compiled program holds no host callback at all
    text = jax.jit(lambda x: kmeans.fit(x, 3, key=jax.random.key(0))[0].centroids).lower(x).as_text()
    assert "callback" not in text


def test_minibatch_progress_callback():
    x = np.random.default_rng(1).normal(size=(300, 2)).astype(np.float32)
    seen = []
    _, info = kmeans.fit_minibatch(x, 3, key=jax.random.key(0), batch_size=64, max_iter=12,
                                   callback=lambda i, v: seen.append((int(i), float(v))))
    jax.effects_barrier()
    assert [i for i, _ in seen] == list(range(1, int(info.n_iter) + 1))
    np.testing.assert_allclose([v for _, v in seen], np.asarray(info.inertia_trace)[: int(info.n_iter)], rtol=1e-6)
