"""Property-based tests (hypothesis) of the data pipeline and decoding.

Data: permuted copies keep every observation exactly once per copy, across
several sequences. Labels: renumbering (host `evals.renumber_labels` and the
decoder's `decode.renumber`) gives 0..K-1 in first-appearance order, is
idempotent and keeps the partition. Decoding: labels come out 0..K-1 in
first-appearance order, and the order of the sequences in a batch does not
change anyone's labels. Decoding shapes are fixed (4 sequences of at most 16
observations, one bucket, the settings of decode_test), so it compiles once.
"""

import jax
import numpy as np
from absl.testing import absltest
from hypothesis import given, settings
from hypothesis import strategies as st

from uisrnn_jax import data, decode, evals, model

D, H = 4, 8
FEW = settings(max_examples=25, deadline=None)

label_lists = st.lists(st.integers(0, 5), min_size=1, max_size=30)


def _is_first_appearance_order(codes):
  """Codes start at 0 and each new one is max-so-far + 1."""
  seen = -1
  for c in codes:
    if c > seen + 1:
      return False
    seen = max(seen, c)
  return True


def _same_partition(a, b):
  a, b = np.asarray(a), np.asarray(b)
  return np.array_equal(a[:, None] == a[None, :], b[:, None] == b[None, :])


class DataPropertyTest(absltest.TestCase):
  @FEW
  @given(
    st.sets(st.integers(0, 60), min_size=1, max_size=25),
    st.integers(1, 4),
    st.integers(0, 2**32 - 1),
  )
  def test_permuted_segments_are_permutations_of_runs(
    self, indices, copies, seed
  ):
    index = np.array(sorted(indices))
    runs = np.split(index, np.flatnonzero(np.diff(index) != 1) + 1)
    out = data.sample_permuted_segments(
      index, copies, np.random.default_rng(seed)
    )
    self.assertLen(out, copies)
    for perm in out:
      # Every index exactly once...
      np.testing.assert_array_equal(np.sort(perm), index)
      # ...and the copy is the runs, intact, in some order (runs are
      # maximal, so two of them never join into one in the copy).
      pieces = np.split(perm, np.flatnonzero(np.diff(perm) != 1) + 1)
      self.assertEqual(
        sorted(p.tolist() for p in pieces), [r.tolist() for r in runs]
      )

  @FEW
  @given(
    st.lists(label_lists, min_size=1, max_size=4),
    st.integers(0, 4),
    st.integers(0, 2**32 - 1),
  )
  def test_speaker_samples_keep_every_observation_once_per_copy(
    self, label_seqs, copies, seed
  ):
    # Row r of the concatenation carries the value r, so samples can be
    # traced back to the observations they hold.
    offsets = np.cumsum([0] + [len(x) for x in label_seqs])
    seqs = [
      np.arange(a, b, dtype=float)[:, None]
      for a, b in zip(offsets[:-1], offsets[1:])
    ]
    ids = data.enforce_cluster_id_uniqueness(
      [[str(x) for x in labels] for labels in label_seqs]
    )
    samples = data.speaker_samples(
      seqs, ids, num_permutations=copies, rng=np.random.default_rng(seed)
    )
    flat = [x for labels in ids for x in labels]
    speakers = sorted(set(flat))
    per = copies if copies > 1 else 1
    self.assertLen(samples, len(speakers) * per)
    for k, speaker in enumerate(speakers):
      rows = [r for r, x in enumerate(flat) if x == speaker]
      for sample in samples[k * per : (k + 1) * per]:
        self.assertEqual(sorted(sample[:, 0].astype(int).tolist()), rows)
    # Over all speakers, copy j holds every observation exactly once.
    for j in range(per):
      held = np.concatenate(
        [samples[k * per + j] for k in range(len(speakers))]
      )
      np.testing.assert_array_equal(np.sort(held[:, 0]), np.arange(offsets[-1]))


