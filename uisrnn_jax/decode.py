"""Online generative decoding (beam search) as one jit-compiled program.

UIS-RNN labels a sequence online (paper Eq. 6-8): every observation is
assigned either to a speaker seen so far, whose GRU state predicts it through
a running mean, or to a new speaker, predicted from ``init_hidden``; the
speaker change follows a Bernoulli(p0) and the choice of speaker a Chinese
restaurant process with concentration alpha. A beam of hypotheses is kept,
reproducing the decisions of ``uisrnn`` 0.1.2's ``predict_single``.

Layout on fixed shapes (``google/flax: examples/wmt/decode.py``):

* A hypothesis is a row of `Beam`; speakers live in S fixed slots. A new
  speaker takes slot ``num_speakers``; a slot that has no observation yet is
  read as the new-speaker state (computed once per call from
  ``init_hidden``), so slots need no initialisation with the parameters.
  The speakers' GRU states and means live in a pool shared by the beam
  (hypotheses with a common history share entries), so reordering the beam
  moves only integers and a step writes just K new states.
* Every chunk of ``look_ahead`` observations scores all (hypothesis,
  assignment tuple) candidates at once, keeps the best K with
  ``lax.top_k``, and records back-pointers (parent row and assigned slots);
  the labels are read by backtracking (a reverse ``lax.scan``) at the end.
* Time is one ``lax.fori_loop`` over chunks (a scan whose trip count is the
  longest real sequence of the batch, so bucket padding costs nothing) inside
  ``jax.jit``. Sequences are padded to a multiple of ``bucket`` so utterances
  of similar length share one compiled program, and batches are vmapped.
* Costs of dead hypotheses are +inf; no subtraction of costs happens, so no
  inf - inf. Costs accumulate in float32, as in the reference.
* Speaker count (pyannote's ``num_speakers``/``min_speakers``/
  ``max_speakers``, `speaker_count_config`): the maximum is the slot count
  with ``speaker_overflow='disallow'``; the minimum prunes, inside the step,
  the candidates that can no longer reach it in the returned copy.
* `predict_labels` is the one host loop (validation, length batches,
  overflow errors), on one device or, given a mesh, with every batch's
  utterances split over its devices.

Shape letters: B batch, T time, D observation_dim, H hidden size, L depth,
K beam size, S speaker slots, A look_ahead.

Example:
  >>> labels = predict_labels(params, [seq_a, seq_b], transition_bias=0.1,
  ...                         crp_alpha=1.0, config=config.decode)
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from flax import struct
from jax.sharding import PartitionSpec

from uisrnn_jax import (
  config_check,
  data,
  defaults,
  errors,
  model,
  parallel,
  resegment,
)

Params = dict[str, Any]

_DEFAULTS = defaults.get_config().decode
# Fields of the ``decode`` config group that the host API reads and the
# jitted decoder does not: the length bucket, and ``num_speakers``, which
# `DecodeSettings.from_config` turns into ``min_speakers`` and
# ``max_speakers``.
HOST_FIELDS = ('bucket', 'num_speakers')


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
  """Static decoding settings (hashable, so they can be a static jit arg).

  The fields are the ``decode`` config group's (less `HOST_FIELDS`):
  defaults from `uisrnn_jax.defaults`, checks from
  `uisrnn_jax.config_check.SCHEMA`.

  Speaker count (pyannote's ``min_speakers``, ``max_speakers``,
  ``num_speakers``; see `speaker_count_config`): no hypothesis ever has more
  than ``max_speakers`` speakers with ``speaker_overflow='disallow'`` (with
  ``'error'``, needing more raises instead), and with ``min_speakers`` > 1
  every candidate that can no longer reach ``min_speakers`` speakers in the
  returned copy is pruned inside the search, so the chosen labels have at
  least ``min(min_speakers, N)`` speakers for a sequence of N observations.

  Attributes:
    beam_size: K, hypotheses kept after every chunk.
    look_ahead: A, observations scored jointly and advanced at once.
    test_iteration: M, the sequence is decoded tiled M times and the labels
      of the last copy are returned.
    max_speakers: speaker slots per hypothesis.
    speaker_overflow: ``'error'`` (the host API raises when a surviving
      hypothesis needed more than ``max_speakers`` speakers) or
      ``'disallow'`` (new speakers are forbidden once a hypothesis is full).
    mean_rule: ``'reference'`` reproduces uisrnn 0.1.2's stored mean,
      ``'cumulative'`` uses the training-time running mean.
    resegment_iterations: the most rounds of Viterbi resegmentation applied
      to the beam search's labels (`uisrnn_jax.resegment`; offline, so the
      streaming decoder refuses it); 0 turns it off. A resegmentation that
      leaves fewer than ``min_speakers`` speakers is not used.
    resegment_emission: ``'centroid'`` (each speaker's mean) or
      ``'neighbours'`` (the mean distance to a speaker's nearest
      observations; see `uisrnn_jax.resegment`).
    resegment_neighbours: nearest observations per speaker averaged by the
      ``'neighbours'`` emission.
    resegment_exclude: observations on either side of each one that are not
      its neighbours: sliding windows that share audio with it (3 for 1.6 s
      windows every 0.4 s; 0 for independent observations).
    count_search: offline speaker-count search: the beam search also runs
      with exactly 1, ..., ``count_search`` fewer and more speakers than it
      found (each resegmented as configured) and every sequence keeps the
      labelling of least `labelling_cost` plus ``count_penalty * log N``
      per speaker (N observations); 0 turns it off.
    count_penalty: the per-speaker penalty of ``count_search``, in nats per
      unit of log N.
    min_speakers: the least number of speakers of the returned labels
      (offline only; 1 = no constraint; a sequence shorter than this gets
      one speaker per observation).
  """

  beam_size: int = _DEFAULTS.beam_size
  look_ahead: int = _DEFAULTS.look_ahead
  test_iteration: int = _DEFAULTS.test_iteration
  max_speakers: int = _DEFAULTS.max_speakers
  speaker_overflow: str = _DEFAULTS.speaker_overflow
  mean_rule: str = _DEFAULTS.mean_rule
  resegment_iterations: int = _DEFAULTS.resegment_iterations
  resegment_emission: str = _DEFAULTS.resegment_emission
  resegment_neighbours: int = _DEFAULTS.resegment_neighbours
  resegment_exclude: int = _DEFAULTS.resegment_exclude
  count_search: int = _DEFAULTS.count_search
  count_penalty: float = _DEFAULTS.count_penalty
  min_speakers: int = _DEFAULTS.min_speakers

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = config_check.check_field(
        f'decode.{field.name}', getattr(self, field.name), where=field.name
      )
      object.__setattr__(self, field.name, value)
    if self.min_speakers > self.max_speakers:
      raise errors.ConfigError(
        f'min_speakers={self.min_speakers} exceeds max_speakers='
        f'{self.max_speakers}: raise max_speakers (the speaker slots)'
      )

  @property
  def num_slots(self) -> int:
    """S, speaker slots per hypothesis in the arrays.

    With ``'error'`` there are ``look_ahead`` spare slots, so that a chunk can
    overflow without losing the hypothesis; the overflow is then reported.
    """
    if self.speaker_overflow == 'error':
      return self.max_speakers + self.look_ahead
    return self.max_speakers

  @classmethod
  def from_config(cls, config: Any) -> DecodeSettings:
    """Builds settings from ``config.decode``, a mapping or a namespace.

    Accepts a ConfigDict, any mapping, or an attribute namespace such as the
    seed's argparse ``inference_args``. Unknown keys (e.g. ``bucket``) are
    ignored; missing keys take the defaults. A ``num_speakers`` that is not
    None fixes the count: ``min_speakers = max_speakers = num_speakers``
    with ``speaker_overflow='disallow'``.
    """
    if isinstance(config, DecodeSettings):
      return config
    kwargs = {}
    for field in dataclasses.fields(cls):
      value = _config_get(config, field.name)
      if value is not None:
        kwargs[field.name] = value
    num = _config_get(config, 'num_speakers')
    if num is not None:
      num = config_check.check_field(
        'decode.num_speakers', num, where='num_speakers'
      )
      kwargs.update(
        min_speakers=num, max_speakers=num, speaker_overflow='disallow'
      )
    return cls(**kwargs)


def _config_get(config: Any, name: str) -> Any:
  """``config[name]`` for mappings/ConfigDicts, else the attribute; or None."""
  if hasattr(config, 'get'):
    return config.get(name, None)
  return getattr(config, name, None)


@struct.dataclass
class Beam:
  """K hypotheses with S speaker slots each, over a shared pool of states.

  A speaker's GRU state and stored mean live in a pool row, ``table[k, s]``;
  hypotheses that share a history share pool rows, so reordering the beam
  moves only the small integer fields, and a step writes K new pool rows
  (in place) instead of copying K * S states. The pool has P = K * S rows,
  enough by construction (every row references at most S - 1 states besides
  the one it replaces). Slots with ``count == 0`` are free: read as the
  new-speaker state, whatever their table entry.
  """

  table: jax.Array  # int32[K, S]  pool row of each speaker's state
  count: jax.Array  # int32[K, S]  observations per speaker
  blocks: jax.Array  # int32[K, S]  speaker turns (CRP counts)
  num_speakers: jax.Array  # int32[K]
  last: jax.Array  # int32[K]  previous speaker, -1 at start
  cost: jax.Array  # float32[K]  negative log-likelihood; +inf = dead row
  recent: jax.Array  # bool[K, S]  speaker seen in the returned copy
  pool_hidden: jax.Array  # float32[P, L, H]  GRU states (shared, not per row)
  pool_mean: jax.Array  # float32[P, D]  stored means (shared, not per row)

  def reorder(self, parent: jax.Array) -> Beam:
    """Rows ``parent`` of the beam (the pool is shared and unchanged)."""
    return self.replace(
      table=self.table[parent],
      count=self.count[parent],
      blocks=self.blocks[parent],
      num_speakers=self.num_speakers[parent],
      last=self.last[parent],
      cost=self.cost[parent],
      recent=self.recent[parent],
    )


@struct.dataclass
class Nodes:
  """Hypotheses with their speaker states copied out of the pool.

  Used for the tuple prefixes of a look-ahead chunk (``look_ahead`` > 1),
  whose number grows as K * S ** j.
  """

  hidden: jax.Array  # float32[N, S, L, H]
  mean: jax.Array  # float32[N, S, D]
  count: jax.Array  # int32[N, S]
  blocks: jax.Array  # int32[N, S]
  num_speakers: jax.Array  # int32[N]
  last: jax.Array  # int32[N]
  cost: jax.Array  # float32[N]
  recent: jax.Array  # bool[N, S]


@struct.dataclass
class Constants:
  """Per-call quantities shared by every step (computed once per call)."""

  new_hidden: jax.Array  # float32[L, H]  state after a zero input at init
  new_mean: jax.Array  # float32[D]  mean predicted for a new speaker (m_0)
  weight: jax.Array  # float32[D]  1 / (2 sigma2)
  log_p0: jax.Array  # float32[]  log transition_bias
  log_stay: jax.Array  # float32[]  log(1 - transition_bias)
  log_alpha: jax.Array  # float32[]
  alpha: jax.Array  # float32[]


def make_constants(
  params: Params,
  *,
  transition_bias: jax.typing.ArrayLike,
  crp_alpha: jax.typing.ArrayLike,
) -> Constants:
  """Computes the new-speaker prediction and the transition log-terms.

  Args:
    params: model parameters.
    transition_bias: p0, probability of a speaker change.
    crp_alpha: alpha, the CRP concentration.

  Returns:
    `Constants` (float32).
  """
  init = params['init_hidden']
  d = params['sigma2'].shape[-1]
  new_hidden = model.rnn_step(params, init, jnp.zeros((d,), init.dtype))
  p0 = jnp.asarray(transition_bias, jnp.float32)
  alpha = jnp.asarray(crp_alpha, jnp.float32)
  return Constants(
    new_hidden=new_hidden,
    new_mean=model.mean_head(params['head'], new_hidden[-1]),
    weight=1.0 / (2.0 * params['sigma2']),
    log_p0=jnp.log(p0),
    log_stay=jnp.log1p(-p0),
    log_alpha=jnp.log(alpha),
    alpha=alpha,
  )


def init_beam(
  settings: DecodeSettings, *, observation_dim: int, hidden: int, depth: int
) -> Beam:
  """The beam before the first observation: one live, empty hypothesis.

  Args:
    settings: decoding settings (K and S).
    observation_dim: D.
    hidden: H.
    depth: L.

  Returns:
    A `Beam` whose row 0 has cost 0 and the other rows cost +inf.
  """
  k, s = settings.beam_size, settings.num_slots
  return Beam(
    table=jnp.zeros((k, s), jnp.int32),
    count=jnp.zeros((k, s), jnp.int32),
    blocks=jnp.zeros((k, s), jnp.int32),
    num_speakers=jnp.zeros((k,), jnp.int32),
    last=jnp.full((k,), -1, jnp.int32),
    cost=jnp.full((k,), jnp.inf, jnp.float32).at[0].set(0.0),
    recent=jnp.zeros((k, s), bool),
    pool_hidden=jnp.zeros((k * s, depth, hidden), jnp.float32),
    pool_mean=jnp.zeros((k * s, observation_dim), jnp.float32),
  )


def input_projection(params: Params, x: jax.Array) -> jax.Array:
  """The first GRU layer's input projection, shared by all hypotheses.

  Args:
    params: model parameters.
    x: float32[..., D] observations.

  Returns:
    float32[..., 3H] ``x @ w_ih.T + b_ih`` of layer 0.
  """
  layer = params['rnn'][0]
  return x @ layer['w_ih'].T + layer['b_ih']


def _rnn_step(params: Params, h: jax.Array, gi: jax.Array) -> jax.Array:
  """`model.rnn_step` with layer 0's input projection precomputed.

  Args:
    params: model parameters.
    h: float32[..., L, H].
    gi: float32[..., 3H] layer 0's input projection of the observation.

  Returns:
    float32[..., L, H].
  """
  layers = params['rnn']
  out = model.gru_gates(layers[0], h[..., 0, :], gi)
  new = [out]
  for i, layer in enumerate(layers[1:], start=1):
    out = model.gru_cell(layer, h[..., i, :], out)
    new.append(out)
  return jnp.stack(new, axis=-2)


def advance_speakers(
  params: Params,
  consts: Constants,
  hidden: jax.Array,
  mean: jax.Array,
  count: jax.Array,
  gi: jax.Array,
  *,
  mean_rule: str,
) -> tuple[jax.Array, jax.Array]:
  """Feeds one observation to speakers and updates their stored means.

  A speaker with no observation yet starts from the new-speaker state.

  Args:
    params: model parameters.
    consts: `Constants`.
    hidden: float32[..., L, H] the speakers' GRU states.
    mean: float32[..., D] their stored means.
    count: int32[...] their observation counts before this one.
    gi: float32[3H] layer 0's input projection of the observation.
    mean_rule: ``'reference'`` or ``'cumulative'``.

  Returns:
    (float32[..., L, H] new states, float32[..., D] new stored means).
  """
  fresh = count == 0
  h = jnp.where(fresh[..., None, None], consts.new_hidden, hidden)
  h = _rnn_step(params, h, gi)
  m = model.mean_head(params['head'], h[..., -1, :])
  prev = jnp.where(fresh[..., None], consts.new_mean, mean)
  c = count.astype(jnp.float32)[..., None]
  if mean_rule == 'reference':
    # uisrnn 0.1.2's `_update_beam_state`: m_1 after the first observation,
    # then (mean * (n - 2) + m_n) / (n - 1) after the n-th.
    new_mean = (prev * jnp.maximum(c - 1.0, 0.0) + m) / jnp.maximum(c, 1.0)
  else:
    # The training-time running mean (m_0 + ... + m_n) / (n + 1).
    new_mean = (prev * (c + 1.0) + m) / (c + 2.0)
  return h, new_mean


def _total_costs(
  consts: Constants,
  fit: jax.Array,
  blocks: jax.Array,
  num_speakers: jax.Array,
  last: jax.Array,
  cost: jax.Array,
) -> jax.Array:
  """Adds the transition terms to the data terms ``fit`` [N, S]."""
  slots = jnp.arange(blocks.shape[-1])
  num = num_speakers[:, None]
  total = jnp.sum(blocks, axis=-1, keepdims=True).astype(jnp.float32)
  log_norm = jnp.log(total + consts.alpha)
  log_blocks = jnp.log(jnp.maximum(blocks, 1).astype(jnp.float32))
  existing = jnp.where(
    slots == last[:, None],
    -consts.log_stay,
    -(consts.log_p0 + log_blocks - log_norm),
  )
  new = -(consts.log_p0 + consts.log_alpha - log_norm)
  step = fit + jnp.where(slots < num, existing, new)
  return jnp.where(slots <= num, cost[:, None] + step, jnp.inf)


def _fit(consts: Constants, mean: jax.Array, x: jax.Array) -> jax.Array:
  """sum_d (mean - x)^2 / (2 sigma2_d) over the last axis."""
  return jnp.sum((mean - x) ** 2 * consts.weight, axis=-1)


def assignment_costs(consts: Constants, beam: Beam, x: jax.Array) -> jax.Array:
  """Cost of assigning one observation to every slot of every hypothesis.

  Existing speaker s: sum_d (mean_s - x)^2 / (2 sigma2_d), plus
  -log(1 - p0) when s is the last speaker, else
  -[log p0 + log blocks_s - log(sum(blocks) + alpha)]. The next free slot is
  a new speaker, predicted by m_0 and with log alpha in place of
  log blocks_s. Later slots cost +inf, as do dead hypotheses. The data term
  is computed once per pool row and shared by the hypotheses that use it.

  Args:
    consts: `Constants`.
    beam: `Beam` (K rows).
    x: float32[D] observation.

  Returns:
    float32[K, S] the hypothesis' cost plus the assignment's.
  """
  fit = _fit(consts, beam.pool_mean, x)[beam.table]
  fit = jnp.where(beam.count > 0, fit, _fit(consts, consts.new_mean, x))
  return _total_costs(
    consts, fit, beam.blocks, beam.num_speakers, beam.last, beam.cost
  )


def _node_costs(consts: Constants, nodes: Nodes, x: jax.Array) -> jax.Array:
  """`assignment_costs` for materialised `Nodes` [N] -> float32[N, S]."""
  mean = jnp.where(nodes.count[..., None] > 0, nodes.mean, consts.new_mean)
  return _total_costs(
    consts,
    _fit(consts, mean, x),
    nodes.blocks,
    nodes.num_speakers,
    nodes.last,
    nodes.cost,
  )


def _children(
  params: Params,
  consts: Constants,
  nodes: Nodes,
  gi: jax.Array,
  costs: jax.Array,
  valid: jax.Array,
  final: jax.Array,
  mean_rule: str,
) -> Nodes:
  """Every one-slot extension of every node, flattened to N * S rows.

  Child (n, c) is node n with the observation assigned to slot c; at a
  padded position (``valid`` False) every child equals its node. ``final``:
  the position is in the returned copy.
  """
  n, s = nodes.count.shape
  hidden, mean = advance_speakers(
    params,
    consts,
    nodes.hidden,
    nodes.mean,
    nodes.count,
    gi,
    mean_rule=mean_rule,
  )
  # hit[0, c, s]: in child c, slot s is the one that changed.
  hit = (jnp.arange(s)[:, None] == jnp.arange(s)[None, :])[None] & valid
  slot = jnp.arange(s, dtype=jnp.int32)[None, :]
  switched = (slot != nodes.last[:, None]).astype(jnp.int32)
  children = Nodes(
    hidden=jnp.where(
      hit[..., None, None], hidden[:, :, None], nodes.hidden[:, None]
    ),
    mean=jnp.where(hit[..., None], mean[:, :, None], nodes.mean[:, None]),
    count=nodes.count[:, None] + hit,
    blocks=nodes.blocks[:, None] + hit * switched[..., None],
    num_speakers=jnp.where(
      valid,
      jnp.maximum(nodes.num_speakers[:, None], slot + 1),
      nodes.num_speakers[:, None],
    ),
    last=jnp.where(valid, slot, nodes.last[:, None]),
    cost=costs,
    recent=nodes.recent[:, None] | (hit & final),
  )
  return jax.tree.map(lambda a: a.reshape((n * s,) + a.shape[2:]), children)


def _apply(
  params: Params,
  consts: Constants,
  beam: Beam,
  slot: jax.Array,
  gi: jax.Array,
  valid: jax.Array,
  final: jax.Array,
  mean_rule: str,
) -> Beam:
  """Assigns one observation to slot[k] of every row k (if ``valid``).

  ``final``: the position is in the returned copy.

  The K new states go to the lowest-numbered pool rows that no hypothesis
  references any more (P = K * S guarantees K of them).
  """
  k, s = beam.count.shape
  p = beam.pool_mean.shape[0]
  rows = jnp.arange(k)
  entry = beam.table[rows, slot]
  hidden, mean = advance_speakers(
    params,
    consts,
    beam.pool_hidden[entry],
    beam.pool_mean[entry],
    beam.count[rows, slot],
    gi,
    mean_rule=mean_rule,
  )
  hit = jnp.arange(s)[None, :] == slot[:, None]
  keep = (beam.count > 0) & ~hit
  used = (
    jnp.zeros((p,), bool)
    .at[jnp.where(keep, beam.table, p)]
    .set(True, mode='drop')
  )
  _, free = jax.lax.top_k((~used).astype(jnp.float32), k)
  target = jnp.where(valid, free, p)  # out of range: nothing written
  hit = hit & valid
  switched = (slot != beam.last).astype(jnp.int32)
  return beam.replace(
    table=jnp.where(hit, free[:, None].astype(jnp.int32), beam.table),
    count=beam.count + hit,
    blocks=beam.blocks + hit * switched[:, None],
    num_speakers=jnp.where(
      valid, jnp.maximum(beam.num_speakers, slot + 1), beam.num_speakers
    ),
    last=jnp.where(valid, slot, beam.last),
    recent=beam.recent | (hit & final),
    pool_hidden=beam.pool_hidden.at[target].set(hidden, mode='drop'),
    pool_mean=beam.pool_mean.at[target].set(mean, mode='drop'),
  )


def _masked_costs(costs: jax.Array, cost: jax.Array, valid: jax.Array):
  """At a padded position only slot 0 is allowed, at no cost."""
  slots = jnp.arange(costs.shape[-1])
  padded = jnp.where(slots == 0, cost[:, None], jnp.inf)
  return jnp.where(valid, costs, padded)


def beam_step(
  params: Params,
  consts: Constants,
  beam: Beam,
  xs: jax.Array,
  gis: jax.Array,
  mask: jax.Array,
  settings: DecodeSettings,
  final: jax.Array | None = None,
  need: jax.Array | None = None,
  most: jax.Array | None = None,
) -> tuple[Beam, jax.Array, jax.Array, jax.Array]:
  """Advances the beam by one chunk of ``look_ahead`` observations.

  All assignment tuples of the chunk (each element an existing speaker or the
  next new one) are scored for every hypothesis; the best K (hypothesis,
  tuple) candidates survive, in the order of ``uisrnn``'s sort (on ties, the
  better-ranked hypothesis, then the lexicographically smaller tuple). Only
  the survivors step their GRU, except that with ``look_ahead`` > 1 scoring
  needs the means after every prefix of a tuple, so the inner positions step
  the GRU of every prefix. That expansion is unrolled over the (small,
  static) look-ahead, because its size grows with each position. Padded
  positions (``mask`` False; only at the end of a sequence) assign nothing,
  and an all-padding chunk leaves the beam exactly unchanged.

  The minimum speaker count: a candidate with fewer than ``need`` speakers
  seen in the returned copy after the chunk costs +inf (``need`` is the
  minimum less the observations of the returned copy still to come, so
  exactly the candidates that can no longer reach the minimum are pruned;
  a feasible hypothesis always has a feasible extension, a speaker not yet
  seen in the copy). A maximum below the slot count, ``most``, costs +inf
  for every candidate with more speakers (what ``speaker_overflow=
  'disallow'`` does at the slot count, per sequence).

  Args:
    params: model parameters.
    consts: `Constants`.
    beam: the current `Beam` (K rows, sorted by cost).
    xs: float32[A, D] the chunk's observations.
    gis: float32[A, 3H] their layer-0 input projections.
    mask: bool[A] real positions.
    settings: decoding settings.
    final: bool[A] positions in the returned copy (None: every position,
      as when streaming).
    need: int32[] the least number of speakers seen in the returned copy a
      candidate must have after the chunk; None for no minimum.
    most: int32[] the most speakers a candidate may have; None for the
      slot count.

  Returns:
    (beam, parent, slots, overflowed): the new `Beam`; int32[K] parent row
    of every new row; int32[K, A] slots assigned in the chunk; bool[] some
    surviving hypothesis has more than ``max_speakers`` speakers.
  """
  k, s = beam.count.shape
  span = xs.shape[0]
  rule = settings.mean_rule
  final = jnp.ones((span,), bool) if final is None else final
  costs = _masked_costs(
    assignment_costs(consts, beam, xs[0]), beam.cost, mask[0]
  )
  recent, before = beam.recent, beam.num_speakers
  if span > 1:
    nodes = Nodes(
      hidden=beam.pool_hidden[beam.table],
      mean=beam.pool_mean[beam.table],
      count=beam.count,
      blocks=beam.blocks,
      num_speakers=beam.num_speakers,
      last=beam.last,
      cost=beam.cost,
      recent=beam.recent,
    )
    for j in range(1, span):  # every tuple prefix, flattened row-major
      nodes = _children(
        params,
        consts,
        nodes,
        gis[j - 1],
        costs,
        mask[j - 1],
        final[j - 1],
        rule,
      )
      costs = _masked_costs(
        _node_costs(consts, nodes, xs[j]), nodes.cost, mask[j]
      )
    recent, before = nodes.recent, nodes.num_speakers
  if most is not None:
    # Speakers of every candidate [N, S]: slot s is new when s == before.
    total = jnp.maximum(before[:, None], jnp.arange(s)[None, :] + 1)
    costs = jnp.where(total <= most, costs, jnp.inf)
  if need is not None:
    # Speakers seen in the returned copy by every candidate [N, S].
    seen = jnp.sum(recent, axis=-1, keepdims=True) + (
      mask[-1] & final[-1] & ~recent
    )
    costs = jnp.where(seen >= need, costs, jnp.inf)

  neg_cost, index = jax.lax.top_k(-costs.reshape(-1), k)
  parent = (index // (s**span)).astype(jnp.int32)
  slots = jnp.stack(
    [(index // (s ** (span - 1 - j))) % s for j in range(span)], axis=-1
  ).astype(jnp.int32)
  new = beam.reorder(parent)
  for j in range(span):
    new = _apply(
      params, consts, new, slots[:, j], gis[j], mask[j], final[j], rule
    )
  new = new.replace(cost=-neg_cost)
  overflowed = jnp.any(
    jnp.isfinite(new.cost) & (new.num_speakers > settings.max_speakers)
  )
  return new, parent, slots, overflowed


def count_speakers(labels: jax.Array, mask: jax.Array, num_slots: int):
  """int32[] distinct labels at the real positions (labels in [0, S))."""
  hit = (labels[:, None] == jnp.arange(num_slots)) & mask[:, None]
  return jnp.sum(jnp.any(hit, axis=0)).astype(jnp.int32)


# `count_speakers` of every row: (int32[B, T], bool[B, T], S) -> int32[B].
_count_rows = jax.vmap(count_speakers, in_axes=(0, 0, None))


def renumber(labels: jax.Array, mask: jax.Array, num_slots: int) -> jax.Array:
  """Relabels speakers 0, 1, 2, ... in order of first appearance.

  Args:
    labels: int32[T] slot labels.
    mask: bool[T] real positions.
    num_slots: S, labels are in [0, S).

  Returns:
    int32[T] renumbered labels, -1 at padded positions.
  """
  t = labels.shape[0]
  hit = (labels[:, None] == jnp.arange(num_slots)) & mask[:, None]
  first = jnp.min(jnp.where(hit, jnp.arange(t)[:, None], t), axis=0)
  order = jnp.argsort(first, stable=True)
  rank = jnp.zeros((num_slots,), jnp.int32).at[order].set(jnp.arange(num_slots))
  return jnp.where(mask, rank[jnp.clip(labels, 0, num_slots - 1)], -1)


def backtrack(parents: jax.Array, slots: jax.Array) -> jax.Array:
  """Follows back-pointers from the best final row (row 0).

  Args:
    parents: int32[C, K] parent row of every row after each chunk.
    slots: int32[C, K, A] slots assigned by every row in each chunk.

  Returns:
    int32[C * A] the best hypothesis' slot per position.
  """

  def step(row, pointers):
    parent, chunk_slots = pointers
    return parent[row], chunk_slots[row]

  _, path = jax.lax.scan(
    step, jnp.zeros((), jnp.int32), (parents, slots), reverse=True
  )
  return path.reshape(-1)


def _beam_search(
  params: Params,
  consts: Constants,
  observations: jax.Array,
  gi: jax.Array,
  lengths: jax.Array,
  settings: DecodeSettings,
  least: jax.Array | None,
  most: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """The beam search over a padded batch: (int32[B, T] slots, bool[B]).

  ``least``: int32[B] the minimum speaker count of every row's returned copy
  (None: no minimum); ``most``: int32[B] its maximum (None: the slot count).
  """
  batch, t, _ = observations.shape
  reps, span, k = (
    settings.test_iteration,
    settings.look_ahead,
    settings.beam_size,
  )
  num_chunks = -(-reps * t // span)

  def chunk(c):
    """Chunk c of the tiled sequences x_1..x_N, x_1..x_N, ... (M copies)."""
    pos = c * span + jnp.arange(span)
    src = pos[None, :] % jnp.maximum(lengths, 1)[:, None]  # [B, A]
    valid = pos[None, :] < reps * lengths[:, None]
    x = jnp.take_along_axis(observations, src[..., None], axis=1)
    g = jnp.take_along_axis(gi, src[..., None], axis=1)
    if least is None:
      return x, g, valid
    final = valid & (pos[None, :] >= (reps - 1) * lengths[:, None])
    # Observations of the returned copy after this chunk.
    to_come = jnp.clip(reps * lengths - (c + 1) * span, 0, lengths)
    return x, g, valid, final, least - to_come

  depth, hidden = params['init_hidden'].shape
  beam = init_beam(
    settings,
    observation_dim=observations.shape[-1],
    hidden=hidden,
    depth=depth,
  )
  beams = jax.tree.map(lambda a: jnp.broadcast_to(a, (batch,) + a.shape), beam)

  def step(beam, cap, x, g, valid, final=None, need=None):
    return beam_step(
      params, consts, beam, x, g, valid, settings, final, need, cap
    )

  step_fn = jax.vmap(step)  # a None ``most`` is an empty pytree

  # Only chunks that hold a real observation of some sequence are run; the
  # back-pointers of the others stay the identity. A sequence that ends
  # before the others sees all-padding chunks, which leave its beam exactly
  # unchanged (see `beam_step`).
  num_real = jnp.max(-(-reps * lengths // span))

  def body(c, carry):
    beams, overflowed, parents, slots = carry
    beams, parent, slot, over = step_fn(beams, most, *chunk(c))
    return (
      beams,
      overflowed | over,
      parents.at[c].set(parent),
      slots.at[c].set(slot),
    )

  _, overflowed, parents, slots = jax.lax.fori_loop(
    0,
    num_real,
    body,
    (
      beams,
      jnp.zeros((batch,), bool),
      jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32), (num_chunks, batch, k)),
      jnp.zeros((num_chunks, batch, k, span), jnp.int32),
    ),
  )
  paths = jax.vmap(backtrack, in_axes=(1, 1))(parents, slots)  # [B, P]
  # Labels of the last copy: tiled positions (M - 1) N .. M N - 1.
  last = (reps - 1) * lengths[:, None] + jnp.arange(t)[None, :]
  labels = jnp.take_along_axis(paths, jnp.minimum(last, paths.shape[1] - 1), 1)
  return labels, overflowed


def _refine(
  consts: Constants,
  observations: jax.Array,
  mask: jax.Array,
  labels: jax.Array,
  transition_bias: jax.typing.ArrayLike,
  settings: DecodeSettings,
  least: jax.Array | None,
) -> jax.Array:
  """The beam search's labels [B, T] after the configured resegmentation."""
  if not settings.resegment_iterations:
    return labels
  refine = functools.partial(
    resegment.resegment,
    weight=consts.weight,
    transition_bias=transition_bias,
    iterations=settings.resegment_iterations,
    num_slots=settings.num_slots,
    emission=settings.resegment_emission,
    neighbours=settings.resegment_neighbours,
    exclude=settings.resegment_exclude,
  )
  refined = jax.vmap(refine)(observations, mask, labels)
  if least is None:
    return refined
  # Resegmentation can empty a speaker; below the minimum, keep the beam
  # search's labels.
  kept = _count_rows(refined, mask, settings.num_slots) >= least
  return jnp.where(kept[:, None], refined, labels)


