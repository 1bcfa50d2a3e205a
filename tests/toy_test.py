"""Tests for uisrnn_jax.toy."""

import itertools
import types

import ml_collections
import numpy as np
from absl.testing import absltest, parameterized
from hypothesis import given, settings
from hypothesis import strategies as st

from uisrnn_jax import toy

SMALL = dict(
  num_sequences=6, num_speakers=4, observation_dim=8, length=30, noise=0.1
)


def _toy_config(**overrides):
  config = ml_collections.ConfigDict(
    dict(num_train=5, num_test=3, num_speakers=4, length=40, noise=0.3)
  )
  config.update(overrides)
  return config


def _turns(labels):
  """(label, run length) of every turn."""
  return [(k, len(list(g))) for k, g in itertools.groupby(labels.tolist())]


class SpeakerCentersTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ('orthonormal', 4, 16, np.sqrt(2.0)),
    ('square', 4, 2, 1.2),  # about a square: sides sqrt(2)
    ('crowded', 6, 3, 1.0),
    ('two_in_1d', 2, 1, 2.0),  # +1 and -1
  )
  def test_separation_and_norms(self, num_speakers, dim, min_distance):
    centers = toy.make_speaker_centers(
      np.random.default_rng(0), num_speakers, dim, radius=2.5
    )
    self.assertEqual(centers.shape, (num_speakers, dim))
    self.assertEqual(centers.dtype, np.float64)
    np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 2.5)
    distances = np.linalg.norm(centers[:, None] - centers[None], axis=-1)
    off_diagonal = distances[~np.eye(num_speakers, dtype=bool)]
    self.assertGreaterEqual(off_diagonal.min(), 2.5 * min_distance - 1e-9)

  def test_deterministic(self):
    a = toy.make_speaker_centers(np.random.default_rng(3), 5, 4)
    b = toy.make_speaker_centers(np.random.default_rng(3), 5, 4)
    np.testing.assert_array_equal(a, b)

  def test_errors(self):
    rng = np.random.default_rng(0)
    with self.assertRaises(ValueError):
      toy.make_speaker_centers(rng, 0, 4)
    with self.assertRaises(ValueError):
      toy.make_speaker_centers(rng, 2, 4, radius=0.0)
    with self.assertRaises(TypeError):
      toy.make_speaker_centers(rng, 2.0, 4)


