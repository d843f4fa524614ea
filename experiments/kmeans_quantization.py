"""Colour quantisation of a real photograph with k-means: image grid, storage in bits, distortion vs k."""

from __future__ import annotations

import math

import jax
import numpy as np

from experiments._common import save_figure
from jaxprob import datasets, kmeans

DESCRIPTION = (
    "k-means colour quantisation of scikit-learn's china.jpg: k = 2..128 colours, bits, MSE and PSNR"
)
DEFAULTS = {"photo": "china", "ks": [2, 4, 8, 16, 32, 64, 128], "n_fit": 10000, "max_iter": 50}


def run(out_dir, seed: int, photo: str, ks, n_fit: int, max_iter: int) -> dict:
    import matplotlib.pyplot as plt

    img = datasets.load_sample_photo(photo)
    h, w, _ = img.shape
    pixels = img.reshape(-1, 3)
    n = pixels.shape[0]
    rng = np.random.default_rng(seed)
    sample = pixels[rng.choice(n, min(n_fit, n), replace=False)]  # fit on a sample, quantise every pixel
    key = jax.random.key(seed)
    rows, images = [], []
    for i, k in enumerate(ks):
        result, info = kmeans.fit(sample, k, key=jax.random.fold_in(key, i), max_iter=max_iter)
        labels = np.asarray(kmeans.predict(pixels, result.centroids))
        palette = np.asarray(result.centroids)
        quant = palette[labels]
        mse = float(np.mean((quant - pixels) ** 2))  # per channel, pixel values in [0, 1]
        bits = n * math.log2(k) + 24 * k  # labels + palette
        rows.append(
            {
                "k": k,
                "bits": bits,
                "compression_ratio": 24 * n / bits,
                "mse": mse,
                "psnr_db": 10 * math.log10(1.0 / mse),
                "n_iter": int(info.n_iter),
                "converged": bool(info.converged),
            }
        )
        images.append(quant.reshape(h, w, 3))

    panels = [("original, 24 bits/pixel", img)] + [
        (f"k = {r['k']}, PSNR {r['psnr_db']:.1f} dB", q) for r, q in zip(rows, images, strict=True)
    ]
    # four panels a row, each as high as the photograph's aspect makes it (no white band between the rows)
    n_rows = -(-len(panels) // 4)
    fig, axes = plt.subplots(n_rows, 4, figsize=(16, n_rows * (4 * h / w + 0.35)), squeeze=False,
                             gridspec_kw={"wspace": 0.02, "hspace": 0.1, "left": 0, "right": 1, "bottom": 0,
                                          "top": 1 - 0.3 / (n_rows * (4 * h / w + 0.35))})
    for ax, (title, im) in zip(axes.ravel(), panels, strict=False):
        ax.imshow(np.clip(im, 0, 1))
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    for ax in axes.ravel()[len(panels) :]:
        ax.remove()
    save_figure(fig, out_dir, "quantized_grid")

    kk = [r["k"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    a1.plot(kk, [r["compression_ratio"] for r in rows], "o-")
    a1.set(
        xscale="log", xlabel="k (colours)", ylabel="compression ratio 24n / (n log2 k + 24k)", title="storage"
    )
    a1.set_xticks(kk, [str(k) for k in kk])
    a1.minorticks_off()
    a2.plot(kk, [r["psnr_db"] for r in rows], "o-", label="PSNR (dB)")
    a2.set(xscale="log", xlabel="k (colours)", ylabel="PSNR (dB)", title="distortion")
    a2.set_xticks(kk, [str(k) for k in kk])
    a2.minorticks_off()
    a3 = a2.twinx()
    a3.plot(kk, [r["mse"] for r in rows], "s--", color="C1", label="MSE")
    a3.set(ylabel="MSE per channel", yscale="log")
    handles = a2.get_legend_handles_labels()[0] + a3.get_legend_handles_labels()[0]
    a2.legend(handles, [hd.get_label() for hd in handles], loc="upper center", bbox_to_anchor=(0.5, -0.17),
              ncols=2, frameon=False)
    save_figure(fig, out_dir, "rate_distortion")
    return {"image_shape": [h, w], "n_pixels": n, "uncompressed_bits": 24 * n, "per_k": rows}
