"""Tests of the files uisrnn_jax writes (uisrnn_jax.checkpoint).

Run checkpoints are also tested, with real crashes, in crash_resume_test.py.
"""

import argparse
import contextlib
import errno
import io
import os
import subprocess
import sys
from unittest import mock

import jax
import numpy as np
import pytest
import reference_fixtures
from absl.testing import absltest
from flax import serialization

from configs import toy
from uisrnn_jax import (
  audio,
  checkpoint,
  compat,
  errors,
  experiment,
  metric_writers,
  train,
)
from uisrnn_jax import dataset as dataset_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
# Written by UISRNN.save before model files moved to `checkpoint` (the
# reference fixture 'trained_d4_h8_l1' with step 7): files saved by earlier
# versions must keep loading.
OLD_MODEL_FILE = os.path.join(FIXTURES, 'model_file_v1_d4_h8_l1.msgpack')


def fixture_model(step: int = 0) -> checkpoint.TrainedModel:
  fixture = reference_fixtures.load('trained_d4_h8_l1')
  return checkpoint.TrainedModel(
    params=fixture.params,
    transition_bias=fixture.transition_bias,
    transition_bias_denominator=fixture.transition_bias_denominator,
    crp_alpha=fixture.crp_alpha,
    step=step,
  )


def assert_same_model(test, got, want):
  jax.tree.map(
    lambda a, b: np.testing.assert_array_equal(
      np.asarray(a), np.asarray(b, np.float32)
    ),
    got.params,
    want.params,
  )
  test.assertAlmostEqual(got.transition_bias, want.transition_bias, places=6)
  test.assertEqual(
    got.transition_bias_denominator, want.transition_bias_denominator
  )
  test.assertAlmostEqual(got.crp_alpha, want.crp_alpha, places=6)
  test.assertEqual(got.step, want.step)


class ModelFileTest(absltest.TestCase):
  def test_old_model_file_still_loads(self):
    got = checkpoint.read_model(OLD_MODEL_FILE)
    assert_same_model(self, got, fixture_model(step=7))
    self.assertEqual(
      (got.observation_dim, got.rnn_hidden_size, got.rnn_depth), (4, 8, 1)
    )
    model = compat.UISRNN(
      argparse.Namespace(
        observation_dim=4, rnn_hidden_size=8, rnn_depth=1, verbosity=1
      )
    )
    model.load(OLD_MODEL_FILE)
    self.assertEqual(int(model.state.step), 7)
    self.assertAlmostEqual(model.transition_bias, got.transition_bias)

  def test_save_writes_the_same_bytes_as_before(self):
    model = compat.UISRNN.from_reference_model(fixture_model(7), verbosity=1)
    path = os.path.join(self.create_tempdir().full_path, 'a', 'm.msgpack')
    model.save(path)
    with open(path, 'rb') as f, open(OLD_MODEL_FILE, 'rb') as g:
      self.assertEqual(f.read(), g.read())

  def test_round_trip(self):
    path = self.create_tempfile().full_path
    checkpoint.write_model(path, fixture_model(step=7))
    assert_same_model(self, checkpoint.read_model(path), fixture_model(7))

  def test_unknown_p0_round_trips_as_none(self):
    model = fixture_model()
    model = checkpoint.TrainedModel(
      params=model.params,
      transition_bias=None,
      transition_bias_denominator=0.0,
      crp_alpha=1.0,
    )
    path = self.create_tempfile().full_path
    checkpoint.write_model(path, model)
    self.assertIsNone(checkpoint.read_model(path).transition_bias)

  def test_reads_a_run_checkpoint(self):
    config = compat.default_config()
    config.model.update(observation_dim=2, rnn_hidden_size=8, rnn_depth=2)
    state = train.create_train_state(jax.random.key(5), config)
    state = state.replace(step=jax.numpy.int32(3))
    path = checkpoint.save_checkpoint(
      self.create_tempdir().full_path, state, config
    )
    got = checkpoint.read_model(path)
    self.assertEqual(got.step, 3)
    self.assertIsNone(got.transition_bias)  # NaN: not estimated yet
    self.assertEqual(got.rnn_depth, 2)

  def test_foreign_and_bad_files(self):
    foreign = self.create_tempfile(content='not msgpack at all').full_path
    self.assertIsNone(checkpoint.read_model(foreign))
    other = self.create_tempfile().full_path
    with open(other, 'wb') as f:
      f.write(serialization.msgpack_serialize({'format': 'something else'}))
    self.assertIsNone(checkpoint.read_model(other))
    newer = self.create_tempfile().full_path
    with open(newer, 'wb') as f:
      f.write(
        serialization.msgpack_serialize(
          {'format': checkpoint.MODEL_FORMAT, 'version': 99}
        )
      )
    with self.assertRaisesRegex(checkpoint.CheckpointError, 'version 99'):
      checkpoint.read_model(newer)
    broken = self.create_tempfile().full_path
    with open(broken, 'wb') as f:
      f.write(
        serialization.msgpack_serialize(
          {'format': checkpoint.MODEL_FORMAT, 'version': 1, 'model': {}}
        )
      )
    with self.assertRaisesRegex(checkpoint.CheckpointError, 'corrupted'):
      checkpoint.read_model(broken)