class MakeToyDatasetTest(parameterized.TestCase):
  def test_shapes_and_types(self):
    seqs, ids = toy.make_toy_dataset(np.random.default_rng(0), **SMALL)
    self.assertLen(seqs, 6)
    self.assertLen(ids, 6)
    for x, y in zip(seqs, ids):
      self.assertIsInstance(x, np.ndarray)
      self.assertEqual(x.shape, (30, 8))
      self.assertEqual(x.dtype, np.float64)
      self.assertEqual(y.shape, (30,))
      self.assertEqual(y.dtype.kind, 'U')
      self.assertTrue(all(label.startswith('spk') for label in y))

  def test_same_seed_same_data(self):
    a = toy.make_toy_dataset(np.random.default_rng(42), **SMALL)
    b = toy.make_toy_dataset(np.random.default_rng(42), **SMALL)
    for x, y in zip(a[0] + a[1], b[0] + b[1]):
      np.testing.assert_array_equal(x, y)
    c = toy.make_toy_dataset(np.random.default_rng(43), **SMALL)
    self.assertFalse(np.array_equal(a[0][0], c[0][0]))

  def test_no_global_rng(self):
    np.random.seed(0)
    before = np.random.random()
    np.random.seed(0)
    toy.make_toy_dataset(np.random.default_rng(0), **SMALL)
    self.assertEqual(np.random.random(), before)

  @settings(max_examples=30, deadline=None)
  @given(
    seed=st.integers(0, 2**32 - 1),
    num_speakers=st.integers(2, 6),
    dim=st.integers(1, 6),
    length=st.integers(2, 60),
    min_turn=st.integers(1, 4),
    extra_turn=st.integers(0, 8),
  )
  def test_structure(
    self, seed, num_speakers, dim, length, min_turn, extra_turn
  ):
    max_turn = min_turn + extra_turn
    seqs, ids = toy.make_toy_dataset(
      np.random.default_rng(seed),
      num_sequences=4,
      num_speakers=num_speakers,
      observation_dim=dim,
      length=length,
      noise=0.2,
      min_turn=min_turn,
      max_turn=max_turn,
    )
    pool = {f'spk{j}' for j in range(num_speakers)}
    for x, y in zip(seqs, ids):
      self.assertEqual(x.shape, (length, dim))
      self.assertTrue(np.all(x != 0))
      self.assertTrue(np.all(np.isfinite(x)))
      speakers = set(y.tolist())
      self.assertLessEqual(speakers, pool)
      self.assertBetween(len(speakers), 2, num_speakers)
      turns = _turns(y)
      # Neighbouring turns differ by construction of groupby; lengths obey
      # the bounds, except the cut last turn (and a split single turn).
      lengths = [n for _, n in turns]
      self.assertLessEqual(max(lengths), max_turn)
      if len(turns) > 2:
        self.assertGreaterEqual(min(lengths[:-1]), min_turn)

  def test_speaker_counts_cover_range(self):
    _, ids = toy.make_toy_dataset(
      np.random.default_rng(0),
      num_sequences=60,
      num_speakers=4,
      observation_dim=4,
      length=40,
      noise=0.1,
    )
    counts = {len(set(y.tolist())) for y in ids}
    self.assertEqual(counts, {2, 3, 4})

  def test_observations_cluster_around_their_speaker(self):
    rng = np.random.default_rng(0)
    centers = toy.make_speaker_centers(rng, 4, 16, radius=2.0)
    seqs, ids = toy.make_toy_dataset(
      rng,
      num_sequences=20,
      num_speakers=4,
      observation_dim=16,
      length=60,
      noise=0.3,
      centers=centers,
    )
    x = np.concatenate(seqs)
    y = np.concatenate(ids)
    distances = np.linalg.norm(x[:, None] - centers[None], axis=-1)
    nearest = np.array([f'spk{j}' for j in distances.argmin(axis=1)])
    np.testing.assert_array_equal(nearest, y)  # nearest-centre is perfect
    for j, center in enumerate(centers):
      mean = x[y == f'spk{j}'].mean(axis=0)
      np.testing.assert_allclose(mean, center, atol=0.1)
    residual = x - centers[[int(label[3:]) for label in y]]
    self.assertAlmostEqual(residual.std(), 0.3, delta=0.02)

  def test_default_task_is_easy(self):
    # At the toy config's noise, the speakers of every sequence are far apart
    # relative to the noise (half-gaps above 4 standard deviations), and
    # labelling each frame by its nearest speaker mean is perfect.
    config = _toy_config(num_train=0, num_test=20, length=60)
    _, _, seqs, ids = toy.toy_train_test(config, seed=0, observation_dim=16)
    for x, y in zip(seqs, ids):
      names = sorted(set(y.tolist()))
      means = np.stack([x[y == k].mean(axis=0) for k in names])
      gaps = np.linalg.norm(means[:, None] - means[None], axis=-1)
      self.assertGreater(gaps[gaps > 0].min() / 2, 4 * config.noise)
      distances = np.linalg.norm(x[:, None] - means[None], axis=-1)
      np.testing.assert_array_equal(
        np.array(names)[distances.argmin(axis=1)], y
      )

  def test_no_exact_zeros(self):
    # Noise-free data from centres with zero coordinates: nudged off zero.
    seqs, _ = toy.make_toy_dataset(
      np.random.default_rng(0),
      num_sequences=3,
      num_speakers=3,
      observation_dim=3,
      length=10,
      noise=0.0,
      centers=np.eye(3),
    )
    for x in seqs:
      self.assertTrue(np.all(x != 0))
      self.assertTrue(np.all(x.astype(np.float32) != 0))
      np.testing.assert_allclose(np.abs(x).sum(axis=1), 1.0, atol=1e-5)

  def test_variable_lengths(self):
    seqs, ids = toy.make_toy_dataset(
      np.random.default_rng(0), **{**SMALL, 'num_sequences': 30}, min_length=5
    )
    lengths = {x.shape[0] for x in seqs}
    self.assertGreater(len(lengths), 5)
    self.assertTrue(all(5 <= n <= 30 for n in lengths))
    self.assertEqual([x.shape[0] for x in seqs], [y.shape[0] for y in ids])

  def test_short_sequences(self):
    seqs, ids = toy.make_toy_dataset(
      np.random.default_rng(0), **{**SMALL, 'length': 2, 'num_sequences': 10}
    )
    for y in ids:
      self.assertLen(set(y.tolist()), 2)

  def test_zero_sequences(self):
    self.assertEqual(
      toy.make_toy_dataset(
        np.random.default_rng(0), **{**SMALL, 'num_sequences': 0}
      ),
      ([], []),
    )

  @parameterized.named_parameters(
    ('one_speaker', dict(num_speakers=1), ValueError),
    ('length_one', dict(length=1), ValueError),
    ('negative_noise', dict(noise=-0.1), ValueError),
    ('nan_noise', dict(noise=float('nan')), ValueError),
    ('zero_dim', dict(observation_dim=0), ValueError),
    ('float_length', dict(length=10.0), TypeError),
    ('min_length_too_big', dict(min_length=31), ValueError),
    ('max_below_min_turn', dict(min_turn=4, max_turn=3), ValueError),
    ('zero_turn', dict(min_turn=0), ValueError),
    ('centers_shape', dict(centers=np.ones((3, 8))), ValueError),
  )
  def test_errors(self, overrides, error):
    with self.assertRaises(error):
      toy.make_toy_dataset(np.random.default_rng(0), **{**SMALL, **overrides})


