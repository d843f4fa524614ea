r"""Generative Bayes classifier: one Gaussian (or one Gaussian mixture) per class.

Training fits $p(x \mid y = c)$ for every class and the priors $\pi_c$; prediction is

$$
\hat y(x) = \arg\max_c \; \log p(x \mid c) + \log \pi_c,
\qquad p(c \mid x) = \operatorname{softmax}_c\big(\log p(x\mid c) + \log \pi_c\big).
$$

All classes are fitted in one vmapped program: class `c` is the whole data set with sample weights
$w_i [y_i = c]$, so classes of different sizes share one compiled EM. With `n_components=1` and
`covariance_type="full"` this is quadratic discriminant analysis; with `"tied"` it is linear discriminant
analysis (one covariance per class model, shared between its components).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxprob import em
from jaxprob._validation import check_int, check_key, check_sample_weight, is_tracer
from jaxprob.densities import COVARIANCE_TYPES
from jaxprob.em import INIT_METHODS, Family, Mixture
from jaxprob.families.gaussian import check_reg_covar, gaussian

__all__ = ["BayesClassifier", "fit", "class_log_likelihoods", "predict_log_proba", "predict_proba", "predict"]


class BayesClassifier(eqx.Module):
    r"""A fitted generative classifier (a pytree).

    Attributes:
        log_priors: `(C,)` $\log \pi_c$.
        mixtures: a [`Mixture`][jaxprob.em.Mixture] whose arrays have a leading class axis `C`
            (weights `(C, K)`, means `(C, K, D)`, ...).
    """

    log_priors: jax.Array
    mixtures: Mixture

    @property
    def n_classes(self) -> int:
        return self.log_priors.shape[0]


def fit(x: ArrayLike, y: ArrayLike, *, key: jax.Array, n_classes: int | None = None, n_components: int = 1,
        family: Family | None = None, covariance_type: str = "full", n_init: int = 1, init_method: str = "kmeans++",
        max_iter: int = 100, tol: float = 1e-3, reg_covar: float = 1e-6,
        sample_weight: ArrayLike | None = None) -> tuple[BayesClassifier, em.FitInfo]:
    """Fit one Gaussian mixture per class and the class priors.

    Args:
        x: `(n, D)` features.
        y: `(n,)` integer labels in `[0, n_classes)`.
        key: a JAX PRNG key.
        n_classes: number of classes `C`; default `max(y) + 1`. Every class needs at least
            `n_components` samples.
        n_components: components per class.
        family: a [Family][jaxprob.em.Family] for the class-conditional mixtures (default Gaussian with
            `covariance_type` and `reg_covar`). With `n_components=1` and a Bernoulli or categorical family
            this is naive Bayes by counting.
        covariance_type: `"full"`, `"tied"`, `"diag"` or `"spherical"`.
        n_init: restarts per class, as in [`jaxprob.mixture.fit`][jaxprob.mixture.fit].
        init_method: as in [`jaxprob.mixture.fit`][jaxprob.mixture.fit].
        max_iter: as in [`jaxprob.mixture.fit`][jaxprob.mixture.fit].
        tol: as in [`jaxprob.mixture.fit`][jaxprob.mixture.fit].
        reg_covar: as in [`jaxprob.mixture.fit`][jaxprob.mixture.fit].
        sample_weight: optional `(n,)` non-negative weights.

    Returns:
        `(classifier, info)`: a [`BayesClassifier`][jaxprob.bayes.BayesClassifier] and a [`FitInfo`][jaxprob.em.FitInfo]
        with a leading class axis.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import bayes
        >>> x = jnp.concatenate([jax.random.normal(jax.random.key(1), (100, 2)) - 3,
        ...                      jax.random.normal(jax.random.key(2), (100, 2)) + 3])
        >>> y = jnp.repeat(jnp.arange(2), 100)
        >>> clf, info = bayes.fit(x, y, key=jax.random.key(0))
        >>> float(jnp.mean(bayes.predict(x, clf) == y))
        1.0
    """
    check_key(key)
    if family is None:
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"`covariance_type` must be one of {sorted(COVARIANCE_TYPES)}, got {covariance_type!r}")
        check_reg_covar(reg_covar)
        family = gaussian(covariance_type, reg_covar)
    elif not isinstance(family, Family):
        raise TypeError(f"`family` must be a jaxprob.em.Family, got {type(family).__name__}")
    x = family.validate(x, "x")
    if init_method not in INIT_METHODS:
        raise ValueError(f"`init_method` must be one of {sorted(INIT_METHODS)}, got {init_method!r}")
    y = jnp.asarray(y)
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise TypeError(f"`y` must hold integer class labels, got {y.dtype}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"`y` must have shape ({x.shape[0]},) to match `x`, got {tuple(y.shape)}")
    w = check_sample_weight(sample_weight, x.shape[0], x.dtype)
    n_components = check_int(n_components, "n_components", minimum=1)
    n_init = check_int(n_init, "n_init", minimum=1)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    if is_tracer(y):
        if n_classes is None:
            raise ValueError("`n_classes` must be given when `y` is traced")
    else:
        y_np = np.asarray(y)
        if y_np.min() < 0:
            raise ValueError(f"`y` must be non-negative class indices, got {int(y_np.min())}")
        if n_classes is None:
            n_classes = int(y_np.max()) + 1
        n_classes = check_int(n_classes, "n_classes", minimum=2)
        if y_np.max() >= n_classes:
            raise ValueError(f"`y` holds label {int(y_np.max())} but n_classes={n_classes}")
        counts = np.bincount(y_np, weights=(np.asarray(w) > 0), minlength=n_classes)
        if counts.min() < n_components:
            c = int(counts.argmin())
            raise ValueError(
                f"class {c} has {int(counts[c])} sample(s) with positive weight, fewer than "
                f"n_components={n_components}"
            )
    n_classes = check_int(n_classes, "n_classes", minimum=2)
    return _fit_classes(key, x, y, w, family, n_classes, n_components, init_method, n_init, max_iter,
                        jnp.asarray(tol, x.dtype))


@jax.jit(static_argnums=(5, 6, 7, 8, 9))
def _fit_classes(key, x, y, w, family, n_classes, n_components, init_method, n_init, max_iter, tol):
    onehot = jax.nn.one_hot(y, n_classes, dtype=x.dtype).T * w[None, :]  # (C, n) class weights

    def one(k, wc):
        return em.fit(x, family, n_components, sample_weight=wc, init_method=init_method, n_init=n_init,
                      max_iter=max_iter, tol=tol, key=k)

    mixtures, info = jax.vmap(one)(jax.random.split(key, n_classes), onehot)
    class_w = jnp.sum(onehot, axis=1)
    log_priors = jnp.log(class_w) - jnp.log(jnp.sum(class_w))
    return BayesClassifier(log_priors, mixtures), info


def _check_clf(x, clf):
    if not isinstance(clf, BayesClassifier):
        raise TypeError(f"`clf` must be a BayesClassifier, got {type(clf).__name__}")
    m = clf.mixtures
    x = m.family.validate(x, "x")
    d = m.family.n_features(m.components)
    if x.shape[1] != d:
        raise ValueError(f"`x` has {x.shape[1]} features but the classifier was fitted on {d}")
    return x.astype(m.weights.dtype)


@jax.jit
def _class_ll(x, clf):
    def one(m):
        lp = em.weight_log_probs(m.family.component_log_prob(x, m.components), m.weights)
        return jax.nn.logsumexp(lp, axis=1)

    return jax.vmap(one, out_axes=1)(clf.mixtures)


def class_log_likelihoods(x: ArrayLike, clf: BayesClassifier) -> jax.Array:
    r"""Class-conditional log-densities $\log p(x_i \mid c)$.

    Args:
        x: `(n, D)`.
        clf: a [`BayesClassifier`][jaxprob.bayes.BayesClassifier].

    Returns:
        `(n, C)`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import bayes
        >>> x = jnp.array([[-1.0], [-1.2], [-0.8], [1.0], [1.2], [0.8]])
        >>> clf, _ = bayes.fit(x, jnp.array([0, 0, 0, 1, 1, 1]), key=jax.random.key(0))
        >>> bayes.class_log_likelihoods(x, clf).shape
        (6, 2)
    """
    return _class_ll(_check_clf(x, clf), clf)


def predict_log_proba(x: ArrayLike, clf: BayesClassifier) -> jax.Array:
    r"""Log class posteriors $\log p(c \mid x_i)$.

    Args:
        x: `(n, D)`.
        clf: a [`BayesClassifier`][jaxprob.bayes.BayesClassifier].

    Returns:
        `(n, C)`, each row log-normalised.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import bayes
        >>> x = jnp.array([[-1.0], [-1.2], [-0.8], [1.0], [1.2], [0.8]])
        >>> clf, _ = bayes.fit(x, jnp.array([0, 0, 0, 1, 1, 1]), key=jax.random.key(0))
        >>> jnp.exp(bayes.predict_log_proba(jnp.zeros((1, 1)), clf)).round(2).tolist()
        [[0.5, 0.5]]
    """
    return jax.nn.log_softmax(class_log_likelihoods(x, clf) + clf.log_priors, axis=1)


def predict_proba(x: ArrayLike, clf: BayesClassifier) -> jax.Array:
    r"""Class posteriors $p(c \mid x_i)$.

    Args:
        x: `(n, D)`.
        clf: a [`BayesClassifier`][jaxprob.bayes.BayesClassifier].

    Returns:
        `(n, C)`, rows summing to one.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import bayes
        >>> x = jnp.array([[-1.0], [-1.2], [-0.8], [1.0], [1.2], [0.8]])
        >>> clf, _ = bayes.fit(x, jnp.array([0, 0, 0, 1, 1, 1]), key=jax.random.key(0))
        >>> float(bayes.predict_proba(jnp.array([[1.0]]), clf)[0, 1]) > 0.99
        True
    """
    return jnp.exp(predict_log_proba(x, clf))


def predict(x: ArrayLike, clf: BayesClassifier) -> jax.Array:
    r"""Bayes decision $\arg\max_c \log p(x_i\mid c) + \log\pi_c$.

    Args:
        x: `(n, D)`.
        clf: a [`BayesClassifier`][jaxprob.bayes.BayesClassifier].

    Returns:
        `(n,)` int32 labels.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import bayes
        >>> x = jnp.array([[-1.0], [-1.2], [-0.8], [1.0], [1.2], [0.8]])
        >>> clf, _ = bayes.fit(x, jnp.array([0, 0, 0, 1, 1, 1]), key=jax.random.key(0))
        >>> bayes.predict(jnp.array([[-2.0], [2.0]]), clf).tolist()
        [0, 1]
    """
    return jnp.argmax(class_log_likelihoods(x, clf) + clf.log_priors, axis=1).astype(jnp.int32)


