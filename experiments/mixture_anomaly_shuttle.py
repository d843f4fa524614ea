"""Anomaly detection with a Gaussian mixture on the ODDS shuttle data: score -log p(x), threshold, precision/recall."""

from __future__ import annotations

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments._common import save_figure
from jaxprob import datasets, mixture

DESCRIPTION = "Gaussian-mixture anomaly scores -log p(x) on the shuttle data (river wheel): threshold, precision/recall"
DEFAULTS = {"n_components": 6, "covariance_type": "full", "n_init": 3, "reg_covar": 1e-3, "train_fraction": 0.5}


def _auc(scores, labels):
    """Rank-based ROC AUC (Mann-Whitney), ties counted one half."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    s = scores[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1
        i = j + 1
    n_pos = labels.sum()
    n_neg = len(labels) - n_pos
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _prf(pred, labels):
    tp = int(np.sum(pred & (labels == 1)))
    fp = int(np.sum(pred & (labels == 0)))
    fn = int(np.sum(~pred & (labels == 1)))
    precision = tp / max(tp + fp, 1)
    recall = tp / max(tp + fn, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return precision, recall, f1


def run(out_dir, seed, n_components, covariance_type, n_init, reg_covar, train_fraction):
    x, y = datasets.load_shuttle()
    perm = np.random.default_rng(seed).permutation(len(x))
    n_train = int(train_fraction * len(x))
    tr, te = perm[:n_train], perm[n_train:]
    mean, std = x[tr].mean(0), x[tr].std(0)
    xs = (x - mean) / std
    # unsupervised: the training set keeps its anomalies (about 7%), the labels are only used for evaluation
    params, info = mixture.fit(xs[tr], n_components, key=jax.random.key(seed), covariance_type=covariance_type,
                               n_init=n_init, reg_covar=reg_covar, max_iter=300)
    train_scores = np.asarray(mixture.anomaly_score(xs[tr], params))
    test_scores = np.asarray(mixture.anomaly_score(xs[te], params))
    rate = float(y[tr].mean())
    threshold = float(mixture.anomaly_threshold(train_scores, contamination=rate))
    pred = np.asarray(mixture.detect_anomalies(xs[te], params, threshold))
    precision, recall, f1 = _prf(pred, y[te])
    auc = _auc(test_scores, y[te])

    contaminations = np.array([0.01, 0.02, 0.04, 0.0715, 0.1, 0.15, 0.2, 0.3])
    curve = []
    for c in contaminations:
        t = float(mixture.anomaly_threshold(train_scores, contamination=float(c)))
        curve.append(_prf(test_scores > t, y[te]))
    curve = np.array(curve)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    lo, hi = np.percentile(test_scores, [0.5, 99.5])
    bins = np.linspace(lo, hi, 80)
    axes[0].hist(test_scores[y[te] == 0], bins=bins, alpha=0.6, density=True, label="normal (test)")
    axes[0].hist(test_scores[y[te] == 1], bins=bins, alpha=0.6, density=True, label="anomaly (test)")
    axes[0].axvline(threshold, color="k", ls="--", label=f"threshold (contamination {rate:.3f})")
    axes[0].set(xlabel="anomaly score  -log p(x)", ylabel="density", title="Shuttle: score distributions")
    axes[0].legend()
    axes[1].plot(contaminations, curve[:, 0], marker="o", label="precision")
    axes[1].plot(contaminations, curve[:, 1], marker="o", label="recall")
    axes[1].plot(contaminations, curve[:, 2], marker="o", label="F1")
    axes[1].axvline(rate, color="k", ls="--", lw=1)
    axes[1].set(xlabel="contamination used to set the threshold", ylabel="test score",
                title=f"Shuttle: {n_components}-component mixture, ROC AUC {auc:.3f}")
    axes[1].grid(alpha=0.3)
    axes[1].legend()
    save_figure(fig, out_dir, "shuttle_anomaly")
    return {
        "n_train": n_train,
        "n_test": int(len(te)),
        "anomaly_rate_train": rate,
        "threshold": threshold,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": auc,
        "converged": bool(info.converged),
        "n_iter": int(info.n_iter),
        "curve": {"contamination": contaminations, "precision": curve[:, 0], "recall": curve[:, 1],
                  "f1": curve[:, 2]},
    }
