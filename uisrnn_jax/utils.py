"""The seed's ``uisrnn.utils`` helpers, by name, over our data pipeline.

Every public name of the seed's ``uisrnn.utils`` (uisrnn 0.1.2):
``generate_random_string``, ``enforce_cluster_id_uniqueness``,
``concatenate_training_data``, ``sample_permuted_segments``,
``resize_sequence``, ``pack_sequence``, ``estimate_transition_bias`` and
``output_result``, delegating to `uisrnn_jax.data`, `uisrnn_jax.estimators`
and `uisrnn_jax.compat`. They accept what the seed's accept: integer or float
observations, and labels of any hashable type where the seed compares labels
(`resize_sequence`, `estimate_transition_bias`, and
`concatenate_training_data` without uniqueness); only `UISRNN.fit` and
`UISRNN.predict` insist on float arrays and string labels, as the seed's do.
Differences from the seed:

* Randomness comes from an optional ``rng: np.random.Generator`` (a fresh
  ``np.random.default_rng()`` when omitted); global RNG state (``random``,
  ``np.random``) is never used or changed.
* `enforce_cluster_id_uniqueness` prefixes labels with the sequence index
  (``'0_a'``) instead of a random string: only uniqueness matters.
* `resize_sequence` returns float32 sub-sequences (the dtype we train in;
  the seed keeps the input dtype), equal in value.
* Inputs are validated up front, raising TypeError for wrong types and
  ValueError for wrong shapes or lengths, where the seed would fail later or
  silently (a label list in `resize_sequence`, labels mixing strings and
  numbers, which NumPy would merge: ``1`` and ``'1'``).

`pack_sequence` builds the seed's torch ``PackedSequence`` and needs torch
(``pip install 'uisrnn-jax[torch]'``); our own training pads arrays with a
mask instead (`uisrnn_jax.data.SampleSet`).
"""

from __future__ import annotations

import string
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from uisrnn_jax import data as data_lib
from uisrnn_jax import errors, estimators

_RANDOM_STRING_ALPHABET = string.ascii_uppercase + string.digits

TORCH_EXTRA_HINT = (
  'pack_sequence builds torch PackedSequence batches and needs PyTorch: pip '
  "install 'uisrnn-jax[torch]'"
)


def _check_list(value: object, name: str) -> list:
  if not isinstance(value, list):
    raise TypeError(f'{name} must be a list, got {type(value).__name__}')
  return value


def _check_observations(sequence: object, *, name: str) -> np.ndarray:
  """Validates a [N, D] array of integers or floats; returns it as float.

  Integer observations (the seed's utilities take them) are cast to float32;
  float ones are returned unchanged. Shape and finiteness are checked by
  `uisrnn_jax.data.check_sequence`.
  """
  if (
    isinstance(sequence, np.ndarray)
    and np.issubdtype(sequence.dtype, np.integer)
    and sequence.dtype != np.bool_
  ):
    sequence = sequence.astype(np.float32)
  elif not isinstance(sequence, np.ndarray) or not np.issubdtype(
    sequence.dtype, np.floating
  ):
    kind = getattr(sequence, 'dtype', type(sequence).__name__)
    raise errors.SequenceTypeError(
      f'{name} must be a numpy array of integers or floats, got {kind}'
    )
  return data_lib.check_sequence(sequence, name=name)


def generate_random_string(
  length: int = 6, *, rng: np.random.Generator | None = None
) -> str:
  """A random string of upper-case letters and digits.

  >>> len(generate_random_string(8, rng=np.random.default_rng(0)))
  8

  Args:
    length: how many characters.
    rng: random generator (default: a fresh one).

  Returns:
    The string.
  """
  rng = np.random.default_rng() if rng is None else rng
  picks = rng.integers(len(_RANDOM_STRING_ALPHABET), size=int(length))
  return ''.join(_RANDOM_STRING_ALPHABET[i] for i in picks)