class ToyTrainTestTest(absltest.TestCase):
  def test_splits(self):
    train_x, train_y, test_x, test_y = toy.toy_train_test(
      _toy_config(), seed=0, observation_dim=6
    )
    self.assertLen(train_x, 5)
    self.assertLen(train_y, 5)
    self.assertLen(test_x, 3)
    self.assertLen(test_y, 3)
    for x in train_x + test_x:
      self.assertEqual(x.shape, (40, 6))
    labels = set(np.concatenate(train_y + test_y).tolist())
    self.assertLessEqual(labels, {f'spk{j}' for j in range(4)})

  def test_deterministic(self):
    a = toy.toy_train_test(_toy_config(), 7, 4)
    b = toy.toy_train_test(_toy_config(), 7, 4)
    c = toy.toy_train_test(_toy_config(), 8, 4)
    for part_a, part_b in zip(a, b):
      for x, y in zip(part_a, part_b):
        np.testing.assert_array_equal(x, y)
    self.assertFalse(np.array_equal(a[0][0], c[0][0]))

  def test_test_split_independent_of_num_train(self):
    a = toy.toy_train_test(_toy_config(num_train=2), 0, 4)
    b = toy.toy_train_test(_toy_config(num_train=9), 0, 4)
    for x, y in zip(a[2] + a[3], b[2] + b[3]):
      np.testing.assert_array_equal(x, y)
    for x, y in zip(a[0], b[0]):  # and train is a prefix
      np.testing.assert_array_equal(x, y)

  def test_shared_speaker_pool(self):
    train_x, train_y, test_x, test_y = toy.toy_train_test(
      _toy_config(num_train=20, num_test=20, noise=0.01), 0, 5
    )

    def centers(xs, ys):
      x, y = np.concatenate(xs), np.concatenate(ys)
      return {k: x[y == k].mean(axis=0) for k in set(y.tolist())}

    train_centers, test_centers = (
      centers(train_x, train_y),
      centers(test_x, test_y),
    )
    for label in set(train_centers) & set(test_centers):
      np.testing.assert_allclose(
        train_centers[label], test_centers[label], atol=0.01
      )

  def test_plain_namespace_config(self):
    config = types.SimpleNamespace(
      num_train=1, num_test=1, num_speakers=2, length=5, noise=0.0
    )
    train_x, _, test_x, _ = toy.toy_train_test(config, 0, 3)
    self.assertEqual(train_x[0].shape, (5, 3))
    self.assertEqual(test_x[0].shape, (5, 3))


if __name__ == '__main__':
  absltest.main()