def _decode_batch(
  params: Params,
  observations: jax.Array,
  mask: jax.Array,
  transition_bias: jax.typing.ArrayLike,
  crp_alpha: jax.typing.ArrayLike,
  settings: DecodeSettings,
) -> tuple[jax.Array, jax.Array]:
  """Decodes a padded batch; the un-jitted core of `decode_batch`."""
  consts = make_constants(
    params, transition_bias=transition_bias, crp_alpha=crp_alpha
  )
  lengths = jnp.sum(mask, axis=-1).astype(jnp.int32)  # [B]
  gi = input_projection(params, observations)  # [B, T, 3H], once per call
  # With a minimum speaker count: at least min(min_speakers, N) speakers in
  # the returned (last) copy, positions (M - 1) N .. M N - 1.
  least = None
  if settings.min_speakers > 1:
    least = jnp.minimum(settings.min_speakers, lengths)  # [B]
  found, overflowed = _beam_search(
    params, consts, observations, gi, lengths, settings, least
  )
  labels = _refine(
    consts, observations, mask, found, transition_bias, settings, least
  )
  if settings.count_search and settings.min_speakers < settings.max_speakers:
    labels = _search_count(
      params,
      consts,
      observations,
      mask,
      gi,
      lengths,
      found,
      labels,
      transition_bias,
      settings,
    )
  labels = jax.vmap(renumber, in_axes=(0, 0, None))(
    labels, mask, settings.num_slots
  )
  return labels, overflowed


