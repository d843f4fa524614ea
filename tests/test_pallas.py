"""The fused Pallas Lloyd pass (jaxprob.pallas_kmeans) against float64 brute force and the pure-JAX pass.

On a CPU the kernel runs in Pallas interpret mode, so CI covers its logic (blocking, centroid tiles, padding, ties,
the per-segment partial sums); the compiled kernel is checked by the `gpu` tests below on a GPU or TPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprob import kmeans, pallas_kmeans

ACCELERATOR = jax.default_backend() in ("gpu", "tpu")


def _problem(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 4, (k, d))
    x = (centers[rng.integers(0, k, n)] + rng.normal(size=(n, d))).astype(np.float32)
    c = (centers + 0.1 * rng.normal(size=(k, d))).astype(np.float32)
    w = rng.uniform(0.5, 2.0, n).astype(np.float32)
    w[::7] = 0.0  # weight 0 rows count in no sum
    return x, c, w


def _reference(x, c, w):
    """float64 brute force: labels (lowest index among ties), distances, weighted sums and weights."""
    x64, c64, w64 = (np.asarray(a, np.float64) for a in (x, c, w))
    d = ((x64[:, None, :] - c64[None]) ** 2).sum(-1)
    labels = d.argmin(1)
    sums = np.zeros_like(c64)
    np.add.at(sums, labels, w64[:, None] * x64)
    counts = np.bincount(labels, weights=w64, minlength=c.shape[0])
    return labels, d.min(1), sums, counts, np.sort(d, axis=1)


def _check(out, x, c, w):
    labels, dist, sums, counts, d_sorted = _reference(x, c, w)
    clear = (d_sorted[:, 1] - d_sorted[:, 0]) > 1e-3 * (1 + d_sorted[:, 0])  # no float32 near-tie
    assert clear.mean() > 0.5
    np.testing.assert_array_equal(np.asarray(out.labels)[clear], labels[clear])
    scale = 1 + (x.astype(np.float64) ** 2).sum(1)
    assert np.all(np.abs(np.asarray(out.distances) - dist) <= 1e-5 * scale)
    # the sums of the kernel's own labels, in float64
    mine = np.asarray(out.labels)
    ref_sums = np.zeros_like(sums)
    np.add.at(ref_sums, mine, w.astype(np.float64)[:, None] * x)
    np.testing.assert_allclose(out.sums, ref_sums, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out.counts, np.bincount(mine, weights=w, minlength=c.shape[0]), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize(
    "n, d, k, rows, tile, segments",
    [
        (1000, 5, 7, 64, 64, 512),  # defaults: one tile, K and D padded to 16
        (777, 20, 40, 16, 16, 3),  # several tiles and sub-blocks, rows padded
        (300, 1, 100, 32, 32, 2),  # D = 1, K padded to 128 (4 tiles)
    ],
)
def test_interpret_mode_matches_brute_force(n, d, k, rows, tile, segments):
    x, c, w = _problem(n, d, k)
    out = pallas_kmeans.lloyd_pass(x, c, sample_weight=w, block_rows=rows, block_clusters=tile, n_segments=segments,
                                   interpret=True)
    _check(out, x, c, w)


def test_tpu_layout_in_interpret_mode():
    # the sequential grid axis of the TPU layout (accumulating in the resident output block), run by the interpreter
    x, c, w = _problem(500, 6, 9, seed=2)
    out = pallas_kmeans._lloyd_pass(jnp.asarray(x), jnp.asarray(w), jnp.asarray(c), None, block_rows=32,
                                    block_clusters=16, n_segments=2, interpret=True, platform="tpu")
    _check(out, x, c, w)


def test_ties_go_to_the_lowest_index_across_tiles():
    x = np.array([[1.0, 1.0], [5.0, 5.0]], np.float32)
    c = np.full((40, 2), 50.0, np.float32)
    c[3] = c[35] = [1.0, 1.0]  # the same centroid in the first and the third tile of 16
    c[20] = c[21] = [5.0, 5.0]  # twice in the second tile
    out = pallas_kmeans.lloyd_pass(x, c, block_clusters=16, interpret=True)
    lab, _ = kmeans.assign(x, c)
    assert out.labels.tolist() == lab.tolist() == [3, 20]


def test_the_same_pass_as_the_pure_jax_lloyd_step(monkeypatch):
    # k-means with the fused pass switched on for the CPU (run by the interpreter) against its pure-JAX pass;
    # shapes used by no other test, so neither program comes from the other's cache
    x, c, _ = _problem(330, 3, 6, seed=4)
    ref = kmeans.lloyd_step(x, c)
    fused = kmeans._BACKENDS["cpu"]._replace(pallas=True)
    monkeypatch.setitem(kmeans._BACKENDS, "cpu", fused)
    jax.clear_caches()
    got = kmeans.lloyd_step(x, c)
    jax.clear_caches()
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[2], ref[2], rtol=1e-5)


def test_bad_inputs_are_named():
    x = jnp.ones((8, 3))
    with pytest.raises(ValueError, match="centroids"):
        pallas_kmeans.lloyd_pass(x, jnp.ones((2, 4)), interpret=True)
    with pytest.raises(ValueError, match="sample_weight"):
        pallas_kmeans.lloyd_pass(x, jnp.ones((2, 3)), sample_weight=jnp.ones(5), interpret=True)
    with pytest.raises(ValueError, match="K x D"):
        pallas_kmeans.lloyd_pass(x, jnp.ones((10_000, 3)), interpret=True)
    with jax.enable_x64(True), pytest.raises(ValueError, match="float32"):
        pallas_kmeans.lloyd_pass(np.ones((8, 3)), np.ones((2, 3)), interpret=True)
    assert not pallas_kmeans.supported(2, 3, jnp.float64)


# ----------------------------------------------------------------------------------------------------------
# compiled on the device (GPU: Triton; TPU: Mosaic)
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not ACCELERATOR, reason="the compiled kernel needs a GPU or TPU")
@pytest.mark.parametrize("n, d, k", [(100_000, 16, 64), (50_000, 64, 1024), (4_099, 3, 5)])
def test_gpu_compiled_kernel_matches_brute_force(n, d, k):
    x, c, w = _problem(n, d, k, seed=5)
    out = jax.jit(lambda x, c, w: pallas_kmeans.lloyd_pass(x, c, sample_weight=w))(x, c, w)
    _check(out, x, c, w)
    again = jax.jit(lambda x, c, w: pallas_kmeans.lloyd_pass(x, c, sample_weight=w))(x, c, w)
    for a, b in zip(out, again, strict=True):  # deterministic: no atomics
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
