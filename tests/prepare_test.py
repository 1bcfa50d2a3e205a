"""uisrnn-prepare: audio + RTTM/UEM -> the .npz format (labels, overlap,
UEM, cache, shards and merge, manifests, errors before anything is written).

Labels are checked on hand-made references; the audio is noise the test
makes (what is embedded does not matter for labels). The end-to-end tests
need the audio extra and are skipped, with that reason, without it.
"""

import json
import os
import shutil
import tempfile
from unittest import mock

import audio_test
import numpy as np
from absl.testing import absltest

from uisrnn_jax import audio, experiment, prepare
from uisrnn_jax import dataset as dataset_lib

SR = audio.SAMPLE_RATE

RTTM = """\
SPEAKER a 1 0.000 3.000 <NA> <NA> X <NA> <NA>
SPEAKER a 1 2.500 3.500 <NA> <NA> Y <NA> <NA>
SPEAKER b 1 0.500 3.000 <NA> <NA> X <NA> <NA>
SPEAKER elsewhere 1 0.000 1.000 <NA> <NA> Z <NA> <NA>
"""
UEM = 'a 1 0.0 6.0\nb 1 0.0 2.5\n'


class LabelWindowsTest(absltest.TestCase):
  def test_dominant_speaker_fraction_and_overlap(self):
    turns = (np.array([0.0, 2.5]), np.array([3.0, 6.0]), ['X', 'Y'])
    starts = np.array([0.0, 2.0, 4.4, 6.5])
    ends = starts + 1.6
    labels, fraction, overlapped = prepare.label_windows(
      starts, ends, turns, overlap_min=0.1
    )
    # [2.0, 3.6): X 1.0 s, Y 1.1 s -> Y, with 0.5 s of overlap.
    self.assertEqual(labels.tolist(), ['X', 'Y', 'Y', ''])
    np.testing.assert_allclose(fraction, [1, 1, 1, 0], atol=1e-9)
    self.assertEqual(overlapped.tolist(), [False, True, False, False])
    _, _, strict = prepare.label_windows(starts, ends, turns, overlap_min=0.6)
    self.assertFalse(strict.any())

  def test_reference_regions_are_cut_to_the_uem(self):
    item = prepare.Item(
      'b.wav', 'b', (np.array([0.5]), np.array([3.5]), ['X']),
      np.array([[0.0, 2.5]]),
    )  # fmt: skip
    speech, turns = prepare.reference_regions(item, 4.0)
    np.testing.assert_allclose(speech, [[0.5, 2.5]])
    np.testing.assert_allclose(turns[1], [2.5])
    whole = prepare.Item('b.wav', 'b', item.turns, None)
    np.testing.assert_allclose(
      prepare.reference_regions(whole, 4.0)[0], [[0.5, 3.5]]
    )


