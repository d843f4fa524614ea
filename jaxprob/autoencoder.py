r"""Autoencoders: an encoder and a decoder MLP trained to reconstruct their input, and what to do with the codes.

An autoencoder maps $x \in \mathbb R^D$ to a code $z = e_\phi(x) \in \mathbb R^d$ (`d < D`) and
back to $\hat x = g(d_\theta(z))$, where $g$ is the output activation (identity, or the sigmoid for
pixels in $[0, 1]$). It is trained by minimising a reconstruction loss averaged over samples and features:

* squared error $\frac1D\lVert x - \hat x\rVert^2$ (`"mse"`),
* absolute error $\frac1D\lVert x - \hat x\rVert_1$ (`"mae"`),
* Bernoulli cross-entropy $-\frac1D\sum_j x_j\log\hat x_j + (1 - x_j)\log(1 - \hat x_j)$ (`"bce"`,
  for $x \in [0, 1]^D$ and a sigmoid output), computed from the decoder's logits $\ell$ as
  $\operatorname{softplus}(\ell) - x\ell$.

The training loop is [`jaxprob.nn.train`][jaxprob.nn.train], shared with the classifiers (Optax optimiser, compiled
epochs of shuffled minibatches from an explicit key, validation loss, early stopping, progress bar); checkpoints are
[`jaxprob.nn.save_model`][jaxprob.nn.save_model] / [`jaxprob.nn.load_model`][jaxprob.nn.load_model].

With identity activations and the squared error, the optimal decoder spans the same subspace as the top
$d$ principal components (Baldi and Hornik, 1989): [`pca_subspace_angles`][jaxprob.autoencoder.pca_subspace_angles]
measures the principal angles between the two. The distribution of the codes $P(z)$ is unknown, so new samples are drawn
by fitting a Gaussian mixture ([`jaxprob.mixture`][jaxprob.mixture]) to the codes and decoding its samples
([`fit_latent_mixture`][jaxprob.autoencoder.fit_latent_mixture], [`generate`][jaxprob.autoencoder.generate]); its
$-\log p(z)$ is an anomaly score, beside the reconstruction error
([`reconstruction_error`][jaxprob.autoencoder.reconstruction_error]).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike, DTypeLike

from jaxprob import mixture, nn
from jaxprob._validation import as_float_array, check_choice, check_finite, check_int, check_key
from jaxprob.decomposition import PCA

# products of weights or bases alone (no samples): full precision on every backend, they cost nothing; the
# forward passes take the library policy through jaxprob.nn.MLP (see jaxprob.numerics)
_HIGHEST = jax.lax.Precision.HIGHEST

__all__ = [
    "LOSSES",
    "Autoencoder",
    "mnist_autoencoder",
    "linear_autoencoder",
    "squared_error",
    "absolute_error",
    "bernoulli_cross_entropy",
    "reconstruction_error",
    "fit_autoencoder",
    "encode",
    "decode",
    "reconstruct",
    "interpolate",
    "fit_latent_mixture",
    "generate",
    "latent_log_prob",
    "principal_angles",
    "decoder_matrix",
    "pca_subspace_angles",
    "LIKELIHOODS",
    "OBJECTIVES",
    "VAE",
    "fit_vae",
    "elbo",
    "iwae_bound",
    "sample_vae",
    "init_mixture_prior",
]

LOSSES = ("mse", "mae", "bce")
"""Names of the reconstruction losses accepted by [`fit_autoencoder`][jaxprob.autoencoder.fit_autoencoder] and
[`reconstruction_error`][jaxprob.autoencoder.reconstruction_error]."""


# ----------------------------------------------------------------------------------------------------------
# the module
# ----------------------------------------------------------------------------------------------------------
class Autoencoder(eqx.Module):
    r"""An encoder MLP $D \to d$ and a decoder MLP $d \to D$ followed by an output activation.

    The methods act on one sample `(D,)` or a batch `(n, D)` and can be used inside `jit`/`vmap`/`grad`;
    the input size is checked when the function is traced (shapes are static).

    Attributes:
        encoder: [`jaxprob.nn.MLP`][jaxprob.nn.MLP] from `D` inputs to `d` codes.
        decoder: [`jaxprob.nn.MLP`][jaxprob.nn.MLP] from `d` codes to `D` outputs before the output activation (logits
            when `output_activation="sigmoid"`).
        output_activation: name of the output activation (static), a key of `jaxprob.nn.ACTIVATIONS`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import autoencoder
        >>> ae = autoencoder.Autoencoder(6, 2, (4,), key=jax.random.key(0))
        >>> ae.encode(jnp.ones((5, 6))).shape, ae(jnp.ones(6)).shape, ae.in_size, ae.latent_size
        ((5, 2), (6,), 6, 2)
    """

    encoder: nn.MLP
    decoder: nn.MLP
    output_activation: str = eqx.field(static=True)

    def __init__(self, in_size: int, latent_size: int, hidden: Sequence[int] = (128,), *, key,
                 decoder_hidden: Sequence[int] | None = None, activation: str = "relu",
                 latent_activation: str = "identity", output_activation: str = "identity", dtype=None):
        """Glorot-uniform weights and zero biases.

        Args:
            in_size: `D`, number of input features.
            latent_size: `d`, size of the code.
            hidden: widths of the encoder's hidden layers, from the input to the code.
            key: a JAX PRNG key.
            decoder_hidden: widths of the decoder's hidden layers, from the code to the output; `None` mirrors
                `hidden`.
            activation: hidden activation of both networks, a key of `jaxprob.nn.ACTIVATIONS`.
            latent_activation: activation of the code layer.
            output_activation: activation applied to the decoder's outputs (`"sigmoid"` for pixels in
                `[0, 1]`).
            dtype: floating dtype of the parameters (default: JAX's default float).
        """
        check_key(key)
        check_choice(output_activation, "output_activation", nn.ACTIVATIONS)
        hidden = tuple(hidden)
        decoder_hidden = tuple(reversed(hidden)) if decoder_hidden is None else tuple(decoder_hidden)
        k_enc, k_dec = jax.random.split(key)
        self.encoder = nn.MLP(in_size, latent_size, hidden, key=k_enc, activation=activation,
                              final_activation=latent_activation, dtype=dtype)
        self.decoder = nn.MLP(latent_size, in_size, decoder_hidden, key=k_dec, activation=activation,
                              final_activation="identity", dtype=dtype)
        self.output_activation = output_activation

    @property
    def in_size(self) -> int:
        """`D`, the number of input features."""
        return self.encoder.weights[0].shape[0]

    @property
    def latent_size(self) -> int:
        """`d`, the size of the code."""
        return self.encoder.weights[-1].shape[1]

    def encode(self, x):
        """Codes `(d,)` or `(n, d)` of `x` of shape `(D,)` or `(n, D)`."""
        _check_last_axis(x, self.in_size, "x", "the autoencoder's input size")
        return self.encoder(x)

    def decode_logits(self, z):
        """Decoder outputs before the output activation, `(D,)` or `(n, D)`."""
        _check_last_axis(z, self.latent_size, "z", "the autoencoder's code size")
        return self.decoder(z)

    def decode(self, z):
        """Reconstructions `(D,)` or `(n, D)` of codes `z` of shape `(d,)` or `(n, d)`."""
        return nn.ACTIVATIONS[self.output_activation](self.decode_logits(z))

    def __call__(self, x):
        r"""Reconstruction $\hat x = g(d_\theta(e_\phi(x)))$ of `x` of shape `(D,)` or `(n, D)`."""
        return self.decode(self.encode(x))


def _check_last_axis(x, size, name, what):
    if jnp.ndim(x) not in (1, 2):
        raise ValueError(f"`{name}` must have shape ({size},) or (n, {size}), got {tuple(jnp.shape(x))}")
    if jnp.shape(x)[-1] != size:
        raise ValueError(f"`{name}` has {jnp.shape(x)[-1]} features but {what} is {size}")


def mnist_autoencoder(*, key: jax.Array, in_size: int = 784, hidden: Sequence[int] = (1024, 256),
                      latent_size: int = 128, activation: str = "relu", latent_activation: str = "identity",
                      output_activation: str = "sigmoid", dtype: DTypeLike | None = None) -> Autoencoder:
    """The classic fully connected layout 784 → 1024 → 256 → 128 → 256 → 1024 → 784 with ReLU.

    The decoder mirrors the encoder; the output is a sigmoid (pixels in `[0, 1]`, train with `loss="bce"`
    or `"mse"`) and the code layer is linear (`latent_activation="relu"` gives the variant with non-negative
    codes).

    Args:
        key: a JAX PRNG key.
        in_size: `D` (784 for 28x28 images).
        hidden: widths of the encoder's hidden layers.
        latent_size: `d`.
        activation: hidden activation.
        latent_activation: activation of the code layer.
        output_activation: output activation.
        dtype: floating dtype of the parameters.

    Returns:
        An [`Autoencoder`][jaxprob.autoencoder.Autoencoder].

    Examples:
        >>> import jax
        >>> from jaxprob import autoencoder
        >>> ae = autoencoder.mnist_autoencoder(key=jax.random.key(0))
        >>> [w.shape for w in ae.encoder.weights + ae.decoder.weights]
        [(784, 1024), (1024, 256), (256, 128), (128, 256), (256, 1024), (1024, 784)]
    """
    return Autoencoder(in_size, latent_size, hidden, key=key, activation=activation,
                       latent_activation=latent_activation, output_activation=output_activation, dtype=dtype)


def linear_autoencoder(in_size: int, latent_size: int, *, key: jax.Array, hidden: Sequence[int] = (),
                       dtype: DTypeLike | None = None) -> Autoencoder:
    r"""An autoencoder with identity activations everywhere: $\hat x = (x W_e + b_e) W_d + b_d$.

    Trained with the squared error it recovers the principal subspace (see
    [`pca_subspace_angles`][jaxprob.autoencoder.pca_subspace_angles]).

    Args:
        in_size: `D`.
        latent_size: `d`.
        key: a JAX PRNG key.
        hidden: optional hidden widths (still linear: the maps are products of matrices).
        dtype: floating dtype of the parameters.

    Returns:
        An [`Autoencoder`][jaxprob.autoencoder.Autoencoder].

    Examples:
        >>> import jax
        >>> from jaxprob import autoencoder
        >>> ae = autoencoder.linear_autoencoder(64, 8, key=jax.random.key(0))
        >>> ae.encoder.weights[0].shape, ae.decoder.activation, ae.output_activation
        ((64, 8), 'identity', 'identity')
    """
    return Autoencoder(in_size, latent_size, hidden, key=key, activation="identity",
                       latent_activation="identity", output_activation="identity", dtype=dtype)


def _check_model(model, vae_ok=True):
    # the functions on codes and reconstructions take a VAE too (its code is the posterior mean)
    if not isinstance(model, (Autoencoder, VAE) if vae_ok else Autoencoder):
        raise TypeError(f"`model` must be an Autoencoder{' or a VAE' if vae_ok else ''}, got {type(model).__name__}")


def _check_x(x, model, name="x"):
    x = as_float_array(x, name, 2)
    if x.shape[1] != model.in_size:
        raise ValueError(f"`{name}` has {x.shape[1]} features but the autoencoder's input size is {model.in_size}")
    _check_finite_rows(x, name)
    return x


def _check_finite_rows(x, name):
    finite = np.isfinite(np.asarray(x)).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(f"`{name}` contains NaN or infinite values in {bad.size} sample(s), the first at index "
                         f"{int(bad[0])}")


# ----------------------------------------------------------------------------------------------------------
# losses
# ----------------------------------------------------------------------------------------------------------
def squared_error(x: ArrayLike, x_hat: ArrayLike) -> jax.Array:
    r"""Per-sample mean squared error $\frac1D\sum_j (x_j - \hat x_j)^2$.

    Args:
        x: `(..., D)` targets.
        x_hat: `(..., D)` reconstructions.

    Returns:
        `(...)` errors.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import autoencoder
        >>> autoencoder.squared_error(jnp.array([[0.0, 0.0]]), jnp.array([[1.0, 3.0]])).tolist()
        [5.0]
    """
    return jnp.mean(jnp.square(x - x_hat), axis=-1)


def absolute_error(x: ArrayLike, x_hat: ArrayLike) -> jax.Array:
    r"""Per-sample mean absolute error $\frac1D\sum_j |x_j - \hat x_j|$.

    Args:
        x: `(..., D)` targets.
        x_hat: `(..., D)` reconstructions.

    Returns:
        `(...)` errors.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import autoencoder
        >>> autoencoder.absolute_error(jnp.array([[0.0, 0.0]]), jnp.array([[1.0, -3.0]])).tolist()
        [2.0]
    """
    return jnp.mean(jnp.abs(x - x_hat), axis=-1)


def bernoulli_cross_entropy(x: ArrayLike, logits: ArrayLike) -> jax.Array:
    r"""Per-sample mean Bernoulli cross-entropy from logits, for targets in $[0, 1]$.

    $-\frac1D\sum_j x_j\log\sigma(\ell_j) + (1 - x_j)\log(1 - \sigma(\ell_j))
    = \frac1D\sum_j \operatorname{softplus}(\ell_j) - x_j\ell_j$, stable for large $|\ell|$.

    Args:
        x: `(..., D)` targets in `[0, 1]` (grey levels are allowed: the minimum is then the entropy of `x`).
        logits: `(..., D)` decoder outputs before the sigmoid.

    Returns:
        `(...)` cross-entropies in nats per feature.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import autoencoder
        >>> round(float(autoencoder.bernoulli_cross_entropy(jnp.array([1.0, 0.0]), jnp.zeros(2))), 4)
        0.6931
    """
    return jnp.mean(jax.nn.softplus(logits) - x * logits, axis=-1)


def _per_sample(model, x, loss):
    if loss == "bce":
        return bernoulli_cross_entropy(x, model.decode_logits(model.encode(x)))
    x_hat = model(x)
    return squared_error(x, x_hat) if loss == "mse" else absolute_error(x, x_hat)


# training losses: module-level functions, so the compiled epoch is reused (they are static arguments)
def _mse_loss(model, batch):
    return jnp.mean(_per_sample(model, batch[0], "mse"))


def _mae_loss(model, batch):
    return jnp.mean(_per_sample(model, batch[0], "mae"))


def _bce_loss(model, batch):
    return jnp.mean(_per_sample(model, batch[0], "bce"))


_LOSS_FNS = {"mse": _mse_loss, "mae": _mae_loss, "bce": _bce_loss}


def _check_loss(loss, model, *arrays):
    check_choice(loss, "loss", LOSSES)
    if loss == "bce":
        if model.output_activation != "sigmoid":
            raise ValueError(
                f"loss='bce' needs output_activation='sigmoid' (the decoder's outputs are Bernoulli logits), "
                f"got {model.output_activation!r}"
            )
        for name, a in arrays:
            if a is not None and (float(jnp.min(a)) < 0 or float(jnp.max(a)) > 1):
                raise ValueError(f"loss='bce' needs `{name}` in [0, 1], got values in "
                                 f"[{float(jnp.min(a)):.3g}, {float(jnp.max(a)):.3g}]")


# ----------------------------------------------------------------------------------------------------------
# chunked application
# ----------------------------------------------------------------------------------------------------------
def _enc(model, x):
    return model.encode(x)


def _dec(model, z):
    return model.decode(z)


def _rec(model, x):
    return model(x)


def _err_mse(model, x):
    return _per_sample(model, x, "mse")


def _err_mae(model, x):
    return _per_sample(model, x, "mae")


def _err_bce(model, x):
    return _per_sample(model, x, "bce")


_ERR_FNS = {"mse": _err_mse, "mae": _err_mae, "bce": _err_bce}


@eqx.filter_jit
def _chunked(fn, model, x, batch_size):
    n = x.shape[0]
    n_full = n // batch_size
    parts = []
    if n_full:
        blocks = x[: n_full * batch_size].reshape(n_full, batch_size, x.shape[1])
        out = jax.lax.map(lambda b: fn(model, b), blocks)
        parts.append(out.reshape(n_full * batch_size, *out.shape[2:]))
    if n - n_full * batch_size:
        parts.append(fn(model, x[n_full * batch_size:]))
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts)


def _apply(fn, model, x, batch_size):
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    return _chunked(fn, model, x, min(batch_size, x.shape[0]))


def encode(model: Autoencoder, x: ArrayLike, *, batch_size: int = 4096) -> jax.Array:
    """Codes of a data set, computed by chunks of `batch_size` samples in one compiled program.

    Args:
        model: an [`Autoencoder`][jaxprob.autoencoder.Autoencoder].
        x: `(n, D)` data.
        batch_size: chunk size (memory only; the result does not depend on it).

    Returns:
        `(n, d)` codes.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import autoencoder
        >>> ae = autoencoder.Autoencoder(6, 2, (4,), key=jax.random.key(0))
        >>> x = jax.random.uniform(jax.random.key(1), (10, 6))
        >>> z = autoencoder.encode(ae, x, batch_size=3)
        >>> z.shape, bool(jnp.allclose(z, ae.encode(x), atol=1e-6))
        ((10, 2), True)
    """
    _check_model(model)
    x = _check_x(x, model)
    return _apply(_enc, model, x, batch_size)


def decode(model: Autoencoder, z: ArrayLike, *, batch_size: int = 4096) -> jax.Array:
    """Decode a batch of codes by chunks (see [`encode`][jaxprob.autoencoder.encode]).

    Args:
        model: an [`Autoencoder`][jaxprob.autoencoder.Autoencoder].
        z: `(n, d)` codes.
        batch_size: chunk size.

    Returns:
        `(n, D)` decoded samples (after the output activation).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import autoencoder
        >>> ae = autoencoder.Autoencoder(6, 2, (4,), key=jax.random.key(0))
        >>> autoencoder.decode(ae, jnp.zeros((3, 2))).shape
        (3, 6)
    """
    _check_model(model)
    z = as_float_array(z, "z", 2)
    if z.shape[1] != model.latent_size:
        raise ValueError(f"`z` has {z.shape[1]} columns but the autoencoder's code size is {model.latent_size}")
    _check_finite_rows(z, "z")
    return _apply(_dec, model, z, batch_size)


def reconstruct(model: Autoencoder, x: ArrayLike, *, batch_size: int = 4096) -> jax.Array:
    r"""Reconstructions $\hat x$ of a data set, by chunks (see [`encode`][jaxprob.autoencoder.encode]).

    Args:
        model: an [`Autoencoder`][jaxprob.autoencoder.Autoencoder].
        x: `(n, D)` data.
        batch_size: chunk size.

    Returns:
        `(n, D)` reconstructions.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import autoencoder
        >>> ae = autoencoder.Autoencoder(6, 2, (4,), key=jax.random.key(0))
        >>> autoencoder.reconstruct(ae, jnp.ones((3, 6))).shape
        (3, 6)
    """
    _check_model(model)
    x = _check_x(x, model)
    return _apply(_rec, model, x, batch_size)


def reconstruction_error(model: Autoencoder, x: ArrayLike, *, loss: str = "mse", batch_size: int = 4096) -> jax.Array:
    """Per-sample reconstruction loss, the autoencoder's anomaly score (large for inputs unlike the training data).

    Args:
        model: an [`Autoencoder`][jaxprob.autoencoder.Autoencoder].
        x: `(n, D)` data.
        loss: one of [`LOSSES`][jaxprob.autoencoder.LOSSES] (`"bce"` needs a sigmoid output and `x` in `[0, 1]`).
        batch_size: chunk size.

    Returns:
        `(n,)` losses, each a mean over the `D` features; their mean is the training loss.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import autoencoder
        >>> ae = autoencoder.Autoencoder(6, 2, (4,), key=jax.random.key(0))
        >>> x = jax.random.uniform(jax.random.key(1), (10, 6))
        >>> err = autoencoder.reconstruction_error(ae, x)
        >>> err.shape, bool(jnp.allclose(err, jnp.mean((ae(x) - x) ** 2, axis=1)))
        ((10,), True)
    """
    _check_model(model)
    x = _check_x(x, model)
    _check_loss(loss, model, ("x", x))
    return _apply(_ERR_FNS[loss], model, x, batch_size)


# ----------------------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------------------
def fit_autoencoder(model: Autoencoder, x: ArrayLike, *, key: jax.Array, loss: str = "mse",
                    optimizer: optax.GradientTransformation | None = None, learning_rate: float = 1e-3,
                    n_epochs: int = 20, batch_size: int | None = None, l2: float = 0.0, val_x: ArrayLike | None = None,
                    patience: int | None = None, progress: bool | int = False,
                    opt_state: optax.OptState | None = None) -> tuple[Autoencoder, nn.TrainInfo]:
    r"""Train an autoencoder to reconstruct `x` with the shared loop [`jaxprob.nn.train`][jaxprob.nn.train].

    Minimises the mean reconstruction loss (plus $\lambda\sum_W\lVert W\rVert_F^2$ when `l2 > 0`) over
    shuffled minibatches drawn from `key`; the same key gives bit-identical weights. The loss functions are
    module-level objects, so a second call with the same shapes, loss and optimizer reuses the compiled epoch.

    Args:
        model: the initial [`Autoencoder`][jaxprob.autoencoder.Autoencoder] (e.g.
            [`mnist_autoencoder`][jaxprob.autoencoder.mnist_autoencoder],
            [`linear_autoencoder`][jaxprob.autoencoder.linear_autoencoder]).
        x: `(n, D)` training data.
        key: a JAX PRNG key for the minibatch order.
        loss: one of [`LOSSES`][jaxprob.autoencoder.LOSSES]: `"mse"`, `"mae"` or `"bce"` (Bernoulli cross-entropy; needs
            `output_activation="sigmoid"` and data in `[0, 1]`).
        optimizer: an Optax gradient transformation; `None` means `optax.adam(learning_rate)`.
        learning_rate: used when `optimizer` is `None`.
        n_epochs: maximum number of epochs.
        batch_size: minibatch size, at most `n`; `None` means `min(128, n)`.
        l2: L2 penalty on the weight matrices.
        val_x: optional `(m, D)` validation data (validation loss after every epoch, best model kept).
        patience: early-stopping patience in epochs (needs `val_x`).
        progress: print a progress bar with the losses (`True`, or every `k` epochs).
        opt_state: optional optimizer state to resume from.

    Returns:
        `(model, info)`: the trained autoencoder and a [`jaxprob.nn.TrainInfo`][jaxprob.nn.TrainInfo] (loss curves).

    Raises:
        ValueError: input size not matching the model, NaN or infinite values (naming the first bad sample),
            `batch_size` larger than the data, `"bce"` with data outside `[0, 1]`.
        FloatingPointError: the loss became NaN or infinite during training (naming the epoch and step).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import autoencoder
        >>> x = jax.random.normal(jax.random.key(1), (200, 2)) @ jnp.array([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]])
        >>> ae = autoencoder.linear_autoencoder(3, 2, key=jax.random.key(0))
        >>> ae, info = autoencoder.fit_autoencoder(ae, x, key=jax.random.key(2), learning_rate=0.02, n_epochs=100)
        >>> bool(info.train_loss[-1] < 1e-3 * info.train_loss[0])
        True
    """
    if isinstance(model, VAE):
        raise TypeError("`model` is a VAE: train it with fit_vae (fit_autoencoder trains an Autoencoder)")
    _check_model(model, vae_ok=False)
    check_key(key)
    x = _check_x(x, model)
    n = x.shape[0]
    if val_x is not None:
        val_x = _check_x(val_x, model, "val_x")
    _check_loss(loss, model, ("x", x), ("val_x", val_x))
    if batch_size is None:
        batch_size = min(128, n)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if batch_size > n:
        raise ValueError(f"`batch_size` ({batch_size}) is larger than the number of training samples ({n})")
    return nn.train(model, _LOSS_FNS[loss], (x,), key=key, optimizer=optimizer, learning_rate=learning_rate,
                    n_epochs=n_epochs, batch_size=batch_size, l2=l2,
                    val_data=None if val_x is None else (val_x,), patience=patience, progress=progress,
                    opt_state=opt_state)


# ----------------------------------------------------------------------------------------------------------
# latent space
# ----------------------------------------------------------------------------------------------------------
@eqx.filter_jit
def _interpolate(model, x1, x2, alphas):
    z1, z2 = model.encode(x1), model.encode(x2)
    z = alphas[:, None] * z1 + (1 - alphas[:, None]) * z2
    return model.decode(z)


def interpolate(model: Autoencoder, x1: ArrayLike, x2: ArrayLike, n_steps: int = 8) -> tuple[jax.Array, jax.Array]:
    r"""Decode straight-line mixtures of two codes: $g(d_\theta(\alpha z_1 + (1 - \alpha) z_2))$.

    Args:
        model: an [`Autoencoder`][jaxprob.autoencoder.Autoencoder].
        x1: `(D,)` first input, $z_1 = e_\phi(x_1)$.
        x2: `(D,)` second input.
        n_steps: number of values of $\alpha$, evenly spaced from 1 down to 0 (at least 2).

    Returns:
        `(decoded, alphas)`: `(n_steps, D)` decoded points, from the reconstruction of `x1` to that of
        `x2`, and the `(n_steps,)` values of $\alpha$.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import autoencoder
        >>> ae = autoencoder.Autoencoder(6, 2, (4,), key=jax.random.key(0))
        >>> x1, x2 = jnp.zeros(6), jnp.ones(6)
        >>> strip, alphas = autoencoder.interpolate(ae, x1, x2, 5)
        >>> strip.shape, alphas.tolist(), bool(jnp.allclose(strip[-1], ae(x2)))
        ((5, 6), [1.0, 0.75, 0.5, 0.25, 0.0], True)
    """
    _check_model(model)
    x1 = as_float_array(x1, "x1", 1)
    x2 = as_float_array(x2, "x2", 1, dtype=x1.dtype)
    for name, v in (("x1", x1), ("x2", x2)):
        if v.shape[0] != model.in_size:
            raise ValueError(f"`{name}` has {v.shape[0]} features but the autoencoder's input size is "
                             f"{model.in_size}")
        check_finite(v, name)
    n_steps = check_int(n_steps, "n_steps", minimum=2)
    alphas = jnp.linspace(1.0, 0.0, n_steps, dtype=x1.dtype)
    return _interpolate(model, x1, x2, alphas), alphas


def fit_latent_mixture(model: Autoencoder, x: ArrayLike, n_components: int, *, key: jax.Array,
                       covariance_type: str = "full", reg_covar: float = 1e-4, n_init: int = 1, max_iter: int = 200,
                       batch_size: int = 4096) -> tuple[mixture.Mixture, mixture.FitInfo]:
    r"""Fit a Gaussian mixture $p(z)=\sum_k\alpha_k\mathcal N(z\mid\mu_k,\Sigma_k)$ to the codes of `x`.

    The decoder alone cannot generate: the distribution of the codes is unknown. A mixture fitted to the codes
    of the training data ([`jaxprob.mixture.fit`][jaxprob.mixture.fit]) is a density to sample codes from
    ([`generate`][jaxprob.autoencoder.generate]) and to score new inputs with
    ([`latent_log_prob`][jaxprob.autoencoder.latent_log_prob]). `n_components=1` is the single-Gaussian baseline.

    Args:
        model: a trained [`Autoencoder`][jaxprob.autoencoder.Autoencoder].
        x: `(n, D)` data (usually the training data).
        n_components: `K`.
        key: a JAX PRNG key for the mixture's initialisation.
        covariance_type: `"full"`, `"tied"`, `"diag"` or `"spherical"`.
        reg_covar: added to the covariance diagonals, in the units of the codes.
        n_init: restarts of EM.
        max_iter: EM iterations at most.
        batch_size: chunk size of the encoding.

    Returns:
        `(gmm, info)`: a [`Mixture`][jaxprob.em.Mixture] on the codes and its
        [`jaxprob.mixture.FitInfo`][jaxprob.mixture.FitInfo].

    Examples:
        >>> import jax
        >>> from jaxprob import autoencoder
        >>> ae = autoencoder.Autoencoder(6, 2, (4,), key=jax.random.key(0))
        >>> x = jax.random.uniform(jax.random.key(1), (100, 6))
        >>> gmm, info = autoencoder.fit_latent_mixture(ae, x, 3, key=jax.random.key(2))
        >>> gmm.means.shape
        (3, 2)
    """
    check_key(key)
    z = encode(model, x, batch_size=batch_size)
    return mixture.fit(z, n_components, key=key, covariance_type=covariance_type, reg_covar=reg_covar,
                       n_init=n_init, max_iter=max_iter)


def _check_gmm(model, gmm):
    if not isinstance(gmm, mixture.Mixture):
        raise TypeError(f"`gmm` must be a jaxprob mixture (mixture.fit / make_gmm), got {type(gmm).__name__}")
    if gmm.n_features != model.latent_size:
        raise ValueError(f"`gmm` has {gmm.n_features} features but the autoencoder's code size is "
                         f"{model.latent_size}")


def generate(model: Autoencoder, gmm: mixture.Mixture, n_samples: int, *,
             key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""Sample codes $z \sim p(z)$ from a latent mixture and decode them.

    Args:
        model: an [`Autoencoder`][jaxprob.autoencoder.Autoencoder].
        gmm: a mixture on the codes, e.g. from [`fit_latent_mixture`][jaxprob.autoencoder.fit_latent_mixture].
        n_samples: number of samples.
        key: a JAX PRNG key.

    Returns:
        `(x, z, labels)`: `(n_samples, D)` decoded samples, their `(n_samples, d)` codes and the
        `(n_samples,)` mixture components they were drawn from.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import autoencoder, mixture
        >>> ae = autoencoder.Autoencoder(6, 2, (4,), key=jax.random.key(0))
        >>> gmm = mixture.make_gmm(jnp.array([0.5, 0.5]), jnp.array([[-1.0, 0.0], [1.0, 0.0]]), jnp.ones(2),
        ...                        "spherical")
        >>> x, z, labels = autoencoder.generate(ae, gmm, 5, key=jax.random.key(3))
        >>> x.shape, z.shape, labels.shape
        ((5, 6), (5, 2), (5,))
    """
    check_key(key)
    _check_model(model)
    _check_gmm(model, gmm)
    z, labels = mixture.sample(gmm, n_samples, key=key)
    return decode(model, z), z, labels


