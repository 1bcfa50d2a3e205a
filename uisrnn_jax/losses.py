"""UIS-RNN training loss: likelihood, sigma2 prior and weight regularisation.

Every function is pure and jittable. A training batch is a dict

  {'observations': float32[B, T, D],  # speakers' sub-sequences
   'mask': bool[B, T],                 # True on real (non-padded) steps
   'starts': bool[B, T],               # optional: first step of each one
   'ends': int32[B, T]}                # optional: end (exclusive) of each one

Without ``starts``/``ends`` every row holds one sub-sequence from step 0;
with them (`data.SampleSet.batch` packs that way) a row holds several back to
back. Real steps come before padding. Padding is a mask, never a value: an
embedding entry that is exactly 0.0 (common after a ReLU encoder) is data.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from uisrnn_jax import config_check, model

Batch = dict[str, jax.Array]
Params = model.Params


def negative_log_likelihood(
  means: jax.Array, targets: jax.Array, mask: jax.Array, sigma2: jax.Array
) -> jax.Array:
  """Gaussian negative log-likelihood without its log-variance term.

  Args:
    means: float32[B, T, D] predictions.
    targets: float32[B, T, D] what they predict.
    mask: bool[B, T] real steps.
    sigma2: float32[D] per-dimension variance.

  Returns:
    Scalar: sum over real steps and dimensions of (mean - target)^2 / (2
    sigma2), divided by the number of real steps.

  >>> import jax.numpy as jnp
  >>> float(negative_log_likelihood(jnp.zeros((1, 2, 1)),
  ...     jnp.ones((1, 2, 1)), jnp.array([[True, False]]), jnp.array([0.5])))
  1.0
  """
  err2 = jnp.where(mask[..., None], (means - targets) ** 2, 0.0)
  return jnp.sum(err2 / (2.0 * sigma2)) / jnp.maximum(jnp.sum(mask), 1)


def sigma2_prior(
  sigma2: jax.Array,
  num_steps: jax.Array,
  *,
  sigma_alpha: float,
  sigma_beta: float,
) -> jax.Array:
  """Inverse-gamma prior on sigma2, scaled per real step as in the paper.

  Args:
    sigma2: float32[D].
    num_steps: scalar N, the number of real steps in the batch.
    sigma_alpha: inverse-gamma shape.
    sigma_beta: inverse-gamma scale.

  Returns:
    Scalar: sum_d (2 alpha + N + 2) / (2N) log sigma2_d + beta / (sigma2_d N).
  """
  n = jnp.maximum(num_steps, 1).astype(sigma2.dtype)
  return jnp.sum(
    (2.0 * sigma_alpha + n + 2.0) / (2.0 * n) * jnp.log(sigma2)
    + sigma_beta / (sigma2 * n)
  )


def regularization(params: Params, *, weight: float) -> jax.Array:
  """``weight`` times the sum of unsquared L2 norms of the network's tensors.

  Covers the GRU and the mean head (weights and biases), not the initial
  hidden state nor sigma2, like the reference. ``optax.safe_norm`` keeps the
  gradient finite (zero) at an all-zero tensor, where ``sqrt(sum(p**2))``
  would give NaN.

  Args:
    params: the full parameter pytree.
    weight: the regularisation weight.

  Returns:
    Scalar.
  """
  leaves = jax.tree.leaves((params['rnn'], params['head']))
  return weight * sum(optax.safe_norm(p, 0.0) for p in leaves)


def sample_mean_targets(
  key: jax.Array,
  observations: jax.Array,
  mask: jax.Array,
  num_samples: int,
  ends: jax.Array | None = None,
) -> jax.Array:
  """Targets of the Sample Mean Loss (Fini & Brutti, 2019).

  The target for step t is the mean of ``num_samples`` observations drawn
  uniformly, with replacement, from the sub-sequence's remaining real
  observations ``observations[t:end]``, instead of ``observations[t]`` alone.

  Args:
    key: PRNG key.
    observations: float32[B, T, D].
    mask: bool[B, T].
    num_samples: samples per target.
    ends: optional int32[B, T], the end (exclusive) of the sub-sequence of
      every step; None: one sub-sequence per row, ending at its mask's end.

  Returns:
    float32[B, T, D] (values at padded steps are meaningless and masked).
  """
  batch, steps, _ = observations.shape
  if ends is None:
    ends = jnp.broadcast_to(jnp.sum(mask, axis=1)[:, None], (batch, steps))
  start = jnp.arange(steps)[None, :, None]  # [1, T, 1]
  span = jnp.maximum(ends[..., None] - start, 1)  # [B, T, 1]
  u = jax.random.uniform(key, (batch, steps, num_samples))
  idx = jnp.minimum(start + jnp.floor(u * span).astype(jnp.int32), steps - 1)
  picked = jax.vmap(lambda obs, i: obs[i])(observations, idx)  # [B,T,S,D]
  return jnp.mean(picked, axis=2)


def real_length(mask: jax.Array) -> jax.Array:
  """The steps a batch's network has to run: one past its last real step.

  Steps after it are padding in every row, so `model.predict_means` skips
  them (a batch padded to a long static shape costs what its real steps
  cost).

  Args:
    mask: bool[B, T] real steps.

  Returns:
    int32 scalar in [0, T].

  >>> import jax.numpy as jnp
  >>> int(real_length(jnp.array([[True, False, False], [True, True, False]])))
  2
  """
  steps = jnp.arange(1, mask.shape[1] + 1, dtype=jnp.int32)
  return jnp.max(jnp.where(jnp.any(mask, axis=0), steps, 0))


def total_loss(
  params: Params,
  batch: Batch,
  key: jax.Array,
  *,
  sigma_alpha: float,
  sigma_beta: float,
  regularization_weight: float,
  dropout_rate: float = 0.0,
  loss_samples: int = 0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The UIS-RNN training loss, for ``jax.value_and_grad(has_aux=True)``.

  Args:
    params: the full parameter pytree.
    batch: ``{'observations', 'mask'}`` and optionally ``{'starts',
      'ends'}`` (see the module docstring).
    key: PRNG key for dropout and the Sample Mean Loss draws.
    sigma_alpha: inverse-gamma shape of the sigma2 prior.
    sigma_beta: inverse-gamma scale of the sigma2 prior.
    regularization_weight: weight of the L2-norm regularisation.
    dropout_rate: dropout between stacked GRU layers (0 disables).
    loss_samples: 0 for the standard likelihood (target x_{t+1}); k > 0 for
      the Sample Mean Loss with k future samples per target.

  Returns:
    ``(loss, parts)`` with ``parts = {'nll', 'sigma2_prior',
    'regularization'}`` (scalars) and ``loss`` their sum.
  """
  dropout_key, sample_key = jax.random.split(key)
  observations, mask = batch['observations'], batch['mask']
  means = model.predict_means(
    params,
    observations,
    starts=batch.get('starts'),
    dropout_rate=dropout_rate,
    dropout_key=dropout_key,
    length=real_length(mask),
  )
  targets = observations
  if loss_samples > 0:
    targets = sample_mean_targets(
      sample_key, observations, mask, loss_samples, batch.get('ends')
    )
  sigma2 = params['sigma2']
  parts = {
    'nll': negative_log_likelihood(means, targets, mask, sigma2),
    'sigma2_prior': sigma2_prior(
      sigma2, jnp.sum(mask), sigma_alpha=sigma_alpha, sigma_beta=sigma_beta
    ),
    'regularization': regularization(params, weight=regularization_weight),
  }
  return sum(parts.values()), parts


def loss_kwargs(train_config: Any, model_config: Any) -> dict[str, Any]:
  """Keyword arguments of `total_loss` from the config groups.

  Args:
    train_config: the ``train`` config group.
    model_config: the ``model`` config group.

  Returns:
    A dict of plain Python scalars (hashable, safe to close over in jit).
  """
  config_check.check_field('train.loss', train_config.loss)
  return {
    'sigma_alpha': float(train_config.sigma_alpha),
    'sigma_beta': float(train_config.sigma_beta),
    'regularization_weight': float(train_config.regularization_weight),
    'dropout_rate': float(model_config.rnn_dropout)
    if model_config.rnn_depth >= 2
    else 0.0,
    'loss_samples': int(train_config.loss_samples)
    if train_config.loss == 'sample_mean'
    else 0,
  }
