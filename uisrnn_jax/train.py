"""Training: state, optimizer, the jitted step, and the host loop `fit`."""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import struct

from uisrnn_jax import (
  config_check,
  estimators,
  losses,
  metric_writers,
  model,
  parallel,
)
from uisrnn_jax import data as data_lib

Params = model.Params
Metrics = dict[str, jax.Array]

SIGMA2_FLOOR = 1e-6  # the reference clamps sigma2 to this after every update


class TrainState(struct.PyTreeNode):
  """Everything training carries from step to step, as one pytree.

  Attributes:
    step: int32 scalar, steps taken so far (across `fit` calls).
    params: the model's parameter pytree.
    opt_state: optax state.
    transition_bias: float32 scalar p0; NaN until estimated or given.
    transition_bias_denominator: float32 scalar, transitions counted so far.
    crp_alpha: float32 scalar.
    tx: the optax transformation (static).
  """

  step: jax.Array
  params: Params
  opt_state: optax.OptState
  transition_bias: jax.Array
  transition_bias_denominator: jax.Array
  crp_alpha: jax.Array
  tx: optax.GradientTransformation = struct.field(pytree_node=False)


# The config groups training reads; `config_check` checks every field.
_GROUPS = ('model', 'train')


@functools.lru_cache(maxsize=32)
def make_optimizer(
  *, learning_rate: float, grad_max_norm: float, learn_sigma2: bool
) -> optax.GradientTransformation:
  """Adam everywhere; the network's gradients are clipped by global norm.

  As in the reference, clipping covers the GRU and the mean head only (not the
  initial hidden state or sigma2), and a given sigma2 is frozen. Cached: the
  transformation is a static part of `TrainState`, so equal settings must
  give the identical object, or every new state would recompile the step.

  Args:
    learning_rate: Adam's step size.
    grad_max_norm: global-norm clip for the network's gradients.
    learn_sigma2: False freezes ``params['sigma2']``.

  Returns:
    An optax transformation over the parameter pytree.
  """

  def labels(params):
    net = jax.tree.map(
      lambda _: 'net', {'rnn': params['rnn'], 'head': params['head']}
    )
    return {
      **net,
      'init_hidden': 'free',
      'sigma2': 'free' if learn_sigma2 else 'frozen',
    }

  return optax.partition(
    {
      'net': optax.chain(
        optax.clip_by_global_norm(grad_max_norm), optax.adam(learning_rate)
      ),
      'free': optax.adam(learning_rate),
      'frozen': optax.set_to_zero(),
    },
    labels,
  )


@functools.partial(
  jax.jit,
  static_argnames=('observation_dim', 'hidden_size', 'depth', 'sigma2', 'tx'),
)
def _init_arrays(key, *, observation_dim, hidden_size, depth, sigma2, tx):
  # One program instead of a compile per eager op (seconds in a new process).
  params = model.init_params(
    key,
    observation_dim=observation_dim,
    hidden_size=hidden_size,
    depth=depth,
    sigma2=sigma2,
  )
  return params, tx.init(params)


def create_train_state(key: jax.Array, config: Any) -> TrainState:
  """A fresh state from the config's ``model`` and ``train`` groups.

  Args:
    key: PRNG key for the weights.
    config: the full config (``model`` and ``train`` groups are read).

  Returns:
    The initial TrainState (p0 as given, or NaN until estimated).

  Raises:
    errors.ConfigError: an invalid config (`config_check.validate_config`).
  """
  config_check.validate_config(config, required=_GROUPS)
  m, t = config.model, config.train
  tx = make_optimizer(
    learning_rate=float(t.learning_rate),
    grad_max_norm=float(t.grad_max_norm),
    learn_sigma2=m.sigma2 is None,
  )
  params, opt_state = _init_arrays(
    key,
    observation_dim=int(m.observation_dim),
    hidden_size=int(m.rnn_hidden_size),
    depth=int(m.rnn_depth),
    sigma2=None if m.sigma2 is None else float(m.sigma2),
    tx=tx,
  )
  p0 = math.nan if m.transition_bias is None else m.transition_bias
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state=opt_state,
    transition_bias=jnp.asarray(p0, jnp.float32),
    transition_bias_denominator=jnp.zeros((), jnp.float32),
    crp_alpha=jnp.asarray(m.crp_alpha, jnp.float32),
    tx=tx,
  )