def latent_log_prob(model: Autoencoder, x: ArrayLike, gmm: mixture.Mixture, *, batch_size: int = 4096) -> jax.Array:
    r"""Log-density of the codes under a latent mixture, $\log p(e_\phi(x))$.

    $-\log p(e_\phi(x))$ is an anomaly score, to compare with
    [`reconstruction_error`][jaxprob.autoencoder.reconstruction_error]: it flags codes in empty regions of the latent
    space, while the reconstruction error flags inputs the decoder cannot rebuild. (It is a density of the codes, not of
    `x`: the encoder's Jacobian is not accounted for.)

    Args:
        model: an [`Autoencoder`][jaxprob.autoencoder.Autoencoder].
        x: `(n, D)` data.
        gmm: a mixture on the codes, from [`fit_latent_mixture`][jaxprob.autoencoder.fit_latent_mixture].
        batch_size: chunk size of the encoding.

    Returns:
        `(n,)` log-densities.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import autoencoder, mixture
        >>> ae = autoencoder.Autoencoder(6, 2, (4,), key=jax.random.key(0))
        >>> gmm = mixture.make_gmm(jnp.ones(1), jnp.zeros((1, 2)), jnp.ones(1), "spherical")
        >>> x = jax.random.uniform(jax.random.key(1), (4, 6))
        >>> z = ae.encode(x)
        >>> bool(jnp.allclose(autoencoder.latent_log_prob(ae, x, gmm),
        ...                   -0.5 * jnp.sum(z**2, axis=1) - jnp.log(2 * jnp.pi), atol=1e-5))
        True
    """
    _check_model(model)
    _check_gmm(model, gmm)
    return mixture.log_prob(encode(model, x, batch_size=batch_size), gmm)


