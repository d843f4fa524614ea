"""Shared test helpers. Float64 checks run inside ``with jax.enable_x64(True):`` blocks, never by a global flag."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def make_blobs(rng, n_per, means, scale=1.0, dtype=np.float64):
    """Gaussian blobs around the given means; returns (x, labels)."""
    means = np.asarray(means, dtype=float)
    x = np.concatenate([m + scale * rng.standard_normal((n_per, means.shape[1])) for m in means])
    y = np.repeat(np.arange(len(means)), n_per)
    return x.astype(dtype), y
