"""Tests of uisrnn_jax.streaming: online labels equal the offline decoder's."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax_testing import compile_log

from uisrnn_jax import decode, errors, model, streaming

D, H = 4, 8


def random_params(seed):
  params = model.init_params(
    jax.random.key(seed), observation_dim=D, hidden_size=H, depth=1
  )
  params = jax.tree.map(lambda a: a * 3.0, params)
  params['sigma2'] = jnp.full((D,), 0.5, jnp.float32)
  return params


def clustered_sequence(rng, n):
  centers = rng.normal(size=(3, D)) * 2.0
  ids = rng.integers(0, 3, size=n)
  return (centers[ids] + 0.3 * rng.normal(size=(n, D))).astype(np.float32)


def settings(**kwargs):
  base = dict(beam_size=3, max_speakers=16, test_iteration=1, look_ahead=1)
  base.update(kwargs)
  return decode.DecodeSettings(**base)


def offline(params, seq, s, p0):
  config = {**s.__dict__, 'bucket': 32}
  return decode.predict_labels(
    params, seq, transition_bias=p0, crp_alpha=1.0, config=config
  )[0]


def _compiled_update(log):
  return [m for m in log if 'jit(update)' in m and 'Compiling' in m]


class StreamingTest(parameterized.TestCase):
  @parameterized.named_parameters(('look_ahead_1', 1), ('look_ahead_2', 2))
  def test_matches_offline_after_every_push(self, look_ahead):
    params = random_params(look_ahead)
    rng = np.random.default_rng(look_ahead)
    seq = clustered_sequence(rng, 26)
    s = settings(look_ahead=look_ahead)
    state = streaming.init(
      params, transition_bias=0.35, crp_alpha=1.0, config=s, capacity=32
    )
    pos = 0
    distinct = set()
    for size in (3, 0, 1, 8, 5, 7, 2):
      state, labels = streaming.push(params, state, seq[pos : pos + size])
      pos += size
      self.assertEqual(labels.shape, (pos,))
      self.assertEqual(int(streaming.num_observations(state)), pos)
      if pos:
        np.testing.assert_array_equal(
          labels, offline(params, seq[:pos], s, 0.35)
        )
        distinct.update(labels.tolist())
    self.assertGreaterEqual(len(distinct), 2)

  def test_capacity_grows_and_pushes_do_not_recompile(self):
    params = random_params(3)
    seq = clustered_sequence(np.random.default_rng(3), 24)
    s = settings()
    state = streaming.init(
      params, transition_bias=0.35, crp_alpha=1.0, config=s, capacity=1
    )
    state, _ = streaming.push(params, state, seq[:8])
    self.assertGreaterEqual(state.capacity, 9)
    with compile_log() as log:  # control: growing the buffers recompiles
      state, _ = streaming.push(params, state, seq[8:16])
    self.assertNotEmpty(_compiled_update(log))
    self.assertGreaterEqual(state.capacity, 17)
    with compile_log() as log:  # same chunk bucket, enough capacity
      state, labels = streaming.push(params, state, seq[16:21])
      state, labels = streaming.push(params, state, seq[21:])
    # Nothing at all compiles, e.g. no slice of the labels to each new
    # length (that cost ~30 ms per push at the seed's sizes).
    self.assertEmpty([m for m in log if 'Compiling' in m])
    np.testing.assert_array_equal(labels, offline(params, seq, s, 0.35))

  def test_reset_starts_over_without_recompiling(self):
    params = random_params(1)
    seq = clustered_sequence(np.random.default_rng(1), 12)
    state = streaming.init(
      params,
      transition_bias=0.35,
      crp_alpha=1.0,
      config=settings(),
      capacity=32,
    )
    state, first = streaming.push(params, state, seq[:7])
    state, first = streaming.push(params, state, seq[7:])
    with compile_log() as log:
      state = streaming.reset(state)
      self.assertEqual(int(streaming.num_observations(state)), 0)
      state, again = streaming.push(params, state, seq[:7])
      state, again = streaming.push(params, state, seq[7:])
    self.assertEmpty(_compiled_update(log))
    np.testing.assert_array_equal(again, first)

  def test_update_is_pure_and_jittable(self):
    params = random_params(2)
    seq = clustered_sequence(np.random.default_rng(2), 6)
    state = streaming.init(
      params,
      transition_bias=0.35,
      crp_alpha=1.0,
      config=settings(),
      capacity=32,
    )
    chunk = np.zeros((8, D), np.float32)
    chunk[:6] = seq
    mask = np.arange(8) < 6
    new, labels = streaming.update_jit(params, state, chunk, mask)
    again, labels2 = streaming.update_jit(params, state, chunk, mask)
    np.testing.assert_array_equal(labels, labels2)
    self.assertEqual(int(streaming.num_observations(state)), 0)  # unchanged
    self.assertEqual(int(streaming.num_observations(new)), 6)
    self.assertTrue(np.all(np.asarray(labels)[6:] == -1))

  def test_overflow_error(self):
    params = random_params(4)
    state = streaming.init(
      params,
      transition_bias=0.45,
      crp_alpha=1.0,
      config=settings(max_speakers=1),
      capacity=32,
    )
    # Two far-apart observations: a second speaker survives in the beam.
    chunk = np.array([[5.0] * D, [-5.0] * D], np.float32)
    with self.assertRaisesRegex(errors.SpeakerOverflowError, 'max_speakers=1'):
      streaming.push(params, state, chunk)

  def test_speaker_count(self):
    params = random_params(4)
    kw = dict(transition_bias=0.45, crp_alpha=1.0, capacity=32)
    # A maximum is supported: 'disallow' caps every hypothesis.
    config = decode.speaker_count_config(settings(), max_speakers=1)
    state = streaming.init(params, config=config, **kw)
    chunk = np.array([[5.0] * D, [-5.0] * D], np.float32)
    _, labels = streaming.push(params, state, chunk)
    np.testing.assert_array_equal(labels, [0, 0])
    # A minimum needs the number of observations still to come: refused.
    for count in (dict(min_speakers=2), dict(num_speakers=2)):
      config = decode.speaker_count_config(settings(), **count)
      with self.assertRaisesRegex(errors.ConfigError, 'min_speakers'):
        streaming.init(params, config=config, **kw)

  def test_validation(self):
    params = random_params(0)
    for bad, message in (
      (settings(test_iteration=2), 'test_iteration'),
      # Resegmentation needs the whole sequence.
      (settings(resegment_iterations=2), 'whole sequence'),
      (settings(count_search=1), 'count_search=0'),
    ):
      with self.assertRaisesRegex(ValueError, message):
        streaming.init(params, transition_bias=0.3, crp_alpha=1.0, config=bad)
    state = streaming.init(
      params, transition_bias=0.3, crp_alpha=1.0, config=settings()
    )
    with self.assertRaisesRegex(ValueError, r'shape \[C, 4\]'):
      streaming.push(params, state, np.zeros((2, 5)))
    with self.assertRaisesRegex(ValueError, 'NaN'):
      streaming.push(params, state, np.full((2, 4), np.nan))
    with self.assertRaisesRegex(TypeError, 'real numbers'):
      streaming.push(params, state, np.full((2, 4), 'x'))


if __name__ == '__main__':
  absltest.main()