def make_train_step(
  loss_kw: dict[str, Any],
) -> Callable[
  [TrainState, dict[str, jax.Array], jax.Array], tuple[TrainState, Metrics]
]:
  """The pure training step, closed over the loss hyperparameters.

  Args:
    loss_kw: keyword arguments of `losses.total_loss` (see
      `losses.loss_kwargs`).

  Returns:
    ``train_step(state, batch, key) -> (state, metrics)``; jit it (the loop
    does, with the state donated). ``metrics`` has ``loss``, ``nll``,
    ``sigma2_prior`` and ``regularization``.
  """

  def train_step(state, batch, key):
    key = jax.random.fold_in(key, state.step)
    grad_fn = jax.value_and_grad(losses.total_loss, has_aux=True)
    (loss, parts), grads = grad_fn(state.params, batch, key, **loss_kw)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    params = {**params, 'sigma2': jnp.maximum(params['sigma2'], SIGMA2_FLOOR)}
    state = state.replace(
      step=state.step + 1, params=params, opt_state=opt_state
    )
    return state, {'loss': loss, **parts}

  return train_step


# Planning batch shapes (`data.plan_shapes`): one compile of the step, in
# seconds (H=512 on a 2-core CPU: about 3 s, roughly independent of H), and
# the step's throughput, which turns a row-step into seconds.
COMPILE_SECONDS = 3.0
STEP_FLOPS_PER_SECOND = 1.5e11
MIN_ROW_STEP_SECONDS = 2e-6  # tiny models: per-step overheads dominate
PLAN_BATCHES = 1000  # batches drawn to plan a run's shapes


def row_step_seconds(model_config: Any) -> float:
  """Estimated time of one row-step (one observation slot) of the step.

  Forward, backward and weight gradients of the GRU and the mean head take
  about 24 H (H + I) flops per slot and layer (I: the layer's input size).
  """
  h, d = model_config.rnn_hidden_size, model_config.observation_dim
  flops = 24 * h * (h + d) + 24 * h * 2 * h * (model_config.rnn_depth - 1)
  return max(flops / STEP_FLOPS_PER_SECOND, MIN_ROW_STEP_SECONDS)


def planned_shapes(
  samples: data_lib.SampleSet, config: Any, *, seed: int, end: int = 0
) -> list[data_lib.Shape] | None:
  """The batch shapes of a run on ``samples`` (`data.plan_shapes`).

  Plans from the batches of steps 0 to ``config.train.train_iteration``, or
  to ``end`` if later (a deterministic sample of `PLAN_BATCHES` of them
  when there are more), drawn as `fit` draws them. Within a run of
  ``train_iteration`` steps the plan depends on the data, the seed and the
  config only, not on where a `fit` call starts or stops, so training in
  several calls, or resuming from a checkpoint, pads every batch as one
  uninterrupted run does. A batch that fits none of the shapes takes its
  own (`data.packed_layout`).

  Args:
    samples: the run's training samples.
    config: full config (``model``, ``train``).
    seed: the data seed.
    end: the step the current `fit` call stops at.

  Returns:
    The shapes, or None (plan off: ``train.compile_seconds`` is 0, or every
    step trains on all samples, which is one shape anyway).
  """
  t = config.train
  seconds = float(t.get('compile_seconds', COMPILE_SECONDS))
  horizon = max(int(t.train_iteration), end)
  if seconds <= 0 or t.batch_size is None or horizon < 1:
    return None
  count = min(horizon, PLAN_BATCHES)
  steps = np.unique(np.linspace(0, horizon - 1, count).round())
  batches = [
    samples.lengths[
      samples.sample_indices(
        t.batch_size, np.random.default_rng((seed, 1, int(step)))
      )
    ]
    for step in steps
  ]
  return data_lib.plan_shapes(
    batches,
    t.bucket,
    compile_cost=seconds / row_step_seconds(config.model),
    weight=horizon / len(steps),
  )


