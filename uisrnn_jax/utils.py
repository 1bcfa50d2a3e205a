"""The seed's ``uisrnn.utils`` helpers, by name, over our data pipeline.

Drop-ins for ``enforce_cluster_id_uniqueness``, ``concatenate_training_data``,
``sample_permuted_segments``, ``resize_sequence``, ``estimate_transition_bias``
and ``output_result`` of uisrnn 0.1.2, delegating to `uisrnn_jax.data`,
`uisrnn_jax.estimators` and `uisrnn_jax.compat`. Differences from the seed:

* Randomness comes from an optional ``rng: np.random.Generator`` (a fresh
  ``np.random.default_rng()`` when omitted); global RNG state (``random``,
  ``np.random``) is never used or changed.
* `enforce_cluster_id_uniqueness` prefixes labels with the sequence index
  (``'0_a'``) instead of a random string: only uniqueness matters.
* `resize_sequence` returns float32 sub-sequences (the dtype we train in).
* Inputs are validated up front (float arrays, string labels), raising
  TypeError for wrong types and ValueError for wrong shapes or lengths.

The seed's ``pack_sequence`` (torch ``PackedSequence`` batches) and
``generate_random_string`` have no counterpart: batches are padded arrays
with a mask (`uisrnn_jax.data.SampleSet`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from uisrnn_jax import data as data_lib
from uisrnn_jax import estimators


def _check_list(value: object, name: str) -> list:
  if not isinstance(value, list):
    raise TypeError(f'{name} must be a list, got {type(value).__name__}')
  return value


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
  train_cluster_ids: list[Sequence[str] | np.ndarray],
  enforce_uniqueness: bool = True,
  shuffle: bool = True,
  *,
  rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, list[str]]:
  """Concatenates training sequences and their labels into one of each.

  >>> seq, ids = concatenate_training_data(
  ...     [np.zeros((2, 3)), np.ones((1, 3))], [['a', 'b'], ['a']],
  ...     shuffle=False)
  >>> seq.shape, ids
  ((3, 3), ['0_a', '0_b', '1_a'])

  Args:
    train_sequences: a list of float[N_i, D] arrays.
    train_cluster_ids: a matching list of label sequences (strings).
    enforce_uniqueness: make labels of different sequences distinct first
      (see `enforce_cluster_id_uniqueness`).
    shuffle: concatenate the sequences in a random order.
    rng: random generator for the shuffle (default: a fresh one).

  Returns:
    ``(float[sum N_i, D] array, list of sum N_i labels)``; the array keeps
    the input dtype.

  Raises:
    TypeError: the inputs are not lists, a sequence is not a float array, or
      a label is not a string.
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
    data_lib.check_sequence(
      seq, observation_dim=dim, name=f'train_sequences[{i}]'
    )
    dim = seq.shape[1]
    if not isinstance(ids, (list, np.ndarray)):
      raise TypeError(
        f'train_cluster_ids[{i}] must be a list or numpy array of strings, '
        f'got {type(ids).__name__}'
      )
    labels.append(
      data_lib.check_labels(ids, len(seq), name=f'train_cluster_ids[{i}]')
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
  cluster_id: Sequence[str] | np.ndarray,
  num_permutations: int | None = None,
  *,
  rng: np.random.Generator | None = None,
) -> tuple[list[np.ndarray], list[int]]:
  """Splits one sequence into per-speaker sub-sequences (training samples).

  >>> subs, lengths = resize_sequence(
  ...     np.arange(8.0).reshape(4, 2), np.array(['b', 'a', 'a', 'b']))
  >>> [s[:, 0].tolist() for s in subs], lengths
  ([[2.0, 4.0], [0.0, 6.0]], [3, 3])

  Args:
    sequence: float[N, D] observations.
    cluster_id: N string labels.
    num_permutations: with a value above 1, each speaker gives this many
      copies with its turns shuffled (`sample_permuted_segments`);
      otherwise one sub-sequence in the original order.
    rng: random generator for the shuffles (default: a fresh one).

  Returns:
    ``(sub_sequences, seq_lengths)``: float32[n_k, D] arrays, speakers in
    sorted label order (a speaker's copies next to each other), and
    ``n_k + 1`` for each, as in the seed.

  Raises:
    TypeError: ``sequence`` is not a float array or a label not a string.
    ValueError: ``sequence`` is not 2-D or is empty, or the label count
      differs from its length.
  """
  data_lib.check_sequence(sequence, name='sequence')
  labels = data_lib.check_labels(cluster_id, len(sequence), name='cluster_id')
  rng = np.random.default_rng() if rng is None else rng
  subs = data_lib.speaker_samples(
    [sequence],
    [labels],
    num_permutations=int(num_permutations or 0),
    rng=rng,
  )
  return subs, [len(s) + 1 for s in subs]


def estimate_transition_bias(
  cluster_ids: list[Sequence[str] | np.ndarray], smooth: float = 1
) -> tuple[float, float]:
  """Estimates p0, the probability of a speaker change (Eq. 13 of the paper).

  >>> estimate_transition_bias([['a', 'a', 'b'], ['c']])
  (0.5, 4.0)

  Args:
    cluster_ids: a list of label sequences, one per utterance. A single
      concatenated label sequence must be wrapped in a list (the seed would
      silently iterate over its characters).
    smooth: add-``smooth`` pseudo-count.

  Returns:
    ``(transition_bias, denominator)``; the denominator weighs the estimate
    when pooling successive ``fit`` calls.

  Raises:
    TypeError: malformed ``cluster_ids``.
    ValueError: bad ``smooth``.
  """
  return estimators.estimate_transition_bias(cluster_ids, smooth)


def output_result(model_args, training_args, test_record, **kwargs) -> str:
  """`uisrnn_jax.compat.output_result` (the seed has it in ``utils``)."""
  from uisrnn_jax import compat

  return compat.output_result(model_args, training_args, test_record, **kwargs)
