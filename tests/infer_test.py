"""infer.py: predictions file, RTTM, DER report, plot, many input files."""

import os
import re

import jax
import numpy as np
import pytest
from absl.testing import absltest
from jax_testing import run_python

from configs import toy
from uisrnn_jax import checkpoint, errors, evals, experiment, rttm, train
from uisrnn_jax import dataset as dataset_lib

DIM = 4


def _write_checkpoint(workdir):
  """An untrained tiny model with given priors: enough to exercise infer."""
  config = toy.get_config()
  config.model.observation_dim = DIM
  config.model.rnn_hidden_size = 8
  state = train.create_train_state(jax.random.key(0), config)
  state = state.replace(
    transition_bias=np.float32(0.2), crp_alpha=np.float32(1.0)
  )
  checkpoint.save_checkpoint(workdir, state, config)


def _conversation(rng, speakers, ids):
  """Rows every 0.4 s over 1.6 s windows, with exact turns."""
  labels = np.repeat(np.array(speakers), 3)
  n = len(labels)
  starts = np.arange(n) * 0.4
  ends = np.minimum(starts + 1.6, n * 0.4 + 0.2)
  means = {s: rng.normal(size=DIM) for s in ids}
  emb = np.stack([means[s] for s in labels]) + 0.05 * rng.normal(size=(n, DIM))
  change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
  turn_starts = np.concatenate([[0.0], change * 0.4 + 0.4])
  turn_ends = np.concatenate([turn_starts[1:], [ends[-1]]])
  turn_speakers = labels[np.concatenate([[0], change])]
  return emb, labels, starts, ends, (turn_starts, turn_ends, turn_speakers)


def _write_npz(path, convs, with_turns=True):
  rng = np.random.default_rng(len(path))
  parts = [_conversation(rng, c, sorted(set(c))) for c in convs]
  offsets = np.concatenate([[0], np.cumsum([len(p[1]) for p in parts])])
  arrays = dict(
    embeddings=np.concatenate([p[0] for p in parts]).astype(np.float32),
    labels=np.concatenate([p[1] for p in parts]),
    starts=np.concatenate([p[2] for p in parts]).astype(np.float32),
    ends=np.concatenate([p[3] for p in parts]).astype(np.float32),
    offsets=offsets,
    conversation_ids=np.array(
      [f'{os.path.basename(path)[:-4]}_{i}' for i in range(len(convs))]
    ),
  )
  if with_turns:
    t = [p[4] for p in parts]
    arrays.update(
      turn_offsets=np.concatenate([[0], np.cumsum([len(x[0]) for x in t])]),
      turn_starts=np.concatenate([x[0] for x in t]).astype(np.float32),
      turn_ends=np.concatenate([x[1] for x in t]).astype(np.float32),
      turn_speakers=np.concatenate([x[2] for x in t]),
    )
  np.savez(path, **arrays)
  return path


def _run_infer(workdir, *args):
  return run_python(
    'infer.py',
    '--config=configs/toy.py',
    f'--workdir={workdir}',
    '--config.decode.beam_size=2',
    *args,
  )


class _RunTestCase(absltest.TestCase):
  """A temporary directory ``self.dir`` with a run in ``self.workdir``."""

  def setUp(self):
    super().setUp()
    self.dir = self.create_tempdir().full_path
    self.workdir = os.path.join(self.dir, 'run')
    _write_checkpoint(self.workdir)


class InferScriptTest(_RunTestCase):
  def setUp(self):
    super().setUp()
    self.inputs = os.path.join(self.dir, 'inputs')
    os.makedirs(self.inputs)
    self.a = _write_npz(
      os.path.join(self.inputs, 'a.npz'),
      [['x', 'y', 'x', 'z'], ['u', 'v', 'u']],
    )
    self.b = _write_npz(
      os.path.join(self.inputs, 'b.npz'), [['p', 'q', 'q']], with_turns=False
    )

  def test_single_file_predictions_rttm_report_and_plot(self):
    pytest.importorskip('pyannote.metrics', reason='DER needs pyannote')
    pytest.importorskip('matplotlib', reason='--plot needs matplotlib')
    out = os.path.join(self.dir, 'pred.npz')
    png = os.path.join(self.dir, 'timeline.png')
    proc = _run_infer(
      self.workdir,
      f'--input={self.a}',
      f'--output={out}',
      f'--plot={png}',
      '--plot_index=1',
    )
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    data = dataset_lib.load_npz(self.a)
    with np.load(out, allow_pickle=False) as z:
      predicted, offsets = z['predicted'], z['offsets']
    self.assertEqual(predicted.dtype, np.int32)
    np.testing.assert_array_equal(offsets, [0, 12, 21])
    pieces = np.split(predicted, offsets[1:-1])
    for labels in pieces:  # restart at 0, numbered by first appearance
      np.testing.assert_array_equal(labels, evals.renumber_labels(labels))
    # The printed totals are evaluation.evaluate's on the written labels.
    from uisrnn_jax import evaluation

    report = evaluation.evaluate(data, pieces, collar=0.25)
    stdout = proc.stdout
    self.assertIn(f'DER: {report.der:.4f}', stdout)
    self.assertIn(f'JER: {report.jer:.4f}', stdout)
    self.assertIn(f'accuracy: {report.accuracy:.4f} over 2 sequences', stdout)
    self.assertIn(
      f'speaker-count error: {report.speaker_count_error:.3f}', stdout
    )
    self.assertLen(re.findall(r'^a_[01] ', stdout, re.M), 2)  # table rows
    # RTTM: turns of each conversation tile [0, last window end].
    with open(os.path.join(self.dir, 'pred.rttm')) as f:
      turns = rttm.parse_rttm(f.read())
    self.assertEqual(sorted(turns), ['a_0', 'a_1'])
    for c, name in enumerate(['a_0', 'a_1']):
      onsets, offsets_, _ = turns[name]
      self.assertAlmostEqual(onsets[0], 0.0)
      np.testing.assert_allclose(onsets[1:], offsets_[:-1], atol=2e-3)
      self.assertAlmostEqual(offsets_[-1], data.ends[c][-1], places=3)
    self.assertIn('wrote timeline of a_1', stdout)
    with open(png, 'rb') as f:
      self.assertEqual(f.read(4), b'\x89PNG')

  def test_directory_streams_files_into_output_directory(self):
    outdir = os.path.join(self.dir, 'preds')
    proc = _run_infer(
      self.workdir, f'--input={self.inputs}', f'--output={outdir}'
    )
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertEqual(
      sorted(os.listdir(outdir)), ['a.npz', 'a.rttm', 'b.npz', 'b.rttm']
    )
    for name, rows in (('a.npz', 21), ('b.npz', 9)):
      with np.load(os.path.join(outdir, name), allow_pickle=False) as z:
        self.assertLen(z['predicted'], rows)
        self.assertEqual(z['offsets'][-1], rows)
    self.assertIn('accuracy:', proc.stdout)
    self.assertIn('over 3 sequences', proc.stdout)  # totals over both files
    self.assertIn('decoding files', proc.stderr)  # the progress bar
    self.assertIn('3/3', proc.stderr)


