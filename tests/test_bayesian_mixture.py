"""Variational Bayesian Gaussian mixtures: scikit-learn's lower-bound trace and posterior from the same starting
responsibilities (float64, both weight priors, four covariance types), a bound that never decreases (hypothesis),
weights as repetitions, the additive statistics seam, components switched off, restarts, no retrace, bad input."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_blobs
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.mixture import BayesianGaussianMixture as SkBGM

import jaxprob as jp
from jaxprob import bayesian_mixture as bgm
from jaxprob import em, mixture

CTS = jp.COVARIANCE_TYPES
PRIORS = bgm.WEIGHT_PRIOR_TYPES
K = 5
MAX_ITER = 400  # one static trace length: every float64 fit below shares the compiled programs


def three_blobs(seed):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, 1, (50, 3)) * rng.uniform(0.5, 2, 3) + rng.normal(0, 3, 3) for _ in range(3)])
    resp = rng.uniform(size=(len(x), K))
    return x, resp / resp.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    return three_blobs(0)


def sklearn_fit(x, resp, ct, wt, tol=1e-3, **kw):
    """scikit-learn's fit started from the given responsibilities (its initialisation replaced by `_initialize`)."""
    sk = SkBGM(n_components=resp.shape[1], covariance_type=ct, weight_concentration_prior_type=wt,
               max_iter=MAX_ITER, tol=tol, **kw)
    sk._initialize_parameters = lambda X, random_state, xp=None: sk._initialize(X, resp.copy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(x)
    return sk


def close(actual, expected, rtol=1e-6):
    expected = np.asarray(expected, np.float64)
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=rtol * np.max(np.abs(expected)))


@pytest.mark.parametrize("wt", PRIORS)
@pytest.mark.parametrize("ct", CTS)
def test_bound_trace_and_posterior_match_sklearn_float64(data, ct, wt):
    x, resp = data
    sk = sklearn_fit(x, resp, ct, wt)
    with jax.enable_x64(True):
        # scikit-learn's tol is on the total bound, ours per sample
        model, info = bgm.fit(x, K, covariance_type=ct, weight_concentration_prior_type=wt, init_resp=resp,
                              max_iter=MAX_ITER, tol=1e-3 / len(x))
        proba = bgm.predict_proba(x, model)
    model, info = jax.tree.map(np.asarray, (model, info))  # float64 arrays, read outside the x64 context
    n_iter = int(info.n_iter)
    assert n_iter == sk.n_iter_ and bool(info.converged) == sk.converged_ and n_iter < MAX_ITER
    sk_trace = np.array([np.ravel(v)[0] for v in sk.lower_bounds_])  # tied bounds come as (1,) arrays
    close(info.trace[:n_iter] * len(x), sk_trace)
    assert np.all(np.isnan(info.trace[n_iter:]))
    close(info.log_likelihood * len(x), np.ravel(sk.lower_bound_)[0])
    conc = np.stack(sk.weight_concentration_) if wt == "dirichlet_process" else sk.weight_concentration_
    close(model.weight_concentration, conc)
    close(model.mean_precision, sk.mean_precision_)
    close(model.means, sk.means_)
    close(model.degrees_of_freedom, sk.degrees_of_freedom_)
    close(model.covariances, sk.covariances_)
    close(model.precisions_cholesky, sk.precisions_cholesky_)
    close(model.weights, sk.weights_)
    close(proba, sk.predict_proba(x), rtol=1e-5)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16), ct=st.sampled_from(CTS), wt=st.sampled_from(PRIORS),
       log_gamma=st.floats(-3.0, 2.0), reg=st.sampled_from([0.0, 1e-6]))
def test_bound_never_decreases_float64(seed, ct, wt, log_gamma, reg):
    x, resp = three_blobs(seed)
    with jax.enable_x64(True):
        _, info = bgm.fit(x, K, covariance_type=ct, weight_concentration_prior_type=wt, init_resp=resp,
                          weight_concentration_prior=10.0**log_gamma, reg_covar=reg, max_iter=MAX_ITER, tol=1e-9)
        info = jax.tree.map(np.asarray, info)
    trace = info.trace[: int(info.n_iter)]
    assert trace.size >= 2 and np.all(np.isfinite(trace))
    assert np.all(np.diff(trace) >= -1e-10 * np.max(np.abs(trace))), np.diff(trace).min()
    assert not bool(info.nonfinite) and not np.any(np.asarray(info.regularized))