@audio_test.needs_audio_extra
class PrepareTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    import soundfile

    cls.dir = tempfile.mkdtemp(prefix='prepare_test_')
    cls.addClassCleanup(shutil.rmtree, cls.dir, ignore_errors=True)
    rng = np.random.default_rng(0)
    cls.corpus = os.path.join(cls.dir, 'corpus')
    os.makedirs(cls.corpus)
    for name, seconds, rate in (('a.wav', 6, SR), ('b.flac', 4, 8000)):
      noise = (0.1 * rng.standard_normal(seconds * rate)).astype(np.float32)
      soundfile.write(os.path.join(cls.corpus, name), noise, rate)
    cls.rttm = cls._write('ref.rttm', RTTM)
    cls.uem = cls._write('ref.uem', UEM)
    cls.full = os.path.join(cls.dir, 'full.npz')
    status = prepare.main(
      [
        cls.corpus,
        f'--rttm={cls.rttm}',
        f'--uem={cls.uem}',
        f'--output={cls.full}',
      ]
    )
    assert status == 0

  @classmethod
  def _write(cls, name, text):
    path = os.path.join(cls.dir, name)
    with open(path, 'w') as f:
      f.write(text)
    return path

  def _load(self, path):
    with np.load(path, allow_pickle=False) as z:
      return {k: z[k] for k in z.files}

  def test_output_is_the_npz_format_with_reference_labels(self):
    data = dataset_lib.load_npz(self.full, observation_dim=256)
    self.assertEqual(data.ids, ['a', 'b'])
    z = self._load(self.full)
    a, b = data.labels
    self.assertEqual(a[0], 'X')
    self.assertEqual(a[-1], 'Y')
    self.assertEqual(set(b), {'X'})
    # b is scored only up to 2.5 s (UEM): windows and turns stop there.
    self.assertLessEqual(data.ends[1].max(), 2.5 + 1e-9)
    np.testing.assert_allclose(data.turns[1][0:2], [[0.5], [2.5]])
    # The window over a's overlap [2.5, 3) is marked.
    overlapped = z['overlapped'][: len(a)]
    starts = data.starts[0]
    near = (starts < 3.0) & (data.ends[0] > 2.5)
    self.assertTrue(np.all(overlapped[near]))
    self.assertFalse(np.any(overlapped[~near]))

  def test_infer_decodes_the_output(self):
    from uisrnn_jax import checkpoint

    workdir = os.path.join(self.dir, 'run')
    audio_test.tiny_checkpoint(workdir)
    state, config = checkpoint.load_inference_state(workdir)
    ((path, data, predicted),) = experiment.iter_decoded(
      state, [self.full], config.decode
    )
    self.assertEqual(
      [len(p) for p in predicted], [len(s) for s in data.sequences]
    )

  def test_drop_overlap(self):
    out = os.path.join(self.dir, 'no_overlap.npz')
    prepare.main(
      [self.corpus, f'--rttm={self.rttm}', f'--uem={self.uem}',
       f'--output={out}', '--drop_overlap']
    )  # fmt: skip
    z = self._load(out)
    self.assertFalse(z['overlapped'].any())
    self.assertLess(len(z['labels']), len(self._load(self.full)['labels']))

  def test_cache_resumes_without_embedding(self):
    out = os.path.join(self.dir, 'again.npz')
    with mock.patch.object(
      audio, 'embed_regions', side_effect=AssertionError('re-embedded')
    ):
      status = prepare.main(
        [self.corpus, f'--rttm={self.rttm}', f'--uem={self.uem}',
         f'--output={out}', f'--cache_dir={self.full}.cache']
      )  # fmt: skip
    self.assertEqual(status, 0)
    full, again = self._load(self.full), self._load(out)
    np.testing.assert_array_equal(full['embeddings'], again['embeddings'])

  def test_shards_merge_to_the_whole(self):
    parts = []
    for i in range(2):
      parts.append(os.path.join(self.dir, f'part-{i}.npz'))
      status = prepare.main(
        [self.corpus, f'--rttm={self.rttm}', f'--uem={self.uem}',
         f'--output={parts[-1]}', f'--shard_index={i}', '--num_shards=2',
         f'--cache_dir={self.full}.cache']
      )  # fmt: skip
      self.assertEqual(status, 0)
    self.assertEqual(
      [dataset_lib.load_npz(p).ids for p in parts], [['a'], ['b']]
    )
    merged = os.path.join(self.dir, 'merged.npz')
    self.assertEqual(
      prepare.main(
        [os.path.join(self.dir, 'part-*.npz'), '--merge', f'--output={merged}']
      ),
      0,
    )
    full, got = self._load(self.full), self._load(merged)
    self.assertEqual(sorted(full), sorted(got))
    for key in full:
      np.testing.assert_array_equal(full[key], got[key], err_msg=key)

  def test_manifest(self):
    manifest = self._write(
      'manifest.jsonl',
      json.dumps(
        {
          'audio_filepath': os.path.join('corpus', 'a.wav'),
          'rttm_filepath': 'ref.rttm',
          'uem_filepath': 'ref.uem',
        }
      )
      + '\n',
    )
    out = os.path.join(self.dir, 'manifest.npz')
    self.assertEqual(prepare.main([manifest, f'--output={out}']), 0)
    self.assertEqual(dataset_lib.load_npz(out).ids, ['a'])

  def test_errors_before_anything_is_written(self):
    import soundfile

    extra = os.path.join(self.dir, 'extra')
    os.makedirs(extra, exist_ok=True)
    soundfile.write(os.path.join(extra, 'c.wav'), np.zeros(SR, np.float32), SR)
    short = os.path.join(extra, 'short')
    os.makedirs(short, exist_ok=True)
    soundfile.write(os.path.join(short, 'a.wav'), np.zeros(SR, np.float32), SR)
    bad_rttm = self._write('bad.rttm', RTTM + 'SPEAKER a 1 x 1 <NA> <NA> X\n')
    bad_uem = self._write('bad.uem', 'a 1 0 4\na 1 3 6\n')
    a = os.path.join(self.corpus, 'a.wav')
    c = os.path.join(extra, 'c.wav')
    for argv, message in (
      ([a, c, f'--rttm={self.rttm}'], "c.wav: no RTTM turns for file id 'c'"),
      ([a, f'--rttm={bad_rttm}'], 'bad.rttm, line 5: bad onset'),
      ([a, f'--rttm={self.rttm}', f'--uem={bad_uem}'], 'lines 1 and 2 overlap'),
      (
        [os.path.join(short, 'a.wav'), f'--rttm={self.rttm}'],
        'after the audio',
      ),
      ([a, os.path.join(extra, 'nope.wav'), f'--rttm={self.rttm}'], 'nope.wav'),
    ):
      out = os.path.join(self.dir, 'not_written.npz')
      with self.subTest(message=message):
        with mock.patch('sys.stderr') as stderr:
          self.assertEqual(prepare.main([*argv, f'--output={out}']), 1)
        printed = ''.join(c.args[0] for c in stderr.write.call_args_list)
        self.assertIn(message, printed)
        self.assertFalse(os.path.exists(out))
    # A file declared to hold no speech is left out, not an error.
    out = os.path.join(self.dir, 'with_silent.npz')
    status = prepare.main(
      [a, c, f'--rttm={self.rttm}', '--allow_no_reference', f'--output={out}',
       f'--cache_dir={self.full}.cache']
    )  # fmt: skip
    self.assertEqual(status, 0)
    self.assertEqual(dataset_lib.load_npz(out).ids, ['a'])