class RenumberPropertyTest(absltest.TestCase):
  @FEW
  @given(st.lists(st.sampled_from(['x', 'b', 'a', 'zz', '7']), max_size=30))
  def test_renumber_labels(self, labels):
    codes = evals.renumber_labels(labels)
    self.assertEqual(codes.dtype, np.int32)
    self.assertLen(codes, len(labels))
    self.assertTrue(_is_first_appearance_order(codes.tolist()))
    self.assertEqual(len(set(codes.tolist())), len(set(labels)))
    if labels:
      self.assertEqual(codes.max(), len(set(labels)) - 1)
      self.assertTrue(_same_partition(codes, labels))
    np.testing.assert_array_equal(evals.renumber_labels(codes), codes)

  @FEW
  @given(
    st.lists(st.integers(0, 3), min_size=8, max_size=8),
    st.integers(0, 8),
  )
  def test_decoder_renumber(self, slots, length):
    slots = np.array(slots, np.int32)
    mask = np.arange(8) < length
    got = np.asarray(self.renumber(slots, mask))
    np.testing.assert_array_equal(got[~mask], -1)
    real = got[mask]
    self.assertTrue(_is_first_appearance_order(real.tolist()))
    self.assertTrue(_same_partition(real, slots[mask]))
    again = np.asarray(self.renumber(np.where(mask, got, 0), mask))
    np.testing.assert_array_equal(again, got)

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.renumber = staticmethod(
      jax.jit(lambda s, m: decode.renumber(s, m, num_slots=4))
    )


def _random_params(seed):
  params = model.init_params(
    jax.random.key(seed), observation_dim=D, hidden_size=H, depth=1
  )
  return jax.tree.map(lambda a: 3.0 * a, params)


class DecodePropertyTest(absltest.TestCase):
  config = dict(beam_size=3, max_speakers=16, test_iteration=1, bucket=16)

  @settings(max_examples=15, deadline=None)
  @given(
    st.lists(st.integers(1, 16), min_size=4, max_size=4),
    st.permutations(range(4)),
    st.integers(0, 2**32 - 1),
  )
  def test_labels_canonical_and_batch_order_irrelevant(
    self, lengths, order, seed
  ):
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.normal(size=(3, D))
    seqs = [
      (centres[rng.integers(0, 3, n)] + 0.3 * rng.normal(size=(n, D))).astype(
        np.float32
      )
      for n in lengths
    ]
    kw = dict(transition_bias=0.3, crp_alpha=1.0, config=self.config)
    params = _random_params(seed % 4)
    forward = decode.predict_labels(params, seqs, **kw)
    shuffled = decode.predict_labels(params, [seqs[i] for i in order], **kw)
    for got, seq in zip(forward, seqs):
      self.assertEqual(got.shape, (len(seq),))
      self.assertTrue(_is_first_appearance_order(got.tolist()))
    for position, i in enumerate(order):
      np.testing.assert_array_equal(shuffled[position], forward[i])


class PackedBatchPropertyTest(absltest.TestCase):
  """`data.SampleSet.batch`: every sampled observation once, masks exact."""

  @FEW
  @given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    picks=st.lists(st.integers(0, 1000), min_size=1, max_size=16),
    bucket=st.sampled_from([1, 4, 16, 32]),
    pack=st.booleans(),
  )
  def test_layout(self, lengths, picks, bucket, pack):
    # Observation value = 1000 * sample + position, so every entry says
    # where it came from.
    samples = data.SampleSet.from_samples(
      [
        1000.0 * i + np.arange(n, dtype=np.float32)[:, None]
        for i, n in enumerate(lengths)
      ]
    )
    indices = np.array([p % len(lengths) for p in picks])
    batch = samples.batch(indices, bucket=bucket, pack=pack)
    obs, mask = batch['observations'][..., 0], batch['mask']
    starts, ends = batch['starts'], batch['ends']
    self.assertEqual(obs.shape[1] % bucket, 0)
    self.assertEqual(
      obs.shape[0], data.bucketed_rows(obs.shape[0]) if pack else len(indices)
    )
    # Padding is exactly the complement of the real steps, holds zeros, and
    # comes after the real steps of its row.
    self.assertEqual(int(mask.sum()), int(np.sum(np.asarray(lengths)[indices])))
    np.testing.assert_array_equal(obs[~mask], 0.0)
    for row in mask:
      n = int(row.sum())
      self.assertTrue(row[:n].all())
    # Cutting rows at the starts gives back exactly the sampled samples.
    found = []
    for r in range(obs.shape[0]):
      for t in np.flatnonzero(starts[r]):
        found.append(tuple(obs[r, t : ends[r, t]]))
    want = [tuple(1000.0 * i + np.arange(lengths[i])) for i in indices]
    self.assertCountEqual(found, want)


if __name__ == '__main__':
  absltest.main()
