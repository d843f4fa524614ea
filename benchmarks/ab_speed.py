"""A/B speed check of two commits in the same run: EM and Lloyd iterations, per-iteration marginal cost.

For each commit, a detached git worktree is made in a temporary folder and each measurement runs in a fresh
subprocess with that worktree first on `sys.path`; the commits alternate round by round and the median over rounds
is reported with the ratio new / old (below 1.10 is "within 10%").

Cases (float32, the cases of docs/benchmarks.md's mixture and k-means tables):
* EM: full N=100k D=16 K=16, diag N=100k D=16 K=16, full N=1M D=8 K=8: `mixture.fit(init_params=..., tol=0)` for
  n and 2n iterations, the difference divided by n;
* Lloyd: N=1M D=16 K=64: `kmeans.fit(init_centroids=..., tol=0)` likewise.

Usage: `python benchmarks/ab_speed.py [--old REV] [--new REV] [--rounds R] [--steps N] [--cases 1,2]` (defaults:
the commit before the EM engine, and the working tree). Unset OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE is not needed:
only JAX runs here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SNIPPET = r"""
import json, sys, time
import jax, jax.numpy as jnp, numpy as np
from jaxprob import kmeans, mixture

case, n, d, k, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = np.random.default_rng(0)
centers = rng.normal(0, 4, (k, d))
labels = rng.integers(0, k, n)
x = jnp.asarray((centers[labels] + rng.normal(0, 1, (n, d))).astype(np.float32))

def timed(fn):
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0

if case == "lloyd":
    c0 = x[:k]
    run = lambda it: jax.block_until_ready(kmeans.fit(x, k, init_centroids=c0, max_iter=it, tol=0.0)[0].centroids)
else:
    ct = case
    resp = rng.uniform(size=(2000, k)); resp /= resp.sum(1, keepdims=True)
    xs = np.asarray(x[:2000], np.float64)
    nk = resp.sum(0); means = (resp.T @ xs) / nk[:, None]
    if ct == "full":
        covs = np.stack([np.cov(xs.T, aweights=resp[:, j]) + 1e-3 * np.eye(d) for j in range(k)])
    else:
        covs = np.stack([np.average((xs - means[j]) ** 2, axis=0, weights=resp[:, j]) + 1e-3 for j in range(k)])
    init = mixture.make_gmm((nk / nk.sum()).astype(np.float32), means.astype(np.float32), covs.astype(np.float32), ct)
    run = lambda it: jax.block_until_ready(mixture.fit(x, k, covariance_type=ct, init_params=init, max_iter=it,
                                                       tol=0.0)[0].weights)
run(steps); run(2 * steps)  # compile both
t1s, t2s = [], []
for _ in range(5):  # alternate the two lengths; medians of each
    t1s.append(timed(lambda: run(steps))); t2s.append(timed(lambda: run(2 * steps)))
t1, t2 = sorted(t1s)[2], sorted(t2s)[2]
print("RESULT" + json.dumps({"iter": max(t2 - t1, 1e-9) / steps}))
"""

CASES = [("full", 100_000, 16, 16), ("diag", 100_000, 16, 16), ("full", 1_000_000, 8, 8), ("lloyd", 1_000_000, 16, 64)]


def measure(tree: Path, case, steps: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", SNIPPET, *map(str, case), str(steps)], capture_output=True, text=True,
                         env=env, cwd=tree, timeout=900)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
    if not line:
        raise RuntimeError(f"measurement failed in {tree}: {out.stderr[-2000:]}")
    return json.loads(line[-1][len("RESULT"):])["iter"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="33d0833", help="the reference commit (default: before the EM engine)")
    parser.add_argument("--new", default=None, help="the commit to check (default: the working tree)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per case (median reported)")
    parser.add_argument("--steps", type=int, default=10,
                        help="iterations n of the n- and 2n-iteration fits (more steady for the fast cases)")
    parser.add_argument("--cases", type=lambda v: [int(i) for i in v.split(",")], default=None,
                        help="indices of the cases to run, e.g. 1,2 (default: all, in the order of the table)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for label, rev in (("old", args.old), ("new", args.new)):
            if rev is None:
                trees[label] = ROOT
                continue
            path = Path(tmp) / label
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), rev], check=True)
            trees[label] = path
        try:
            print(f"old = {args.old}, new = {args.new or 'working tree'}; float32, median of {args.rounds} "
                  "interleaved rounds, seconds per iteration\n")
            print("| case | old | new | new / old |")
            print("|---|---|---|---|")
            for case in [c for i, c in enumerate(CASES) if args.cases is None or i in args.cases]:
                times = {"old": [], "new": []}
                for _ in range(args.rounds):
                    for label in ("old", "new"):
                        times[label].append(measure(trees[label], case, args.steps))
                old, new = statistics.median(times["old"]), statistics.median(times["new"])
                name = f"{'Lloyd' if case[0] == 'lloyd' else 'EM ' + case[0]}, N={case[1]:,} D={case[2]} K={case[3]}"
                print(f"| {name} | {old:.4f} | {new:.4f} | {new / old:.2f} |", flush=True)
        finally:
            for path in trees.values():
                if path != ROOT:
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False)


if __name__ == "__main__":
    main()
