"""k-means timings against scikit-learn and faiss-cpu, float32, measured in the same run on the same data.

Per Lloyd iteration: every library runs at most ``ITERS`` iterations from the same initial centroids (tol 0)
and the time is divided by the iterations it ran; the marginal cost is the difference between ``3 * ITERS`` and
``ITERS`` iterations divided by the extra iterations (the fixed costs of a call left out). Full fit: k-means++
seeding plus Lloyd to convergence (default tolerances), one restart; faiss: own seeding, 25 iterations.
The per-iteration measurements of the three libraries are interleaved (one round = one repeat of each), so
that load from other jobs on the machine hits them alike. ``--chunks`` adds the per-iteration time of jaxprob
against the chunk size (rows per block of the distance computation) at N=1M, D=16, K=64.
Usage: ``python benchmarks/bench_kmeans.py [--repeats 3] [--chunks]``; prints markdown tables.
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


def _interleaved(fns, repeats):
    """Median seconds of every function, timed in interleaved rounds after one warm-up call each."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in times]


def _jax_iters(x, c0, chunk_size=None, iters=ITERS):
    def run():
        res, info = kmeans.fit(x, c0.shape[0], init_centroids=c0, max_iter=iters, tol=0.0, chunk_size=chunk_size)
        jax.block_until_ready(res)
        return int(info.n_iter)

    return run


def _bench_case(n, d, k, repeats, faiss, KMeans):
    rng = np.random.default_rng(0)
    centers = rng.uniform(-10, 10, (k, d)).astype(np.float32)
    x = (centers[rng.integers(0, k, n)] + rng.standard_normal((n, d))).astype(np.float32)
    c0 = x[rng.choice(n, k, replace=False)]
    xj, c0j = jax.device_put(x), jax.device_put(c0)

    # -- per iteration, from the same centroids, ITERS and 3 * ITERS iterations
    def sk_run(iters):
        def run():
            return KMeans(k, init=c0, n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd").fit(x).n_iter_

        return run

    def faiss_run(iters):
        def run():
            faiss.Kmeans(d, k, niter=iters, verbose=False, max_points_per_centroid=n).train(x, init_centroids=c0)
            return iters

        return run

    fns = []
    for make in (lambda it: _jax_iters(xj, c0j, iters=it), sk_run, faiss_run):
        fns += [make(ITERS), make(3 * ITERS)]
    n_its = [fn() for fn in fns]
    times = _interleaved(fns, repeats)
    per_iter, marginal = [], []
    for i in range(0, 6, 2):
        per_iter.append(times[i] / n_its[i])
        marginal.append((times[i + 1] - times[i]) / max(n_its[i + 1] - n_its[i], 1))
    t_jax, t_sk, t_fa = per_iter

    # -- full fit: k-means++ + Lloyd to convergence (jaxprob, sklearn); faiss: its default 25 iterations
    key = jax.random.key(0)

    def jax_fit():
        jax.block_until_ready(kmeans.fit(xj, k, key=key)[0])

    f_jax = _median_time(jax_fit, repeats)
    f_sk = _median_time(lambda: KMeans(k, n_init=1, random_state=0, algorithm="lloyd").fit(x), repeats)

    def faiss_fit():
        faiss.Kmeans(d, k, niter=25, verbose=False, max_points_per_centroid=n, seed=1).train(x)

    f_fa = _median_time(faiss_fit, repeats)
    return (n, d, k, t_jax, t_sk, t_fa, f_jax, f_sk, f_fa, *marginal)


def _bench_chunks(repeats, KMeans, chunks=(1024, 4096, 8192, 16384, 65536)):
    n, d, k = CASES[0]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d)).astype(np.float32)
    c0 = x[:k].copy()
    xj, c0j = jax.device_put(x), jax.device_put(c0)
    runs = [_jax_iters(xj, c0j, c) for c in chunks]

    def sk_iters():
        return KMeans(k, init=c0, n_init=1, max_iter=ITERS, tol=0.0, algorithm="lloyd").fit(x).n_iter_

    iters = [r() for r in runs] + [sk_iters()]
    times = _interleaved(runs + [sk_iters], repeats)
    print(f"\nPer Lloyd iteration against the chunk size, N={n:,} D={d} K={k} (sklearn in the same rounds):\n")
    print("| rows per chunk | jaxprob s/iter | sklearn s/iter |")
    print("|---|---|---|")
    t_sk = times[-1] / iters[-1]
    for c, t, it in zip(chunks, times, iters, strict=False):
        print(f"| {c:,} | {t / it:.4f} | {t_sk:.4f} |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunks", action="store_true", help="also time jaxprob against the chunk size")
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
    for n, d, k, tj, ts, tf, fj, fs, ff, *_ in rows:
        print(
            f"| {n:,}, {d}, {k} | {tj:.4f} | {ts:.4f} | {tf:.4f} | {ts / tj:.2f} | {tf / tj:.2f} "
            f"| {fj:.3f} | {fs:.3f} | {ff:.3f} |"
        )
    print(f"\nMarginal cost of one Lloyd iteration, (time of {3 * ITERS} iterations - time of {ITERS}) / {2 * ITERS}: "
          "the fixed costs of a call (input checks, copies, the final labelling) left out.\n")
    print("| N, D, K | jaxprob s/iter | sklearn s/iter | faiss s/iter | sklearn / jaxprob | faiss / jaxprob |")
    print("|---|---|---|---|---|---|")
    for n, d, k, *_, mj, ms, mf in rows:
        print(f"| {n:,}, {d}, {k} | {mj:.4f} | {ms:.4f} | {mf:.4f} | {ms / mj:.2f} | {mf / mj:.2f} |")
    if args.chunks:
        _bench_chunks(args.repeats, KMeans)


if __name__ == "__main__":
    main()
