"""Plots: reference vs predicted speaker timeline, training loss curves.

matplotlib is imported only when a plot is drawn (``pip install
matplotlib``), with the non-interactive Agg backend unless a backend was
already chosen (pyplot imported, ``MPLBACKEND`` set, or a Jupyter kernel with
its inline backend), so importing this module costs nothing and the core
package does not need matplotlib.

>>> from uisrnn_jax import plots
>>> ax = plots.plot_timeline(ref, pred, starts, ends)    # doctest: +SKIP
>>> ax.figure.savefig('timeline.png')                    # doctest: +SKIP
>>> fig = plots.plot_loss_curves('runs/toy/metrics.jsonl')  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from uisrnn_jax import evals, metric_writers, rttm

# Metric-log keys drawn by `plot_loss_curves`, in panel order.
LOSS_KEYS = ('loss', 'nll', 'sigma2_prior', 'regularization')
_TITLES = {
  'loss': 'total loss',
  'nll': 'negative log-likelihood',
  'sigma2_prior': 'sigma2 prior',
  'regularization': 'regularisation',
}


def _pyplot():
  """matplotlib.pyplot, selecting Agg first unless pyplot is in use."""
  try:
    import matplotlib
  except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
      "plots need matplotlib: pip install matplotlib (or '.[plots]')"
    ) from e
  chosen = os.environ.get('MPLBACKEND') or 'ipykernel' in sys.modules
  if 'matplotlib.pyplot' not in sys.modules and not chosen:
    matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  return plt


def _colour_index(
  reference: np.ndarray | None, predicted: np.ndarray
) -> tuple[dict[Any, int], dict[Any, int]]:
  """Colour numbers for reference and predicted speakers.

  Reference speakers get 0, 1, ... in order of appearance; each predicted
  speaker gets the colour of the reference speaker it is matched to by the
  Hungarian matching (most shared frames), unmatched ones fresh colours.
  """
  pred_codes = evals.renumber_labels(predicted)
  pred_names = {}
  for name, code in zip(predicted.tolist(), pred_codes.tolist()):
    pred_names.setdefault(name, code)
  if reference is None:
    return {}, pred_names
  ref_codes = evals.renumber_labels(reference)
  ref_colours = {}
  for name, code in zip(reference.tolist(), ref_codes.tolist()):
    ref_colours.setdefault(name, code)
  from scipy import optimize

  counts = np.zeros((ref_codes.max() + 1, pred_codes.max() + 1))
  np.add.at(counts, (ref_codes, pred_codes), 1)
  rows, cols = optimize.linear_sum_assignment(counts, maximize=True)
  pred_to_colour = {int(c): int(r) for r, c in zip(rows, cols)}
  fresh = iter(range(counts.shape[0], counts.shape[0] + counts.shape[1]))
  pred_colours = {}
  for name, code in pred_names.items():
    if code not in pred_to_colour:
      pred_to_colour[code] = next(fresh)
    pred_colours[name] = pred_to_colour[code]
  return ref_colours, pred_colours


def plot_timeline(
  ref_labels: Sequence[Any] | np.ndarray | None,
  pred_labels: Sequence[Any] | np.ndarray,
  starts: Sequence[float] | np.ndarray | None = None,
  ends: Sequence[float] | np.ndarray | None = None,
  ax: Any = None,
  *,
  title: str | None = None,
) -> Any:
  """Draws reference and predicted speaker turns of one conversation.

  Two rows of coloured bars (``reference`` on top, ``predicted`` below, or
  only ``predicted`` when ``ref_labels`` is None). Windows become turns by
  `rttm.frames_to_segments` (each window owns the span between the
  midpoints of neighbouring window centres); without times, window ``i``
  spans ``[i, i + 1)`` and the x axis counts windows. Predicted speakers take
  the colour of the reference speaker they are matched to (Hungarian
  matching on shared windows), so disagreements show as colour changes.

  Args:
    ref_labels: [N] reference label per window, or None.
    pred_labels: [N] predicted label per window.
    starts, ends: float[N] window times in seconds, or None.
    ax: matplotlib Axes to draw on; a new 10x2.2 inch figure when None.
    title: axes title.

  Returns:
    The Axes (``ax.figure.savefig(path)`` writes it).

  Raises:
    ValueError: mismatched lengths, or only one of ``starts``/``ends``.
  """
  plt = _pyplot()
  pred = np.asarray(pred_labels).reshape(-1)
  ref = None if ref_labels is None else np.asarray(ref_labels).reshape(-1)
  if ref is not None and len(ref) != len(pred):
    raise ValueError(
      f'{len(ref)} reference labels but {len(pred)} predicted labels'
    )
  if (starts is None) != (ends is None):
    raise ValueError('give both starts and ends, or neither')
  if starts is None:
    starts = np.arange(len(pred), dtype=np.float64)
    ends = starts + 1
    xlabel = 'window'
  else:
    xlabel = 'time (s)'
  ref_colours, pred_colours = _colour_index(ref, pred)
  cmap = plt.get_cmap(
    'tab10' if len(ref_colours) + len(pred_colours) <= 20 else 'tab20'
  )

  if ax is None:
    _, ax = plt.subplots(figsize=(10, 2.2), layout='constrained')
  rows = [('predicted', pred, pred_colours)]
  if ref is not None:
    rows.insert(0, ('reference', ref, ref_colours))
  names = []
  for row, (name, labels, colours) in enumerate(rows):
    seg_starts, seg_ends, seg_labels = rttm.frames_to_segments(
      starts, ends, labels
    )
    y = len(rows) - 1 - row
    ax.broken_barh(
      list(zip(seg_starts, seg_ends - seg_starts)),
      (y - 0.4, 0.8),
      facecolors=[cmap(colours[k] % cmap.N) for k in seg_labels.tolist()],
      edgecolor='white',
      linewidth=0.5,
    )
    names.append((y, f'{name} ({len(colours)})'))
  ax.set_yticks([y for y, _ in names], [n for _, n in names])
  ax.set_ylim(-0.6, len(rows) - 0.4)
  ax.set_xlim(float(np.min(starts)), float(np.max(ends)))
  ax.set_xlabel(xlabel)
  if title:
    ax.set_title(title)
  return ax


def _records(
  metrics: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
) -> list[Mapping[str, Any]]:
  if isinstance(metrics, (str, os.PathLike)):
    metrics = metric_writers.read_jsonl(metrics)
  by_step = {}
  for record in metrics:  # a resumed run may log a step twice: keep the last
    by_step[int(record['step'])] = record
  return [by_step[s] for s in sorted(by_step)]


def plot_loss_curves(
  metrics: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
  *,
  keys: Sequence[str] = LOSS_KEYS,
  fig: Any = None,
) -> Any:
  """Training loss components over steps, one panel per component.

  Args:
    metrics: the run's ``metrics.jsonl`` (as written by `metric_writers.JsonlWriter`
      during training) or its records, dicts with ``step`` and scalars.
    keys: components to draw, in panel order; keys no record has are
      skipped (default: total loss, NLL, sigma2 prior, regularisation).
    fig: a matplotlib Figure to draw into; a new one when None.

  Returns:
    The Figure, with one Axes per drawn component (shared step axis).

  Raises:
    ValueError: no records, or none of ``keys`` in them.
  """
  plt = _pyplot()
  records = _records(metrics)
  if not records:
    raise ValueError('no metric records to plot')
  present = [k for k in keys if any(k in r for r in records)]
  if not present:
    raise ValueError(f'none of {list(keys)} in the metric records')
  if fig is None:
    fig = plt.figure(
      figsize=(7, 1.8 * len(present) + 0.4), layout='constrained'
    )
  axes = fig.subplots(len(present), 1, sharex=True, squeeze=False)[:, 0]
  for ax, key in zip(axes, present):
    pts = [(r['step'], r[key]) for r in records if key in r]
    steps, values = zip(*pts)
    ax.plot(steps, values, marker='.' if len(pts) < 30 else None)
    ax.set_ylabel(_TITLES.get(key, key))
    ax.grid(alpha=0.3)
  axes[-1].set_xlabel('step')
  return fig
