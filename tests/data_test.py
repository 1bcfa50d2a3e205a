"""Tests of the host-side data pipeline."""

import numpy as np
from absl.testing import absltest, parameterized
from hypothesis import given, settings
from hypothesis import strategies as st

from uisrnn_jax import data


def _seq(n, d=3, seed=0):
  return np.random.default_rng(seed).normal(size=(n, d))


class ValidationTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ('list', [[1.0, 2.0]], TypeError, 'float numpy array'),
    ('int_dtype', np.ones((3, 2), np.int64), TypeError, 'float numpy array'),
    ('object_dtype', np.ones((3, 2), object), TypeError, 'float numpy array'),
    ('one_dim', np.ones(3), ValueError, '2-D'),
    ('empty', np.ones((0, 2)), ValueError, 'empty'),
    ('wrong_dim', np.ones((3, 5)), ValueError, 'observation_dim=2'),
    ('nan', np.array([[1.0, np.nan]]), ValueError, 'NaN or Inf'),
    ('inf', np.array([[1.0, np.inf]]), ValueError, 'NaN or Inf'),
  )
  def test_check_sequence_rejects(self, value, error, message):
    with self.assertRaisesRegex(error, message):
      data.check_sequence(value, observation_dim=2)

  def test_check_sequence_accepts_float32_and_length_one(self):
    x = np.ones((1, 2), np.float32)
    self.assertIs(data.check_sequence(x, observation_dim=2), x)

  @parameterized.named_parameters(
    ('ints', np.array([1, 2]), TypeError, 'strings'),
    ('int_list', [1, 2], TypeError, 'strings'),
    ('scalar', 'ab', TypeError, 'list or numpy array'),
    ('length', ['a'], ValueError, '1 labels for a sequence of 2'),
    ('two_dim', np.array([['a'], ['b']]), ValueError, '1-D'),
  )
  def test_check_labels_rejects(self, value, error, message):
    with self.assertRaisesRegex(error, message):
      data.check_labels(value, 2)

  def test_prepare_rejects_before_work(self):
    seqs = [_seq(3), _seq(2)]
    with self.assertRaisesRegex(ValueError, '2 sequences but 1'):
      data.prepare_training_data(
        seqs,
        [['a'] * 3],
        observation_dim=3,
        enforce_uniqueness=True,
        num_permutations=1,
        rng=np.random.default_rng(0),
      )
    with self.assertRaisesRegex(ValueError, r'cluster_ids\[1\]'):
      data.prepare_training_data(
        seqs,
        [['a'] * 3, ['a'] * 3],
        observation_dim=3,
        enforce_uniqueness=True,
        num_permutations=1,
        rng=np.random.default_rng(0),
      )


