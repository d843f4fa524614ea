"""Good vs bad k-means initialisation on 2-D data: partitions, objective and the spread over restarts."""

from __future__ import annotations

import jax
import numpy as np

from experiments._common import save_figure
from jaxprob import kmeans

DESCRIPTION = (
    "k-means++ vs random initialisation on 2-D blobs: partitions reached and inertia over many restarts"
)
DEFAULTS = {"n_per_cluster": 150, "n_clusters": 9, "spread": 0.6, "n_restarts": 200}


def _grid_blobs(rng, n_per, k, spread):
    side = int(np.ceil(np.sqrt(k)))
    means = np.array([[i % side, i // side] for i in range(k)], float) * 4.0
    x = np.concatenate([m + spread * rng.standard_normal((n_per, 2)) for m in means])
    return x.astype(np.float32), np.repeat(np.arange(k), n_per)


def run(out_dir, seed: int, n_per_cluster: int, n_clusters: int, spread: float, n_restarts: int) -> dict:
    import matplotlib.pyplot as plt

    x, _ = _grid_blobs(np.random.default_rng(seed), n_per_cluster, n_clusters, spread)
    key = jax.random.key(seed)
    per_method = {}
    for method in ("kmeans++", "random"):
        # n_restarts independent runs as one vmapped program; every restart's inertia is in the info
        res, info = kmeans.fit(x, n_clusters, key=key, init_method=method, n_init=n_restarts)
        per_method[method] = (res, np.asarray(info.restart_inertias))

    # one good and one bad run: the median k-means++ restart and the worst random restart, re-run from the
    # very
    # centroids that restart started from (restart j of fit starts from init(split(key, n_init)[j], ...))
    keys = jax.random.split(key, n_restarts)

    def rerun(method, j):
        c0 = kmeans.init(x, n_clusters, init_method=method, key=keys[j])
        return kmeans.fit(x, n_clusters, init_centroids=c0)[0]

    pp = per_method["kmeans++"][1]
    good_res = rerun("kmeans++", int(np.argsort(pp)[len(pp) // 2]))
    bad_res = rerun("random", int(np.argmax(per_method["random"][1])))

    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, (title, r) in zip(
        axes, [("k-means++ (median restart)", good_res), ("random init (worst run)", bad_res)], strict=True
    ):
        ax.scatter(x[:, 0], x[:, 1], c=np.asarray(r.labels), cmap="tab10", s=6)
        c = np.asarray(r.centroids)
        ax.scatter(c[:, 0], c[:, 1], marker="X", s=150, c="k")
        ax.set_title(f"{title}: inertia {float(r.inertia):.1f}")
        ax.set(xlabel="$x_1$", ylabel="$x_2$")
        ax.set_aspect("equal")
    save_figure(fig, out_dir, "partitions")

    fig, ax = plt.subplots(figsize=(7, 4))
    allv = np.concatenate([v for _, v in per_method.values()])
    bins = np.linspace(allv.min() * 0.98, allv.max() * 1.02, 40)
    for method, (_, v) in per_method.items():
        ax.hist(v, bins=bins, alpha=0.6, label=f"{method} (median {np.median(v):.0f})")
    ax.set(
        xlabel="final inertia", ylabel=f"restarts (of {n_restarts})", title="objective reached per restart"
    )
    ax.legend()
    save_figure(fig, out_dir, "inertia_distribution")

    best = float(allv.min())
    metrics = {
        "best_inertia": best,
        "good_run_inertia": float(good_res.inertia),
        "bad_run_inertia": float(bad_res.inertia),
    }
    for method, (_, v) in per_method.items():
        metrics[method] = {
            "min": float(v.min()),
            "median": float(np.median(v)),
            "max": float(v.max()),
            "fraction_within_1pct_of_best": float(np.mean(v <= 1.01 * best)),
        }
    return metrics
