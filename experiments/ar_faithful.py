"""Autoregressive models of Old Faithful's waiting times: order selection, one-step and multi-step forecasts."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from experiments._common import save_figure
from jaxprob import autoregressive, datasets

DESCRIPTION = ("Gaussian AR(p) on the 272 successive waiting times of Old Faithful: BIC and held-out one-step "
               "log-likelihood by order, forecasts, autocorrelation of the data against the fitted model")
DEFAULTS = {"max_order": 6, "n_train": 200, "horizon": 20, "n_acf": 10}


def _acf(y, n_lags):
    z = y - y.mean()
    return np.array([np.dot(z[: len(z) - h], z[h:]) / np.dot(z, z) for h in range(n_lags + 1)])


def run(out_dir, seed: int, max_order: int, n_train: int, horizon: int, n_acf: int):
    import matplotlib.pyplot as plt

    del seed  # the fits are deterministic: no randomness in this study
    waiting = datasets.load_faithful(np.float64)[:, 1]  # minutes to the next eruption, in eruption order
    train, test = waiting[:n_train], waiting[n_train:]
    n_rows = n_train - max_order  # every order is scored on the same regression rows
    metrics = {"n_train": n_train, "n_test": len(test), "lag1_autocorrelation": float(_acf(waiting, 1)[1]),
               "orders": {}}
    # order 0: independent Gaussian values (maximum likelihood: the mean and the uncentred variance)
    target = train[max_order:]
    sigma0 = float(target.std())
    ll0 = float(np.sum(-0.5 * (math.log(2 * math.pi) + ((target - target.mean()) / sigma0) ** 2)
                       - math.log(sigma0)))
    held0 = float(np.mean(-0.5 * (math.log(2 * math.pi) + ((test - target.mean()) / sigma0) ** 2)
                          - math.log(sigma0)))
    metrics["orders"]["0"] = {"bic": -2 * ll0 + 2 * math.log(n_rows), "heldout_mean_log_lik": held0,
                              "sigma": sigma0, "one_step_rmse": float(np.sqrt(np.mean((test - target.mean()) ** 2)))}
    models = {}
    for p in range(1, max_order + 1):
        y_fit = jnp.asarray(train[max_order - p :], jnp.float32)
        model = autoregressive.fit(y_fit, p)
        models[p] = model
        ll = float(autoregressive.log_likelihood(model, y_fit))
        # held-out: one-step-ahead predictive density of each test value given the p values before it
        y_test = jnp.asarray(waiting[n_train - p :], jnp.float32)
        held = float(autoregressive.log_likelihood(model, y_test)) / len(test)
        lags = np.stack([waiting[n_train - i : len(waiting) - i] for i in range(1, p + 1)], axis=1)
        pred = float(model.intercept) + lags @ np.asarray(model.coef, np.float64)
        metrics["orders"][str(p)] = {
            "coef": np.asarray(model.coef).tolist(), "intercept": float(model.intercept),
            "sigma": float(model.sigma), "bic": -2 * ll + (p + 2) * math.log(n_rows),
            "heldout_mean_log_lik": held, "one_step_rmse": float(np.sqrt(np.mean((test - pred) ** 2))),
            "stationary": bool(autoregressive.is_stationary(model)),
        }
    by_bic = min(metrics["orders"], key=lambda k: metrics["orders"][k]["bic"])
    by_held = max(metrics["orders"], key=lambda k: metrics["orders"][k]["heldout_mean_log_lik"])
    metrics["order_by_bic"], metrics["order_by_heldout"] = int(by_bic), int(by_held)
    best = models[max(int(by_bic), 1)]
    mom = autoregressive.stationary_moments(best, n_lags=n_acf)
    model_acf = np.asarray(mom.autocovariance) / float(mom.autocovariance[0])
    data_acf = _acf(waiting, n_acf)
    metrics["acf"] = {"data": data_acf.tolist(), "model": model_acf.tolist(),
                      "max_abs_difference": float(np.max(np.abs(data_acf - model_acf)))}
    metrics["stationary_mean"] = float(mom.mean)
    metrics["stationary_sd"] = float(np.sqrt(mom.autocovariance[0]))

    # figure 1: order selection
    orders = list(range(max_order + 1))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(orders, [metrics["orders"][str(p)]["bic"] for p in orders], "o-")
    ax1.set(xlabel="order p", ylabel="BIC (train)", title="BIC, lower is better")
    ax2.plot(orders, [metrics["orders"][str(p)]["heldout_mean_log_lik"] for p in orders], "o-", color="C1")
    ax2.set(xlabel="order p", ylabel="mean log-likelihood", title=f"held-out one-step ({len(test)} eruptions)")
    save_figure(fig, out_dir, "order_selection")

    # figure 2: one-step predictions on the test eruptions and a multi-step forecast from the end of training
    p = best.order
    lags = np.stack([waiting[n_train - i : len(waiting) - i] for i in range(1, p + 1)], axis=1)
    one_step = float(best.intercept) + lags @ np.asarray(best.coef, np.float64)
    fc = autoregressive.forecast(best, jnp.asarray(train, jnp.float32), horizon)
    t_test = np.arange(n_train, len(waiting))
    t_fc = np.arange(n_train, n_train + horizon)
    fig, ax = plt.subplots(figsize=(10, 3.8))
    ax.plot(np.arange(n_train - 40, len(waiting)), waiting[n_train - 40 :], "k.-", lw=0.6, label="waiting time")
    ax.plot(t_test, one_step, "C0.", label=f"one-step AR({p}) prediction")
    sd = float(best.sigma)
    ax.fill_between(t_test, one_step - 2 * sd, one_step + 2 * sd, color="C0", alpha=0.15, label="±2σ")
    mean, band = np.asarray(fc.mean), 2 * np.sqrt(np.asarray(fc.variance))
    ax.plot(t_fc, mean, "C3-", label=f"{horizon}-step forecast from eruption {n_train}")
    ax.fill_between(t_fc, mean - band, mean + band, color="C3", alpha=0.15)
    ax.axvline(n_train - 0.5, color="grey", ls=":")
    ax.set(xlabel="eruption", ylabel="minutes", title="Old Faithful: waiting time to the next eruption")
    ax.legend(fontsize=8, ncol=2, loc="lower left")
    save_figure(fig, out_dir, "forecasts")
    metrics["forecast"] = {"mean": mean.tolist(), "sd": np.sqrt(np.asarray(fc.variance)).tolist()}

    # figure 3: autocorrelation of the data and of the fitted model
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.bar(np.arange(n_acf + 1) - 0.15, data_acf, width=0.3, label="data")
    ax.bar(np.arange(n_acf + 1) + 0.15, model_acf, width=0.3, label=f"AR({p}) model")
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xlabel="lag", ylabel="autocorrelation", title="short and long waits alternate")
    ax.legend()
    save_figure(fig, out_dir, "autocorrelation")
    return metrics
