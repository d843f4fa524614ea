"""Gaussian mixture on Old Faithful: covariance ellipses, EM log-likelihood curve, sampling."""

from __future__ import annotations

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments._common import save_figure
from jaxprob import datasets, mixture, plotting

DESCRIPTION = "Gaussian mixture on Old Faithful: ellipses, EM curve, samples from the mixture and from one component"
DEFAULTS = {"n_components": 2, "covariance_type": "full", "n_init": 5, "max_iter": 200, "tol": 1e-6, "n_samples": 500}


def run(out_dir, seed, n_components, covariance_type, n_init, max_iter, tol, n_samples):
    x = datasets.load_faithful()
    key_fit, key_sample, key_comp = jax.random.split(jax.random.key(seed), 3)
    params, info = mixture.fit(x, n_components, key=key_fit, covariance_type=covariance_type, n_init=n_init,
                               max_iter=max_iter, tol=tol)
    order = np.argsort(np.asarray(params.means[:, 0]))  # report components by eruption duration
    labels = np.asarray(mixture.predict(x, params))
    trace = np.asarray(info.trace)[: int(info.n_iter)]

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(x[:, 0], x[:, 1], c=labels, cmap="coolwarm", s=12, alpha=0.7)
    plotting.covariance_ellipses(ax, params, colors=["tab:blue", "tab:red", "tab:green", "tab:purple"])
    ax.set(xlabel="eruption duration (min)", ylabel="waiting time to next eruption (min)",
           title=f"Old Faithful, {n_components}-component {covariance_type} mixture (1σ, 2σ ellipses)")
    save_figure(fig, out_dir, "faithful_ellipses")

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(1, len(trace) + 1), trace, marker="o", ms=3)
    ax.set(xlabel="EM iteration", ylabel="mean log-likelihood per sample",
           title="EM never decreases the log-likelihood")
    ax.grid(alpha=0.3)
    save_figure(fig, out_dir, "faithful_em_curve")

    xs, ls = mixture.sample(params, n_samples, key=key_sample)
    comp = int(order[-1])
    xc = mixture.sample_component(params, comp, n_samples // 2, key=key_comp)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True, sharey=True)
    axes[0].scatter(x[:, 0], x[:, 1], s=10, color="0.6", label="data")
    axes[0].scatter(np.asarray(xs)[:, 0], np.asarray(xs)[:, 1], s=8, c=np.asarray(ls), cmap="coolwarm",
                    alpha=0.6, label="samples from the mixture")
    axes[0].set(title=f"{n_samples} samples from the fitted mixture", xlabel="eruption duration (min)",
                ylabel="waiting time (min)")
    axes[0].legend(loc="lower right")
    axes[1].scatter(x[:, 0], x[:, 1], s=10, color="0.6", label="data")
    axes[1].scatter(np.asarray(xc)[:, 0], np.asarray(xc)[:, 1], s=8, color="tab:red", alpha=0.6,
                    label=f"samples from component {comp}")
    axes[1].set(title="samples from the long-eruption component", xlabel="eruption duration (min)")
    axes[1].legend(loc="lower right")
    save_figure(fig, out_dir, "faithful_samples")

    return {
        "n_iter": int(info.n_iter),
        "converged": bool(info.converged),
        "log_likelihood": float(info.log_likelihood),
        "restart_log_likelihoods": np.asarray(info.restart_log_likelihoods),
        "ll_monotone": bool(np.all(np.diff(trace) >= -1e-5 * np.abs(trace[:-1]))),
        "weights": np.asarray(params.weights)[order],
        "means": np.asarray(params.means)[order],
        "sample_mean_error": float(np.abs(np.asarray(xs).mean(0) - x.mean(0)).max()),
    }
