"""Audio front end: synthetic two-voice recording -> uisrnn-diarize -> RTTM.

The end-to-end tests need the ``[audio]`` extra (resemblyzer) and are skipped,
with that reason, when it is not installed.
"""

import importlib.util
import os
import shutil
import tempfile

import jax
import numpy as np
import pytest
from absl.testing import absltest

from configs import toy
from uisrnn_jax import audio, checkpoint, experiment, train

SR = audio.SAMPLE_RATE
HAVE_AUDIO_EXTRA = importlib.util.find_spec('resemblyzer') is not None
needs_audio_extra = pytest.mark.skipif(
  not HAVE_AUDIO_EXTRA,
  reason="resemblyzer not installed (pip install -e '.[audio]')",
)


def _voice(f0, formants, seconds, rng):
  """A vowel-like harmonic voice with vibrato and a 4 Hz syllable rhythm."""
  t = np.arange(int(seconds * SR)) / SR
  f = f0 * (1 + 0.03 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)))
  phase = 2 * np.pi * np.cumsum(f) / SR
  sig = np.zeros_like(t)
  for k in range(1, int(3800 / f0)):
    amp = sum(np.exp(-(((k * f0 - fc) / bw) ** 2)) for fc, bw in formants)
    sig += (amp + 0.05 / k) * np.sin(k * phase)
  env = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6))
  return 0.5 * sig * env / np.max(np.abs(sig))


def _two_voices():
  """Low voice 3 s, high voice 3 s, silence 0.8 s, low voice 2 s."""
  rng = np.random.default_rng(0)
  low = dict(f0=110, formants=[(700, 150), (1200, 200), (2500, 300)])
  high = dict(f0=230, formants=[(400, 120), (2200, 250), (3000, 300)])
  return np.concatenate(
    [
      _voice(**low, seconds=3, rng=rng),
      _voice(**high, seconds=3, rng=rng),
      np.zeros(int(0.8 * SR)),
      _voice(**low, seconds=2, rng=rng),
    ]
  ).astype(np.float32)


def _tiny_checkpoint(workdir):
  """An untrained 256-dim model with given priors (no training needed)."""
  config = toy.get_config()
  config.model.observation_dim = 256
  config.model.rnn_hidden_size = 8
  config.decode.beam_size = 2
  config.decode.speaker_overflow = 'disallow'  # untrained: many speakers
  state = train.create_train_state(jax.random.key(0), config)
  state = state.replace(
    transition_bias=np.float32(0.2), crp_alpha=np.float32(1.0)
  )
  checkpoint.save_checkpoint(workdir, state, config)


class WindowTurnsTest(absltest.TestCase):
  """Window labels -> turns in the original time line (no extra needed)."""

  def test_turns_are_split_at_dropped_silence(self):
    # 1 s kept, 1 s dropped, 1 s kept; windows every 0.5 s over 1 s.
    kept = np.concatenate([np.arange(SR), np.arange(2 * SR, 3 * SR)])
    embedded = audio.Embedded(
      embeddings=np.zeros((3, 256), np.float32),
      starts=np.array([0.0, 0.5, 1.0]),
      ends=np.array([1.0, 1.5, 2.0]),
      kept=kept,
      duration=3.0,
    )
    turns = audio.window_turns(embedded, np.array([0, 0, 1]))
    # In kept time: speaker 0 owns [0, 1.25), speaker 1 [1.25, 2).
    np.testing.assert_allclose(
      turns, [(0.0, 1.0, 0), (2.0, 2.25, 0), (2.25, 3.0, 1)]
    )

  def test_without_vad_turns_tile_the_audio(self):
    embedded = audio.Embedded(
      embeddings=np.zeros((3, 256), np.float32),
      starts=np.array([0.0, 0.4, 0.8]),
      ends=np.array([1.6, 2.0, 2.1]),
      kept=np.arange(int(2.3 * SR)),  # last window dropped: 0.2 s uncovered
      duration=2.3,
    )
    turns = audio.window_turns(embedded, np.array([1, 0, 0]))
    np.testing.assert_allclose(turns, [(0.0, 1.0, 1), (1.0, 2.3, 0)])

  def test_rttm_text(self):
    text = audio.rttm_text('my file', [(0.0, 1.5, 0), (1.5, 2.0, 1)])
    self.assertEqual(
      text.splitlines()[1],
      'SPEAKER my_file 1 1.500 0.500 <NA> <NA> spk1 <NA> <NA>',
    )


