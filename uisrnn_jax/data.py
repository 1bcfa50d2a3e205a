"""Host-side (NumPy) training-data pipeline.

Sequences of observations with per-observation speaker labels become one
training sample per speaker (its observations in order), optionally
augmented with copies whose contiguous runs are shuffled, and are then packed
back to back into the rows of fixed-shape minibatches, with a boolean mask
for padding and a flag at the start of every sample. Everything random takes an
explicit ``np.random.Generator``.
"""

from __future__ import annotations

import dataclasses
import numbers as numbers_lib
from collections.abc import Sequence

import numpy as np

from uisrnn_jax import errors

Labels = Sequence[str] | np.ndarray


def check_sequence(
  sequence: object,
  *,
  observation_dim: int | None = None,
  name: str = 'sequence',
) -> np.ndarray:
  """Validates one observation sequence.

  A sequence of one observation is valid (see `uisrnn_jax.errors`).

  Args:
    sequence: expected a float NumPy array of shape [N, D], N >= 1.
    observation_dim: the expected D, or None to accept any.
    name: how to call the argument in error messages.

  Returns:
    The array, unchanged.

  Raises:
    errors.SequenceTypeError: (a TypeError) not a NumPy array of a floating
      dtype, e.g. int or object.
    errors.InvalidSequenceError: (a ValueError) not 2-D, empty, wrong D, or
      holding NaN or Inf.
  """
  if not isinstance(sequence, np.ndarray) or not np.issubdtype(
    sequence.dtype, np.floating
  ):
    kind = getattr(sequence, 'dtype', type(sequence).__name__)
    raise errors.SequenceTypeError(
      f'{name} must be a float numpy array, got {kind}'
    )
  if sequence.ndim != 2:
    raise errors.InvalidSequenceError(
      f'{name} must be 2-D [length, observation_dim], got shape '
      f'{sequence.shape}'
    )
  if sequence.shape[0] == 0:
    raise errors.InvalidSequenceError(f'{name} is empty (0 observations)')
  if observation_dim is not None and sequence.shape[1] != observation_dim:
    raise errors.InvalidSequenceError(
      f'{name} has observation dimension {sequence.shape[1]}, expected '
      f'observation_dim={observation_dim}'
    )
  finite = np.isfinite(sequence).all(axis=1)
  if not finite.all():
    bad = np.flatnonzero(~finite)
    raise errors.InvalidSequenceError(
      f'{name} has NaN or Inf values in {len(bad)} observation(s), first at '
      f'row {bad[0]}'
    )
  return sequence


def check_labels(
  labels: object, length: int, *, name: str = 'labels', numbers: bool = False
) -> list:
  """Validates one label sequence: one label per observation.

  Args:
    labels: a 1-D list, tuple or NumPy array of strings (or, with
      ``numbers``, of numbers: all strings or all numbers).
    length: the number of observations it must label.
    name: how to call the argument in error messages.
    numbers: also accept numeric labels, as the seed's ``utils`` helpers
      do (``fit``/``predict`` take strings only).

  Returns:
    The labels as a list.

  Raises:
    errors.LabelsTypeError: (a TypeError) not a list/array, or elements of
      another type; strings mixed with numbers.
    errors.InvalidLabelsError: (a ValueError) not 1-D, or of another length
      than the sequence.
  """
  kind = 'labels' if numbers else 'strings'
  if isinstance(labels, np.ndarray):
    if labels.ndim != 1:
      raise errors.InvalidLabelsError(
        f'{name} must be 1-D, got shape {labels.shape}'
      )
    if not numbers and labels.dtype.kind != 'U':
      raise errors.LabelsTypeError(
        f'{name} must be strings, got dtype {labels.dtype}'
      )
    items = labels.tolist()
  elif isinstance(labels, (list, tuple)):
    items = list(labels)
  else:
    raise errors.LabelsTypeError(
      f'{name} must be a list or numpy array of {kind}, got '
      f'{type(labels).__name__}'
    )
  allowed = (str, numbers_lib.Real) if numbers else str
  bad = [x for x in items if not isinstance(x, allowed)]
  if bad and numbers:
    raise errors.LabelsTypeError(
      f'{name} holds {bad[0]!r} of type {type(bad[0]).__name__}; labels '
      'must be strings or numbers'
    )
  if bad:
    raise errors.LabelsTypeError(
      f'{name} must hold strings only, got {type(bad[0]).__name__} {bad[0]!r}'
    )
  if numbers and len({isinstance(x, str) for x in items}) > 1:
    raise errors.LabelsTypeError(
      f'{name} mixes string and non-string labels (NumPy would turn 1 and '
      "'1' into one label)"
    )
  if len(items) != length:
    raise errors.InvalidLabelsError(
      f'{name} has {len(items)} labels for a sequence of {length} observations'
    )
  return items