def _search_count(
  params: Params,
  consts: Constants,
  observations: jax.Array,
  mask: jax.Array,
  gi: jax.Array,
  lengths: jax.Array,
  found: jax.Array,
  labels: jax.Array,
  transition_bias: jax.typing.ArrayLike,
  settings: DecodeSettings,
) -> jax.Array:
  """``count_search``: the labels [B, T] of the best-scoring speaker count.

  The beam search ran with a free count and found K speakers (``found``;
  ``labels`` are its refined labels). It runs again with exactly K - r, ...,
  K - 1, K + 1, ..., K + r speakers (``r = count_search``, clipped to
  ``[min_speakers, max_speakers]`` and to the sequence length), each result
  is refined the same way, and every row keeps the candidate of least
  `labelling_cost` plus ``count_penalty * log N`` per speaker for its N
  observations (the free search's on ties). The penalty has BIC's form,
  (p / 2) log N per speaker with p = 2 ``count_penalty`` free parameters,
  so it rises slowly with length: a speaker is kept when separating its
  observations lowers the cost by more than it.
  """
  batch, t, _ = observations.shape
  r = settings.count_search
  offsets = jnp.asarray([d for d in range(-r, r + 1) if d], jnp.int32)
  # At least one speaker, also for all-padding rows (length 0).
  lo = jnp.maximum(jnp.minimum(settings.min_speakers, lengths), 1)
  hi = jnp.maximum(jnp.minimum(settings.max_speakers, lengths), 1)
  counts = jnp.clip(
    _count_rows(found, mask, settings.num_slots) + offsets[:, None], lo, hi
  )
  counts = counts.reshape(-1)  # [2r * B], offset-major

  def tile(a):
    return jnp.broadcast_to(a, (2 * r,) + a.shape).reshape((-1,) + a.shape[1:])

  obs, msk, size = tile(observations), tile(mask), tile(lengths)
  least = jnp.minimum(counts, size)  # 0 for all-padding rows
  fixed, _ = _beam_search(
    params, consts, obs, tile(gi), size, settings, least, counts
  )
  fixed = _refine(consts, obs, msk, fixed, transition_bias, settings, least)
  candidates = jnp.concatenate(
    [labels[None], fixed.reshape(2 * r, batch, t)], axis=0
  )  # [2r + 1, B, T], the free search's first
  # Over candidates (the same observations), then over rows.
  cost = functools.partial(
    labelling_cost, params, consts, num_slots=settings.num_slots
  )
  score = jax.vmap(jax.vmap(cost), in_axes=(None, 0, None))(
    observations, candidates, mask
  )
  speakers = jax.vmap(_count_rows, in_axes=(0, None, None))(
    candidates, mask, settings.num_slots
  )
  # BIC's form: a cost per speaker that grows with log N.
  per_speaker = settings.count_penalty * jnp.log(jnp.maximum(lengths, 1))
  score = score + per_speaker[None, :] * speakers.astype(score.dtype)
  best = jnp.argmin(score, axis=0)  # [B]; the first of equal minima
  return jnp.take_along_axis(candidates, best[None, :, None], axis=0)[0]