if __name__ == '__main__':
  absltest.main()


@audio_test.needs_audio_extra
@absltest.skipUnless(
  os.path.isdir(audio_test.AMI), f'no AMI excerpts at {audio_test.AMI}'
)
class AmiPrepareTest(absltest.TestCase):
  """Real meetings: labels and turns come from the reference RTTM/UEM."""

  def test_development_split(self):
    ami = audio_test.AMI
    out = os.path.join(self.create_tempdir().full_path, 'dev.npz')
    status = prepare.main(
      [os.path.join(ami, 'dev01.wav'),
       f'--rttm={os.path.join(ami, "development.rttm")}',
       f'--uem={os.path.join(ami, "development.uem")}', f'--output={out}']
    )  # fmt: skip
    self.assertEqual(status, 0)
    data = dataset_lib.load_npz(out, observation_dim=256)
    from uisrnn_jax import rttm

    onsets, offsets, speakers = rttm.read_rttm(
      os.path.join(ami, 'development.rttm')
    )['dev01']
    self.assertEqual(data.ids, ['dev01'])
    self.assertEqual(set(data.labels[0]), set(speakers))
    np.testing.assert_allclose(data.turns[0][0], onsets)
    # Every window lies in reference speech (merged gaps < 0.5 s aside).
    centres = (data.starts[0] + data.ends[0]) / 2
    inside = (centres[:, None] >= onsets - 0.5) & (
      centres[:, None] < offsets + 0.5
    )
    self.assertTrue(inside.any(axis=1).all())
