"""Streaming (online) diarization with the UIS-RNN beam search.

Observations arrive in chunks of any size. The decoder state keeps the beam
after every complete group of ``look_ahead`` observations, the observations
of the unfinished group, and the back-pointers of every group so far. After
each push the current best labels are those the offline decoder
(`uisrnn_jax.decode`, ``test_iteration=1``) gives for the sequence seen so
far: the unfinished group is decoded tentatively, as the offline decoder
decodes a sequence's last, shorter chunk, without being committed.

Everything is a pure function of a `StreamState` pytree:

  >>> settings = decode.DecodeSettings(beam_size=10, test_iteration=1)
  >>> state = streaming.init(params, transition_bias=0.1, crp_alpha=1.0,
  ...                        config=settings)
  >>> state, labels = streaming.push(params, state, chunk)  # chunk [C, D]
  >>> state = streaming.reset(state)  # next conversation, same shapes

`push` is the host wrapper: it validates the chunk, pads its length to a
power of two (at least 8) and grows the back-pointer capacity by doubling, so
the jitted `update` compiles only a logarithmic number of times.

Shape letters as in `uisrnn_jax.model`; A is look_ahead, R the capacity in
groups of A observations.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from uisrnn_jax import decode as decode_lib
from uisrnn_jax import errors

Params = dict[str, Any]

_MIN_CHUNK = 8


@struct.dataclass
class StreamState:
  """Decoder state between pushes."""

  beam: decode_lib.Beam  # committed beam after num_groups * A observations
  pending: jax.Array  # float32[A, D]  observations of the unfinished group
  num_pending: jax.Array  # int32[]  in [0, A)
  num_groups: jax.Array  # int32[]  committed groups of A observations
  parents: jax.Array  # int32[R, K]  back-pointers; identity rows beyond
  slots: jax.Array  # int32[R, K, A]  slots assigned in every group
  overflowed: jax.Array  # bool[]  a survivor exceeded max_speakers
  transition_bias: jax.Array  # float32[]
  crp_alpha: jax.Array  # float32[]
  settings: decode_lib.DecodeSettings = struct.field(pytree_node=False)

  @property
  def capacity(self) -> int:
    """R, committed groups the back-pointer buffers can hold."""
    return self.parents.shape[0]


def _empty_pointers(
  settings: decode_lib.DecodeSettings, capacity: int
) -> tuple[jax.Array, jax.Array]:
  k, span = settings.beam_size, settings.look_ahead
  parents = jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32), (capacity, k))
  return parents, jnp.zeros((capacity, k, span), jnp.int32)


def init(
  params: Params,
  *,
  transition_bias: float,
  crp_alpha: float,
  config: Any,
  capacity: int = 64,
) -> StreamState:
  """A fresh decoder state.

  Args:
    params: model parameters (only their shapes are used).
    transition_bias: p0 in (0, 1).
    crp_alpha: alpha > 0.
    config: the ``decode`` config group or a `DecodeSettings`;
      ``test_iteration`` must be 1 (a stream cannot be tiled),
      ``resegment_iterations`` and ``count_search`` 0 and ``min_speakers``
      1 (a maximum, i.e. ``max_speakers`` with
      ``speaker_overflow='disallow'``, is supported).
    capacity: initial back-pointer capacity R, in groups of ``look_ahead``
      observations; `push` grows it as needed.

  Returns:
    A `StreamState` with nothing observed.

  Raises:
    ValueError: for ``test_iteration`` != 1, ``resegment_iterations`` or
      ``count_search`` != 0, ``min_speakers`` > 1 (an `errors.ConfigError`),
      p0 outside (0, 1), alpha <= 0, or capacity < 1.
  """
  settings = decode_lib.DecodeSettings.from_config(config)
  if settings.test_iteration != 1:
    raise ValueError(
      'streaming decodes each observation once; set test_iteration=1, got '
      f'{settings.test_iteration}'
    )
  if settings.resegment_iterations:
    raise ValueError(
      'resegmentation needs the whole sequence and a stream never has it; '
      f'set resegment_iterations=0, got {settings.resegment_iterations}'
    )
  if settings.count_search:
    raise ValueError(
      'the speaker-count search decodes the whole sequence again and a '
      f'stream never has it; set count_search=0, got {settings.count_search}'
    )
  if settings.min_speakers > 1:
    raise errors.ConfigError(
      'a stream cannot enforce min_speakers (how many observations are still '
      f'to come is unknown); set min_speakers=1, got {settings.min_speakers} '
      "(max_speakers with speaker_overflow='disallow' is supported)"
    )
  decode_lib.check_priors(transition_bias, crp_alpha)
  if capacity < 1:
    raise ValueError(f'capacity must be positive, got {capacity}')
  depth, hidden = params['init_hidden'].shape
  dim = params['sigma2'].shape[-1]
  parents, slots = _empty_pointers(settings, capacity)
  return StreamState(
    beam=decode_lib.init_beam(
      settings, observation_dim=dim, hidden=hidden, depth=depth
    ),
    pending=jnp.zeros((settings.look_ahead, dim), jnp.float32),
    num_pending=jnp.zeros((), jnp.int32),
    num_groups=jnp.zeros((), jnp.int32),
    parents=parents,
    slots=slots,
    overflowed=jnp.zeros((), bool),
    transition_bias=jnp.asarray(transition_bias, jnp.float32),
    crp_alpha=jnp.asarray(crp_alpha, jnp.float32),
    settings=settings,
  )


def reset(state: StreamState) -> StreamState:
  """Forgets everything observed; keeps settings, p0, alpha and capacity.

  Args:
    state: any `StreamState`.

  Returns:
    A state with nothing observed and the same array shapes (no retrace).
  """
  settings = state.settings
  parents, slots = _empty_pointers(settings, state.capacity)
  depth, hidden = state.beam.pool_hidden.shape[-2:]
  return state.replace(
    beam=decode_lib.init_beam(
      settings,
      observation_dim=state.pending.shape[-1],
      hidden=hidden,
      depth=depth,
    ),
    pending=jnp.zeros_like(state.pending),
    num_pending=jnp.zeros((), jnp.int32),
    num_groups=jnp.zeros((), jnp.int32),
    parents=parents,
    slots=slots,
    overflowed=jnp.zeros((), bool),
  )


def grow(state: StreamState, capacity: int) -> StreamState:
  """Enlarges the back-pointer buffers to ``capacity`` groups.

  Args:
    state: a `StreamState`.
    capacity: new R, at least the current one.

  Returns:
    The same state with larger buffers.
  """
  extra = capacity - state.capacity
  if extra < 0:
    raise ValueError(f'cannot shrink capacity {state.capacity} to {capacity}')
  parents, slots = _empty_pointers(state.settings, extra)
  return state.replace(
    parents=jnp.concatenate([state.parents, parents]),
    slots=jnp.concatenate([state.slots, slots]),
  )


def num_observations(state: StreamState) -> jax.Array:
  """int32[] observations pushed since init or reset."""
  return state.num_groups * state.settings.look_ahead + state.num_pending


def update(
  params: Params, state: StreamState, chunk: jax.Array, mask: jax.Array
) -> tuple[StreamState, jax.Array]:
  """Consumes a chunk and returns the current best labels (pure, jittable).

  The caller must provide capacity: ``state.capacity`` must exceed
  ``(num_observations(state) + C) // look_ahead`` (`push` ensures it).

  Args:
    params: model parameters.
    state: the `StreamState`.
    chunk: float32[C, D] new observations.
    mask: bool[C] real rows of ``chunk`` (a prefix).

  Returns:
    (state, labels): the new state and int32[R * A] labels of everything
    observed so far, renumbered 0, 1, ... by first appearance, -1 beyond.
  """
  settings = state.settings
  span, k = settings.look_ahead, settings.beam_size
  consts = decode_lib.make_constants(
    params, transition_bias=state.transition_bias, crp_alpha=state.crp_alpha
  )
  full_mask = jnp.ones((span,), bool)

  def commit(st: StreamState) -> StreamState:
    gis = decode_lib.input_projection(params, st.pending)
    beam, parent, slots, over = decode_lib.beam_step(
      params, consts, st.beam, st.pending, gis, full_mask, settings
    )
    return st.replace(
      beam=beam,
      num_pending=jnp.zeros((), jnp.int32),
      num_groups=st.num_groups + 1,
      parents=st.parents.at[st.num_groups].set(parent),
      slots=st.slots.at[st.num_groups].set(slots),
      overflowed=st.overflowed | over,
    )

  def observe(st: StreamState, x_m) -> tuple[StreamState, None]:
    x, m = x_m

    def add(st):
      st = st.replace(
        pending=st.pending.at[st.num_pending].set(x),
        num_pending=st.num_pending + 1,
      )
      return jax.lax.cond(st.num_pending == span, commit, lambda s: s, st)

    return jax.lax.cond(m, add, lambda s: s, st), None

  state, _ = jax.lax.scan(
    observe, state, (jnp.asarray(chunk, jnp.float32), jnp.asarray(mask, bool))
  )

  # The unfinished group, decoded as the offline decoder's last chunk.
  def tentative(st: StreamState):
    gis = decode_lib.input_projection(params, st.pending)
    _, parent, slots, over = decode_lib.beam_step(
      params,
      consts,
      st.beam,
      st.pending,
      gis,
      jnp.arange(span) < st.num_pending,
      settings,
    )
    return parent, slots, over

  def nothing(st: StreamState):
    return (
      jnp.arange(k, dtype=jnp.int32),
      jnp.zeros((k, span), jnp.int32),
      jnp.zeros((), bool),
    )

  parent, slots, over = jax.lax.cond(
    state.num_pending > 0, tentative, nothing, state
  )
  parents = state.parents.at[state.num_groups].set(parent)
  all_slots = state.slots.at[state.num_groups].set(slots)
  path = decode_lib.backtrack(parents, all_slots)
  valid = jnp.arange(path.shape[0]) < num_observations(state)
  labels = decode_lib.renumber(path, valid, settings.num_slots)
  state = state.replace(overflowed=state.overflowed | over)
  return state, labels


update_jit = jax.jit(update)


def _chunk_length(n: int) -> int:
  return max(_MIN_CHUNK, 1 << max(n - 1, 0).bit_length())


def push(
  params: Params, state: StreamState, chunk: np.ndarray
) -> tuple[StreamState, np.ndarray]:
  """Feeds new observations and returns the current best labels (host API).

  Args:
    params: model parameters.
    state: the `StreamState` from `init`, `reset` or a previous push.
    chunk: float[C, D] new observations (or one float[D] observation);
      C may be 0.

  Returns:
    (state, labels): the new state and int32[N] labels of all N
    observations so far, 0, 1, ... in order of first appearance; after the
    last push they equal `decode.predict_labels` with ``test_iteration=1``.

  Raises:
    TypeError: if the chunk is not a real-valued array.
    ValueError: for a wrong shape or non-finite values.
    errors.SpeakerOverflowError: (a ValueError) with
      ``speaker_overflow='error'``, a surviving hypothesis needed more than
      ``max_speakers`` speakers (the returned state is then unusable; the
      previous one is unchanged).
  """
  dim = state.pending.shape[-1]
  chunk = np.asarray(chunk)
  if not (
    np.issubdtype(chunk.dtype, np.floating)
    or np.issubdtype(chunk.dtype, np.integer)
  ):
    raise TypeError(f'chunk must hold real numbers, got dtype {chunk.dtype}')
  if chunk.ndim == 1:
    chunk = chunk[None]
  if chunk.ndim != 2 or chunk.shape[1] != dim:
    raise ValueError(f'chunk must have shape [C, {dim}], got {chunk.shape}')
  chunk = chunk.astype(np.float32)
  if not np.all(np.isfinite(chunk)):
    raise ValueError('chunk contains NaN or Inf')
  span = state.settings.look_ahead
  total = int(num_observations(state)) + len(chunk)
  needed = total // span + 1
  if needed > state.capacity:
    state = grow(state, 1 << (needed - 1).bit_length())
  length = _chunk_length(len(chunk))
  padded = np.zeros((length, dim), np.float32)
  padded[: len(chunk)] = chunk
  mask = np.arange(length) < len(chunk)
  state, labels = update_jit(params, state, padded, mask)
  if bool(state.overflowed):
    raise errors.SpeakerOverflowError(
      decode_lib.overflow_message('the stream', state.settings.max_speakers)
    )
  return state, np.asarray(labels, np.int32)[:total]  # slice on the host


__all__ = [
  'StreamState',
  'grow',
  'init',
  'num_observations',
  'push',
  'reset',
  'update',
  'update_jit',
]
