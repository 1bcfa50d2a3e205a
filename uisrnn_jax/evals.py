"""Evaluation metrics and metric writers (host-side NumPy).

Accuracy is the reference's: the fraction of frames labelled consistently
under the best one-to-one matching of reference speakers to hypothesis
speakers (Hungarian algorithm), so it is invariant to how either side names
its speakers.

Writers follow the shape of ``clu.metric_writers.MetricWriter`` (without
importing clu, which pulls in TensorFlow): ``JsonlWriter`` appends one JSON
line per call, ``LoggingWriter`` logs it, ``MultiWriter`` fans out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from absl import logging
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


@runtime_checkable
class MetricWriter(Protocol):
  """What the training loop writes scalars to (clu's MetricWriter subset)."""

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    """Records ``scalars`` (name -> number) at ``step``."""

  def flush(self) -> None:
    """Pushes buffered records to their destination."""

  def close(self) -> None:
    """Flushes and releases resources; the writer is unusable afterwards."""


def _to_record(step: int, scalars: Mapping[str, float]) -> dict[str, Any]:
  if 'step' in scalars:
    raise ValueError('"step" is reserved and cannot be a scalar name')
  return {'step': int(step), **{k: float(v) for k, v in scalars.items()}}


class JsonlWriter:
  """Appends one JSON object per ``write_scalars`` call to a file.

  Each line is ``{"step": 100, "loss": 0.52, ...}``. The file is opened in
  append mode, so a resumed run continues it, and flushed after every line,
  so it can be followed live. Non-finite values are written as ``NaN`` /
  ``Infinity``, which Python's ``json`` reads back. A last line left
  unfinished by a killed writer is cut off before appending, so the file stays
  one whole record per line.

  Args:
    path: file to append to; missing parent directories are created.
  """

  def __init__(self, path: str | os.PathLike[str]):
    self.path = os.fspath(path)
    parent = os.path.dirname(self.path)
    if parent:
      os.makedirs(parent, exist_ok=True)
    _drop_unfinished_line(self.path)
    self._file = open(self.path, 'a', encoding='utf-8')

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    self._file.write(json.dumps(_to_record(step, scalars)) + '\n')
    self._file.flush()

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    if not self._file.closed:
      self._file.close()

  def __enter__(self) -> JsonlWriter:
    return self

  def __exit__(self, *exc_info: object) -> None:
    self.close()


def _drop_unfinished_line(path: str) -> None:
  """Truncates ``path`` after its last newline (no-op if it ends in one)."""
  try:
    with open(path, 'rb+') as f:
      data = f.read()
      if data and not data.endswith(b'\n'):
        f.truncate(data.rfind(b'\n') + 1)
  except FileNotFoundError:
    pass


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
  """Reads back the records written by ``JsonlWriter``, in order.

  A last line cut short (the writer was killed mid-line) is skipped; a bad
  line anywhere else raises ``ValueError`` naming it.
  """
  with open(path, encoding='utf-8') as f:
    lines = [line for line in f if line.strip()]
  records = []
  for i, line in enumerate(lines):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError as e:
      if i == len(lines) - 1 and not line.endswith('\n'):
        break  # an interrupted final write
      raise ValueError(f'{path}: line {i + 1} is not JSON ({e})') from e
  return records


class LoggingWriter:
  """Logs each call as one ``absl.logging`` info line: ``[step] k=v, ...``."""

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    record = _to_record(step, scalars)
    del record['step']
    logging.info(
      '[%d] %s', step, ', '.join(f'{k}={v:.6g}' for k, v in record.items())
    )

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


class MultiWriter:
  """Forwards every call to each of several writers, in order.

  Args:
    writers: the writers to forward to.
  """

  def __init__(self, writers: Iterable[MetricWriter]):
    self.writers = tuple(writers)

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    for writer in self.writers:
      writer.write_scalars(step, scalars)

  def flush(self) -> None:
    for writer in self.writers:
      writer.flush()

  def close(self) -> None:
    for writer in self.writers:
      writer.close()
