"""Same key, same result, bit for bit: the fit paths on the backend at hand, and no atomic scatter-add in the
programs compiled for GPUs and TPUs (checked here on a CPU by exporting those programs, `jax.export`).

A scatter-add (`x.at[i].add(v)`, `jax.ops.segment_sum`) adds its updates in any order on a GPU: the k-means centroids
then change from one run to the next. jaxprob computes per-cluster sums by one-hot products there (see
`jaxprob.numerics`). Across separate compilations, XLA:GPU's autotuner may also pick different matrix-product kernels;
only `--xla_gpu_deterministic_ops=true` (set by the user, never by jaxprob) rules that out, so the re-compilation
check below runs on a GPU only under that flag.
"""

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprob import bayesian_mixture, em, families, hmm, kmeans, mixture, numerics, scale

BACKEND = jax.default_backend()
DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true" in os.environ.get("XLA_FLAGS", "")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    centers = rng.normal(0, 3, (5, 4))
    x = centers[rng.integers(0, 5, 600)] + rng.normal(size=(600, 4))
    return jnp.asarray(x, jnp.float32)


def _fits(x, all_paths=True):
    """The fit paths from one key: k-means (restarts, chunks), Gaussian EM (restarts) and, with `all_paths`,
    mini-batch k-means, Poisson EM and sharded k-means."""
    key = jax.random.key(7)
    out = [kmeans.fit(x, 5, key=key, n_init=2, max_iter=20, chunk_size=128),
           mixture.fit(x, 3, key=key, n_init=2, max_iter=15, tol=0.0)]
    if all_paths:
        counts = jnp.round(jnp.abs(x[:, :3]) * 2)
        out += [kmeans.fit_minibatch(x, 5, key=key, batch_size=64, max_iter=15),
                mixture.fit(counts, 2, key=key, family=families.poisson(), max_iter=10, tol=0.0),
                scale.kmeans_fit_sharded(x, 5, key=key, max_iter=20)]
    return jax.tree.map(np.asarray, out)


def _assert_same_bits(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb, strict=True):
        assert u.dtype == v.dtype and u.shape == v.shape
        assert u.tobytes() == v.tobytes()


def test_same_key_same_bits_in_one_process(data):
    _assert_same_bits(_fits(data), _fits(data))


@pytest.mark.skipif(BACKEND == "gpu" and not DETERMINISTIC_FLAG,
                    reason="XLA:GPU autotuning may pick other kernels on re-compilation without "
                           "--xla_gpu_deterministic_ops=true")
def test_same_key_same_bits_after_recompiling(data):
    first = _fits(data, all_paths=False)
    jax.clear_caches()
    _assert_same_bits(first, _fits(data, all_paths=False))


def test_a_different_key_gives_different_results(data):
    # the bit-equality check above is not vacuous: the outputs depend on the key
    a = kmeans.fit(data, 5, key=jax.random.key(1), max_iter=5)[0].centroids
    b = kmeans.fit(data, 5, key=jax.random.key(2), max_iter=5)[0].centroids
    assert np.asarray(a).tobytes() != np.asarray(b).tobytes()


# ----------------------------------------------------------------------------------------------------------
# the deterministic sums
# ----------------------------------------------------------------------------------------------------------
def test_one_hot_sums_equal_float64_sums():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(500, 3)).astype(np.float32)
    ids = rng.integers(0, 7, 500)
    ids[:5] = 9  # outside [0, K): dropped, as jax.ops.segment_sum drops them
    ref = np.zeros((7, 3))
    keep = ids < 7
    np.add.at(ref, ids[keep], v[keep].astype(np.float64))
    got = numerics.one_hot_segment_sum(jnp.asarray(v), jnp.asarray(ids), 7)
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5)
    # the backend's choice is the scatter on a CPU, bit for bit
    if BACKEND == "cpu":
        _assert_same_bits(numerics.segment_sum(v, ids, 7), jax.ops.segment_sum(v, ids, 7))
    added = numerics.add_at(jnp.ones((7, 3)), jnp.asarray(ids), jnp.asarray(v))
    np.testing.assert_allclose(added, ref + 1.0, rtol=0, atol=2e-5)


def _scatter_adds(fn, *args, platform):
    """Number of floating-point scatter-adds in the StableHLO of `fn` exported for `platform` (integer ones, as in
    `jnp.nonzero`, add exactly in any order)."""
    text = jax.export.export(jax.jit(fn), platforms=[platform])(*args).mlir_module()
    n = 0
    for m in re.finditer(r'"stablehlo\.scatter"', text):
        body = text[m.end(): text.index("stablehlo.return", m.end())]
        n += "stablehlo.add" in body and re.search(r"tensor<(f16|bf16|f32|f64)>", body) is not None
    return n


FIT_PROGRAMS = {
    "kmeans.fit": lambda x: kmeans.fit(x, 4, key=jax.random.key(0), n_init=2, max_iter=3, chunk_size=64),
    "kmeans.fit_minibatch": lambda x: kmeans.fit_minibatch(x, 4, key=jax.random.key(0), batch_size=16, max_iter=3),
    "kmeans.lloyd_step": lambda x: kmeans.lloyd_step(x, x[:4]),
    "mixture.fit": lambda x: mixture.fit(x, 2, key=jax.random.key(0), init_method="kmeans", max_iter=3),
    "hmm.fit": lambda x: hmm.fit(x, 2, key=jax.random.key(0), max_iter=3),
    "bayesian_mixture.fit": lambda x: bayesian_mixture.fit(x, 2, key=jax.random.key(0), max_iter=3),
    "scale.kmeans_fit_sharded": lambda x: scale.kmeans_fit_sharded(x, 3, init_centroids=x[:3], max_iter=3),
    "em.fit categorical": lambda x: em.fit(jax.nn.one_hot(jnp.argmax(x, 1), 3), families.categorical(), 2,
                                           key=jax.random.key(0), max_iter=3),
}


@pytest.mark.parametrize("name", sorted(FIT_PROGRAMS))
def test_no_scatter_add_in_accelerator_programs(name):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(128, 3)), jnp.float32)
    fn = FIT_PROGRAMS[name]
    for platform in ("cuda", "tpu"):
        assert _scatter_adds(fn, x, platform=platform) == 0, (name, platform)


def test_the_scatter_check_can_fail():
    # the CPU program of the same fit keeps XLA's scatter-add (faster there, and sequential); a plain
    # segment_sum is seen on every platform
    x = jnp.asarray(np.random.default_rng(1).normal(size=(64, 3)), jnp.float32)
    assert _scatter_adds(FIT_PROGRAMS["kmeans.lloyd_step"], x, platform="cpu") > 0
    assert _scatter_adds(lambda x: jax.ops.segment_sum(x, jnp.zeros(64, jnp.int32), 2), x, platform="cuda") == 1
