"""Audio front end: speech detection, windows, d-vectors, uisrnn-diarize.

Hand-computed cases need nothing but NumPy. The end-to-end tests need the
``[audio]`` extra (silero-vad, torch, soundfile) and resemblyzer's weights,
and real speech from ../shared/data/librispeech-samples; each is skipped,
with that reason, when missing. Set-up (model load, JIT) is shared per class.
"""

import glob
import importlib.util
import json
import os
import shutil
import tempfile
import warnings

import jax
import numpy as np
import pytest
from absl.testing import absltest

from configs import toy
from uisrnn_jax import audio, checkpoint, errors, rttm, train

SR = audio.SAMPLE_RATE
# ../shared/data next to the repository (UISRNN_JAX_DATA overrides it).
DATA = os.environ.get(
  'UISRNN_JAX_DATA',
  os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'data'
  ),
)
LIBRI = os.path.join(DATA, 'librispeech-samples', 'test-other')
AMI = os.path.join(DATA, 'ami-excerpts')


def _have(module):
  return importlib.util.find_spec(module) is not None


HAVE_AUDIO_EXTRA = all(
  _have(m) for m in ('silero_vad', 'torch', 'soundfile', 'soxr', 'resemblyzer')
)
needs_audio_extra = pytest.mark.skipif(
  not HAVE_AUDIO_EXTRA,
  reason="audio extra missing (pip install -e '.[audio]' && pip install "
  '--no-deps resemblyzer==0.1.4)',
)
needs_librispeech = pytest.mark.skipif(
  not os.path.isdir(LIBRI), reason=f'real speech not found at {LIBRI}'
)


def librispeech_conversation():
  """Two real speakers: A 3 s, B 3 s, 2 s silence, A 3 s (16 kHz mono).

  Returns:
    ``(wav, reference turns)``.
  """
  import soundfile

  a1, a2 = sorted(glob.glob(os.path.join(LIBRI, '1688', '*.flac')))[:2]
  (b1,) = sorted(glob.glob(os.path.join(LIBRI, '2033', '*.flac')))[:1]
  pieces = [soundfile.read(p, dtype='float32')[0][: 3 * SR] for p in (a1, b1)]
  pieces += [np.zeros(2 * SR, np.float32)]
  pieces += [soundfile.read(a2, dtype='float32')[0][: 3 * SR]]
  reference = (
    np.array([0.0, 3.0, 8.0]),
    np.array([3.0, 6.0, 11.0]),
    ['A', 'B', 'A'],
  )
  return np.concatenate(pieces), reference


def tiny_checkpoint(workdir):
  """An untrained 256-dim model with given priors (no training needed)."""
  config = toy.get_config()
  config.model.observation_dim = 256
  config.model.rnn_hidden_size = 8
  config.decode.beam_size = 2
  config.decode.speaker_overflow = 'disallow'  # untrained: many speakers
  state = train.create_train_state(jax.random.key(0), config)
  state = state.replace(
    transition_bias=np.float32(0.5), crp_alpha=np.float32(10.0)
  )
  checkpoint.save_checkpoint(workdir, state, config)


def _embedded(regions, speech, windows):
  """An `audio.Embedded` with ``windows = [(start, end, region)]``."""
  w = np.array(windows, np.float64).reshape(-1, 3)
  return audio.Embedded(
    embeddings=np.zeros((len(w), 256), np.float32),
    starts=w[:, 0],
    ends=w[:, 1],
    region=w[:, 2].astype(np.int64),
    regions=np.array(regions, np.float64),
    speech=np.array(speech, np.float64),
    duration=10.0,
  )