# ----------------------------------------------------------------------------------------------------------
# linear autoencoder vs PCA
# ----------------------------------------------------------------------------------------------------------
@jax.jit
def _principal_angles(a, b):
    qa, _ = jnp.linalg.qr(a)
    qb, _ = jnp.linalg.qr(b)
    proj = jnp.matmul(qa.T, qb, precision=_HIGHEST)
    cos = jnp.linalg.svd(proj, compute_uv=False)  # descending
    sin = jnp.linalg.svd(qb - jnp.matmul(qa, proj, precision=_HIGHEST), compute_uv=False)[::-1]  # ascending
    # arctan2 of both is accurate for small and large angles alike (arccos alone loses small angles)
    return jnp.arctan2(jnp.clip(sin, 0.0, 1.0), jnp.clip(cos, 0.0, 1.0))


def principal_angles(a: ArrayLike, b: ArrayLike) -> jax.Array:
    r"""Principal angles between the column spaces of `a` and `b`, in radians, ascending.

    With orthonormal bases $Q_a, Q_b$, the cosines are the singular values of $Q_a^\top Q_b$ and the
    sines those of $Q_b - Q_a Q_a^\top Q_b$ (Björck and Golub, 1973); both are combined with `arctan2`.
    All angles are 0 when the spaces are the same.

    Args:
        a: `(D, p)` matrix of full column rank.
        b: `(D, q)` matrix of full column rank.

    Returns:
        `(min(p, q),)` angles in $[0, \pi/2]$.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxprob import autoencoder
        >>> a = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
        >>> b = jnp.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
        >>> [round(float(t), 2) for t in jnp.degrees(autoencoder.principal_angles(a, b))]
        [0.0, 54.74]
    """
    a = as_float_array(a, "a", 2)
    b = as_float_array(b, "b", 2)
    dtype = jnp.result_type(a.dtype, b.dtype)
    a, b = a.astype(dtype), b.astype(dtype)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"`a` has {a.shape[0]} rows but `b` has {b.shape[0]}")
    for name, m in (("a", a), ("b", b)):
        if m.shape[1] > m.shape[0]:
            raise ValueError(f"`{name}` has more columns than rows ({m.shape}): its columns cannot be independent")
        check_finite(m, name)
    if a.shape[1] < b.shape[1]:
        a, b = b, a
    return _principal_angles(a, b)


