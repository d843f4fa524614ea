"""jaxprob: JAX-native probabilistic modelling and unsupervised learning.

Pure functions over arrays and small pytrees: densities, Gaussian mixtures by EM, k-means, PCA and more. Algorithms
live in modules used as namespaces (`jaxprob.mixture.fit`, `jaxprob.kmeans.kmeans_plusplus`); the density
functions and the parameter types are also re-exported here. Importing jaxprob changes no `jax.config` setting.
"""

from jaxprob import (
    autoencoder,
    autoregressive,
    bayes,
    bayesian_mixture,
    classifiers,
    datasets,
    decomposition,
    densities,
    em,
    families,
    hmm,
    kde,
    kmeans,
    markov,
    metrics,
    mixture,
    nn,
    numerics,
    pallas_kmeans,
    plotting,
    regression,
    scale,
    selection,
    text,
)
from jaxprob.autoencoder import Autoencoder
from jaxprob.bayes import BayesClassifier
from jaxprob.decomposition import PCA
from jaxprob.densities import (
    COVARIANCE_TYPES,
    categorical_log_prob,
    component_log_prob,
    covariances_from_precisions_cholesky,
    cross_entropy,
    entropy,
    gaussian_entropy,
    gaussian_kl,
    gaussian_log_prob,
    gaussian_log_prob_diag,
    gaussian_log_prob_spherical,
    kl_divergence,
    log_softmax,
    logsumexp,
    mixture_log_prob,
    precisions_cholesky,
    softmax,
)
from jaxprob.em import FitInfo, Mixture, Stats
from jaxprob.kmeans import kmeans_plusplus, random_centroids, squared_distances

__version__ = "0.1.0"

__all__ = [
    # modules (namespaces)
    "bayes",
    "bayesian_mixture",
    "classifiers",
    "metrics",
    "nn",
    "plotting",
    "regression",
    "datasets",
    "decomposition",
    "densities",
    "em",
    "families",
    "kmeans",
    "mixture",
    "kde",
    "markov",
    "hmm",
    "text",
    "autoencoder",
    "autoregressive",
    "scale",
    "selection",
    "numerics",
    "pallas_kmeans",
    # types
    "BayesClassifier",
    "FitInfo",
    "Mixture",
    "PCA",
    "Stats",
    "Autoencoder",
    # densities
    "COVARIANCE_TYPES",
    "categorical_log_prob",
    "component_log_prob",
    "covariances_from_precisions_cholesky",
    "cross_entropy",
    "entropy",
    "gaussian_entropy",
    "gaussian_kl",
    "gaussian_log_prob",
    "gaussian_log_prob_diag",
    "gaussian_log_prob_spherical",
    "kl_divergence",
    "log_softmax",
    "logsumexp",
    "mixture_log_prob",
    "precisions_cholesky",
    "softmax",
    # k-means seeding
    "kmeans_plusplus",
    "random_centroids",
    "squared_distances",
]
