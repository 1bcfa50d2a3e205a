"""uisrnn_jax.simulate: conversations from single-speaker audio.

Most tests make their own speakers (sine tones of distinct frequencies,
written as WAV files); one runs on ``librispeech-samples`` and is skipped,
with the reason, when that data is absent.
"""

import contextlib
import io
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from absl.testing import absltest, parameterized

from uisrnn_jax import errors, experiment, simulate

SR = simulate.SAMPLE_RATE
LIBRISPEECH = os.path.join(
  os.path.dirname(__file__), '..', '..', 'shared', 'data', 'librispeech-samples'
)
if not os.path.isdir(LIBRISPEECH):
  LIBRISPEECH = '/work/shared/data/librispeech-samples'


def _tone(freq, seconds, phase=0.0):
  t = np.arange(int(round(seconds * SR))) / SR
  return (0.3 * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def _write(path, wav, rate=SR):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  soundfile.write(path, wav, rate, subtype='FLOAT')


class SimulateTestCase(parameterized.TestCase):
  def make_speakers(self, n=4, seconds=8.0):
    """Speakers 0..n-1: even ones as SPEAKER-* files in the root, odd ones
    as a subdirectory of two files each. Returns (root, {speaker: audio})."""
    root = self.create_tempdir().full_path
    audio = {}
    for i in range(n):
      freq = 200.0 + 110.0 * i
      if i % 2 == 0:
        wav = _tone(freq, seconds)
        _write(os.path.join(root, f'{i}-100-0000.wav'), wav)
      else:
        a, b = _tone(freq, seconds / 2), _tone(freq, seconds / 2, phase=1.0)
        _write(os.path.join(root, str(i), f'{i}-7-0000.wav'), a)
        _write(os.path.join(root, str(i), f'{i}-7-0001.wav'), b)
        wav = np.concatenate([a, b])
      audio[str(i)] = wav
    return root, audio

  def run_simulate(self, root, output=None, **kw):
    options = kw.pop('options', None) or simulate.Options(
      **kw.pop('option_values', {})
    )
    output = output or os.path.join(self.create_tempdir().full_path, 'out')
    kw.setdefault('seed', 0)
    kw.setdefault('num_conversations', 3)
    kw.setdefault('progress', False)
    conversations = simulate.simulate([root], output, options=options, **kw)
    return output, conversations


def _manifest(output):
  with open(os.path.join(output, simulate.MANIFEST)) as f:
    return [json.loads(line) for line in f]


def _rttm(output, entry):
  with open(os.path.join(output, entry['rttm_filepath'])) as f:
    return experiment.parse_rttm(f.read())[entry['uri']]


SHORT = dict(duration='uniform:12,16', turn_length='uniform:0.5,2')


class SourcesTest(SimulateTestCase):
  def test_speakers_from_file_names_and_subdirectories(self):
    root, audio = self.make_speakers(4)
    found = simulate.find_speakers([root])
    self.assertEqual(sorted(found), ['0', '1', '2', '3'])
    _write(os.path.join(root, 'a.b-1.wav'), _tone(100.0, 0.5))
    _write(os.path.join(root, 'solo.wav'), _tone(100.0, 0.5))
    _write(os.path.join(root, '.hidden', 'x-1.wav'), _tone(100.0, 0.5))
    found = simulate.find_speakers([root])
    self.assertEqual(sorted(found), ['0', '1', '2', '3', 'a.b', 'solo'])
    found = simulate.find_speakers([os.path.join(root, 'a.b-1.wav')])
    self.assertEqual(list(found), ['a.b'])
    for name in ('a.b-1.wav', 'solo.wav'):
      os.remove(os.path.join(root, name))
    found = simulate.find_speakers([root])
    self.assertLen(found['0'], 1)
    self.assertLen(found['1'], 2)
    sources = simulate.load_sources([root], simulate.Options(level_dbfs=None))
    for name, wav in audio.items():
      np.testing.assert_array_equal(sources.audio(name), wav)

  def test_resamples_and_downmixes(self):
    root = self.create_tempdir().full_path
    tone = _tone(300.0, 1.0)
    stereo = np.stack([tone, tone], axis=1)
    t = np.arange(8000) / 8000
    _write(os.path.join(root, 's-1.wav'), stereo)
    _write(
      os.path.join(root, 'r-1.wav'),
      (0.3 * np.sin(2 * np.pi * 300.0 * t)).astype(np.float32),
      rate=8000,
    )
    np.testing.assert_allclose(
      simulate.read_audio(os.path.join(root, 's-1.wav')), tone, atol=1e-7
    )
    resampled = simulate.read_audio(os.path.join(root, 'r-1.wav'))
    self.assertLen(resampled, SR)
    np.testing.assert_allclose(resampled[100:-100], tone[100:-100], atol=2e-3)

  def test_level(self):
    wav = simulate.set_level(_tone(300.0, 1.0), -30.0)
    rms_db = 10 * np.log10(np.mean(np.square(wav.astype(np.float64))))
    self.assertAlmostEqual(rms_db, -30.0, places=4)

  @parameterized.parameters(0.9, 1.1, 0.8, 1.25)
  def test_speed_perturbation_scales_duration_and_pitch(self, factor):
    freq, n = 400.0, 2 * SR
    out = simulate.perturb_speed(_tone(freq, n / SR), factor)
    self.assertLen(out, math.ceil(n / factor))
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    peak = np.argmax(spectrum) * SR / len(out)
    self.assertAlmostEqual(peak, freq * factor, delta=SR / len(out))

  def test_pseudo_speakers(self):
    root, audio = self.make_speakers(4)
    options = simulate.Options(speed_factors='0.9,1.0,1.1', level_dbfs=None)
    sources = simulate.load_sources([root], options)
    self.assertLen(sources.lengths, 12)
    for name, wav in audio.items():
      for f in (0.9, 1.1):
        n = math.ceil(len(wav) / f)
        self.assertLen(sources.audio(f'{name}@{f}'), n)
        self.assertEqual(sources.lengths[f'{name}@{f}'], n)
      np.testing.assert_array_equal(sources.audio(name), wav)
      self.assertEqual(sources.base[f'{name}@1.1'], name)
      self.assertEqual(sources.factor[f'{name}@1.1'], 1.1)


class SimulationTest(SimulateTestCase):
  def test_deterministic_by_seed(self):
    root, _ = self.make_speakers(4)
    values = dict(SHORT, pause='uniform:0,0.5', overlap_probability=0.3)
    a, _ = self.run_simulate(root, option_values=values)
    b, _ = self.run_simulate(root, option_values=values)
    c, _ = self.run_simulate(root, option_values=values, seed=1)
    names = sorted(os.listdir(a))
    self.assertEqual(names, sorted(os.listdir(b)))
    self.assertIn('sim_0002.wav', names)
    for name in names:
      with (
        open(os.path.join(a, name), 'rb') as f,
        open(os.path.join(b, name), 'rb') as g,
      ):
        self.assertEqual(f.read(), g.read(), name)
    with (
      open(os.path.join(a, 'sim_0000.rttm')) as f,
      open(os.path.join(c, 'sim_0000.rttm')) as g,
    ):
      self.assertNotEqual(f.read(), g.read())
    # Conversation i does not depend on how many are made.
    d, _ = self.run_simulate(root, option_values=values, num_conversations=2)
    for name in ('sim_0000.wav', 'sim_0001.rttm'):
      with (
        open(os.path.join(a, name), 'rb') as f,
        open(os.path.join(d, name), 'rb') as g,
      ):
        self.assertEqual(f.read(), g.read(), name)

  @parameterized.named_parameters(
    ('butt_joined', 'constant:0', 0.0),
    ('pauses', 'constant:0.25', 0.0),
    ('overlaps', 'constant:0.25', 0.5),
  )
  def test_rttm_matches_audio(self, pause, overlap_probability):
    """The mix is rebuilt sample by sample from the source files at the
    RTTM's times; pauses and overlaps are as configured."""
    root, audio = self.make_speakers(4)
    values = dict(
      SHORT,
      pause=pause,
      overlap_probability=overlap_probability,
      overlap_length='constant:0.3',
      fade=0.0,
      level_dbfs=None,
    )
    output, conversations = self.run_simulate(
      root, option_values=values, num_conversations=4
    )
    gaps, shortened = [], []
    for conversation, entry in zip(conversations, _manifest(output)):
      onsets, offsets, speakers = _rttm(output, entry)
      turns = entry['turns']
      self.assertEqual(speakers, ['spk' + t['speaker'] for t in turns])
      np.testing.assert_allclose(onsets, [t['onset'] for t in turns])
      np.testing.assert_allclose(
        offsets - onsets, [t['duration'] for t in turns], atol=1e-9
      )
      wav, rate = soundfile.read(
        os.path.join(output, entry['audio_filepath']), dtype='float32'
      )
      self.assertEqual(rate, SR)
      self.assertEqual(wav.ndim, 1)
      self.assertEqual(len(wav), round(offsets.max() * SR))
      expected = np.zeros(len(wav), np.float32)
      for onset, offset, t in zip(onsets, offsets, turns):
        a, b = round(onset * SR), round(offset * SR)
        start = t['source_start']
        expected[a:b] += audio[t['speaker']][start : start + b - a]
      self.assertEqual(entry['gain'], 1.0)
      np.testing.assert_allclose(wav, expected, atol=1.0 / 2**14)
      # Speakers: each one of the conversation's speaks, never twice in a row.
      self.assertEqual(set(t['speaker'] for t in turns), set(entry['speakers']))
      self.assertTrue(all(a != b for a, b in zip(speakers, speakers[1:])))
      self.assertEqual(entry['num_speakers'], len(conversation.speakers))
      gaps += list(onsets[1:] - offsets[:-1])
      self.assertTrue(np.all(onsets[2:] >= offsets[:-2] - 1e-9))  # <= 2 talk
      # A pause is only shortened to let a speaker who has not spoken yet in
      # before the end.
      first = max(speakers.index(s) for s in set(speakers))
      shortened += [i + 1 <= first for i in range(len(turns) - 1)]
    with open(os.path.join(output, 'reference.rttm')) as f:
      corpus = experiment.parse_rttm(f.read())
    self.assertEqual(sorted(corpus), [c.id for c in conversations])
    for entry in _manifest(output):
      for a, b in zip(corpus[entry['uri']], _rttm(output, entry)):
        np.testing.assert_array_equal(a, b)
    gaps, shortened = np.round(np.array(gaps), 3), np.array(shortened)
    pause_s = simulate.Distribution.parse(pause).mean
    pauses = gaps[gaps >= 0]
    if overlap_probability == 0:
      self.assertLen(pauses, len(gaps))
    else:
      overlaps = gaps[gaps < 0]
      self.assertGreater(len(overlaps), 3)
      self.assertTrue(np.all(overlaps >= -0.3))
      self.assertGreater(np.mean(overlaps == -0.3), 0.8)
    exact = gaps == pause_s
    self.assertGreater(np.mean(exact[gaps >= 0]), 0.8)
    self.assertTrue(np.all(pauses <= pause_s))
    self.assertTrue(np.all(shortened[(gaps >= 0) & ~exact]))

  def test_fade(self):
    root, audio = self.make_speakers(2)
    values = dict(SHORT, fade=0.005, level_dbfs=None, num_speakers=2)
    output, conversations = self.run_simulate(
      root, option_values=values, num_conversations=1
    )
    wav, _ = soundfile.read(
      os.path.join(output, 'sim_0000.wav'), dtype='float32'
    )
    t = conversations[0].turns[1]
    chunk = audio[t.speaker][t.source_start : t.source_start + t.length]
    ramp = np.arange(1, 81) / 81
    got = wav[t.onset : t.end]
    np.testing.assert_allclose(got[:80], chunk[:80] * ramp, atol=1e-4)
    np.testing.assert_allclose(got[80:-80], chunk[80:-80], atol=1e-4)
    np.testing.assert_allclose(got[-80:], chunk[-80:] * ramp[::-1], atol=1e-4)

  def test_speed_perturbed_conversations(self):
    root, audio = self.make_speakers(4)
    values = dict(SHORT, speed_factors='0.9,1.1', level_dbfs=None, fade=0.0)
    output, conversations = self.run_simulate(
      root, option_values=values, num_conversations=4
    )
    seen = set()
    for entry in _manifest(output):
      bases = [s.split('@')[0] for s in entry['speakers']]
      self.assertLen(set(bases), len(bases))  # never one source twice
      for t in entry['turns']:
        self.assertEqual(t['speaker'], f'{t["source"]}@{t["factor"]:g}')
        seen.add(t['factor'])
      _, _, speakers = _rttm(output, entry)
      self.assertTrue(all('@' in s for s in speakers))
    self.assertEqual(seen, {0.9, 1.1})
    # The chunk in the mix is the resampled source.
    wav, _ = soundfile.read(
      os.path.join(output, 'sim_0000.wav'), dtype='float32'
    )
    t = conversations[0].turns[0]
    base, factor = t.speaker.split('@')
    slowed = simulate.perturb_speed(audio[base], float(factor))
    chunk = slowed[t.source_start : t.source_start + t.length]
    np.testing.assert_allclose(wav[t.onset : t.end], chunk, atol=1.0 / 2**14)

  def test_same_source(self):
    root, _ = self.make_speakers(2)
    values = dict(SHORT, speed_factors='0.9,1.1', num_speakers=3)
    with self.assertRaisesRegex(errors.ConfigError, 'needs 3 speakers'):
      self.run_simulate(root, option_values=values)
    values['same_source'] = True
    output, conversations = self.run_simulate(root, option_values=values)
    self.assertTrue(all(len(c.speakers) == 3 for c in conversations))


class LibriSimPresetTest(SimulateTestCase):
  """The preset's plans have the statistics its parameters imply."""

  def test_statistics(self):
    options = simulate.Options(**simulate.PRESETS['librisim'])
    lengths = {f's{i}': 120 * SR for i in range(20)}  # no source is too short
    base = {s: s for s in lengths}
    conversations = simulate.plan(
      lengths, base, options, seed=0, num_conversations=600
    )
    ks = np.array([len(c.speakers) for c in conversations])
    for k in (2, 3, 4):  # U{2, 3, 4}: share 1/3 each, sd 0.019
      self.assertAlmostEqual(np.mean(ks == k), 1 / 3, delta=0.06)
    inner, last = [], []
    for c in conversations:
      onsets = np.array([t.onset for t in c.turns])
      ends = np.array([t.end for t in c.turns])
      np.testing.assert_array_equal(onsets[1:], ends[:-1])  # butt-joined
      self.assertEqual(onsets[0], 0)
      self.assertEqual(c.num_samples, ends[-1])
      self.assertBetween(c.num_samples / SR, 30.0, 90.0)
      speakers = [t.speaker for t in c.turns]
      self.assertEqual(set(speakers), set(c.speakers))
      self.assertTrue(all(a != b for a, b in zip(speakers, speakers[1:])))
      first = [speakers.index(s) for s in c.speakers]
      self.assertEqual(first, sorted(first))  # entry order
      self.assertEqual(first[:2], [0, 1])
      # Speakers 3.. enter by 0.6 L <= 54 s, at the next free boundary (one
      # 6 s turn later per speaker entering at the same time).
      for i in range(2, len(c.speakers)):
        self.assertLessEqual(c.turns[first[i]].onset / SR, 54.0 + 6 * (i - 1))
      lengths_s = np.array([t.length for t in c.turns]) / SR
      inner += list(lengths_s[:-1])
      last.append(lengths_s[-1])
    inner = np.array(inner)
    self.assertBetween(inner.min(), 1.0, 6.0)
    self.assertLessEqual(inner.max(), 6.0)
    # U(1, 6): mean 3.5, sd 5 / sqrt(12); a few turns are shortened so that
    # later speakers still fit, which may only lower the mean.
    se = 5 / math.sqrt(12) / math.sqrt(len(inner))
    self.assertBetween(inner.mean(), 3.5 - 4 * se - 0.03, 3.5 + 4 * se)
    self.assertGreaterEqual(min(last), 1.0)  # stops with < 1 s left
    durations = np.array([c.num_samples for c in conversations]) / SR
    # L ~ U(31, 90) less what is left when fewer than 1 s remain: in [0, 1).
    self.assertBetween(durations.mean(), 60.5 - 1.0 - 0.8, 60.5 + 0.8)

  def test_expected_window_statistics(self):
    """One conversation of three 2 s turns: windows as in LibriSim."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
    try:
      from benchmarks import simulate_stats
    finally:
      sys.path.pop(0)
    turns = tuple(
      simulate.Turn(s, i * 2 * SR, 2 * SR, 0) for i, s in enumerate('aba')
    )
    conversation = simulate.Conversation('c', 6 * SR, ('a', 'b'), turns)
    # 6 s = 600 mel frames: windows start every 40 frames while
    # start + 160 - 40 <= 600 + 1, i.e. up to 4.8 s (covering 0.75 of a
    # window: kept), as in resemblyzer.
    slices = simulate_stats.window_slices(6 * SR)
    np.testing.assert_array_equal(slices[:, 0], np.arange(13) * 6400)
    labels = simulate_stats.window_labels(conversation)
    # Window [s, s + 1.6] is mostly b when it covers > 0.8 s of [2, 4].
    centres = np.arange(13) * 6400 + 12800  # samples
    # Ties (centre 2 s or 4 s) go to the earlier entrant, a.
    expected = np.where((centres > 2 * SR) & (centres < 4 * SR), 1, 0)
    np.testing.assert_array_equal(labels, expected)


class BadInputTest(SimulateTestCase):
  def assert_nothing_written(self, output):
    self.assertFalse(os.path.exists(output))

  def test_missing_directory(self):
    output = os.path.join(self.create_tempdir().full_path, 'out')
    with self.assertRaisesRegex(errors.InputFileNotFoundError, 'nope'):
      self.run_simulate('/nonexistent/nope', output)
    self.assert_nothing_written(output)

  def test_no_audio(self):
    root = self.create_tempdir().full_path
    with open(os.path.join(root, 'notes.txt'), 'w') as f:
      f.write('x')
    output = os.path.join(self.create_tempdir().full_path, 'out')
    with self.assertRaisesRegex(errors.DataFormatError, 'no audio files'):
      self.run_simulate(root, output)
    self.assert_nothing_written(output)

  def test_unreadable_file(self):
    root, _ = self.make_speakers(4)
    bad = os.path.join(root, '9-1-0000.flac')
    with open(bad, 'wb') as f:
      f.write(b'not audio at all' * 10)
    output = os.path.join(self.create_tempdir().full_path, 'out')
    with self.assertRaisesRegex(errors.DataFormatError, '9-1-0000.flac'):
      self.run_simulate(root, output, option_values=SHORT)
    self.assert_nothing_written(output)

  def test_too_short_speaker(self):
    root, _ = self.make_speakers(4)
    _write(os.path.join(root, '7-1-0000.wav'), _tone(300.0, 0.05))
    with self.assertRaisesRegex(errors.DataFormatError, 'speaker 7: 0.05 s'):
      self.run_simulate(root, option_values=SHORT)

  def test_silent_file(self):
    root, _ = self.make_speakers(4)
    _write(os.path.join(root, '7-1-0000.wav'), np.zeros(SR, np.float32))
    with self.assertRaisesRegex(errors.DataFormatError, 'silent'):
      self.run_simulate(root, option_values=SHORT)

  def test_too_few_speakers(self):
    root, _ = self.make_speakers(3)
    output = os.path.join(self.create_tempdir().full_path, 'out')
    with self.assertRaisesRegex(
      errors.ConfigError, 'needs 4 speakers, found 3'
    ):
      self.run_simulate(root, output, option_values=SHORT)
    self.assert_nothing_written(output)

  @parameterized.parameters('3', '2-4', '2:0.25,3:0.75', '4:1,2:1')
  def test_speaker_count_round_trip(self, text):
    count = simulate.SpeakerCount.parse(text)
    self.assertEqual(simulate.SpeakerCount.parse(str(count)), count)

  @parameterized.parameters(
    dict(pause='foo:1'),
    dict(pause='uniform:1'),
    dict(turn_length='uniform:3,1'),
    dict(turn_length='constant:0'),
    dict(pause='uniform:-1,1'),
    dict(overlap_probability=1.5),
    dict(speed_factors='0'),
    dict(speed_factors='0.9,0.9'),
    dict(speed_factors='a,b'),
    dict(num_speakers='1'),
    dict(num_speakers='2-x'),
    dict(duration='uniform:1,5'),
    dict(duration='exponential:60'),
    dict(entry_fraction=2.0),
    dict(level_dbfs=10.0),
  )
  def test_bad_options(self, **values):
    with self.assertRaises(errors.ConfigError):
      simulate.Options(**values)

  @parameterized.parameters(
    dict(seed=-1),
    dict(num_conversations=0),
    dict(prefix='a/b'),
    dict(audio_format='mp3'),
  )
  def test_bad_run_arguments(self, **kw):
    root, _ = self.make_speakers(4)
    output = os.path.join(self.create_tempdir().full_path, 'out')
    with self.assertRaises(errors.ConfigError):
      self.run_simulate(root, output, option_values=SHORT, **kw)
    self.assert_nothing_written(output)

  def test_existing_output(self):
    root, _ = self.make_speakers(4)
    output, _ = self.run_simulate(root, option_values=SHORT)
    with open(os.path.join(output, 'sim_0000.rttm'), 'rb') as f:
      before = f.read()
    with self.assertRaisesRegex(errors.ConfigError, '--overwrite'):
      self.run_simulate(root, output, option_values=SHORT, seed=5)
    with open(os.path.join(output, 'sim_0000.rttm'), 'rb') as f:
      self.assertEqual(f.read(), before)
    # Overwriting a larger corpus with a smaller one removes the rest, and
    # leftovers of an interrupted run, but nothing else.
    for name in ('.tmp_x', 'sim_0007.wav', 'notes.txt'):
      with open(os.path.join(output, name), 'w') as f:
        f.write('x')
    self.run_simulate(
      root,
      output,
      option_values=SHORT,
      seed=5,
      num_conversations=2,
      overwrite=True,
    )
    self.assertEqual(
      sorted(os.listdir(output)),
      sorted(
        [
          'manifest.jsonl',
          'simulation.json',
          'reference.rttm',
          'notes.txt',
          'sim_0000.rttm',
          'sim_0000.wav',
          'sim_0001.rttm',
          'sim_0001.wav',
        ]
      ),
    )
    self.assertLen(_manifest(output), 2)

  def test_interrupted_run_leaves_no_complete_looking_corpus(self):
    root, _ = self.make_speakers(4)
    output = os.path.join(self.create_tempdir().full_path, 'out')
    real = simulate._encode
    calls = []

    def failing(wav, audio_format):
      calls.append(1)
      if len(calls) == 2:
        raise KeyboardInterrupt
      return real(wav, audio_format)

    with absltest.mock.patch.object(simulate, '_encode', failing):
      with self.assertRaises(KeyboardInterrupt):
        self.run_simulate(root, output, option_values=SHORT)
    self.assertEqual(
      sorted(os.listdir(output)), ['sim_0000.rttm', 'sim_0000.wav']
    )


class CommandLineTest(SimulateTestCase):
  def test_main(self):
    root, _ = self.make_speakers(4)
    output = os.path.join(self.create_tempdir().full_path, 'out')
    argv = [
      root,
      f'--output={output}',
      '--num_conversations=2',
      '--seed=3',
      '--preset=librisim',
      '--duration=uniform:10,12',
      '--pause=0.1',
      '--speed_factors=0.9,1.0',
      '--fade_ms=0',
      '--level_dbfs=none',
      '--noprogress',
    ]
    self.assertEqual(simulate.main(argv), 0)
    settings = json.load(open(os.path.join(output, simulate.SETTINGS)))
    self.assertEqual(settings['seed'], 3)
    self.assertEqual(settings['options']['pause'], 'constant:0.1')
    self.assertEqual(settings['options']['turn_length'], 'uniform:1,6')
    self.assertEqual(settings['options']['num_speakers'], '2-4')
    self.assertIsNone(settings['options']['level_dbfs'])
    self.assertEqual(settings['options']['fade'], 0.0)
    self.assertLen(_manifest(output), 2)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
      self.assertEqual(simulate.main(argv), 1)  # exists
      self.assertEqual(simulate.main(argv[:1] + ['--output=x', '--pause=?']), 1)
    self.assertIn('error: --output', stderr.getvalue())
    self.assertIn('error: pause', stderr.getvalue())

  def test_python_m(self):
    result = subprocess.run(
      [
        sys.executable,
        '-m',
        'uisrnn_jax.simulate',
        '/nonexistent/dir',
        '--output=/nonexistent/out',
      ],
      capture_output=True,
      text=True,
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
      check=False,
    )
    self.assertEqual(result.returncode, 1)
    self.assertIn('error: no such source directory', result.stderr)
    self.assertNotIn('Traceback', result.stderr)


@pytest.mark.skipif(
  not os.path.isdir(os.path.join(LIBRISPEECH, 'test-other')),
  reason=f'librispeech-samples not found at {LIBRISPEECH}',
)
class RealAudioTest(SimulateTestCase):
  def test_librispeech_test_other(self):
    speakers = [
      os.path.join(LIBRISPEECH, 'test-other', s) for s in ('1688', '1998')
    ]
    output = os.path.join(self.create_tempdir().full_path, 'out')
    options = simulate.Options(
      **dict(
        simulate.PRESETS['librisim'],
        num_speakers='2',
        duration='uniform:6,8',
        speed_factors=(0.9, 1.1),
      )
    )
    conversations = simulate.simulate(
      speakers,
      output,
      options=options,
      seed=0,
      num_conversations=2,
      progress=False,
    )
    for c, entry in zip(conversations, _manifest(output)):
      info = soundfile.info(os.path.join(output, entry['audio_filepath']))
      self.assertEqual((info.samplerate, info.channels), (SR, 1))
      self.assertEqual(info.frames, c.num_samples)
      onsets, offsets, speakers_ = _rttm(output, entry)
      self.assertAlmostEqual(offsets[-1], info.frames / SR, places=6)
      self.assertTrue(all('@' in s for s in speakers_))
      self.assertEqual(
        {s.split('@')[0] for s in entry['speakers']}, {'1688', '1998'}
      )


if __name__ == '__main__':
  absltest.main()
