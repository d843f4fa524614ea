"""Variational Bayesian Gaussian mixtures with K=10 on Old Faithful and on the digits in PCA space: the posterior
weights against the weight concentration prior, for a Dirichlet process and a Dirichlet distribution, and the
number of components kept against the one BIC picks over K = 1..10 (`jaxprob.selection.fit_grid`)."""

from __future__ import annotations

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments._common import save_figure
from jaxprob import bayesian_mixture as bgm
from jaxprob import datasets, decomposition, plotting, selection

DESCRIPTION = ("Bayesian mixtures (K=10, full covariances) on Old Faithful and 2-D PCA digits: posterior weights "
               "against the concentration prior, components kept against BIC's K")
DEFAULTS = {
    "n_components": 10,
    "concentrations": [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3],
    "pca_dims": 2,
    "n_init": 3,
    "max_iter": 1000,
    "tol": 1e-7,
    "bic_n_init": 3,
    "threshold": 0.01,
}


def _data(pca_dims):
    faithful = datasets.load_faithful()
    faithful = (faithful - faithful.mean(0)) / faithful.std(0)
    digits, labels = datasets.load_digits()
    pca = decomposition.pca_fit(digits, pca_dims)
    scores = np.asarray(decomposition.pca_transform(digits, pca))
    return {"faithful": (faithful, None), "digits": (scores, labels)}


class _Components:
    """The components of a fit kept for drawing (what plotting.covariance_ellipses reads)."""

    def __init__(self, means, covariances, covariance_type):
        self.means, self.covariances, self.covariance_type = means, covariances, covariance_type


def run(out_dir, seed, n_components, concentrations, pca_dims, n_init, max_iter, tol, bic_n_init, threshold):
    data = _data(pca_dims)
    key = jax.random.key(seed)
    gammas = [float(g) for g in concentrations]
    default_gamma = 1.0 / n_components  # scikit-learn's default prior
    results, pictures = {}, {}
    for d_index, (name, (x, _)) in enumerate(data.items()):
        k_fit, k_bic = jax.random.split(jax.random.fold_in(key, d_index))
        grid = selection.fit_grid(x, n_components, key=k_bic, covariance_types=("full",), n_init=bic_n_init,
                                  max_iter=300, tol=1e-6)
        best_r = np.argmax(np.asarray(grid.log_likelihood)[0], axis=-1)
        bic = np.asarray(grid.bic)[0][np.arange(n_components), best_r]
        res = {"bic": bic, "bic_n_components": int(grid.best_n_components)}
        for prior_type in bgm.WEIGHT_PRIOR_TYPES:
            rows = []
            for gamma in gammas + [default_gamma]:
                # the concentration is a traced leaf of the prior: one compiled program per data set and prior
                model, info = bgm.fit(x, n_components, key=k_fit, weight_concentration_prior_type=prior_type,
                                      weight_concentration_prior=gamma, n_init=n_init, max_iter=max_iter, tol=tol)
                weights = np.asarray(model.weights)
                rows.append({
                    "weights": np.sort(weights)[::-1],
                    "n_effective": int(np.sum(weights > threshold)),
                    "elbo_per_sample": float(info.log_likelihood),
                    "converged": bool(info.converged),
                    "n_iter": int(info.n_iter),
                })
                if prior_type == "dirichlet_process" and gamma == default_gamma:
                    keep = weights > threshold
                    pictures[name] = _Components(np.asarray(model.means)[keep], np.asarray(model.covariances)[keep],
                                                 "full")
            res[prior_type] = {"per_concentration": rows[:-1], "default_prior": rows[-1]}
        gmm = selection.cell_params(grid, "full", int(grid.best_n_components))  # BIC's model, for the picture
        pictures[name + "_bic"] = _Components(np.asarray(gmm.means), np.asarray(gmm.covariances), "full")
        results[name] = res

    _weights_figure(out_dir, results, gammas, threshold)
    _effective_figure(out_dir, results, gammas)
    _fits_figure(out_dir, data, pictures, results, default_gamma)

    metrics = {}
    for name, res in results.items():
        metrics[name] = {
            "bic_n_components": res["bic_n_components"],
            "bic": res["bic"],
        }
        for prior_type in bgm.WEIGHT_PRIOR_TYPES:
            rows = res[prior_type]["per_concentration"]
            default = res[prior_type]["default_prior"]
            metrics[name][prior_type] = {
                "concentrations": gammas,
                "n_effective": [r["n_effective"] for r in rows],
                "sorted_weights": [np.round(r["weights"], 6) for r in rows],
                "elbo_per_sample": [r["elbo_per_sample"] for r in rows],
                "all_converged": all(r["converged"] for r in rows),
                "default_prior_n_effective": default["n_effective"],
                "default_prior_weights": np.round(default["weights"], 6),
            }
    return metrics