def decoder_matrix(model: Autoencoder) -> jax.Array:
    r"""The `(d, D)` matrix $W$ of a linear decoder, $\hat x = z W + b$.

    The product of the decoder's weight matrices; defined only when its activations are the identity (as in
    [`linear_autoencoder`][jaxprob.autoencoder.linear_autoencoder]). Its rows span the subspace in which all
    reconstructions lie (up to the bias).

    Args:
        model: an [`Autoencoder`][jaxprob.autoencoder.Autoencoder] with identity activations in its decoder.

    Returns:
        `(d, D)` matrix.

    Examples:
        >>> import jax
        >>> from jaxprob import autoencoder
        >>> ae = autoencoder.linear_autoencoder(5, 2, key=jax.random.key(0), hidden=(3,))
        >>> autoencoder.decoder_matrix(ae).shape
        (2, 5)
    """
    _check_model(model)
    dec = model.decoder
    hidden_linear = dec.activation == "identity" or len(dec.weights) == 1
    if not (hidden_linear and dec.final_activation == "identity" and model.output_activation == "identity"):
        raise ValueError("`model` has a non-linear decoder: decoder_matrix needs identity activations "
                         "(see linear_autoencoder)")
    w = dec.weights[0]
    for m in dec.weights[1:]:
        w = jnp.matmul(w, m, precision=_HIGHEST)
    return w


