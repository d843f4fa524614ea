"""Mixture of linear regressions: flat prices against surface when the district is a hidden variable.

The mixture is fitted by the library's EM engine (the linear-regression family, data `(surface, price)`); a
posterior-predictive check draws prices from the fitted model at the observed surfaces (`regression.sample_y`)."""

from __future__ import annotations

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments._common import save_figure
from jaxprob import regression

DESCRIPTION = "Flats: price vs surface with an unknown district; EM fits three lines, multimodal predictive"
DEFAULTS = {"n_per_district": 150, "n_init": 10, "x_query": 90.0}

# (intercept k-euro, price per m^2 k-euro, noise sd k-euro) of three districts
DISTRICTS = ((30.0, 2.0, 12.0), (60.0, 4.0, 15.0), (10.0, 6.5, 20.0))


def run(out_dir, seed: int, n_per_district: int, n_init: int, x_query: float):
    rng = np.random.default_rng(seed)
    k = len(DISTRICTS)
    z = np.repeat(np.arange(k), n_per_district)
    surface = rng.uniform(20, 150, k * n_per_district)
    a, b, s = (np.array(v) for v in zip(*DISTRICTS, strict=True))
    price = a[z] + b[z] * surface + s[z] * rng.normal(size=z.size)
    x, y = surface.astype(np.float32), price.astype(np.float32)

    model, info = regression.fit_mixture(x, y, k, key=jax.random.key(seed), n_init=n_init)
    single = regression.fit_linear_gaussian(x, y)
    order = np.argsort(np.asarray(model.coefs[:, 0]))
    fitted = [{"intercept": float(model.intercepts[i]), "slope": float(model.coefs[i, 0]),
               "sigma": float(model.sigmas[i]), "weight": float(model.weights[i])} for i in order]

    y_sim, _ = regression.sample_y(x, model, key=jax.random.key(seed + 1))
    y_sim = np.asarray(y_sim)

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2), layout="constrained")
    ax = axes[0]
    ax.scatter(x, y, c=z, cmap="viridis", s=8, alpha=0.6)
    grid = np.linspace(20, 150, 50)
    for i, f in enumerate(fitted):
        ax.plot(grid, f["intercept"] + f["slope"] * grid, "r", lw=2, label="EM mixture: 3 lines" if i == 0 else None)
    ax.plot(grid, float(single.intercept) + float(single.coef[0]) * grid, "k--", label="single line")
    ax.axvline(x_query, color="grey", lw=0.8, ls=":", label=f"surface {x_query:g} m² (right panel)")
    ax.set_xlabel("surface (m²)")
    ax.set_ylabel("price (k€)")
    ax.set_title("EM: three fitted lines; colours = hidden district")
    ax.legend(loc="upper left", fontsize=8)

    y_grid = np.linspace(0, 1100, 2000, dtype=np.float32)
    xq = np.array([x_query], np.float32)
    lp = np.asarray(regression.log_prob(xq, y_grid[None, :], model))[0]
    mode = float(regression.predict_mode(xq, model)[0])
    mean = float(regression.predict_mean(xq, model)[0])
    ax = axes[1]
    ax.plot(y_grid, np.exp(lp), "k")
    ax.axvline(mode, color="r", label=f"mode {mode:.0f} k€")
    ax.axvline(mean, color="b", ls="--", label=f"mean {mean:.0f} k€")
    ax.set_xlabel("price (k€)")
    ax.set_ylabel("density (1 / k€)")
    ax.set_title(f"predictive density L(y | surface = {x_query:g} m²)")
    ax.legend()
    ax = axes[2]
    ax.scatter(x, y_sim, s=8, alpha=0.6, color="tab:orange")
    ax.set_xlabel("surface (m²)")
    ax.set_ylabel("price (k€)")
    ax.set_title("prices drawn from the fitted model (sample_y)")
    ax.set_ylim(axes[0].get_ylim())
    save_figure(fig, out_dir, "flats_mixture")

    n_modes = int(np.sum((lp[1:-1] > lp[:-2]) & (lp[1:-1] > lp[2:])))

    def density(v):
        return float(np.exp(np.asarray(regression.log_prob(xq, np.array([v], np.float32), model))[0]))

    return {
        "true": [{"intercept": ai, "slope": bi, "sigma": si} for ai, bi, si in DISTRICTS],
        "fitted": fitted,
        "converged": bool(info.converged),
        "n_iter": int(info.n_iter),
        "mean_log_likelihood": float(info.log_likelihood),
        "restart_log_likelihoods": np.asarray(info.restart_log_likelihoods).tolist(),
        "regularized": bool(np.any(np.asarray(info.regularized))),
        # posterior-predictive check: data drawn from the model score about as well as the observed data
        "simulated_mean_log_likelihood": -float(regression.negative_log_likelihood(x, y_sim, model)),
        "single_line_mean_log_likelihood": -float(regression.negative_log_likelihood(x, y, single)),
        "query": {"surface": x_query, "mode": mode, "mean": mean, "n_modes": n_modes,
                  "density_at_mode": density(mode), "density_at_mean": density(mean)},
    }
