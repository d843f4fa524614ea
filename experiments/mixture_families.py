"""Mixtures beyond the Gaussian: Bernoulli components of binarised digits, and a Student-t mixture that resists
outliers injected into Old Faithful where a Gaussian mixture's means are pulled away."""

from __future__ import annotations

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments._common import save_figure
from jaxprob import datasets, families, mixture

DESCRIPTION = ("Bernoulli mixture of binarised 8x8 digits (components drawn as images); Student-t vs Gaussian "
               "mixture on Old Faithful with injected outliers (error of the means against the clean fits)")
DEFAULTS = {"n_digit_components": 12, "threshold": 7.0, "alpha": 1.0, "n_init": 4, "max_iter": 200, "tol": 1e-6,
            "outlier_counts": [0, 5, 10, 20, 40], "dof": 4.0}


def _digits(out_dir, key, n_components, threshold, alpha, n_init, max_iter, tol):
    x, y = datasets.load_digits()
    xb = (x > threshold).astype(np.float32)  # pixels of grey level above the threshold are "on"
    model, info = mixture.fit(xb, n_components, key=key, family=families.bernoulli(alpha=alpha), n_init=n_init,
                              max_iter=max_iter, tol=tol)
    labels = np.asarray(mixture.predict(xb, model))
    # purity: every component votes for its most frequent digit
    majority = np.array([np.bincount(y[labels == k], minlength=10).argmax() if np.any(labels == k) else -1
                         for k in range(n_components)])
    purity = float(np.mean(majority[labels] == y))
    order = np.argsort(majority * 10 - np.asarray(model.weights))  # by majority digit, then weight
    probs = np.asarray(model.probs)

    cols = 6
    rows = -(-n_components // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, k in zip(axes.ravel(), order, strict=False):
        ax.imshow(probs[k].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"'{majority[k]}'  {float(model.weights[k]):.2f}", fontsize=9)
    fig.suptitle(f"Bernoulli mixture of binarised digits: the {n_components} component means "
                 "(majority digit, weight)", fontsize=10)
    save_figure(fig, out_dir, "digits_bernoulli_components")
    return {
        "n_components": n_components,
        "log_likelihood": float(info.log_likelihood),
        "bic": float(mixture.bic(xb, model)),
        "purity": purity,
        "digits_represented": int(len(set(majority[majority >= 0].tolist()))),
        "converged": bool(info.converged),
        "n_iter": int(info.n_iter),
        "weights": np.asarray(model.weights)[order],
    }


def _by_duration(model):
    order = np.argsort(np.asarray(model.means)[:, 0])
    return np.asarray(model.means)[order]


def _faithful(out_dir, key, outlier_counts, dof, n_init, max_iter, tol):
    x = datasets.load_faithful()
    n = len(x)
    n_out = max(outlier_counts)
    rng = np.random.default_rng(0)  # the outliers are part of the data set, not of the seed
    lo, hi = x.min(0), x.max(0)
    span = hi - lo
    outliers = rng.uniform(lo - 1.5 * span, hi + 1.5 * span, (n_out, 2)).astype(np.float32)
    xo = np.concatenate([x, outliers])
    sd = x.std(0)
    fams = {"gaussian": families.gaussian("full"), "student_t": families.student_t(dof=dof)}
    keys = dict(zip(fams, jax.random.split(key, len(fams)), strict=True))
    results = {name: {"error": [], "dof": [], "means": []} for name in fams}
    clean = {}
    models = {}
    for m in outlier_counts:
        # one compiled program per family: the unused outliers get weight 0
        w = np.concatenate([np.ones(n), np.arange(n_out) < m]).astype(np.float32)
        for name, fam in fams.items():
            model, _ = mixture.fit(xo, 2, key=keys[name], family=fam, n_init=n_init, max_iter=max_iter, tol=tol,
                                   sample_weight=w)
            means = _by_duration(model)
            if m == 0:
                clean[name] = means
            err = np.abs((means - clean["gaussian"]) / sd).max()  # standardised, against the clean Gaussian fit
            results[name]["error"].append(float(err))
            results[name]["means"].append(means)
            if name == "student_t":
                results[name]["dof"].append(np.sort(np.asarray(model.dof)))
            models[name, m] = model

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    m = max(outlier_counts)
    gx, gy = np.meshgrid(np.linspace(*(lo - 1.6 * span)[:1], *(hi + 1.6 * span)[:1], 120),
                         np.linspace(*(lo - 1.6 * span)[1:], *(hi + 1.6 * span)[1:], 120))
    grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
    for ax, name in zip(axes[:2], fams, strict=True):
        model = models[name, m]
        lp = np.asarray(mixture.log_prob(grid, model)).reshape(gx.shape)
        ax.contour(gx, gy, lp, levels=np.linspace(lp.max() - 12, lp.max(), 7), cmap="viridis", linewidths=0.8)
        ax.scatter(x[:, 0], x[:, 1], s=6, color="0.5", label="Old Faithful")
        ax.scatter(outliers[:m, 0], outliers[:m, 1], s=14, marker="x", color="tab:red", label=f"{m} outliers")
        ax.scatter(*clean["gaussian"].T, s=90, marker="+", color="k", label="clean-data means")
        ax.scatter(*_by_duration(model).T, s=50, marker="o", facecolor="none", edgecolor="tab:blue",
                   label="fitted means")
        ax.set(title=f"{name.replace('_', '-')} mixture, {m} outliers", xlabel="eruption duration (min)",
               ylabel="waiting time (min)")
        ax.legend(loc="upper left", fontsize=7)
    for name in fams:
        axes[2].plot(outlier_counts, results[name]["error"], marker="o", label=name.replace("_", "-"))
    axes[2].set(xlabel="number of injected outliers", ylabel="max |mean error| / data sd",
                title="Error of the component means against the clean Gaussian fit")
    axes[2].grid(alpha=0.3)
    axes[2].legend()
    save_figure(fig, out_dir, "faithful_outliers_student_t")
    return {
        "outlier_counts": list(outlier_counts),
        "n_samples": n,
        "clean_means": {name: clean[name] for name in fams},
        "mean_error": {name: results[name]["error"] for name in fams},
        "student_t_dof": results["student_t"]["dof"],
    }


def run(out_dir, seed, n_digit_components, threshold, alpha, n_init, max_iter, tol, outlier_counts, dof):
    k_digits, k_faithful = jax.random.split(jax.random.key(seed))
    return {
        "digits": _digits(out_dir, k_digits, n_digit_components, threshold, alpha, n_init, max_iter, tol),
        "faithful": _faithful(out_dir, k_faithful, outlier_counts, dof, n_init, max_iter, tol),
    }