class InputFilesTest(absltest.TestCase):
  def test_directory_list_and_errors(self):
    d = self.create_tempdir()
    for name in ('b.npz', 'a.npz', 'notes.txt'):
      d.create_file(name, 'x')
    a, b = (
      os.path.join(d.full_path, 'a.npz'),
      os.path.join(d.full_path, 'b.npz'),
    )
    self.assertEqual(dataset_lib.input_files(d.full_path), [a, b])
    self.assertEqual(dataset_lib.input_files(f'{b}, {a}'), [b, a])
    self.assertEqual(dataset_lib.input_files(a), [a])
    with self.assertRaisesRegex(errors.InputFileNotFoundError, 'missing.npz'):
      dataset_lib.input_files(f'{a},{d.full_path}/missing.npz')
    empty = self.create_tempdir().full_path
    with self.assertRaisesRegex(errors.InputFileNotFoundError, 'no .npz'):
      dataset_lib.input_files(empty)

  def test_bad_file_raises_before_anything_is_decoded(self):
    d = self.create_tempdir().full_path
    good = _write_npz(os.path.join(d, 'good.npz'), [['x', 'y']])
    bad = os.path.join(d, 'bad.npz')
    np.savez(bad, embeddings=np.zeros((3, DIM), np.float32))  # no offsets
    workdir = os.path.join(d, 'run')
    _write_checkpoint(workdir)
    state, config = checkpoint.load_inference_state(workdir)
    stream = experiment.iter_decoded(state, [good, bad], config.decode)
    with self.assertRaisesRegex(errors.DataFormatError, 'offsets'):
      next(stream)


class InferTest(_RunTestCase):
  """`experiment.infer`, the library side of infer.py."""

  def setUp(self):
    super().setUp()
    self.config = toy.get_config()
    self.config.decode.beam_size = 2
    self.a = _write_npz(os.path.join(self.dir, 'a.npz'), [['x', 'y', 'x']])

  def test_results_and_callback(self):
    calls = []
    out = os.path.join(self.dir, 'pred.json')
    result = experiment.infer(
      self.config,
      self.workdir,
      inputs=self.a,
      output=out,
      on_file=lambda result, file: calls.append((result.many, file.path)),
    )
    self.assertEqual(calls, [(False, self.a)])
    (file,) = result.files
    self.assertEqual(
      (file.path, file.output, file.num_sequences), (self.a, out, 1)
    )
    self.assertTrue(os.path.exists(out))
    if file.report is None:  # no pyannote.metrics: accuracies instead
      self.assertLen(result.accuracies, 1)
    else:
      self.assertIs(result.report.rows[0], file.report.rows[0])

  def test_bad_arguments_fail_before_anything_is_written(self):
    other = os.path.join(self.dir, 'other')
    os.makedirs(other)
    same_name = _write_npz(os.path.join(other, 'a.npz'), [['x', 'y']])
    for kwargs, message in (
      (dict(plot='t.png', plot_index=-1), 'plot_index must be >= 0'),
      (dict(plot='t.png', plot_index=1), 'inputs hold 1 conversations'),
      (
        dict(inputs=f'{self.a},{same_name}', output='out/'),
        'would collide',
      ),
      (dict(inputs=self.dir, output=self.dir), 'would overwrite input'),
    ):
      with self.subTest(message):
        kwargs = {'inputs': self.a, **kwargs}
        if 'plot' in kwargs:
          kwargs['plot'] = os.path.join(self.dir, kwargs['plot'])
        before = sorted(os.listdir(self.dir))
        with self.assertRaisesRegex(errors.ArgumentError, message):
          experiment.infer(self.config, self.workdir, **kwargs)
        self.assertEqual(sorted(os.listdir(self.dir)), before)
    config = toy.get_config()
    config.model.observation_dim = DIM
    config.data.train_path = self.a
    with self.assertRaisesRegex(errors.ConfigError, 'nothing to decode'):
      experiment.infer(config, self.workdir)


if __name__ == '__main__':
  absltest.main()
