"""Scaling: sharded EM / Lloyd (1 vs 2 vs 8 forced host devices, in a subprocess), exact chunked EM / Lloyd against
the in-memory fits, online EM and streaming k-means, and gradients through a fixed number of EM steps."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_blobs

from jaxprob import kmeans, mixture, scale

ROOT = Path(__file__).resolve().parents[1]

# Runs with 8 forced host devices (the flag must be set before jax is imported, hence the subprocess: the rest of
# the suite keeps one device). Prints one JSON line.
MULTI_DEVICE_SCRIPT = textwrap.dedent(
    r"""
    import json, os, time
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, jax.extend, jax.numpy as jnp, numpy as np
    from jaxprob import kmeans, mixture, scale

    def rel(a, b):
        a, b = np.asarray(a, float), np.asarray(b, float)
        return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))) if a.size else 0.0

    def canonical(p):  # restarts that reach the same optimum up to rounding may differ by a permutation
        o = np.argsort(np.asarray(p.means[:, 0]))
        return [np.asarray(p.weights)[o], np.asarray(p.means)[o], np.asarray(p.covariances)[o]]

    def tree_rel(p, q):
        return max(rel(a, b) for a, b in zip(canonical(p), canonical(q)))

    def collectives(jaxpr, out):
        for eqn in jaxpr.eqns:
            name = eqn.primitive.name
            if name.startswith(("psum", "pmax", "pmin", "all_gather", "all_to_all", "ppermute", "reduce_scatter")):
                out.append([name, [list(v.aval.shape) for v in eqn.invars]])
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                collectives(sub, out)
        return out

    out = {"n_devices": jax.device_count()}
    T = time.perf_counter()
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x = np.concatenate([rng.normal(m, 1.0, (167, 3)) for m in (-3.0, 0.0, 4.0)])  # 501 rows: padded rows
        x = x @ np.array([[1.0, 0.3, 0.0], [0.0, 1.0, 0.4], [0.2, 0.0, 0.8]])
        wts = rng.integers(0, 3, x.shape[0]).astype(float)
        meshes = {nd: scale.sample_mesh(nd) for nd in (1, 2, 8)}
        kw = dict(key=jax.random.key(0), n_init=2, tol=1e-8, max_iter=200, sample_weight=wts)
        ref, rinfo = mixture.fit(x, 3, **kw)
        fits = {nd: scale.fit_sharded(x, 3, mesh=m, **kw) for nd, m in meshes.items()}
        out["gmm_vs_1"] = {nd: tree_rel(p, fits[1][0]) for nd, (p, _) in fits.items()}
        out["gmm_vs_mixture_fit"] = tree_rel(fits[8][0], ref)
        out["gmm_n_iter"] = [int(rinfo.n_iter)] + [int(i.n_iter) for _, i in fits.values()]
        out["gmm_ll"] = [float(rinfo.log_likelihood)] + [float(i.log_likelihood) for _, i in fits.values()]
        out["gmm_sharding"] = str(tuple(fits[8][0].means.sharding.spec))
        again = scale.fit_sharded(x, 3, mesh=meshes[8], **kw)  # same key: bit-identical (compiled program reused)
        out["gmm_same_bits"] = all(bool(np.array_equal(np.asarray(a, float), np.asarray(b, float), equal_nan=True))
                                   for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(fits[8])))
        out["t_gmm"] = time.perf_counter() - T

        kms = {nd: scale.kmeans_fit_sharded(x, 3, mesh=m, key=jax.random.key(0), n_init=2, tol=0.0)
               for nd, m in meshes.items()}
        out["kmeans_vs_1"] = {nd: rel(r.centroids, kms[1][0].centroids) for nd, (r, _) in kms.items()}
        out["kmeans_inertia"] = [float(r.inertia) for r, _ in kms.values()]
        out["kmeans_labels_equal"] = all(bool(np.all(np.asarray(r.labels) == np.asarray(kms[1][0].labels)))
                                         for r, _ in kms.values())
        out["kmeans_n_iter"] = [int(i.n_iter) for _, i in kms.values()]
        out["kmeans_labels_shape"] = list(kms[8][0].labels.shape)
        out["t_kmeans"] = time.perf_counter() - T

        # what crosses devices: the collectives of the traced program and of its lowered (StableHLO) text
        starts = jax.tree.map(lambda a: a[None], fits[8][0])
        xs, ws = scale.shard_samples(x, meshes[8])
        out["shard_rows"] = sorted({s.data.shape[0] for s in xs.addressable_shards})
        args = (xs, ws, starts, jnp.asarray(1e-8))
        program = scale._cached("em", meshes[8], 50, None)
        out["em_collectives"] = collectives(jax.make_jaxpr(program)(*args).jaxpr, [])
        hlo = program.lower(*args).as_text()
        out["hlo_all_reduce"] = hlo.count("all_reduce")
        out["hlo_other"] = sum(hlo.count(op) for op in ("all_gather", "all_to_all", "collective_permute",
                                                       "reduce_scatter"))
        km = scale._cached("lloyd", meshes[8], 300)
        kargs = (xs, ws, jnp.asarray(x[:3])[None], jnp.asarray(0.0))
        out["lloyd_collectives"] = collectives(jax.make_jaxpr(km)(*kargs).jaxpr, [])
        out["t_all"] = time.perf_counter() - T
    print(json.dumps(out))
    """
)


def _start_multi_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, "-c", MULTI_DEVICE_SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)


@pytest.fixture(scope="module", autouse=True)
def _multi_device_process(request):
    """Start the 8-device subprocess as soon as this module runs (if one of its selected tests needs it), so
    that it works while the in-process tests run; the multi-device tests come last."""
    needed = any("multi_device" in getattr(item, "fixturenames", ()) for item in request.session.items
                 if getattr(item, "module", None) is request.module)
    proc = _start_multi_device() if needed else None
    yield proc
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def multi_device(_multi_device_process):
    stdout, stderr = _multi_device_process.communicate(timeout=600)
    assert _multi_device_process.returncode == 0, stdout + stderr
    return json.loads(stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------------------------
# one device, in process
# ------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(1)
    x, _ = make_blobs(rng, 150, [[0, 0, 0], [4, 4, 0], [0, 5, 5]])
    return x @ np.array([[1.0, 0.3, 0.0], [0.0, 1.0, 0.5], [0.2, 0.0, 0.7]]) + 10.0


def _start(blobs, ct, k=3, dtype=np.float64):
    """Initial parameters from three well-spread samples (no compiled initialisation needed)."""
    d = blobs.shape[1]
    cov = {"full": np.tile(np.eye(d), (k, 1, 1)), "tied": np.eye(d), "diag": np.ones((k, d)), "spherical": np.ones(k)}
    return mixture.make_gmm(np.full(k, 1.0 / k, dtype), blobs[[0, 150, 300][:k]].astype(dtype),
                            cov[ct].astype(dtype), ct)


def test_sharded_validation(blobs):
    with pytest.raises(TypeError, match="mesh"):
        scale.fit_sharded(blobs, 2, key=jax.random.key(0), mesh="cpu")
    bad = blobs.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="`x` contains .*NaN"):
        scale.fit_sharded(bad, 2, key=jax.random.key(0))
    with pytest.raises(TypeError, match="key"):
        scale.fit_sharded(blobs, 2)
    with pytest.raises(ValueError, match="covariance_type"):
        scale.fit_sharded(blobs, 3, covariance_type="full", init_params=_start(blobs, "diag", dtype=np.float32))
    with pytest.raises(ValueError, match="n_clusters"):
        scale.kmeans_fit_sharded(blobs, 0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="init_centroids"):
        scale.kmeans_fit_sharded(blobs, 2, init_centroids=blobs[:3])
    with pytest.raises(ValueError, match="n_devices"):
        scale.sample_mesh(jax.device_count() + 1)


# ------------------------------------------------------------------------------------------------------------------
# chunked
# ------------------------------------------------------------------------------------------------------------------
def test_chunked_em_is_full_batch_em(blobs):
    with jax.enable_x64(True):
        init = mixture.init(blobs, 3, key=jax.random.key(0))
        one, _ = scale.fit_chunked(blobs, init, chunk_size=64, max_iter=1)  # one pass = one EM iteration
        step, _ = mixture.em_step(blobs, init)
        for u, r in zip(jax.tree.leaves(one), jax.tree.leaves(step), strict=True):
            np.testing.assert_allclose(np.asarray(u), np.asarray(r), rtol=1e-10, atol=1e-12)
        ref, rinfo = mixture.fit(blobs, 3, init_params=init, tol=1e-9)
        got, info = scale.fit_chunked(blobs, init, chunk_size=64, tol=1e-9)
        compiled = scale._em_chunk_jit._cache_size()
        scale.fit_chunked(blobs[:300], init, chunk_size=64, max_iter=2)  # other data, same chunk size: no retrace
        assert scale._em_chunk_jit._cache_size() == compiled
    for u, r in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(r), rtol=1e-9, atol=1e-11)
    assert int(info.n_iter) == int(rinfo.n_iter) and bool(info.converged) == bool(rinfo.converged)
    np.testing.assert_allclose(np.asarray(info.trace), np.asarray(rinfo.trace),
                               rtol=1e-11)
    assert float(info.log_likelihood) == pytest.approx(float(rinfo.log_likelihood), rel=1e-12)


def test_chunk_sources_agree(blobs, tmp_path):
    """NumPy array, memmap file, JAX array, a function yielding (x, w) chunks of uneven sizes, sample weights."""
    x = blobs.astype(np.float32)
    w = np.random.default_rng(0).integers(0, 3, x.shape[0]).astype(np.float32)
    init = _start(x, "tied", dtype=np.float32)  # tied: the per-chunk second moments of all samples add up too
    path = tmp_path / "x.f32"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=x.shape)
    mm[:] = x
    mm.flush()
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=x.shape)
    assert scale._file_reader(mm) is not None  # read by ordinary file reads, not through the mapping
    np.testing.assert_array_equal(np.concatenate([c for c, _ in scale.iter_chunks(mm, chunk_size=100)]), x)

    def gen():
        for a, b in ((0, 100), (100, 150), (150, 400), (400, 450)):
            yield x[a:b], w[a:b]

    kw = dict(max_iter=20, tol=0.0, chunk_size=100)  # one piece size: one compilation for every source
    ref, _ = mixture.fit(x, 3, covariance_type="tied", init_params=init, sample_weight=w, max_iter=20, tol=0.0)
    for data, extra in ((x, {"sample_weight": w}), (mm, {"sample_weight": w}),
                        (jnp.asarray(x), {"sample_weight": jnp.asarray(w)}), (gen, {})):
        got, info = scale.fit_chunked(data, init, **extra, **kw)
        assert int(info.n_iter) == 20
        np.testing.assert_allclose(np.asarray(got.means), np.asarray(ref.means), rtol=2e-4, atol=2e-4)
        np.testing.assert_allclose(np.asarray(got.covariances), np.asarray(ref.covariances), rtol=2e-4)


def test_chunked_kmeans_matches_lloyd(blobs):
    with jax.enable_x64(True):
        c0 = blobs[[0, 150, 300]]
        ref, rinfo = kmeans.fit(blobs, 3, init_centroids=c0, tol=1e-6)
        got, info = scale.kmeans_fit_chunked(blobs, c0, chunk_size=100, tol=1e-6)
        one, _ = scale.kmeans_fit_chunked(blobs, c0, chunk_size=100, max_iter=1)
        step, _, _ = kmeans.lloyd_step(blobs, c0)
    np.testing.assert_allclose(np.asarray(got.centroids), np.asarray(ref.centroids), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(one.centroids), np.asarray(step), rtol=1e-10)
    assert float(got.inertia) == pytest.approx(float(ref.inertia), rel=1e-10)
    assert int(info.n_iter) == int(rinfo.n_iter) and bool(info.converged)
    assert got.labels is None


def test_chunked_input_errors(blobs):
    init = _start(blobs, "full", k=2, dtype=np.float32)
    with pytest.raises(TypeError, match="read only once"):
        scale.fit_chunked((c for c in [blobs]), init)
    bad = blobs.copy()
    bad[200, 0] = np.inf
    with pytest.raises(ValueError, match="rows 0:450 of `data` contains NaN"):
        scale.fit_chunked(bad, init, chunk_size=150)
    with pytest.raises(ValueError, match="chunk 1 of `data` contains NaN"):
        scale.fit_chunked(lambda: iter([blobs[:0], bad[200:]]), init)  # an empty chunk 0, then a bad one
    with pytest.raises(ValueError, match="features"):
        scale.fit_chunked(blobs[:, :2], init)
    with pytest.raises(TypeError, match="floating"):
        scale.fit_chunked(blobs.astype(np.int64), init)
    with pytest.raises(ValueError, match="no samples"):
        scale.fit_chunked(lambda: iter([]), init)
    with pytest.raises(ValueError, match="chunk_size"):
        scale.kmeans_fit_chunked(blobs, blobs[:2], chunk_size=0)


# ------------------------------------------------------------------------------------------------------------------
# online
# ------------------------------------------------------------------------------------------------------------------
def test_first_online_step_is_an_em_step(blobs):
    with jax.enable_x64(True):
        init = mixture.init(blobs, 3, key=jax.random.key(0))
        state = scale.online_em_init(init)
        state, ll = scale.online_em_step(state, blobs, kappa=0.7, t0=1.0)
        ref, ref_ll = mixture.em_step(blobs, init)
        total = float(jnp.sum(state.stats.counts))
    for u, r in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(r), rtol=1e-9, atol=1e-12)
    assert float(ll) == pytest.approx(float(ref_ll), rel=1e-12)
    assert int(state.step) == 1
    assert total == pytest.approx(1.0)


def test_online_em_recovers_the_mixture():
    truth_means, truth_cov, truth_w = np.array([[-3.0, 0.0], [3.0, 1.0]]), np.array([[1.0, 0.5], [0.5, 1.0]]), 0.3
    rng = np.random.default_rng(0)

    def stream():  # 120 batches of 256 samples from the true (tied) mixture
        for _ in range(120):
            z = rng.random(256) >= truth_w
            yield (truth_means[z.astype(int)] + rng.multivariate_normal([0, 0], truth_cov, 256)).astype(np.float32)

    init = mixture.make_gmm(np.array([0.5, 0.5]), np.array([[-1.0, 0.0], [1.0, 0.0]]), np.eye(2), "tied")
    got, info = scale.fit_online(stream, init, kappa=0.6)
    assert info.n_steps == 120 and info.trace.shape == (120,)
    assert info.trace[-30:].mean() > info.trace[:3].mean()
    np.testing.assert_allclose(np.asarray(got.means), truth_means, atol=0.1)
    np.testing.assert_allclose(np.asarray(got.weights), [truth_w, 1 - truth_w], atol=0.03)
    np.testing.assert_allclose(np.asarray(got.covariances), truth_cov, atol=0.1)
    with pytest.raises(ValueError, match="kappa"):
        scale.fit_online(stream, init, kappa=0.5)
    with pytest.raises(ValueError, match="t0"):
        scale.online_em_step(scale.online_em_init(init), np.zeros((3, 2)), t0=0.5)
    with pytest.raises(ValueError, match="n_epochs"):
        scale.fit_online([np.zeros((3, 2))], init, n_epochs=2)


def test_stream_kmeans_is_minibatch_steps(blobs):
    x = blobs.astype(np.float32)
    batches = [x[a:a + 100] for a in range(0, 450, 100)]  # the last batch (50 rows) is padded with weight 0
    state, info = scale.kmeans_fit_stream(batches, x[:3])
    ref = kmeans.minibatch_init(x[:3])
    for b in batches:
        ref, _ = kmeans.minibatch_step(ref, b)
    np.testing.assert_allclose(np.asarray(state.centroids), np.asarray(ref.centroids), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(state.counts), np.asarray(ref.counts))
    assert info.n_steps == 5


# ------------------------------------------------------------------------------------------------------------------
# gradients
# ------------------------------------------------------------------------------------------------------------------
def test_em_steps_is_fit_without_tolerance(blobs):
    with jax.enable_x64(True):
        init = mixture.init(blobs, 3, covariance_type="full", key=jax.random.key(0))
        got, trace = scale.em_steps(blobs, init, 100)
        ref, info = mixture.fit(blobs, 3, init_params=init, tol=0.0)  # max_iter=100: the program of the chunked test
    for u, r in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(r), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(trace), np.asarray(info.trace), rtol=1e-11)


def test_gradients_through_em_steps_match_finite_differences(blobs):
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x = jnp.asarray(blobs[::3])
        x_test = jnp.asarray(blobs[1::3])
        init = _start(blobs, "full")

        @jax.jit
        def loss(x, means):
            fitted, _ = scale.em_steps(x, _with_means(init, means), 3)
            return mixture.score(x_test, fitted)

        gx, gm = jax.grad(loss, argnums=(0, 1))(x, init.means)
        assert np.all(np.isfinite(np.asarray(gx))) and np.all(np.isfinite(np.asarray(gm)))
        h = 1e-5
        for arg, g in ((0, gx), (1, gm)):
            base = [x, init.means]
            v = jnp.asarray(rng.standard_normal(base[arg].shape))
            plus, minus = list(base), list(base)
            plus[arg] = base[arg] + h * v
            minus[arg] = base[arg] - h * v
            fd = (loss(*plus) - loss(*minus)) / (2 * h)
            rounding = 10 * np.finfo(np.float64).eps * abs(float(loss(*base))) / h  # error of the difference quotient
            assert float(jnp.vdot(g, v)) == pytest.approx(float(fd), rel=1e-6, abs=rounding)


def _with_means(params, means):
    comps = params.components
    return mixture.Mixture(params.weights, type(comps)(means, comps.covariances, comps.precisions_cholesky),
                           params.family)


def test_mixture_log_density_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.standard_normal((20, 2)))

        @jax.jit
        def nll(x, logits, means, log_var):
            gmm = mixture.make_gmm(jax.nn.softmax(logits), means, jnp.exp(log_var), "diag")
            return -jnp.mean(mixture.log_prob(x, gmm))

        args = [x, jnp.asarray([0.2, -0.1, 0.0]), jnp.asarray(rng.standard_normal((3, 2))),
                jnp.asarray(rng.normal(0, 0.3, (3, 2)))]
        grads = jax.grad(nll, argnums=(0, 1, 2, 3))(*args)
        h = 1e-6
        for i, g in enumerate(grads):
            v = jnp.asarray(rng.standard_normal(args[i].shape))
            plus, minus = list(args), list(args)
            plus[i], minus[i] = args[i] + h * v, args[i] - h * v
            fd = (nll(*plus) - nll(*minus)) / (2 * h)
            assert float(jnp.vdot(g, v)) == pytest.approx(float(fd), rel=1e-6, abs=1e-10)


def test_while_loop_fit_is_not_reverse_differentiable(blobs):
    init = _start(blobs, "full", k=2, dtype=np.float32)

    def loss(means):
        fitted, _ = mixture.fit(blobs, 2, init_params=_with_means(init, means), max_iter=5)
        return jnp.sum(fitted.means)

    with pytest.raises(ValueError, match="Reverse-mode differentiation does not work for lax.while_loop"):
        jax.grad(loss)(init.means)


# ------------------------------------------------------------------------------------------------------------------
# several devices (the subprocess started at the beginning of the module)
# ------------------------------------------------------------------------------------------------------------------
def test_sharded_em_agrees_on_1_2_8_devices(multi_device):
    r = multi_device
    assert r["n_devices"] == 8
    assert max(r["gmm_vs_1"].values()) < 1e-5
    assert r["gmm_vs_mixture_fit"] < 1e-5
    assert len(set(r["gmm_n_iter"])) == 1
    np.testing.assert_allclose(r["gmm_ll"], r["gmm_ll"][0], rtol=1e-10)
    assert r["gmm_sharding"] == "()"  # replicated parameters
    assert r["gmm_same_bits"]


def test_sharded_kmeans_agrees_on_1_2_8_devices(multi_device):
    r = multi_device
    assert max(r["kmeans_vs_1"].values()) < 1e-5 and r["kmeans_labels_shape"] == [501]
    np.testing.assert_allclose(r["kmeans_inertia"], r["kmeans_inertia"][0], rtol=1e-10)
    assert r["kmeans_labels_equal"]
    assert len(set(r["kmeans_n_iter"])) == 1


def test_only_sufficient_statistics_cross_devices(multi_device):
    r = multi_device
    k, d = 3, 3
    assert r["shard_rows"] == [63]  # 501 rows padded to 504 = 8 x 63
    # before the loop: the weighted data mean (scalar, (D,)); in the loop: (N_k, S_k, Q_k, log L, sum w, n)
    # (one restart runs unbatched: the statistics are (K,), (K, D), (K, D, D) and scalars)
    allowed = {(), (d,), (k,), (k, d), (k, d, d)}
    shapes = [tuple(s) for name, ops in r["em_collectives"] for s in ops]
    assert {name for name, _ in r["em_collectives"]} <= {"psum", "psum_invariant"}
    assert set(shapes) <= allowed, shapes
    assert (k, d, d) in shapes and (k, d) in shapes
    assert all(63 not in s and 504 not in s for s in shapes)  # nothing of the size of the data
    assert r["hlo_all_reduce"] >= 1 and r["hlo_other"] == 0
    lloyd = [tuple(s) for name, ops in r["lloyd_collectives"] for s in ops]
    assert set(lloyd) <= {(), (d,), (1,), (1, k), (1, k, d)}, lloyd
