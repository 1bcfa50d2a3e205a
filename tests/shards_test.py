"""Tests of training from many .npz shards (uisrnn_jax.shards)."""

import os
import zipfile

import jax
import jax_testing
import numpy as np
from absl.testing import absltest

from uisrnn_jax import checkpoint, errors, estimators, experiment, shards, train
from uisrnn_jax import dataset as dataset_lib


def tiny_config():
  return jax_testing.tiny_config(log_every=100)


def tiny_dataset(num=9, seed=0, d=3):
  """float32 conversations of 6-11 rows, with labels, times and ids."""
  rng = np.random.default_rng(seed)
  centres = 3 * rng.normal(size=(3, d))
  seqs, labels, starts = [], [], []
  for _ in range(num):
    turns = np.repeat(rng.integers(0, 3, 3), rng.integers(2, 4, 3))
    seqs.append(
      (centres[turns] + 0.1 * rng.normal(size=(len(turns), d))).astype(
        np.float32
      )
    )
    labels.append(np.array([f's{x}' for x in turns]))
    starts.append(0.4 * np.arange(len(turns), dtype=np.float32))
  return dataset_lib.Dataset(
    sequences=seqs,
    labels=labels,
    starts=starts,
    ends=[s + 1.6 for s in starts],
    ids=[f'conv{i}' for i in range(num)],
  )


def max_diff(a, b):
  return max(
    float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )


class WriteAndLoadTest(absltest.TestCase):
  def test_round_trip_keeps_conversations_whole(self):
    dataset = tiny_dataset()
    directory = self.create_tempdir().full_path
    paths = shards.write_shards(dataset, directory, rows_per_shard=25)
    self.assertGreater(len(paths), 1)
    loaded = [shards.load_shard(p) for p in paths]
    for shard in loaded:
      self.assertLessEqual(sum(len(s) for s in shard.sequences), 25)
    for key in ('sequences', 'labels', 'starts', 'ends'):
      got = [x for shard in loaded for x in getattr(shard, key)]
      want = getattr(dataset, key)
      self.assertLen(got, len(want))
      for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    self.assertEqual([i for s in loaded for i in s.ids], dataset.ids)
    # dataset_lib.load_npz reads a shard too (same format).
    first = dataset_lib.load_npz(paths[0])
    np.testing.assert_array_equal(first.sequences[0], dataset.sequences[0])

  def test_uncompressed_shards_are_memory_mapped(self):
    directory = self.create_tempdir().full_path
    (path,) = shards.write_shards(tiny_dataset(), directory, 10**6)
    with zipfile.ZipFile(path) as zf:
      self.assertTrue(
        all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
      )
    shard = shards.load_shard(path)
    self.assertIsInstance(shard.sequences[0].base, np.memmap)
    self.assertIsInstance(shard.labels[0].base, np.memmap)
    in_memory = shards.load_shard(path, mmap=False)
    self.assertNotIsInstance(in_memory.sequences[0].base, np.memmap)
    np.testing.assert_array_equal(in_memory.sequences[3], shard.sequences[3])

  def test_compressed_shard_falls_back_to_reading(self):
    dataset = tiny_dataset(num=2)
    path = os.path.join(self.create_tempdir().full_path, 'c.npz')
    np.savez_compressed(
      path,
      embeddings=np.concatenate(dataset.sequences),
      offsets=dataset.offsets,
      labels=np.concatenate(dataset.labels),
    )
    shard = shards.load_shard(path)
    np.testing.assert_array_equal(shard.sequences[1], dataset.sequences[1])
    self.assertIsNone(shard.starts)

  def test_bad_files(self):
    directory = self.create_tempdir().full_path
    with self.assertRaises(FileNotFoundError):
      shards.load_shard(os.path.join(directory, 'missing.npz'))
    with self.assertRaisesRegex(FileNotFoundError, 'no shard matches'):
      shards.expand_shard_paths(os.path.join(directory, '*.npz'))
    junk = os.path.join(directory, 'junk.npz')
    with open(junk, 'wb') as f:
      f.write(b'not a zip file')
    with self.assertRaises(errors.DataFormatError):
      shards.load_shard(junk)
    no_offsets = os.path.join(directory, 'no_offsets.npz')
    np.savez(no_offsets, embeddings=np.ones((3, 2), np.float32))
    with self.assertRaisesRegex(errors.DataFormatError, 'offsets'):
      shards.load_shard(no_offsets)
    objects = os.path.join(directory, 'objects.npz')
    np.savez(
      objects,
      embeddings=np.ones((2, 2), np.float32),
      offsets=np.array([0, 2]),
      labels=np.array(['a', 1], dtype=object),
    )
    with self.assertRaisesRegex(errors.DataFormatError, 'pickle'):
      shards.load_shard(objects)
    with self.assertRaisesRegex(ValueError, 'rows_per_shard'):
      shards.write_shards(tiny_dataset(), directory, 0)


