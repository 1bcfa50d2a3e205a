"""Tests for uisrnn_jax.evaluation (hand-computed DER, accuracy, counts)."""

import os

import numpy as np
import pytest
from absl.testing import absltest, parameterized

pytest.importorskip(
  'pyannote.metrics', reason='DER needs pyannote.metrics (the eval extra)'
)

from uisrnn_jax import dataset as dataset_lib  # noqa: E402
from uisrnn_jax import errors, evaluation  # noqa: E402

LIBRISIM_DEV = os.path.join(
  os.path.dirname(__file__), '..', '..', 'shared', 'data', 'librisim', 'dev.npz'
)


def _seg(*turns):
  """(start, end, label) triples -> Segments."""
  s, e, lab = zip(*turns)
  return np.array(s, float), np.array(e, float), np.array(lab)


class FramesToSegmentsTest(parameterized.TestCase):
  def test_overlapping_windows_cut_at_centre_midpoints(self):
    # 1.6 s windows every 0.4 s, last one clipped at 2.5 s: centres 0.8, 1.2,
    # 1.6, 1.85 -> cuts 0, 1.0, 1.4, 1.725, 2.5.
    starts = [0.0, 0.4, 0.8, 1.2]
    ends = [1.6, 2.0, 2.4, 2.5]
    s, e, lab = evaluation.frames_to_segments(
      starts, ends, ['a', 'a', 'b', 'b']
    )
    np.testing.assert_allclose(s, [0.0, 1.4])
    np.testing.assert_allclose(e, [1.4, 2.5])
    self.assertEqual(lab.tolist(), ['a', 'b'])

  def test_every_change_makes_a_segment_and_segments_tile(self):
    starts = np.arange(6) * 0.4
    ends = starts + 1.6
    labels = np.array([0, 1, 1, 0, 2, 2])
    s, e, lab = evaluation.frames_to_segments(starts, ends, labels)
    self.assertEqual(lab.tolist(), [0, 1, 0, 2])
    np.testing.assert_allclose(s[1:], e[:-1])  # contiguous
    self.assertAlmostEqual(s[0], 0.0)
    self.assertAlmostEqual(e[-1], ends[-1])
    # Frame 1 owns (c0 + c1) / 2 = 1.0 .. (c2 + c3) / 2 is frame 3's start.
    np.testing.assert_allclose(s, [0.0, 1.0, 1.8, 2.2])

  def test_single_frame(self):
    s, e, lab = evaluation.frames_to_segments([3.0], [4.6], ['x'])
    self.assertEqual(
      (s.tolist(), e.tolist(), lab.tolist()), ([3.0], [4.6], ['x'])
    )

  @parameterized.named_parameters(
    ('empty', [], [], []),
    ('lengths', [0.0, 1.0], [1.0, 2.0], ['a']),
    ('decreasing', [1.0, 0.0], [2.0, 1.0], ['a', 'b']),
  )
  def test_errors(self, starts, ends, labels):
    with self.assertRaises(ValueError):
      evaluation.frames_to_segments(starts, ends, labels)


class DerTest(parameterized.TestCase):
  def test_confusion_no_collar(self):
    ref = _seg((0, 5, 'a'), (5, 10, 'b'))
    hyp = _seg((0, 6, 'x'), (6, 10, 'y'))  # [5, 6] is confused
    out = evaluation.der(ref, hyp, collar=0.0)
    self.assertAlmostEqual(out['confusion'], 1.0)
    self.assertAlmostEqual(out['missed'], 0.0)
    self.assertAlmostEqual(out['false_alarm'], 0.0)
    self.assertAlmostEqual(out['total'], 10.0)
    self.assertAlmostEqual(out['der'], 0.1)

  def test_collar_is_total_width(self):
    # collar 0.5 removes +-0.25 s around 0, 5 and 10: 9 s scored, of which
    # [5.25, 6] is confused.
    ref = _seg((0, 5, 'a'), (5, 10, 'b'))
    hyp = _seg((0, 6, 'x'), (6, 10, 'y'))
    out = evaluation.der(ref, hyp, collar=0.5)
    self.assertAlmostEqual(out['total'], 9.0)
    self.assertAlmostEqual(out['confusion'], 0.75)
    self.assertAlmostEqual(out['der'], 0.75 / 9)

  def test_missed_speech(self):
    ref = _seg((0, 5, 'a'), (5, 10, 'b'))
    hyp = _seg((0, 5, 1), (5, 8, 0))  # nothing said after 8 s
    out = evaluation.der(ref, hyp, collar=0.0)
    self.assertAlmostEqual(out['missed'], 2.0)
    self.assertAlmostEqual(out['confusion'], 0.0)
    self.assertAlmostEqual(out['der'], 0.2)

  def test_false_alarm_in_reference_gap(self):
    ref = _seg((0, 4, 'a'), (6, 10, 'b'))
    hyp = _seg((0, 5, 0), (5, 10, 1))  # speech in the silent [4, 6]
    out = evaluation.der(ref, hyp, collar=0.0)
    self.assertAlmostEqual(out['false_alarm'], 2.0)
    self.assertAlmostEqual(out['total'], 8.0)
    self.assertAlmostEqual(out['der'], 0.25)

  def test_perfect_up_to_names(self):
    ref = _seg((0, 2, 'a'), (2, 3, 'b'), (3, 7, 'a'))
    hyp = _seg((0, 2, 5), (2, 3, 9), (3, 7, 5))
    self.assertEqual(evaluation.der(ref, hyp, collar=0.0)['der'], 0.0)


