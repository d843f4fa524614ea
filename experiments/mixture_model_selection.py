"""BIC, AIC and held-out log-likelihood against the number of components, for the four covariance types, on Old
Faithful: the whole grid (types x K x restarts) is fitted by one compiled program (:func:`jaxprob.selection.fit_grid`).
"""

from __future__ import annotations

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments._common import save_figure
from jaxprob import COVARIANCE_TYPES, datasets, selection

DESCRIPTION = "BIC/AIC/held-out log-likelihood against K for full, tied, diag and spherical mixtures on Old Faithful"
DEFAULTS = {"max_components": 6, "n_init": 3, "max_iter": 300, "valid_fraction": 0.3}


def run(out_dir, seed, max_components, n_init, max_iter, valid_fraction):
    x = datasets.load_faithful()
    x = (x - x.mean(0)) / x.std(0)  # standardised: both criteria are invariant to the scaling up to a constant
    ks = list(range(1, max_components + 1))
    # BIC and AIC on all the data; the held-out log-likelihood of models fitted on a training part
    full = selection.fit_grid(x, max_components, key=jax.random.key(seed), covariance_types=COVARIANCE_TYPES,
                              n_init=n_init, max_iter=max_iter, tol=1e-5)
    perm = np.random.default_rng(seed).permutation(len(x))
    n_val = int(valid_fraction * len(x))
    split = selection.fit_grid(x[perm[n_val:]], max_components, key=jax.random.key(seed + 1),
                               covariance_types=COVARIANCE_TYPES, n_init=n_init, max_iter=max_iter, tol=1e-5,
                               x_val=x[perm[:n_val]], criterion="heldout")
    # per (type, K): the best restart by training log-likelihood, as mixture.fit keeps it
    best_r = np.argmax(np.asarray(full.log_likelihood), axis=-1)[..., None]
    bic = np.take_along_axis(np.asarray(full.bic), best_r, -1)[..., 0]
    aic = np.take_along_axis(np.asarray(full.aic), best_r, -1)[..., 0]
    best_s = np.argmax(np.asarray(split.log_likelihood), axis=-1)[..., None]
    heldout = np.take_along_axis(np.asarray(split.heldout_log_likelihood), best_s, -1)[..., 0]

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2), sharex=True, gridspec_kw={"wspace": 0.3})
    for c, ct in enumerate(COVARIANCE_TYPES):
        axes[0].plot(ks, bic[c], marker="o", label=ct)
        axes[1].plot(ks, aic[c], marker="o", label=ct)
        axes[2].plot(ks, heldout[c], marker="o", label=ct)
    for ax, name in zip(axes[:2], ("BIC", "AIC"), strict=True):
        ax.set(xlabel="number of components K", ylabel=f"{name} (lower is better)", title=f"{name} on Old Faithful")
    axes[2].set(xlabel="number of components K", ylabel="held-out log-lik. per point (higher is better)",
                title=f"held-out log-likelihood ({n_val} of {len(x)} points)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(title="covariance")
    save_figure(fig, out_dir, "faithful_bic_aic")

    def best(values, lowest):
        c, g = np.unravel_index(np.argmin(values) if lowest else np.argmax(values), values.shape)
        return {"covariance_type": COVARIANCE_TYPES[c], "n_components": ks[g], "value": float(values[c, g])}

    return {
        "k": ks,
        "bic": {ct: bic[c] for c, ct in enumerate(COVARIANCE_TYPES)},
        "aic": {ct: aic[c] for c, ct in enumerate(COVARIANCE_TYPES)},
        "heldout_log_likelihood": {ct: heldout[c] for c, ct in enumerate(COVARIANCE_TYPES)},
        "best_bic": best(bic, True),
        "best_aic": best(aic, True),
        "best_heldout": best(heldout, False),
        "converged_fraction": float(np.mean(np.asarray(full.converged))),
    }
