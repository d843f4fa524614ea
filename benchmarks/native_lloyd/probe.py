"""Measurement probe: one k-means Lloyd pass as a native XLA FFI custom call on the CPU, against jaxprob and sklearn.

Not used by the library. It answers how fast a Lloyd iteration can be on this CPU when the pass (assignment,
per-cluster weighted sums and counts, inertia) is one fused native kernel (``lloyd_pass.cc``) called from JAX.
It checks the kernel against a NumPy float64 reference, then times, in interleaved rounds after one warm-up
call each (median of ``--repeats``): (a) the native pass alone (one thread per core on XLA's intra-op pool;
the same on std::threads started per call; one thread), (b) a jitted ``lax.fori_loop`` of Lloyd iterations
calling it (centroid update in JAX, an empty cluster keeps its centroid), (c) ``jaxprob.kmeans.fit`` and
(d) scikit-learn's ``KMeans`` (lloyd), all from the same initial centroids (the first K points) with tol 0.
Per iteration: the 10-iteration call divided by 10, and the marginal cost (30-iteration call minus
10-iteration call, divided by 20) that leaves out the fixed costs of a call.
Usage: ``bash benchmarks/native_lloyd/build.sh && python benchmarks/native_lloyd/probe.py [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import functools
import os
import pathlib
import platform
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bench_kmeans import _interleaved  # noqa: E402  (the same interleaved timing as the k-means benchmark)

from jaxprob import kmeans

HERE = pathlib.Path(__file__).resolve().parent
TARGET = "jaxprob_probe_lloyd_pass"
CASES = [(1_000_000, 16, 64), (100_000, 2, 8)]
ITERS = (10, 30)


def _register():
    lib = ctypes.cdll.LoadLibrary(str(HERE / "liblloyd_pass.so"))
    jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(lib.LloydPass), platform="cpu")


def lloyd_pass(x, w, c, n_threads: int = 0, xla_pool: bool = True):
    """labels (N,) int32, sums (K, D), counts (K,), inertia () of one pass of the native kernel.

    ``n_threads`` 0: one per hardware thread; ``xla_pool``: run them on XLA's intra-op pool (else std::threads).
    """
    n, d = x.shape
    k = c.shape[0]
    out = (
        jax.ShapeDtypeStruct((n,), jnp.int32),
        jax.ShapeDtypeStruct((k, d), jnp.float32),
        jax.ShapeDtypeStruct((k,), jnp.float32),
        jax.ShapeDtypeStruct((), jnp.float32),
    )
    return jax.ffi.ffi_call(TARGET, out)(x, w, c, n_threads=np.int64(n_threads), use_xla_pool=np.int64(xla_pool))


pass_jit = jax.jit(lloyd_pass, static_argnames=("n_threads", "xla_pool"))


@functools.partial(jax.jit, static_argnames="iters")
def native_lloyd(x, w, c0, iters: int):
    """``iters`` Lloyd iterations from ``c0``; returns the final centroids and the inertia of the last pass."""

    def body(_, carry):
        c, _ = carry
        _, sums, counts, inertia = lloyd_pass(x, w, c)
        c_new = jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1e-30)[:, None], c)
        return c_new, inertia

    return jax.lax.fori_loop(0, iters, body, (c0, jnp.zeros((), x.dtype)))


# ---------------------------------------------------------------- correctness


def _reference(x, w, c):
    x64, c64, w64 = x.astype(np.float64), c.astype(np.float64), w.astype(np.float64)
    dist = ((x64[:, None, :] - c64[None, :, :]) ** 2).sum(-1)
    return dist, dist.argmin(1), w64


def _check_small(rng, n, d, k, dup=False):
    x = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.uniform(0.5, 2.0, n).astype(np.float32)
    c = x[rng.choice(n, k, replace=False)].copy()
    if dup:  # exact ties: every centroid appears twice, the lower index must win
        c[k // 2 : 2 * (k // 2)] = c[: k // 2]
    labels, sums, counts, inertia = (np.asarray(a) for a in pass_jit(x, w, c))
    dist, ref_lab, w64 = _reference(x, w, c)
    rows = np.arange(n)
    mism = np.flatnonzero(labels != ref_lab)
    # a mismatch is a float32 near-tie when the two distances agree to float32 rounding of the expanded formula
    scale = (x.astype(np.float64) ** 2).sum(1) + (c.astype(np.float64) ** 2).sum(1).max()
    gap = dist[rows, labels] - dist[rows, ref_lab]
    near = gap[mism] <= 1e-5 * scale[mism]
    ref_sums = np.zeros((k, d))
    np.add.at(ref_sums, labels, w64[:, None] * x.astype(np.float64))
    ref_counts = np.bincount(labels, w64, minlength=k)
    ref_inertia = float((w64 * dist[rows, ref_lab]).sum())
    sums_err = np.abs(sums - ref_sums).max() / np.abs(ref_sums).max()
    counts_err = np.abs(counts - ref_counts).max() / ref_counts.max()
    inertia_err = abs(float(inertia) - ref_inertia) / ref_inertia
    ok = bool(near.all()) and max(sums_err, counts_err, inertia_err) < 1e-4
    if dup:
        ok = ok and not np.isin(labels, np.arange(k // 2, 2 * (k // 2))).any()
    print(
        f"check N={n} D={d} K={k}{' (duplicated centroids)' if dup else ''}: label mismatches {mism.size} "
        f"(all near-ties: {bool(near.all())}), rel. err sums {sums_err:.1e} counts {counts_err:.1e} "
        f"inertia {inertia_err:.1e} -> {'OK' if ok else 'FAIL'}"
    )
    return ok


def _check_large(x, c):
    n = x.shape[0]
    w = np.ones(n, np.float32)
    labels, sums, counts, inertia = (np.asarray(a) for a in pass_jit(x, w, c))
    ref_lab = np.empty(n, np.int64)
    ref_inertia = 0.0
    c64 = c.astype(np.float64)
    for s in range(0, n, 50_000):  # float64 brute force in slices
        dist = ((x[s : s + 50_000, None, :].astype(np.float64) - c64[None]) ** 2).sum(-1)
        ref_lab[s : s + 50_000] = dist.argmin(1)
        ref_inertia += dist.min(1).sum()
    agree = float((labels == ref_lab).mean())
    ref_counts = np.bincount(labels, minlength=c.shape[0])
    ref_sums = np.zeros(c.shape)
    np.add.at(ref_sums, labels, x.astype(np.float64))
    sums_err = np.abs(sums - ref_sums).max() / np.abs(ref_sums).max()
    counts_ok = bool(np.array_equal(counts, ref_counts))
    inertia_err = abs(float(inertia) - ref_inertia) / ref_inertia
    ok = agree > 0.9999 and counts_ok and sums_err < 1e-4 and inertia_err < 1e-4
    print(
        f"check N={n} D={x.shape[1]} K={c.shape[0]}: label agreement {agree:.6%} "
        f"({int((labels != ref_lab).sum())} differ), counts exact {counts_ok}, rel. err sums {sums_err:.1e} "
        f"inertia {inertia_err:.1e} -> {'OK' if ok else 'FAIL'}"
    )
    return ok


# ---------------------------------------------------------------- timing


def _bench_case(n, d, k, repeats, KMeans):
    x = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    c0 = x[:k].copy()
    xj, c0j, wj = jax.device_put(x), jax.device_put(c0), jax.device_put(np.ones(n, np.float32))
    ok = _check_large(x, c0) if n >= 1_000_000 else True

    fns = {
        "pool": lambda: jax.block_until_ready(pass_jit(xj, wj, c0j)),
        "std::thread": lambda: jax.block_until_ready(pass_jit(xj, wj, c0j, xla_pool=False)),
        "1 thread": lambda: jax.block_until_ready(pass_jit(xj, wj, c0j, n_threads=1)),
    }
    for it in ITERS:
        fns[f"native loop {it}"] = lambda it=it: jax.block_until_ready(native_lloyd(xj, wj, c0j, it))

        def jp(it=it):
            res, info = kmeans.fit(xj, k, init_centroids=c0j, max_iter=it, tol=0.0)
            jax.block_until_ready(res)
            assert int(info.n_iter) == it

        def sk(it=it):
            assert KMeans(k, init=c0, n_init=1, max_iter=it, tol=0.0, algorithm="lloyd").fit(x).n_iter_ == it

        fns[f"jaxprob {it}"], fns[f"sklearn {it}"] = jp, sk
    t = dict(zip(fns, _interleaved(list(fns.values()), repeats), strict=True))
    lo, hi = ITERS
    nt = os.cpu_count()
    rows = [(f"native pass alone ({nt} threads, XLA pool)", t["pool"], None),
            (f"native pass alone ({nt} std::threads per call)", t["std::thread"], None),
            ("native pass alone (1 thread)", t["1 thread"], None)]
    for name, key in (("native pass in jitted fori_loop", "native loop"), ("jaxprob.kmeans.fit", "jaxprob"),
                      ("sklearn KMeans lloyd", "sklearn")):
        rows.append((name, t[f"{key} {lo}"] / lo, (t[f"{key} {hi}"] - t[f"{key} {lo}"]) / (hi - lo)))
    return rows, ok


def _cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    from sklearn.cluster import KMeans

    _register()
    rng = np.random.default_rng(1)
    shapes = [(2000, 5, 37), (1003, 3, 70), (5003, 2, 8), (999, 8, 33), (70_001, 16, 64), (300, 1, 1),
              (257, 33, 130), (4099, 20, 50)]
    ok = all([_check_small(rng, n, d, k) for n, d, k in shapes]
             + [_check_small(rng, 500, 7, 20, dup=True), _check_small(rng, 700, 16, 40, dup=True)])

    lines = [
        f"CPU: {_cpu_model()} ({jax.local_devices()[0].platform}, {len(jax.local_devices())} JAX device), "
        f"jax {jax.__version__}, {datetime.date.today().isoformat()}, median of {args.repeats}",
        "",
        "| N, D, K | method | ms / iteration (10-iteration call) | marginal ms / iteration | "
        "jaxprob / this (marginal) | sklearn / this (marginal) |",
        "|---|---|---|---|---|---|",
    ]
    for n, d, k in CASES:
        rows, ok_case = _bench_case(n, d, k, args.repeats, KMeans)
        ok = ok and ok_case
        marg = {name: (m if m is not None else per) for name, per, m in rows}
        jp, sk = marg["jaxprob.kmeans.fit"], marg["sklearn KMeans lloyd"]
        for name, per, m in rows:
            ms_m = "" if m is None else f"{1e3 * m:.2f}"
            lines.append(f"| {n:,}, {d}, {k} | {name} | {1e3 * per:.2f} | {ms_m} | {jp / marg[name]:.2f}x | "
                         f"{sk / marg[name]:.2f}x |")
    print("\n".join(lines))
    print(f"\ncorrectness checks: {'all OK' if ok else 'SOME FAILED'}")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
