"""Metric writers: where the training loop's scalars go.

They follow the shape of ``clu.metric_writers.MetricWriter`` (without
importing clu, which pulls in TensorFlow): `JsonlWriter` appends one JSON
line per call (``WORKDIR/metrics.jsonl`` of a run; `read_jsonl` reads it
back), `LoggingWriter` logs it, `MultiWriter` fans out.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from absl import logging

from uisrnn_jax.errors import OutputWriteError


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

  Raises:
    errors.OutputWriteError: (from any method) the file cannot be written,
      e.g. the disk is full.
  """

  def __init__(self, path: str | os.PathLike[str]):
    self.path = os.fspath(path)
    with self._writing():
      parent = os.path.dirname(self.path)
      if parent:
        os.makedirs(parent, exist_ok=True)
      _drop_unfinished_line(self.path)
      self._file = open(self.path, 'a', encoding='utf-8')

  @contextlib.contextmanager
  def _writing(self) -> Iterator[None]:
    try:
      yield
    except OSError as e:
      raise OutputWriteError(self.path, e) from e

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    line = json.dumps(_to_record(step, scalars)) + '\n'
    with self._writing():
      self._file.write(line)
      self._file.flush()

  def flush(self) -> None:
    with self._writing():
      self._file.flush()

  def close(self) -> None:
    if not self._file.closed:
      with self._writing():
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