def enforce_cluster_id_uniqueness(
  cluster_ids: list[Sequence[str] | np.ndarray],
) -> list[list[str]]:
  """Makes the labels of different sequences distinct.

  >>> enforce_cluster_id_uniqueness([['a', 'b'], np.array(['a', 'c'])])
  [['0_a', '0_b'], ['1_a', '1_c']]

  Args:
    cluster_ids: a list of label sequences, each a list or 1-D array of
      strings.

  Returns:
    A new list of label lists; label ``x`` of sequence ``i`` becomes
    ``f'{i}_{x}'`` (the seed uses a random prefix per sequence).

  Raises:
    TypeError: ``cluster_ids`` is not a list, an element is not a list or
      array, or a label is not a string.
  """
  _check_list(cluster_ids, 'cluster_ids')
  for i, ids in enumerate(cluster_ids):
    if not isinstance(ids, (list, np.ndarray)):
      raise TypeError(
        f'cluster_ids[{i}] must be a list or numpy array of strings, got '
        f'{type(ids).__name__}'
      )
    data_lib.check_labels(ids, len(ids), name=f'cluster_ids[{i}]')
  return data_lib.enforce_cluster_id_uniqueness(cluster_ids)


def concatenate_training_data(
  train_sequences: list[np.ndarray],
  train_cluster_ids: list[Sequence[Hashable] | np.ndarray],
  enforce_uniqueness: bool = True,
  shuffle: bool = True,
  *,
  rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, list]:
  """Concatenates training sequences and their labels into one of each.

  >>> seq, ids = concatenate_training_data(
  ...     [np.zeros((2, 3)), np.ones((1, 3))], [['a', 'b'], ['a']],
  ...     shuffle=False)
  >>> seq.shape, ids
  ((3, 3), ['0_a', '0_b', '1_a'])

  Args:
    train_sequences: a list of [N_i, D] arrays of floats or integers.
    train_cluster_ids: a matching list of label sequences: strings, or with
      ``enforce_uniqueness=False`` also numbers.
    enforce_uniqueness: make labels of different sequences distinct first
      (see `enforce_cluster_id_uniqueness`; it needs string labels).
    shuffle: concatenate the sequences in a random order.
    rng: random generator for the shuffle (default: a fresh one).

  Returns:
    ``([sum N_i, D] array, list of sum N_i labels)``; the array keeps the
    input dtype.

  Raises:
    TypeError: the inputs are not lists, a sequence is not a numeric array,
      or a label is not a string (numbers are fine without uniqueness).
    ValueError: different numbers of sequences and label sequences, a
      sequence that is not 2-D or is empty, observation dimensions that
      differ, or a label sequence of the wrong length.
  """
  _check_list(train_sequences, 'train_sequences')
  _check_list(train_cluster_ids, 'train_cluster_ids')
  if len(train_sequences) != len(train_cluster_ids):
    raise ValueError(
      f'{len(train_sequences)} train_sequences but {len(train_cluster_ids)} '
      'train_cluster_ids; they must have the same length'
    )
  if not train_sequences:
    raise ValueError('train_sequences is empty')
  labels = []
  dim = None
  for i, (seq, ids) in enumerate(zip(train_sequences, train_cluster_ids)):
    name = f'train_sequences[{i}]'
    checked = _check_observations(seq, name=name)
    if dim is not None and checked.shape[1] != dim:
      raise errors.InvalidSequenceError(
        f'{name} has observation dimension {checked.shape[1]}, expected '
        f'{dim} like train_sequences[0]'
      )
    dim = checked.shape[1]
    name = f'train_cluster_ids[{i}]'
    if enforce_uniqueness:
      labels.append(data_lib.check_labels(ids, len(seq), name=name))
    else:
      labels.append(
        data_lib.check_labels(ids, len(seq), name=name, numbers=True)
      )
  if enforce_uniqueness:
    labels = data_lib.enforce_cluster_id_uniqueness(labels)
  order = np.arange(len(train_sequences))
  if shuffle:
    rng = np.random.default_rng() if rng is None else rng
    order = rng.permutation(order)
  sequence = np.concatenate([train_sequences[i] for i in order], axis=0)
  cluster_id = [label for i in order for label in labels[i]]
  return sequence, cluster_id