def enforce_cluster_id_uniqueness(
  cluster_ids: Sequence[Labels],
) -> list[list[str]]:
  """Makes labels of different sequences distinct by prefixing the index.

  >>> enforce_cluster_id_uniqueness([['a', 'b'], ['a']])
  [['0_a', '0_b'], ['1_a']]

  Args:
    cluster_ids: one label sequence per training sequence.

  Returns:
    New label lists; ``'a'`` of sequence i becomes ``f'{i}_a'``.

  Raises:
    errors.LabelsTypeError: (a TypeError) not a list of lists or arrays.
  """
  if not isinstance(cluster_ids, (list, tuple)):
    raise errors.LabelsTypeError(
      'cluster_ids must be a list of label sequences, got '
      f'{type(cluster_ids).__name__}'
    )
  out = []
  for i, ids in enumerate(cluster_ids):
    if not isinstance(ids, (list, tuple, np.ndarray)):
      raise errors.LabelsTypeError(
        f'cluster_ids[{i}] must be a list or array, got {type(ids).__name__}'
      )
    out.append([f'{i}_{x}' for x in list(ids)])
  return out


def sample_permuted_segments(
  index_sequence: np.ndarray, number_samples: int, rng: np.random.Generator
) -> list[np.ndarray]:
  """Copies of ``index_sequence`` with its contiguous runs shuffled.

  >>> rng = np.random.default_rng(0)
  >>> [s.tolist() for s in sample_permuted_segments(
  ...     np.array([1, 2, 6, 10, 11]), 2, rng)]  # doctest: +SKIP
  [[6, 10, 11, 1, 2], [1, 2, 10, 11, 6]]

  Args:
    index_sequence: int[N] increasing indices of one speaker's observations.
    number_samples: how many permuted copies.
    rng: random generator.

  Returns:
    ``number_samples`` arrays, each a permutation of the runs of consecutive
    integers in ``index_sequence`` (order within a run kept).
  """
  index_sequence = np.asarray(index_sequence)
  breaks = np.flatnonzero(np.diff(index_sequence) != 1) + 1
  runs = np.split(index_sequence, breaks)
  return [
    np.concatenate([runs[i] for i in rng.permutation(len(runs))])
    for _ in range(number_samples)
  ]


def speaker_samples(
  sequences: Sequence[np.ndarray],
  cluster_ids: Sequence[list[str]],
  *,
  num_permutations: int,
  rng: np.random.Generator,
) -> list[np.ndarray]:
  """One training sample per speaker (and permuted copy).

  Sequences are taken in the given order; a label that appears in several
  sequences is one speaker (use `enforce_cluster_id_uniqueness` first when
  labels are local to a sequence). Runs are contiguous within the
  concatenation of the sequences, as in the reference.

  Args:
    sequences: float[N_i, D] arrays.
    cluster_ids: matching label lists.
    num_permutations: copies per speaker with shuffled runs; 0 or 1 keeps
      the speaker's observations in their original order, once.
    rng: random generator.

  Returns:
    float32[n_k, D] arrays, speakers in sorted label order.
  """
  observations = np.concatenate(sequences, axis=0).astype(np.float32)
  labels = np.asarray([x for ids in cluster_ids for x in ids])
  _, inverse = np.unique(labels, return_inverse=True)
  order = np.argsort(inverse, kind='stable')
  groups = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
  samples = []
  for idx in groups:
    if num_permutations > 1:
      for perm in sample_permuted_segments(idx, num_permutations, rng):
        samples.append(observations[perm])
    else:
      samples.append(observations[idx])
  return samples


