"""jaxprob on one accelerator: per-iteration time against a PyTorch peer and the memory floor, and the error of
each matrix-product precision (issue #17's table), float32, everything measured in the same run.

Sections (markdown tables on stdout, and a JSON record with `--json PATH`):

1. *Device*: the device, the achievable memory bandwidth (a streaming read and a copy of 1 GiB, the better of the
   two) and the achievable float32 matrix-product rate at full precision (`precision="highest"`) and at JAX's
   default.
2. *k-means*: marginal time per Lloyd iteration, `kmeans.fit(init_centroids=..., tol=0)` for `n` and `2n`
   iterations, the difference divided by `n` (the fixed costs of a call cancel). Variants of the per-backend
   choices of `jaxprob.kmeans` (`_BACKENDS`): the default, the fused Pallas pass, packed labels, other chunk sizes;
   against a ten-line PyTorch Lloyd loop (matmul, argmin, index_add) on the same data when torch is installed.
   Floors: reading the samples once at the measured bandwidth, and the distance products at the measured rate.
3. *The fused Pallas pass* (GPU / TPU only): one pass per block layout against one pure-JAX Lloyd step.
4. *Gaussian mixture, full covariances*: marginal time per EM iteration of `mixture.fit(init_params=..., tol=0)`,
   against a PyTorch EM iteration (same model, from the same start) when torch is installed. Floor: the fused
   E-step reads the feature matrix `(N, D(D+1)/2 + D + 1)` twice per iteration (two matrix products).
5. *Precision*: the error against float64 of 20 EM iterations (N=200k, D=16, K=16, the same start), 10 Lloyd
   iterations (N=200k, D=16, K=64) and a KDE log-density, for each choice of `jax.default_matmul_precision`. On a
   CPU, which computes every float32 product in full, the reduced precisions are *emulated* by rounding the
   operands of each product (TF32: 10 mantissa bits; bfloat16: 7 bits; `BF16_BF16_F32_X3`: the three-product split)
   and labelled so.

Usage: `python benchmarks/bench_accelerator.py [--quick] [--repeats 3] [--json out.json] [--skip precision,...]`.
`--quick` divides the sizes by 100 (a smoke test of the script, on any machine). A few minutes on one H100/H200.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxprob import kde, kmeans, mixture, pallas_kmeans

BACKEND = jax.default_backend()
ITERS = 5  # iterations of the shorter timed run (the longer runs twice as many)
try:  # optional peer
    import torch

    TORCH = torch.cuda.is_available()
except ImportError:  # pragma: no cover - depends on the machine
    torch, TORCH = None, False


def _sync(out):
    jax.block_until_ready(out)
    return out


def _median(fn, repeats):
    fn()  # compile / warm
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _marginal(run, n, repeats):
    """Seconds per iteration: (time of 2n iterations - time of n) / n, medians over interleaved repeats."""
    run(n), run(2 * n)  # compile both
    t1, t2 = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(n)
        t1.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        run(2 * n)
        t2.append(time.perf_counter() - t0)
    return max(statistics.median(t2) - statistics.median(t1), 1e-9) / n


# ----------------------------------------------------------------------------------------------------------
# device rates
# ----------------------------------------------------------------------------------------------------------
def device_rates(quick, repeats):
    n = (2**28 if not quick else 2**22)  # 1 GiB of float32
    big = _sync(jnp.ones((n // 1024, 1024), jnp.float32))
    read = jax.jit(lambda a: jnp.sum(a, axis=0))
    copy = jax.jit(lambda a: a * 2.0)
    t_read = _median(lambda: _sync(read(big)), repeats)
    t_copy = _median(lambda: _sync(copy(big)), repeats)
    bw = max(4 * n / t_read, 8 * n / t_copy)
    m = 8192 if not quick else 512
    sq = _sync(jax.random.normal(jax.random.key(0), (m, m), jnp.float32))
    rates = {}
    for name, prec in (("highest", "highest"), ("default", None)):
        mm = jax.jit(lambda b, p=prec: jnp.matmul(b, b, precision=p))
        rates[name] = 2 * m**3 / _median(lambda mm=mm: _sync(mm(sq)), repeats)
    return {"bandwidth_Bps": bw, "matmul_flops_highest": rates["highest"], "matmul_flops_default": rates["default"]}


# ----------------------------------------------------------------------------------------------------------
# k-means
# ----------------------------------------------------------------------------------------------------------
def _blobs(n, d, k, seed=0):
    key_c, key_z, key_e = jax.random.split(jax.random.key(seed), 3)
    centers = 4.0 * jax.random.normal(key_c, (k, d), jnp.float32)
    z = jax.random.randint(key_z, (n,), 0, k)
    return _sync(centers[z] + jax.random.normal(key_e, (n, d), jnp.float32))


@contextlib.contextmanager
def _choices(**changes):
    """k-means per-backend choices changed for a measurement (programs recompiled)."""
    key = BACKEND if BACKEND in kmeans._BACKENDS else "gpu"
    old = kmeans._BACKENDS[key]
    kmeans._BACKENDS[key] = old._replace(**changes)
    jax.clear_caches()
    try:
        yield
    finally:
        kmeans._BACKENDS[key] = old
        jax.clear_caches()


def torch_lloyd(x, c0, iters):
    """The PyTorch peer: distances by one matmul (chunked to 1 GiB of distances), argmin, index_add."""
    x, c = torch.from_dlpack(x), torch.from_dlpack(c0).clone()
    n, d = x.shape
    k = c.shape[0]
    x_sq = (x * x).sum(1)
    rows = max(1, min(n, 2**28 // k))
    for _ in range(iters):
        c_sq = (c * c).sum(1)
        sums = torch.zeros_like(c)
        counts = torch.zeros(k, dtype=x.dtype, device=x.device)
        for s in range(0, n, rows):
            xb = x[s:s + rows]
            lab = torch.argmin(x_sq[s:s + rows, None] - 2.0 * (xb @ c.T) + c_sq[None], dim=1)
            sums.index_add_(0, lab, xb)
            counts.index_add_(0, lab, torch.ones_like(lab, dtype=x.dtype))
        c = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], c)
    torch.cuda.synchronize()
    return c


def bench_kmeans(rates, quick, repeats):
    cases = [(10_000_000, 16, 64), (10_000_000, 64, 1024)]
    if quick:
        cases = [(n // 100, d, k) for n, d, k in cases]
    # the fused Pallas pass runs in interpret mode on a CPU (far too slow beyond the quick sizes)
    fused = [("pallas", {"pallas": True})] if BACKEND != "cpu" or quick else []
    variants = [("default", {}), *fused, ("packed labels", {"pack": True}),
                ("chunks 2^23", {"chunk_entries": 2**23, "whole_entries": 2**23}),
                ("chunks 2^27", {"chunk_entries": 2**27, "whole_entries": 2**27})]
    rows = []
    for n, d, k in cases:
        x = _blobs(n, d, k)
        c0 = x[:k]

        def run(it, x=x, c0=c0, k=k):
            return _sync(kmeans.fit(x, k, init_centroids=c0, max_iter=it, tol=0.0)[0].centroids)

        row = {"case": f"k-means N={n:,} D={d} K={k}"}
        for name, change in variants:
            try:
                with _choices(**change):
                    row[name] = _marginal(run, ITERS, repeats)
            except Exception as err:  # a variant that does not compile on this device is reported, not fatal
                row[name] = f"failed: {type(err).__name__}: {str(err)[:120]}"
        if TORCH:
            torch_lloyd(x, c0, 1)
            t1 = _median(lambda x=x, c0=c0: torch_lloyd(x, c0, ITERS), repeats)
            t2 = _median(lambda x=x, c0=c0: torch_lloyd(x, c0, 2 * ITERS), repeats)
            row["torch"] = max(t2 - t1, 1e-9) / ITERS
        row["memory floor"] = 4 * n * d / rates["bandwidth_Bps"]
        row["compute floor"] = 2 * n * d * k / rates["matmul_flops_highest"]
        rows.append(row)
        del x
    return rows


def bench_pallas_sweep(quick, repeats):
    """One fused pass (`pallas_kmeans.lloyd_pass`) per block layout, against one pure-JAX Lloyd step (which also
    moves the centroids): the data to choose the kernel's defaults on this device."""
    cases = [(10_000_000, 16, 64), (10_000_000, 64, 1024)]
    if quick:
        cases = [(n // 100, d, k) for n, d, k in cases]
    layouts = [(64, 64, 512), (128, 64, 512), (128, 128, 1024), (256, 64, 2048), (64, 32, 264)]
    rows = []
    for n, d, k in cases:
        x = _blobs(n, d, k, seed=3)
        c = x[:k]
        step = jax.jit(lambda x, c: kmeans.lloyd_step(x, c)[0])
        t_step = _median(lambda step=step, x=x, c=c: _sync(step(x, c)), repeats)
        row = {"case": f"one pass N={n:,} D={d} K={k}", "XLA Lloyd step": t_step}
        for br, bc, seg in layouts:
            fn = jax.jit(lambda x, c, br=br, bc=bc, seg=seg: pallas_kmeans.lloyd_pass(
                x, c, block_rows=br, block_clusters=bc, n_segments=seg).sums)
            try:
                row[f"pallas {br}x{bc}, {seg} seg."] = _median(lambda fn=fn, x=x, c=c: _sync(fn(x, c)), repeats)
            except Exception as err:  # a layout Triton cannot compile is reported, not fatal
                row[f"pallas {br}x{bc}, {seg} seg."] = f"failed: {type(err).__name__}: {str(err)[:100]}"
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------------------
# Gaussian mixture, full covariances
# ----------------------------------------------------------------------------------------------------------
def _start(x, k):
    """A start every implementation shares: means on k samples, identity covariances, equal weights."""
    d = x.shape[1]
    means = np.asarray(x[:: x.shape[0] // k][:k], np.float32)
    covs = np.stack([np.eye(d, dtype=np.float32)] * k)
    return np.full(k, 1.0 / k, np.float32), means, covs


def torch_em(x, start, iters, reg=1e-6):
    """The PyTorch peer: full-covariance EM through Cholesky factors of the precisions (scikit-learn's E-step)."""
    x = torch.from_dlpack(x)
    n, d = x.shape
    w, mu, cov = (torch.as_tensor(a, device=x.device) for a in start)
    eye = torch.eye(d, device=x.device)
    for _ in range(iters):
        chol = torch.linalg.cholesky(cov)
        u = torch.linalg.solve_triangular(chol, eye.expand_as(cov), upper=False).transpose(-1, -2)  # precision factor
        logdet = torch.log(torch.diagonal(u, dim1=-2, dim2=-1)).sum(-1)
        y = torch.einsum("nd,kde->nke", x, u) - torch.einsum("kd,kde->ke", mu, u)[None]
        lp = -0.5 * (d * np.log(2 * np.pi) + (y * y).sum(-1)) + logdet + torch.log(w)
        resp = torch.softmax(lp, dim=1)
        nk = resp.sum(0) + 10 * torch.finfo(x.dtype).eps
        mu = (resp.T @ x) / nk[:, None]
        cov = torch.stack([((resp[:, j, None] * (x - mu[j])).T @ (x - mu[j])) / nk[j] for j in range(mu.shape[0])])
        cov = cov + reg * eye
        w = nk / n
    torch.cuda.synchronize()
    return mu


def bench_gmm(rates, quick, repeats):
    cases = [(10_000_000, 16, 16), (1_000_000, 16, 16)]
    if quick:
        cases = [(n // 100, d, k) for n, d, k in cases]
    rows = []
    for n, d, k in cases:
        x = _blobs(n, d, k, seed=1)
        start = _start(x, k)
        init = mixture.make_gmm(*start, "full")

        def run(it, x=x, init=init, k=k):
            return _sync(mixture.fit(x, k, init_params=init, max_iter=it, tol=0.0)[0].weights)

        row = {"case": f"GMM full N={n:,} D={d} K={k}", "jaxprob": _marginal(run, ITERS, repeats)}
        if TORCH:
            torch_em(x, start, 1)
            t1 = _median(lambda x=x, s=start: torch_em(x, s, ITERS), repeats)
            t2 = _median(lambda x=x, s=start: torch_em(x, s, 2 * ITERS), repeats)
            row["torch"] = max(t2 - t1, 1e-9) / ITERS
        features = d * (d + 1) // 2 + d + 1
        row["memory floor"] = 2 * 4 * n * features / rates["bandwidth_Bps"]
        rows.append(row)
        del x
    return rows


# ----------------------------------------------------------------------------------------------------------
# precision
# ----------------------------------------------------------------------------------------------------------
PRECISIONS = ["highest", "BF16_BF16_F32_X3", "tensorfloat32", "bfloat16"]


def _round_mantissa(a, bits, truncate=False):
    """float32 `a` rounded to `bits` explicit mantissa bits (to nearest even, or towards zero)."""
    drop = 23 - bits
    u = jax.lax.bitcast_convert_type(a, jnp.uint32)
    if not truncate:
        u = u + ((u >> drop) & 1) + jnp.uint32((1 << (drop - 1)) - 1)
    return jax.lax.bitcast_convert_type(u & jnp.uint32(~((1 << drop) - 1) & 0xFFFFFFFF), jnp.float32)


@contextlib.contextmanager
def _emulated_products(truncate_tf32=False):
    """On a CPU: make every float32 product whose precision asks for less than full emulate its rounding (TF32
    operands rounded to nearest or, as tensor cores read float32 registers, truncated)."""
    from jax._src.lax import lax as lax_internal

    original = lax_internal.dot_general

    def emulated(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **kw):
        p = lax_internal.canonicalize_precision(precision)
        f32 = jnp.result_type(lhs) == jnp.float32 and jnp.result_type(rhs) == jnp.float32

        def dot(a, b):
            return original(a, b, dimension_numbers, precision="highest",
                            preferred_element_type=preferred_element_type, **kw)

        if not f32 or p is None:
            return original(lhs, rhs, dimension_numbers, precision=precision,
                            preferred_element_type=preferred_element_type, **kw)
        if p == jax.lax.DotAlgorithmPreset.BF16_BF16_F32_X3:
            lh, rh = _round_mantissa(lhs, 7), _round_mantissa(rhs, 7)
            ll, rl = _round_mantissa(lhs - lh, 7), _round_mantissa(rhs - rh, 7)
            return dot(lh, rh) + (dot(lh, rl) + dot(ll, rh))
        if isinstance(p, tuple) and p[0] == jax.lax.Precision.HIGH:
            return dot(_round_mantissa(lhs, 10, truncate_tf32), _round_mantissa(rhs, 10, truncate_tf32))
        if isinstance(p, tuple) and p[0] == jax.lax.Precision.DEFAULT:
            return dot(_round_mantissa(lhs, 7), _round_mantissa(rhs, 7))
        return original(lhs, rhs, dimension_numbers, precision=precision,
                        preferred_element_type=preferred_element_type, **kw)

    lax_internal.dot_general = emulated
    jax.clear_caches()
    try:
        yield
    finally:
        lax_internal.dot_general = original
        jax.clear_caches()


def bench_precision(quick):
    n = 200_000 if not quick else 20_000
    rng = np.random.default_rng(2)
    d, k = 16, 16
    centers = rng.normal(0, 3, (k, d))
    x64 = centers[rng.integers(0, k, n)] + rng.normal(size=(n, d))
    start = _start(x64.astype(np.float32), k)
    k_km = 64
    c0 = x64[:k_km]
    pts, queries = x64[:20_000 if not quick else 2_000, :4], x64[-2_000:, :4]

    def run_all(dtype):
        x = jnp.asarray(x64, dtype)
        gmm, info = mixture.fit(x, k, init_params=mixture.make_gmm(*(np.asarray(a, dtype) for a in start), "full"),
                                max_iter=20, tol=0.0)
        res, _ = kmeans.fit(x, k_km, init_centroids=jnp.asarray(c0, dtype), max_iter=10, tol=0.0)
        model = kde.fit(jnp.asarray(pts, dtype), bandwidth=0.5)
        dens = kde.log_prob(jnp.asarray(queries, dtype), model)
        return (float(info.log_likelihood), np.asarray(res.labels), float(res.inertia), np.asarray(dens, np.float64))

    with jax.enable_x64(True):
        ref = run_all(jnp.float64)
    emulate = BACKEND == "cpu"
    rows = []
    cases = [(p, False) for p in PRECISIONS]
    if emulate:
        cases.insert(3, ("tensorfloat32", True))
    for prec, truncate in cases:
        ctx = _emulated_products(truncate) if emulate and prec != "highest" else contextlib.nullcontext()
        with ctx, jax.default_matmul_precision(prec):
            ll, labels, inertia, dens = run_all(jnp.float32)
        label = prec
        if emulate and prec != "highest":
            label += " (emulated, truncated)" if truncate else " (emulated)"
        rows.append({"precision": label,
                     "EM mean log-lik. error": abs(ll - ref[0]),
                     "k-means labels differing": float(np.mean(labels != ref[1])),
                     "k-means inertia rel. error": abs(inertia - ref[2]) / ref[2],
                     "KDE max log-density error": float(np.max(np.abs(dens - ref[3])))})
    return rows


# ----------------------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------------------
def _fmt(v):
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return f"{v * 1e3:.2f} ms" if v < 10 else f"{v:.3g}"
    return str(v)


def _table(rows, unit_ms=True):
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        cells = []
        for key in keys:
            v = r.get(key, "")
            cells.append(_fmt(v) if unit_ms else (f"{v:.2e}" if isinstance(v, float) else str(v)))
        print("| " + " | ".join(cells) + " |")
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes / 100: a smoke test of the script")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="write the figures to this file")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: kmeans, pallas, gmm, precision")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    dev = jax.devices()[0]
    print(f"device: {dev.device_kind} ({BACKEND}), jax {jax.__version__}, "
          f"torch {torch.__version__ if torch is not None else 'absent'}"
          f"{' (CUDA)' if TORCH else ''}, Python {platform.python_version()}"
          f"{', QUICK sizes' if args.quick else ''}\n")
    if TORCH:
        print(f"torch float32 matmul: TF32 {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}\n")
    record = {"device": dev.device_kind, "backend": BACKEND, "jax": jax.__version__}
    rates = device_rates(args.quick, args.repeats)
    record["rates"] = rates
    print(f"bandwidth {rates['bandwidth_Bps'] / 1e12:.2f} TB/s; float32 matmul "
          f"{rates['matmul_flops_highest'] / 1e12:.1f} TFLOP/s at highest, "
          f"{rates['matmul_flops_default'] / 1e12:.1f} at default\n")
    if "kmeans" not in skip:
        print("### k-means, time per Lloyd iteration (marginal)\n")
        record["kmeans"] = bench_kmeans(rates, args.quick, args.repeats)
        _table(record["kmeans"])
    if "pallas" not in skip and BACKEND in ("gpu", "tpu"):
        print("### The fused Pallas pass by block layout (one pass; rows x centroids per block, segments)\n")
        record["pallas"] = bench_pallas_sweep(args.quick, args.repeats)
        _table(record["pallas"])
    if "gmm" not in skip:
        print("### Gaussian mixture (full), time per EM iteration (marginal)\n")
        record["gmm"] = bench_gmm(rates, args.quick, args.repeats)
        _table(record["gmm"])
    if "precision" not in skip:
        print("### Error against float64 by matrix-product precision\n")
        record["precision"] = bench_precision(args.quick)
        _table(record["precision"], unit_ms=False)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1, default=str)


if __name__ == "__main__":
    main()
