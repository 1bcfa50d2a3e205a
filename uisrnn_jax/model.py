"""The UIS-RNN network as pure functions over a plain parameter pytree.

Shape letters used in docstrings throughout the package:
  B batch, T time, D observation_dim, H hidden size, L depth (GRU layers),
  K beam size, S max speakers.

Parameters are a dict (a pytree) laid out like PyTorch's modules, so that
weights trained by the reference ``uisrnn`` package load by plain copy:

  {'rnn': [{'w_ih': f32[3H, D or H], 'w_hh': f32[3H, H],
            'b_ih': f32[3H], 'b_hh': f32[3H]}, ...],   # one dict per layer
   'head': {'w1': f32[H, H], 'b1': f32[H], 'w2': f32[D, H], 'b2': f32[D]},
   'init_hidden': f32[L, H],
   'sigma2': f32[D]}

The GRU follows ``torch.nn.GRU`` exactly: gates in (r, z, n) order, separate
input and hidden biases, and the reset gate applied to ``W_hn h + b_hn``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Params = dict[str, Any]

INITIAL_SIGMA2 = 0.1


def init_params(
  key: jax.Array,
  *,
  observation_dim: int,
  hidden_size: int,
  depth: int = 1,
  sigma2: float | None = None,
) -> Params:
  """Initialises parameters the way PyTorch initialises the reference model.

  GRU weights and biases, and both mean-head layers, are drawn uniformly from
  ``[-1/sqrt(fan), 1/sqrt(fan)]`` (fan = hidden size for the GRU, the layer's
  input size for the head); the initial hidden state is zero; sigma2 starts at
  0.1 when it is to be learned, else at the given value.

  Args:
    key: PRNG key.
    observation_dim: D, the embedding dimension.
    hidden_size: H, units per GRU layer.
    depth: L, number of stacked GRU layers.
    sigma2: fixed observation variance, or None to start from 0.1.

  Returns:
    The parameter pytree described in the module docstring (float32).
  """
  if observation_dim < 1 or hidden_size < 1 or depth < 1:
    raise ValueError(
      'observation_dim, hidden_size and depth must be positive, got '
      f'{observation_dim}, {hidden_size}, {depth}'
    )
  h, d = hidden_size, observation_dim
  shapes = []
  for layer in range(depth):
    in_dim = d if layer == 0 else h
    shapes += [(3 * h, in_dim), (3 * h, h), (3 * h,), (3 * h,)]
  shapes += [(h, h), (h,), (d, h), (d,)]
  # Every bound is 1/sqrt(h) (the GRU's fan is H, and so is the input of both
  # head layers), so one draw serves all: a single random-bits kernel
  # compiles in a fraction of the time of one per tensor (~1 s at H=512).
  bound = 1.0 / np.sqrt(h)
  sizes = [int(np.prod(shape)) for shape in shapes]
  flat = jax.random.uniform(
    key, (sum(sizes),), jnp.float32, minval=-bound, maxval=bound
  )
  pieces = iter(
    part.reshape(shape)
    for part, shape in zip(jnp.split(flat, np.cumsum(sizes)[:-1]), shapes)
  )
  rnn = [
    {name: next(pieces) for name in ('w_ih', 'w_hh', 'b_ih', 'b_hh')}
    for _ in range(depth)
  ]
  head = {name: next(pieces) for name in ('w1', 'b1', 'w2', 'b2')}
  return {
    'rnn': rnn,
    'head': head,
    'init_hidden': jnp.zeros((depth, h), jnp.float32),
    'sigma2': jnp.full(
      (d,), INITIAL_SIGMA2 if sigma2 is None else sigma2, jnp.float32
    ),
  }


def gru_gates(
  layer: Mapping[str, jax.Array], h: jax.Array, gi: jax.Array
) -> jax.Array:
  """The recurrent half of a GRU step, given the input projection.

  Args:
    layer: one layer's parameters (``w_hh``, ``b_hh`` are used).
    h: float32[..., H] previous hidden state.
    gi: float32[..., 3H] input projection ``x @ w_ih.T + b_ih``.

  Returns:
    float32[..., H] the new hidden state.
  """
  gh = h @ layer['w_hh'].T + layer['b_hh']
  ir, iz, in_ = jnp.split(gi, 3, axis=-1)
  hr, hz, hn = jnp.split(gh, 3, axis=-1)
  r = jax.nn.sigmoid(ir + hr)
  z = jax.nn.sigmoid(iz + hz)
  n = jnp.tanh(in_ + r * hn)
  return (1.0 - z) * n + z * h


def gru_cell(
  layer: Mapping[str, jax.Array], h: jax.Array, x: jax.Array
) -> jax.Array:
  """One step of one GRU layer, PyTorch equations.

  Args:
    layer: ``{'w_ih': f32[3H, I], 'w_hh': f32[3H, H], 'b_ih', 'b_hh'}``.
    h: float32[..., H] previous hidden state.
    x: float32[..., I] input.

  Returns:
    float32[..., H] the new hidden state.
  """
  return gru_gates(layer, h, x @ layer['w_ih'].T + layer['b_ih'])


def rnn_step(params: Params, h: jax.Array, x: jax.Array) -> jax.Array:
  """One time step through all stacked layers (no dropout: inference).

  Args:
    params: the full parameter pytree.
    h: float32[..., L, H] hidden state of every layer.
    x: float32[..., D] observation.

  Returns:
    float32[..., L, H] the new hidden states; ``[..., -1, :]`` feeds the head.
  """
  new = []
  inp = x
  for i, layer in enumerate(params['rnn']):
    inp = gru_cell(layer, h[..., i, :], inp)
    new.append(inp)
  return jnp.stack(new, axis=-2)


def mean_head(head: Mapping[str, jax.Array], out: jax.Array) -> jax.Array:
  """Linear(H->H) -> ReLU -> Linear(H->D).

  Args:
    head: ``{'w1', 'b1', 'w2', 'b2'}`` in PyTorch's ``[out, in]`` layout.
    out: float32[..., H] top-layer GRU output.

  Returns:
    float32[..., D].
  """
  hidden = jax.nn.relu(out @ head['w1'].T + head['b1'])
  return hidden @ head['w2'].T + head['b2']


def _recurrence_scan(
  w_hh: jax.Array,
  b_hh: jax.Array,
  h0: jax.Array,
  gi: jax.Array,
  keep: jax.Array,
  length: jax.Array,
  *,
  residuals: bool,
) -> tuple[jax.Array, ...]:
  """The forward GRU recurrence; optionally also the gates for the backward.

  ``w_hh`` is transposed once, outside the loop, so the step's matmul reads
  the weights in the layout it wants instead of transposing 3H x H values
  every step. The loop stops at ``length`` (a ``while`` loop with a run-time
  trip count), so steps from there on cost nothing; their outputs are zeros.

  Args:
    w_hh: float32[3H, H].
    b_hh: float32[3H].
    h0: float32[B, H].
    gi: float32[T, B, 3H] input projections.
    keep: float32[T, B, 1]; 1 continues from the previous step, 0 restarts
      from ``h0`` (the first step always starts from ``h0``).
    length: int32 scalar, the number of leading steps to compute.
    residuals: also return the gates.

  Returns:
    ``(hs,)`` or ``(hs, r, z, n, hn)``, each float32[T, B, H]; ``hn`` is
    ``h_{t-1} @ W_hn.T + b_hn``, the hidden part of the candidate's input.
  """
  w_hh_t = w_hh.T  # [H, 3H]
  hidden = h0.shape[-1]
  outputs = 5 if residuals else 1

  def body(t, carry):
    h, outs = carry
    g, k = gi[t], keep[t]
    h = jnp.where(k > 0, h, h0)  # restart where k == 0
    gh = h @ w_hh_t + b_hh
    r = jax.nn.sigmoid(g[..., :hidden] + gh[..., :hidden])
    z = jax.nn.sigmoid(
      g[..., hidden : 2 * hidden] + gh[..., hidden : 2 * hidden]
    )
    hn = gh[..., 2 * hidden :]
    n = jnp.tanh(g[..., 2 * hidden :] + r * hn)
    h = (1.0 - z) * n + z * h
    new = (h, r, z, n, hn)[:outputs]
    return h, tuple(o.at[t].set(v) for o, v in zip(outs, new))

  zeros = jnp.zeros(gi.shape[:2] + (hidden,), gi.dtype)
  return jax.lax.fori_loop(0, length, body, (h0, (zeros,) * outputs))[1]


@jax.custom_vjp
def _recurrence(
  w_hh: jax.Array,
  b_hh: jax.Array,
  h0: jax.Array,
  gi: jax.Array,
  keep: jax.Array,
  length: jax.Array,
) -> jax.Array:
  """`gru_recurrence` on the arrays it uses; float32[T, B, H]."""
  return _recurrence_scan(w_hh, b_hh, h0, gi, keep, length, residuals=False)[0]


def _recurrence_fwd(w_hh, b_hh, h0, gi, keep, length):
  """Forward pass that keeps the gates (4 x T x B x H values) for backward."""
  hs, r, z, n, hn = _recurrence_scan(
    w_hh, b_hh, h0, gi, keep, length, residuals=True
  )
  return hs, (w_hh, h0, keep, length, hs, r, z, n, hn)


def _recurrence_bwd(res, dhs):
  """Backward of the recurrence: only dL/dh is carried through time.

  With ``g_t = dL/dh_t`` (the output cotangent plus what flows back from step
  t+1), each pre-activation gradient of step t is ``g_t`` times a factor
  known from the forward pass (``coef_gh``). So the reverse scan does one
  matmul per step, ``dh_{t-1} = g_t * z_t + dgh_t @ W_hh``, and emits
  ``g_t``; the gate gradients, ``dW_hh = sum_t dgh_t^T h_{t-1}`` and
  ``db_hh`` are then elementwise ops or one matmul over all steps at once,
  instead of a 3H x H accumulation inside the loop (plain autodiff). At a
  restart (``keep == 0``) the gradient of the step's input state goes to
  ``h0`` instead of the previous step. Steps at or after ``length`` (zero
  outputs in the forward pass) are skipped here too.

  Args:
    res: residuals from `_recurrence_fwd`.
    dhs: float32[T, B, H] cotangent of the outputs.

  Returns:
    Cotangents of ``(w_hh, b_hh, h0, gi, keep, length)``; ``keep`` and
    ``length`` are treated as constants.
  """
  w_hh, h0, keep, length, hs, r, z, n, hn = res
  shifted = jnp.concatenate([h0[None], hs[:-1]], axis=0)
  h_prev = jnp.where(keep > 0, shifted, h0)  # [T, B, H] input states
  d_an = (1.0 - z) * (1.0 - n * n)  # dh_t / d(candidate pre-activation)
  d_ar = d_an * hn * r * (1.0 - r)  # dh_t / d(reset pre-activation)
  d_az = (h_prev - n) * z * (1.0 - z)  # dh_t / d(update pre-activation)
  d_hn = d_an * r  # dh_t / d(h_{t-1} @ W_hn.T + b_hn)
  coef_gh = jnp.concatenate([d_ar, d_az, d_hn], axis=-1)  # [T, B, 3H]

  def body(i, carry):
    dh, dh0, gs = carry
    t = length - 1 - i
    g = dhs[t] + dh
    dgh = jnp.concatenate([g, g, g], axis=-1) * coef_gh[t]
    d_in = g * z[t] + dgh @ w_hh  # gradient of this step's input state
    k = keep[t]
    return k * d_in, dh0 + (1.0 - k) * d_in, gs.at[t].set(g)

  dh, dh0, g = jax.lax.fori_loop(
    0,
    length,
    body,
    (jnp.zeros_like(h0), jnp.zeros_like(h0), jnp.zeros_like(dhs)),
  )
  dgh = jnp.concatenate([g * d_ar, g * d_az, g * d_hn], axis=-1)
  dgi = jnp.concatenate([g * d_ar, g * d_az, g * d_an], axis=-1)
  dw_hh = jnp.einsum('tbg,tbh->gh', dgh, h_prev)
  db_hh = jnp.sum(dgh, axis=(0, 1))
  return dw_hh, db_hh, dh + dh0, dgi, jnp.zeros_like(keep), None


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def gru_recurrence(
  layer: Mapping[str, jax.Array],
  h0: jax.Array,
  gi: jax.Array,
  resets: jax.Array | None = None,
  length: jax.Array | None = None,
) -> jax.Array:
  """Runs the recurrence of one GRU layer over time in a loop over steps.

  Only the hidden-to-hidden part is inside the loop; the input projections
  ``gi`` are computed beforehand for all steps as one matmul. Reverse-mode
  gradients come from a hand-written VJP (`_recurrence_bwd`) whose reverse
  scan carries only dL/dh, so the weight gradients are one matmul over all
  steps instead of an accumulation inside the loop; they equal autodiff of
  a plain scan of `gru_gates` (tests/model_test.py checks this). Being a
  ``jax.custom_vjp``, it supports ``grad``/``vjp``, ``jit`` and ``vmap``, not
  forward-mode (``jvp``, ``jacfwd``).

  Args:
    layer: one layer's parameters (``w_hh`` and ``b_hh`` are used).
    h0: float32[B, H] initial hidden state.
    gi: float32[T, B, 3H] input projections, time major.
    resets: optional bool[T, B]; where True, step t starts again from ``h0``
      instead of step t-1's state (several sequences packed in one row).
    length: optional int32 scalar: only the first ``length`` steps are
      computed (and differentiated); later outputs are zeros. None: all T.

  Returns:
    float32[T, B, H] hidden state after every step.
  """
  if resets is None:
    keep = jnp.ones(gi.shape[:2] + (1,), gi.dtype)
  else:
    keep = 1.0 - resets.astype(gi.dtype)[..., None]
  if length is None:
    length = gi.shape[0]
  length = jnp.asarray(length, jnp.int32)
  return _recurrence(layer['w_hh'], layer['b_hh'], h0, gi, keep, length)


def run_rnn(
  params: Params,
  inputs: jax.Array,
  *,
  starts: jax.Array | None = None,
  dropout_rate: float = 0.0,
  dropout_key: jax.Array | None = None,
  length: jax.Array | None = None,
) -> jax.Array:
  """Runs the stacked GRU over whole sequences from ``init_hidden``.

  Padding needs no special treatment here: the GRU is causal, so outputs at
  real steps never depend on padded steps that come after them. Losses mask
  padded steps out.

  Args:
    params: the full parameter pytree.
    inputs: float32[B, T, D] input sequences.
    starts: optional bool[B, T]; every layer restarts from its
      ``init_hidden`` where True, so one row can hold several sequences back
      to back. None: one sequence per row.
    dropout_rate: dropout on the outputs of every layer but the last (as
      ``torch.nn.GRU(dropout=...)`` in training mode).
    dropout_key: PRNG key, required when dropout is active.
    length: optional int32 scalar: the steps from it on are padding in every
      row, so the recurrences skip them (`gru_recurrence`); outputs there
      are unspecified. None: all T steps are computed.

  Returns:
    float32[B, T, H] top-layer outputs.
  """
  layers = params['rnn']
  batch = inputs.shape[0]
  x = jnp.swapaxes(inputs, 0, 1)  # [T, B, D]: time steps lead
  resets = None if starts is None else jnp.swapaxes(starts, 0, 1)
  for i, layer in enumerate(layers):
    gi = x @ layer['w_ih'].T + layer['b_ih']
    h0 = jnp.broadcast_to(
      params['init_hidden'][i], (batch, params['init_hidden'].shape[-1])
    )
    x = gru_recurrence(layer, h0, gi, resets, length)
    if dropout_rate > 0.0 and i + 1 < len(layers):
      if dropout_key is None:
        raise ValueError('dropout_rate > 0 needs a dropout_key')
      dropout_key, sub = jax.random.split(dropout_key)
      keep = jax.random.bernoulli(sub, 1.0 - dropout_rate, x.shape)
      x = jnp.where(keep, x / (1.0 - dropout_rate), 0.0)
  return jnp.swapaxes(x, 0, 1)


# Steps per block of `segment_cumulative_mean`: its work is T x BLOCK per
# feature, its program a few matrix products whatever T is.
SEGMENT_BLOCK = 32


def segment_cumulative_mean(values: jax.Array, starts: jax.Array) -> jax.Array:
  """Running mean along axis 1 that restarts wherever ``starts`` is True.

  Computed blockwise with matrix products, so the compiled program is small
  (a ``lax.associative_scan`` over T steps, which this replaces, unrolls
  into log2(T) levels of slices and took about a third of the training
  step's compile time at T=128) and long rows keep float32 accuracy (no
  difference of large prefix sums). Rows are cut into blocks of
  `SEGMENT_BLOCK` steps: inside a block, step t sums the steps s <= t with
  no start in (s, t] (one masked [C, C] product); the sum a segment brings
  from earlier blocks is the last within-block sum of every earlier block it
  runs through (one masked product over blocks). Counts ride along as an
  extra feature of ones, so they are exact.

  Args:
    values: float32[B, T, F].
    starts: bool[B, T]; step 0 always starts a segment.

  Returns:
    float32[B, T, F]: the mean of ``values`` from the start of each step's
    segment up to and including the step.
  """
  batch, steps, features = values.shape
  size = min(SEGMENT_BLOCK, steps)
  blocks = -(-steps // size)
  pad = blocks * size - steps
  flags = jnp.asarray(starts).at[:, 0].set(True)
  ones = jnp.ones((batch, steps, 1), values.dtype)
  v = jnp.pad(
    jnp.concatenate([values, ones], axis=-1), ((0, 0), (0, pad), (0, 0))
  )
  v = v.reshape(batch, blocks, size, features + 1)
  f = jnp.pad(flags, ((0, 0), (0, pad)), constant_values=True)
  f = f.reshape(batch, blocks, size).astype(values.dtype)
  tri = jnp.tril(jnp.ones((size, size), values.dtype))  # [t, s]: s <= t
  # Starts at or before each step of its block (small integers, exact).
  seen = jnp.einsum('bnc,tc->bnt', f, tri)
  same = (seen[..., :, None] == seen[..., None, :]).astype(values.dtype)
  within = jnp.einsum('bnts,bnsf->bntf', same * tri, v)
  # Block j's open segment reaches block n > j iff blocks j+1..n-1 hold no
  # start; `later` counts, for each block, the blocks with a start up to it.
  has_start = (seen[..., -1] > 0).astype(values.dtype)  # [B, N]
  block_tri = jnp.tril(jnp.ones((blocks, blocks), values.dtype))
  later = jnp.einsum('bj,nj->bn', has_start, block_tri)
  before = later - has_start  # blocks with a start before block n
  reach = (before[:, :, None] == later[:, None, :]) & (
    jnp.arange(blocks)[:, None] > jnp.arange(blocks)[None, :]
  )
  carry = jnp.einsum(
    'bnj,bjf->bnf', reach.astype(values.dtype), within[:, :, -1]
  )
  total = within + (seen == 0)[..., None] * carry[:, :, None, :]
  total = total.reshape(batch, blocks * size, features + 1)[:, :steps]
  return total[..., :features] / total[..., features:]


def predict_means(
  params: Params,
  observations: jax.Array,
  *,
  starts: jax.Array | None = None,
  dropout_rate: float = 0.0,
  dropout_key: jax.Array | None = None,
  length: jax.Array | None = None,
) -> jax.Array:
  """Training-time predictions: mu_t for every observation of a speaker.

  A speaker's sub-sequence x_1..x_n is fed as [0, x_1, ..., x_{n-1}]; the head
  gives m_0..m_{n-1}, and x_{t+1} is predicted by the running mean
  mu_t = mean(m_0..m_t). With ``starts``, a row holds several sub-sequences
  back to back and each is treated as if it had a row of its own.

  Args:
    params: the full parameter pytree.
    observations: float32[B, T, D] sub-sequences x_1..x_T (padded at the end).
    starts: optional bool[B, T], True at the first step of every sub-sequence
      (see `data.SampleSet.batch`); None: one sub-sequence per row.
    dropout_rate: see `run_rnn`.
    dropout_key: see `run_rnn`.
    length: see `run_rnn`: every row is padding from this step on (training
      passes its batch's longest row), so the network skips those steps.

  Returns:
    float32[B, T, D] where ``[:, t]`` predicts ``observations[:, t]`` (for
    ``t < length``).
  """
  if starts is None:  # one sub-sequence per row, from step 0
    starts = jnp.zeros(observations.shape[:2], bool).at[:, 0].set(True)
  shifted = jnp.pad(observations[:, :-1], ((0, 0), (1, 0), (0, 0)))
  shifted = jnp.where(starts[..., None], 0.0, shifted)
  out = run_rnn(
    params,
    shifted,
    starts=starts,
    dropout_rate=dropout_rate,
    dropout_key=dropout_key,
    length=length,
  )
  return segment_cumulative_mean(mean_head(params['head'], out), starts)


def params_from_torch(
  state_dict: Mapping[str, Any],
  init_hidden: Any,
  sigma2: Any,
) -> Params:
  """Converts the reference model's tensors into our parameter pytree.

  Args:
    state_dict: ``CoreRNN.state_dict()`` of ``uisrnn`` 0.1.2 as NumPy arrays
      (keys ``gru.weight_ih_l0``, ..., ``linear_mean1.weight``, ...).
    init_hidden: the reference's ``rnn_init_hidden``, shape [L, 1, H].
    sigma2: the reference's ``sigma2``, shape [D].

  Returns:
    The parameter pytree (float32).

  Raises:
    KeyError: if a tensor the model needs is missing.
  """

  def get(name):
    return jnp.asarray(np.asarray(state_dict[name], np.float32))

  depth = sum(1 for k in state_dict if k.startswith('gru.weight_ih_l'))
  rnn = [
    {
      'w_ih': get(f'gru.weight_ih_l{i}'),
      'w_hh': get(f'gru.weight_hh_l{i}'),
      'b_ih': get(f'gru.bias_ih_l{i}'),
      'b_hh': get(f'gru.bias_hh_l{i}'),
    }
    for i in range(depth)
  ]
  head = {
    'w1': get('linear_mean1.weight'),
    'b1': get('linear_mean1.bias'),
    'w2': get('linear_mean2.weight'),
    'b2': get('linear_mean2.bias'),
  }
  h0 = np.asarray(init_hidden, np.float32).reshape(depth, -1)
  return {
    'rnn': rnn,
    'head': head,
    'init_hidden': jnp.asarray(h0),
    'sigma2': jnp.asarray(np.asarray(sigma2, np.float32).reshape(-1)),
  }
