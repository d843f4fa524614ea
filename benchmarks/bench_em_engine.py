"""The public EM step in a user's own jitted loop, against an iteration inside `mixture.fit` and scikit-learn.

Full covariance, N=100,000, D=16, K=16, float32, the same data and starting parameters for everyone:

* public step: `prep = em.prepare(x, family)` once, then `jax.jit(em.step)(prep, model)` called in a Python
  loop (the pattern the engine documents), one call per iteration, each blocked on;
* in-fit iteration: `mixture.fit(..., init_params=..., max_iter=n, tol=0)` for n and 2n iterations, the
  difference divided by n (the marginal cost of one iteration in the compiled `while_loop`);
* scikit-learn: `GaussianMixture._e_step` + `_m_step` (one iteration).

Rounds are interleaved and each figure is the median over rounds; ratios are against scikit-learn in the same run.
Usage: `python benchmarks/bench_em_engine.py [--repeats R] [--quick]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
from bench_mixture import make_data  # the same data as the mixture benchmark
from sklearn.mixture import GaussianMixture as SkGMM
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky, _estimate_gaussian_parameters

from jaxprob import em, mixture


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (median reported)")
    parser.add_argument("--quick", action="store_true", help="N=10,000 for a smoke run")
    args = parser.parse_args()
    n, d, k, ct = (10_000 if args.quick else 100_000), 16, 16, "full"
    steps = 10
    x, resp = make_data(n, d, k)
    nk, means, covs = _estimate_gaussian_parameters(x.astype(np.float64), resp, 1e-6, ct)
    weights = (nk / nk.sum()).astype(np.float32)
    means, covs = means.astype(np.float32), covs.astype(np.float32)

    gm = SkGMM(k, covariance_type=ct, reg_covar=1e-6)

    def sk_iter():
        gm.weights_, gm.means_, gm.covariances_ = weights, means, covs
        gm.precisions_cholesky_ = _compute_precision_cholesky(covs, ct)
        _, log_resp = gm._e_step(x)
        gm._m_step(x, log_resp)

    xj = jnp.asarray(x)
    model = mixture.make_gmm(weights, means, covs, ct)
    prep = jax.block_until_ready(jax.jit(em.prepare)(xj, model.family))
    step = jax.jit(em.step)

    def public_steps():
        m = model
        for _ in range(steps):
            m, ll = step(prep, m)
            jax.block_until_ready(ll)

    def fit(iters):
        jax.block_until_ready(mixture.fit(xj, k, init_params=model, max_iter=iters, tol=0.0))

    # compile everything first
    sk_iter()
    public_steps()
    fit(steps)
    fit(2 * steps)
    rows = {"sklearn": [], "public": [], "in_fit": []}
    for _ in range(args.repeats):
        rows["sklearn"].append(timed(sk_iter))
        rows["public"].append(timed(public_steps) / steps)
        rows["in_fit"].append((timed(lambda: fit(2 * steps)) - timed(lambda: fit(steps))) / steps)
    med = {name: statistics.median(v) for name, v in rows.items()}
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.strip()
    print(f"Machine: {cpu.split(':', 1)[-1].strip()}, {os.cpu_count()} cores; jax {jax.__version__}, "
          f"Python {platform.python_version()}; float32, median of {args.repeats} interleaved rounds.\n")
    print(f"| {ct}, N={n:,} D={d} K={k} | s / iteration | scikit-learn / this |")
    print("|---|---|---|")
    for name, label in (("sklearn", "scikit-learn E+M step"), ("public", "public `em.step` in a user loop"),
                        ("in_fit", "iteration inside `mixture.fit`")):
        print(f"| {label} | {med[name]:.4f} | {med['sklearn'] / med[name]:.1f}x |")


if __name__ == "__main__":
    main()
