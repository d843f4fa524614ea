"""Compile time of a first ``mixture.fit`` in a fresh process, for A/B comparisons between two checkouts.

Fits one shape (so that JAX's own start-up is paid), then times the first fit of a new shape minus a compiled
run of it ("warm": what ``bench_mixture.py`` reports), and also the first fit of the process minus its second
run ("fresh"). One process gives one sample: run it several times, alternating the checkouts, e.g.
``PYTHONPATH=/path/to/other/checkout python benchmarks/compile_probe.py full 100000 16 16``.
Usage: ``python benchmarks/compile_probe.py COVARIANCE_TYPE N D K``; prints one line.
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxprob import mixture


def main():
    ct, n, d, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    x = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    key = jax.random.key(0)

    def run(xx):
        t0 = time.perf_counter()
        jax.block_until_ready(mixture.fit(xx, k, key=key, covariance_type=ct, max_iter=20, tol=0.0))
        return time.perf_counter() - t0

    fresh = run(x) - run(x)
    xc = jnp.asarray(x[: n - 1])
    first = run(xc)
    warm = first - min(run(xc), run(xc))
    print(f"{ct} N={n} D={d} K={k}: fresh {fresh:.2f} s, warm {warm:.2f} s")


if __name__ == "__main__":
    main()
