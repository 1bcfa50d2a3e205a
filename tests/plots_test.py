"""Tests for uisrnn_jax.plots (files are written and the axes inspected)."""

import json
import os

import numpy as np
import pytest
from absl.testing import absltest

pytest.importorskip('matplotlib', reason='plots need matplotlib')

from jax_testing import run_python

from uisrnn_jax import plots  # noqa: E402

REF = np.array(['a', 'a', 'a', 'b', 'b', 'a', 'c', 'c'])
PRED = np.array([4, 4, 4, 2, 2, 2, 7, 7])
STARTS = np.arange(8) * 0.4
ENDS = STARTS + 1.6


def _png_ok(test, path):
  test.assertTrue(os.path.exists(path))
  with open(path, 'rb') as f:
    head = f.read(8)
  test.assertEqual(head, b'\x89PNG\r\n\x1a\n')
  test.assertGreater(os.path.getsize(path), 1000)


class TimelineTest(absltest.TestCase):
  def test_two_rows_with_one_bar_per_turn(self):
    ax = plots.plot_timeline(REF, PRED, STARTS, ENDS, title='c0')
    labels = [t.get_text() for t in ax.get_yticklabels()]
    rows = dict(zip(ax.get_yticks().tolist(), labels))
    self.assertEqual(rows, {1.0: 'reference (3)', 0.0: 'predicted (3)'})
    self.assertLen(ax.collections, 2)
    ref_bars, pred_bars = ax.collections
    # Turns: reference a|b|a|c = 4, predicted 4|2|7 = 3.
    self.assertLen(ref_bars.get_paths(), 4)
    self.assertLen(pred_bars.get_paths(), 3)
    # Matched speakers share colours: predicted 4 ~ a, 7 ~ c.
    ref_c, pred_c = ref_bars.get_facecolors(), pred_bars.get_facecolors()
    np.testing.assert_allclose(ref_c[0], pred_c[0])  # a ~ 4
    np.testing.assert_allclose(ref_c[3], pred_c[2])  # c ~ 7
    self.assertAlmostEqual(ax.get_xlim()[1], ENDS[-1])
    path = os.path.join(self.create_tempdir().full_path, 't.png')
    ax.figure.savefig(path)
    _png_ok(self, path)

  def test_prediction_only_and_untimed(self):
    ax = plots.plot_timeline(None, PRED)
    self.assertLen(ax.get_yticklabels(), 1)
    self.assertLen(ax.collections, 1)
    self.assertEqual(ax.get_xlim(), (0.0, 8.0))
    self.assertEqual(ax.get_xlabel(), 'window')

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, 'reference labels'):
      plots.plot_timeline(REF[:3], PRED)
    with self.assertRaisesRegex(ValueError, 'starts and ends'):
      plots.plot_timeline(REF, PRED, starts=STARTS)


class LossCurvesTest(absltest.TestCase):
  def test_from_metrics_file(self):
    path = os.path.join(self.create_tempdir().full_path, 'metrics.jsonl')
    records = [
      {
        'step': s,
        'loss': 10.0 - s,
        'nll': 5.0,
        'sigma2_prior': -1.0,
        'regularization': 0.01,
        'steps_per_second': 3.0,
      }
      for s in (10, 20, 30)
    ]
    records.append({**records[-1], 'loss': -99.0})  # resumed: step 30 again
    with open(path, 'w') as f:
      f.writelines(json.dumps(r) + '\n' for r in records)
    fig = plots.plot_loss_curves(path)
    self.assertLen(fig.axes, 4)  # steps_per_second is not a loss panel
    for ax in fig.axes:
      self.assertLen(ax.get_lines(), 1)
      self.assertEqual(list(ax.get_lines()[0].get_xdata()), [10, 20, 30])
    self.assertEqual(fig.axes[0].get_lines()[0].get_ydata()[-1], -99.0)
    out = os.path.join(os.path.dirname(path), 'loss.png')
    fig.savefig(out)
    _png_ok(self, out)

  def test_records_with_some_keys(self):
    fig = plots.plot_loss_curves(
      [{'step': 1, 'loss': 2.0}, {'step': 2, 'loss': 1.0}]
    )
    self.assertLen(fig.axes, 1)
    with self.assertRaisesRegex(ValueError, 'none of'):
      plots.plot_loss_curves([{'step': 1, 'other': 1.0}])
    with self.assertRaisesRegex(ValueError, 'no metric records'):
      plots.plot_loss_curves([])


def test_import_does_not_load_matplotlib():
  code = (
    'import sys, uisrnn_jax, uisrnn_jax.plots, uisrnn_jax.evaluation; '
    "print('matplotlib' in sys.modules, 'pyannote' in sys.modules)"
  )
  out = run_python('-c', code, check=True).stdout.split()
  assert out == ['False', 'False']


if __name__ == '__main__':
  absltest.main()
