"""EM for Gaussian mixtures: jaxprob against scikit-learn (and gmmx when installed), float32, same data, same run.

Per-iteration time: jaxprob and gmmx run ``fit`` for ``n`` and ``2n`` iterations (tol=0) from the same initial
parameters, after compilation; the difference divided by ``n`` is the cost of one EM iteration, free of the
one-off work (features, final E-step, transfers). scikit-learn: one ``_e_step`` + ``_m_step``. Full fit: 20 EM
iterations from the same start for every library. Compile time: first call of ``mixture.fit`` with a new shape
(k-means++ initialisation, one restart), minus the run time of a compiled call.

Usage: ``python benchmarks/bench_mixture.py [--repeats R] [--quick]``; prints a markdown table.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.mixture import GaussianMixture as SkGMM
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky, _estimate_gaussian_parameters

from jaxprob import mixture

N_ITER = 20


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_data(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 4, (k, d))
    labels = rng.integers(0, k, n)
    x = centers[labels] + rng.normal(0, 1, (n, d)) * rng.uniform(0.5, 1.5, (k, d))[labels]
    resp = rng.uniform(size=(n, k))
    resp /= resp.sum(1, keepdims=True)
    return x.astype(np.float32), resp


def bench_case(ct, n, d, k, repeats):
    x, resp = make_data(n, d, k)
    nk, means, covs = _estimate_gaussian_parameters(x.astype(np.float64), resp, 1e-6, ct)
    weights = nk / nk.sum()
    row = {"case": f"{ct}, N={n:,} D={d} K={k}"}

    # scikit-learn
    gm = SkGMM(k, covariance_type=ct, reg_covar=1e-6)

    def sk_reset():
        gm.weights_, gm.means_, gm.covariances_ = weights.astype(np.float32), means.astype(np.float32), covs.astype(
            np.float32)
        gm.precisions_cholesky_ = _compute_precision_cholesky(gm.covariances_, ct)

    def sk_iter():
        _, log_resp = gm._e_step(x)
        gm._m_step(x, log_resp)

    sk_reset()
    sk_iter()
    row["sk_iter"] = median_time(sk_iter, repeats)

    def sk_fit():
        sk_reset()
        for _ in range(N_ITER):
            sk_iter()

    row["sk_fit"] = median_time(sk_fit, max(1, repeats // 2))

    # jaxprob
    xj = jnp.asarray(x)
    init = mixture.make_gmm(weights.astype(np.float32), means.astype(np.float32), covs.astype(np.float32), ct)

    def jp_fit(iters):
        params, info = mixture.fit(xj, k, covariance_type=ct, init_params=init, max_iter=iters, tol=0.0)
        jax.block_until_ready((params, info))

    for iters in (N_ITER, 2 * N_ITER):
        jp_fit(iters)  # compile
    t1 = median_time(lambda: jp_fit(N_ITER), repeats)
    t2 = median_time(lambda: jp_fit(2 * N_ITER), repeats)
    row["jp_iter"] = max(t2 - t1, 1e-9) / N_ITER
    row["jp_fit"] = t1

    # compile time of a fresh fit (k-means++ init), new shape so that nothing is cached
    xc = jnp.asarray(x[: n - 1])
    t0 = time.perf_counter()
    jax.block_until_ready(mixture.fit(xc, k, key=jax.random.key(0), covariance_type=ct, max_iter=N_ITER, tol=0.0))
    first = time.perf_counter() - t0
    run = median_time(lambda: jax.block_until_ready(
        mixture.fit(xc, k, key=jax.random.key(0), covariance_type=ct, max_iter=N_ITER, tol=0.0)), 2)
    row["jp_compile"] = first - run

    # gmmx (full covariance only; optional)
    row["gmmx_iter"] = row["gmmx_fit"] = None
    if ct == "full":
        try:
            from gmmx import EMFitter, GaussianMixtureModelJax

            g0 = GaussianMixtureModelJax.from_squeezed(means.astype(np.float32), covs.astype(np.float32),
                                                       weights.astype(np.float32))

            def gx_fit(iters):
                res = EMFitter(max_iter=iters, tol=0.0).fit(xj, g0)
                jax.block_until_ready(res)

            for iters in (N_ITER, 2 * N_ITER):
                gx_fit(iters)
            g1 = median_time(lambda: gx_fit(N_ITER), repeats)
            g2 = median_time(lambda: gx_fit(2 * N_ITER), repeats)
            row["gmmx_iter"] = max(g2 - g1, 1e-9) / N_ITER
            row["gmmx_fit"] = g1
        except Exception as exc:  # noqa: BLE001 - optional reference
            print(f"gmmx failed on {row['case']}: {exc!r}")
    return row


def fmt(v, unit="s"):
    return "n/a" if v is None else (f"{v * 1e3:.1f} ms" if v < 1 else f"{v:.2f} s")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    cases = [("full", 100_000, 16, 16), ("diag", 100_000, 16, 16), ("full", 1_000_000, 8, 8)]
    if args.quick:
        cases = [(ct, n // 100, d, k) for ct, n, d, k in cases]
    rows = [bench_case(*c, args.repeats) for c in cases]
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.strip()
    print(f"\nMachine: {cpu.split(':', 1)[-1].strip()}, {jax.device_count()} JAX CPU device, "
          f"{__import__('os').cpu_count()} cores; jax {jax.__version__}, Python {platform.python_version()}; "
          f"float32; median of {args.repeats}.\n")
    print("| case | sklearn / iter | jaxprob / iter | ratio | gmmx / iter | sklearn 20 iters | jaxprob 20 iters "
          "| ratio | gmmx 20 iters | jaxprob compile |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {fmt(r['sk_iter'])} | {fmt(r['jp_iter'])} | {r['sk_iter'] / r['jp_iter']:.1f}x "
              f"| {fmt(r['gmmx_iter'])} | {fmt(r['sk_fit'])} | {fmt(r['jp_fit'])} | "
              f"{r['sk_fit'] / r['jp_fit']:.1f}x | {fmt(r['gmmx_fit'])} | {r['jp_compile']:.2f} s |")


if __name__ == "__main__":
    main()
