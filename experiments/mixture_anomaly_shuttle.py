"""Anomaly detection with a Gaussian mixture on the ODDS shuttle data: score -log p(x), threshold, precision/recall."""

from __future__ import annotations

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments._common import save_figure
from jaxprob import datasets, mixture

DESCRIPTION = ("Gaussian-mixture anomaly scores -log p(x) on the shuttle data (river wheel): novelty detection with an "
               "epsilon threshold, precision/recall, against the unsupervised fit")
DEFAULTS = {"n_components": 6, "covariance_type": "full", "n_init": 3, "reg_covar": 1e-3, "train_fraction": 0.5,
            "false_alarm_rate": 0.01}


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


def _unsupervised(xs_tr, y_tr, xs_te, y_te, seed, n_components, covariance_type, n_init, reg_covar):
    """Fit on the whole (contaminated) training half; threshold at the training anomaly rate."""
    params, info = mixture.fit(xs_tr, n_components, key=jax.random.key(seed), covariance_type=covariance_type,
                               n_init=n_init, reg_covar=reg_covar, max_iter=300)
    train_scores = np.asarray(mixture.anomaly_score(xs_tr, params))
    threshold = float(mixture.anomaly_threshold(train_scores, contamination=float(y_tr.mean())))
    test_scores = np.asarray(mixture.anomaly_score(xs_te, params))
    precision, recall, f1 = _prf(np.asarray(mixture.detect_anomalies(xs_te, params, threshold)), y_te)
    return {"precision": precision, "recall": recall, "f1": f1, "roc_auc": _auc(test_scores, y_te),
            "threshold": threshold, "converged": bool(info.converged), "n_iter": int(info.n_iter)}


def run(out_dir, seed, n_components, covariance_type, n_init, reg_covar, train_fraction, false_alarm_rate):
    x, y = datasets.load_shuttle()
    perm = np.random.default_rng(seed).permutation(len(x))
    n_train = int(train_fraction * len(x))
    tr, te = perm[:n_train], perm[n_train:]
    mean, std = x[tr].mean(0), x[tr].std(0)
    xs = (x - mean) / std
    # novelty detection: the density of normal behaviour is fitted on the normal training samples; the threshold
    # is the (1 - false_alarm_rate) quantile of their scores (the epsilon of p(x) < epsilon)
    normal = tr[y[tr] == 0]
    params, info = mixture.fit(xs[normal], n_components, key=jax.random.key(seed), covariance_type=covariance_type,
                               n_init=n_init, reg_covar=reg_covar, max_iter=300)
    train_scores = np.asarray(mixture.anomaly_score(xs[normal], params))
    test_scores = np.asarray(mixture.anomaly_score(xs[te], params))
    rate = float(false_alarm_rate)
    threshold = float(mixture.anomaly_threshold(train_scores, contamination=rate))
    pred = np.asarray(mixture.detect_anomalies(xs[te], params, threshold))
    precision, recall, f1 = _prf(pred, y[te])
    auc = _auc(test_scores, y[te])

    # for comparison, the fully unsupervised fit: the training half keeps its anomalies (about 7%); a component can
    # then model the anomalies themselves, which makes the result depend on the local optimum EM reaches
    unsup = _unsupervised(xs[tr], y[tr], xs[te], y[te], seed, n_components, covariance_type, n_init, reg_covar)

    contaminations = np.array([0.001, 0.003, 0.01, 0.03, 0.1, 0.2])
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
    axes[0].axvline(threshold, color="k", ls="--", label=f"threshold (false alarms {rate:.3f} on train)")
    axes[0].set(xlabel="anomaly score  -log p(x)", ylabel="density", title="Shuttle: score distributions")
    axes[0].legend(loc="upper right")
    axes[1].plot(contaminations, curve[:, 0], marker="o", label="precision")
    axes[1].plot(contaminations, curve[:, 1], marker="o", label="recall")
    axes[1].plot(contaminations, curve[:, 2], marker="o", label="F1")
    axes[1].axvline(rate, color="k", ls="--", lw=1)
    axes[1].set(xscale="log", xlabel="false-alarm rate on normal training data (threshold)", ylabel="test score",
                title=f"Shuttle: {n_components}-component mixture, ROC AUC {auc:.3f}")
    axes[1].grid(alpha=0.3)
    axes[1].legend()
    save_figure(fig, out_dir, "shuttle_anomaly")
    return {
        "n_train": n_train,
        "n_train_normal": int(len(normal)),
        "n_test": int(len(te)),
        "anomaly_rate_train": float(y[tr].mean()),
        "false_alarm_rate": rate,
        "threshold": threshold,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": auc,
        "converged": bool(info.converged),
        "n_iter": int(info.n_iter),
        "curve": {"false_alarm_rate": contaminations, "precision": curve[:, 0], "recall": curve[:, 1],
                  "f1": curve[:, 2]},
        "unsupervised": unsup,
    }
