"""Tests for uisrnn_jax.rttm: RTTM/UEM reading and writing, bad lines."""

import os

import numpy as np
from absl.testing import absltest

from uisrnn_jax import errors, rttm

RTTM = """\
;; a comment
SPEAKER meet 1 0.500 1.250 <NA> <NA> alice <NA> <NA>
SPEAKER meet 1 1.500 2.000 <NA> <NA> bob <NA> <NA>

LEXEME meet 1 0.5 0.2 hello <NA> <NA> alice <NA>
SPEAKER other 1 3.000 1.000 <NA> <NA> alice <NA> <NA>
"""


class RttmTest(absltest.TestCase):
  def test_parse(self):
    turns = rttm.parse_rttm(RTTM)
    self.assertEqual(list(turns), ['meet', 'other'])
    onsets, offsets, speakers = turns['meet']
    np.testing.assert_allclose(onsets, [0.5, 1.5])
    np.testing.assert_allclose(offsets, [1.75, 3.5])  # overlap is kept
    self.assertEqual(speakers, ['alice', 'bob'])

  def test_write_read_round_trip(self):
    text = rttm.turns_text('my meeting', ([0.0, 1.5], [1.5, 2.25], [0, 'B']))
    self.assertEqual(
      text.splitlines(),
      [
        'SPEAKER my_meeting 1 0.000 1.500 <NA> <NA> spk0 <NA> <NA>',
        'SPEAKER my_meeting 1 1.500 0.750 <NA> <NA> B <NA> <NA>',
      ],
    )
    (turns,) = rttm.parse_rttm(text).values()
    np.testing.assert_allclose(turns[1], [1.5, 2.25])
    self.assertEqual(rttm.turns_text('x', ([], [], [])), '')

  def test_predictions_text_uses_window_midpoints(self):
    text = rttm.predictions_text(
      ['c'], [np.array([0.0, 0.4, 0.8])], [np.array([1.6, 2.0, 2.2])],
      [np.array([0, 0, 1])],
    )  # fmt: skip
    onsets, offsets, labels = rttm.parse_rttm(text)['c']
    np.testing.assert_allclose(onsets, [0.0, 1.35])
    np.testing.assert_allclose(offsets, [1.35, 2.2])
    self.assertEqual(labels, ['spk0', 'spk1'])

  def test_annotation_round_trip(self):
    annotation = rttm.annotation(([0.0, 1.0], [2.0, 3.0], ['a', 'b']), 'f')
    self.assertEqual(sorted(annotation.labels()), ['a', 'b'])
    self.assertAlmostEqual(annotation.get_timeline().support().duration(), 3)
    onsets, offsets, labels = rttm.annotation_turns(annotation)
    np.testing.assert_allclose(offsets, [2.0, 3.0])  # overlapping tracks
    self.assertEqual(
      rttm.parse_rttm(rttm.annotation_text(annotation))['f'][2], ['a', 'b']
    )

  def test_bad_lines_name_file_and_line(self):
    d = self.create_tempdir().full_path
    for body, message in (
      ('SPEAKER f 1 0.0 1.0 <NA> <NA>\n', 'line 1: expected >= 8'),
      ('\nSPEAKER f 1 x 1.0 <NA> <NA> s <NA> <NA>\n', 'line 2: bad onset'),
      ('SPEAKER f 1 -1 1.0 <NA> <NA> s <NA> <NA>\n', 'line 1: negative'),
      ('SPEAKER f 1 0 nan <NA> <NA> s <NA> <NA>\n', 'line 1: non-finite'),
    ):
      path = os.path.join(d, 'bad.rttm')
      with open(path, 'w') as f:
        f.write(body)
      with self.subTest(body=body):
        with self.assertRaisesRegex(
          errors.DataFormatError, f'bad.rttm, {message}'
        ):
          rttm.read_rttm(path)
    with self.assertRaises(errors.InputFileNotFoundError):
      rttm.read_rttm(os.path.join(d, 'missing.rttm'))

  def test_a_file_in_two_rttms_is_refused(self):
    d = self.create_tempdir().full_path
    paths = []
    for name in ('a.rttm', 'b.rttm'):
      paths.append(os.path.join(d, name))
      with open(paths[-1], 'w') as f:
        f.write('SPEAKER f 1 0 1 <NA> <NA> s <NA> <NA>\n')
    with self.assertRaisesRegex(errors.DataFormatError, 'also in'):
      rttm.read_rttm(paths)


class UemTest(absltest.TestCase):
  def test_parse_sorted(self):
    uem = rttm.parse_uem('f 1 10 20\nf 1 0 5\ng NA 0.000 30.000\n')
    np.testing.assert_array_equal(uem['f'], [[0, 5], [10, 20]])
    np.testing.assert_array_equal(uem['g'], [[0, 30]])
    self.assertEqual(rttm.parse_uem(rttm.uem_text(uem)).keys(), uem.keys())

  def test_errors(self):
    for text, message in (
      ('f 1 0\n', 'line 1: expected 4 fields'),
      ('f 1 0 5\nf 1 a 6\n', 'line 2: bad start'),
      ('f 1 5 5\n', 'line 1: end <= start'),
      ('f 1 0 5\ng 1 0 1\nf 1 4 6\n', "'f' on lines 1 and 3 overlap"),
    ):
      with self.subTest(text=text):
        with self.assertRaisesRegex(errors.DataFormatError, message):
          rttm.parse_uem(text, source='x.uem')


if __name__ == '__main__':
  absltest.main()