def _two_conversation_dataset(with_turns=True, with_times=True):
  # Conversation 0: frames [i, i + 1); labels a a b b b, exact turns switch
  # at 2.5 s. Conversation 1: a b b b, turns switch at 1 s.
  turns = [
    (np.array([0.0, 2.5]), np.array([2.5, 5.0]), np.array(['a', 'b'])),
    (np.array([0.0, 1.0]), np.array([1.0, 4.0]), np.array(['a', 'b'])),
  ]
  return dataset_lib.Dataset(
    sequences=[np.zeros((5, 2)), np.zeros((4, 2))],
    labels=[np.array(list('aabbb')), np.array(list('abbb'))],
    starts=[np.arange(5.0), np.arange(4.0)] if with_times else None,
    ends=[np.arange(1.0, 6.0), np.arange(1.0, 5.0)] if with_times else None,
    ids=['c0', 'c1'],
    turns=turns if with_turns else None,
  )


PREDICTED = [np.array([0, 0, 0, 1, 1]), np.array([0, 1, 2, 2])]


class JerTest(absltest.TestCase):
  def test_hand_computed(self):
    # A [0, 10), B [10, 20); hypothesis x [0, 12), y [12, 20): A -> x with
    # union 12, false alarm 2 -> 1/6; B -> y with union 10, miss 2 -> 0.2.
    parts = evaluation.der(
      _seg((0, 10, 'A'), (10, 20, 'B')),
      _seg((0, 12, 'x'), (12, 20, 'y')),
      collar=0.0,
    )
    self.assertAlmostEqual(parts['jer'], (1 / 6 + 0.2) / 2)
    self.assertEqual(parts['jer_speakers'], 2)
    # DER of the same: 2 s confused over 20 s.
    self.assertAlmostEqual(parts['der'], 0.1)

  def test_unmatched_speaker_counts_fully_and_report_accumulates(self):
    # One hypothesis speaker for two reference speakers: B unmatched -> 1.
    parts = evaluation.der(
      _seg((0, 10, 'A'), (10, 20, 'B')), _seg((0, 20, 'x')), collar=0.0
    )
    self.assertAlmostEqual(parts['jer'], (0.5 + 1.0) / 2)
    rows = [
      evaluation.ConversationResult(
        name=n,
        num_frames=0,
        accuracy=1.0,
        der=0.0,
        confusion=0.0,
        missed=0.0,
        false_alarm=0.0,
        scored=1.0,
        num_reference=k,
        num_predicted=k,
        jer=j,
        jer_speakers=k,
      )  # fmt: skip
      for n, j, k in (('a', 0.75, 2), ('b', 0.0, 1))
    ]
    report = evaluation.Report.from_rows(
      rows, collar=0.0, skip_overlap=False, timed=True
    )
    self.assertAlmostEqual(report.jer, 1.5 / 3)  # per speaker, not per file


