"""Variational Bayesian Gaussian mixture: time per coordinate-ascent iteration against scikit-learn.

Full covariance, N=100,000, D=16, K=16, float32, a Dirichlet-process prior, the same data and starting
responsibilities for both:

* scikit-learn: one iteration of `BayesianGaussianMixture`'s loop, `_e_step` + `_m_step` + `_compute_lower_bound`,
  from the state `_initialize` makes from the starting responsibilities;
* jaxprob: `bayesian_mixture.fit(..., init_resp=..., max_iter=n, tol=0)` for n and 2n iterations, the difference
  divided by n (the marginal cost of one iteration in the compiled `while_loop`, bound included).

Everything is compiled first; rounds are interleaved; each figure is the median over rounds and the ratio is
against scikit-learn in the same run. NumPy's BLAS reads `OPENBLAS_*` variables: run with them unset, e.g.
`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_bayesian_mixture.py [--repeats R] [--quick]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from bench_mixture import make_data  # the same data as the mixture benchmark
from sklearn.mixture import BayesianGaussianMixture as SkBGM

from jaxprob import bayesian_mixture as bgm


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
    steps = 5
    x, resp = make_data(n, d, k)
    resp = resp.astype(np.float32)

    sk = SkBGM(n_components=k, covariance_type=ct, weight_concentration_prior_type="dirichlet_process")
    sk._check_parameters(x)
    sk._initialize(x, resp)

    def sk_iter():
        log_prob_norm, log_resp = sk._e_step(x)
        sk._m_step(x, log_resp)
        sk._compute_lower_bound(log_resp, log_prob_norm)

    xj, rj = jnp.asarray(x), jnp.asarray(resp)

    def fit(iters):
        jax.block_until_ready(bgm.fit(xj, k, covariance_type=ct, init_resp=rj, max_iter=iters, tol=0.0))

    t_compile = timed(lambda: fit(steps))
    fit(2 * steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk_iter()
    rows = {"sklearn": [], "jaxprob": []}
    for _ in range(args.repeats):
        rows["sklearn"].append(timed(sk_iter))
        rows["jaxprob"].append((timed(lambda: fit(2 * steps)) - timed(lambda: fit(steps))) / steps)
    med = {name: statistics.median(v) for name, v in rows.items()}
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.strip()
    blas = {v: os.environ.get(v) for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ}
    print(f"Machine: {cpu.split(':', 1)[-1].strip()}, {os.cpu_count()} cores; jax {jax.__version__}, "
          f"numpy {np.__version__}, Python {platform.python_version()}; OPENBLAS variables set: {blas or 'none'}; "
          f"float32, median of {args.repeats} interleaved rounds; first fit (compile + {steps} iterations) "
          f"{t_compile:.2f} s.\n")
    print(f"| {ct}, N={n:,} D={d} K={k}, Dirichlet process | s / iteration | scikit-learn / this |")
    print("|---|---|---|")
    for name, label in (("sklearn", "scikit-learn E + M step + bound"),
                        ("jaxprob", "iteration inside `bayesian_mixture.fit`")):
        print(f"| {label} | {med[name]:.4f} | {med['sklearn'] / med[name]:.1f}x |")


if __name__ == "__main__":
    main()