def labelling_cost(
  params: Params,
  consts: Constants,
  observations: jax.Array,
  labels: jax.Array,
  mask: jax.Array,
  *,
  num_slots: int,
) -> jax.Array:
  """-log p(X, Y): the model's cost of one whole labelling (teacher forced).

  The sum the beam search accumulates for a hypothesis, computed for given
  labels in one pass: every speaker's observations in time order are
  predicted by the training-time running mean (`model.predict_means`, i.e.
  ``mean_rule='cumulative'``), costing sum_d (mu_d - x_d)^2 / (2 sigma2_d);
  staying with the previous speaker costs -log(1 - p0); a change costs
  -[log p0 + log blocks_s - log(sum(blocks) + alpha)] to a speaker with
  ``blocks_s`` earlier turns, or log alpha in place of log blocks_s for a
  new speaker (the first observation included, as in the beam search).
  It equals the cost of that hypothesis in a one-pass beam search
  (``test_iteration=1``) with ``mean_rule='cumulative'``.

  Args:
    params: model parameters.
    consts: `Constants` of the same parameters and priors.
    observations: float32[T, D].
    labels: int32[T] speaker slots in [0, num_slots) (ignored at padding).
    mask: bool[T] real positions, a prefix.
    num_slots: S.

  Returns:
    float32[] the cost (nats).
  """
  # The speakers' sub-sequences back to back, in time order within each;
  # padding (key S) goes last.
  key = jnp.where(mask, labels, num_slots)
  order = jnp.argsort(key, stable=True)
  grouped, sorted_key = observations[order], key[order]
  starts = jnp.concatenate(
    [jnp.ones((1,), bool), sorted_key[1:] != sorted_key[:-1]]
  )
  mean = model.predict_means(params, grouped[None], starts=starts[None])[0]
  fit = jnp.sum(jnp.where(mask[order], _fit(consts, mean, grouped), 0.0))
  previous = jnp.concatenate([jnp.full((1,), -1, labels.dtype), labels[:-1]])
  turn = mask & (labels != previous)  # a new turn starts (always at 0)
  onehot = (labels[:, None] == jnp.arange(num_slots)) & turn[:, None]
  # Earlier turns of the observation's speaker, and of all speakers.
  turns = jnp.cumsum(onehot, axis=0) - onehot
  blocks = jnp.take_along_axis(turns, labels[:, None] % num_slots, axis=1)[:, 0]
  total = jnp.cumsum(turn) - turn
  log_choice = jnp.where(
    blocks > 0,
    jnp.log(jnp.maximum(blocks, 1).astype(jnp.float32)),
    consts.log_alpha,
  )
  change = -(consts.log_p0 + log_choice - jnp.log(total + consts.alpha))
  step = jnp.where(turn, change, -consts.log_stay)
  return fit + jnp.sum(jnp.where(mask, step, 0.0))


