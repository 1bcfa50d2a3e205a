"""Diarization evaluation: frame accuracy, DER, JER and speaker-count error.

Four numbers per conversation, and their totals over a dataset:

- **Frame accuracy** (`evals.frame_accuracy`): fraction of rows (windows)
  whose predicted speaker matches the reference under the best one-to-one
  speaker mapping (Hungarian algorithm). Totals: the mean over
  conversations.
- **Diarization error rate** with ``pyannote.metrics``
  (`DiarizationErrorRate`): (missed + false alarm + confusion) / scored
  reference speech, under pyannote's optimal speaker mapping. The reference
  is the exact turn segmentation when the dataset carries it (`Dataset.turns`),
  else the reference labels turned into segments by `frames_to_segments`;
  the hypothesis is always `frames_to_segments` of the predicted labels.
  Totals: pyannote's accumulated DER (sum of errors over sum of scored time,
  i.e. longer conversations weigh more).
- **Jaccard error rate** (DIHARD II, ``pyannote.metrics``
  `JaccardErrorRate`, same collar and overlap settings as DER): per
  reference speaker, 1 - the Jaccard index with its mapped hypothesis
  speaker, averaged. Totals: accumulated over every reference speaker of
  every conversation.
- **Speaker-count error**: ``|#predicted speakers - #reference speakers|``.
  Totals: the mean over conversations (and the signed mean, which shows
  over- or under-counting).

Collar: ``collar`` is passed to pyannote unchanged, and pyannote's collar is
the *total* width of the region removed around every reference boundary,
i.e. ``collar=0.25`` ignores ``±0.125`` s around each reference turn start
and end (NIST md-eval's ``-c 0.25`` would be ``collar=0.5`` here). Overlap:
``skip_overlap=False`` by default (overlapping reference speech is scored);
LibriSim has no overlap, and hypotheses built from frames never overlap. The
scored region (UEM) is the extent of the reference.

Without window times (e.g. toy data), frame ``i`` is the interval
``[i, i + 1)`` in frame units and DER is computed without a collar; it then
equals ``1 - accuracy`` up to the mapping (both are optimal matchings of
frame counts).

``pyannote.metrics`` is imported lazily (``pip install pyannote.metrics``),
so the rest of the package works without it.

>>> from uisrnn_jax import dataset, evaluation
>>> data = dataset.load_npz('dev.npz')                          # doctest: +SKIP
>>> report = evaluation.evaluate(data, predicted, collar=0.25)  # doctest: +SKIP
>>> print(report.table())                                       # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from uisrnn_jax import evals, rttm
from uisrnn_jax.rttm import Segments, frames_to_segments  # noqa: F401

# (starts float[M], ends float[M], labels [M]): timed, non-overlapping turns.

DEFAULT_COLLAR = 0.25


def available() -> bool:
  """Whether ``pyannote.metrics`` (needed for DER) can be imported."""
  try:
    _import_pyannote()
  except ImportError:
    return False
  return True


def _import_pyannote():
  try:
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate
  except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
      'DER needs pyannote.metrics: pip install pyannote.metrics '
      "(or pip install -e '.[eval]')"
    ) from e
  return Annotation, Segment, Timeline, DiarizationErrorRate


def make_metric(*, collar: float = DEFAULT_COLLAR, skip_overlap: bool = False):
  """A fresh accumulating ``pyannote.metrics`` DiarizationErrorRate."""
  *_, der_cls = _import_pyannote()
  return der_cls(collar=collar, skip_overlap=skip_overlap)


def der(
  reference: Segments,
  hypothesis: Segments,
  *,
  collar: float = DEFAULT_COLLAR,
  skip_overlap: bool = False,
  metric: Any = None,
  uri: str = 'conversation',
) -> dict[str, float]:
  """Diarization error rate of one conversation (pyannote.metrics).

  The scored region is the extent of ``reference``; see the module docstring
  for the collar convention (total width, ``±collar / 2``).

  Args:
    reference: ``(starts, ends, labels)`` reference turns, seconds.
    hypothesis: ``(starts, ends, labels)`` predicted turns, seconds (e.g.
      from `frames_to_segments`). Label names need not match the reference.
    collar: seconds removed around each reference boundary (total width).
    skip_overlap: ignore regions where reference speakers overlap.
    metric: an accumulating metric from `make_metric` to add this
      conversation to (then ``collar``/``skip_overlap`` are the metric's);
      a fresh one when None.
    uri: conversation name recorded in the metric.

  Returns:
    ``{'der', 'confusion', 'missed', 'false_alarm', 'total', 'jer',
    'jer_speakers'}``: the rate and its components in seconds (``total`` is
    the scored reference speech), and `jer` under the same settings.
  """
  _, segment_cls, timeline_cls, _ = _import_pyannote()
  if metric is None:
    metric = make_metric(collar=collar, skip_overlap=skip_overlap)
  ref = rttm.annotation(reference, uri)
  hyp = rttm.annotation(hypothesis, uri)
  lo, hi = float(np.min(reference[0])), float(np.max(reference[1]))
  uem = timeline_cls([segment_cls(lo, hi)], uri=uri)
  parts = metric(ref, hyp, uem=uem, detailed=True)
  return {
    'der': float(parts['diarization error rate']),
    'confusion': float(parts['confusion']),
    'missed': float(parts['missed detection']),
    'false_alarm': float(parts['false alarm']),
    'total': float(parts['total']),
    **jer(
      ref, hyp, uem, collar=metric.collar, skip_overlap=metric.skip_overlap
    ),
  }


def jer(
  reference: Any,
  hypothesis: Any,
  uem: Any = None,
  *,
  collar: float = DEFAULT_COLLAR,
  skip_overlap: bool = False,
) -> dict[str, float]:
  """Jaccard error rate (DIHARD II) of one conversation, pyannote.metrics.

  Args:
    reference, hypothesis: ``pyannote.core.Annotation``.
    uem: the scored ``Timeline`` (None: the extent of both annotations).
    collar, skip_overlap: as for DER.

  Returns:
    ``{'jer', 'jer_speakers'}``: the mean per-reference-speaker Jaccard
    error and the number of reference speakers it is averaged over (JER of
    a conversation without reference speech is 0 over 0 speakers).
  """
  from pyannote.metrics.diarization import JaccardErrorRate

  metric = JaccardErrorRate(collar=collar, skip_overlap=skip_overlap)
  if uem is None:
    uem = _extent(reference, hypothesis)
  parts = metric(reference, hypothesis, uem=uem, detailed=True)
  speakers = int(parts['speaker count'])
  return {
    'jer': float(parts['jaccard error rate']) if speakers else 0.0,
    'jer_speakers': speakers,
  }


def _extent(reference: Any, hypothesis: Any) -> Any:
  _, segment_cls, timeline_cls, _ = _import_pyannote()
  end = max(
    [0.0]
    + [s.end for s in reference.get_timeline()]
    + [s.end for s in hypothesis.get_timeline()]
  )
  return timeline_cls([segment_cls(0.0, end)], uri=reference.uri)


def speaker_count_error(reference: Any, predicted: Any) -> int:
  """``|#distinct predicted labels - #distinct reference labels|``.

  >>> speaker_count_error(['a', 'b', 'a'], [0, 1, 2, 2])
  1
  """
  return abs(
    len(np.unique(np.asarray(predicted)))
    - len(np.unique(np.asarray(reference)))
  )


@dataclasses.dataclass(frozen=True)
class ConversationResult:
  """Scores of one conversation (times in seconds, or frames if untimed)."""

  name: str
  num_frames: int
  accuracy: float
  der: float
  confusion: float
  missed: float
  false_alarm: float
  scored: float
  num_reference: int
  num_predicted: int
  jer: float = math.nan
  jer_speakers: int = 0

  @property
  def speaker_count_error(self) -> int:
    return abs(self.num_predicted - self.num_reference)


@dataclasses.dataclass(frozen=True)
class Report:
  """Per-conversation rows and dataset totals (see the module docstring).

  Attributes:
    rows: one `ConversationResult` per conversation, in dataset order.
    der: accumulated DER (total error time / total scored time).
    accuracy: mean frame accuracy over conversations.
    speaker_count_error: mean ``|#predicted - #reference|``.
    speaker_count_bias: mean ``#predicted - #reference`` (signed).
    collar, skip_overlap: the DER (and JER) settings used.
    timed: False when the dataset had no window times (DER in frame units,
      no collar).
  """

  rows: list[ConversationResult]
  der: float
  accuracy: float
  speaker_count_error: float
  speaker_count_bias: float
  collar: float
  skip_overlap: bool
  timed: bool

  @property
  def jer(self) -> float:
    """Accumulated JER: sum of per-speaker JERs / number of speakers.

    pyannote's accumulated ``JaccardErrorRate`` (every reference speaker of
    every conversation weighs the same); NaN when no row has a JER.
    """
    speakers = sum(r.jer_speakers for r in self.rows)
    if speakers == 0:
      return math.nan
    return sum(r.jer * r.jer_speakers for r in self.rows) / speakers

  @classmethod
  def from_rows(
    cls,
    rows: Sequence[ConversationResult],
    *,
    collar: float,
    skip_overlap: bool,
    timed: bool,
  ) -> Report:
    """Totals from rows: DER = sum of errors / sum of scored time."""
    rows = list(rows)
    if not rows:
      nan = math.nan
      return cls(rows, nan, nan, nan, nan, collar, skip_overlap, timed)
    errors = sum(r.confusion + r.missed + r.false_alarm for r in rows)
    scored = sum(r.scored for r in rows)
    diff = np.array([r.num_predicted - r.num_reference for r in rows])
    return cls(
      rows=rows,
      der=errors / scored if scored > 0 else (0.0 if errors == 0 else 1.0),
      accuracy=float(np.mean([r.accuracy for r in rows])),
      speaker_count_error=float(np.mean(np.abs(diff))),
      speaker_count_bias=float(np.mean(diff)),
      collar=collar,
      skip_overlap=skip_overlap,
      timed=timed,
    )

  def summary(self) -> str:
    """One line with the totals."""
    jer = '' if math.isnan(self.jer) else f' | JER {self.jer:.4f}'
    return (
      f'DER {self.der:.4f} (collar {self.collar:g} s'
      f'{", overlap skipped" if self.skip_overlap else ""}'
      f'{"" if self.timed else ", frame units"}){jer} | accuracy '
      f'{self.accuracy:.4f} | speaker-count error '
      f'{self.speaker_count_error:.3f} (signed {self.speaker_count_bias:+.3f})'
      f' | {len(self.rows)} conversations'
    )

  def table(self) -> str:
    """Per-conversation table plus a totals line, as fixed-width text."""
    unit = 's' if self.timed else 'fr'
    width = max([len('conversation')] + [len(r.name) for r in self.rows])
    head = (
      f'{"conversation":<{width}} {"frames":>6} {"acc":>6} {"DER":>6} '
      f'{"JER":>6} '
      f'{"conf":>7} {"miss":>7} {"fa":>7} {"scored":>8} {"ref":>3} '
      f'{"pred":>4} {"|err|":>5}'
    )
    lines = [head, '-' * len(head)]
    for r in self.rows:
      lines.append(
        f'{r.name:<{width}} {r.num_frames:>6d} {r.accuracy:>6.3f} '
        f'{r.der:>6.3f} {r.jer:>6.3f} {r.confusion:>7.2f} {r.missed:>7.2f} '
        f'{r.false_alarm:>7.2f} {r.scored:>7.1f}{unit:<1} '
        f'{r.num_reference:>3d} {r.num_predicted:>4d} '
        f'{r.speaker_count_error:>5d}'
      )
    lines.append('-' * len(head))
    lines.append(
      f'{"total":<{width}} {sum(r.num_frames for r in self.rows):>6d} '
      f'{self.accuracy:>6.3f} {self.der:>6.3f} {self.jer:>6.3f} '
      f'{sum(r.confusion for r in self.rows):>7.2f} '
      f'{sum(r.missed for r in self.rows):>7.2f} '
      f'{sum(r.false_alarm for r in self.rows):>7.2f} '
      f'{sum(r.scored for r in self.rows):>7.1f}{unit:<1} '
      f'{"":>3} {"":>4} {self.speaker_count_error:>5.2f}'
    )
    how = (
      f'collar {self.collar:g} s total width'
      if self.timed
      else 'in frames, no collar'
    )
    lines.append(
      '(acc: mean over conversations; DER, JER: accumulated over '
      'conversations, '
      f'{how}; |err|: speaker-count error, mean in the total row)'
    )
    return '\n'.join(lines)

  def write(self, path: str) -> None:
    """Writes the rows and totals as ``.json`` (`to_dict`) or ``.csv``.

    The CSV has one row per conversation and a last row ``total``.

    Raises:
      ValueError: another extension.
    """
    import csv
    import io
    import json

    from uisrnn_jax import checkpoint

    if path.endswith('.json'):
      text = json.dumps(self.to_dict(), indent=1)
    elif path.endswith('.csv'):
      rows = self.to_dict()['rows']
      fields = list(rows[0]) if rows else ['name']
      buf = io.StringIO()
      writer = csv.DictWriter(buf, fieldnames=fields, lineterminator='\n')
      writer.writeheader()
      writer.writerows(rows)
      total = {k: '' for k in fields}
      total.update(
        name='total',
        der=self.der,
        jer=self.jer,
        accuracy=self.accuracy,
        speaker_count_error=self.speaker_count_error,
      )
      for key in ('confusion', 'missed', 'false_alarm', 'scored'):
        total[key] = sum(getattr(r, key) for r in self.rows)
      writer.writerow({k: total[k] for k in fields})
      text = buf.getvalue()
    else:
      raise ValueError(f'--report must end in .csv or .json, got {path}')
    checkpoint.atomic_write(path, text.encode())

  def to_dict(self) -> dict[str, Any]:
    """JSON-friendly totals and rows."""
    return {
      'der': self.der,
      'jer': self.jer,
      'accuracy': self.accuracy,
      'speaker_count_error': self.speaker_count_error,
      'speaker_count_bias': self.speaker_count_bias,
      'collar': self.collar,
      'skip_overlap': self.skip_overlap,
      'timed': self.timed,
      'rows': [
        {**dataclasses.asdict(r), 'speaker_count_error': r.speaker_count_error}
        for r in self.rows
      ],
    }


def conversation_times(dataset: Any, c: int) -> tuple[np.ndarray, np.ndarray]:
  """Window starts/ends of conversation ``c``; ``[i, i + 1)`` if untimed."""
  if dataset.starts is not None and dataset.ends is not None:
    return (
      np.asarray(dataset.starts[c], np.float64),
      np.asarray(dataset.ends[c], np.float64),
    )
  n = len(dataset.sequences[c])
  return np.arange(n, dtype=np.float64), np.arange(1, n + 1, dtype=np.float64)


def reference_segments(dataset: Any, c: int) -> Segments:
  """Reference turns of conversation ``c``: exact turns, else from labels."""
  turns = getattr(dataset, 'turns', None)
  if turns is not None:
    starts, ends, speakers = turns[c]
    return (
      np.asarray(starts, np.float64),
      np.asarray(ends, np.float64),
      np.asarray(speakers),
    )
  if dataset.labels is None:
    raise ValueError('the dataset has neither reference turns nor labels')
  return frames_to_segments(*conversation_times(dataset, c), dataset.labels[c])


def evaluate(
  dataset: Any,
  predicted: Sequence[np.ndarray],
  *,
  collar: float = DEFAULT_COLLAR,
  skip_overlap: bool = False,
) -> Report:
  """Scores predicted labels against a labelled dataset.

  Args:
    dataset: a `dataset.Dataset` with ``labels`` (and, for DER in
      seconds, ``starts``/``ends``; exact ``turns`` are used when present).
    predicted: one int[N_c] label array per conversation.
    collar: DER collar in seconds, total width (see the module docstring).
    skip_overlap: DER ignores overlapping reference speech.

  Returns:
    A `Report` with one row per conversation and the totals.

  Raises:
    ValueError: no labels, or ``predicted`` does not match the dataset.
  """
  if dataset.labels is None:
    raise ValueError('evaluation needs a labelled dataset')
  if len(predicted) != len(dataset.sequences):
    raise ValueError(
      f'{len(predicted)} predicted sequences for '
      f'{len(dataset.sequences)} conversations'
    )
  timed = dataset.starts is not None and dataset.ends is not None
  turns = getattr(dataset, 'turns', None)
  used_collar = collar if timed else 0.0
  metric = make_metric(collar=used_collar, skip_overlap=skip_overlap)
  rows = []
  for c, hyp in enumerate(predicted):
    ref_labels = np.asarray(dataset.labels[c])
    hyp = np.asarray(hyp)
    if len(hyp) != len(ref_labels):
      raise ValueError(
        f'conversation {c}: {len(hyp)} predicted labels for '
        f'{len(ref_labels)} rows'
      )
    name = dataset.ids[c] if dataset.ids else f'seq{c}'
    times = conversation_times(dataset, c)
    ref = (
      reference_segments(dataset, c)
      if timed and turns is not None
      else frames_to_segments(*times, ref_labels)
    )
    parts = der(ref, frames_to_segments(*times, hyp), metric=metric, uri=name)
    num_ref = len(
      np.unique(ref[2] if turns is not None and timed else ref_labels)
    )
    rows.append(
      ConversationResult(
        name=name,
        num_frames=len(hyp),
        accuracy=evals.frame_accuracy(ref_labels, hyp),
        der=parts['der'],
        confusion=parts['confusion'],
        missed=parts['missed'],
        false_alarm=parts['false_alarm'],
        scored=parts['total'],
        num_reference=num_ref,
        num_predicted=len(np.unique(hyp)),
        jer=parts['jer'],
        jer_speakers=parts['jer_speakers'],
      )
    )
  report = Report.from_rows(
    rows, collar=used_collar, skip_overlap=skip_overlap, timed=timed
  )
  return report  # report.der equals pyannote's accumulated abs(metric)


def combine(reports: Sequence[Report]) -> Report:
  """One report over the conversations of several (e.g. one per file).

  Totals are recomputed from all rows exactly as `evaluate` would over the
  union of the datasets (DER accumulated over conversations).

  Raises:
    ValueError: no reports, or reports with different collar/overlap/time
      settings.
  """
  if not reports:
    raise ValueError('no reports to combine')
  settings = {(r.collar, r.skip_overlap, r.timed) for r in reports}
  if len(settings) != 1:
    raise ValueError(f'reports use different settings: {sorted(settings)}')
  collar, skip_overlap, timed = settings.pop()
  rows = [row for r in reports for row in r.rows]
  return Report.from_rows(
    rows, collar=collar, skip_overlap=skip_overlap, timed=timed
  )


def score_annotations(
  references: dict[str, Any],
  hypotheses: dict[str, Any],
  *,
  uems: dict[str, np.ndarray] | None = None,
  collar: float = 0.5,
  skip_overlap: bool = False,
) -> Report:
  """DER (and parts), JER and speaker count of Annotations, per file.

  Args:
    references: ``{uri: pyannote.core.Annotation}`` (e.g. from
      `rttm.read_annotations`); must hold every uri of ``hypotheses``.
    hypotheses: ``{uri: Annotation}``, scored in this order.
    uems: ``{uri: float[K, 2]}`` scored regions (`rttm.read_uem`); a file
      missing from it (or no UEM at all) is scored over the extent of its
      reference and hypothesis.
    collar: seconds removed around reference boundaries, total width
      (0.5 = +-0.25 s, the usual AMI setting).
    skip_overlap: do not score overlapping reference speech.

  Returns:
    A `Report` (``accuracy`` is NaN and ``num_frames`` 0: there are no
    reference windows).

  Raises:
    ValueError: a hypothesis without a reference.
  """
  missing = sorted(set(hypotheses) - set(references))
  if missing:
    raise ValueError(f'no reference for {missing}')
  metric = make_metric(collar=collar, skip_overlap=skip_overlap)
  rows = []
  for uri, hyp in hypotheses.items():
    ref = references[uri]
    if uems is not None and uri in uems:
      uem = rttm.timeline(uems[uri], uri)
    else:
      uem = _extent(ref, hyp)
    parts = metric(ref, hyp, uem=uem, detailed=True)
    rows.append(
      ConversationResult(
        name=uri,
        num_frames=0,
        accuracy=math.nan,
        der=float(parts['diarization error rate']),
        confusion=float(parts['confusion']),
        missed=float(parts['missed detection']),
        false_alarm=float(parts['false alarm']),
        scored=float(parts['total']),
        num_reference=len(ref.crop(uem).labels()),
        num_predicted=len(hyp.crop(uem).labels()),
        **jer(ref, hyp, uem, collar=collar, skip_overlap=skip_overlap),
      )
    )
  return Report.from_rows(
    rows, collar=collar, skip_overlap=skip_overlap, timed=True
  )
