"""Helpers shared by the studies: figure saving and JSON-safe conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def to_jsonable(value):
    """Convert NumPy / JAX scalars and arrays (recursively) to plain Python types, floats rounded to 10 digits."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return to_jsonable(np.asarray(value).tolist())
    if isinstance(value, float):
        return float(f"{value:.10g}")
    return value


def save_figure(fig, out_dir: Path, name: str) -> str:
    """Save a matplotlib figure as ``out_dir/name.png`` (tight bounding box) and close it; returns the file name."""
    import matplotlib.pyplot as plt

    path = Path(out_dir) / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name