@functools.partial(jax.jit, static_argnames=('settings',))
def decode_batch(
  params: Params,
  observations: jax.Array,
  mask: jax.Array,
  transition_bias: jax.typing.ArrayLike,
  crp_alpha: jax.typing.ArrayLike,
  *,
  settings: DecodeSettings,
) -> tuple[jax.Array, jax.Array]:
  """Decodes a padded batch of sequences (jitted).

  Args:
    params: model parameters.
    observations: float32[B, T, D] sequences, padded at the end.
    mask: bool[B, T] real positions; each row must be a prefix (True, then
      False). An all-False row is a padding utterance.
    transition_bias: p0 in (0, 1).
    crp_alpha: alpha > 0.
    settings: `DecodeSettings` (static).

  Returns:
    (labels, overflowed): int32[B, T] labels renumbered 0, 1, ... by first
    appearance, -1 at padding; bool[B] a surviving hypothesis needed more
    than ``max_speakers`` speakers (only possible with
    ``speaker_overflow='error'``; the labels are then not the unbounded
    decoder's).
  """
  return _decode_batch(
    params, observations, mask, transition_bias, crp_alpha, settings
  )


def decode(
  params: Params,
  observations: jax.Array,
  mask: jax.Array,
  *,
  transition_bias: jax.typing.ArrayLike,
  crp_alpha: jax.typing.ArrayLike,
  settings: DecodeSettings,
) -> jax.Array:
  """Decodes one (padded) sequence; pure and jittable.

  With ``speaker_overflow='error'`` an overflow cannot raise inside JAX; use
  `decode_with_status` (or `predict_labels`, which raises) to detect it.

  Args:
    params: model parameters.
    observations: float32[T, D].
    mask: bool[T] real positions, a prefix.
    transition_bias: p0 in (0, 1).
    crp_alpha: alpha > 0.
    settings: `DecodeSettings` (static under jit).

  Returns:
    int32[T] labels 0, 1, ... in order of first appearance, -1 at padding.

  Example:
    >>> labels = decode(params, x, jnp.ones(len(x), bool), transition_bias=0.1,
    ...                 crp_alpha=1.0, settings=DecodeSettings(beam_size=4))
  """
  return decode_with_status(
    params,
    observations,
    mask,
    transition_bias=transition_bias,
    crp_alpha=crp_alpha,
    settings=settings,
  )[0]


