r"""k-means: seeding (k-means++ and random points).

k-means++ (Arthur and Vassilvitskii, 2007) picks the first centre with probability proportional to the sample
weight, then each next centre with probability proportional to :math:`w_i D(x_i)^2`, the weighted squared
distance to the closest centre already chosen. The *greedy* variant draws ``n_local_trials`` candidates at each
step and keeps the one that lowers the potential :math:`\sum_i w_i D(x_i)^2` the most
(``n_local_trials = 2 + floor(log K)`` by default, as in scikit-learn).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxprob._validation import as_float_array, check_finite, check_int, check_key, check_sample_weight

__all__ = ["kmeans_plusplus", "random_centroids", "squared_distances"]


def _sq_dist(x, x_sq, c):
    """(n, m) squared Euclidean distances from rows of x to rows of c, with ||x||^2 precomputed; clipped at 0."""
    c_sq = jnp.sum(jnp.square(c), axis=-1)
    return jnp.maximum(x_sq[:, None] - 2.0 * (x @ c.T) + c_sq[None, :], 0.0)


def squared_distances(x, centroids):
    r"""Squared Euclidean distances :math:`\lVert x_i - c_k \rVert^2 = \lVert x_i\rVert^2 - 2 x_i^\top c_k
    + \lVert c_k\rVert^2`, computed with one matrix product.

    Args:
        x: ``(n, D)`` samples.
        centroids: ``(K, D)``.

    Returns:
        ``(n, K)`` non-negative squared distances.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxprob import squared_distances
        >>> squared_distances(jnp.array([[0.0, 0.0]]), jnp.array([[3.0, 4.0]])).tolist()
        [[25.0]]
    """
    x = as_float_array(x, "x", 2)
    centroids = as_float_array(centroids, "centroids", 2)
    if centroids.shape[1] != x.shape[1]:
        raise ValueError(f"`centroids` has {centroids.shape[1]} features but `x` has {x.shape[1]}")
    return _sq_dist(x, jnp.sum(jnp.square(x), axis=-1), centroids.astype(x.dtype))


def _kmeans_plusplus(key, x, weights, n_clusters: int, n_local_trials: int):
    """Greedy weighted k-means++; returns (centers (K, D), indices (K,)). Pure, jittable, vmappable."""
    n = x.shape[0]
    x_sq = jnp.sum(jnp.square(x), axis=-1)
    w_prob = weights / jnp.sum(weights)
    key, first_key = jax.random.split(key)
    first = jax.random.choice(first_key, n, p=w_prob)
    indices = jnp.zeros((n_clusters,), jnp.int32).at[0].set(first)
    closest = _sq_dist(x, x_sq, x[first][None])[:, 0]

    def body(c, carry):
        indices, closest, key = carry
        key, sub = jax.random.split(key)
        potential = weights * closest
        total = jnp.sum(potential)
        # when every point coincides with a chosen centre the D^2 distribution is undefined: fall back to weights
        probs = jnp.where(total > 0, potential / jnp.where(total > 0, total, 1.0), w_prob)
        candidates = jax.random.choice(sub, n, shape=(n_local_trials,), p=probs)
        d_cand = jnp.minimum(closest[:, None], _sq_dist(x, x_sq, x[candidates]))
        best = jnp.argmin(jnp.sum(weights[:, None] * d_cand, axis=0))
        return indices.at[c].set(candidates[best]), d_cand[:, best], key

    indices, _, _ = jax.lax.fori_loop(1, n_clusters, body, (indices, closest, key))
    return x[indices], indices


def _random_centroids(key, x, weights, n_clusters: int):
    """K distinct sample indices drawn without replacement with probability proportional to the weights."""
    idx = jax.random.choice(key, x.shape[0], shape=(n_clusters,), replace=False, p=weights / jnp.sum(weights))
    return x[idx], idx.astype(jnp.int32)


def _check_seeding_args(key, x, n_clusters, sample_weight):
    check_key(key)
    x = as_float_array(x, "x", 2)
    check_finite(x, "x")
    n_clusters = check_int(n_clusters, "n_clusters", minimum=1, maximum=x.shape[0])
    w = check_sample_weight(sample_weight, x.shape[0], x.dtype)
    return x, n_clusters, w


def kmeans_plusplus(key, x, n_clusters: int, *, sample_weight=None, n_local_trials: int | None = None):
    r"""Greedy k-means++ seeding.

    Args:
        key: a JAX PRNG key.
        x: ``(n, D)`` samples.
        n_clusters: number of centres ``K`` (``1 <= K <= n``).
        sample_weight: optional ``(n,)`` non-negative weights (a point of weight 0 is never chosen
            while a point of positive weight remains at positive distance).
        n_local_trials: candidates per step; default ``2 + floor(log K)``.

    Returns:
        ``(centers, indices)``: ``(K, D)`` centres and the ``(K,)`` indices of the chosen samples.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import kmeans_plusplus
        >>> x = jnp.array([[0.0, 0.0], [0.1, 0.0], [10.0, 10.0], [10.1, 10.0]])
        >>> centers, idx = kmeans_plusplus(jax.random.key(0), x, 2)
        >>> sorted(float(c[0]) > 5 for c in centers)
        [False, True]
    """
    x, n_clusters, w = _check_seeding_args(key, x, n_clusters, sample_weight)
    if n_local_trials is None:
        n_local_trials = 2 + int(math.log(n_clusters))
    n_local_trials = check_int(n_local_trials, "n_local_trials", minimum=1)
    return _kmeans_plusplus_jit(key, x, w, n_clusters, n_local_trials)


def random_centroids(key, x, n_clusters: int, *, sample_weight=None):
    r"""Random initial centres: ``K`` distinct samples drawn with probability proportional to their weight.

    Args:
        key: a JAX PRNG key.
        x: ``(n, D)`` samples.
        n_clusters: number of centres ``K`` (``1 <= K <= n``).
        sample_weight: optional ``(n,)`` non-negative weights.

    Returns:
        ``(centers, indices)``: ``(K, D)`` and ``(K,)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import random_centroids
        >>> centers, idx = random_centroids(jax.random.key(0), jnp.arange(10.0)[:, None], 3)
        >>> centers.shape, len(set(idx.tolist()))
        ((3, 1), 3)
    """
    x, n_clusters, w = _check_seeding_args(key, x, n_clusters, sample_weight)
    return _random_centroids_jit(key, x, w, n_clusters)


_kmeans_plusplus_jit = jax.jit(_kmeans_plusplus, static_argnums=(3, 4))
_random_centroids_jit = jax.jit(_random_centroids, static_argnums=(3,))
