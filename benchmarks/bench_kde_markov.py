"""Timings: KDE log-density against scikit-learn KernelDensity, Markov counting against NumPy.

Run ``python benchmarks/bench_kde_markov.py [--large]``. Every jaxprob call is compiled first and timed with
``block_until_ready``; the median of several repeats is reported with the reference measured in the same run.
``--large`` adds 100k queries x 100k points (jaxprob only: scikit-learn's exact tree-based score_samples takes
far too long at that size on a small machine).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxprob import kde, markov


def timeit(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_kde(n_points, n_queries, repeats, with_reference=True):
    from sklearn.neighbors import KernelDensity

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n_points, 2)).astype(np.float32)
    q = rng.standard_normal((n_queries, 2)).astype(np.float32)
    model = kde.fit(x, bandwidth=0.3)
    jax.block_until_ready(kde.log_prob(q, model))  # compile
    t_jax = timeit(lambda: kde.log_prob(q, model), repeats)
    t_ref = None
    if with_reference:
        ref = KernelDensity(bandwidth=0.3).fit(x)
        t_ref = timeit(lambda: ref.score_samples(q), max(1, repeats // 2))
        err = float(np.max(np.abs(np.asarray(kde.log_prob(q, model)) - ref.score_samples(q))))
    else:
        err = None
    return t_jax, t_ref, err


def bench_markov(n_seq, max_len, n_states, repeats):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, max_len + 1, n_seq).astype(np.int32)
    batch = rng.integers(0, n_states, (n_seq, max_len)).astype(np.int32)
    b, lens = jnp.asarray(batch), jnp.asarray(lengths)
    jax.block_until_ready(markov.count_transitions(b, lens, n_states))
    t_jax = timeit(lambda: markov.count_transitions(b, lens, n_states), repeats)

    def numpy_counts():
        mask = np.arange(1, max_len)[None, :] < lengths[:, None]
        out = np.zeros((n_states, n_states), np.int64)
        np.add.at(out, (batch[:, :-1][mask], batch[:, 1:][mask]), 1)
        return out

    def numpy_bincount():
        mask = np.arange(1, max_len)[None, :] < lengths[:, None]
        pair = batch[:, :-1][mask].astype(np.int64) * n_states + batch[:, 1:][mask]
        return np.bincount(pair, minlength=n_states * n_states).reshape(n_states, n_states)

    assert np.array_equal(numpy_counts(), np.asarray(markov.count_transitions(b, lens, n_states)))
    t_addat = timeit(numpy_counts, repeats)
    t_bincount = timeit(numpy_bincount, repeats)
    n_trans = int(np.maximum(lengths - 1, 0).sum())
    return t_jax, t_addat, t_bincount, n_trans


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--large", action="store_true", help="add 100k x 100k KDE (jaxprob only)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("| task | size | jaxprob (s) | reference | reference (s) | ratio ref/jaxprob |")
    print("|---|---|---|---|---|---|")
    for n in (1_000, 10_000):
        t_jax, t_ref, err = bench_kde(n, n, args.repeats)
        print(f"| KDE score_samples, gaussian, D=2 | {n:,} queries x {n:,} points | {t_jax:.4f} | "
              f"sklearn KernelDensity (max abs diff {err:.1e}) | {t_ref:.4f} | {t_ref / t_jax:.1f} |")
    if args.large:
        t_jax, _, _ = bench_kde(100_000, 100_000, 1, with_reference=False)
        print(f"| KDE log_prob, gaussian, D=2 | 100,000 x 100,000 (chunked) | {t_jax:.2f} | "
              "sklearn not run (too slow) | - | - |")
    for n_seq, max_len, s in ((1_000, 200, 100), (10_000, 200, 1_000)):
        t_jax, t_addat, t_bc, n_trans = bench_markov(n_seq, max_len, s, args.repeats)
        size = f"{n_seq:,} seqs x T={max_len} ({n_trans:,} transitions), S={s:,}"
        print(f"| order-1 counts (segment_sum) | {size} | {t_jax:.4f} | numpy np.add.at | {t_addat:.4f} | "
              f"{t_addat / t_jax:.1f} |")
        print(f"| order-1 counts (segment_sum) | {size} | {t_jax:.4f} | numpy bincount | {t_bc:.4f} | "
              f"{t_bc / t_jax:.1f} |")


if __name__ == "__main__":
    main()