def pca_subspace_angles(model: Autoencoder, pca: PCA) -> jax.Array:
    """Principal angles between a linear decoder's subspace and the span of the principal axes of a PCA.

    A linear autoencoder trained to its optimum with the squared error spans the top-$d$ principal
    subspace, though its code axes are any basis of it (not the principal axes themselves): the angles tend to 0
    while the individual weights need not match the components.

    Args:
        model: a linear [`Autoencoder`][jaxprob.autoencoder.Autoencoder] (see
            [`decoder_matrix`][jaxprob.autoencoder.decoder_matrix]).
        pca: a [`jaxprob.decomposition.PCA`][jaxprob.decomposition.PCA] fitted on the same data, usually with `d`
            components.

    Returns:
        `(min(d, n_components),)` angles in radians, ascending.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import autoencoder, decomposition
        >>> x = jax.random.normal(jax.random.key(1), (300, 3)) * jnp.array([3.0, 2.0, 0.1])
        >>> ae = autoencoder.linear_autoencoder(3, 2, key=jax.random.key(0))
        >>> ae, _ = autoencoder.fit_autoencoder(ae, x, key=jax.random.key(2), learning_rate=0.01, n_epochs=100)
        >>> bool(autoencoder.pca_subspace_angles(ae, decomposition.pca_fit(x, 2)).max() < 0.05)
        True
    """
    if not isinstance(pca, PCA):
        raise TypeError(f"`pca` must be a jaxprob.decomposition.PCA, got {type(pca).__name__}")
    w = decoder_matrix(model)
    if pca.components.shape[1] != w.shape[1]:
        raise ValueError(f"`pca` was fitted on {pca.components.shape[1]} features but the autoencoder has "
                         f"{w.shape[1]}")
    return principal_angles(w.T, pca.components.T)


# ----------------------------------------------------------------------------------------------------------
# variational autoencoders
# ----------------------------------------------------------------------------------------------------------
LIKELIHOODS = ("bernoulli", "gaussian")
r"""Decoder likelihoods $p(x \mid z)$ of a [VAE][jaxprob.autoencoder.VAE]."""

OBJECTIVES = ("elbo", "iwae")
"""Training objectives of [fit_vae][jaxprob.autoencoder.fit_vae]: the evidence lower bound or the
importance-weighted bound."""

_LOG_2PI = math.log(2.0 * math.pi)