class WindowsAndTurnsTest(absltest.TestCase):
  """Hand-computed windows and turns (no audio extra needed)."""

  def test_merge_regions(self):
    regions = np.array([[0.0, 1.0], [1.2, 2.0], [3.0, 4.0], [4.6, 5.0]])
    np.testing.assert_array_equal(
      audio.merge_regions(regions, 0.5), [[0, 2], [3, 4], [4.6, 5]]
    )
    np.testing.assert_array_equal(audio.merge_regions(regions, 0.0), regions)
    self.assertEqual(audio.merge_regions(np.zeros((0, 2)), 1).shape, (0, 2))

  def test_partial_windows(self):
    # 3 s at 2.5 windows/s: frames n = ceil(48001 / 160) = 301, step 40,
    # starts 0, 40, ..., < 301 - 160 + 40 + 1 = 182 -> 0..160; the last
    # (160) covers (48000 - 25600) / 25600 = 0.875 >= 0.5 and is kept.
    firsts = audio.partial_windows(3 * SR, rate=2.5, min_coverage=0.5)
    np.testing.assert_array_equal(firsts, [0, 40, 80, 120, 160])
    # With min_coverage 0.9 the last is dropped.
    firsts = audio.partial_windows(3 * SR, rate=2.5, min_coverage=0.9)
    np.testing.assert_array_equal(firsts, [0, 40, 80, 120])
    # A region shorter than one window still gets one (zero-padded).
    np.testing.assert_array_equal(
      audio.partial_windows(SR // 2, rate=2.5, min_coverage=0.9), [0]
    )

  def test_turns_stay_inside_speech(self):
    # Region 0 = [1, 4) merged from speech [1, 2) and [2.3, 4); region 1 =
    # [6, 7) alone. Windows: two in region 0, one in region 1.
    embedded = _embedded(
      regions=[[1.0, 4.0], [6.0, 7.0]],
      speech=[[1.0, 2.0], [2.3, 4.0], [6.0, 7.0]],
      windows=[(1.0, 2.6, 0), (1.4, 3.0, 0), (6.0, 7.0, 1)],
    )
    turns = audio.window_turns(embedded, np.array([0, 1, 0]))
    # Centres 1.8, 2.2 -> boundary 2.0: speaker 0 owns [1, 2), 1 [2, 4),
    # cut to speech: [2.3, 4); region 1 is speaker 0 throughout.
    np.testing.assert_allclose(
      turns, [(1.0, 2.0, 0), (2.3, 4.0, 1), (6.0, 7.0, 0)]
    )

  def test_no_turn_spans_non_speech(self):
    embedded = _embedded(
      regions=[[0.0, 3.0], [5.0, 6.0]],
      speech=[[0.0, 3.0], [5.0, 6.0]],
      windows=[(0.0, 1.6, 0), (0.4, 2.0, 0), (0.8, 2.4, 0), (5.0, 6.0, 1)],
    )
    turns = audio.window_turns(embedded, np.array([2, 2, 2, 2]))
    np.testing.assert_allclose(turns, [(0.0, 3.0, 2), (5.0, 6.0, 2)])
    with self.assertRaisesRegex(ValueError, '2 labels for 4 windows'):
      audio.window_turns(embedded, np.array([0, 1]))

  def test_mel_filters_peak_at_their_centre(self):
    filters = audio._mel_filters()
    self.assertEqual(filters.shape, (40, 201))
    self.assertTrue(np.all(filters >= 0))
    # Centres rise monotonically; Slaney normalisation: equal area per Hz.
    peaks = np.argmax(filters, axis=1)
    self.assertTrue(np.all(np.diff(peaks) >= 0))
    hz = np.linspace(0, SR / 2, 201)
    area = filters.sum(axis=1) * (hz[1] - hz[0])
    np.testing.assert_allclose(area[5:], 1.0, rtol=0.1)

  def test_mel_spectrogram_of_a_tone(self):
    t = np.arange(SR) / SR
    mel = audio.mel_spectrogram(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    self.assertEqual(mel.shape, (1 + SR // 160, 40))
    band = int(np.argmax(mel[50]))
    filters = audio._mel_filters()
    self.assertEqual(band, int(np.argmax(filters[:, 1000 * 400 // SR])))

  def test_vad_options_are_checked(self):
    with self.assertRaisesRegex(ValueError, 'threshold'):
      audio.VadOptions(threshold=1.5)
    with self.assertRaisesRegex(ValueError, 'min_silence'):
      audio.VadOptions(min_silence=-1)


FIXTURE = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'encoder_expected.npz'
)


class EncoderParityTest(absltest.TestCase):
  """Our encoder against resemblyzer 0.1.4's own output on real speech.

  tests/fixtures/make_encoder_fixture.py recorded what resemblyzer computes
  (its volume normalisation, mel spectrogram and ``embed_utterance``
  partials) on 4 s of LibriSpeech; resemblyzer is not imported here.
  """

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    with np.load(FIXTURE, allow_pickle=False) as z:
      cls.expected = {k: z[k] for k in z.files}

  def test_volume_gain_and_mel_spectrogram(self):
    wav = self.expected['wav']
    self.assertAlmostEqual(
      audio.volume_gain(wav), float(self.expected['gain']), places=5
    )
    mel = audio.mel_spectrogram(audio.normalize_volume(wav))
    self.assertEqual(mel.shape, self.expected['mel'].shape)
    np.testing.assert_allclose(mel, self.expected['mel'], rtol=2e-4, atol=1e-6)

  @needs_audio_extra
  def test_window_embeddings(self):
    wav = self.expected['wav']
    embedded = audio.embed_audio(wav, vad=None, rate=2.5, min_coverage=0.5)
    np.testing.assert_allclose(
      embedded.starts * SR, self.expected['slice_starts'], atol=0.5
    )
    np.testing.assert_allclose(
      embedded.embeddings, self.expected['partials'], atol=1e-5
    )


@needs_audio_extra
class LoadAudioTest(absltest.TestCase):
  """Formats, rates, channels and bad files (audio the test makes)."""

  def setUp(self):
    super().setUp()
    self.dir = self.create_tempdir().full_path
    t = np.arange(int(1.5 * 44100)) / 44100
    self.tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)

  def test_any_rate_channels_and_format(self):
    import soundfile

    stereo = np.stack([self.tone, 0.5 * self.tone], axis=1)
    formats = (('wav', 'WAV'), ('flac', 'FLAC'), ('ogg', 'OGG'), ('mp3', 'MP3'))
    for ext, fmt in formats:
      path = os.path.join(self.dir, f'tone.{ext}')
      soundfile.write(path, stereo, 44100, format=fmt)
      wav = audio.load_audio(path)
      self.assertEqual(wav.dtype, np.float32)
      self.assertAlmostEqual(len(wav) / SR, 1.5, delta=0.02)
      # Downmixed (mean of channels) and resampled: amplitude 0.225.
      self.assertAlmostEqual(float(np.max(np.abs(wav[SR // 4 :]))), 0.225, 2)

  def test_bad_files_name_the_file(self):
    import soundfile

    with self.assertRaisesRegex(errors.InputFileNotFoundError, 'nope.wav'):
      audio.load_audio(os.path.join(self.dir, 'nope.wav'))
    corrupt = os.path.join(self.dir, 'corrupt.wav')
    with open(corrupt, 'wb') as f:
      f.write(b'RIFF\x00\x00\x00\x00WAVEjunk' + os.urandom(100))
    with self.assertRaisesRegex(errors.AudioError, 'corrupt.wav'):
      audio.load_audio(corrupt)
    empty = os.path.join(self.dir, 'empty.wav')
    soundfile.write(empty, np.zeros(0, np.float32), SR)
    with self.assertRaisesRegex(errors.AudioError, 'empty.wav.*zero-length'):
      audio.load_audio(empty)
    with self.assertRaisesRegex(errors.AudioError, 'zero-length'):
      audio.check_audio(empty)


@needs_audio_extra
@needs_librispeech
class DiarizeTest(absltest.TestCase):
  """Real speech through VAD, encoder, decoder and uisrnn-diarize."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    import soundfile

    cls.dir = tempfile.mkdtemp(prefix='diarize_test_')
    cls.addClassCleanup(shutil.rmtree, cls.dir, ignore_errors=True)
    cls.wav, cls.reference = librispeech_conversation()
    cls.duration = len(cls.wav) / SR
    # Stored at 22.05 kHz in stereo: resampling and downmix on the way in.
    import soxr

    wav22 = soxr.resample(cls.wav, SR, 22050)
    cls.wav_path = os.path.join(cls.dir, 'two voices.wav')
    soundfile.write(cls.wav_path, np.stack([wav22, wav22], 1), 22050)
    cls.silent_path = os.path.join(cls.dir, 'silent.flac')
    noise = np.random.default_rng(0).normal(0, 1e-4, 3 * SR)
    soundfile.write(cls.silent_path, noise.astype(np.float32), SR)
    cls.workdir = os.path.join(cls.dir, 'audio_run')
    tiny_checkpoint(cls.workdir)
    cls.embedded = audio.embed_audio(cls.wav)
    cls.ref_path = os.path.join(cls.dir, 'ref.rttm')
    with open(cls.ref_path, 'w') as f:
      f.write(rttm.turns_text('two_voices', cls.reference))
      f.write(rttm.turns_text('other_file', ([0.0], [1.0], ['Z'])))
    cls.uem_path = os.path.join(cls.dir, 'ref.uem')
    with open(cls.uem_path, 'w') as f:
      f.write(f'two_voices 1 0 {cls.duration}\nsilent 1 0 3\n')

  def test_speech_regions_find_the_silence(self):
    speech = self.embedded.speech
    self.assertGreaterEqual(len(speech), 1)
    # The 2 s of digital silence [6, 8) is not speech; at least 5 of the 9 s
    # of read speech (which has its own pauses) is.
    inside = np.clip(
      np.minimum(speech[:, 1], 7.8) - np.maximum(speech[:, 0], 6.2), 0, None
    )
    self.assertEqual(float(inside.sum()), 0.0)
    self.assertGreater(float(np.sum(speech[:, 1] - speech[:, 0])), 5.0)

  def test_windows_never_straddle_the_silence(self):
    e = self.embedded
    self.assertEqual(e.embeddings.shape[1], 256)
    np.testing.assert_allclose(np.linalg.norm(e.embeddings, axis=1), 1, 1e-5)
    straddle = (e.starts < 6.5) & (e.ends > 7.5)
    self.assertFalse(np.any(straddle))
    for r, (a, b) in enumerate(e.regions):
      mine = e.region == r
      self.assertTrue(np.all(e.starts[mine] >= a - 1e-9))
      self.assertTrue(np.all(e.ends[mine] <= b + 1e-9))

  def test_embeddings_separate_the_two_speakers(self):
    e = self.embedded
    centres = (e.starts + e.ends) / 2
    first_a = e.embeddings[centres < 2.5].mean(0)
    b = e.embeddings[(centres > 3.5) & (centres < 5.5)].mean(0)
    second_a = e.embeddings[centres > 8.5].mean(0)
    cos = lambda x, y: x @ y / np.linalg.norm(x) / np.linalg.norm(y)  # noqa: E731
    self.assertGreater(cos(first_a, second_a), cos(first_a, b) + 0.1)

  def test_diarize_returns_an_annotation_in_original_time(self):
    timings = {}
    annotation = audio.diarize(self.wav_path, self.workdir, timings=timings)
    self.assertEqual(annotation.uri, 'two_voices')
    self.assertEqual(set(timings), {'load', 'vad', 'encoder', 'decode'})
    segments = list(annotation.itersegments())
    self.assertNotEmpty(segments)
    self.assertFalse(any(s.start < 7.5 and s.end > 6.5 for s in segments))
    self.assertLessEqual(segments[-1].end, self.duration + 1e-3)
    self.assertTrue(
      all(label.startswith('spk') for label in annotation.labels())
    )

  def test_cli_writes_per_file_rttm_and_scores(self):
    out = os.path.join(self.create_tempdir().full_path, 'out')
    report = os.path.join(self.dir, 'report.json')
    status = audio.main(
      [
        self.wav_path,
        self.silent_path,
        f'--workdir={self.workdir}',
        f'--output={out}',
        f'--reference={self.ref_path}',
        f'--uem={self.uem_path}',
        f'--report={report}',
      ]
    )
    self.assertEqual(status, 0)
    self.assertEqual(
      sorted(os.listdir(out)), ['silent.rttm', 'two_voices.rttm']
    )
    with open(os.path.join(out, 'silent.rttm')) as f:
      self.assertEqual(f.read(), '')  # no speech: empty, not an error
    turns = rttm.read_rttm(os.path.join(out, 'two_voices.rttm'))
    self.assertEqual(list(turns), ['two_voices'])
    with open(report) as f:
      scores = json.load(f)
    self.assertEqual(
      [r['name'] for r in scores['rows']], ['two_voices', 'silent']
    )
    row = scores['rows'][0]
    # 9 s of reference speech less the +-0.25 s collars inside it:
    # [0, .25], [2.75, 3.25], [5.75, 6], [8, 8.25],
    # [10.75, 11] = 1.5 s. DER parts add up; JER in [0, 1].
    self.assertAlmostEqual(row['scored'], 9.0 - 1.5, places=3)
    self.assertAlmostEqual(
      row['der'] * row['scored'],
      row['missed'] + row['false_alarm'] + row['confusion'],
      places=6,
    )
    self.assertBetween(row['jer'], 0.0, 1.0)

  def test_speaker_count(self):
    # The untrained model over-counts (see the CLI test); the count options
    # act inside the beam search.
    model = audio.load_model(self.workdir)
    free = audio.diarize(self.wav_path, model)
    self.assertGreater(len(free.labels()), 2)
    for kw, count in (({'num_speakers': 2}, 2), ({'max_speakers': 1}, 1)):
      with self.subTest(**kw):
        annotation = audio.diarize(self.wav_path, self.workdir, **kw)
        self.assertLen(annotation.labels(), count)
    status = audio.main(
      [self.wav_path, f'--workdir={self.workdir}', '--min_speakers=3',
       '--max_speakers=2']
    )  # fmt: skip
    self.assertEqual(status, 1)

  def test_decode_overrides_reach_the_decoder_config(self):
    # --beam_size and --count_search; count_search is newer than some runs'
    # stored configs, so the override adds the field.
    model = audio.load_model(
      self.workdir, decode_overrides={'beam_size': 3, 'count_search': 1}
    )
    self.assertEqual(model.decode_config.beam_size, 3)
    self.assertEqual(model.decode_config.count_search, 1)

  def test_no_speech_warns(self):
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter('always')
      annotation = audio.diarize(self.silent_path, self.workdir)
    self.assertEmpty(annotation)
    self.assertTrue(any('no speech' in str(w.message) for w in caught))

  def test_bad_inputs_fail_before_anything_is_written(self):
    out = self.create_tempdir().full_path
    corrupt = os.path.join(self.dir, 'corrupt.wav')
    with open(corrupt, 'wb') as f:
      f.write(b'not audio at all')
    for argv in (
      [self.wav_path, os.path.join(self.dir, 'missing.wav')],
      [self.wav_path, corrupt],
      [self.wav_path, f'--reference={self.wav_path}'],  # not an RTTM
      [self.wav_path, '--report=r.txt', f'--reference={self.ref_path}'],
      [self.silent_path, f'--reference={self.ref_path}'],  # silent not in it
    ):
      with self.subTest(argv=argv[1:]):
        status = audio.main(
          argv + [f'--workdir={self.workdir}', f'--output={out}']
        )
        self.assertEqual(status, 1)
        self.assertEmpty(os.listdir(out))


@needs_audio_extra
@pytest.mark.skipif(not os.path.isdir(AMI), reason=f'no AMI excerpts at {AMI}')
class AmiSpeechDetectionTest(absltest.TestCase):
  """silero-vad on a real meeting: most reference speech is found."""

  def test_dev01_speech_matches_the_reference(self):
    wav = audio.load_audio(os.path.join(AMI, 'dev01.wav'))
    speech = audio.speech_regions(wav)
    ref = rttm.read_rttm(os.path.join(AMI, 'development.rttm'))['dev01']
    grid = np.arange(0, 30, 0.01) + 0.005
    in_ref = np.any((grid[:, None] >= ref[0]) & (grid[:, None] < ref[1]), 1)
    in_hyp = np.any(
      (grid[:, None] >= speech[:, 0]) & (grid[:, None] < speech[:, 1]), 1
    )
    # dev01 is about half speech; detection agrees on >= 85 % of the time.
    self.assertGreater(np.mean(in_ref == in_hyp), 0.85)


if __name__ == '__main__':
  absltest.main()
