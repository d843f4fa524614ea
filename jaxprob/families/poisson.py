r"""Poisson components: count data with independent Poisson counts per feature.

$$p(x \mid \theta_k) = \prod_d \frac{\lambda_{kd}^{x_d} e^{-\lambda_{kd}}}{x_d!}, \qquad x_d \in \{0, 1, 2, \dots\}.$$

**The fused E-step.** The data are prepared once as $\Phi = [x, -\sum_d \log x_d!, 1]$; every E-step is one
matrix product $\Phi W^\top$ with $W_k = [\log \lambda_k, 1, -\sum_d \lambda_{kd}]$, and the statistics are
$R^\top \Phi$ (the sums $\sum_i r_{ik} x_i$ and, in the last column, $N_k$). The $-\log x!$ term makes the values
true log-probabilities.

**The M-step** is $\lambda_{kd} = \max(\sum_i r_{ik} x_{id} / N_k, \lambda_{\min})$ with the floor
$\lambda_{\min}$ = `min_rate`: a feature that is zero in every sample of a component would otherwise get the rate 0
and the log-likelihood $\log 0$ for any later positive count. The floored rate is the maximiser of the expected
log-likelihood over $\lambda \ge \lambda_{\min}$ (it is concave in $\lambda$), so EM stays monotone.
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

__all__ = ["PoissonParams", "Poisson", "poisson", "make_params"]



class PoissonParams(eqx.Module):
    r"""Parameters of $K$ Poisson components (a pytree).

    Attributes:
        rates: `(K, D)` positive rates $\lambda_{kd}$ (the means of the counts).
    """

    rates: jax.Array


class Poisson(Family):
    r"""Independent Poisson counts per feature (see the module notes).

    Statistics: `(K, D + 2)` $R^\top [x, -\sum_d \log x_d!, 1]$.

    Attributes:
        min_rate: positive floor of the estimated rates.
    """

    min_rate: float | jax.Array = 1e-6

    def validate(self, x, name: str = "x"):
        """`x` as a float `(n, D)` array of non-negative whole counts (integers are converted explicitly)."""
        return as_count_array(x, name)

    def make_params(self, rates) -> PoissonParams:
        """Component parameters from rates, checked eagerly.

        Args:
            rates: `(K, D)` positive rates.

        Returns:
            [PoissonParams][jaxprob.families.poisson.PoissonParams].

        Examples:
            >>> import jax.numpy as jnp
            >>> from jaxprob import families
            >>> families.poisson().make_params(jnp.array([[1.0, 3.5]])).rates.tolist()
            [[1.0, 3.5]]
        """
        params = PoissonParams(check_param_array(rates, "rates", 2))
        self.check_params(params)
        return params

    def check_params(self, params, n_features: int | None = None) -> None:
        if not isinstance(params, PoissonParams):
            raise TypeError(f"Poisson components must be PoissonParams, got {type(params).__name__}")
        r = params.rates
        if r.ndim != 2:
            raise ValueError(f"`rates` must have shape (K, D), got {tuple(r.shape)}")
        if n_features is not None and r.shape[1] != n_features:
            raise ValueError(f"`x` has {n_features} features but the model has {r.shape[1]}")
        if not is_tracer(r) and not np.all(np.asarray(r) > 0):
            raise ValueError("`rates` must be positive")

    def prepare(self, x, w, center):
        n = x.shape[0]
        neg_log_fact = -jnp.sum(jax.lax.lgamma(x + 1.0), axis=1, keepdims=True)
        return jnp.concatenate([x, neg_log_fact, jnp.ones((n, 1), x.dtype)], axis=1)

    def _natural(self, params: PoissonParams):
        lam = params.rates
        k = lam.shape[0]
        return jnp.concatenate([jnp.log(lam), jnp.ones((k, 1), lam.dtype), -jnp.sum(lam, axis=1, keepdims=True)],
                               axis=1)

    def log_prob(self, data, params: PoissonParams, center):
        return jnp.matmul(data, self._natural(params).T, precision=matmul_precision())

    def weighted_log_prob(self, data, params: PoissonParams, center, weights):
        # the log-weights in the constant column: no extra pass over the (n, K) result
        return jnp.matmul(data, fold_log_weights(self._natural(params), weights).T, precision=matmul_precision())

    def component_log_prob(self, x, params: PoissonParams):
        lam = params.rates
        lp = jnp.matmul(x, jnp.log(lam).T, precision=matmul_precision()) - jnp.sum(lam, axis=1)
        return lp - jnp.sum(jax.lax.lgamma(x + 1.0), axis=1, keepdims=True)

    def statistics(self, data, resp, params, center):
        return jnp.matmul(resp.T, data, precision=matmul_precision())

    def m_step(self, stats, counts, center, previous, keep):
        d = stats.shape[1] - 2
        floor = jnp.asarray(self.min_rate, stats.dtype)
        new = PoissonParams(jnp.maximum(stats[:, :d] / counts[:, None], floor))
        if previous is not None:
            new = keep_rows(keep, new, previous)
        return new, jnp.zeros((stats.shape[0],), bool)

    def implied_statistics(self, params: PoissonParams, weights, center):
        s = params.rates * weights[:, None]
        return jnp.concatenate([s, jnp.zeros_like(weights)[:, None], weights[:, None]], axis=1)

    def n_parameters(self, params: PoissonParams) -> int:
        k, d = params.rates.shape
        return k * d

    def n_features(self, params: PoissonParams) -> int:
        return params.rates.shape[-1]

    def sample(self, key, params: PoissonParams, labels):
        lam = params.rates[labels]
        return jax.random.poisson(key, lam, lam.shape).astype(lam.dtype)


def poisson(min_rate: float = 1e-6) -> Poisson:
    r"""The Poisson family, with a floor `min_rate` on the estimated rates.

    Args:
        min_rate: positive floor of the rates.

    Returns:
        A [Poisson][jaxprob.families.poisson.Poisson] family.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import families, mixture
        >>> x = jnp.array([[0, 1], [1, 0], [9, 12], [11, 10]])
        >>> model, _ = mixture.fit(x, 2, key=jax.random.key(0), family=families.poisson())
        >>> sorted(model.rates[:, 0].round(2).tolist())
        [0.5, 10.0]
    """
    check_number(min_rate, "min_rate", strict=True)
    return Poisson(min_rate)


def make_params(rates: ArrayLike) -> PoissonParams:
    """[PoissonParams][jaxprob.families.poisson.PoissonParams] from `(K, D)` positive rates, checked eagerly.

    Args:
        rates: `(K, D)` positive rates.

    Returns:
        The component parameters.

    Examples:
        >>> from jaxprob.families.poisson import make_params
        >>> make_params([[2.0]]).rates.tolist()
        [[2.0]]
    """
    return Poisson().make_params(rates)