@functools.lru_cache(maxsize=8)
def _jitted_step(loss_items: tuple[tuple[str, Any], ...]):
  return jax.jit(make_train_step(dict(loss_items)), donate_argnums=0)


def update_transition_bias(
  state: TrainState,
  label_sequences: Sequence[Sequence[str]],
  given: float | None,
) -> TrainState:
  """Sets p0: the given value, or the estimate pooled with earlier calls."""
  if given is not None:
    return state.replace(transition_bias=jnp.asarray(given, jnp.float32))
  p0, denom = estimators.estimate_transition_bias(label_sequences)
  old_p0 = float(state.transition_bias)
  old_denom = float(state.transition_bias_denominator)
  if not math.isnan(old_p0) and old_denom > 0:
    p0, denom = estimators.combine_transition_bias(old_p0, old_denom, p0, denom)
  return state.replace(
    transition_bias=jnp.asarray(p0, jnp.float32),
    transition_bias_denominator=jnp.asarray(denom, jnp.float32),
  )


def update_crp_alpha(
  state: TrainState, label_sequences: Sequence[Sequence[str]], estimator: str
) -> TrainState:
  """Re-estimates crp_alpha from labels when the config asks for it."""
  config_check.check_field('model.crp_alpha_estimator', estimator)
  if estimator == 'given':
    return state
  if estimator == 'range_search':
    alpha = estimators.estimate_crp_alpha_range_search(label_sequences)
  else:
    alpha = estimators.estimate_crp_alpha_closed_form(label_sequences)
  return state.replace(crp_alpha=jnp.asarray(alpha, jnp.float32))


def _progress(total: int, enabled: bool | None):
  from tqdm.auto import tqdm

  if enabled is None:
    enabled = sys.stderr.isatty()
  return tqdm(total=total, disable=not enabled, desc='train', unit='step')


