"""Supervised models against references timed in the same run: ``python benchmarks/bench_supervised.py``.

Compile first, ``block_until_ready``, median of several repeats. Ratio = reference time / jaxprob time
(above 1 means jaxprob is faster; jaxprob times include the NumPy-to-device copy). Prints a markdown table.
"""

from __future__ import annotations

import statistics
import subprocess
import time

import jax
import numpy as np
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression

from jaxprob import classifiers, metrics, regression


def timeit(fn, repeats=5):
    jax.block_until_ready(fn())  # compile / warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    rng = np.random.default_rng(0)
    rows = []

    n, d = 200_000, 20
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x @ rng.normal(size=d) + 0.5 * rng.normal(size=n)).astype(np.float32)
    design = np.column_stack([np.ones(n, np.float32), x])
    rows.append(("linear-Gaussian MLE, n=200k, d=20", "numpy lstsq",
                 timeit(lambda: np.linalg.lstsq(design, y, rcond=None)),
                 timeit(lambda: regression.fit_linear_gaussian(x, y).coef)))

    n, d, c = 20_000, 20, 3
    means = rng.normal(size=(c, d))
    yc = rng.integers(0, c, n)
    xc = (means[yc] + 2.0 * rng.normal(size=(n, d))).astype(np.float32)
    ref = LogisticRegression(C=np.inf, tol=1e-6, max_iter=1000)
    rows.append(("softmax regression, n=20k, d=20, C=3", "sklearn LogisticRegression(lbfgs)",
                 timeit(lambda: ref.fit(xc, yc), repeats=3),
                 timeit(lambda: classifiers.fit_softmax_regression(xc, yc, tol=1e-5)[0].weight, repeats=3)))

    n = 1_000_000
    yb = rng.integers(0, 2, n)
    s = np.round(rng.normal(size=n) + yb, 2).astype(np.float32)  # ties
    rows.append(("ROC AUC, n=1M (ties)", "sklearn roc_auc_score",
                 timeit(lambda: skm.roc_auc_score(yb, s), repeats=3),
                 timeit(lambda: metrics.roc_auc_score(yb, s), repeats=3)))
    yt, yp = rng.integers(0, 10, n), rng.integers(0, 10, n)
    rows.append(("confusion matrix, n=1M, C=10", "sklearn confusion_matrix",
                 timeit(lambda: skm.confusion_matrix(yt, yp), repeats=3),
                 timeit(lambda: metrics.confusion_matrix(yt, yp, n_classes=10), repeats=3)))
    rows.append(("macro F1, n=1M, C=10", "sklearn f1_score",
                 timeit(lambda: skm.f1_score(yt, yp, average="macro"), repeats=3),
                 timeit(lambda: metrics.f1_score(yt, yp, average="macro", n_classes=10), repeats=3)))

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cpu = [line for line in lscpu.splitlines() if "Model name" in line][0].split(":")
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, CPU: {cpu[-1].strip()}\n")
    print("| task | reference | reference (ms) | jaxprob (ms) | ratio |")
    print("|---|---|---:|---:|---:|")
    for task, name, t_ref, t_ours in rows:
        print(f"| {task} | {name} | {1e3 * t_ref:.1f} | {1e3 * t_ours:.1f} | {t_ref / t_ours:.2f} |")


if __name__ == "__main__":
    main()
