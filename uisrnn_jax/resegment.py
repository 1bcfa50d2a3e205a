"""Viterbi resegmentation: an optional offline refinement of decoded labels.

The beam search decides online, observation by observation, and never
revisits a decision it has committed to. Once a whole sequence is decoded,
its labels give every speaker a centroid (the mean of the observations
assigned to it), and the labels can be re-chosen jointly by the Viterbi
algorithm under the same model the decoder uses:

* emission: ``-sum_d (x_d - c_{s,d})^2 / (2 sigma2_d)`` for the centroid
  ``c_s`` of speaker ``s`` (the model's sigma2);
* transition: ``log(1 - p0)`` to stay with the same speaker and
  ``log(p0 / (K - 1))`` to change to any given other one of the ``K``
  speakers (the model's transition bias p0).

Centroids are then recomputed from the new labels and the two steps repeat
until the labels stop changing or ``iterations`` rounds have run. Each round
can only raise the joint log-score (Viterbi is exact for fixed centroids, and
the mean maximises the emission term for fixed labels), so the loop
converges; a speaker left with no observation disappears. No speaker is ever
created, so the number of speakers is the decoder's or fewer.

This is the resegmentation step common in diarization pipelines, without
any new parameter: sigma2 and p0 are the trained model's. It needs the whole
sequence, so it is applied by the batch decoder (``decode.resegment_iterations
> 0``) and never by the streaming decoder.

``emission='neighbours'`` replaces the centroid by the speaker's nearest
observations: the emission of observation ``t`` for speaker ``s`` is minus the
mean weighted squared distance ``sum_d weight_d (x_t,d - x_u,d)^2`` to the
``neighbours`` observations ``u`` of ``s`` closest to ``x_t``, leaving out
``t`` itself and the ``exclude`` observations on either side of it (sliding
windows that share audio with ``t``). A speaker whose observations come
from several recordings forms several clusters of d-vectors, which one
centroid sits between; the nearest ones stay within the right cluster. A
speaker with no observation outside some ``t``'s excluded span (a spurious
speaker of a few consecutive windows) has no emission there and is dropped.
That round is no longer a coordinate ascent of one objective, so the loop
stops at a fixed point or after ``iterations`` rounds, whichever is first.

Everything here is pure and jittable, with static shapes: ``T`` observations
(a padded prefix), ``S`` speaker slots.

>>> labels = resegment(x, mask, labels, weight=1 / (2 * sigma2),
...                    transition_bias=0.1, iterations=10)  # doctest: +SKIP
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Full float32 matrix products on every backend (TPUs default to bfloat16
# passes, which would blur centroids and distances).
_FULL_FLOAT32 = jax.lax.Precision.HIGHEST

EMISSIONS = ('centroid', 'neighbours')
"""The values of `resegment`'s ``emission``."""


def speaker_means(
  observations: jax.Array, labels: jax.Array, mask: jax.Array, num_slots: int
) -> tuple[jax.Array, jax.Array]:
  """Centroid and observation count of every speaker slot.

  Args:
    observations: float32[T, D].
    labels: int32[T] slot of every observation (ignored where not ``mask``).
    mask: bool[T] real positions.
    num_slots: S.

  Returns:
    (float32[S, D] means, zero for an empty slot; int32[S] counts).
  """
  onehot = (labels[:, None] == jnp.arange(num_slots)) & mask[:, None]
  onehot = onehot.astype(observations.dtype)
  counts = jnp.sum(onehot, axis=0)
  sums = jnp.dot(onehot.T, observations, precision=_FULL_FLOAT32)
  means = sums / jnp.maximum(counts, 1.0)[:, None]
  return means, counts.astype(jnp.int32)


def emissions(
  observations: jax.Array, means: jax.Array, weight: jax.Array
) -> jax.Array:
  """``-sum_d weight_d (x_d - c_{s,d})^2`` -> float32[T, S].

  Expanded into matrix products, so no [T, S, D] array is formed.
  """
  xx = jnp.sum(observations * observations * weight, axis=-1)
  cc = jnp.sum(means * means * weight, axis=-1)
  xc = jnp.dot(observations, (means * weight).T, precision=_FULL_FLOAT32)
  return -(xx[:, None] - 2.0 * xc + cc[None, :])