class ScoreAnnotationsTest(absltest.TestCase):
  def test_uem_limits_scoring_and_report_files(self):
    from uisrnn_jax import rttm

    ref = {'f': rttm.annotation(([0.0, 10.0], [10.0, 20.0], ['A', 'B']), 'f')}
    hyp = {'f': rttm.annotation(([0.0, 12.0], [12.0, 30.0], [0, 1]), 'f')}
    report = evaluation.score_annotations(
      ref, hyp, uems={'f': np.array([[0.0, 20.0]])}, collar=0.0
    )
    (row,) = report.rows
    # Inside the UEM: 2 s confused of 20 s; [20, 30) is not scored.
    self.assertAlmostEqual(row.der, 0.1)
    self.assertAlmostEqual(row.false_alarm, 0.0)
    self.assertAlmostEqual(row.jer, (1 / 6 + 0.2) / 2)
    self.assertEqual((row.num_reference, row.num_predicted), (2, 2))
    no_uem = evaluation.score_annotations(ref, hyp, collar=0.0)
    self.assertAlmostEqual(no_uem.rows[0].false_alarm, 10.0)
    d = self.create_tempdir().full_path
    report.write(os.path.join(d, 'r.csv'))
    with open(os.path.join(d, 'r.csv')) as f:
      lines = f.read().splitlines()
    self.assertLen(lines, 3)  # header, f, total
    self.assertTrue(lines[1].startswith('f,'))
    self.assertTrue(lines[2].startswith('total,'))
    with self.assertRaisesRegex(ValueError, 'csv or .json'):
      report.write(os.path.join(d, 'r.txt'))
    with self.assertRaisesRegex(ValueError, 'no reference'):
      evaluation.score_annotations({}, hyp)


class EvaluateTest(parameterized.TestCase):
  def test_hand_computed_totals_with_exact_turns(self):
    report = evaluation.evaluate(
      _two_conversation_dataset(), PREDICTED, collar=0.0
    )
    r0, r1 = report.rows
    # c0: prediction switches at 3 s, reference at 2.5 s -> 0.5 s confusion.
    self.assertAlmostEqual(r0.der, 0.1)
    self.assertAlmostEqual(r0.accuracy, 0.8)
    self.assertEqual((r0.num_reference, r0.num_predicted), (2, 2))
    # c1: best mapping a->0, b->2 leaves [1, 2] confused; 3 vs 2 speakers.
    self.assertAlmostEqual(r1.der, 0.25)
    self.assertAlmostEqual(r1.accuracy, 0.75)
    self.assertEqual(r1.speaker_count_error, 1)
    self.assertAlmostEqual(report.der, 1.5 / 9)  # accumulated, not averaged
    self.assertAlmostEqual(report.accuracy, 0.775)
    self.assertAlmostEqual(report.speaker_count_error, 0.5)
    self.assertAlmostEqual(report.speaker_count_bias, 0.5)
    self.assertTrue(report.timed)

  def test_collar(self):
    report = evaluation.evaluate(
      _two_conversation_dataset(), PREDICTED, collar=0.5
    )
    # c0: +-0.25 s around 0, 2.5 and 5 -> 4 s scored, [2.75, 3] confused.
    self.assertAlmostEqual(report.rows[0].scored, 4.0)
    self.assertAlmostEqual(report.rows[0].der, 0.25 / 4)
    self.assertEqual(report.collar, 0.5)

  def test_reference_from_labels_without_turns(self):
    report = evaluation.evaluate(
      _two_conversation_dataset(with_turns=False), PREDICTED, collar=0.0
    )
    # Reference labels a a b b b give turns a [0, 2], b [2, 5]: the
    # prediction (switch at 3) confuses [2, 3].
    self.assertAlmostEqual(report.rows[0].der, 0.2)

  def test_untimed_is_frame_units_without_collar(self):
    report = evaluation.evaluate(
      _two_conversation_dataset(with_turns=False, with_times=False),
      PREDICTED,
      collar=0.25,
    )
    self.assertFalse(report.timed)
    self.assertEqual(report.collar, 0.0)
    for row in report.rows:
      self.assertAlmostEqual(row.der, 1 - row.accuracy)

  def test_table_has_a_row_per_conversation(self):
    report = evaluation.evaluate(_two_conversation_dataset(), PREDICTED)
    table = report.table()
    lines = table.splitlines()
    self.assertTrue(lines[0].startswith('conversation'))
    self.assertEqual(sum(line.startswith('c0 ') for line in lines), 1)
    self.assertEqual(sum(line.startswith('c1 ') for line in lines), 1)
    self.assertEqual(sum(line.startswith('total ') for line in lines), 1)
    self.assertIn('DER', report.summary())
    self.assertEqual(len(report.to_dict()['rows']), 2)

  def test_combine_equals_evaluating_the_union(self):
    data = _two_conversation_dataset()
    whole = evaluation.evaluate(data, PREDICTED)
    parts = [
      evaluation.evaluate(data.subset([c]), [PREDICTED[c]]) for c in (0, 1)
    ]
    combined = evaluation.combine(parts)
    self.assertEqual(combined.rows, whole.rows)
    self.assertAlmostEqual(combined.der, whole.der)
    self.assertAlmostEqual(combined.accuracy, whole.accuracy)
    self.assertAlmostEqual(
      combined.speaker_count_error, whole.speaker_count_error
    )
    with self.assertRaisesRegex(ValueError, 'settings'):
      evaluation.combine(
        [parts[0], evaluation.evaluate(data, PREDICTED, collar=0.5)]
      )

  def test_errors(self):
    data = _two_conversation_dataset()
    with self.assertRaisesRegex(ValueError, 'predicted sequences'):
      evaluation.evaluate(data, PREDICTED[:1])
    with self.assertRaisesRegex(ValueError, 'conversation 1'):
      evaluation.evaluate(data, [PREDICTED[0], PREDICTED[1][:3]])
    data.labels = None
    with self.assertRaisesRegex(ValueError, 'labelled'):
      evaluation.evaluate(data, PREDICTED)


