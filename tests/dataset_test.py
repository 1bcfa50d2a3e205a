"""Tests of the .npz input format (uisrnn_jax.dataset)."""

import os
from unittest import mock

import numpy as np
from absl.testing import absltest, parameterized

from uisrnn_jax import dataset as dataset_lib
from uisrnn_jax import errors, shards


def small_dataset(turns: bool = True) -> dataset_lib.Dataset:
  """Two conversations (3 and 2 rows, D = 2) with every optional field."""
  seqs = [
    np.arange(6, dtype=np.float32).reshape(3, 2),
    np.arange(4, dtype=np.float32).reshape(2, 2) + 10,
  ]
  starts = [np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.5])]
  return dataset_lib.Dataset(
    sequences=seqs,
    labels=[np.array(['a', 'a', 'b']), np.array(['c', 'd'])],
    starts=starts,
    ends=[s + 0.5 for s in starts],
    ids=['first', 'second'],
    turns=[
      (np.array([0.0, 1.0]), np.array([1.0, 1.5]), np.array(['a', 'b'])),
      (np.array([0.2]), np.array([0.9]), np.array(['c'])),
    ]
    if turns
    else None,
  )


def assert_same(test, got: dataset_lib.Dataset, want: dataset_lib.Dataset):
  for key in ('sequences', 'labels', 'starts', 'ends'):
    test.assertLen(getattr(got, key), len(getattr(want, key)))
    for g, w in zip(getattr(got, key), getattr(want, key)):
      np.testing.assert_array_equal(g, w)
  test.assertEqual(got.ids, want.ids)
  if want.turns is None:
    test.assertIsNone(got.turns)
    return
  for g, w in zip(got.turns, want.turns, strict=True):
    for a, b in zip(g, w, strict=True):
      np.testing.assert_array_equal(a, b)


class WriteAndLoadTest(parameterized.TestCase):
  @parameterized.parameters(True, False)
  def test_round_trip(self, compress):
    want = small_dataset()
    path = os.path.join(self.create_tempdir().full_path, 'd.npz')
    dataset_lib.write_npz(path, want, compress=compress)
    got = dataset_lib.load_npz(path, observation_dim=2)
    assert_same(self, got, want)
    self.assertEqual(got.sequences[0].dtype, np.float64)
    self.assertEqual(
      sorted(os.listdir(os.path.dirname(path))), ['d.npz']
    )  # no temporary file left

  def test_mmap_keeps_the_stored_dtype_as_views_of_the_file(self):
    path = os.path.join(self.create_tempdir().full_path, 'd.npz')
    dataset_lib.write_npz(
      path, small_dataset(), dtype=np.float16, compress=False
    )
    got = dataset_lib.load_npz(path, mmap=True, dtype=None)
    self.assertEqual(got.sequences[1].dtype, np.float16)
    self.assertIsInstance(got.sequences[1].base, np.memmap)
    np.testing.assert_array_equal(got.sequences[1], [[10, 11], [12, 13]])
    # Compressed members cannot be mapped: they are read into memory.
    dataset_lib.write_npz(path, small_dataset(), compress=True)
    got = dataset_lib.load_npz(path, mmap=True, dtype=None)
    self.assertNotIsInstance(got.sequences[1].base, np.memmap)
    self.assertEqual(got.sequences[1].dtype, np.float32)

  def test_empty_dataset_is_refused(self):
    path = os.path.join(self.create_tempdir().full_path, 'd.npz')
    with self.assertRaisesRegex(ValueError, 'no conversations'):
      dataset_lib.write_npz(path, dataset_lib.Dataset(sequences=[]))
    self.assertFalse(os.path.exists(path))


class ShardsAreCheckedLikeInputsTest(parameterized.TestCase):
  """`shards.load_shard` refuses what `load_npz` refuses (issue 16)."""

  def _write(self, **arrays):
    good = dataset_lib.npz_arrays(small_dataset())
    good.update(arrays)
    path = os.path.join(self.create_tempdir().full_path, 's.npz')
    np.savez(path, **{k: v for k, v in good.items() if v is not None})
    return path

  @parameterized.named_parameters(
    (
      'nan',
      dict(embeddings=np.array([[0, 1], [np.nan, 2], [3, 4], [5, 6], [7, 8]])),
      'NaN or Inf in 1 rows, first at row 1 .conversation 0',
    ),
    (
      'int_embeddings',
      dict(embeddings=np.ones((5, 2), np.int32)),
      'embeddings must be a float array',
    ),
    ('int_labels', dict(labels=np.arange(5)), 'labels must be strings'),
    ('short_starts', dict(starts=np.zeros(4)), 'starts must have one entry'),
    ('inf_ends', dict(ends=np.array([0, 1, np.inf, 0, 1])), 'ends has NaN'),
    ('ids', dict(conversation_ids=np.array(['x'])), 'conversation_ids'),
    ('half_turns', dict(turn_speakers=None), 'but not'),
    ('turns_backwards', dict(turn_ends=np.zeros(3)), 'ends >= starts'),
    ('turn_offsets', dict(turn_offsets=np.array([0, 2, 1])), 'turn_offsets'),
    (
      'string_turn_times',
      dict(turn_starts=np.array(['0', '1', '2'])),
      'turn_starts must be numbers',
    ),
  )
  def test_bad_shard(self, arrays, message):
    path = self._write(**arrays)
    for load in (shards.load_shard, dataset_lib.load_npz):
      with self.assertRaisesRegex(errors.DataFormatError, message):
        load(path)

  def test_dimension_is_checked(self):
    path = self._write()
    with self.assertRaisesRegex(errors.DataFormatError, 'observation_dim=3'):
      shards.load_shard(path, observation_dim=3)
    self.assertLen(shards.load_shard(path, observation_dim=2).sequences, 2)

  def test_non_finite_rows_are_found_across_chunks(self):
    emb = np.zeros((40, 2), np.float32)
    emb[[17, 18, 33], 1] = np.inf
    path = self._write(embeddings=emb, offsets=np.array([0, 20, 40]))
    with mock.patch.object(dataset_lib, '_FINITE_CHUNK_ROWS', 8):
      with self.assertRaisesRegex(
        errors.DataFormatError,
        'in 3 rows, first at row 17 .conversation 0',
      ):
        shards.load_shard(path)


if __name__ == '__main__':
  absltest.main()