def test_integer_weights_equal_repeated_samples_float64(data):
    x, resp = data
    w = np.random.default_rng(3).integers(0, 4, len(x))
    reps = np.repeat(np.arange(len(x)), w)
    with jax.enable_x64(True):
        mw, iw = bgm.fit(x, K, init_resp=resp, sample_weight=w.astype(float), max_iter=MAX_ITER, tol=0.0)
        mr, ir = bgm.fit(x[reps], K, init_resp=resp[reps], max_iter=MAX_ITER, tol=0.0)
        mw, iw, mr, ir = jax.tree.map(np.asarray, (mw, iw, mr, ir))
    close(iw.trace, ir.trace, rtol=1e-9)
    close(mw.means, mr.means, rtol=1e-9)
    close(mw.covariances, mr.covariances, rtol=1e-9)


def test_statistics_of_chunks_add_up_to_the_same_fit_float64(data):
    """The seam of sharded and chunked drivers: an E-step summed over chunks prepared about one center."""
    x, resp = data
    with jax.enable_x64(True):
        m_all, i_all = bgm.fit(x, K, init_resp=resp, max_iter=MAX_ITER, tol=0.0)
        xj = jnp.asarray(x)
        fam = m_all.family

        @jax.jit
        def chunked(xj, resp, prior, model):
            prep = em.prepare(xj, fam)
            chunks = [em.prepare(xj[i : i + 50], fam, center=prep.center) for i in range(0, len(x), 50)]

            def summed(model):
                return jax.tree.map(lambda *a: sum(a), *[bgm.e_step(c, model) for c in chunks])

            stats0 = jax.tree.map(lambda a: a[None], em.statistics_from_responsibilities(prep, resp, fam))
            fitted = bgm.fit_from(prep, prior, fam, stats0, max_iter=MAX_ITER, tol=0.0, e_step_fn=summed)
            return fitted, summed(model), bgm.e_step(prep, model)

        (m_chunk, i_chunk), parts, whole = chunked(xj, jnp.asarray(resp), m_all.prior, m_all)
        m_all, i_all, m_chunk, i_chunk, parts, whole = jax.tree.map(
            np.asarray, (m_all, i_all, m_chunk, i_chunk, parts, whole))
    close(i_chunk.trace, i_all.trace, rtol=1e-10)
    close(m_chunk.covariances, m_all.covariances, rtol=1e-10)
    for a, b in zip(jax.tree.leaves(parts), jax.tree.leaves(whole), strict=True):
        close(a, b, rtol=1e-10)


@pytest.fixture(scope="module")
def two_blobs():
    rng = np.random.default_rng(5)
    x, y = make_blobs(rng, 150, [[-4, 0], [4, 1]], dtype=np.float32)
    return x, y


@pytest.fixture(scope="module")
def switched_off(two_blobs):
    x, _ = two_blobs
    return bgm.fit(x, 6, key=jax.random.key(0), **SWITCH_OFF)


SWITCH_OFF = {"weight_concentration_prior": 1e-3, "n_init": 3, "max_iter": 300, "tol": 1e-6}


def test_unneeded_components_switch_off(two_blobs, switched_off):
    x, y = two_blobs
    model, info = switched_off
    weights = np.asarray(model.weights)
    assert np.sum(weights > 0.01) == 2 and np.sum(np.asarray(info.collapsed)) == 4
    assert np.all(weights[np.asarray(info.collapsed)] < 1e-3)
    labels = np.asarray(bgm.predict(x, model))
    assert len(set(zip(labels.tolist(), y.tolist(), strict=True))) == 2  # the two blobs, one label each
    # the point estimate is an ordinary Gaussian mixture, close to the generating one on this easy data
    big = np.argsort(weights)[-2:]
    np.testing.assert_allclose(np.sort(np.asarray(model.means)[big, 0]), [-4, 4], atol=0.3)
    truth = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.array([[-4.0, 0.0], [4.0, 1.0]]), jnp.ones((2, 2)), "diag")
    assert float(mixture.score(x, bgm.to_mixture(model))) == pytest.approx(float(mixture.score(x, truth)), abs=0.05)


