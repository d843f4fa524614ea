"""k-means timings against scikit-learn and faiss-cpu, float32, measured in the same run on the same data.

Per Lloyd iteration: every library runs at most ``ITERS`` iterations from the same initial centroids (tol 0)
and the time is divided by the iterations it ran. Full fit: k-means++ seeding plus Lloyd to convergence
(default tolerances), one restart; faiss: own seeding, 25 iterations.
Usage: ``python benchmarks/bench_kmeans.py [--repeats 3]``; prints a markdown table.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time

import jax
import numpy as np

from jaxprob import kmeans

CASES = [(1_000_000, 16, 64), (100_000, 2, 8)]
ITERS = 10


def _median_time(fn, repeats):
    fn()  # compile / warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _jax_iters(x, c0):
    def run():
        res, info = kmeans.fit(x, c0.shape[0], init_centroids=c0, max_iter=ITERS, tol=0.0)
        jax.block_until_ready(res)
        return int(info.n_iter)

    return run


def _bench_case(n, d, k, repeats, faiss, KMeans):
    rng = np.random.default_rng(0)
    centers = rng.uniform(-10, 10, (k, d)).astype(np.float32)
    x = (centers[rng.integers(0, k, n)] + rng.standard_normal((n, d))).astype(np.float32)
    c0 = x[rng.choice(n, k, replace=False)]
    xj, c0j = jax.device_put(x), jax.device_put(c0)

    # -- per iteration, from the same centroids
    run = _jax_iters(xj, c0j)
    n_it = run()
    t_jax = _median_time(run, repeats) / n_it

    def sk_iters():
        m = KMeans(k, init=c0, n_init=1, max_iter=ITERS, tol=0.0, algorithm="lloyd").fit(x)
        return m.n_iter_

    n_sk = sk_iters()
    t_sk = _median_time(sk_iters, repeats) / n_sk

    def faiss_iters():
        km = faiss.Kmeans(d, k, niter=ITERS, verbose=False, max_points_per_centroid=n)
        km.train(x, init_centroids=c0)

    t_fa = _median_time(faiss_iters, repeats) / ITERS

    # -- full fit: k-means++ + Lloyd to convergence (jaxprob, sklearn); faiss: its default 25 iterations
    key = jax.random.key(0)

    def jax_fit():
        jax.block_until_ready(kmeans.fit(xj, k, key=key)[0])

    f_jax = _median_time(jax_fit, repeats)
    f_sk = _median_time(lambda: KMeans(k, n_init=1, random_state=0, algorithm="lloyd").fit(x), repeats)

    def faiss_fit():
        faiss.Kmeans(d, k, niter=25, verbose=False, max_points_per_centroid=n, seed=1).train(x)

    f_fa = _median_time(faiss_fit, repeats)
    return (n, d, k, t_jax, t_sk, t_fa, f_jax, f_sk, f_fa)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import faiss
    from sklearn.cluster import KMeans

    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout
    print(
        f"machine: {cpu.split(':', 1)[-1].strip() or platform.processor()}, jax {jax.__version__}, "
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads"
    )
    rows = []
    for n, d, k in CASES:
        rows.append(_bench_case(n, d, k, args.repeats, faiss, KMeans))

    print()
    print(
        "| N, D, K | jaxprob s/iter | sklearn s/iter | faiss s/iter | sklearn / jaxprob | faiss / jaxprob "
        "| jaxprob fit s | sklearn fit s | faiss fit s (25 it) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n, d, k, tj, ts, tf, fj, fs, ff in rows:
        print(
            f"| {n:,}, {d}, {k} | {tj:.4f} | {ts:.4f} | {tf:.4f} | {ts / tj:.2f} | {tf / tj:.2f} "
            f"| {fj:.3f} | {fs:.3f} | {ff:.3f} |"
        )


if __name__ == "__main__":
    main()