def neighbour_emissions(
  observations: jax.Array,
  labels: jax.Array,
  mask: jax.Array,
  weight: jax.Array,
  *,
  num_slots: int,
  neighbours: int,
  exclude: int,
  block: int = 64,
) -> jax.Array:
  """Minus the mean distance to each speaker's nearest observations.

  Args:
    observations: float32[T, D].
    labels: int32[T] slot of every observation (ignored where not ``mask``).
    mask: bool[T] real positions; only they are neighbours.
    weight: float32[D] ``1 / (2 sigma2)``; distances are
      ``sum_d weight_d (x_d - y_d)^2``, the centroid emission's units.
    num_slots: S.
    neighbours: the most nearest observations averaged per speaker (fewer
      when the speaker has fewer usable ones).
    exclude: observations on either side of ``t`` that are not its
      neighbours (``t`` itself never is).
    block: rows computed at once; the memory is O(block x S x T). The
      distances are recomputed in every round instead of kept, since T x T
      of them per sequence would not fit for hour-long recordings.

  Returns:
    float32[T, S]; ``-inf`` where the speaker has no observation outside
    ``t``'s excluded span.
  """
  length = observations.shape[0]
  take = min(neighbours, length)
  positions = jnp.arange(length)
  member = (labels[None, :] == jnp.arange(num_slots)[:, None]) & mask[None, :]
  neg_inf = jnp.array(-jnp.inf, observations.dtype)

  def row(inputs):
    x, position = inputs
    # Minus the weighted squared distance to every observation, <= 0.
    closeness = jnp.minimum(emissions(x[None], observations, weight)[0], 0.0)
    usable = member & (jnp.abs(positions - position) > exclude)[None, :]
    nearest, _ = jax.lax.top_k(jnp.where(usable, closeness, neg_inf), take)
    found = jnp.isfinite(nearest)
    count = jnp.sum(found, axis=-1)
    total = jnp.sum(jnp.where(found, nearest, 0.0), axis=-1)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), neg_inf)

  return jax.lax.map(
    row, (observations, positions), batch_size=min(block, length)
  )


def _switch_log_prob(log_p0: jax.Array, num_active: jax.Array) -> jax.Array:
  """log(p0 / (K - 1)): the change to one given other speaker."""
  return log_p0 - jnp.log(jnp.maximum(num_active - 1, 1).astype(jnp.float32))


def viterbi(
  scores: jax.Array,
  active: jax.Array,
  mask: jax.Array,
  *,
  log_stay: jax.Array,
  log_p0: jax.Array,
) -> jax.Array:
  """The best speaker path under a stay/change transition model.

  Args:
    scores: float32[T, S] emission log-scores.
    active: bool[S] speakers that may be used (at least one).
    mask: bool[T] real positions, a prefix; padded positions keep the path
      unchanged.
    log_stay: log(1 - p0).
    log_p0: log p0; a change to one given other active speaker costs
      ``log p0 - log(K - 1)`` with K active speakers.

  Returns:
    int32[T] the maximising path (at padded positions: the last real label).
  """
  num_slots = scores.shape[-1]
  if num_slots == 1:
    return jnp.zeros(scores.shape[:1], jnp.int32)
  slots = jnp.arange(num_slots)
  neg_inf = jnp.array(-jnp.inf, scores.dtype)
  scores = jnp.where(active, scores, neg_inf)
  log_switch = _switch_log_prob(log_p0, jnp.sum(active))

  def forward(prev, inputs):
    score_t, real = inputs
    # The best predecessor of s among the other speakers: the overall best,
    # or the runner-up when s itself is the best.
    top, arg = jax.lax.top_k(prev, 2)
    other = jnp.where(slots == arg[0], top[1], top[0])
    other_arg = jnp.where(slots == arg[0], arg[1], arg[0])
    stay = prev + log_stay
    switch = other + log_switch
    take_stay = stay >= switch
    best = jnp.where(take_stay, stay, switch) + score_t
    pointer = jnp.where(take_stay, slots, other_arg).astype(jnp.int32)
    new = jnp.where(real, best, prev)
    pointer = jnp.where(real, pointer, slots.astype(jnp.int32))
    return new, pointer

  first = scores[0]
  final, pointers = jax.lax.scan(forward, first, (scores[1:], mask[1:]))
  last = jnp.argmax(final).astype(jnp.int32)

  def backward(state, pointer):
    prev = pointer[state]
    return prev, state

  start, path = jax.lax.scan(backward, last, pointers, reverse=True)
  return jnp.concatenate([start[None], path])