def test_restarts_same_key_and_no_retrace(two_blobs, switched_off):
    x, _ = two_blobs
    model, info = switched_off
    lls = np.asarray(info.restart_log_likelihoods)
    assert int(info.best_restart) == int(np.nanargmax(lls)) and lls.shape == (3,)
    assert float(info.log_likelihood) == float(info.trace[int(info.n_iter) - 1])  # the kept posterior's bound
    before = bgm._fit_jit._cache_size()
    again, _ = bgm.fit(x, 6, key=jax.random.key(0), **SWITCH_OFF)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(model), jax.tree.leaves(again), strict=True))
    # another data set and prior values: the same program; a prior given whole is the prior of its arguments
    kw = {"key": jax.random.key(1), "n_init": 3, "max_iter": 300, "tol": 1e-4}
    by_args, _ = bgm.fit(x + 1.0, 6, weight_concentration_prior=2.0, **kw)
    whole, _ = bgm.fit(x + 1.0, 6, prior=bgm.make_prior(x + 1.0, 6, weight_concentration_prior=2.0), **kw)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(by_args), jax.tree.leaves(whole), strict=True))
    assert bgm._fit_jit._cache_size() == before


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"covariance_type": "bogus"}, ValueError, "covariance_type"),
        ({"weight_concentration_prior_type": "dirichlet"}, ValueError, "weight_concentration_prior_type"),
        ({"weight_concentration_prior": -1.0}, ValueError, "weight_concentration_prior"),
        ({"weight_concentration_prior": "big"}, TypeError, "weight_concentration_prior"),
        ({"mean_precision_prior": 0.0}, ValueError, "mean_precision_prior"),
        ({"mean_prior": np.zeros(3)}, ValueError, "mean_prior"),
        ({"degrees_of_freedom_prior": 0.5}, ValueError, "degrees_of_freedom_prior"),
        ({"covariance_prior": -np.eye(2)}, ValueError, "covariance_prior"),
        ({"covariance_prior": np.ones(2), "covariance_type": "full"}, ValueError, "covariance_prior"),
        ({"init_resp": np.ones((4, 2))}, ValueError, "init_resp"),
        ({"sample_weight": -np.ones(300)}, ValueError, "sample_weight"),
        ({"n_init": 0}, ValueError, "n_init"),
        ({"tol": -1.0}, ValueError, "tol"),
        ({"reg_covar": -1.0}, ValueError, "reg_covar"),
        ({"init_method": "nope"}, ValueError, "init_method"),
        ({"key": None}, TypeError, "key"),
    ],
)
def test_bad_arguments_name_themselves(two_blobs, kwargs, error, name):
    x, _ = two_blobs
    kw = {"key": jax.random.key(0), **kwargs}
    with pytest.raises(error, match=name):
        bgm.fit(x, 2, **kw)


def test_bad_data_and_models(two_blobs, switched_off):
    x, _ = two_blobs
    with pytest.raises(ValueError, match="x"):
        bgm.fit(np.full((5, 2), np.nan), 2, key=jax.random.key(0))
    with pytest.raises(TypeError, match="x"):
        bgm.fit(np.ones((5, 2), int), 2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="n_components"):
        bgm.fit(x[:3], 4, key=jax.random.key(0))
    prior = bgm.make_prior(x, 2, "diag")
    with pytest.raises(ValueError, match="prior"):
        bgm.fit(x, 2, key=jax.random.key(0), prior=prior)  # a diag prior for a full fit
    with pytest.raises(ValueError, match="prior"):
        bgm.fit(x, 2, key=jax.random.key(0), prior=prior, covariance_type="diag", mean_precision_prior=2.0)
    bad = bgm.Prior(prior.weight_concentration, prior.mean_precision, prior.mean, jnp.asarray(0.5), prior.covariance)
    with pytest.raises(ValueError, match="prior.degrees_of_freedom"):
        bgm.fit(x, 2, key=jax.random.key(0), prior=bad, covariance_type="diag")
    with pytest.raises(TypeError, match="prior"):
        bgm.fit(x, 2, key=jax.random.key(0), prior={"mean": 0.0})
    with pytest.raises(TypeError, match="model"):
        bgm.predict(x, mixture.make_gmm(jnp.ones(1), jnp.zeros((1, 2)), jnp.ones(1), "spherical"))
    with pytest.raises(TypeError, match="model"):
        bgm.to_mixture(None)
    with pytest.raises(ValueError, match="features"):
        bgm.predict_proba(np.ones((3, 3), np.float32), switched_off[0])
