"""The seed's ``uisrnn.loss_func``, by name, on JAX arrays.

``weighted_mse_loss``, ``sigma2_prior_loss`` and ``regularization_loss`` of
uisrnn 0.1.2 with the seed's arguments and numbers, taking NumPy or JAX
arrays (not torch tensors) and returning JAX scalars, differentiable with
`jax.grad`. Our own training uses `uisrnn_jax.losses`, which marks padding
with a mask; `weighted_mse_loss` keeps the seed's rule instead: a step whose
first dimension has zero error is padding and is not counted.
"""

from __future__ import annotations

from collections.abc import Iterable

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from uisrnn_jax import losses


def weighted_mse_loss(
  input_tensor: ArrayLike, target_tensor: ArrayLike, weight: ArrayLike = 1
) -> jax.Array:
  """Squared error weighted per dimension, averaged over non-padding steps.

  ``sum((input - target)**2 * weight) / #steps``, where a step (a vector over
  the last axis) counts unless its first entry has zero error: the seed's
  padding rule (its batches are zero-padded, and the training target equals
  the input there). The seed's ``fit`` passes ``weight = 1 / (2 sigma2)``.

  >>> float(weighted_mse_loss(jnp.array([[1.0, 2.0], [0.0, 0.0]]),
  ...                         jnp.zeros((2, 2)), jnp.array([1.0, 0.5])))
  3.0

  Args:
    input_tensor: float[..., D] predictions.
    target_tensor: float[..., D] targets, same shape.
    weight: float[D] (or a scalar) weight per dimension.

  Returns:
    Scalar; NaN when every step is padding, as in the seed (0 / 0).
  """
  err2 = (jnp.asarray(input_tensor) - jnp.asarray(target_tensor)) ** 2
  err2 = err2.reshape(-1, err2.shape[-1])
  steps = jnp.sum(err2[:, 0] != 0)
  weight = jnp.broadcast_to(jnp.asarray(weight, err2.dtype), err2.shape[-1:])
  return jnp.sum(err2 * weight) / steps


def sigma2_prior_loss(
  num_non_zero: ArrayLike,
  sigma_alpha: float,
  sigma_beta: float,
  sigma2: ArrayLike,
) -> jax.Array:
  """The inverse-gamma prior on sigma2, scaled per step (the seed's).

  ``sum_d (2 alpha + N + 2) / (2N) log sigma2_d + beta / (sigma2_d N)``, as
  `uisrnn_jax.losses.sigma2_prior` computes it.

  >>> round(float(sigma2_prior_loss(2, 1.0, 1.0, jnp.array([1.0]))), 6)
  0.5

  Args:
    num_non_zero: N, the number of real (non-padding) steps, N >= 1.
    sigma_alpha: inverse-gamma shape.
    sigma_beta: inverse-gamma scale.
    sigma2: float[D] variance per dimension.

  Returns:
    Scalar.
  """
  sigma2 = jnp.asarray(sigma2, jnp.float32)
  return losses.sigma2_prior(
    sigma2,
    jnp.asarray(num_non_zero),
    sigma_alpha=sigma_alpha,
    sigma_beta=sigma_beta,
  )


def regularization_loss(
  params: Iterable[ArrayLike], weight: float
) -> jax.Array:
  """``weight`` times the sum of the (unsquared) L2 norms of ``params``.

  >>> float(regularization_loss([jnp.array([3.0, 4.0]), jnp.ones((1, 1))], 2.0))
  12.0

  Args:
    params: the tensors to regularise (the seed passes its RNN's
      parameters).
    weight: the regularisation weight.

  Returns:
    Scalar (0 for no tensors).
  """
  norms = [optax.safe_norm(jnp.asarray(p, jnp.float32), 0.0) for p in params]
  return weight * sum(norms, jnp.zeros((), jnp.float32))


__all__ = ['regularization_loss', 'sigma2_prior_loss', 'weighted_mse_loss']
