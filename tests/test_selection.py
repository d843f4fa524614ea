"""Model-selection grid: every cell against a separate mixture.fit from the same start, the starts against a NumPy
assignment to the k-means++ seeds, masking, the choice of the best model, one compilation, bad input."""

import jax
import numpy as np
import pytest
from conftest import make_blobs

from jaxprob import COVARIANCE_TYPES, kmeans, mixture, selection


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(4)
    x, _ = make_blobs(rng, 80, [[0, 0], [5, 1], [1, 6]], scale=1.0)
    x = x @ np.array([[1.0, 0.4], [0.0, 0.8]])
    idx = rng.permutation(x.shape[0])
    return x[idx[:180]], x[idx[180:]]


@pytest.fixture(scope="module")
def grid64(data):
    x, x_val = data
    with jax.enable_x64(True):
        res = selection.fit_grid(x, [1, 3], key=jax.random.key(0), n_init=2, x_val=x_val, tol=1e-6, max_iter=200)
        cells = {}
        for ct in COVARIANCE_TYPES:
            for k in (1, 3):
                for r in range(2):
                    init = selection.cell_params(res, ct, k, r, initial=True)
                    params, info = mixture.fit(x, k, covariance_type=ct, init_params=init, tol=1e-6, max_iter=200)
                    ll = float(info.log_likelihood) * len(x)  # total log-likelihood of the separate fit
                    p = mixture.n_parameters(params)
                    cells[ct, k, r] = (init, params, info, -2 * ll + p * np.log(len(x)), -2 * ll + 2 * p,
                                       float(mixture.score(x_val, params)))
        cells["bic_full_3"] = float(mixture.bic(x, selection.cell_params(res, "full", 3, 0)))
    return res, cells


def test_every_cell_matches_a_separate_fit(grid64):
    res, cells = grid64
    assert res.bic.shape == (4, 2, 2) and res.covariance_types == COVARIANCE_TYPES and res.n_components == (1, 3)
    assert float(res.bic[0, 1, 0]) == pytest.approx(cells["bic_full_3"], rel=1e-10)  # mixture.bic on one cell
    for key, cell in cells.items():
        if not isinstance(key, tuple):
            continue
        (ct, k, r), (_, params, info, bic, aic, held) = key, cell
        c, g = COVARIANCE_TYPES.index(ct), (1, 3).index(k)
        got = selection.cell_params(res, ct, k, r)
        for u, v in zip(jax.tree.leaves(got), jax.tree.leaves(params), strict=True):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-7, atol=1e-9, err_msg=f"{ct} {k} {r}")
        assert int(res.n_iter[c, g, r]) == int(info.n_iter)
        assert bool(res.converged[c, g, r]) == bool(info.converged)
        assert float(res.log_likelihood[c, g, r]) == pytest.approx(float(info.log_likelihood), rel=1e-10)
        assert float(res.bic[c, g, r]) == pytest.approx(bic, rel=1e-10)
        assert float(res.aic[c, g, r]) == pytest.approx(aic, rel=1e-10)
        assert float(res.heldout_log_likelihood[c, g, r]) == pytest.approx(held, rel=1e-10)
        assert res.n_parameters[c, g] == mixture.n_parameters(params)


def test_padded_components_are_masked(grid64):
    res, _ = grid64
    for c, ct in enumerate(COVARIANCE_TYPES):
        for padded in (res.params[c], res.init_params[c]):
            w = np.asarray(padded.weights)  # (G, R, K_max)
            assert np.all(w[0, :, 1:] == 0.0)  # K = 1: two masked components
            np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-12)
            assert np.all(w[1] > 0) and np.all(np.isfinite(np.asarray(padded.means))), ct


def test_starts_are_assignments_to_the_kmeanspp_seeds(data, grid64):
    res, _ = grid64
    x, _ = data
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(0), 2)
        for r in range(2):
            seeds = np.asarray(kmeans.kmeans_plusplus(x, 3, key=keys[r])[0])
            for k in (1, 3):
                labels = np.argmin(((x[:, None, :] - seeds[None, :k]) ** 2).sum(-1), axis=1)
                means = np.stack([x[labels == j].mean(0) for j in range(k)])
                init = selection.cell_params(res, "diag", k, r, initial=True)
                np.testing.assert_allclose(np.asarray(init.means), means, rtol=1e-10)
                np.testing.assert_allclose(np.asarray(init.weights), np.bincount(labels, minlength=k) / len(x),
                                           rtol=1e-10)


def test_best_model_and_criteria(grid64):
    res, cells = grid64
    bic = np.asarray(res.bic)
    assert res.criterion == "bic" and res.best_index == np.unravel_index(np.argmin(bic), bic.shape)
    c, g, r = res.best_index
    assert res.best_n_components == 3  # three blobs
    ref = cells[res.best_covariance_type, 3, r][1]  # the separate fit of the best cell
    np.testing.assert_allclose(np.asarray(res.best.means), np.asarray(ref.means), rtol=1e-7)
    assert np.all(np.asarray(res.heldout_log_likelihood[:, 1]) > np.asarray(res.heldout_log_likelihood[:, 0]))


def test_one_compilation_same_key_same_bits_and_heldout_criterion(data, grid64):
    res, _ = grid64
    x, x_val = data
    kw = dict(key=jax.random.key(0), n_init=2, x_val=x_val, tol=1e-6, max_iter=200)
    with jax.enable_x64(True):
        before = selection._grid_jit._cache_size()
        again = selection.fit_grid(x, [1, 3], **kw)
        other = selection.fit_grid(x + 1.0, [1, 3], **kw, criterion="heldout")  # new data, same shapes
        assert selection._grid_jit._cache_size() == before  # the grid program was compiled once
    for u, v in zip(jax.tree.leaves(res.params), jax.tree.leaves(again.params), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))  # same key: bit-identical
    held = np.asarray(other.heldout_log_likelihood)
    assert other.criterion == "heldout" and other.best_index == np.unravel_index(np.nanargmax(held), held.shape)


def test_bad_input(data):
    x, x_val = data
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="x_val"):
        selection.fit_grid(x, 2, key=key, criterion="heldout")
    with pytest.raises(ValueError, match="n_components"):
        selection.fit_grid(x, [2, 2], key=key)
    with pytest.raises(ValueError, match="n_components"):
        selection.fit_grid(x, [1, 1000], key=key)
    with pytest.raises(ValueError, match="covariance_types"):
        selection.fit_grid(x, 2, key=key, covariance_types=("full", "banded"))
    with pytest.raises(ValueError, match="x_val"):
        selection.fit_grid(x, 2, key=key, x_val=x_val[:, :1])
    with pytest.raises(ValueError, match="criterion"):
        selection.fit_grid(x, 2, key=key, criterion="mdl")
    with pytest.raises(TypeError, match="key"):
        selection.fit_grid(x, 2, key=None)