def sample_permuted_segments(
  index_sequence: Sequence[int] | np.ndarray,
  number_samples: int,
  *,
  rng: np.random.Generator | None = None,
) -> list[np.ndarray]:
  """Copies of an index sequence with its runs of consecutive values shuffled.

  >>> [s.tolist() for s in sample_permuted_segments(
  ...     [1, 2, 6, 10, 11], 2, rng=np.random.default_rng(0))]
  [[10, 11, 1, 2, 6], [10, 11, 6, 1, 2]]

  Args:
    index_sequence: int[N] increasing indices (one speaker's observations).
    number_samples: how many shuffled copies.
    rng: random generator (default: a fresh one).

  Returns:
    ``number_samples`` int arrays; each is a permutation of the runs of
    consecutive integers of ``index_sequence``, each run kept in order.
  """
  rng = np.random.default_rng() if rng is None else rng
  return data_lib.sample_permuted_segments(
    np.asarray(index_sequence), number_samples, rng
  )


def resize_sequence(
  sequence: np.ndarray,
  cluster_id: Sequence[str | float] | np.ndarray,
  num_permutations: int | None = None,
  *,
  rng: np.random.Generator | None = None,
) -> tuple[list[np.ndarray], list[int]]:
  """Splits one sequence into per-speaker sub-sequences (training samples).

  >>> subs, lengths = resize_sequence(
  ...     np.arange(8.0).reshape(4, 2), np.array(['b', 'a', 'a', 'b']))
  >>> [s[:, 0].tolist() for s in subs], lengths
  ([[2.0, 4.0], [0.0, 6.0]], [3, 3])
  >>> subs, lengths = resize_sequence(np.array([[1], [2], [3]]), [7, 5, 7])
  >>> [s[:, 0].tolist() for s in subs], lengths
  ([[2.0], [1.0, 3.0]], [2, 3])

  Args:
    sequence: [N, D] observations, integers or floats.
    cluster_id: N labels, all strings or all numbers (a list or 1-D array).
    num_permutations: with a value above 1, each speaker gives this many
      copies with its turns shuffled (`sample_permuted_segments`);
      otherwise one sub-sequence in the original order.
    rng: random generator for the shuffles (default: a fresh one).

  Returns:
    ``(sub_sequences, seq_lengths)``: float32[n_k, D] arrays, speakers in
    sorted label order (a speaker's copies next to each other), and
    ``n_k + 1`` for each, as in the seed.

  Raises:
    TypeError: ``sequence`` is not a numeric array, or a label is neither a
      string nor a number, or strings are mixed with numbers.
    ValueError: ``sequence`` is not 2-D, is empty or not finite, or the
      label count differs from its length.
  """
  sequence = _check_observations(sequence, name='sequence')
  labels = data_lib.check_labels(
    cluster_id, len(sequence), name='cluster_id', numbers=True
  )
  rng = np.random.default_rng() if rng is None else rng
  subs = data_lib.speaker_samples(
    [sequence],
    [labels],
    num_permutations=int(num_permutations or 0),
    rng=rng,
  )
  return subs, [len(s) + 1 for s in subs]