class SubsetTest(absltest.TestCase):
  def test_subset_keeps_every_field_aligned(self):
    data = _two_conversation_dataset()
    sub = data.subset([1])
    self.assertEqual(sub.ids, ['c1'])
    self.assertEqual(sub.labels[0].tolist(), list('abbb'))
    self.assertLen(sub.sequences[0], 4)
    np.testing.assert_array_equal(sub.starts[0], np.arange(4.0))
    self.assertEqual(sub.turns[0][2].tolist(), ['a', 'b'])
    self.assertEqual(data.subset(slice(0, 1)).ids, ['c0'])
    self.assertIsNone(
      _two_conversation_dataset(with_turns=False).subset([0]).turns
    )
    with self.assertRaises(IndexError):
      data.subset([2])


class LoadTurnsTest(absltest.TestCase):
  def _write(self, **extra):
    path = os.path.join(self.create_tempdir().full_path, 'd.npz')
    np.savez(
      path,
      embeddings=np.ones((5, 2), np.float32),
      offsets=np.array([0, 3, 5]),
      labels=np.array(list('aabcc')),
      **extra,
    )
    return path

  def test_reads_turns_per_conversation(self):
    path = self._write(
      turn_offsets=np.array([0, 2, 3]),
      turn_starts=np.array([0.0, 1.0, 0.0], np.float32),
      turn_ends=np.array([1.0, 2.0, 1.5], np.float32),
      turn_speakers=np.array(['a', 'b', 'c']),
    )
    data = dataset_lib.load_npz(path)
    self.assertLen(data.turns, 2)
    s, e, spk = data.turns[0]
    np.testing.assert_allclose(s, [0.0, 1.0])
    np.testing.assert_allclose(e, [1.0, 2.0])
    self.assertEqual(spk.tolist(), ['a', 'b'])
    self.assertEqual(data.turns[1][2].tolist(), ['c'])

  def test_no_turns(self):
    self.assertIsNone(dataset_lib.load_npz(self._write()).turns)

  def test_incomplete_or_inconsistent_turns(self):
    with self.assertRaisesRegex(errors.DataFormatError, 'turn'):
      dataset_lib.load_npz(self._write(turn_offsets=np.array([0, 1, 2])))
    with self.assertRaisesRegex(errors.DataFormatError, 'turn_offsets'):
      dataset_lib.load_npz(
        self._write(
          turn_offsets=np.array([0, 2]),  # one conversation short
          turn_starts=np.zeros(2),
          turn_ends=np.ones(2),
          turn_speakers=np.array(['a', 'b']),
        )
      )


@pytest.mark.skipif(
  not os.path.exists(LIBRISIM_DEV), reason='LibriSim dev.npz not available'
)
def test_librisim_reference_labels_score_near_zero():
  """Perfect frame labels: accuracy 1, DER only from the frame grid."""
  data = dataset_lib.load_npz(LIBRISIM_DEV)
  assert data.turns is not None and len(data.turns) == len(data.sequences)
  predicted = [
    np.unique(lab, return_inverse=True)[1].astype(np.int32)
    for lab in data.labels
  ]
  report = evaluation.evaluate(data, predicted)
  assert report.accuracy == 1.0
  assert report.speaker_count_error == 0.0
  assert 0.0 < report.der < 0.05, report.der


if __name__ == '__main__':
  absltest.main()