def _weights_figure(out_dir, results, gammas, threshold):
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), sharex=True, sharey=True, layout="constrained")
    for r, (name, res) in enumerate(results.items()):
        for c, prior_type in enumerate(bgm.WEIGHT_PRIOR_TYPES):
            ax = axes[r, c]
            w = np.array([row["weights"] for row in res[prior_type]["per_concentration"]])  # (G, K) sorted
            colors = plt.cm.viridis(np.linspace(0, 0.9, w.shape[1]))
            for j in range(w.shape[1]):
                ax.plot(gammas, np.maximum(w[:, j], 1e-7), marker="o", ms=3, color=colors[j],
                        label=f"{j + 1}" if r == 0 and c == 0 else None)
            ax.axhline(threshold, color="0.4", ls=":", lw=1)
            ax.set(xscale="log", yscale="log", ylim=(1e-7, 1.5),
                   title=f"{name}: {prior_type.replace('_', ' ')} (BIC picks K={res['bic_n_components']})")
            ax.grid(alpha=0.3)
            if r == 1:
                ax.set_xlabel("weight concentration prior $\\gamma_0$")
            if c == 0:
                ax.set_ylabel("posterior weights, sorted")
    # one legend for the four panels, outside them so that it covers no data point
    fig.legend(*axes[0, 0].get_legend_handles_labels(), title="rank", ncol=10, fontsize=7, loc="outside lower center")
    fig.suptitle("K = 10 components: the posterior weights collapse onto the components the data support "
                 "(dotted: 1%)")
    save_figure(fig, out_dir, "weights_vs_concentration")


def _effective_figure(out_dir, results, gammas):
    fig, ax = plt.subplots(figsize=(7, 4.2))
    styles = {"dirichlet_process": "-", "dirichlet_distribution": "--"}
    for i, (name, res) in enumerate(results.items()):
        color = f"C{i}"
        for prior_type in bgm.WEIGHT_PRIOR_TYPES:
            n_eff = [row["n_effective"] for row in res[prior_type]["per_concentration"]]
            ax.plot(gammas, n_eff, styles[prior_type], marker="o", color=color,
                    label=f"{name}, {prior_type.replace('_', ' ')}")
        ax.axhline(res["bic_n_components"], color=color, ls=":", lw=2, label=f"{name}, BIC's K")
    ax.set(xscale="log", xlabel="weight concentration prior $\\gamma_0$", ylabel="components above 1% weight",
           title="Components kept by the variational posterior (K = 10) and by BIC", ylim=(0, 11))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, out_dir, "effective_components")


def _fits_figure(out_dir, data, pictures, results, default_gamma):
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    for ax, (name, (x, labels)) in zip(axes, data.items(), strict=True):
        if labels is None:
            ax.scatter(x[:, 0], x[:, 1], s=8, color="0.6")
        else:
            ax.scatter(x[:, 0], x[:, 1], s=5, c=labels, cmap="tab10", alpha=0.5)
        vb, bic = pictures[name], pictures[name + "_bic"]
        plotting.covariance_ellipses(ax, vb, n_std=(2.0,), colors=["k"] * len(vb.means))
        plotting.covariance_ellipses(ax, bic, n_std=(2.0,), colors=["tab:red"] * len(bic.means), ls="--")
        n_vb = results[name]["dirichlet_process"]["default_prior"]["n_effective"]
        ax.set(title=f"{name}: variational DP, $\\gamma_0$={default_gamma:g}: {n_vb} components (black); "
                     f"BIC: {len(bic.means)} (red dashed)")
        ax.title.set_fontsize(9)
    axes[0].set(xlabel="eruption duration (standardised)", ylabel="waiting time (standardised)")
    axes[1].set(xlabel="first principal component", ylabel="second principal component")
    save_figure(fig, out_dir, "fits")