def _disk_full(*args, **kwargs):
  raise OSError(errno.ENOSPC, 'No space left on device')


def _files(directory):
  """``{name: bytes}`` of every file in ``directory``."""
  out = {}
  for name in sorted(os.listdir(directory)):
    with open(os.path.join(directory, name), 'rb') as f:
      out[name] = f.read()
  return out


class AtomicWriteTest(absltest.TestCase):
  def test_complete_file_with_the_usual_permissions(self):
    path = os.path.join(self.create_tempdir().full_path, 'new', 'f.bin')
    old = os.umask(0o027)
    try:
      checkpoint.atomic_write(path, b'abc')
    finally:
      os.umask(old)
    with open(path, 'rb') as f:
      self.assertEqual(f.read(), b'abc')
    self.assertEqual(os.stat(path).st_mode & 0o777, 0o640)

  def test_failure_names_the_path_and_leaves_the_old_file(self):
    directory = self.create_tempdir().full_path
    path = os.path.join(directory, 'f.bin')
    checkpoint.atomic_write(path, b'old')
    for target in ('os.replace', 'os.fsync', 'tempfile.mkstemp'):
      with self.subTest(target):
        with mock.patch(target, side_effect=_disk_full):
          with self.assertRaises(errors.OutputWriteError) as caught:
            checkpoint.atomic_write(path, b'new')
        self.assertEqual(
          str(caught.exception),
          f'cannot write {path}: No space left on device',
        )
        self.assertEqual(caught.exception.errno, errno.ENOSPC)
        self.assertIsInstance(caught.exception, OSError)
        self.assertEqual(_files(directory), {'f.bin': b'old'})

  def test_a_real_full_device(self):
    # /dev/full fails every write with ENOSPC: the JSONL metrics file.
    if not os.path.exists('/dev/full'):
      self.skipTest('no /dev/full on this system')
    path = os.path.join(self.create_tempdir().full_path, 'metrics.jsonl')
    writer = metric_writers.JsonlWriter(path)
    writer._file.close()
    writer._file = open('/dev/full', 'a', encoding='utf-8')
    with self.assertRaisesRegex(
      errors.OutputWriteError, f'cannot write {path}: No space left'
    ):
      writer.write_scalars(1, {'loss': 0.5})