def path_log_score(
  scores: jax.Array,
  path: jax.Array,
  active: jax.Array,
  mask: jax.Array,
  *,
  log_stay: jax.Array,
  log_p0: jax.Array,
) -> jax.Array:
  """The joint log-score `viterbi` maximises, for a given path."""
  log_switch = _switch_log_prob(log_p0, jnp.sum(active))
  emit = jnp.take_along_axis(scores, path[:, None], axis=1)[:, 0]
  same = path[1:] == path[:-1]
  trans = jnp.where(same, log_stay, log_switch)
  return jnp.sum(jnp.where(mask, emit, 0.0)) + jnp.sum(
    jnp.where(mask[1:], trans, 0.0)
  )


def resegment(
  observations: jax.Array,
  mask: jax.Array,
  labels: jax.Array,
  *,
  weight: jax.Array,
  transition_bias: jax.typing.ArrayLike,
  iterations: int,
  num_slots: int | None = None,
  emission: str = 'centroid',
  neighbours: int = 10,
  exclude: int = 0,
) -> jax.Array:
  """Alternates emissions and Viterbi labels until the labels are stable.

  Args:
    observations: float32[T, D] one sequence, padded at the end.
    mask: bool[T] real positions, a prefix with at least one True.
    labels: int32[T] initial labels in [0, S) (e.g. the beam search's).
    weight: float32[D] ``1 / (2 sigma2)``.
    transition_bias: p0 in (0, 1).
    iterations: the most rounds (static); 0 returns ``labels`` unchanged.
    num_slots: S; defaults to T (every label is then in range).
    emission: ``'centroid'`` (each speaker's mean) or ``'neighbours'``
      (`neighbour_emissions`); see the module docstring.
    neighbours, exclude: see `neighbour_emissions` (``'neighbours'`` only).

  Returns:
    int32[T] labels in [0, S), a subset of the input's speakers, unchanged
    where ``mask`` is False.
  """
  if iterations < 0:
    raise ValueError(f'iterations must be >= 0, got {iterations}')
  if emission not in EMISSIONS:
    raise ValueError(f'emission must be one of {EMISSIONS}, got {emission!r}')
  if neighbours < 1 or exclude < 0:
    raise ValueError(
      f'need neighbours >= 1 and exclude >= 0, got {neighbours}, {exclude}'
    )
  num_slots = observations.shape[0] if num_slots is None else num_slots
  labels = labels.astype(jnp.int32)
  p0 = jnp.asarray(transition_bias, jnp.float32)
  log_stay, log_p0 = jnp.log1p(-p0), jnp.log(p0)

  def one_round(current):
    if emission == 'centroid':
      means, counts = speaker_means(observations, current, mask, num_slots)
      scores, active = emissions(observations, means, weight), counts > 0
    else:
      scores = neighbour_emissions(
        observations,
        current,
        mask,
        weight,
        num_slots=num_slots,
        neighbours=neighbours,
        exclude=exclude,
      )
      # Speakers with an emission at every real position.
      active = jnp.all(jnp.isfinite(scores) | ~mask[:, None], axis=0)
    path = viterbi(scores, active, mask, log_stay=log_stay, log_p0=log_p0)
    # No usable speaker at all (every one too short): keep the labels.
    return jnp.where(mask & jnp.any(active), path, current)

  def cond(carry):
    i, _, changed = carry
    return (i < iterations) & changed

  def body(carry):
    i, current, _ = carry
    new = one_round(current)
    return i + 1, new, jnp.any(new != current)

  _, out, _ = jax.lax.while_loop(cond, body, (0, labels, jnp.array(True)))
  return out


__all__ = [
  'EMISSIONS',
  'emissions',
  'neighbour_emissions',
  'path_log_score',
  'resegment',
  'speaker_means',
  'viterbi',
]
