"""Gaussian HMM on the Old Faithful series: the decoded regime of every eruption, drawn over the series.

The 272 eruptions are consecutive (Azzalini and Bowman, 1990), so their order carries information that a mixture
ignores: a short eruption is almost always followed by a long one. A 2-state Gaussian HMM on (duration, waiting
time) finds the same two clusters as the mixture, and its transition matrix shows that alternation.
"""

from __future__ import annotations

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments._common import save_figure
from jaxprob import datasets, hmm, mixture

DESCRIPTION = "Gaussian HMM on the Old Faithful series: decoded regime per eruption, transitions, BIC over states"
DEFAULTS = {"n_states": 2, "covariance_type": "full", "n_init": 5, "max_iter": 200, "tol": 1e-6, "max_states": 4}


def run(out_dir, seed, n_states, covariance_type, n_init, max_iter, tol, max_states):
    x = datasets.load_faithful()
    n = x.shape[0]
    keys = jax.random.split(jax.random.key(seed), max_states + 1)
    fit = dict(covariance_type=covariance_type, n_init=n_init, max_iter=max_iter, tol=tol)
    model, info = hmm.fit(x, n_states, key=keys[0], **fit)
    order = np.argsort(np.asarray(model.means[:, 0]))  # states by eruption duration: short first
    rank = np.empty_like(order)
    rank[order] = np.arange(n_states)
    path = rank[np.asarray(hmm.predict(x, model))]
    proba = np.asarray(hmm.predict_proba(x, model))[:, order]
    trans = np.asarray(model.transition)[order][:, order]
    trace = np.asarray(info.trace)[: int(info.n_iter)]

    # the same emission model without time: a mixture of n_states Gaussians
    gmm, _ = mixture.fit(x, n_states, key=keys[0], **fit)
    mixture_ll = float(mixture.score(x, gmm)) * n
    hmm_ll = float(hmm.score(x, model))

    bics = {}
    for k in range(1, max_states + 1):
        m_k, _ = hmm.fit(x, k, key=keys[k], **fit)
        bics[k] = float(hmm.bic(x, m_k))
    best_k = min(bics, key=bics.get)

    colors = np.array(["tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange"])[:n_states]
    idx = np.arange(n)
    fig, axes = plt.subplots(3, 1, figsize=(12, 7.5), sharex=True, gridspec_kw={"height_ratios": [2, 2, 1]})
    for ax, col, label in ((axes[0], 0, "eruption duration (min)"), (axes[1], 1, "waiting time (min)")):
        ax.plot(idx, x[:, col], color="0.75", lw=0.8, zorder=1)
        ax.scatter(idx, x[:, col], c=colors[path], s=14, zorder=2)
        ax.set_ylabel(label)
    axes[0].set_title(f"Old Faithful, {n} consecutive eruptions: Viterbi regime of a {n_states}-state "
                      f"{covariance_type} Gaussian HMM (blue: short eruptions, red: long)")
    axes[2].plot(idx, proba[:, -1], color="tab:red", lw=1)
    axes[2].set(ylabel="p(long | all data)", xlabel="eruption number", ylim=(-0.05, 1.05))
    for ax in axes:
        ax.grid(alpha=0.3)
    save_figure(fig, out_dir, "hmm_faithful_series")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    im = axes[0].imshow(trans, cmap="Blues", vmin=0, vmax=1)
    for i in range(n_states):
        for j in range(n_states):
            axes[0].text(j, i, f"{trans[i, j]:.2f}", ha="center", va="center",
                         color="white" if trans[i, j] > 0.5 else "black")
    names = ["short", "long"] if n_states == 2 else [f"state {i}" for i in range(n_states)]
    axes[0].set(xticks=range(n_states), yticks=range(n_states), xticklabels=names, yticklabels=names,
                xlabel="next eruption", ylabel="this eruption", title="fitted transition matrix")
    fig.colorbar(im, ax=axes[0], fraction=0.046)
    ks = list(bics)
    axes[1].plot(ks, [bics[k] for k in ks], marker="o")
    axes[1].axvline(best_k, color="tab:red", ls="--", label=f"lowest BIC: {best_k} states")
    axes[1].set(xlabel="number of states", ylabel="BIC", title="BIC over the number of states", xticks=ks)
    axes[1].legend()
    axes[1].grid(alpha=0.3)
    save_figure(fig, out_dir, "hmm_faithful_transitions")

    followers = path[1:][path[:-1] == 0]  # the state after each short eruption
    return {
        "n_iter": int(info.n_iter),
        "converged": bool(info.converged),
        "ll_monotone": bool(np.all(np.diff(trace) >= -1e-5 * np.abs(trace[:-1]))),
        "means": np.asarray(model.means)[order],
        "transition": trans,
        "initial": np.asarray(model.initial)[order],
        "log_likelihood": hmm_ll,
        "mixture_log_likelihood": mixture_ll,
        "state_counts": np.bincount(path, minlength=n_states),
        "share_short_followed_by_long": float(np.mean(followers == n_states - 1)) if followers.size else None,
        "bic": bics,
        "best_n_states": best_k,
    }