class PipelineTest(parameterized.TestCase):
  def test_enforce_uniqueness(self):
    self.assertEqual(
      data.enforce_cluster_id_uniqueness([['a', 'b'], np.array(['a'])]),
      [['0_a', '0_b'], ['1_a']],
    )

  def test_speaker_samples_group_by_label_in_order(self):
    seq = np.arange(6, dtype=float)[:, None]
    samples = data.speaker_samples(
      [seq],
      [['a', 'b', 'a', 'a', 'b', 'c']],
      num_permutations=1,
      rng=np.random.default_rng(0),
    )
    self.assertEqual(
      [s[:, 0].tolist() for s in samples], [[0, 2, 3], [1, 4], [5]]
    )

  def test_unique_labels_split_speakers_across_sequences(self):
    seqs = [np.zeros((2, 1)), np.ones((2, 1))]
    ids = [['a', 'a'], ['a', 'a']]
    shared, _ = data.prepare_training_data(
      seqs,
      ids,
      observation_dim=1,
      enforce_uniqueness=False,
      num_permutations=1,
      rng=np.random.default_rng(0),
    )
    split, _ = data.prepare_training_data(
      seqs,
      ids,
      observation_dim=1,
      enforce_uniqueness=True,
      num_permutations=1,
      rng=np.random.default_rng(0),
    )
    self.assertEqual(shared.lengths.tolist(), [4])
    self.assertEqual(sorted(split.lengths.tolist()), [2, 2])

  @settings(max_examples=50, deadline=None)
  @given(
    st.lists(st.integers(0, 3), min_size=1, max_size=40),
    st.integers(1, 5),
    st.integers(0, 2**31),
  )
  def test_permutation_keeps_every_observation_once_and_runs_intact(
    self, labels, copies, seed
  ):
    labels = [str(x) for x in labels]
    seq = np.arange(len(labels), dtype=float)[:, None]
    samples = data.speaker_samples(
      [seq], [labels], num_permutations=copies, rng=np.random.default_rng(seed)
    )
    speakers = sorted(set(labels))
    per_speaker = copies if copies > 1 else 1
    self.assertLen(samples, len(speakers) * per_speaker)
    for k, spk in enumerate(speakers):
      want = [i for i, x in enumerate(labels) if x == spk]
      for sample in samples[k * per_speaker : (k + 1) * per_speaker]:
        got = sample[:, 0].astype(int).tolist()
        self.assertEqual(sorted(got), want)
        # Runs of consecutive indices stay contiguous and in order.
        for run in np.split(
          np.array(want), np.flatnonzero(np.diff(want) != 1) + 1
        ):
          start = got.index(run[0])
          self.assertEqual(got[start : start + len(run)], run.tolist())

  @parameterized.parameters(
    (1, 16, 16),
    (16, 16, 16),
    (17, 16, 32),
    (128, 16, 128),
    (129, 16, 256),
    (300, 16, 512),
    (1000, 16, 1024),
    (5, 1, 5),
    (9, 1, 16),
  )
  def test_bucketed_length(self, length, bucket, want):
    self.assertEqual(data.bucketed_length(length, bucket), want)

  def test_few_buckets_for_many_lengths(self):
    shapes = {data.bucketed_length(n, 16) for n in range(1, 1001)}
    self.assertLessEqual(len(shapes), 12)

  def test_batch_pads_with_mask(self):
    samples = data.SampleSet.from_samples(
      [np.full((2, 1), 1.0), np.full((5, 1), 2.0)]
    )
    batch = samples.batch(np.array([1, 0, 0]), bucket=4, pack=False)
    self.assertEqual(batch['observations'].shape, (3, 8, 1))
    np.testing.assert_array_equal(batch['starts'][:, 0], True)
    self.assertEqual(batch['starts'].sum(), 3)
    np.testing.assert_array_equal(batch['ends'][:, 0], [5, 2, 2])
    self.assertEqual(batch['observations'].dtype, np.float32)
    np.testing.assert_array_equal(batch['mask'].sum(1), [5, 2, 2])
    np.testing.assert_array_equal(batch['observations'][0, :5, 0], 2.0)
    np.testing.assert_array_equal(batch['observations'][1, :2, 0], 1.0)
    np.testing.assert_array_equal(batch['observations'][~batch['mask']], 0.0)

  def test_sample_batch_full_and_minibatch(self):
    samples = data.SampleSet.from_samples([_seq(n) for n in (1, 2, 3)])
    full = samples.sample_batch(None, np.random.default_rng(0), bucket=1)
    self.assertEqual(full['mask'].sum(), 6)
    a = samples.sample_batch(7, np.random.default_rng(1), bucket=1)
    b = samples.sample_batch(7, np.random.default_rng(1), bucket=1)
    self.assertEqual(a['starts'].sum(), 7)  # 7 samples, however packed
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
    with self.assertRaisesRegex(ValueError, 'batch_size'):
      samples.sample_batch(0, np.random.default_rng(0), bucket=1)


if __name__ == '__main__':
  absltest.main()