class FullDiskTest(absltest.TestCase):
  """A full disk mid-run: a clear error, the earlier checkpoints intact."""

  def setUp(self):
    super().setUp()
    self.workdir = self.create_tempdir().full_path
    self.config = toy.get_config()
    self.config.model.update(observation_dim=4, rnn_hidden_size=8)
    self.config.train.update(
      train_iteration=2, checkpoint_every=1, batch_size=4, log_every=1
    )
    self.config.toy.update(num_train=4, num_test=2, length=12)

  def test_checkpoint_write_fails_in_train_and_evaluate(self):
    experiment.train_and_evaluate(self.config, self.workdir, progress=False)
    before = _files(self.workdir)
    self.assertIn('ckpt_2.msgpack', before)
    self.config.train.train_iteration = 4
    with mock.patch('os.replace', side_effect=_disk_full):
      with self.assertRaisesRegex(
        errors.OutputWriteError,
        f'cannot write {self.workdir}/ckpt_3.msgpack: No space left',
      ):
        experiment.train_and_evaluate(self.config, self.workdir, progress=False)
    after = _files(self.workdir)
    metrics = after.pop('metrics.jsonl')
    self.assertTrue(metrics.startswith(before.pop('metrics.jsonl')))
    self.assertEqual(after, before)  # no temporary file, nothing deleted

  def test_predictions_write_fails_in_infer(self):
    experiment.train_and_evaluate(self.config, self.workdir, progress=False)
    data = dataset_lib.Dataset(
      [np.ones((3, 4)), np.zeros((2, 4))],
      starts=[np.arange(3.0), np.arange(2.0)],
      ends=[np.arange(3.0) + 1, np.arange(2.0) + 1],
    )
    directory = self.create_tempdir().full_path
    dataset_lib.write_npz(os.path.join(directory, 'in.npz'), data)
    out = os.path.join(directory, 'pred.npz')
    with mock.patch('os.replace', side_effect=_disk_full):
      with self.assertRaisesRegex(
        errors.OutputWriteError, f'cannot write {out}: No space left'
      ):
        experiment.infer(
          self.config,
          self.workdir,
          inputs=os.path.join(directory, 'in.npz'),
          output=out,
        )
    self.assertEqual(os.listdir(directory), ['in.npz'])

  def test_diarize_output_write_fails(self):
    core = pytest.importorskip('pyannote.core', reason='needs pyannote.core')
    soundfile = pytest.importorskip('soundfile', reason='needs soundfile')
    directory = self.create_tempdir().full_path
    wav = os.path.join(directory, 'a.wav')
    soundfile.write(wav, np.zeros(1600, np.float32), audio.SAMPLE_RATE)
    out = os.path.join(directory, 'out.rttm')
    turns = core.Annotation(uri='a')
    turns[core.Segment(0.0, 0.1)] = 'spk0'
    stderr = io.StringIO()
    with (
      mock.patch.object(audio, 'load_model'),  # any model: diarize is mocked
      mock.patch.object(audio, 'diarize', return_value=turns),
      mock.patch('os.replace', side_effect=_disk_full),
      contextlib.redirect_stderr(stderr),
    ):
      status = audio.main([wav, f'--workdir={self.workdir}', '--output', out])
    self.assertEqual(status, 1)
    self.assertEqual(
      stderr.getvalue(), f'error: cannot write {out}: No space left on device\n'
    )


def _with_file_size_limit(limit: int, command: list[str]) -> list[str]:
  """``command`` run with files limited to ``limit`` bytes (RLIMIT_FSIZE).

  Larger writes fail with EFBIG ("File too large"): Python ignores SIGXFSZ.
  The limit is set in a Python process that then execs ``command``, so no
  code runs between a fork and an exec of this (multithreaded) process.
  """
  setup = (
    'import os, resource, sys; '
    f'resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); '
    'os.execv(sys.argv[1], sys.argv[1:])'
  )
  return [sys.executable, '-c', setup, *command]


class FileSizeLimitTest(absltest.TestCase):
  """train.py on a "disk" too small for a checkpoint (RLIMIT_FSIZE)."""

  def test_train_script_reports_the_file_and_keeps_the_checkpoints(self):
    workdir = self.create_tempdir().full_path
    flags = [
      'train.py',
      '--config=configs/toy.py',
      f'--workdir={workdir}',
      '--config.model.rnn_hidden_size=8',
      '--config.train.checkpoint_every=1',
      '--config.toy.num_train=4',
      '--config.toy.length=12',
    ]

    def run(steps, limit):
      return subprocess.run(
        _with_file_size_limit(
          limit,
          [sys.executable, *flags, f'--config.train.train_iteration={steps}'],
        ),
        cwd=REPO,
        env=dict(os.environ, JAX_PLATFORMS='cpu'),
        capture_output=True,
        text=True,
      )

    config = toy.get_config()  # the same run as the flags, in-process
    config.model.rnn_hidden_size = 8
    config.train.update(checkpoint_every=1, train_iteration=2)
    config.toy.update(num_train=4, length=12)
    experiment.train_and_evaluate(config, workdir, progress=False)
    before = _files(workdir)
    self.assertGreater(len(before['ckpt_2.msgpack']), 4096)
    self.assertLess(len(before.get('metrics.jsonl', b'')), 2048)
    second = run(4, limit=4096)
    self.assertEqual(second.returncode, 1, second.stderr[-2000:])
    self.assertIn(
      f'error: cannot write {workdir}/ckpt_3.msgpack: File too large',
      second.stderr,
    )
    self.assertNotIn('Traceback', second.stderr)
    after = _files(workdir)
    after.pop('metrics.jsonl', None)
    before.pop('metrics.jsonl', None)
    self.assertEqual(after, before)
    state, _ = checkpoint.load_inference_state(workdir)
    self.assertEqual(int(state.step), 2)


if __name__ == '__main__':
  absltest.main()