def bucketed_length(length: int, bucket: int) -> int:
  """Rounds a padded length up so few distinct shapes occur.

  Multiples of ``bucket`` up to ``8 * bucket``; beyond that, powers of two
  times ``bucket``. So lengths up to 1000 with bucket 16 give at most
  8 + 4 shapes.

  Args:
    length: the longest real length in a batch (>= 1).
    bucket: the bucket granularity (>= 1).

  Returns:
    The padded length (>= length).
  """
  if bucket < 1:
    raise ValueError(f'bucket must be >= 1, got {bucket}')
  chunks = -(-max(length, 1) // bucket)
  if chunks > 8:
    chunks = 1 << (chunks - 1).bit_length()
  return chunks * bucket


def bucketed_rows(rows: int) -> int:
  """Rounds a row count up to 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, ...

  Packed batches vary in how many rows they need; this set (at most 1.33x
  the rows beyond 4, about two values per doubling) keeps the number of
  shapes the training step compiles for small (`packed_layout` trades the
  rounding off against the row length). On LibriSim at batch 10 it gave
  15 shapes and 0.89 real slots, against 10 shapes, 0.86 and 5 % fewer
  observations per second with powers of two alone.

  Args:
    rows: rows needed (>= 1).

  Returns:
    The padded row count (>= rows).
  """
  rows = max(int(rows), 1)
  if rows <= 4:
    return rows
  power = 1 << (rows - 1).bit_length()
  return power * 3 // 4 if rows <= power * 3 // 4 else power


def pack_lengths(lengths: Sequence[int], capacity: int) -> list[list[int]]:
  """First-fit-decreasing bin packing of samples into rows.

  Args:
    lengths: the length of every sample (each <= capacity).
    capacity: the length of a row.

  Returns:
    One list of sample positions (indices into ``lengths``) per row, the
    samples of a row in the order they are laid out.

  Raises:
    ValueError: a sample is longer than ``capacity``.
  """
  order = np.argsort(-np.asarray(lengths, np.int64), kind='stable')
  rows: list[list[int]] = []
  free: list[int] = []
  for i in order:
    n = int(lengths[i])
    if n > capacity:
      raise ValueError(f'sample of length {n} does not fit rows of {capacity}')
    for r, space in enumerate(free):
      if n <= space:
        rows[r].append(int(i))
        free[r] -= n
        break
    else:
      rows.append([int(i)])
      free.append(capacity - n)
  return rows


def balance_rows(
  lengths: Sequence[int], num_rows: int, capacity: int
) -> list[list[int]] | None:
  """Samples spread over ``num_rows`` rows so that the longest row is short.

  Longest sample first, each onto the row that is shortest so far (the LPT
  rule: its longest row is within 4/3 of the best possible). The training
  step runs its recurrence only up to the batch's longest row
  (`losses.real_length`), so this is faster than `pack_lengths`' rows, which
  fill one row before opening the next.

  Args:
    lengths: the length of every sample.
    num_rows: how many rows there are.
    capacity: the length of a row.

  Returns:
    One list of sample positions per non-empty row (at most ``num_rows``), or
    None when a row would exceed ``capacity`` this way.

  >>> balance_rows([5, 4, 3, 3], 2, 8)
  [[0, 3], [1, 2]]
  """
  order = np.argsort(-np.asarray(lengths, np.int64), kind='stable')
  rows: list[list[int]] = [[] for _ in range(max(num_rows, 1))]
  used = [0] * len(rows)
  for i in order:
    r = int(np.argmin(used))
    used[r] += int(lengths[i])
    if used[r] > capacity:
      return None
    rows[r].append(int(i))
  return [row for row in rows if row]


# Cost of a batch shape in units of one row-step: the step's fixed part (the
# sequential loop, optimizer) is worth about this many extra rows (step times
# at 1 to 10 rows of 256 steps, hidden 512, on a 2-core CPU: about
# 35 us + 60 us per row, per time step).
ROW_OVERHEAD = 0.6


def packed_layout(
  lengths: Sequence[int], bucket: int, *, candidates: int = 3
) -> tuple[int, list[list[int]]]:
  """Chooses the row length and the rows of a packed batch.

  The step's cost grows with (rows + `ROW_OVERHEAD`) x row length, so this
  tries the few bucketed row lengths at or above the longest sample, packs
  the samples into each with `pack_lengths`, rounds the row count with
  `bucketed_rows`, and keeps the cheapest.

  Args:
    lengths: int[B] sample lengths.
    bucket: see `bucketed_length`.
    candidates: how many bucketed row lengths to try.

  Returns:
    ``(steps, rows)``: the row length and the samples of every real row
    (the batch has ``bucketed_rows(len(rows))`` rows in all).
  """
  steps = bucketed_length(int(np.max(lengths)), bucket)
  best = None
  for _ in range(candidates):
    rows = pack_lengths(lengths, steps)
    cost = steps * (bucketed_rows(len(rows)) + ROW_OVERHEAD)
    if best is None or cost < best[0]:
      best = (cost, steps, rows)
    if len(rows) == 1:
      break
    steps = bucketed_length(steps + 1, bucket)
  _, steps, rows = best
  return steps, balance_rows(lengths, bucketed_rows(len(rows)), steps) or rows


Shape = tuple[int, int]  # (rows, row length) of a packed batch


def shape_cost(shape: Shape) -> float:
  """A batch shape's step cost in row-steps (see `ROW_OVERHEAD`)."""
  rows, steps = shape
  return steps * (rows + ROW_OVERHEAD)


def fit_shape(lengths: Sequence[int], shapes: Sequence[Shape]):
  """The cheapest of ``shapes`` the samples can be packed into.

  Args:
    lengths: int[B] sample lengths.
    shapes: candidate (rows, row length) pairs.

  Returns:
    ``(shape, rows)`` as in `packed_layout` (the samples of every real row),
    or None when no shape holds them.
  """
  longest = int(np.max(lengths))
  for shape in sorted(shapes, key=shape_cost):
    if shape[1] >= longest:
      rows = pack_lengths(lengths, shape[1])
      if len(rows) <= shape[0]:
        return shape, balance_rows(lengths, shape[0], shape[1]) or rows
  return None


def plan_shapes(
  batches: Sequence[Sequence[int]],
  bucket: int,
  *,
  compile_cost: float,
  weight: float = 1.0,
  candidates: int = 3,
) -> list[Shape]:
  """Few batch shapes for a whole run, chosen before its first step.

  Every new shape compiles the training step again (seconds), while a
  batch padded into a larger shape than its own costs a little more every
  step. Given the sample lengths of the run's batches, this picks the set
  of shapes that minimises (compile_cost x number of shapes) + (sum over
  batches of the cheapest shape in the set that holds it), in row-steps:
  greedily from the cheapest single shape that holds every batch, adding
  the shape that saves most while it saves more than a compile. So a short
  run gets one or two shapes and a long one about as many as its batches
  have (`packed_layout`'s own choices).

  Args:
    batches: sample lengths of every batch of the run (or of a sample of
      them; see ``weight``).
    bucket: see `bucketed_length`.
    compile_cost: one compilation, in row-steps (`shape_cost` units).
    weight: how many batches of the run each given batch stands for.
    candidates: row lengths tried above each batch's longest sample.

  Returns:
    The chosen (rows, row length) shapes; every batch fits one of them.
  """
  if not batches:
    return []
  longest = [int(np.max(b)) for b in batches]
  lengths = sorted({bucketed_length(n, bucket) for n in longest})
  for _ in range(candidates - 1):
    lengths.append(bucketed_length(lengths[-1] + 1, bucket))
  lengths = sorted(set(lengths))
  # needs[i, j]: rows batch i needs at row length lengths[j] (inf: too short)
  needs = np.full((len(batches), len(lengths)), np.inf)
  for i, b in enumerate(batches):
    for j, steps in enumerate(lengths):
      if steps >= longest[i]:
        needs[i, j] = len(pack_lengths(b, steps))
  shapes = sorted(
    {
      (int(needs[i, j]), lengths[j])
      for i, j in zip(*np.isfinite(needs).nonzero())
    }
  )
  costs = np.array([shape_cost(s) for s in shapes])
  col = {steps: j for j, steps in enumerate(lengths)}
  fits = np.stack(
    [needs[:, col[steps]] <= rows for rows, steps in shapes], axis=1
  )
  per_batch = np.where(fits, costs[None, :], np.inf)  # [batches, shapes]
  total = weight * per_batch.sum(axis=0)
  chosen = [int(np.argmin(total))]  # finite: the longest row holds all
  current = per_batch[:, chosen[0]]
  while True:
    gains = weight * np.maximum(current[:, None] - per_batch, 0.0).sum(axis=0)
    best = int(np.argmax(gains))
    if gains[best] <= compile_cost:
      break
    chosen.append(best)
    current = np.minimum(current, per_batch[:, best])
  return sorted(shapes[k] for k in chosen)


@dataclasses.dataclass(frozen=True)
class SampleSet:
  """Training samples packed into one array for fast batch assembly.

  Attributes:
    observations: float32[total, D], all samples back to back.
    offsets: int64[num_samples + 1], sample i is ``offsets[i]:offsets[i+1]``.
  """

  observations: np.ndarray
  offsets: np.ndarray

  @classmethod
  def from_samples(cls, samples: Sequence[np.ndarray]) -> SampleSet:
    """Packs a list of float[n_i, D] samples."""
    if not samples:
      raise ValueError('no training samples')
    lengths = np.array([len(s) for s in samples], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return cls(np.concatenate(samples, axis=0).astype(np.float32), offsets)

  @property
  def lengths(self) -> np.ndarray:
    """int64[num_samples] real length of every sample."""
    return np.diff(self.offsets)

  def __len__(self) -> int:
    return len(self.offsets) - 1

  def batch(
    self,
    indices: np.ndarray,
    *,
    bucket: int,
    pack: bool = True,
    shapes: Sequence[Shape] | None = None,
  ) -> dict[str, np.ndarray]:
    """Lays the chosen samples out in a fixed-shape batch.

    Unpacked, every sample has its own row. Packed (the default), several
    samples share a row back to back (`packed_layout`), which the loss
    handles by restarting the GRU state and the running mean at every
    ``starts`` flag: the same loss and gradients in fewer padded slots.

    Args:
      indices: int[B] which samples (repeats allowed).
      bucket: see `bucketed_length`.
      pack: share rows between samples.
      shapes: packed only: lay the batch out in the cheapest of these
        (rows, row length) shapes that holds it (`plan_shapes`); its own
        `packed_layout` when none does.

    Returns:
      ``{'observations': float32[R, T, D], 'mask': bool[R, T],
      'starts': bool[R, T], 'ends': int32[R, T]}``: ``starts`` flags the
      first step of every sample and ``ends[r, t]`` is the (exclusive) end of
      the sample that step t of row r belongs to. Padded entries are 0,
      masked out, and padded rows are empty.
    """
    indices = np.asarray(indices, np.int64)
    lengths = self.lengths[indices]
    fitted = fit_shape(lengths, shapes) if pack and shapes else None
    if fitted is not None:
      (num_rows, steps), rows = fitted
    elif pack:
      steps, rows = packed_layout(lengths, bucket)
      num_rows = bucketed_rows(len(rows))
    else:
      steps = bucketed_length(int(lengths.max()), bucket)
      rows = [[i] for i in range(len(indices))]
      num_rows = len(rows)
    source = np.zeros((num_rows, steps), np.int64)
    mask = np.zeros((num_rows, steps), bool)
    starts = np.zeros((num_rows, steps), bool)
    ends = np.zeros((num_rows, steps), np.int32)
    for r, members in enumerate(rows):
      t = 0
      for i in members:
        n = int(lengths[i])
        source[r, t : t + n] = self.offsets[indices[i]] + np.arange(n)
        mask[r, t : t + n] = True
        starts[r, t] = True
        ends[r, t : t + n] = t + n
        t += n
    observations = self.observations[source]
    observations[~mask] = 0.0
    return {
      'observations': observations,
      'mask': mask,
      'starts': starts,
      'ends': ends,
    }

  def sample_indices(
    self, batch_size: int | None, rng: np.random.Generator
  ) -> np.ndarray:
    """The samples of a minibatch, drawn with replacement (None: all)."""
    if batch_size is None:
      return np.arange(len(self))
    if batch_size < 1:
      raise ValueError(f'batch_size must be >= 1 or None, got {batch_size}')
    return rng.integers(0, len(self), batch_size)

  def sample_batch(
    self,
    batch_size: int | None,
    rng: np.random.Generator,
    *,
    bucket: int,
    pack: bool = True,
    shapes: Sequence[Shape] | None = None,
  ) -> dict[str, np.ndarray]:
    """A minibatch drawn with replacement, or every sample when None."""
    indices = self.sample_indices(batch_size, rng)
    return self.batch(indices, bucket=bucket, pack=pack, shapes=shapes)


def prepare_training_data(
  sequences: np.ndarray | Sequence[np.ndarray],
  cluster_ids: Labels | Sequence[Labels],
  *,
  observation_dim: int | None,
  enforce_uniqueness: bool,
  num_permutations: int,
  rng: np.random.Generator,
) -> tuple[SampleSet, list[list[str]]]:
  """Validates, shuffles and converts training data into speaker samples.

  Args:
    sequences: a list of float[N_i, D] sequences, or one concatenated
      float[N, D] sequence.
    cluster_ids: a matching list of label sequences, or one label sequence.
    observation_dim: the expected D (None: taken from the data).
    enforce_uniqueness: prefix labels per sequence (lists only; a single
      concatenated sequence must already have globally unique labels).
    num_permutations: see `speaker_samples`.
    rng: random generator (sequence order and permutations).

  Returns:
    ``(samples, label_sequences)``: the packed samples, and the validated
    label sequences in their original order (for estimating p0 and alpha).

  Raises:
    TypeError, ValueError: on malformed input, before any work is done.
  """
  if isinstance(sequences, np.ndarray):
    sequences, cluster_ids = [sequences], [cluster_ids]
    enforce_uniqueness = False
  elif not isinstance(sequences, (list, tuple)):
    raise TypeError(
      'sequences must be a list of float arrays or one float array, got '
      f'{type(sequences).__name__}'
    )
  if not isinstance(cluster_ids, (list, tuple)):
    raise TypeError('cluster_ids must be a list when sequences is a list')
  if len(sequences) != len(cluster_ids):
    raise ValueError(
      f'{len(sequences)} sequences but {len(cluster_ids)} label sequences'
    )
  if not sequences:
    raise ValueError('no training sequences given')
  dim = observation_dim
  labels = []
  for i, (seq, ids) in enumerate(zip(sequences, cluster_ids, strict=True)):
    check_sequence(seq, observation_dim=dim, name=f'sequences[{i}]')
    dim = seq.shape[1]
    labels.append(check_labels(ids, len(seq), name=f'cluster_ids[{i}]'))
  grouped = (
    enforce_cluster_id_uniqueness(labels) if enforce_uniqueness else labels
  )
  order = rng.permutation(len(sequences))
  samples = speaker_samples(
    [sequences[i] for i in order],
    [grouped[i] for i in order],
    num_permutations=num_permutations,
    rng=rng,
  )
  return SampleSet.from_samples(samples), labels