class PackingTest(parameterized.TestCase):
  @parameterized.parameters(
    (0, 1),
    (1, 1),
    (2, 2),
    (3, 3),
    (4, 4),
    (5, 6),
    (6, 6),
    (7, 8),
    (9, 12),
    (13, 16),
    (17, 24),
    (25, 32),
    (33, 48),
  )
  def test_bucketed_rows(self, rows, want):
    self.assertEqual(data.bucketed_rows(rows), want)

  def test_pack_lengths_first_fit_decreasing(self):
    rows = data.pack_lengths([2, 7, 3, 5, 1], 8)
    # 7 -> row 0 (1 left); 5 -> row 1 (3 left); 3 -> row 1; 2 -> row 2;
    # 1 -> row 0.
    self.assertEqual(rows, [[1, 4], [3, 2], [0]])
    with self.assertRaisesRegex(ValueError, 'does not fit'):
      data.pack_lengths([9], 8)

  def test_balance_rows_hand_case(self):
    # 7 -> row 0; 5 -> row 1; 3 -> row 2; 2 -> row 2 (3 < 5 < 7); 1 -> row 1
    # (5 == 5: the first); longest row 7 where first-fit fills 8.
    self.assertEqual(
      data.balance_rows([2, 7, 3, 5, 1], 3, 8), [[1], [3, 4], [2, 0]]
    )
    self.assertIsNone(data.balance_rows([5, 4, 3, 3], 2, 7))

  @settings(max_examples=200, deadline=None)
  @given(
    st.lists(st.integers(1, 40), min_size=1, max_size=30),
    st.integers(1, 8),
  )
  def test_balance_rows_properties(self, lengths, num_rows):
    capacity = max(lengths) + sum(lengths) // num_rows
    rows = data.balance_rows(lengths, num_rows, capacity)
    # The LPT bound: the last sample put on a row found it at or below the
    # mean load, so no row exceeds mean + longest (that capacity holds all).
    self.assertIsNotNone(rows)
    self.assertLessEqual(len(rows), num_rows)
    self.assertEqual(
      sorted(i for row in rows for i in row), list(range(len(lengths)))
    )
    loads = [sum(lengths[i] for i in row) for row in rows]
    self.assertLessEqual(max(loads), capacity)
    self.assertLessEqual(max(loads), sum(lengths) / num_rows + max(lengths))

  def test_layout_prefers_fewer_slots(self):
    # One long sample and many short ones: rows of the longest sample's
    # bucket hold everything in two rows instead of ten.
    steps, rows = data.packed_layout([30] + [3] * 9, 16)
    self.assertEqual(steps, 32)
    self.assertLen(rows, 2)

  def test_plan_shapes_trades_compiles_for_padding(self):
    # Bucket 16. Batch A = [10, 10]: 2 rows of 16 (cost 16 * 2.6 = 41.6)
    # or 1 row of 48; batch B = [40]: 1 row of 48 (cost 48 * 1.6 = 76.8).
    # One shape must hold both: (1, 48). A second shape (2, 16) saves
    # 76.8 - 41.6 = 35.2 per A batch, 352 at weight 10.
    batches = [[10, 10], [40]]

    def plan(cost):
      return data.plan_shapes(batches, 16, compile_cost=cost, weight=10)

    self.assertEqual(plan(1e9), [(1, 48)])
    self.assertEqual(plan(400.0), [(1, 48)])
    self.assertEqual(plan(300.0), [(1, 48), (2, 16)])
    self.assertEqual(plan(0.0), [(1, 48), (2, 16)])
    self.assertEqual(data.plan_shapes([], 16, compile_cost=0.0), [])

  def test_fit_shape_takes_the_cheapest_that_holds(self):
    shapes = [(1, 48), (2, 16), (4, 16)]
    self.assertEqual(data.fit_shape([10, 10], shapes)[0], (2, 16))
    self.assertEqual(data.fit_shape([10, 10, 10], shapes)[0], (4, 16))
    self.assertEqual(data.fit_shape([40], shapes)[0], (1, 48))
    self.assertIsNone(data.fit_shape([40, 40], shapes))
    self.assertIsNone(data.fit_shape([49], shapes))

  @parameterized.parameters(1, 2, 3)
  def test_planned_shapes_hold_every_batch(self, seed):
    rng = np.random.default_rng(seed)
    samples = data.SampleSet.from_samples(
      [np.zeros((n, 1), np.float32) for n in rng.integers(1, 90, size=30)]
    )
    draws = [samples.sample_indices(6, rng) for _ in range(50)]
    batches = [samples.lengths[i] for i in draws]
    for cost, most in ((1e12, 1), (500.0, 50), (0.0, 50)):
      shapes = data.plan_shapes(batches, 8, compile_cost=cost)
      self.assertBetween(len(shapes), 1, most)
      for indices in draws:
        batch = samples.batch(indices, bucket=8, shapes=shapes)
        self.assertIn(batch['mask'].shape, shapes)
        self.assertEqual(batch['mask'].sum(), samples.lengths[indices].sum())
    # Cheaper compiles never give fewer shapes, nor more padded work.
    few = data.plan_shapes(batches, 8, compile_cost=5000.0)
    many = data.plan_shapes(batches, 8, compile_cost=50.0)
    self.assertLessEqual(len(few), len(many))

    def work(shapes):
      return sum(data.shape_cost(data.fit_shape(b, shapes)[0]) for b in batches)

    self.assertLessEqual(work(many), work(few))

  def test_batch_without_a_fitting_shape_takes_its_own(self):
    samples = data.SampleSet.from_samples(
      [np.ones((n, 1), np.float32) for n in (5, 30)]
    )
    own = samples.batch(np.array([0, 1]), bucket=4)
    batch = samples.batch(np.array([0, 1]), bucket=4, shapes=[(1, 8)])
    self.assertEqual(batch['mask'].shape, own['mask'].shape)
    batch = samples.batch(np.array([0, 1]), bucket=4, shapes=[(3, 40)])
    self.assertEqual(batch['mask'].shape, (3, 40))

  @parameterized.parameters(1, 4, 16)
  def test_packed_batch_holds_every_sample_once_in_order(self, bucket):
    rng = np.random.default_rng(bucket)
    lengths = rng.integers(1, 40, size=25)
    samples = data.SampleSet.from_samples(
      [
        np.arange(n, dtype=np.float32)[:, None] + 100.0 * i
        for i, n in enumerate(lengths)
      ]
    )
    indices = rng.integers(0, len(samples), size=12)  # repeats allowed
    batch = samples.batch(indices, bucket=bucket)
    obs, mask = batch['observations'][..., 0], batch['mask']
    starts, ends = batch['starts'], batch['ends']
    self.assertEqual(obs.shape[0], data.bucketed_rows(obs.shape[0]))
    self.assertEqual(obs.shape[1] % bucket, 0)
    self.assertLessEqual(obs.shape[0], len(indices))
    np.testing.assert_array_equal(obs[~mask], 0.0)
    self.assertFalse(np.any(starts & ~mask))
    found = []
    for r in range(obs.shape[0]):
      real = np.flatnonzero(mask[r])
      if real.size:  # real steps first, contiguous
        np.testing.assert_array_equal(real, np.arange(real.size))
      for t in np.flatnonzero(starts[r]):
        end = ends[r, t]
        piece = obs[r, t:end]
        self.assertTrue(np.all(mask[r, t:end]))
        self.assertTrue(np.all(ends[r, t:end] == end))
        self.assertFalse(np.any(starts[r, t + 1 : end]))
        self.assertTrue(end == real.size or starts[r, end])
        found.append(piece.tolist())
    want = [(np.arange(lengths[i]) + 100.0 * i).tolist() for i in indices]
    self.assertCountEqual(found, want)
    self.assertEqual(mask.sum(), lengths[indices].sum())
