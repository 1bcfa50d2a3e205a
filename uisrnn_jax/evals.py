"""Frame accuracy of speaker labels (host-side NumPy); the seed's ``evals``.

Accuracy is the reference's: the fraction of frames labelled consistently
under the best one-to-one matching of reference speakers to hypothesis
speakers (Hungarian algorithm), so it is invariant to how either side names
its speakers. DER and per-conversation reports are in `uisrnn_jax.evaluation`;
the training loop's metric writers in `uisrnn_jax.metric_writers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import optimize


def _as_labels(labels: Any, name: str) -> np.ndarray:
  """Returns labels as a 1-D array, refusing silent str/number coercion."""
  array = np.asarray(labels)
  if array.ndim != 1:
    raise ValueError(f'{name} must be 1-D, got shape {array.shape}')
  if (
    array.dtype.kind == 'U'
    and not isinstance(labels, np.ndarray)
    and not all(isinstance(x, str) for x in labels)
  ):
    # np.asarray([1, '1']) would merge two distinct labels into '1'.
    raise TypeError(f'{name} mixes string and non-string labels')
  return array


def renumber_labels(labels: Sequence[Any] | np.ndarray) -> np.ndarray:
  """Maps labels to 0, 1, 2, ... in order of first appearance.

  >>> renumber_labels(['b', 'b', 'a', 'c', 'a'])
  array([0, 0, 1, 2, 1], dtype=int32)

  Args:
    labels: [N] list or 1-D array of hashable, mutually comparable labels
      (all strings or all numbers).

  Returns:
    int32[N] codes; code k is the k-th distinct label to appear.

  Raises:
    ValueError: if ``labels`` is not 1-D.
    TypeError: if it mixes string and non-string labels.
  """
  array = _as_labels(labels, 'labels')
  if array.size == 0:
    return np.zeros(0, dtype=np.int32)
  _, first, inverse = np.unique(array, return_index=True, return_inverse=True)
  rank = np.empty(first.size, dtype=np.int32)
  rank[np.argsort(first)] = np.arange(first.size, dtype=np.int32)
  return rank[inverse.reshape(-1)]


def _match_accuracy(codes1: np.ndarray, codes2: np.ndarray) -> float:
  """Optimal one-to-one matching accuracy of two int code sequences."""
  num2 = int(codes2.max()) + 1
  counts = np.bincount(
    codes1.astype(np.int64) * num2 + codes2, minlength=(codes1.max() + 1) * num2
  ).reshape(-1, num2)
  rows, cols = optimize.linear_sum_assignment(counts, maximize=True)
  return float(counts[rows, cols].sum()) / codes1.size


def frame_accuracy(
  reference: Sequence[Any] | np.ndarray, hypothesis: Sequence[Any] | np.ndarray
) -> float:
  """Frame accuracy under the best one-to-one speaker matching.

  Like ``compute_sequence_match_accuracy`` but accepts any 1-D array-likes
  (e.g. ``str[N]`` references and ``int32[N]`` predicted labels).

  >>> frame_accuracy(np.array(['a', 'a', 'b', 'b']), np.array([7, 7, 7, 3]))
  0.75

  Args:
    reference: [N] ground-truth labels.
    hypothesis: [N] predicted labels.

  Returns:
    Accuracy in [1 / max(#speakers), 1].

  Raises:
    ValueError: if the inputs are empty, not 1-D or of different lengths.
    TypeError: if one of them mixes string and non-string labels.
  """
  codes1 = renumber_labels(reference)
  codes2 = renumber_labels(hypothesis)
  if codes1.size == 0 or codes1.size != codes2.size:
    raise ValueError(
      'reference and hypothesis must have the same non-zero length, got '
      f'{codes1.size} and {codes2.size}'
    )
  return _match_accuracy(codes1, codes2)


def get_list_inverse_index(unique_ids: list) -> dict[Any, int]:
  """Maps each value of a list to its position (the seed's helper).

  >>> get_list_inverse_index(['a', 3, 'abc'])
  {'a': 0, 3: 1, 'abc': 2}

  Args:
    unique_ids: a list of distinct hashable values (strings, ints, ...).

  Returns:
    ``{value: index}``; for a value listed twice, its last index.

  Raises:
    TypeError: ``unique_ids`` is not a list, or holds an unhashable value.
  """
  if not isinstance(unique_ids, list):
    raise TypeError(
      f'unique_ids must be a list, got {type(unique_ids).__name__}'
    )
  return {value: i for i, value in enumerate(unique_ids)}


def compute_sequence_match_accuracy(sequence1: list, sequence2: list) -> float:
  """Accuracy of two label lists under the best one-to-one label matching.

  Same contract as the reference ``uisrnn.compute_sequence_match_accuracy``.

  >>> compute_sequence_match_accuracy([1, 1, 2, 2, 3], ['a', 'a', 'b', 'c', 'c'])
  0.8

  Args:
    sequence1: list of integer or string labels.
    sequence2: list of integer or string labels, of the same length.

  Returns:
    Accuracy in [0.0, 1.0].

  Raises:
    TypeError: if either sequence is not a list.
    ValueError: if the lists are empty or of different lengths.
  """
  if not isinstance(sequence1, list) or not isinstance(sequence2, list):
    raise TypeError('sequence1 and sequence2 must be lists')
  if not sequence1 or len(sequence1) != len(sequence2):
    raise ValueError(
      'sequence1 and sequence2 must have the same non-zero length'
    )
  return frame_accuracy(sequence1, sequence2)