class VAE(eqx.Module):
    r"""A variational autoencoder: Gaussian encoder $q_\phi(z \mid x)$, decoder $p_\theta(x \mid z)$, prior $p(z)$.

    The encoder MLP maps $x \in \mathbb R^D$ to the mean $\mu_\phi(x)$ and the log-variances
    $\log \sigma^2_\phi(x)$ of $q_\phi(z \mid x) = \mathcal N(\mu_\phi(x), \operatorname{diag}\sigma^2_\phi(x))$,
    $z \in \mathbb R^d$. Draws are reparameterised, $z = \mu_\phi(x) + \sigma_\phi(x) \odot \varepsilon$ with
    $\varepsilon \sim \mathcal N(0, I)$ drawn from an explicit key, so that gradients flow through them. The decoder
    MLP maps $z$ to

    * `likelihood="bernoulli"`: the logits $\ell_\theta(z)$ of independent Bernoulli pixels,
      $\log p_\theta(x \mid z) = \sum_j x_j \ell_j - \operatorname{softplus}(\ell_j)$, for $x \in [0, 1]^D$;
    * `likelihood="gaussian"`: the mean $m_\theta(z)$ of $\mathcal N(m_\theta(z), s^2 I)$, with one noise scale
      $s$ shared by the features (learned unless `learn_noise=False`).

    The prior is $\mathcal N(0, I)$, or with `n_components=K` a Gaussian mixture with diagonal covariances whose
    weights, means and scales are learned with the networks (the mixture prior of VaDE, Jiang et al., 2017). All the
    components start equal (the prior is then $\mathcal N(0, I)$ and stays symmetric under gradient descent):
    [init_mixture_prior][jaxprob.autoencoder.init_mixture_prior] places them on the codes of a first training.

    The methods act on one sample `(D,)` or a batch `(n, D)` and work inside `jit`/`vmap`/`grad`; a batch with a
    single key uses `jax.random.split(key, n)`, one key per sample, so a sample's draws do not depend on the batch
    it is in. [encode][jaxprob.autoencoder.encode], [decode][jaxprob.autoencoder.decode],
    [reconstruct][jaxprob.autoencoder.reconstruct], [interpolate][jaxprob.autoencoder.interpolate],
    [reconstruction_error][jaxprob.autoencoder.reconstruction_error] and the latent-mixture functions accept a `VAE`
    too: its code is the posterior mean $\mu_\phi(x)$ and its reconstruction the decoder's mean at that code.

    Attributes:
        encoder: [MLP][jaxprob.nn.MLP] from `D` inputs to `2 d` outputs (means, then log-variances).
        decoder: [MLP][jaxprob.nn.MLP] from `d` codes to `D` outputs (Bernoulli logits or Gaussian means).
        log_noise: `()` $\log s$ of the Gaussian decoder; `None` for the Bernoulli decoder.
        prior_logits: `(K,)` logits of the mixture prior's weights; `None` for the $\mathcal N(0, I)$ prior.
        prior_means: `(K, d)` means of the mixture prior.
        prior_log_scales: `(K, d)` log standard deviations of the mixture prior.
        likelihood: `"bernoulli"` or `"gaussian"` (static).
        learn_noise: whether the Gaussian noise scale is trained (static).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import autoencoder
        >>> vae = autoencoder.VAE(6, 2, (8,), key=jax.random.key(0))
        >>> x = jnp.full((5, 6), 0.5)
        >>> mean, log_var = vae.posterior(x)
        >>> mean.shape, log_var.shape, vae.decode(mean).shape, vae.elbo(x, jax.random.key(1)).shape
        ((5, 2), (5, 2), (5, 6), (5,))
    """

    encoder: nn.MLP
    decoder: nn.MLP
    log_noise: jax.Array | None
    prior_logits: jax.Array | None
    prior_means: jax.Array | None
    prior_log_scales: jax.Array | None
    likelihood: str = eqx.field(static=True)
    learn_noise: bool = eqx.field(static=True)

    def __init__(self, in_size: int, latent_size: int, hidden: Sequence[int] = (256,), *, key,
                 likelihood: str = "bernoulli", n_components: int | None = None,
                 decoder_hidden: Sequence[int] | None = None, activation: str = "relu", noise_scale: float = 1.0,
                 learn_noise: bool = True, dtype=None):
        r"""Glorot-uniform weights, zero biases, a prior with equal components.

        Args:
            in_size: `D`, number of input features.
            latent_size: `d`, dimension of $z$.
            hidden: widths of the encoder's hidden layers (empty: an affine encoder).
            key: a JAX PRNG key.
            likelihood: `"bernoulli"` (data in `[0, 1]`) or `"gaussian"`.
            n_components: `None` for the prior $\mathcal N(0, I)$, or `K` for a learned mixture prior.
            decoder_hidden: widths of the decoder's hidden layers; `None` mirrors `hidden`.
            activation: hidden activation of both networks, a key of `jaxprob.nn.ACTIVATIONS`.
            noise_scale: initial $s$ of the Gaussian decoder.
            learn_noise: train $s$ (otherwise it stays at `noise_scale`).
            dtype: floating dtype of the parameters (default: JAX's default float).
        """
        check_key(key)
        check_choice(likelihood, "likelihood", LIKELIHOODS)
        in_size = check_int(in_size, "in_size", minimum=1)
        latent_size = check_int(latent_size, "latent_size", minimum=1)
        if n_components is not None:
            n_components = check_int(n_components, "n_components", minimum=1)
        if not (np.isfinite(float(noise_scale)) and float(noise_scale) > 0):
            raise ValueError(f"`noise_scale` must be a positive finite number, got {noise_scale}")
        hidden = tuple(hidden)
        decoder_hidden = tuple(reversed(hidden)) if decoder_hidden is None else tuple(decoder_hidden)
        dtype = jnp.zeros(()).dtype if dtype is None else jnp.dtype(dtype)
        k_enc, k_dec = jax.random.split(key)
        self.encoder = nn.MLP(in_size, 2 * latent_size, hidden, key=k_enc, activation=activation, dtype=dtype)
        self.decoder = nn.MLP(latent_size, in_size, decoder_hidden, key=k_dec, activation=activation, dtype=dtype)
        self.log_noise = jnp.asarray(math.log(float(noise_scale)), dtype) if likelihood == "gaussian" else None
        if n_components is None:
            self.prior_logits = self.prior_means = self.prior_log_scales = None
        else:
            self.prior_logits = jnp.zeros((n_components,), dtype)
            self.prior_means = jnp.zeros((n_components, latent_size), dtype)
            self.prior_log_scales = jnp.zeros((n_components, latent_size), dtype)
        self.likelihood = likelihood
        self.learn_noise = bool(learn_noise)

    @property
    def in_size(self) -> int:
        """`D`, the number of input features."""
        return self.encoder.weights[0].shape[0]

    @property
    def latent_size(self) -> int:
        """`d`, the dimension of the latent variable."""
        return self.decoder.weights[0].shape[0]

    @property
    def n_components(self) -> int | None:
        r"""`K` of the mixture prior, `None` for the $\mathcal N(0, I)$ prior."""
        return None if self.prior_logits is None else self.prior_logits.shape[0]

    @property
    def output_activation(self) -> str:
        """`"sigmoid"` for the Bernoulli decoder (its outputs are logits), `"identity"` for the Gaussian one."""
        return "sigmoid" if self.likelihood == "bernoulli" else "identity"

    def posterior(self, x):
        r"""Mean and log-variances of $q_\phi(z \mid x)$: two arrays `(..., d)` for `x` of shape `(..., D)`."""
        _check_vae_axis(x, self.in_size, "x", "the VAE's input size")
        out = self.encoder(x)
        return out[..., : self.latent_size], out[..., self.latent_size:]

    def encode(self, x):
        r"""The code of `x`: the posterior mean $\mu_\phi(x)$, `(..., d)`."""
        return self.posterior(x)[0]

    def decode_logits(self, z):
        """Decoder outputs `(..., D)` for `z` of shape `(..., d)`: Bernoulli logits or Gaussian means."""
        _check_vae_axis(z, self.latent_size, "z", "the VAE's latent size")
        return self.decoder(z)

    def decode(self, z):
        r"""Mean of $p_\theta(x \mid z)$, `(..., D)`: pixel probabilities (Bernoulli) or the Gaussian mean."""
        return nn.ACTIVATIONS[self.output_activation](self.decode_logits(z))

    def __call__(self, x):
        """Reconstruction: the decoder's mean at the posterior mean of `x` (no sampling)."""
        return self.decode(self.encode(x))

    def log_likelihood(self, x, z):
        r"""$\log p_\theta(x \mid z)$, summed over the `D` features.

        Args:
            x: `(..., D)` data.
            z: `(..., d)` latent values; the leading axes broadcast against those of `x`.

        Returns:
            `(...)` log-likelihoods in nats.
        """
        out = self.decode_logits(z)
        if self.likelihood == "bernoulli":
            return jnp.sum(x * out - jax.nn.softplus(out), axis=-1)
        log_s = self.log_noise if self.learn_noise else jax.lax.stop_gradient(self.log_noise)
        sq = jnp.sum(jnp.square(x - out), axis=-1)
        return -0.5 * sq * jnp.exp(-2.0 * log_s) - x.shape[-1] * (log_s + 0.5 * _LOG_2PI)

    def prior_log_prob(self, z):
        r"""$\log p(z)$ for `z` of shape `(..., d)`: `(...)` log-densities."""
        _check_vae_axis(z, self.latent_size, "z", "the VAE's latent size")
        if self.prior_logits is None:
            return -0.5 * jnp.sum(jnp.square(z) + _LOG_2PI, axis=-1)
        scaled = (z[..., None, :] - self.prior_means) * jnp.exp(-self.prior_log_scales)
        comp = -0.5 * jnp.sum(jnp.square(scaled) + _LOG_2PI, axis=-1) - jnp.sum(self.prior_log_scales, axis=-1)
        return jax.nn.logsumexp(jax.nn.log_softmax(self.prior_logits) + comp, axis=-1)

    def prior(self) -> mixture.Mixture:
        r"""The prior as a diagonal Gaussian [Mixture][jaxprob.em.Mixture] (one standard component for
        $\mathcal N(0, I)$), for `mixture.sample`, `mixture.predict` and the other mixture functions."""
        if self.prior_logits is None:
            d = self.latent_size
            return mixture.make_gmm(jnp.ones(1), jnp.zeros((1, d)), jnp.ones((1, d)), "diag")
        return mixture.make_gmm(jax.nn.softmax(self.prior_logits), self.prior_means,
                                jnp.exp(2.0 * self.prior_log_scales), "diag")

    def _draws(self, x, key, n_samples):
        mean, log_var = self.posterior(x)  # (d,)
        eps = jax.random.normal(key, (n_samples, mean.shape[-1]), mean.dtype)
        z = mean + jnp.exp(0.5 * log_var) * eps
        # log q(z|x) at z = mean + sigma * eps: the quadratic form is |eps|^2 (no division by sigma)
        log_q = -0.5 * jnp.sum(jnp.square(eps) + log_var + _LOG_2PI, axis=-1)
        return mean, log_var, z, log_q

    def _elbo_one(self, x, key, n_samples):
        mean, log_var, z, log_q = self._draws(x, key, n_samples)
        log_lik = self.log_likelihood(x, z)  # (S,)
        if self.prior_logits is None:  # KL(q || N(0, I)) in closed form: a lower-variance estimate
            kl = 0.5 * jnp.sum(jnp.exp(log_var) + jnp.square(mean) - 1.0 - log_var)
            return jnp.mean(log_lik) - kl
        return jnp.mean(log_lik + self.prior_log_prob(z) - log_q)

    def _iwae_one(self, x, key, n_samples):
        _, _, z, log_q = self._draws(x, key, n_samples)
        log_w = self.log_likelihood(x, z) + self.prior_log_prob(z) - log_q
        return jax.nn.logsumexp(log_w) - math.log(n_samples)

    def _per_sample(self, fn, x, key, n_samples):
        _check_vae_axis(x, self.in_size, "x", "the VAE's input size")
        n_samples = check_int(n_samples, "n_samples", minimum=1)
        if jnp.ndim(x) == 1:
            return fn(x, key, n_samples)
        if jnp.ndim(x) != 2:
            raise ValueError(f"`x` must have shape ({self.in_size},) or (n, {self.in_size}), got {jnp.shape(x)}")
        keys = jax.random.split(key, x.shape[0])
        return jax.vmap(lambda xi, ki: fn(xi, ki, n_samples))(x, keys)

    def elbo(self, x, key, n_samples: int = 1):
        r"""Monte-Carlo estimate of the evidence lower bound of each sample, in nats.

        $$\mathcal L(x) = \mathbb E_{q_\phi(z \mid x)}\big[\log p_\theta(x \mid z)\big]
        - \mathrm{KL}\big(q_\phi(z \mid x) \,\Vert\, p(z)\big) \le \log p_\theta(x),$$

        averaged over `n_samples` reparameterised draws of $z$. The KL term is exact for the $\mathcal N(0, I)$
        prior and estimated by $\log q_\phi(z \mid x) - \log p(z)$ at the same draws for a mixture prior.

        Args:
            x: `(D,)` or `(n, D)` data.
            key: a JAX PRNG key (split into one key per sample for a batch).
            n_samples: draws of $z$ per sample (static).

        Returns:
            `()` or `(n,)` bounds.
        """
        return self._per_sample(self._elbo_one, x, key, n_samples)

    def iwae(self, x, key, n_samples: int = 64):
        r"""The importance-weighted bound of each sample (Burda et al., 2016), in nats.

        $$\mathcal L_K(x) = \log \frac1K \sum_{k=1}^K \frac{p_\theta(x \mid z_k)\, p(z_k)}{q_\phi(z_k \mid x)},
        \quad z_k \sim q_\phi(z \mid x),$$

        a lower bound on $\log p_\theta(x)$ in expectation that rises with $K$ and reaches $\log p_\theta(x)$ as
        $K \to \infty$; $K = 1$ is the ELBO with the KL term estimated by sampling.

        Args:
            x: `(D,)` or `(n, D)` data.
            key: a JAX PRNG key (split into one key per sample for a batch).
            n_samples: $K$ (static).

        Returns:
            `()` or `(n,)` bounds.
        """
        return self._per_sample(self._iwae_one, x, key, n_samples)


