"""BIC and AIC against the number of components, for the four covariance types, on Old Faithful."""

from __future__ import annotations

import jax
import matplotlib.pyplot as plt

from experiments._common import save_figure
from jaxprob import COVARIANCE_TYPES, datasets, mixture

DESCRIPTION = "BIC/AIC against K for full, tied, diag and spherical mixtures on Old Faithful"
DEFAULTS = {"max_components": 6, "n_init": 3, "max_iter": 300}


def run(out_dir, seed, max_components, n_init, max_iter):
    x = datasets.load_faithful()
    x = (x - x.mean(0)) / x.std(0)  # standardised: both criteria are invariant to the scaling up to a constant
    ks = list(range(1, max_components + 1))
    bic = {ct: [] for ct in COVARIANCE_TYPES}
    aic = {ct: [] for ct in COVARIANCE_TYPES}
    key = jax.random.key(seed)
    for ct in COVARIANCE_TYPES:
        for k in ks:
            key, sub = jax.random.split(key)
            params, _ = mixture.fit(x, k, key=sub, covariance_type=ct, n_init=n_init, max_iter=max_iter, tol=1e-5)
            bic[ct].append(float(mixture.bic(x, params)))
            aic[ct].append(float(mixture.aic(x, params)))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for ct in COVARIANCE_TYPES:
        axes[0].plot(ks, bic[ct], marker="o", label=ct)
        axes[1].plot(ks, aic[ct], marker="o", label=ct)
    for ax, name in zip(axes, ("BIC", "AIC"), strict=True):
        ax.set(xlabel="number of components K", ylabel=f"{name} (lower is better)", title=f"{name} on Old Faithful")
        ax.grid(alpha=0.3)
        ax.legend(title="covariance")
    save_figure(fig, out_dir, "faithful_bic_aic")
    best_bic = min(((v, ct, k) for ct in COVARIANCE_TYPES for k, v in zip(ks, bic[ct], strict=True)))
    best_aic = min(((v, ct, k) for ct in COVARIANCE_TYPES for k, v in zip(ks, aic[ct], strict=True)))
    return {
        "k": ks,
        "bic": bic,
        "aic": aic,
        "best_bic": {"covariance_type": best_bic[1], "n_components": best_bic[2], "value": best_bic[0]},
        "best_aic": {"covariance_type": best_aic[1], "n_components": best_aic[2], "value": best_aic[0]},
    }
