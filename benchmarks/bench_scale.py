"""Scale benchmarks: EM per iteration on 1, 2 and 8 forced host devices; chunked against in-memory time per pass;
a 10-million-sample chunked fit from a file with its peak resident memory.

Every measurement that depends on the JAX device count or on the peak memory of a process runs in its own
subprocess (``--worker ...``): the device count is fixed when jax is imported, and ``ru_maxrss`` is a per-process
high-water mark.

* devices: ``XLA_FLAGS=--xla_force_host_platform_device_count=n`` for n = 1, 2, 8; ``scale.fit_sharded`` from the
  same initial parameters for ``m`` and ``2m`` iterations (``tol=0``), the difference divided by ``m`` is the cost
  of one iteration (compilation and one-off work excluded); on a 2-core CPU the forced devices share the same cores,
  so this checks correctness and overhead, not a speed-up. The parameters of every run are compared with the
  one-device run.
* chunked vs in-memory: ``mixture.fit`` (in memory) against ``scale.fit_chunked`` reading a NumPy array and a
  ``np.memmap`` file, per iteration/pass, same method (``m`` and ``2m`` iterations); the same for ``kmeans.fit`` and
  ``scale.kmeans_fit_chunked``.
* 10M: one subprocess writes N=10,000,000 x D=16 float32 samples (640 MB) chunk by chunk into a ``np.memmap`` file;
  a fresh subprocess fits a K=16 full-covariance mixture on it with ``scale.fit_chunked`` (initial parameters from
  ``mixture.fit`` on the first 100,000 rows), then k-means with ``scale.kmeans_fit_chunked``, and reports
  ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (peak resident memory of the process, including Python and jax).

Usage: ``python benchmarks/bench_scale.py [--quick] [--skip-10m] [--file PATH]``; prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
D, K = 16, 16


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def make_chunk(rng, n, centers):
    labels = rng.integers(0, len(centers), n)
    return (centers[labels] + rng.standard_normal((n, centers.shape[1]))).astype(np.float32)


def centers_for(d=D, k=K, seed=123):
    return np.random.default_rng(seed).normal(0.0, 4.0, (k, d))


def run_worker(args: list[str], n_devices: int = 1) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, str(HERE), "--worker", *args], capture_output=True, text=True, env=env,
                         cwd=HERE.parents[1])
    if out.returncode != 0:
        raise RuntimeError(out.stdout + out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(fn, repeats):
    import jax

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def per_iteration(fit, m, repeats):
    """(t(2m) - t(m)) / m after compiling both (one-off work cancels)."""
    fit(m)
    fit(2 * m)
    t1 = timed(lambda: fit(m), repeats)
    t2 = timed(lambda: fit(2 * m), repeats)
    return max(t2 - t1, 1e-9) / m


# ----------------------------------------------------------------------------------------------------------------
# workers
# ----------------------------------------------------------------------------------------------------------------
def worker_devices(n, m, repeats):
    import jax

    from jaxprob import mixture, scale

    x = make_chunk(np.random.default_rng(0), n, centers_for())
    init = mixture.init(x[:20_000], K, key=jax.random.key(0))
    mesh = scale.sample_mesh()
    xs, ws = scale.shard_samples(x, mesh)

    def fit(iters):
        return scale.fit_sharded(xs, K, mesh=mesh, init_params=init, max_iter=iters, tol=0.0, sample_weight=ws)

    t_iter = per_iteration(fit, m, repeats)
    params, _ = fit(m)
    return {"devices": jax.device_count(), "t_iter": t_iter, "means": np.asarray(params.means).tolist(),
            "covariances": np.asarray(params.covariances).tolist()}


def worker_chunked(n, m, repeats, path):
    import jax

    from jaxprob import kmeans, mixture, scale

    x = make_chunk(np.random.default_rng(1), n, centers_for())
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=x.shape)
    mm[:] = x
    mm.flush()
    del mm
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=x.shape)
    init = mixture.init(x[:20_000], K, key=jax.random.key(0))
    # Lloyd converges in a few steps on well-separated clusters (then m and 2m iterations cost the same): time it on
    # one Gaussian blob, where it needs many more than 2m steps
    blob = np.random.default_rng(3).standard_normal((n, D)).astype(np.float32)
    blob_mm = np.memmap(path + ".blob", dtype=np.float32, mode="w+", shape=blob.shape)
    blob_mm[:] = blob
    blob_mm.flush()
    blob_mm = np.memmap(path + ".blob", dtype=np.float32, mode="r", shape=blob.shape)
    c0 = blob[:K]
    out = {"n": n}
    out["gmm_memory"] = per_iteration(
        lambda it: mixture.fit(x, K, init_params=init, max_iter=it, tol=0.0), m, repeats)
    out["gmm_chunked_array"] = per_iteration(
        lambda it: scale.fit_chunked(x, init, max_iter=it, tol=0.0), m, repeats)
    out["gmm_chunked_memmap"] = per_iteration(
        lambda it: scale.fit_chunked(mm, init, max_iter=it, tol=0.0), m, repeats)
    out["km_memory"] = per_iteration(
        lambda it: kmeans.fit(blob, K, init_centroids=c0, max_iter=it, tol=0.0), m, repeats)
    out["km_chunked_array"] = per_iteration(
        lambda it: scale.kmeans_fit_chunked(blob, c0, max_iter=it, tol=0.0), m, repeats)
    out["km_chunked_memmap"] = per_iteration(
        lambda it: scale.kmeans_fit_chunked(blob_mm, c0, max_iter=it, tol=0.0), m, repeats)
    out["km_n_iter"] = int(scale.kmeans_fit_chunked(blob_mm, c0, max_iter=2 * m, tol=0.0)[1].n_iter)
    os.remove(path + ".blob")
    return out


def worker_write(n, path, chunk=1_000_000):
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, D))
    rng, centers = np.random.default_rng(2), centers_for()
    for a in range(0, n, chunk):
        mm[a:a + chunk] = make_chunk(rng, min(chunk, n - a), centers)
    mm.flush()
    return {"bytes": int(n * D * 4)}


def worker_big(n, path, passes):
    import jax

    from jaxprob import mixture, scale

    rss_start = peak_rss_mb()
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=(n, D))
    sample = np.fromfile(path, dtype=np.float32, count=100_000 * D).reshape(-1, D)
    init, _ = mixture.fit(sample, K, key=jax.random.key(0), max_iter=20)
    del sample
    rss_init = peak_rss_mb()
    t0 = time.perf_counter()
    params, info = scale.fit_chunked(mm, init, max_iter=passes - 1, tol=0.0)
    t_gmm = time.perf_counter() - t0
    rss_gmm = peak_rss_mb()
    t0 = time.perf_counter()
    result, kinfo = scale.kmeans_fit_chunked(mm, np.asarray(init.means), max_iter=passes - 1, tol=0.0)
    t_km = time.perf_counter() - t0
    km_passes = int(kinfo.n_iter) + 1  # Lloyd stops early once the labels are stable
    return {
        "n": n, "bytes": int(n * D * 4), "passes": int(info.n_iter) + 1, "km_passes": km_passes,
        "gmm_pass": t_gmm / (int(info.n_iter) + 1), "km_pass": t_km / km_passes,
        "gmm_n_iter": int(info.n_iter), "gmm_ll": float(info.log_likelihood), "km_inertia": float(result.inertia),
        "rss_after_import": rss_start, "rss_after_init": rss_init, "rss_after_gmm": rss_gmm, "rss_peak": peak_rss_mb(),
    }


# ----------------------------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------------------------
def rel(a, b):
    """Largest difference relative to the largest magnitude (off-diagonal covariances can be near 0)."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs="+")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--skip-10m", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--file", default="/tmp/jaxprob_bench_scale_10m.f32")
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        fn = {"devices": worker_devices, "chunked": worker_chunked, "write": worker_write, "big": worker_big}[kind]
        conv = [int(v) if v.isdigit() else v for v in rest]
        print(json.dumps(fn(*conv)))
        return

    import jax

    n_dev, n_chunk, n_big = (20_000, 50_000, 200_000) if args.quick else (200_000, 1_000_000, 10_000_000)
    m = 5 if args.quick else 10
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.strip()
    print(f"Machine: {cpu.split(':', 1)[-1].strip()}, {os.cpu_count()} cores (shared); jax {jax.__version__}, "
          f"Python {platform.python_version()}; float32, D={D}, K={K}, full covariances; median of {args.repeats}.\n")

    rows = {nd: run_worker(["devices", str(n_dev), str(m), str(args.repeats)], nd) for nd in (1, 2, 8)}
    print(f"EM per iteration against forced host devices (N={n_dev:,}):\n")
    print("| devices | s / iteration | means: max abs. diff / max abs. vs 1 device | covariances: same |")
    print("|---|---|---|---|")
    for r in rows.values():
        print(f"| {r['devices']} | {r['t_iter']:.4f} | {rel(r['means'], rows[1]['means']):.1e} | "
              f"{rel(r['covariances'], rows[1]['covariances']):.1e} |")

    path = args.file + ".1m"
    c = run_worker(["chunked", str(n_chunk), str(m), str(args.repeats), path])
    os.remove(path)
    print(f"\nTime per pass, in memory against chunked (N={n_chunk:,}; read 65,536 rows at a time, computed in "
          "pieces of 8,192 rows for EM and 32,768 for Lloyd):\n")
    print("| algorithm | in memory (s / iter) | chunked, NumPy array (s / pass) | chunked, memmap file (s / pass) |")
    print("|---|---|---|---|")
    print(f"| EM | {c['gmm_memory']:.3f} | {c['gmm_chunked_array']:.3f} | {c['gmm_chunked_memmap']:.3f} |")
    print(f"| Lloyd (one Gaussian blob, {c['km_n_iter']} steps without convergence) | {c['km_memory']:.3f} | "
          f"{c['km_chunked_array']:.3f} | {c['km_chunked_memmap']:.3f} |")

    if not args.skip_10m:
        t0 = time.perf_counter()
        run_worker(["write", str(n_big), args.file])
        t_write = time.perf_counter() - t0
        b = run_worker(["big", str(n_big), args.file, "4"])
        os.remove(args.file)
        mb = b["bytes"] / 2**20
        print(f"\nChunked fit from a file, N={n_big:,}, {mb:.0f} MiB of float32 data (written in {t_write:.0f} s):\n")
        print("| algorithm | passes | s / pass | peak RSS (MiB) | peak RSS / data size |")
        print("|---|---|---|---|---|")
        print(f"| EM, K={K} full | {b['passes']} | {b['gmm_pass']:.2f} | {b['rss_after_gmm']:.0f} | "
              f"{b['rss_after_gmm'] / mb:.2f} |")
        print(f"| Lloyd, K={K} | {b['km_passes']} | {b['km_pass']:.2f} | {b['rss_peak']:.0f} | "
              f"{b['rss_peak'] / mb:.2f} |")
        print(f"\nPeak RSS after imports: {b['rss_after_import']:.0f} MiB; after the initial fit on 100,000 rows: "
              f"{b['rss_after_init']:.0f} MiB; EM mean log-likelihood after {b['gmm_n_iter']} iterations: "
              f"{b['gmm_ll']:.4f}.")


if __name__ == "__main__":
    main()