def decode_with_status(
  params: Params,
  observations: jax.Array,
  mask: jax.Array,
  *,
  transition_bias: jax.typing.ArrayLike,
  crp_alpha: jax.typing.ArrayLike,
  settings: DecodeSettings,
) -> tuple[jax.Array, jax.Array]:
  """`decode` that also returns the overflow flag.

  Args:
    params: model parameters.
    observations: float32[T, D].
    mask: bool[T] real positions, a prefix.
    transition_bias: p0 in (0, 1).
    crp_alpha: alpha > 0.
    settings: `DecodeSettings`.

  Returns:
    (int32[T] labels, bool[] overflowed); see `decode_batch`.
  """
  labels, overflowed = _decode_batch(
    params,
    jnp.asarray(observations, jnp.float32)[None],
    jnp.asarray(mask, bool)[None],
    transition_bias,
    crp_alpha,
    settings,
  )
  return labels[0], overflowed[0]


def pad_batch(
  sequences: Sequence[np.ndarray], length: int, batch: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """Stacks sequences into zero-padded arrays with a mask (host NumPy).

  Args:
    sequences: float32[N_i, D] arrays with N_i <= length.
    length: T, padded length.
    batch: B >= len(sequences); extra rows are all padding.

  Returns:
    (float32[B, T, D], bool[B, T]).
  """
  batch = len(sequences) if batch is None else batch
  dim = sequences[0].shape[1]
  out = np.zeros((batch, length, dim), np.float32)
  mask = np.zeros((batch, length), bool)
  for i, seq in enumerate(sequences):
    out[i, : len(seq)] = seq
    mask[i, : len(seq)] = True
  return out, mask


def check_priors(transition_bias: float, crp_alpha: float) -> None:
  """Checks the priors decoding needs.

  Raises:
    errors.ConfigError: (a ValueError) unless 0 < p0 < 1 and alpha > 0 (a
      NaN p0 means the model was never trained or given one).
  """
  if not 0.0 < float(transition_bias) < 1.0:
    raise errors.ConfigError(
      f'transition_bias must be in (0, 1), got {transition_bias}'
    )
  if not float(crp_alpha) > 0.0:
    raise errors.ConfigError(f'crp_alpha must be positive, got {crp_alpha}')


def _validate(sequences: Any, dim: int) -> list[np.ndarray]:
  """Checks inputs (see `data.check_sequence`), casts to float32[N, D].

  Every sequence is checked before any is decoded. Length 1 is valid.

  Raises:
    errors.SequenceTypeError: (a TypeError) not an array or a list of them,
      or a non-float array.
    errors.InvalidSequenceError: (a ValueError) not 2-D, empty, of another
      dimension than ``dim``, or with NaN or Inf.
  """
  if isinstance(sequences, (np.ndarray, jax.Array)):
    sequences = [sequences]
  elif not isinstance(sequences, (list, tuple)):
    raise errors.SequenceTypeError(
      'sequences must be a 2-D array or a list of 2-D arrays, got '
      f'{type(sequences).__name__}'
    )
  return [
    data.check_sequence(
      np.asarray(seq) if isinstance(seq, jax.Array) else seq,
      observation_dim=dim,
      name=f'sequences[{i}]',
    ).astype(np.float32)
    for i, seq in enumerate(sequences)
  ]


def length_batches(
  lengths: Sequence[int], bucket: int, batch_size: int
) -> list[tuple[int, list[int]]]:
  """Groups sequences by padded length into batches of at most batch_size.

  Args:
    lengths: the length of every sequence.
    bucket: see `data.bucketed_length`.
    batch_size: the most sequences per batch.

  Returns:
    ``(padded_length, indices)`` per batch, shortest first; within a batch,
    indices in order of increasing length.
  """
  groups: dict[int, list[int]] = {}
  for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
    groups.setdefault(data.bucketed_length(lengths[i], bucket), []).append(i)
  return [
    (length, idx[start : start + batch_size])
    for length, idx in sorted(groups.items())
    for start in range(0, len(idx), batch_size)
  ]


@functools.lru_cache(maxsize=16)
def _sharded_decoder(mesh: jax.sharding.Mesh, settings: DecodeSettings):
  """`decode_batch` run independently on every device's utterances."""
  rep, rows = PartitionSpec(), PartitionSpec(parallel.AXIS)

  def local(params, observations, mask, transition_bias, crp_alpha):
    return decode_batch(
      params, observations, mask, transition_bias, crp_alpha, settings=settings
    )

  return jax.jit(
    jax.shard_map(
      local,
      mesh=mesh,
      in_specs=(rep, rows, rows, rep, rep),
      out_specs=(rows, rows),
      check_vma=False,
    )
  )


def predict_labels(
  params: Params,
  sequences: np.ndarray | Sequence[np.ndarray],
  *,
  transition_bias: float,
  crp_alpha: float,
  config: Any,
  mesh: jax.sharding.Mesh | None = None,
  batch_size: int = 64,
  progress: bool | None = None,
) -> list[np.ndarray]:
  """Labels utterances with the beam search (host API).

  Sequences are cast to float32 once, sorted by length, grouped by length
  bucket (``config.bucket``) into batches of at most ``batch_size`` (the
  batch dimension padded to a power of two), and decoded by `decode_batch`.
  With a ``mesh`` (`uisrnn_jax.parallel.make_mesh`), every batch's
  utterances are split over its devices (the row count rounded up to a
  multiple of the device count with all-padding utterances) and each device
  decodes its rows under `jax.shard_map` with no communication, so the
  labels equal single-device decoding.

  Args:
    params: model parameters (replicated to the mesh when there is one).
    sequences: one float[N, D] array or a list of them.
    transition_bias: p0 in (0, 1), as estimated in training.
    crp_alpha: alpha > 0.
    config: the ``decode`` config group (ConfigDict or mapping with the
      `DecodeSettings` fields and optionally ``bucket``), or `DecodeSettings`.
    mesh: split batches over these devices (axis ``parallel.AXIS``); None
      decodes on the default device.
    batch_size: maximum utterances per compiled call (over all devices;
      rounded up to a multiple of the device count).
    progress: show a tqdm bar over batches; None shows it when there is more
      than one batch.

  Returns:
    One int32[N_i] array per sequence, in input order, with labels
    0, 1, ... in order of first appearance.

  Raises:
    errors.SequenceTypeError: (a TypeError) a sequence is not a real-valued
      NumPy array.
    errors.InvalidSequenceError: (a ValueError) a sequence that is not 2-D,
      empty, of the wrong D, or not finite.
    errors.ConfigError: (a ValueError) p0 outside (0, 1), alpha <= 0, or a
      bad setting.
    errors.SpeakerOverflowError: (a ValueError) with
      ``speaker_overflow='error'``, a hypothesis needed more than
      ``max_speakers`` speakers.

  Example:
    >>> labels = predict_labels(params, [np.random.randn(20, 4)],
    ...                         transition_bias=0.1, crp_alpha=1.0,
    ...                         config=configs.toy.get_config().decode)
  """
  settings = DecodeSettings.from_config(config)
  bucket = 64
  if not isinstance(config, DecodeSettings):
    bucket = _config_get(config, 'bucket') or bucket
  bucket = config_check.check_field('decode.bucket', bucket, where='bucket')
  check_priors(transition_bias, crp_alpha)
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive, got {batch_size}')
  devices = 1 if mesh is None else mesh.devices.size
  batch_size = -(-batch_size // devices) * devices
  seqs = _validate(sequences, int(params['sigma2'].shape[-1]))
  if not seqs:
    return []

  batches = length_batches([len(x) for x in seqs], bucket, batch_size)
  if progress is None:
    progress = len(batches) > 1
  if progress:
    batches = tqdm.tqdm(batches, desc='decoding', unit='batch')

  p0 = np.float32(transition_bias)
  alpha = np.float32(crp_alpha)
  if mesh is None:
    run = functools.partial(decode_batch, settings=settings)
  else:
    run = _sharded_decoder(mesh, settings)
    params, p0, alpha = parallel.replicate((params, p0, alpha), mesh)
  results: list[np.ndarray | None] = [None] * len(seqs)
  for length, idx in batches:
    rows = min(batch_size, 1 << (len(idx) - 1).bit_length())
    rows = -(-rows // devices) * devices
    obs, mask = pad_batch([seqs[i] for i in idx], length, rows)
    if mesh is not None:
      obs, mask = parallel.shard_batch((obs, mask), mesh)
    labels, overflowed = parallel.to_host(run(params, obs, mask, p0, alpha))
    for row, i in enumerate(idx):
      if overflowed[row]:
        raise errors.SpeakerOverflowError(
          overflow_message(f'sequence {i}', settings.max_speakers)
        )
      results[i] = labels[row, : len(seqs[i])].astype(np.int32)
  return results


def speaker_count_config(
  decode_config: Any,
  *,
  num_speakers: int | None = None,
  min_speakers: int | None = None,
  max_speakers: int | None = None,
) -> Any:
  """A copy of a decode config with a speaker count (pyannote's options).

  * ``max_speakers``: no hypothesis of the beam search ever has more
    speakers (``decode.max_speakers`` speaker slots with
    ``speaker_overflow='disallow'``).
  * ``min_speakers``: the chosen labels have at least this many speakers
    (``decode.min_speakers``); candidates that can no longer reach it are
    pruned inside the search. Offline only: `uisrnn_jax.streaming` refuses
    it. A sequence with fewer observations gets one speaker per observation.
  * ``num_speakers``: both, ``min_speakers = max_speakers = num_speakers``.

  Options left None keep the config's values.

  Args:
    decode_config: the ``decode`` config group (a ConfigDict or a mapping)
      or `DecodeSettings`; not modified.
    num_speakers: the exact number of speakers, or None.
    min_speakers: the least number of speakers, or None.
    max_speakers: the most speakers, or None.

  Returns:
    A config of the same kind with the fields set.

  Raises:
    errors.ConfigError: a count that is not a positive int, ``num_speakers``
      with a different ``min_speakers`` or ``max_speakers``, or a minimum
      above the maximum.

  Example:
    >>> config = speaker_count_config(config.decode, max_speakers=4)
    >>> labels = predict_labels(params, seqs, transition_bias=0.1,
    ...                         crp_alpha=1.0, config=config)
  """
  given = {
    name: config_check.check_field(f'decode.{name}', value, where=name)
    for name, value in (
      ('num_speakers', num_speakers),
      ('min_speakers', min_speakers),
      ('max_speakers', max_speakers),
    )
    if value is not None
  }
  num = given.pop('num_speakers', None)
  if num is not None:
    for name, value in given.items():
      if value != num:
        raise errors.ConfigError(
          f'num_speakers={num} fixes the count, but {name}={value}'
        )
    given = {'min_speakers': num, 'max_speakers': num}
  if 'max_speakers' in given:
    given['speaker_overflow'] = 'disallow'
  if isinstance(decode_config, DecodeSettings):
    return dataclasses.replace(decode_config, **given)
  config = copy.deepcopy(decode_config)
  unlocked = getattr(config, 'unlocked', contextlib.nullcontext)
  with unlocked():  # a locked ConfigDict may lack the newer fields
    if _config_get(config, 'num_speakers') is not None:
      config['num_speakers'] = num  # None: the bounds below rule
    for name, value in given.items():
      config[name] = value
  DecodeSettings.from_config(config)  # a minimum above the maximum raises
  return config


def overflow_message(what: str, max_speakers: int) -> str:
  """The `errors.SpeakerOverflowError` message for ``what`` (a sequence)."""
  return (
    f'{what} needs more than max_speakers={max_speakers} speakers in a '
    "surviving hypothesis (speaker_overflow='error'); raise "
    "config.decode.max_speakers or set speaker_overflow='disallow'"
  )


__all__ = [
  'HOST_FIELDS',
  'Beam',
  'Constants',
  'Nodes',
  'DecodeSettings',
  'advance_speakers',
  'assignment_costs',
  'backtrack',
  'beam_step',
  'count_speakers',
  'decode',
  'decode_batch',
  'decode_with_status',
  'init_beam',
  'input_projection',
  'length_batches',
  'make_constants',
  'overflow_message',
  'pad_batch',
  'predict_labels',
  'renumber',
  'speaker_count_config',
]
