r"""Bernoulli components: a mixture of binary vectors (binarised images, presence/absence tables).

A component is a product of $D$ independent Bernoulli variables,
$p(x \mid \theta_k) = \prod_d p_{kd}^{x_d} (1 - p_{kd})^{1 - x_d}$ for $x \in \{0, 1\}^D$.

**The fused E-step.** The log-likelihood is linear in $x$,
$\log p(x \mid \theta_k) = \sum_d x_d \operatorname{logit} p_{kd} + \sum_d \log(1 - p_{kd})$, so the data are
prepared once as $\Phi = [x, 1]$ and every E-step is one matrix product $\Phi W^\top$ with
$W_k = [\operatorname{logit} p_k, \sum_d \log(1 - p_{kd})]$; the statistics are the product $R^\top \Phi$ (the sums
$\sum_i r_{ik} x_i$ and $N_k$).

**The M-step** is the posterior mode under a symmetric $\mathrm{Beta}(\alpha + 1, \alpha + 1)$ prior on every
$p_{kd}$ (additive smoothing with `alpha` pseudo-counts of each value):

$$p_{kd} = \frac{\sum_i r_{ik} x_{id} + \alpha}{N_k + 2\alpha}.$$

With $\alpha > 0$ no probability is 0 or 1, so $\log 0$ never occurs; the probabilities are also kept in
$[\epsilon, 1 - \epsilon]$ ($\epsilon$ the machine epsilon of the dtype), which only acts when `alpha` is 0 or
negligible against $N_k$. EM then increases the log-posterior (log-likelihood plus log-prior) at every iteration;
with `alpha=0` it is maximum likelihood.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxprob._validation import is_tracer
from jaxprob.em import Family, fold_log_weights, keep_rows
from jaxprob.families._checks import as_count_array, check_number, check_param_array
from jaxprob.numerics import matmul_precision

__all__ = ["BernoulliParams", "Bernoulli", "bernoulli", "make_params"]



class BernoulliParams(eqx.Module):
    r"""Parameters of $K$ Bernoulli components (a pytree).

    Attributes:
        probs: `(K, D)` success probabilities $p_{kd} = P(x_d = 1 \mid k)$, strictly between 0 and 1.
    """

    probs: jax.Array


def _clip(p):
    eps = jnp.finfo(p.dtype).eps
    return jnp.clip(p, eps, 1.0 - eps)


class Bernoulli(Family):
    r"""Bernoulli components for binary data $x \in \{0, 1\}^D$ (see the module notes).

    Statistics: `(K, D + 1)` $R^\top [x, 1]$, the responsibility-weighted sums of $x$ and, in the last column,
    $N_k$.

    Attributes:
        alpha: non-negative pseudo-count of each value (0 and 1) of every variable in every component.
    """

    alpha: float | jax.Array = 1.0

    def validate(self, x, name: str = "x"):
        """`x` as a float `(n, D)` array of zeros and ones (booleans and integers are converted explicitly)."""
        return as_count_array(x, name, binary=True)

    def make_params(self, probs) -> BernoulliParams:
        """Component parameters from probabilities, checked eagerly.

        Args:
            probs: `(K, D)` probabilities, strictly between 0 and 1.

        Returns:
            [BernoulliParams][jaxprob.families.bernoulli.BernoulliParams].

        Examples:
            >>> import jax.numpy as jnp
            >>> from jaxprob import families
            >>> families.bernoulli().make_params(jnp.array([[0.2, 0.9]])).probs.shape
            (1, 2)
        """
        params = BernoulliParams(check_param_array(probs, "probs", 2))
        self.check_params(params)
        return params

    def check_params(self, params, n_features: int | None = None) -> None:
        if not isinstance(params, BernoulliParams):
            raise TypeError(f"Bernoulli components must be BernoulliParams, got {type(params).__name__}")
        p = params.probs
        if p.ndim != 2:
            raise ValueError(f"`probs` must have shape (K, D), got {tuple(p.shape)}")
        if n_features is not None and p.shape[1] != n_features:
            raise ValueError(f"`x` has {n_features} features but the model has {p.shape[1]}")
        if not is_tracer(p):
            arr = np.asarray(p)
            if not np.all((arr > 0) & (arr < 1)):
                raise ValueError("`probs` must lie strictly between 0 and 1 (log 0 is not a log-likelihood)")

    def prepare(self, x, w, center):
        return jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)

    def _natural(self, params: BernoulliParams):
        p = params.probs
        log1m = jnp.log1p(-p)
        return jnp.concatenate([jnp.log(p) - log1m, jnp.sum(log1m, axis=1, keepdims=True)], axis=1)

    def log_prob(self, data, params: BernoulliParams, center):
        return jnp.matmul(data, self._natural(params).T, precision=matmul_precision())

    def weighted_log_prob(self, data, params: BernoulliParams, center, weights):
        # the log-weights in the constant column: no extra pass over the (n, K) result
        return jnp.matmul(data, fold_log_weights(self._natural(params), weights).T, precision=matmul_precision())

    def component_log_prob(self, x, params: BernoulliParams):
        nat = self._natural(params)
        return jnp.matmul(x, nat[:, :-1].T, precision=matmul_precision()) + nat[:, -1]

    def statistics(self, data, resp, params, center):
        return jnp.matmul(resp.T, data, precision=matmul_precision())

    def m_step(self, stats, counts, center, previous, keep):
        d = stats.shape[1] - 1
        alpha = jnp.asarray(self.alpha, stats.dtype)
        probs = _clip((stats[:, :d] + alpha) / (counts[:, None] + 2.0 * alpha))
        new = BernoulliParams(probs)
        if previous is not None:
            new = keep_rows(keep, new, previous)
        return new, jnp.zeros((probs.shape[0],), bool)

    def implied_statistics(self, params: BernoulliParams, weights, center):
        # the sums whose M-step gives back `probs` for counts N_k = weights: p (N_k + 2 alpha) - alpha
        alpha = jnp.asarray(self.alpha, params.probs.dtype)
        s = params.probs * (weights[:, None] + 2.0 * alpha) - alpha
        return jnp.concatenate([s, weights[:, None]], axis=1)

    def n_parameters(self, params: BernoulliParams) -> int:
        k, d = params.probs.shape
        return k * d

    def n_features(self, params: BernoulliParams) -> int:
        return params.probs.shape[-1]

    def sample(self, key, params: BernoulliParams, labels):
        p = params.probs[labels]
        return (jax.random.uniform(key, p.shape, p.dtype) < p).astype(p.dtype)


def bernoulli(alpha: float = 1.0) -> Bernoulli:
    r"""The Bernoulli family, with `alpha` pseudo-counts of each value (a symmetric Beta prior, MAP estimates).

    Args:
        alpha: non-negative pseudo-count; 1 is Laplace smoothing, 0 maximum likelihood (probabilities are then
            kept in $[\epsilon, 1 - \epsilon]$).

    Returns:
        A [Bernoulli][jaxprob.families.bernoulli.Bernoulli] family.

    Note:
        Online EM ([jaxprob.scale.fit_online][]) averages the statistics per unit of weight, so there the
        pseudo-counts weigh as much as the whole stream; pass `alpha / n` for the prior of a fit on $n$ samples.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import families, mixture
        >>> x = jnp.tile(jnp.array([[1, 1, 0], [0, 0, 1]]), (10, 1))  # 10 copies of each
        >>> model, info = mixture.fit(x, 2, key=jax.random.key(0), family=families.bernoulli(alpha=1.0))
        >>> [round(p, 2) for p in sorted(model.probs[:, 0].tolist())]  # about (0 + 1) / 12 and (10 + 1) / 12
        [0.08, 0.92]
    """
    check_number(alpha, "alpha")
    return Bernoulli(alpha)


def make_params(probs: ArrayLike) -> BernoulliParams:
    """[BernoulliParams][jaxprob.families.bernoulli.BernoulliParams] from `(K, D)` probabilities in $(0, 1)$,
    checked eagerly (same as `bernoulli().make_params`).

    Args:
        probs: `(K, D)` probabilities.

    Returns:
        The component parameters.

    Examples:
        >>> from jaxprob.families.bernoulli import make_params
        >>> make_params([[0.5, 0.25]]).probs.tolist()
        [[0.5, 0.25]]
    """
    return Bernoulli().make_params(probs)