def _check_vae_axis(x, size, name, what):
    if jnp.ndim(x) < 1:
        raise ValueError(f"`{name}` must have a last axis of size {size}, got a scalar")
    if jnp.shape(x)[-1] != size:
        raise ValueError(f"`{name}` has {jnp.shape(x)[-1]} features but {what} is {size}")


def _check_vae(model):
    if not isinstance(model, VAE):
        raise TypeError(f"`model` must be a VAE, got {type(model).__name__}")


def _check_vae_x(x, model, name="x"):
    x = _check_x(x, model, name)
    if model.likelihood == "bernoulli" and (float(jnp.min(x)) < 0 or float(jnp.max(x)) > 1):
        raise ValueError(f"the Bernoulli decoder needs `{name}` in [0, 1], got values in "
                         f"[{float(jnp.min(x)):.3g}, {float(jnp.max(x)):.3g}]")
    return x


# training losses: cached per (objective, number of draws), so that the compiled epoch is reused
@functools.lru_cache(maxsize=64)
def _vae_loss(objective: str, n_samples: int):
    def loss(model, batch, key):
        x = batch[0]
        bound = model.elbo(x, key, n_samples) if objective == "elbo" else model.iwae(x, key, n_samples)
        return -jnp.mean(bound)

    return loss


def fit_vae(model: VAE, x: ArrayLike, *, key: jax.Array, objective: str = "elbo", n_samples: int = 1,
            optimizer: optax.GradientTransformation | None = None, learning_rate: float = 1e-3, n_epochs: int = 20,
            batch_size: int | None = None, l2: float = 0.0, val_x: ArrayLike | None = None, patience: int | None = None,
            progress: bool | int = False, opt_state: optax.OptState | None = None) -> tuple[VAE, nn.TrainInfo]:
    r"""Train a VAE by maximising a variational bound with the shared loop [train][jaxprob.nn.train].

    Minimises the mean negative bound per sample (nats): $-\mathcal L(x)$ with `n_samples` reparameterised draws
    (`objective="elbo"`), or the importance-weighted $-\mathcal L_K(x)$ with $K =$ `n_samples`
    (`objective="iwae"`). Every minibatch step gets fresh draws from `key` (the loop's `stochastic_loss`); the
    validation loss uses the same draws after every epoch, so that early stopping compares the epochs on equal
    terms. The same key gives bit-identical weights, and a second call with the same shapes, objective, number of
    draws and optimizer reuses the compiled epoch.

    With a mixture prior, train first with its components equal, then
    [init_mixture_prior][jaxprob.autoencoder.init_mixture_prior], then train again (see the VAE's notes).

    Args:
        model: the initial [VAE][jaxprob.autoencoder.VAE].
        x: `(n, D)` training data (in `[0, 1]` for the Bernoulli decoder).
        key: a JAX PRNG key for the minibatch order and the draws.
        objective: `"elbo"` or `"iwae"`.
        n_samples: draws of $z$ per sample and step.
        optimizer: an Optax gradient transformation; `None` means `optax.adam(learning_rate)`.
        learning_rate: used when `optimizer` is `None`.
        n_epochs: maximum number of epochs.
        batch_size: minibatch size, at most `n`; `None` means `min(128, n)`.
        l2: L2 penalty on the weight matrices (the mixture prior's `(K, d)` means and log-scales are matrices
            too, and are penalised with them).
        val_x: optional `(m, D)` validation data (negative bound after every epoch, best model kept).
        patience: early-stopping patience in epochs (needs `val_x`).
        progress: print a progress bar with the losses (`True`, or every `k` epochs).
        opt_state: optional optimizer state to resume from.

    Returns:
        `(model, info)`: the trained VAE and a [TrainInfo][jaxprob.nn.TrainInfo] whose losses are negative bounds
        in nats per sample.

    Raises:
        ValueError: input size not matching the model, NaN or infinite values (naming the first bad sample), data
            outside `[0, 1]` for the Bernoulli decoder, `batch_size` larger than the data, an unknown objective.
        FloatingPointError: the loss became NaN or infinite during training (naming the epoch and step).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import autoencoder
        >>> x = (jax.random.uniform(jax.random.key(1), (256, 1)) > jnp.linspace(0.1, 0.9, 6)).astype(jnp.float32)
        >>> vae = autoencoder.VAE(6, 1, (16,), key=jax.random.key(0))
        >>> before = float(-autoencoder.elbo(vae, x, key=jax.random.key(3), n_samples=8).mean())
        >>> vae, info = autoencoder.fit_vae(vae, x, key=jax.random.key(2), learning_rate=1e-2, n_epochs=30)
        >>> after = float(-autoencoder.elbo(vae, x, key=jax.random.key(3), n_samples=8).mean())
        >>> bool(after < 0.8 * before)
        True
    """
    _check_vae(model)
    check_key(key)
    check_choice(objective, "objective", OBJECTIVES)
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    x = _check_vae_x(x, model)
    n = x.shape[0]
    if val_x is not None:
        val_x = _check_vae_x(val_x, model, "val_x")
    if batch_size is None:
        batch_size = min(128, n)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if batch_size > n:
        raise ValueError(f"`batch_size` ({batch_size}) is larger than the number of training samples ({n})")
    return nn.train(model, _vae_loss(objective, n_samples), (x,), key=key, optimizer=optimizer,
                    learning_rate=learning_rate, n_epochs=n_epochs, batch_size=batch_size, l2=l2,
                    val_data=None if val_x is None else (val_x,), patience=patience, progress=progress,
                    opt_state=opt_state, stochastic_loss=True)


@functools.lru_cache(maxsize=64)
def _bound_fn(kind: str, n_samples: int):
    def fn(model, xb, kb):
        one = model.elbo if kind == "elbo" else model.iwae
        return jax.vmap(lambda xi, ki: one(xi, ki, n_samples))(xb, kb)

    return fn


