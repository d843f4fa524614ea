"""Component families for the EM engine ([jaxprob.em][]): one module per family.

Each family is an `equinox.Module` subclass of [jaxprob.em.Family][] with a constructor function:

| family | data | components |
|---|---|---|
| [gaussian][jaxprob.families.gaussian.gaussian] | `(n, D)` real | means and covariances (full, tied, diag, spherical) |
| [bernoulli][jaxprob.families.bernoulli.bernoulli] | `(n, D)` binary | probabilities `(K, D)`, Beta-smoothed |
| [categorical][jaxprob.families.categorical.categorical] | `(n, V)` counts | `(K, V)`, per block, smoothed |
| [poisson][jaxprob.families.poisson.poisson] | `(n, D)` counts | rates `(K, D)`, floored |
| [student_t][jaxprob.families.student_t.student_t] | `(n, D)` real, outliers | locations, scales, degrees of freedom |
| [linear_regression][jaxprob.families.linear_regression.linear_regression] | `(X, y)` pair | lines and noise levels |
"""

from jaxprob.families.bernoulli import Bernoulli, BernoulliParams, bernoulli
from jaxprob.families.categorical import Categorical, CategoricalParams, categorical, one_hot_features
from jaxprob.families.gaussian import Gaussian, GaussianParams, gaussian
from jaxprob.families.linear_regression import LinearRegression, LinearRegressionParams, linear_regression
from jaxprob.families.poisson import Poisson, PoissonParams, poisson
from jaxprob.families.student_t import StudentT, StudentTParams, student_t

__all__ = [
    "Gaussian",
    "GaussianParams",
    "gaussian",
    "Bernoulli",
    "BernoulliParams",
    "bernoulli",
    "Categorical",
    "CategoricalParams",
    "categorical",
    "one_hot_features",
    "Poisson",
    "PoissonParams",
    "poisson",
    "StudentT",
    "StudentTParams",
    "student_t",
    "LinearRegression",
    "LinearRegressionParams",
    "linear_regression",
]
