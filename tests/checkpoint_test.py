"""Tests of the files uisrnn_jax writes (uisrnn_jax.checkpoint).

Run checkpoints are also tested, with real crashes, in crash_resume_test.py.
"""

import argparse
import os

import jax
import numpy as np
import reference_fixtures
from absl.testing import absltest
from flax import serialization

from uisrnn_jax import checkpoint, compat, train

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


if __name__ == '__main__':
  absltest.main()
