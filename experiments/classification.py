"""Softmax regression vs MLP decision boundaries on 2-D data; ROC and confusion matrix on breast cancer."""

from __future__ import annotations

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments._common import save_figure
from jaxprob import classifiers, datasets, metrics

DESCRIPTION = "Linear (softmax regression) vs curved (MLP) boundaries; ROC, AUC, thresholds on breast cancer"
DEFAULTS = {"n_per_class": 150, "hidden": 32, "n_epochs": 150, "test_fraction": 0.3}


def _moons(rng, n):
    t = rng.uniform(0, np.pi, n)
    a = np.stack([np.cos(t), np.sin(t)], 1)
    b = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1)
    x = np.concatenate([a, b]) + 0.15 * rng.normal(size=(2 * n, 2))
    return x.astype(np.float32), np.repeat(np.arange(2), n).astype(np.int32)


def _ring3(rng, n):
    """Three classes: an inner disc and two halves of a ring around it (not linearly separable)."""
    r = np.concatenate([rng.uniform(0, 1, n), rng.uniform(1.6, 2.4, 2 * n)])
    t = rng.uniform(0, 2 * np.pi, 3 * n)
    x = np.stack([r * np.cos(t), r * np.sin(t)], 1).astype(np.float32)
    y = np.where(r < 1.3, 0, np.where(np.sin(t) > 0, 1, 2)).astype(np.int32)
    return x, y


def run(out_dir, seed: int, n_per_class: int, hidden: int, n_epochs: int, test_fraction: float):
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    out = {"toy": {}}
    fig, axes = plt.subplots(2, 2, figsize=(10, 8.5), layout="constrained")
    for row, (name, (x, y)) in enumerate([("moons_2class", _moons(rng, n_per_class)),
                                          ("ring_3class", _ring3(rng, n_per_class))]):
        c = int(y.max()) + 1
        lin, _ = classifiers.fit_softmax_regression(x, y, tol=1e-5)
        key, k1, k2 = jax.random.split(key, 3)
        mlp = classifiers.mlp_classifier(2, c, (hidden, hidden), key=k1)
        mlp, _ = classifiers.fit(mlp, x, y, key=k2, n_epochs=n_epochs, batch_size=32, learning_rate=0.01)
        accs = {}
        for col, (label, model) in enumerate([("softmax regression", lin), ("MLP", mlp)]):
            acc = float(metrics.accuracy(y, classifiers.predict(x, model)))
            accs[label] = acc

            def predict_fn(g, model=model):
                return classifiers.predict(g, model)

            classifiers.plot_decision_boundary(predict_fn, x, y, ax=axes[row, col], resolution=150,
                                               title=f"{name}: {label}, train acc {acc:.2f}")
        out["toy"][name] = accs
    save_figure(fig, out_dir, "decision_boundaries")

    # breast cancer: standardise on the training part, softmax regression with a small L2 penalty
    x, y = datasets.load_breast_cancer()
    perm = rng.permutation(len(y))
    n_test = int(test_fraction * len(y))
    te, tr = perm[:n_test], perm[n_test:]
    mu, sd = x[tr].mean(0), x[tr].std(0)
    xs = (x - mu) / sd
    model, info = classifiers.fit_softmax_regression(xs[tr], y[tr], l2=1e-3, tol=1e-5)
    p_tr = np.asarray(classifiers.predict_proba(xs[tr], model))[:, 1]
    p_te = np.asarray(classifiers.predict_proba(xs[te], model))[:, 1]
    auc = float(metrics.roc_auc_score(y[te], p_te))
    fpr, tpr, _ = metrics.roc_curve(y[te], p_te)
    thr_f1, _ = metrics.best_threshold(y[tr], p_tr, criterion="f1")
    thr_youden, _ = metrics.best_threshold(y[tr], p_tr, criterion="youden")
    results = {}
    choices = [("0.5", 0.5), ("best_f1_on_train", float(thr_f1)), ("youden_on_train", float(thr_youden))]
    for label, t in choices:
        pred = (p_te >= t).astype(np.int32)
        p, r, f = metrics.precision_recall_f1(y[te], pred, n_classes=2)
        cm = np.asarray(metrics.confusion_matrix(y[te], pred, n_classes=2)).tolist()
        results[label] = {"threshold": t, "precision": float(p), "recall": float(r), "f1": float(f),
                          "confusion": cm}
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4), layout="constrained")
    axes[0].plot(np.asarray(fpr), np.asarray(tpr), "k")
    axes[0].plot([0, 1], [0, 1], ":", color="grey")
    axes[0].set_xlabel("false positive rate")
    axes[0].set_ylabel("true positive rate")
    axes[0].set_title(f"breast cancer, test ROC (AUC {auc:.3f})")
    cm = np.array(results["0.5"]["confusion"])
    axes[1].imshow(cm, cmap="Blues")
    for i in range(2):
        for j in range(2):
            axes[1].text(j, i, str(cm[i, j]), ha="center", va="center",
                         color="white" if cm[i, j] > cm.max() / 2 else "black")
    axes[1].set_xticks([0, 1], ["benign", "malignant"])
    axes[1].set_yticks([0, 1], ["benign", "malignant"])
    axes[1].set_xlabel("predicted")
    axes[1].set_ylabel("true class")
    axes[1].set_title("confusion matrix at threshold 0.5")
    save_figure(fig, out_dir, "breast_cancer_roc_confusion")
    out["breast_cancer"] = {"n_train": len(tr), "n_test": n_test, "test_auc": auc,
                            "test_average_precision": float(metrics.average_precision(y[te], p_te)),
                            "converged": bool(info.converged), "thresholds": results}
    return out