def pack_sequence(
  sub_sequences: Sequence[np.ndarray],
  seq_lengths: Sequence[int],
  batch_size: int | None,
  observation_dim: int,
  device: Any,
  *,
  rng: np.random.Generator | None = None,
) -> tuple[Any, Any]:
  """The seed's torch training batch: a ``PackedSequence`` and its targets.

  Sub-sequences are sorted by length, longest first, and laid out
  time-major behind one all-zero first step: column ``b`` holds zeros at
  ``t = 0``, sub-sequence rows at ``1 <= t < seq_lengths``, zeros after.
  Needs torch; `uisrnn_jax.data.SampleSet` is the array batch we train on.

  Args:
    sub_sequences: float[n_k, D] arrays (from `resize_sequence`).
    seq_lengths: ``n_k + 1`` for each (from `resize_sequence`).
    batch_size: None to take every sub-sequence once; otherwise this many
      drawn with replacement (the seed's online mode).
    observation_dim: D.
    device: torch device for the tensors, e.g. ``'cpu'``.
    rng: random generator for the draw (default: a fresh one).

  Returns:
    ``(packed_rnn_input, rnn_truth)``: the ``PackedSequence`` of the
    float32[T, B, D] padded input, and that input without its first step,
    float32[T - 1, B, D].

  Raises:
    ImportError: torch is not installed (names the extra).
    ValueError: ``seq_lengths`` and ``sub_sequences`` differ in length, or
      are empty.
  """
  try:
    import torch  # noqa: PLC0415 (optional dependency)
  except ImportError as e:
    raise ImportError(TORCH_EXTRA_HINT) from e
  lengths = np.asarray(seq_lengths, dtype=np.int64)
  if lengths.ndim != 1 or lengths.size == 0:
    raise ValueError('seq_lengths must be a non-empty list of lengths')
  if len(sub_sequences) != lengths.size:
    raise ValueError(
      f'{len(sub_sequences)} sub_sequences but {lengths.size} seq_lengths'
    )
  # Longest first; equal lengths in the order NumPy's reversed argsort gives,
  # so the columns come out as the seed's.
  by_length = np.argsort(lengths)[::-1]
  if batch_size is None:
    chosen = np.arange(lengths.size)
  else:
    rng = np.random.default_rng() if rng is None else rng
    chosen = np.sort(rng.choice(lengths.size, int(batch_size)))
  columns = by_length[chosen]
  column_lengths = lengths[columns]
  padded = np.zeros((column_lengths[0], len(columns), observation_dim))
  for b, k in enumerate(columns):
    padded[1 : column_lengths[b], b] = sub_sequences[k]
  rnn_input = torch.from_numpy(padded).float().to(device)
  packed = torch.nn.utils.rnn.pack_padded_sequence(
    rnn_input, torch.as_tensor(column_lengths), batch_first=False
  )
  return packed, rnn_input[1:]


def estimate_transition_bias(
  cluster_ids: list[Sequence[Hashable] | np.ndarray], smooth: float = 1
) -> tuple[float, float]:
  """Estimates p0, the probability of a speaker change (Eq. 13 of the paper).

  >>> estimate_transition_bias([['a', 'a', 'b'], ['c']])
  (0.5, 4.0)
  >>> estimate_transition_bias([[1, 1, 2], np.array([3])])
  (0.5, 4.0)

  Args:
    cluster_ids: a list of label sequences, one per utterance, each a list
      or 1-D array of hashable labels (strings, ints, ...), compared with
      ``==`` as in the seed. A single concatenated label sequence must be
      wrapped in a list (the seed would silently iterate over the characters
      of each string label).
    smooth: add-``smooth`` pseudo-count.

  Returns:
    ``(transition_bias, denominator)``; the denominator weighs the estimate
    when pooling successive ``fit`` calls.

  Raises:
    TypeError: malformed ``cluster_ids`` (not a list of sequences, or an
      unhashable label).
    ValueError: bad ``smooth``.
  """
  return estimators.estimate_transition_bias(cluster_ids, smooth)


def __getattr__(name: str) -> Any:
  # The seed has output_result in utils; ours lives in compat, which imports
  # JAX, so it is looked up on first use.
  if name == 'output_result':
    from uisrnn_jax import compat  # noqa: PLC0415

    return compat.output_result
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
  return sorted([*globals(), 'output_result'])
