"""Hidden Markov model timings against hmmlearn, measured in the same run on the same data.

Gaussian emissions with diagonal covariances (hmmlearn's default), D = 8, one sequence of T steps, S states.

* **Forward–backward**: emission log-likelihoods plus posterior marginals of the whole sequence, from the same
  model: `hmm.predict_proba` against hmmlearn's `score_samples` (both compute the emissions and run the forward
  and backward recursions).
* **Baum–Welch iteration**: both libraries run `ITERS` and `3 * ITERS` iterations from the same parameters (tol
  disabled) and the time per iteration is the difference divided by the extra iterations, which leaves out fixed
  costs (validation, starting the program). Every iteration is one E-step (emissions, forward–backward, statistics)
  and one M-step.

jaxprob runs in float32 (its default for float32 data), hmmlearn in float64 (it converts). Every jaxprob method
is timed: the blocked one (the default: blocks of scans in probability space), the sequential one (`lax.scan` in
log space) and the parallel one (`lax.associative_scan`, $O(T S^3)$ work for $O(\\log T)$ depth, meant for
accelerators; only where it stays within seconds on a CPU). Measurements of the libraries are interleaved
(one round = one repeat of each), so load from other jobs hits them alike; the median is printed.
Usage: `python benchmarks/bench_hmm.py [--repeats 3] [--cases 4x1000,32x100000] [--no-parallel]`.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import jax
import numpy as np

from jaxprob import families, hmm
from jaxprob.families.gaussian import make_params

D = 8
ITERS = 1
CASES = [(4, 1_000), (4, 100_000), (32, 1_000), (32, 100_000)]
# the parallel method does O(T S^3) log-semiring work: on a CPU only where it stays within seconds
PARALLEL_MAX_WORK = 4 * 10**8


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


def make_case(s, t, seed=0):
    """A sticky S-state chain with well separated Gaussian emissions; returns data and starting parameters."""
    rng = np.random.default_rng(seed)
    a = np.full((s, s), 0.1 / max(s - 1, 1)) + np.eye(s) * (0.9 - 0.1 / max(s - 1, 1))
    if s == 1:
        a = np.ones((1, 1))
    centers = rng.uniform(-5, 5, (s, D))
    z = np.empty(t, np.int64)
    z[0] = rng.integers(s)
    u = rng.random(t)
    cum = np.cumsum(a, axis=1)
    for i in range(1, t):
        z[i] = min(np.searchsorted(cum[z[i - 1]], u[i]), s - 1)
    x = centers[z] + rng.standard_normal((t, D))
    start = dict(initial=np.full(s, 1.0 / s), transition=np.full((s, s), 1.0 / s),
                 means=x[rng.choice(t, s, replace=False)], covariances=np.ones((s, D)))
    return x, start


def bench_case(s, t, repeats, parallel):
    from hmmlearn.hmm import GaussianHMM

    x64, start = make_case(s, t)
    x32 = x64.astype(np.float32)
    fam = families.gaussian("diag", reg_covar=0.0)
    model = hmm.make_hmm(start["initial"].astype(np.float32), start["transition"].astype(np.float32),
                         make_params(start["means"].astype(np.float32), start["covariances"].astype(np.float32),
                                     "diag"), fam)

    def ref_model(n_iter):
        m = GaussianHMM(s, covariance_type="diag", covars_prior=0.0, init_params="", params="stmc", n_iter=n_iter,
                        tol=-np.inf, implementation="log")
        m.startprob_, m.transmat_ = start["initial"], start["transition"]
        m.means_, m.covars_ = start["means"], start["covariances"]
        return m

    ref = ref_model(1)

    def ref_fb():
        return ref.score_samples(x64)

    def ref_fit(n):
        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref_model(n).fit(x64)

        return run

    def jp_fb(method):
        def run():
            jax.block_until_ready(hmm.predict_proba(x32, model, method=method))

        return run

    def jp_fit(n, method):
        def run():
            out = hmm.fit(x32, s, init_model=model, max_iter=n, tol=0.0, method=method)
            jax.block_until_ready(out)

        return run

    methods = ["sequential", "blocked"] + (["parallel"] if parallel and t * s**3 <= PARALLEL_MAX_WORK else [])
    fns = [ref_fb, ref_fit(ITERS), ref_fit(3 * ITERS)]
    for m in methods:
        fns += [jp_fb(m), jp_fit(ITERS, m), jp_fit(3 * ITERS, m)]
    times = _interleaved(fns, repeats)
    out = {"hmmlearn": (times[0], (times[2] - times[1]) / (2 * ITERS))}
    for i, m in enumerate(methods):
        fb, f1, f3 = times[3 + 3 * i : 6 + 3 * i]
        out[m] = (fb, (f3 - f1) / (2 * ITERS))
    return out


def fmt(v):
    return f"{v * 1e3:.3g} ms" if v < 1 else f"{v:.3g} s"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default=",".join(f"{s}x{t}" for s, t in CASES),
                        help="comma-separated SxT cases (states x steps)")
    parser.add_argument("--no-parallel", action="store_true", help="skip the parallel (associative-scan) method")
    args = parser.parse_args()
    cases = [tuple(int(v) for v in c.split("x")) for c in args.cases.split(",")]
    import hmmlearn

    print(f"jax {jax.__version__} ({jax.default_backend()}), hmmlearn {hmmlearn.__version__}, "
          f"{platform.processor() or platform.machine()}, repeats {args.repeats}, D = {D}, diag covariances\n")
    print("| S | T | method | forward–backward | hmmlearn | ratio | Baum–Welch iteration | hmmlearn | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s, t in cases:
        res = bench_case(s, t, args.repeats, not args.no_parallel)
        ref_fb, ref_it = res.pop("hmmlearn")
        for method, (fb, it) in res.items():
            print(f"| {s} | {t:,} | {method} | {fmt(fb)} | {fmt(ref_fb)} | {ref_fb / fb:.1f}x | {fmt(it)} | "
                  f"{fmt(ref_it)} | {ref_it / it:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