class FitShardedTest(absltest.TestCase):
  def setUp(self):
    super().setUp()
    self.config = tiny_config()
    self.dataset = tiny_dataset()
    directory = self.create_tempdir().full_path
    self.paths = shards.write_shards(self.dataset, directory, 25)
    self.assertLen(self.paths, 3)

  def fresh(self):
    return train.create_train_state(jax.random.key(0), self.config)

  def test_equals_fit_on_each_shard_in_order(self):
    got = shards.fit_sharded(
      self.fresh(), self.paths, self.config, steps_per_shard=2, progress=False
    )
    self.assertEqual(int(got.step), 6)
    want = self.fresh()
    for path in self.paths:
      shard = dataset_lib.load_npz(path)  # in memory, not memory-mapped
      want = train.fit(
        want,
        [s.astype(np.float32) for s in shard.sequences],
        shard.labels,
        self.config,
        num_steps=2,
        progress=False,
      )
    self.assertEqual(max_diff(got.params, want.params), 0.0)
    self.assertEqual(float(got.transition_bias), float(want.transition_bias))
    # p0 is pooled over the shards as over successive fit calls: the counts
    # of the whole dataset plus each shard's add-one smoothing.
    p0, transitions = estimators.estimate_transition_bias(
      self.dataset.labels, smooth=0.0
    )
    self.assertAlmostEqual(
      float(got.transition_bias),
      (3 + p0 * transitions) / (6 + transitions),
      places=6,
    )
    self.assertGreater(max_diff(got.params, self.fresh().params), 1e-3)

  def test_resuming_mid_shard_matches_uninterrupted(self):
    straight = shards.fit_sharded(
      self.fresh(), self.paths, self.config, steps_per_shard=2, progress=False
    )
    glob = os.path.join(os.path.dirname(self.paths[0]), 'shard-*.npz')
    half = shards.fit_sharded(
      self.fresh(),
      glob,
      self.config,
      steps_per_shard=2,
      num_steps=3,
      progress=False,
    )
    self.assertEqual(int(half.step), 3)
    resumed = shards.fit_sharded(
      half, glob, self.config, steps_per_shard=2, num_steps=3, progress=False
    )
    self.assertEqual(max_diff(resumed.params, straight.params), 0.0)
    self.assertEqual(
      float(resumed.transition_bias), float(straight.transition_bias)
    )

  def test_train_and_evaluate_trains_from_configured_shards(self):
    config = tiny_config()
    config.data.train_shards = os.path.join(
      os.path.dirname(self.paths[0]), 'shard-*.npz'
    )
    config.train.steps_per_shard = 2
    config.train.train_iteration = 4
    workdir = self.create_tempdir().full_path
    got = experiment.train_and_evaluate(config, workdir, progress=False)
    want = shards.fit_sharded(  # the same config: fit plans from its length
      self.fresh(), self.paths, config, steps_per_shard=2, num_steps=4
    )
    self.assertEqual(max_diff(got.params, want.params), 0.0)
    self.assertEqual(checkpoint.checkpoint_steps(workdir), [4])

  def test_schedule_cycles_over_shards(self):
    self.assertEqual(
      [shards.shard_for_step(s, 3, 2) for s in range(8)],
      [0, 0, 1, 1, 2, 2, 0, 0],
    )
    with self.assertRaisesRegex(ValueError, 'steps_per_shard'):
      shards.fit_sharded(
        self.fresh(), self.paths, self.config, steps_per_shard=0
      )


if __name__ == '__main__':
  absltest.main()
