"""Tests for uisrnn_jax.evals."""

import itertools

import numpy as np
import pytest
from absl.testing import absltest, parameterized
from hypothesis import given, settings
from hypothesis import strategies as st

from uisrnn_jax import evals

labels = st.lists(st.integers(0, 5), min_size=1, max_size=30)


def _brute_force_accuracy(sequence1, sequence2):
  """Best one-to-one matching by trying every injection (tiny inputs)."""
  ids1, ids2 = sorted(set(sequence1)), sorted(set(sequence2))
  if len(ids1) > len(ids2):
    ids1, ids2 = ids2, ids1
    sequence1, sequence2 = sequence2, sequence1
  best = 0
  for image in itertools.permutations(ids2, len(ids1)):
    mapping = dict(zip(ids1, image))
    best = max(best, sum(mapping[a] == b for a, b in zip(sequence1, sequence2)))
  return best / len(sequence1)


class RenumberLabelsTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ('strings', ['b', 'b', 'a', 'c', 'a'], [0, 0, 1, 2, 1]),
    ('ints', [5, 3, 5, 9], [0, 1, 0, 2]),
    ('array', np.array(['x', 'y', 'x']), [0, 1, 0]),
    ('one', ['z'], [0]),
    ('empty', [], []),
    ('floats', np.array([0.5, -1.0, 0.5]), [0, 1, 0]),
  )
  def test_hand_made(self, given_labels, expected):
    got = evals.renumber_labels(given_labels)
    self.assertEqual(got.dtype, np.int32)
    np.testing.assert_array_equal(got, expected)

  @settings(max_examples=100, deadline=None)
  @given(
    st.lists(st.sampled_from(['a', 'bb', 'c', 'spk10', 'spk2']), max_size=40)
  )
  def test_first_appearance_order(self, given_labels):
    got = evals.renumber_labels(given_labels)
    num = len(set(given_labels))
    self.assertEqual(got.shape, (len(given_labels),))
    self.assertEqual(set(got.tolist()), set(range(num)))
    # Code k first appears before code k + 1, and codes mirror equality.
    firsts = [got.tolist().index(k) for k in range(num)]
    self.assertEqual(firsts, sorted(firsts))
    for i, j in itertools.combinations(range(len(given_labels)), 2):
      self.assertEqual(given_labels[i] == given_labels[j], got[i] == got[j])

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, '1-D'):
      evals.renumber_labels(np.zeros((2, 2)))
    with self.assertRaisesRegex(TypeError, 'mixes'):
      evals.renumber_labels([1, '1'])


class SequenceMatchAccuracyTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ('identical', [0, 0, 1, 2], [0, 0, 1, 2], 1.0),
    ('renamed', [1, 1, 2, 2], ['b', 'b', 'a', 'a'], 1.0),
    ('one_wrong', [1, 1, 2, 2, 3], ['a', 'a', 'b', 'c', 'c'], 0.8),
    ('all_one_vs_all_distinct', [7, 7, 7, 7], [0, 1, 2, 3], 0.25),
    ('single', ['a'], ['b'], 1.0),
    # Counts a->1: 3, a->2: 2, b->1: 3. Greedy may take a->1 and end with 3
    # frames; the optimum is b->1, a->2: 5 frames.
    ('needs_optimal', list('aaaaabbb'), [1, 1, 1, 2, 2, 1, 1, 1], 5 / 8),
    ('more_hypothesis_speakers', [0, 0, 0, 0], [0, 0, 1, 2], 0.5),
  )
  def test_hand_computed(self, sequence1, sequence2, expected):
    got = evals.compute_sequence_match_accuracy(sequence1, sequence2)
    self.assertAlmostEqual(got, expected)
    self.assertIsInstance(got, float)

  @parameterized.named_parameters(
    ('tuple', (1, 2), [1, 2]),
    ('array', [1, 2], np.array([1, 2])),
    ('string', 'ab', ['a', 'b']),
  )
  def test_type_errors(self, sequence1, sequence2):
    with self.assertRaisesRegex(TypeError, 'must be lists'):
      evals.compute_sequence_match_accuracy(sequence1, sequence2)

  @parameterized.named_parameters(
    ('empty', [], []),
    ('lengths', [1, 2], [1]),
  )
  def test_value_errors(self, sequence1, sequence2):
    with self.assertRaisesRegex(ValueError, 'same non-zero length'):
      evals.compute_sequence_match_accuracy(sequence1, sequence2)

  @settings(max_examples=100, deadline=None)
  @given(st.data())
  def test_matches_brute_force(self, data):
    sequence1 = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=12))
    sequence2 = data.draw(
      st.lists(
        st.integers(0, 4), min_size=len(sequence1), max_size=len(sequence1)
      )
    )
    self.assertAlmostEqual(
      evals.compute_sequence_match_accuracy(sequence1, sequence2),
      _brute_force_accuracy(sequence1, sequence2),
    )

  @settings(max_examples=100, deadline=None)
  @given(st.data())
  def test_properties(self, data):
    sequence1 = data.draw(labels)
    sequence2 = data.draw(
      st.lists(
        st.integers(0, 5), min_size=len(sequence1), max_size=len(sequence1)
      )
    )
    accuracy = evals.compute_sequence_match_accuracy(sequence1, sequence2)
    num_max = max(len(set(sequence1)), len(set(sequence2)))
    self.assertGreaterEqual(accuracy, 1 / num_max - 1e-12)
    self.assertLessEqual(accuracy, 1.0)
    # Symmetric, and blind to how either side names its speakers.
    self.assertEqual(
      evals.compute_sequence_match_accuracy(sequence2, sequence1), accuracy
    )
    permutation = data.draw(st.permutations(range(6)))
    renamed1 = [f'spk{permutation[k]}' for k in sequence1]
    renamed2 = [permutation[k] * 10 for k in sequence2]
    self.assertEqual(
      evals.compute_sequence_match_accuracy(renamed1, sequence2), accuracy
    )
    self.assertEqual(
      evals.compute_sequence_match_accuracy(sequence1, renamed2), accuracy
    )
    # Identical partitions score 1.
    self.assertEqual(
      evals.compute_sequence_match_accuracy(sequence1, renamed1), 1.0
    )

  def test_matches_reference(self):
    reference = pytest.importorskip('uisrnn.evals')
    rng = np.random.default_rng(0)
    for _ in range(30):
      n = int(rng.integers(1, 50))
      sequence1 = rng.integers(0, 6, size=n).tolist()
      sequence2 = [f's{k}' for k in rng.integers(0, 4, size=n)]
      self.assertAlmostEqual(
        evals.compute_sequence_match_accuracy(sequence1, sequence2),
        reference.compute_sequence_match_accuracy(sequence1, sequence2),
      )


class FrameAccuracyTest(parameterized.TestCase):
  def test_arrays(self):
    reference = np.array(['a', 'a', 'b', 'b'])
    self.assertEqual(
      evals.frame_accuracy(reference, np.array([7, 7, 7, 3])), 0.75
    )
    self.assertEqual(
      evals.frame_accuracy(reference, np.array([1, 1, 0, 0], np.int32)), 1.0
    )
    self.assertEqual(evals.frame_accuracy(list(reference), (2, 2, 5, 5)), 1.0)

  def test_large_input_is_fast_and_right(self):
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 8, size=100_000)
    permutation = rng.permutation(8)
    hypothesis = permutation[reference]
    hypothesis[:1000] = (hypothesis[:1000] + 1) % 8
    self.assertAlmostEqual(evals.frame_accuracy(reference, hypothesis), 0.99)

  @parameterized.named_parameters(
    ('empty', [], []),
    ('lengths', [1, 2], [1]),
    ('two_d', np.zeros((2, 2)), np.zeros((2, 2))),
  )
  def test_errors(self, reference, hypothesis):
    with self.assertRaises(ValueError):
      evals.frame_accuracy(reference, hypothesis)


if __name__ == '__main__':
  absltest.main()
