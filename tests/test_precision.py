"""The matrix-product precision policy (jaxprob.numerics), checked on the jaxprs of the public kernels.

On a CPU every float32 product runs at full precision whatever its precision says, so the precision cannot be seen in
the results here; it can be seen in the traced programs. Every float32 `dot_general` of the likelihood, EM, k-means,
KDE and network code must state a precision other than the backend default (None / DEFAULT), unless the user chose
a lower one with `jax.default_matmul_precision`; the checker walks nested jaxprs (loops, conditionals, `jit`s,
custom derivatives, Pallas kernels), and the tests below show it finds what it must.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprob import autoencoder, em, families, hmm, kde, kmeans, mixture, nn, numerics, pallas_kmeans
from jaxprob.families.gaussian import make_params as gaussian_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def x():
    return jnp.asarray(np.random.default_rng(0).normal(size=(48, 3)), jnp.float32)


def _gmm(ct):
    means = jnp.array([[-1.0, 0.0, 0.5], [1.0, 0.5, 0.0]])
    cov = {"full": jnp.stack([jnp.eye(3)] * 2), "tied": jnp.eye(3), "diag": jnp.ones((2, 3)),
           "spherical": jnp.ones(2)}[ct]
    return mixture.make_gmm(jnp.array([0.4, 0.6]), means, cov, ct)


def _family_models():
    pos = jnp.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    return {
        "bernoulli": (families.bernoulli(), lambda x: (x > 0).astype(jnp.float32),
                      families.bernoulli().make_params(pos)),
        "categorical": (families.categorical(), lambda x: jax.nn.one_hot(jnp.argmax(x, 1), 3),
                        families.categorical().make_params(pos / pos.sum(1, keepdims=True))),
        "poisson": (families.poisson(), lambda x: jnp.round(jnp.abs(x) * 3), families.poisson().make_params(pos * 4)),
        "student_t": (families.student_t(), lambda x: x,
                      families.student_t().make_params(jnp.zeros((2, 3)), jnp.stack([jnp.eye(3)] * 2), 5.0)),
    }


# ----------------------------------------------------------------------------------------------------------
# the public kernels state their precision
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ct", ["full", "tied", "diag", "spherical"])
def test_gaussian_em_kernels_state_their_precision(x, ct):
    gmm = _gmm(ct)
    prep = em.prepare(x, gmm.family)
    assert numerics.default_precision_dots(em.step, prep, gmm) == []
    assert numerics.default_precision_dots(lambda x, m: mixture.em_step(x, m), x, gmm) == []
    assert numerics.default_precision_dots(lambda x, m: mixture.log_prob(x, m), x, gmm) == []


@pytest.mark.parametrize("name", ["bernoulli", "categorical", "poisson", "student_t"])
def test_other_families_state_their_precision(x, name):
    family, data, params = _family_models()[name]
    model = mixture.make_mixture(jnp.array([0.5, 0.5]), params, family)
    xd = data(x)
    prep = em.prepare(xd, family)
    assert numerics.default_precision_dots(em.step, prep, model) == []
    assert numerics.default_precision_dots(lambda x, m: mixture.log_prob(x, m), xd, model) == []


def test_linear_regression_family_states_its_precision(x):
    family = families.linear_regression()
    params = family.make_params(jnp.array([[1.0, 0.0], [0.0, -1.0]]), jnp.zeros(2), jnp.ones(2))
    model = mixture.make_mixture(jnp.array([0.5, 0.5]), params, family)
    xy = (x[:, :2], x[:, 2])
    assert numerics.default_precision_dots(em.step, em.prepare(xy, family), model) == []


def test_hmm_kernels_state_their_precision(x):
    fam = families.gaussian("diag")
    comps = gaussian_params(jnp.array([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), jnp.ones((2, 3)), "diag")
    model = hmm.make_hmm(jnp.array([0.5, 0.5]), jnp.array([[0.9, 0.1], [0.2, 0.8]]), comps, fam)
    data = hmm.prepare(x, fam)
    lb = jnp.zeros((48, 2))
    assert numerics.default_precision_dots(lambda lb: hmm.forward(lb, jnp.log(model.initial),
                                                                  jnp.log(model.transition)), lb) == []
    assert numerics.default_precision_dots(lambda d, m: hmm.step(d, m), data, model) == []


def test_fits_state_their_precision(x):
    # the whole programs: seeding (k-means++ distances), the loops, the final passes
    key = jax.random.key(0)
    assert numerics.default_precision_dots(lambda x: mixture.fit(x, 2, key=key, max_iter=3), x) == []
    assert numerics.default_precision_dots(lambda x: kmeans.fit(x, 3, key=key, max_iter=3), x) == []
    assert numerics.default_precision_dots(lambda x: kmeans.fit_minibatch(x, 3, key=key, max_iter=3,
                                                                         batch_size=8), x) == []


def test_kmeans_kernels_state_their_precision(x):
    c = x[:4]
    assert numerics.default_precision_dots(lambda x, c: kmeans.lloyd_step(x, c), x, c) == []
    assert numerics.default_precision_dots(lambda x, c: kmeans.lloyd_step(x, c, chunk_size=16), x, c) == []
    assert numerics.default_precision_dots(lambda x, c: kmeans.predict(x, c), x, c) == []
    assert numerics.default_precision_dots(lambda x, c: kmeans.assign(x, c, exact=False), x, c) == []
    assert numerics.default_precision_dots(lambda x, c: kmeans.squared_distances(x, c), x, c) == []


def test_pallas_kernel_states_its_precision(x):
    assert numerics.default_precision_dots(lambda x, c: pallas_kmeans.lloyd_pass(x, c, interpret=True), x,
                                           x[:4]) == []


@pytest.mark.parametrize("kernel", ["gaussian", "tophat"])
def test_kde_states_its_precision(x, kernel):
    model = kde.fit(x, bandwidth=0.7, kernel=kernel)
    assert numerics.default_precision_dots(lambda q: kde.log_prob(q, model, query_chunk=16, point_chunk=16), x) == []


def test_networks_state_their_precision(x):
    ae = autoencoder.Autoencoder(3, 2, (4,), key=jax.random.key(0))
    assert numerics.default_precision_dots(lambda m, x: m(x), ae, x) == []
    # the backward pass too: the transposed products keep the precision of the forward ones
    grad = jax.grad(lambda m, x: jnp.mean(jnp.square(m(x) - x)))
    assert numerics.default_precision_dots(grad, ae, x) == []
    mlp = nn.MLP(3, 2, (5,), key=jax.random.key(1))
    assert numerics.default_precision_dots(lambda m, x: m(x), mlp, x) == []
    vae = autoencoder.VAE(3, 2, (4,), key=jax.random.key(2))
    assert numerics.default_precision_dots(lambda m, x: m.elbo(x, jax.random.key(3)), vae, x) == []


# ----------------------------------------------------------------------------------------------------------
# the checker can fail
# ----------------------------------------------------------------------------------------------------------
def test_checker_finds_default_products_wherever_they_hide(x):
    a = x[:3]

    def nested(x):
        def body(i, y):
            return jax.lax.cond(i > 0, lambda y: jnp.tanh(y @ a), lambda y: y, y)

        return jax.jit(lambda x: jax.lax.fori_loop(0, 2, body, x))(x)

    found = numerics.default_precision_dots(nested, x)
    assert len(found) == 1 and "float32[48, 3] x float32[3, 3]" in found[0]
    # an explicit DEFAULT is the backend default too; float64 products are full precision anyway
    assert len(numerics.default_precision_dots(lambda x: jnp.matmul(x, a.T, precision="default"), x)) == 1
    with jax.enable_x64(True):
        x64 = jnp.asarray(np.ones((4, 3)))
        assert numerics.default_precision_dots(lambda x: x @ x.T, x64) == []


def test_checker_flags_a_kernel_written_without_the_policy(x, monkeypatch):
    # the distance kernel with a plain product in place of the policy's: the check must fail
    monkeypatch.setattr(numerics, "matmul", lambda a, b: a @ b)
    found = numerics.default_precision_dots(lambda x, c: kmeans.squared_distances(x, c), x, x[:5])
    assert len(found) == 1


# ----------------------------------------------------------------------------------------------------------
# the user's choice
# ----------------------------------------------------------------------------------------------------------
def _precisions(fn, *args):
    closed = jax.make_jaxpr(fn)(*args)
    return {str(e.params["precision"]) for e in numerics._dot_equations(closed.jaxpr)}


def test_the_users_lower_precision_reaches_the_kernels(x):
    gmm = _gmm("full")
    prep = em.prepare(x, gmm.family)
    assert _precisions(em.step, prep, gmm) == {"(Precision.HIGHEST, Precision.HIGHEST)"}
    with jax.default_matmul_precision("tensorfloat32"):
        chosen = _precisions(em.step, prep, gmm)
        assert numerics.matmul_precision() == "tensorfloat32"
    # the E-step products take the user's choice; parameter-only products (natural parameters) stay full
    assert "(Precision.HIGH, Precision.HIGH)" in chosen
    with jax.default_matmul_precision("BF16_BF16_F32_X3"):
        assert _precisions(lambda x, c: kmeans.squared_distances(x, c), x, x[:3]) == {"BF16_BF16_F32_X3"}


def test_a_compiled_program_is_not_reused_under_another_precision(x):
    # the policy is read at trace time: JAX's precision option is part of jit's cache key, so each choice traces
    traces = []

    @jax.jit
    def f(a):
        traces.append(numerics.matmul_precision())
        return numerics.matmul(a, a.T)

    f(x)
    f(x)
    with jax.default_matmul_precision("bfloat16"):
        f(x)
    f(x)
    assert traces == ["highest", "bfloat16"]


def test_the_docs_state_the_policy():
    text = (ROOT / "docs" / "accelerators.md").read_text()
    for needle in ("jax.default_matmul_precision", "xla_gpu_deterministic_ops", "interpret"):
        assert needle in text
