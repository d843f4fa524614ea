"""KDE of Old Faithful (1-D waiting times and the 2-D data) with Scott, Silverman and held-out bandwidths."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments._common import save_figure
from jaxprob import datasets, kde

DESCRIPTION = "KDE of Old Faithful (1-D waiting, 2-D) with Scott, Silverman and held-out bandwidths"
DEFAULTS = {"kernel": "gaussian", "n_scales": 25, "valid_fraction": 0.3, "grid": 120}


def _bandwidths(x_train, x_valid, kernel, n_scales):
    scales = jnp.geomspace(0.1, 3.0, n_scales)
    search = kde.select_bandwidth(x_train, x_valid, scales, kernel=kernel)
    out = {
        "scott": kde.bandwidth_scott(x_train),
        "silverman": kde.bandwidth_silverman(x_train),
        "held-out": search.best_bandwidth,
    }
    return out, search


def run(out_dir, seed, kernel, n_scales, valid_fraction, grid):
    import matplotlib.pyplot as plt

    x = datasets.load_faithful()
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    n_valid = int(round(valid_fraction * x.shape[0]))
    valid, train = x[perm[:n_valid]], x[perm[n_valid:]]
    metrics = {"n_train": int(train.shape[0]), "n_valid": n_valid}

    # 1-D: waiting time
    w_train, w_valid = train[:, 1:], valid[:, 1:]
    bws, search = _bandwidths(w_train, w_valid, kernel, n_scales)
    xs = jnp.linspace(35.0, 105.0, 400)[:, None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    axes[0].hist(x[:, 1], bins=30, density=True, color="0.85", label="all data")
    m1 = {}
    for name, h in bws.items():
        model = kde.fit(w_train, bandwidth=h, kernel=kernel)
        ll = float(kde.score(w_valid, model))
        m1[name] = {"bandwidth_std": float(jnp.sqrt(h[0, 0])), "valid_mean_log_lik": ll}
        axes[0].plot(xs[:, 0], jnp.exp(kde.log_prob(xs, model)),
                     label=f"{name}: h={float(jnp.sqrt(h[0, 0])):.2f}, valid ll={ll:.3f}")
    axes[0].set(xlabel="waiting time (min)", ylabel="density", title=f"1-D {kernel} KDE")
    axes[0].legend(fontsize=8)
    axes[1].semilogx(np.asarray(search.scales), np.asarray(search.scores), "o-")
    axes[1].axvline(float(search.best_scale), color="C3", ls="--", label="best")
    axes[1].set(xlabel="scale s of Scott's bandwidth (H = s² H_scott)", ylabel="held-out mean log-likelihood",
                title="bandwidth grid (one vmapped program)")
    axes[1].legend()
    save_figure(fig, out_dir, "kde_1d_waiting")
    metrics["one_d"] = m1

    # 2-D
    bws, search = _bandwidths(train, valid, kernel, n_scales)
    gx, gy = jnp.meshgrid(jnp.linspace(1.0, 6.0, grid), jnp.linspace(35.0, 105.0, grid))
    q = jnp.stack([gx.ravel(), gy.ravel()], axis=1)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), sharey=True, layout="constrained")
    m2, dens = {}, {}
    for name, h in bws.items():
        model = kde.fit(train, bandwidth=h, kernel=kernel)
        m2[name] = {"bandwidth": np.asarray(h).tolist(), "valid_mean_log_lik": float(kde.score(valid, model))}
        dens[name] = np.asarray(jnp.exp(kde.log_prob(q, model)).reshape(grid, grid))
    levels = np.linspace(0.0, max(float(d.max()) for d in dens.values()), 16)  # one colour scale for the three
    notes = {"silverman": " (= Scott's in 2-D)"}  # the two rules' factors coincide when d = 2
    for ax, name in zip(axes, bws, strict=True):
        filled = ax.contourf(gx, gy, dens[name], levels=levels, cmap="viridis")
        ax.scatter(train[:, 0], train[:, 1], s=4, c="w", alpha=0.6)
        ax.set(xlabel="eruption (min)",
               title=f"{name}{notes.get(name, '')}: valid ll={m2[name]['valid_mean_log_lik']:.3f}")
    axes[0].set_ylabel("waiting (min)")
    fig.colorbar(filled, ax=axes, label="density (1 / min²)", shrink=0.9, format="%.3f")
    save_figure(fig, out_dir, "kde_2d_faithful")
    samples = kde.sample(kde.fit(train, bandwidth=bws["held-out"], kernel=kernel), 2000, key=jax.random.key(seed))
    m2["held-out"]["best_scale"] = float(search.best_scale)
    m2["sample_mean"] = np.asarray(samples.mean(0)).tolist()
    metrics["two_d"] = m2
    metrics["data_mean"] = x.mean(0).tolist()
    return metrics