@needs_audio_extra
class DiarizeTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    import soundfile

    # A directory of its own: nothing may assume that an earlier run (or the
    # absl default TEST_TMPDIR) left a directory behind.
    cls.dir = tempfile.mkdtemp(prefix='diarize_test_')
    cls.addClassCleanup(shutil.rmtree, cls.dir, ignore_errors=True)
    cls.wav = _two_voices()
    cls.duration = len(cls.wav) / SR
    cls.wav_path = os.path.join(cls.dir, 'two voices.wav')
    soundfile.write(cls.wav_path, cls.wav, SR)
    cls.workdir = os.path.join(cls.dir, 'audio_run')
    _tiny_checkpoint(cls.workdir)

  def _rttm(self, *args):
    out = os.path.join(self.create_tempdir().full_path, 'out.rttm')
    status = audio.main(
      [self.wav_path, f'--workdir={self.workdir}', f'--output={out}', *args]
    )
    self.assertEqual(status, 0)
    with open(out) as f:
      turns = experiment.parse_rttm(f.read())
    self.assertEqual(list(turns), ['two_voices'])  # file id from the name
    return turns['two_voices']

  def test_cli_without_vad_covers_the_whole_recording(self):
    onsets, offsets, speakers = self._rttm('--novad')
    self.assertAlmostEqual(onsets[0], 0.0, places=3)
    np.testing.assert_allclose(onsets[1:], offsets[:-1], atol=1.5e-3)
    self.assertAlmostEqual(offsets[-1], self.duration, places=3)
    self.assertTrue(all(s.startswith('spk') for s in speakers))

  def test_cli_with_vad_leaves_out_the_silence(self):
    onsets, offsets, _ = self._rttm()  # VAD on by default
    self.assertTrue(np.all(np.diff(onsets) > 0))
    self.assertTrue(np.all(offsets[:-1] <= onsets[1:] + 1e-3))
    self.assertGreaterEqual(onsets[0], 0.0)
    self.assertLessEqual(offsets[-1], self.duration + 1e-3)
    # The voices (8 s) are kept, the middle of the 0.8 s silence is not.
    self.assertGreater(np.sum(offsets - onsets), 7.5)
    self.assertFalse(np.any((onsets <= 6.4) & (offsets >= 6.4)))

  def test_embeddings_separate_the_two_voices(self):
    embedded = audio.embed_audio(self.wav, vad=False)
    self.assertEqual(embedded.embeddings.shape[1], 256)
    np.testing.assert_allclose(np.diff(embedded.starts), 0.4, atol=1e-9)
    self.assertAlmostEqual(embedded.ends[-1], self.duration)
    e = embedded.embeddings
    centres = (embedded.starts + embedded.ends) / 2
    low = e[centres < 2.2].mean(0)
    high = e[(centres > 3.8) & (centres < 5.2)].mean(0)
    last = e[centres > 7.4].mean(0)
    cos = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)  # noqa: E731
    self.assertGreater(cos(low, last), cos(low, high) + 0.2)

  def test_formats_and_errors(self):
    import soundfile

    for fmt in ('FLAC', 'MP3'):
      path = os.path.join(self.dir, f'short.{fmt.lower()}')
      soundfile.write(path, self.wav[: 2 * SR], SR, format=fmt)
      self.assertAlmostEqual(len(audio.load_audio(path)) / SR, 2.0, delta=0.1)
    self.assertEqual(
      audio.main(['missing.wav', f'--workdir={self.workdir}']), 1
    )
    with self.assertRaisesRegex(ValueError, 'rate'):
      audio.embed_audio(self.wav, rate=0.1)


if __name__ == '__main__':
  absltest.main()
