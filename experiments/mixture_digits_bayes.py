"""PCA then Gaussian mixtures per class on handwritten digits: a generative Bayes classifier, and sampling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from experiments._common import save_figure
from jaxprob import bayes, datasets, decomposition, mixture

DESCRIPTION = "Digits 8x8: PCA, one Gaussian mixture per class, Bayes decision; accuracy against K and samples"
DEFAULTS = {"n_pca": 20, "components": [1, 2, 4], "covariance_type": "full", "reg_covar": 1e-2, "test_fraction": 0.3}


def run(out_dir, seed, n_pca, components, covariance_type, reg_covar, test_fraction):
    x, y = datasets.load_digits()
    x = x / 16.0
    perm = np.random.default_rng(seed).permutation(len(x))
    n_test = int(test_fraction * len(x))
    te, tr = perm[:n_test], perm[n_test:]
    pca = decomposition.pca_fit(x[tr], n_pca)
    z_tr = np.asarray(decomposition.pca_transform(x[tr], pca))
    z_te = np.asarray(decomposition.pca_transform(x[te], pca))
    accs = {}
    models = {}
    key = jax.random.key(seed)
    for k in components:
        key, sub = jax.random.split(key)
        clf, _ = bayes.fit(z_tr, y[tr], key=sub, n_components=k, covariance_type=covariance_type,
                           reg_covar=reg_covar, n_init=2)
        accs[k] = float(np.mean(np.asarray(bayes.predict(z_te, clf)) == y[te]))
        models[k] = clf
    best_k = max(accs, key=accs.get)
    clf = models[best_k]
    pred = np.asarray(bayes.predict(z_te, clf))
    confusion = np.zeros((10, 10), int)
    np.add.at(confusion, (y[te], pred), 1)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    full = decomposition.pca_fit(x[tr], 64)
    axes[0].plot(np.arange(1, 65), np.cumsum(np.asarray(full.explained_variance_ratio)), marker=".")
    axes[0].axvline(n_pca, color="k", ls="--", lw=1, label=f"{n_pca} components kept")
    axes[0].set(xlabel="number of principal components", ylabel="cumulative explained variance",
                title="PCA of the 8x8 digits")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    axes[1].bar([str(k) for k in components], [accs[k] for k in components], color="tab:blue")
    axes[1].set(xlabel="mixture components per class", ylabel="test accuracy", ylim=(0.8, 1.02),
                title="Generative Bayes classifier (PCA + mixtures)")
    for i, k in enumerate(components):
        axes[1].text(i, accs[k] + 0.004, f"{accs[k]:.3f}", ha="center")
    save_figure(fig, out_dir, "digits_bayes_accuracy")

    # samples: draw from each class's mixture in PCA space and map back to pixels
    fig, axes = plt.subplots(10, 8, figsize=(6.4, 8))
    for c in range(10):
        gmm = jax.tree.map(lambda a, c=c: a[c], clf.mixtures)
        zs, _ = mixture.sample(gmm, 8, key=jax.random.fold_in(key, c))
        imgs = np.clip(np.asarray(decomposition.pca_inverse_transform(zs, pca)), 0, 1).reshape(-1, 8, 8)
        for j in range(8):
            axes[c, j].imshow(imgs[j], cmap="gray_r", vmin=0, vmax=1)
            axes[c, j].set_xticks([])
            axes[c, j].set_yticks([])
        axes[c, 0].set_ylabel(str(c), rotation=0, labelpad=10)
    fig.suptitle(f"Samples from each class's {best_k}-component mixture, decoded from {n_pca} PCA dimensions")
    save_figure(fig, out_dir, "digits_class_samples")
    return {
        "accuracy": {str(k): v for k, v in accs.items()},
        "best_components": best_k,
        "explained_variance_kept": float(jnp.sum(pca.explained_variance_ratio)),
        "confusion_matrix": confusion,
    }
