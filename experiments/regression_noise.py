"""Noise estimation by maximum likelihood: the same line observed with a small and a large sigma."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from experiments._common import save_figure
from jaxprob import regression

DESCRIPTION = "Linear-Gaussian MLE on one line with small and large noise: same w-hat, different sigma-hat"
DEFAULTS = {"n": 200, "intercept": 1.0, "slope": 2.0, "sigmas": (0.3, 2.0)}


def run(out_dir, seed: int, n: int, intercept: float, slope: float, sigmas):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, n).astype(np.float32)
    fig, axes = plt.subplots(1, len(sigmas) + 1, figsize=(5 * (len(sigmas) + 1), 4))
    metrics = {"true": {"intercept": intercept, "slope": slope, "sigmas": list(sigmas)}, "fits": []}
    grid = np.linspace(-3, 3, 100, dtype=np.float32)
    for ax, sigma in zip(axes, sigmas, strict=False):
        y = (intercept + slope * x + sigma * rng.normal(size=n)).astype(np.float32)
        closed = regression.fit_linear_gaussian(x, y)
        gd, info = regression.fit_linear_gaussian_optax(x, y, tol=1e-4)
        metrics["fits"].append({
            "sigma": sigma,
            "closed_form": {"intercept": float(closed.intercept), "slope": float(closed.coef[0]),
                            "sigma_hat": float(closed.sigma)},
            "optax": {"intercept": float(gd.intercept), "slope": float(gd.coef[0]),
                      "sigma_hat": float(gd.sigma), "converged": bool(info.converged),
                      "n_iter": int(info.n_iter)},
            "nll": float(regression.negative_log_likelihood(x, y, closed)),
        })
        mean = np.asarray(regression.predict_mean(grid, closed))
        ax.scatter(x, y, s=8, alpha=0.6)
        ax.plot(grid, mean, "k", label=f"ŵ: {float(closed.intercept):.2f} + {float(closed.coef[0]):.2f}x")
        ax.fill_between(grid, mean - 2 * float(closed.sigma), mean + 2 * float(closed.sigma), alpha=0.2,
                        label=f"±2σ̂, σ̂ = {float(closed.sigma):.2f}")
        ax.set_title(f"true σ = {sigma}")
        ax.set(xlabel="x", ylabel="y")
        ax.legend(fontsize=8)
    # heteroscedastic: noise growing with x, log sigma(x) = -1 + 0.5 x
    y = (intercept + slope * x + np.exp(-1.0 + 0.5 * x) * rng.normal(size=n)).astype(np.float32)
    het, info = regression.fit_heteroscedastic(x, y, tol=1e-4)
    mean = np.asarray(regression.predict_mean(grid, het))
    sd = np.asarray(het.sigma(grid[:, None]))
    ax = axes[-1]
    ax.scatter(x, y, s=8, alpha=0.6)
    ax.plot(grid, mean, "k")
    ax.fill_between(grid, mean - 2 * sd, mean + 2 * sd, alpha=0.2, label="±2σ̂(x)")
    ax.set_title(f"heteroscedastic: log σ̂(x) = {float(het.log_sigma_intercept):.2f} + "
                 f"{float(het.log_sigma_coef[0]):.2f}x")
    ax.set(xlabel="x", ylabel="y")
    ax.legend(fontsize=8)
    metrics["heteroscedastic"] = {"true": {"a0": -1.0, "a1": 0.5},
                                  "fit": {"a0": float(het.log_sigma_intercept),
                                          "a1": float(het.log_sigma_coef[0])},
                                  "converged": bool(info.converged)}
    save_figure(fig, out_dir, "noise_estimation")
    return metrics
