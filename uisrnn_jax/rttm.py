"""RTTM and UEM files: the one place they are read and written.

RTTM (NIST Rich Transcription Time Marked) ``SPEAKER`` lines,
``SPEAKER <uri> <channel> <onset> <duration> <NA> <NA> <speaker> <NA> <NA>``,
hold speaker turns (onset and duration in seconds); UEM lines,
``<uri> <channel> <start> <end>``, hold the scored regions of each file.

Two representations are used in the package:

- *turns*: ``(onsets float64[T], offsets float64[T], speakers [T])`` per
  file, what `experiment`, `prepare` and the tests work with;
- ``pyannote.core.Annotation`` / ``Timeline`` (`read_annotations`,
  `read_uem`, `annotation`), what ``pyannote.metrics`` scores and what
  `audio.diarize` returns. ``pyannote.core`` is imported only by those.

The readers are our own rather than ``pyannote.database.util.load_rttm``
so that a malformed line is reported with its file and line number
(`errors.DataFormatError`); writing goes through ``pyannote.core``'s
``Annotation.write_rttm`` format (three decimals), which `turns_text`
reproduces without needing pyannote.

>>> text = turns_text('meeting', ([0.0, 1.5], [1.5, 2.0], [0, 1]))
>>> parse_rttm(text)['meeting'][1].tolist()
[1.5, 2.0]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from uisrnn_jax.errors import DataFormatError, InputFileNotFoundError

# (onsets float64[M], offsets float64[M], labels [M]): speaker turns.
Segments = tuple[np.ndarray, np.ndarray, np.ndarray]

# (onsets float64[T], offsets float64[T], speakers [T]) of one file.
Turns = tuple[np.ndarray, np.ndarray, Any]


def file_id(name: str, default: str = 'audio') -> str:
  """A name usable as an RTTM ``<uri>`` (whitespace replaced by ``_``)."""
  return '_'.join(str(name).split()) or default


def _read_text(path: str) -> str:
  if not os.path.isfile(path):
    raise InputFileNotFoundError(f'no such file: {path}')
  try:
    with open(path, encoding='utf-8') as f:
      return f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise DataFormatError(f'{path}: cannot read ({e})') from e


def parse_rttm(text: str, *, source: str = 'RTTM') -> dict[str, Turns]:
  """Reads RTTM ``SPEAKER`` lines into turns per file id.

  Args:
    text: RTTM contents (other record types, blank lines and ``#``/``;;``
      comments are skipped).
    source: the file name, for error messages.

  Returns:
    ``{uri: (onsets float64[T], offsets float64[T], speakers list[T])}``,
    files and turns in file order.

  Raises:
    errors.DataFormatError: a ``SPEAKER`` line with fewer than 8 fields, a
      non-numeric, non-finite or negative onset or duration (the message
      names ``source`` and the line number).
  """
  out: dict[str, list[list[Any]]] = {}
  for number, line in enumerate(text.splitlines(), 1):
    fields = line.split()
    if not fields or fields[0].startswith(('#', ';;')):
      continue
    if fields[0] != 'SPEAKER':
      continue
    where = f'{source}, line {number}'
    if len(fields) < 8:
      raise DataFormatError(
        f'{where}: expected >= 8 fields (SPEAKER uri channel onset '
        f'duration <NA> <NA> speaker ...), got {line!r}'
      )
    try:
      onset, duration = float(fields[3]), float(fields[4])
    except ValueError as e:
      raise DataFormatError(
        f'{where}: bad onset or duration in {line!r}'
      ) from e
    if not (np.isfinite(onset) and np.isfinite(duration)):
      raise DataFormatError(f'{where}: non-finite time in {line!r}')
    if onset < 0 or duration < 0:
      raise DataFormatError(f'{where}: negative time in {line!r}')
    turns = out.setdefault(fields[1], [[], [], []])
    turns[0].append(onset)
    turns[1].append(onset + duration)
    turns[2].append(fields[7])
  return {
    uri: (np.array(a, np.float64), np.array(b, np.float64), spk)
    for uri, (a, b, spk) in out.items()
  }


def read_rttm(paths: str | Sequence[str]) -> dict[str, Turns]:
  """Turns per file id from one RTTM file or several (merged).

  Raises:
    errors.InputFileNotFoundError: a missing file.
    errors.DataFormatError: a malformed line (file and line number), or a
      file id that appears in two of the files.
  """
  if isinstance(paths, str):
    paths = [paths]
  out: dict[str, Turns] = {}
  origin: dict[str, str] = {}
  for path in paths:
    for uri, turns in parse_rttm(_read_text(path), source=path).items():
      if uri in out:
        raise DataFormatError(
          f'{path}: file id {uri!r} is also in {origin[uri]}; give each '
          'file in one RTTM only'
        )
      out[uri], origin[uri] = turns, path
  return out


def parse_uem(text: str, *, source: str = 'UEM') -> dict[str, np.ndarray]:
  """Reads UEM lines ``<uri> <channel> <start> <end>``.

  Returns:
    ``{uri: float64[K, 2]}`` scored regions, sorted by start.

  Raises:
    errors.DataFormatError: a line with fewer than 4 fields, a bad, negative
      or empty (``end <= start``) region, or two regions of one file that
      overlap (file and line number in the message).
  """
  rows: dict[str, list[tuple[float, float, int]]] = {}
  for number, line in enumerate(text.splitlines(), 1):
    fields = line.split()
    if not fields or fields[0].startswith(('#', ';;')):
      continue
    where = f'{source}, line {number}'
    if len(fields) < 4:
      raise DataFormatError(
        f'{where}: expected 4 fields (uri channel start end), got {line!r}'
      )
    try:
      start, end = float(fields[2]), float(fields[3])
    except ValueError as e:
      raise DataFormatError(f'{where}: bad start or end in {line!r}') from e
    if not (np.isfinite(start) and np.isfinite(end)) or start < 0:
      raise DataFormatError(f'{where}: bad region in {line!r}')
    if end <= start:
      raise DataFormatError(f'{where}: end <= start in {line!r}')
    rows.setdefault(fields[0], []).append((start, end, number))
  out = {}
  for uri, regions in rows.items():
    regions.sort()
    for (_, end, n1), (start, _, n2) in zip(regions[:-1], regions[1:]):
      if start < end:
        raise DataFormatError(
          f'{source}: regions of {uri!r} on lines {n1} and {n2} overlap'
        )
    out[uri] = np.array([(a, b) for a, b, _ in regions], np.float64)
  return out


def read_uem(path: str) -> dict[str, np.ndarray]:
  """`parse_uem` of a file (errors name the file and line)."""
  return parse_uem(_read_text(path), source=path)


def turns_text(uri: str, turns: Turns, *, prefix: str = 'spk') -> str:
  """RTTM ``SPEAKER`` lines of one file's turns.

  Args:
    uri: the file id (whitespace is replaced by ``_``).
    turns: ``(onsets, offsets, labels)``; zero-length turns are skipped.
    prefix: prepended to integer labels (``0`` -> ``spk0``); string labels
      are written as they are.

  Returns:
    The lines, each ending in a newline (empty for no turns).
  """
  uri = file_id(uri)
  lines = []
  for onset, offset, label in zip(*turns):
    if offset <= onset:
      continue
    if isinstance(label, (int, np.integer)):
      label = f'{prefix}{label}'
    lines.append(
      f'SPEAKER {uri} 1 {onset:.3f} {offset - onset:.3f} <NA> <NA> '
      f'{label} <NA> <NA>\n'
    )
  return ''.join(lines)


def frames_to_segments(
  starts: np.ndarray | Sequence[float],
  ends: np.ndarray | Sequence[float],
  labels: np.ndarray | Sequence[Any],
) -> Segments:
  """Turns per-window labels into timed, contiguous speaker segments.

  Windows overlap (LibriSim: 1.6 s windows every 0.4 s), so each window is
  given only part of its span. The rule: window ``i`` owns the interval
  between the midpoints of consecutive window centres, i.e. from
  ``(c[i-1] + c[i]) / 2`` to ``(c[i] + c[i+1]) / 2`` with
  ``c = (starts + ends) / 2``; the first window starts at ``starts[0]`` and
  the last ends at ``ends[-1]``. Adjacent windows with equal labels are then
  merged into one segment. The segments tile ``[starts[0], ends[-1]]``
  without gaps or overlap.

  >>> s, e, l = frames_to_segments([0.0, 0.4, 0.8], [1.6, 2.0, 2.2],
  ...                              ['a', 'a', 'b'])
  >>> s.tolist(), e.tolist(), l.tolist()
  ([0.0, 1.35], [1.35, 2.2], ['a', 'b'])

  Args:
    starts: float[N] window starts (seconds), non-decreasing.
    ends: float[N] window ends (seconds).
    labels: [N] label per window (any hashable dtype).

  Returns:
    ``(seg_starts float64[M], seg_ends float64[M], seg_labels [M])`` with
    ``M`` the number of label runs.

  Raises:
    ValueError: empty input, mismatched lengths or decreasing window centres.
  """
  starts = np.asarray(starts, np.float64).reshape(-1)
  ends = np.asarray(ends, np.float64).reshape(-1)
  labels = np.asarray(labels).reshape(-1)
  n = len(labels)
  if n == 0 or len(starts) != n or len(ends) != n:
    raise ValueError(
      'starts, ends and labels must have the same non-zero length, got '
      f'{len(starts)}, {len(ends)} and {n}'
    )
  centres = (starts + ends) / 2
  if np.any(np.diff(centres) < 0) or ends[-1] < starts[0]:
    raise ValueError('window centres must be non-decreasing in time')
  cuts = np.concatenate(
    [[starts[0]], (centres[:-1] + centres[1:]) / 2, [ends[-1]]]
  )
  change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
  first = np.concatenate([[0], change])
  last = np.concatenate([change, [n]])
  return cuts[first], cuts[last], labels[first]


def predictions_text(
  ids: Sequence[str] | None,
  starts: Sequence[np.ndarray],
  ends: Sequence[np.ndarray],
  predicted: Sequence[np.ndarray],
) -> str:
  """RTTM of per-window labels of several conversations.

  Windows become turns by `frames_to_segments` (consecutive
  windows with one label form a turn; a boundary between windows lies
  halfway between their centres), the same rule DER is computed with. The
  file id is the conversation id or ``seq<c>``; speakers ``spk<label>``.
  """
  parts = []
  for c, labels in enumerate(predicted):
    name = file_id(ids[c] if ids else '', default=f'seq{c}')
    segments = frames_to_segments(
      starts[c], ends[c], np.asarray(labels).astype(np.int64)
    )
    parts.append(turns_text(name, segments))
  return ''.join(parts)


def annotation(turns: Turns, uri: str, *, prefix: str = 'spk') -> Any:
  """A ``pyannote.core.Annotation`` of turns (integer labels prefixed)."""
  from pyannote.core import Annotation, Segment

  out = Annotation(uri=uri)
  for i, (onset, offset, label) in enumerate(zip(*turns)):
    if offset > onset:
      if isinstance(label, (int, np.integer)):
        label = f'{prefix}{label}'
      out[Segment(float(onset), float(offset)), i] = str(label)
  return out


def annotation_turns(annotation_: Any) -> Turns:
  """``(onsets, offsets, labels)`` of an Annotation, in time order."""
  rows = [
    (s.start, s.end, label) for s, _, label in annotation_.itertracks(True)
  ]
  return (
    np.array([r[0] for r in rows], np.float64),
    np.array([r[1] for r in rows], np.float64),
    [r[2] for r in rows],
  )


def annotation_text(annotation_: Any) -> str:
  """RTTM lines of a ``pyannote.core.Annotation`` (its ``uri`` as file id)."""
  return turns_text(annotation_.uri or 'audio', annotation_turns(annotation_))


def read_annotations(paths: str | Sequence[str]) -> dict[str, Any]:
  """`read_rttm` as ``{uri: pyannote.core.Annotation}``."""
  return {uri: annotation(t, uri) for uri, t in read_rttm(paths).items()}


def timeline(regions: np.ndarray | Iterable[tuple[float, float]], uri: str):
  """A ``pyannote.core.Timeline`` of ``[start, end]`` regions."""
  from pyannote.core import Segment, Timeline

  return Timeline([Segment(float(a), float(b)) for a, b in regions], uri=uri)


def uem_text(regions: Mapping[str, np.ndarray]) -> str:
  """UEM lines ``<uri> 1 <start> <end>`` of ``{uri: float[K, 2]}``."""
  return ''.join(
    f'{file_id(uri)} 1 {a:.3f} {b:.3f}\n'
    for uri, rows in regions.items()
    for a, b in rows
  )