@eqx.filter_jit
def _chunked_keyed(fn, model, x, keys, batch_size):
    n = x.shape[0]
    n_full = n // batch_size
    parts = []
    if n_full:
        blocks = x[: n_full * batch_size].reshape(n_full, batch_size, x.shape[1])
        key_blocks = keys[: n_full * batch_size].reshape(n_full, batch_size, *keys.shape[1:])
        parts.append(jax.lax.map(lambda b: fn(model, *b), (blocks, key_blocks)).reshape(n_full * batch_size))
    if n - n_full * batch_size:
        parts.append(fn(model, x[n_full * batch_size:], keys[n_full * batch_size:]))
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts)


def _bounds(kind, model, x, key, n_samples, batch_size):
    _check_vae(model)
    check_key(key)
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    x = _check_vae_x(x, model)
    if batch_size is None:
        batch_size = max(1, 32768 // n_samples)  # about 32k decoded draws per chunk
    batch_size = min(check_int(batch_size, "batch_size", minimum=1), x.shape[0])
    keys = jax.random.split(key, x.shape[0])  # as the VAE's methods do: the result does not depend on chunking
    return _chunked_keyed(_bound_fn(kind, n_samples), model, x, keys, batch_size)


def elbo(model: VAE, x: ArrayLike, *, key: jax.Array, n_samples: int = 1, batch_size: int | None = None) -> jax.Array:
    r"""Per-sample evidence lower bound $\mathcal L(x)$ of a data set, in nats, by chunks in one compiled program.

    The same values as `model.elbo(x, key, n_samples)` (see [VAE.elbo][jaxprob.autoencoder.VAE.elbo]): each sample
    gets its own key from `jax.random.split(key, n)`, so the chunking changes nothing.

    Args:
        model: a [VAE][jaxprob.autoencoder.VAE].
        x: `(n, D)` data.
        key: a JAX PRNG key.
        n_samples: draws of $z$ per sample.
        batch_size: samples per chunk (memory only); `None` means about 32,768 draws per chunk.

    Returns:
        `(n,)` bounds; their mean is the data set's ELBO per sample. Divide by `D` for nats per feature.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import autoencoder
        >>> vae = autoencoder.VAE(6, 2, (8,), key=jax.random.key(0))
        >>> x = jnp.full((10, 6), 0.5)
        >>> b = autoencoder.elbo(vae, x, key=jax.random.key(1), batch_size=3)
        >>> b.shape, bool(jnp.allclose(b, vae.elbo(x, jax.random.key(1)), atol=1e-5))
        ((10,), True)
    """
    return _bounds("elbo", model, x, key, n_samples, batch_size)


def iwae_bound(model: VAE, x: ArrayLike, *, key: jax.Array, n_samples: int = 100,
               batch_size: int | None = None) -> jax.Array:
    r"""Per-sample importance-weighted bound $\mathcal L_K(x)$ of a data set, in nats (an evaluation metric).

    $\mathcal L_K(x) = \log \frac1K\sum_k p_\theta(x \mid z_k)\,p(z_k) / q_\phi(z_k \mid x)$ with $K$ = `n_samples`
    draws from the encoder (see [VAE.iwae][jaxprob.autoencoder.VAE.iwae]). Its expectation rises with $K$ towards
    $\log p_\theta(x)$, so held-out log-likelihoods are reported with a large $K$ (Burda et al. use 5,000).

    Args:
        model: a [VAE][jaxprob.autoencoder.VAE].
        x: `(n, D)` data.
        key: a JAX PRNG key (one key per sample, as for [elbo][jaxprob.autoencoder.elbo]).
        n_samples: $K$.
        batch_size: samples per chunk (memory only); `None` means about 32,768 draws per chunk.

    Returns:
        `(n,)` bounds.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import autoencoder
        >>> vae = autoencoder.VAE(6, 2, (8,), key=jax.random.key(0))
        >>> x = jnp.full((200, 6), 0.5)
        >>> l1 = autoencoder.iwae_bound(vae, x, key=jax.random.key(1), n_samples=1).mean()
        >>> l50 = autoencoder.iwae_bound(vae, x, key=jax.random.key(1), n_samples=50).mean()
        >>> bool(l50 > l1)
        True
    """
    return _bounds("iwae", model, x, key, n_samples, batch_size)


@functools.partial(jax.jit, static_argnums=2)
def _sample_prior(model, key, n_samples):
    return _sample_prior_impl(model, key, n_samples)


def _sample_prior_impl(model, key, n_samples):
    d = model.latent_size
    if model.prior_logits is None:
        z = jax.random.normal(key, (n_samples, d), model.decoder.weights[0].dtype)
    else:
        k_comp, k_z = jax.random.split(key)
        comp = jax.random.categorical(k_comp, model.prior_logits, shape=(n_samples,))
        eps = jax.random.normal(k_z, (n_samples, d), model.prior_means.dtype)
        z = model.prior_means[comp] + jnp.exp(model.prior_log_scales[comp]) * eps
    return model.decode(z), z


def sample_vae(model: VAE, n_samples: int, *, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""Draw codes from the prior, $z \sim p(z)$, and decode them: new samples of the model.

    Args:
        model: a [VAE][jaxprob.autoencoder.VAE].
        n_samples: number of samples.
        key: a JAX PRNG key.

    Returns:
        `(x, z)`: the `(n_samples, D)` means of $p_\theta(x \mid z)$ (pixel probabilities for the Bernoulli
        decoder: the usual images to show) and the `(n_samples, d)` codes.

    Examples:
        >>> import jax
        >>> from jaxprob import autoencoder
        >>> vae = autoencoder.VAE(6, 2, (8,), key=jax.random.key(0), n_components=3)
        >>> x, z = autoencoder.sample_vae(vae, 4, key=jax.random.key(1))
        >>> x.shape, z.shape
        ((4, 6), (4, 2))
    """
    _check_vae(model)
    check_key(key)
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    return _sample_prior(model, key, n_samples)


def init_mixture_prior(model: VAE, x: ArrayLike, *, key: jax.Array, n_init: int = 3, max_iter: int = 200,
                       reg_covar: float = 1e-4, batch_size: int = 4096) -> tuple[VAE, mixture.FitInfo]:
    r"""Place the components of a VAE's mixture prior on the codes of `x`, by EM.

    Fits a diagonal Gaussian mixture with the prior's `K` components to the posterior means $\mu_\phi(x)$
    ([jaxprob.mixture.fit][jaxprob.mixture.fit]) and copies its weights, means and standard deviations into the
    prior. This is VaDE's initialisation (Jiang et al., 2017): train first with equal components (the
    $\mathcal N(0, I)$ prior), call this, then train everything together
    ([fit_vae][jaxprob.autoencoder.fit_vae]) so that the components follow the clusters of codes.

    Args:
        model: a [VAE][jaxprob.autoencoder.VAE] with `n_components` set.
        x: `(n, D)` data (usually the training data).
        key: a JAX PRNG key for EM's initialisation.
        n_init: EM restarts.
        max_iter: EM iterations at most.
        reg_covar: added to the variances, in the units of the codes.
        batch_size: chunk size of the encoding.

    Returns:
        `(model, info)`: the VAE with its new prior and the mixture's [FitInfo][jaxprob.em.FitInfo].

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxprob import autoencoder
        >>> vae = autoencoder.VAE(6, 2, (8,), key=jax.random.key(0), n_components=2)
        >>> x = jax.random.uniform(jax.random.key(1), (100, 6))
        >>> vae, info = autoencoder.init_mixture_prior(vae, x, key=jax.random.key(2))
        >>> vae.prior_means.shape, bool(jnp.allclose(jax.nn.softmax(vae.prior_logits).sum(), 1.0))
        ((2, 2), True)
    """
    _check_vae(model)
    check_key(key)
    if model.n_components is None:
        raise ValueError("`model` has the N(0, I) prior: create it with `n_components=K` for a mixture prior")
    z = encode(model, x, batch_size=batch_size)
    gmm, info = mixture.fit(z, model.n_components, key=key, covariance_type="diag", reg_covar=reg_covar,
                            n_init=n_init, max_iter=max_iter)
    dtype = model.prior_means.dtype
    # weights of collapsed components can be 0: a floor keeps the logits finite
    logits = jnp.log(jnp.maximum(gmm.weights, jnp.finfo(dtype).tiny)).astype(dtype)
    new = (logits, gmm.means.astype(dtype), 0.5 * jnp.log(gmm.covariances).astype(dtype))  # (K, d) variances
    return eqx.tree_at(lambda m: (m.prior_logits, m.prior_means, m.prior_log_scales), model, new), info