def fit(
  state: TrainState,
  sequences: np.ndarray | Sequence[np.ndarray],
  cluster_ids: Any,
  config: Any,
  *,
  num_steps: int | None = None,
  seed: int | None = None,
  writer: metric_writers.MetricWriter | None = None,
  progress: bool | None = None,
  on_step: Callable[[TrainState], None] | None = None,
  update_estimates: bool = True,
  mesh: jax.sharding.Mesh | None = None,
) -> TrainState:
  """Trains from ``state`` on one chunk of data; call again to continue.

  p0 is (re-)estimated from the labels unless given, pooled with earlier
  calls weighted by their transition counts; crp_alpha is re-estimated when
  ``config.model.crp_alpha_estimator`` asks for it.

  Randomness is a function of ``seed`` and the global step only: the data
  order and permuted copies come from ``np.random.default_rng((seed, 0))``,
  the batch of global step s from ``np.random.default_rng((seed, 1, s))`` and
  dropout from ``fold_in(key(seed), s)``, so a run resumed from a checkpoint
  trains exactly like an uninterrupted one. Batch shapes are chosen before
  the first step (`planned_shapes`), so the step compiles for few shapes.

  Args:
    state: from `create_train_state`, a checkpoint, or an earlier `fit`.
    sequences: list of float[N_i, D] arrays, or one concatenated array.
    cluster_ids: matching label sequences (strings).
    config: full config (``model``, ``train``; ``seed``).
    num_steps: steps to run (default ``config.train.train_iteration``).
    seed: data/dropout seed (default ``config.seed``).
    writer: receives metrics every ``config.train.log_every`` steps.
    progress: show a progress bar (default: when stderr is a terminal).
    on_step: called with the state after every step (e.g. checkpointing);
      it should check ``state.step`` itself and stay cheap.
    update_estimates: estimate p0 (and crp_alpha, if configured) from these
      labels; False when resuming an interrupted run on the same data, whose
      checkpoint already holds them.
    mesh: data-parallel training over its devices (`parallel.make_mesh`):
      the state is replicated and every batch split along its rows (padded
      with masked rows to a multiple of the device count). None uses
      ``config.train.num_devices`` (0 = every visible device; one device
      trains without a mesh). Same result as one device up to float
      rounding.

  Returns:
    The trained state (replicated over ``mesh`` when there is one).

  Raises:
    TypeError, ValueError: malformed data, before training.
    errors.ConfigError: an invalid config (`config_check.validate_config`).
    RuntimeError: the loss became NaN or infinite.
  """
  config_check.validate_config(config, required=_GROUPS)
  m, t = config.model, config.train
  seed = config.seed if seed is None else seed
  num_steps = t.train_iteration if num_steps is None else num_steps
  if num_steps < 0:
    raise ValueError(f'num_steps must be >= 0, got {num_steps}')
  if mesh is None:
    mesh = parallel.mesh_from_config(t.get('num_devices', 0))
  loss_kw = losses.loss_kwargs(t, m)
  start = int(state.step)
  prep_rng = np.random.default_rng((seed, 0))
  samples, labels = data_lib.prepare_training_data(
    sequences,
    cluster_ids,
    observation_dim=m.observation_dim,
    enforce_uniqueness=t.enforce_cluster_id_uniqueness,
    num_permutations=t.num_permutations,
    rng=prep_rng,
  )
  if isinstance(sequences, np.ndarray) and m.transition_bias is None:
    logging.warning(
      'transition_bias is estimated from one concatenated sequence, so '
      'changes between the original sequences count as speaker changes; '
      'pass a list of sequences, or give model.transition_bias.'
    )
  if update_estimates:
    state = update_transition_bias(state, labels, m.transition_bias)
    state = update_crp_alpha(state, labels, m.crp_alpha_estimator)
  logging.info(
    'fit: %d samples (%d observations), p0=%.4f, crp_alpha=%.4f, %d steps',
    len(samples),
    samples.offsets[-1],
    float(state.transition_bias),
    float(state.crp_alpha),
    num_steps,
  )
  step_fn = _jitted_step(tuple(sorted(loss_kw.items())))
  shapes = planned_shapes(samples, config, seed=seed, end=start + num_steps)
  if shapes is not None:
    logging.info('fit: batch shapes (rows, length) %s', shapes)
  key = jax.random.key(seed)
  if mesh is not None:
    state = parallel.replicate(state, mesh)
  log_every = max(int(t.log_every), 1)
  running = None
  bar = _progress(num_steps, progress)
  tic = time.perf_counter()
  try:
    for step in range(start, start + num_steps):
      rng = np.random.default_rng((seed, 1, step))
      batch = samples.sample_batch(
        t.batch_size, rng, bucket=t.bucket, shapes=shapes
      )
      if mesh is not None:
        batch = parallel.shard_batch(batch, mesh, pad=True)
      state, metrics = step_fn(state, batch, key)
      if on_step is not None:
        on_step(state)
      done = step + 1
      if done % log_every == 0 or done == start + num_steps:
        scalars = {k: float(v) for k, v in parallel.to_host(metrics).items()}
        if not np.isfinite(scalars['loss']):
          raise RuntimeError(
            f'training loss became {scalars["loss"]} at step {done}: lower '
            'train.learning_rate or check the data'
          )
        elapsed = time.perf_counter() - tic
        scalars['steps_per_second'] = (done - start) / max(elapsed, 1e-9)
        running = scalars['loss']
        logging.info(
          'step %d: loss %.4f  nll %.4f  sigma2_prior %.4f  regularization '
          '%.6f',
          done,
          scalars['loss'],
          scalars['nll'],
          scalars['sigma2_prior'],
          scalars['regularization'],
        )
        if writer is not None:
          writer.write_scalars(done, scalars)
        bar.set_postfix(loss=f'{running:.4f}')
      bar.update(1)
  finally:
    bar.close()
    if writer is not None:
      writer.flush()
  return state
