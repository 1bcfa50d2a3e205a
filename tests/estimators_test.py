"""Tests for uisrnn_jax.estimators."""

import itertools
import math

import numpy as np
import pytest
from absl.testing import absltest, parameterized
from hypothesis import given, settings
from hypothesis import strategies as st

from uisrnn_jax import estimators

# Lists of label sequences over a small alphabet, so speakers recur.
label_sequences = st.lists(
  st.lists(st.sampled_from('abcd'), max_size=25), max_size=4
)

# The reference contrib's docstring example, split into its two sequences.
CONTRIB_EXAMPLE = [
  '0_0 0_0 0_1 0_1 0_1 0_0 0_0'.split(),
  '1_0 1_0 1_0 1_1 1_1 1_1 1_0 1_0 1_0 1_2 1_2 1_2'.split(),
]


def _slow_crp_log_likelihood(cluster_ids, alpha, include_constant=False):
  """The CRP likelihood by its definition, one change at a time."""
  total = 0.0
  for labels in cluster_ids:
    turns = [k for k, _ in itertools.groupby(labels)]
    counts = {}
    for previous, current in zip([None, *turns], turns):
      if previous is not None:
        others = sum(n for k, n in counts.items() if k != previous)
        numerator = counts.get(current, 0)
        if numerator:
          total += math.log(numerator) if include_constant else 0.0
        else:
          total += math.log(alpha)
        total -= math.log(others + alpha)
      counts[current] = counts.get(current, 0) + 1
  return total


def _restricted_growth_turns(num_turns):
  """All turn sequences (first-appearance speaker codes) of a given length."""

  def extend(prefix, num_speakers):
    if len(prefix) == num_turns:
      yield prefix
      return
    for k in range(num_speakers + 1):
      if k != prefix[-1]:
        yield from extend(prefix + [k], max(num_speakers, k + 1))

  yield from extend([0], 1)


class TransitionBiasTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ('no_sequences', [], 1.0, 0.5, 2.0),
    ('empty_sequence', [[]], 1.0, 0.5, 2.0),
    ('one_label', [['a']], 1.0, 0.5, 2.0),
    ('one_speaker', [['a', 'a', 'a']], 1.0, 1 / 4, 4.0),
    ('always_changing', [['a', 'b', 'a', 'b']], 1.0, 4 / 5, 5.0),
    # 1 change, 3 transitions; the boundary 'b' | 'b' and 'b' | 'c' are not
    # transitions.
    ('multiple', [['a', 'a', 'b'], ['b', 'b'], ['c']], 1.0, 2 / 5, 5.0),
    ('no_cross_boundary', [['a', 'a'], ['b', 'b']], 1.0, 1 / 4, 4.0),
    ('smooth_half', [['a', 'a', 'a', 'b', 'b']], 0.5, 0.3, 5.0),
    ('unsmoothed', [['a', 'b', 'b', 'b', 'b']], 0.0, 0.25, 4.0),
    ('smooth_int', [['a', 'b']], 2, 3 / 5, 5.0),
  )
  def test_hand_counted(self, cluster_ids, smooth, p0, denominator):
    got = estimators.estimate_transition_bias(cluster_ids, smooth)
    self.assertAlmostEqual(got[0], p0, places=12)
    self.assertEqual(got[1], denominator)
    self.assertIsInstance(got[0], float)
    self.assertIsInstance(got[1], float)

  def test_accepts_arrays_and_tuples(self):
    expected = estimators.estimate_transition_bias([['a', 'b', 'b'], ['c']])
    variants = [
      [np.array(['a', 'b', 'b']), np.array(['c'])],
      (('a', 'b', 'b'), ('c',)),
      [np.array(['a', 'b', 'b'], dtype=object), ['c']],
      np.array([['a', 'b', 'b']]),  # 2-D: one row per sequence
    ]
    for cluster_ids in variants[:3]:
      self.assertEqual(
        estimators.estimate_transition_bias(cluster_ids), expected
      )
    self.assertEqual(
      estimators.estimate_transition_bias(variants[3]), (2 / 4, 4.0)
    )

  def test_default_is_the_papers_formula(self):
    rng = np.random.default_rng(0)
    seqs = [rng.choice(list('xyz'), size=n) for n in (0, 1, 7, 30)]
    changes = sum(int(np.sum(s[1:] != s[:-1])) for s in seqs if s.size)
    transitions = sum(max(s.size - 1, 0) for s in seqs)
    p0, denominator = estimators.estimate_transition_bias(seqs)
    self.assertAlmostEqual(p0, (1 + changes) / (2 + transitions))
    self.assertEqual(denominator, 2 + transitions)

  @parameterized.named_parameters(
    ('flat_list', ['a', 'b']),
    ('flat_array', np.array(['a', 'b'])),
    ('string', 'ab'),
    ('none', None),
    ('set', {('a',)}),
    ('flat_int_array', np.array([1, 2, 2])),
    ('unhashable_label', [[['a'], ['a']]]),
    ('nested_too_deep', [np.array([['a']])]),
    ('generator_sequence', [iter(['a'])]),
  )
  def test_type_errors(self, cluster_ids):
    with self.assertRaisesRegex(TypeError, 'label|list'):
      estimators.estimate_transition_bias(cluster_ids)

  @parameterized.named_parameters(
    ('ints', [[1, 1, 2, 1], [5, 5]]),
    ('int_array', [np.array([1, 1, 2, 1]), np.array([5, 5])]),
    ('float_array', [np.array([0.5, 0.5, 2.0, 0.5]), np.array([1.0, 1.0])]),
    ('mixed', [['a', 'a', 2, 'a'], [None, None]]),
    ('bytes', [[b'x', b'x', b'y', b'x'], [b'z', b'z']]),
    ('tuples', [[(0, 1), (0, 1), (1,), (0, 1)], [(), ()]]),
    ('object_array', [np.array(['a', 'a', 3, 'a'], dtype=object), ['q', 'q']]),
    ('int_and_float_are_equal', [[1, 1.0, 2, True], [0, 0.0]]),
  )
  def test_any_hashable_labels(self, cluster_ids):
    # The same turn structure as the string labels below; the seed compares
    # labels with Python's == and accepts any type.
    strings = [['a', 'a', 'b', 'a'], ['c', 'c']]
    self.assertEqual(
      estimators.estimate_transition_bias(cluster_ids),
      estimators.estimate_transition_bias(strings),
    )
    self.assertEqual(
      estimators.estimate_transition_bias(cluster_ids), ((1 + 2) / (2 + 4), 6.0)
    )
    self.assertEqual(
      estimators.crp_log_likelihood(cluster_ids, 0.7),
      estimators.crp_log_likelihood(strings, 0.7),
    )
    self.assertEqual(
      estimators.estimate_crp_alpha_closed_form(cluster_ids),
      estimators.estimate_crp_alpha_closed_form(strings),
    )

  def test_unhashable_label_message(self):
    with self.assertRaisesRegex(TypeError, r'cluster_ids\[0\].*hashable'):
      estimators.estimate_transition_bias([[{'a': 1}]])

  def test_flat_input_message_suggests_wrapping(self):
    with self.assertRaisesRegex(TypeError, r'wrap it: \[cluster_ids\]'):
      estimators.estimate_transition_bias(['a', 'a', 'b'])

  @parameterized.named_parameters(
    ('negative', -1.0),
    ('nan', float('nan')),
    ('inf', float('inf')),
  )
  def test_bad_smooth(self, smooth):
    with self.assertRaisesRegex(ValueError, 'smooth'):
      estimators.estimate_transition_bias([['a', 'b']], smooth)

  def test_smooth_type(self):
    with self.assertRaises(TypeError):
      estimators.estimate_transition_bias([['a', 'b']], '1')

  def test_unsmoothed_without_transitions(self):
    with self.assertRaisesRegex(ValueError, 'without any transition'):
      estimators.estimate_transition_bias([['a'], []], smooth=0)

  @settings(max_examples=50, deadline=None)
  @given(label_sequences, st.floats(0.1, 5.0))
  def test_in_unit_interval(self, cluster_ids, smooth):
    p0, denominator = estimators.estimate_transition_bias(cluster_ids, smooth)
    self.assertGreater(p0, 0.0)
    self.assertLess(p0, 1.0)
    self.assertGreaterEqual(denominator, 2 * smooth)

  def test_matches_reference(self):
    utils = pytest.importorskip('uisrnn.utils')
    rng = np.random.default_rng(1)
    for _ in range(20):
      seqs = [
        rng.choice(list('abc'), size=rng.integers(0, 15))
        for _ in range(rng.integers(0, 5))
      ]
      for smooth in (1, 0.5):
        want = utils.estimate_transition_bias(seqs, smooth)
        got = estimators.estimate_transition_bias(seqs, smooth)
        self.assertAlmostEqual(got[0], want[0], places=12)
        self.assertAlmostEqual(got[1], want[1], places=12)


class CombineTransitionBiasTest(parameterized.TestCase):
  def test_first_call(self):
    self.assertEqual(
      estimators.combine_transition_bias(None, 0.0, 0.25, 4.0), (0.25, 4.0)
    )

  def test_weighted_by_denominators(self):
    p0, denominator = estimators.combine_transition_bias(0.5, 2.0, 0.25, 6.0)
    self.assertAlmostEqual(p0, 0.3125)
    self.assertEqual(denominator, 8.0)

  def test_pools_counts_and_pseudo_counts(self):
    a = [['a', 'a', 'b', 'b'], ['c']]
    b = [['x', 'y', 'x'], ['z', 'z', 'z', 'z']]
    p0, denominator = estimators.combine_transition_bias(
      *estimators.estimate_transition_bias(a),
      *estimators.estimate_transition_bias(b),
    )
    # Changes 1 + 2, transitions 3 + 5, pseudo-counts of both calls.
    self.assertAlmostEqual(p0, (2 + 3) / (4 + 8))
    self.assertEqual(denominator, 12.0)

  def test_zero_running_denominator(self):
    self.assertEqual(
      estimators.combine_transition_bias(0.9, 0.0, 0.2, 5.0), (0.2, 5.0)
    )

  @parameterized.named_parameters(
    ('negative_a', (0.5, -1.0, 0.5, 1.0)),
    ('negative_b', (0.5, 1.0, 0.5, -1.0)),
    ('both_zero', (0.5, 0.0, 0.5, 0.0)),
    ('nan', (0.5, 1.0, float('nan'), 1.0)),
  )
  def test_errors(self, args):
    with self.assertRaises(ValueError):
      estimators.combine_transition_bias(*args)


class CrpLogLikelihoodTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ('no_sequences', [], 0.0),
    ('empty', [[]], 0.0),
    ('one_label', [['a']], 0.0),
    ('one_speaker', [['a', 'a', 'a']], 0.0),
    # The first change is always to a new speaker: alpha / alpha.
    ('one_change', [['a', 'a', 'b']], 0.0),
    ('return', [['a', 'b', 'a']], -math.log(1.3)),
    # a b c: alpha/alpha * alpha/(1 + alpha).
    ('two_joins', [['a', 'b', 'c']], math.log(0.3 / 1.3)),
    # a b a b: returns after 1 and 1 other turns.
    ('alternating', [['a', 'b', 'a', 'b']], -2 * math.log(1.3)),
    # log(alpha) - 3 log(1 + alpha), summed over the two sequences.
    ('contrib_example', CONTRIB_EXAMPLE, math.log(0.3) - 3 * math.log(1.3)),
    ('two_sequences', [['a', 'b', 'a'], ['a', 'b', 'a']], -2 * math.log(1.3)),
  )
  def test_hand_computed(self, cluster_ids, expected):
    got = estimators.crp_log_likelihood(cluster_ids, 0.3)
    self.assertAlmostEqual(got, expected, places=12)
    self.assertIsInstance(got, float)

  def test_include_constant(self):
    # a b a c b: b returns to a (1 turn of 2 others), then c joins, then b
    # returns with 1 earlier turn: log(1) twice, so use a longer history:
    # a b a b c a -> returns to a (N_a=1), b (N_b=1), a (N_a=2).
    labels = [list('ababca')]
    alpha = 0.7
    without = estimators.crp_log_likelihood(labels, alpha)
    with_constant = estimators.crp_log_likelihood(
      labels, alpha, include_constant=True
    )
    self.assertAlmostEqual(with_constant - without, math.log(2))
    self.assertAlmostEqual(
      with_constant, _slow_crp_log_likelihood(labels, alpha, True)
    )

  @parameterized.parameters(2, 3, 4, 5, 6)
  def test_probabilities_sum_to_one(self, num_turns):
    for alpha in (0.2, 1.0, 3.0):
      total = sum(
        math.exp(
          estimators.crp_log_likelihood(
            [[str(k) for k in turns]], alpha, include_constant=True
          )
        )
        for turns in _restricted_growth_turns(num_turns)
      )
      self.assertAlmostEqual(total, 1.0, places=12)

  def test_array_of_alphas(self):
    alphas = np.array([0.1, 0.5, 2.0])
    got = estimators.crp_log_likelihood(CONTRIB_EXAMPLE, alphas)
    self.assertEqual(got.shape, (3,))
    np.testing.assert_allclose(got, np.log(alphas) - 3 * np.log1p(alphas))

  @settings(max_examples=60, deadline=None)
  @given(label_sequences, st.floats(0.01, 10.0), st.booleans())
  def test_matches_definition(self, cluster_ids, alpha, include_constant):
    got = estimators.crp_log_likelihood(
      cluster_ids, alpha, include_constant=include_constant
    )
    want = _slow_crp_log_likelihood(cluster_ids, alpha, include_constant)
    self.assertAlmostEqual(got, want, delta=1e-9 * max(1.0, abs(want)))

  def test_long_sequence_is_finite(self):
    labels = [[f's{i % 3}' for i in range(5000)]]
    got = estimators.crp_log_likelihood(labels, 0.5)
    self.assertTrue(np.isfinite(got))
    self.assertAlmostEqual(
      got, _slow_crp_log_likelihood(labels, 0.5), delta=1e-9 * abs(got)
    )

  @parameterized.parameters(0.0, -1.0, float('nan'), float('inf'))
  def test_bad_alpha(self, alpha):
    with self.assertRaisesRegex(ValueError, 'alpha'):
      estimators.crp_log_likelihood([['a', 'b']], alpha)

  def test_matches_reference_contrib(self):
    contrib = pytest.importorskip('uisrnn.contrib.range_search_crp_alpha')
    rng = np.random.default_rng(2)
    for _ in range(30):
      seqs, flat = _random_concatenated(rng)
      for alpha in (0.05, 0.5, 0.95):
        self.assertAlmostEqual(
          estimators.crp_log_likelihood(seqs, alpha),
          contrib._get_cdf(flat, alpha),
          places=9,
        )


def _random_concatenated(rng, max_sequences=4, max_turns=12):
  """Random sequences, and the contrib's concatenated '<seq>_<spk>' form.

  The last label is repeated, because the contrib ignores the last label.
  """
  seqs, flat = [], []
  for s in range(rng.integers(1, max_sequences + 1)):
    num_turns = rng.integers(1, max_turns + 1)
    speakers = rng.integers(0, rng.integers(1, 6), size=num_turns)
    labels = np.repeat(speakers, rng.integers(1, 4, size=num_turns))
    seqs.append([f'spk{k}' for k in labels])
    flat.extend(f'{s}_{k}' for k in labels)
  seqs[-1].append(seqs[-1][-1])
  flat.append(flat[-1])
  return seqs, np.array(flat)


class RangeSearchTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ('contrib_example', CONTRIB_EXAMPLE, 0.5),
    # Flat likelihoods: the first grid point, as in the reference.
    ('no_sequences', [], 0.01),
    ('empty', [[]], 0.01),
    ('one_speaker', [['a', 'a']], 0.01),
    ('one_change', [['a', 'b', 'b']], 0.01),
    # Only returns: decreasing in alpha.
    ('alternating', [['a', 'b', 'a', 'b', 'a']], 0.01),
    # Only joins: increasing in alpha, so the last grid point.
    ('always_new', [['a', 'b', 'c', 'd']], 0.99),
    # log a - 2 log(1 + a) - log(2 + a): maximum at (sqrt(5) - 1) / 2.
    ('golden', [['a', 'b', 'a', 'b', 'c']], 0.62),
  )
  def test_hand_computed(self, cluster_ids, expected):
    self.assertEqual(
      estimators.estimate_crp_alpha_range_search(cluster_ids), expected
    )

  @parameterized.named_parameters(
    ('default', 1.0, 0.01, 0.99),
    ('coarse', 0.5, 0.1, 0.4),
    ('int_range', 2, 0.5, 1.5),
    # The reference's grid, float rounding included: 0.3 / 0.1 = 2.99...
    ('rounding_down', 0.3, 0.1, 0.2),
    ('rounding_step', 1.0, 0.3, 3 * 0.3),
    ('single_point', 0.015, 0.01, 0.01),
  )
  def test_grid(self, search_range, search_step, largest):
    always_new = [['a', 'b', 'c', 'd', 'e']]
    self.assertEqual(
      estimators.estimate_crp_alpha_range_search(
        always_new, search_range, search_step
      ),
      largest,
    )

  @parameterized.named_parameters(
    ('zero_step', 1.0, 0.0),
    ('negative_step', 1.0, -0.1),
    ('empty_grid', 0.01, 0.01),
    ('range_below_step', 0.1, 0.5),
    ('nan_range', float('nan'), 0.1),
    ('inf_step', 1.0, float('inf')),
  )
  def test_bad_search_params(self, search_range, search_step):
    with self.assertRaisesRegex(ValueError, 'search'):
      estimators.estimate_crp_alpha_range_search(
        [['a', 'b']], search_range, search_step
      )

  def test_search_param_types(self):
    with self.assertRaises(TypeError):
      estimators.estimate_crp_alpha_range_search([['a']], '1', 0.1)
    with self.assertRaises(TypeError):
      estimators.estimate_crp_alpha_range_search([['a']], 1.0, None)

  def test_no_underflow(self):
    # 3 speakers in turn, 2000 changes: the reference's product of factors
    # overflows here; the log-space search still finds the maximum.
    labels = [[f's{i % 3}' for i in range(2001)]]
    got = estimators.estimate_crp_alpha_range_search(labels)
    grid = np.arange(1, 100) * 0.01
    slow = [_slow_crp_log_likelihood(labels, a) for a in grid]
    self.assertEqual(got, grid[int(np.argmax(slow))])
    self.assertTrue(np.all(np.isfinite(slow)))

  def test_reference_underflows_where_we_do_not(self):
    contrib = pytest.importorskip('uisrnn.contrib.range_search_crp_alpha')
    flat = np.array([f'0_{i % 3}' for i in range(400)] + ['0_0'])
    with np.errstate(all='ignore'):
      self.assertTrue(np.isnan(contrib.estimate_crp_alpha(flat)))
    got = estimators.estimate_crp_alpha(flat)
    self.assertTrue(0.01 <= got <= 0.99)

  def test_matches_reference_contrib(self):
    contrib = pytest.importorskip('uisrnn.contrib.range_search_crp_alpha')
    rng = np.random.default_rng(3)
    for _ in range(40):
      seqs, flat = _random_concatenated(rng)
      want = contrib.estimate_crp_alpha(flat)
      self.assertEqual(estimators.estimate_crp_alpha_range_search(seqs), want)
      self.assertEqual(estimators.estimate_crp_alpha(flat), want)
    seqs, flat = _random_concatenated(rng)
    self.assertEqual(
      estimators.estimate_crp_alpha(flat, 0.7, 0.07),
      contrib.estimate_crp_alpha(flat, 0.7, 0.07),
    )


class ConcatenatedAdapterTest(parameterized.TestCase):
  def test_contrib_docstring_example(self):
    flat = np.array(
      [f'0_{k}' for k in '0011100'] + [f'1_{k}' for k in '000111000222']
    )
    self.assertEqual(estimators.estimate_crp_alpha(flat), 0.5)
    self.assertEqual(estimators.estimate_crp_alpha(list(flat)), 0.5)

  def test_splits_on_sequence_prefix_runs(self):
    flat = ['0_a', '0_b', '0_a', '1_a', '1_b', '1_c']
    want = estimators.estimate_crp_alpha_range_search(
      [['a', 'b', 'a'], ['a', 'b', 'c']]
    )
    self.assertEqual(estimators.estimate_crp_alpha(flat), want)

  def test_speaker_ids_may_contain_underscores(self):
    flat = ['s1_alice_x', 's1_bob', 's1_alice_x', 's1_bob', 's1_carol']
    self.assertEqual(estimators.estimate_crp_alpha(flat), 0.62)

  def test_uses_the_last_label(self):
    # The join of '2' is the last label: the reference ignores it (and gets
    # 0.01, as for a b a b); we do not.
    flat = np.array(['0_0', '0_1', '0_0', '0_1', '0_2'])
    self.assertEqual(estimators.estimate_crp_alpha(flat), 0.62)
    contrib = pytest.importorskip('uisrnn.contrib.range_search_crp_alpha')
    self.assertEqual(contrib.estimate_crp_alpha(flat), 0.01)

  def test_empty(self):
    self.assertEqual(estimators.estimate_crp_alpha([]), 0.01)

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, '<seq>_<speaker>'):
      estimators.estimate_crp_alpha(['0_0', 'oops'])
    with self.assertRaisesRegex(TypeError, 'string'):
      estimators.estimate_crp_alpha(np.array([1, 2]))
    with self.assertRaisesRegex(TypeError, '1-D'):
      estimators.estimate_crp_alpha(np.array([['0_0']]))
    with self.assertRaises(TypeError):
      estimators.estimate_crp_alpha('0_0')
    with self.assertRaises(ValueError):
      estimators.estimate_crp_alpha(['0_0', '0_1'], search_step=0)


class ClosedFormTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ('no_sequences', [], 1 / 2),
    ('empty', [[]], 1 / 2),
    ('one_label', [['a']], 1 / 2),
    ('one_speaker', [['a', 'a', 'a']], 1 / 2),
    ('one_join', [['a', 'b']], 2 / 3),
    ('alternating', [['a', 'b', 'a', 'b']], 2 / 5),
    ('always_new', [['a', 'b', 'c', 'd']], 4 / 5),
    ('multiple', [['a', 'b', 'a', 'c'], ['x', 'x']], 3 / 5),
    # Each sequence starts afresh: 'b' in the second is a join again, and
    # the boundary 'a' | 'b' is no change.
    ('per_sequence', [['a', 'b', 'a'], ['b', 'a']], 3 / 5),
    ('contrib_example', CONTRIB_EXAMPLE, (3 + 1) / (5 + 2)),
  )
  def test_hand_counted(self, cluster_ids, expected):
    self.assertAlmostEqual(
      estimators.estimate_crp_alpha_closed_form(cluster_ids), expected
    )

  @settings(max_examples=50, deadline=None)
  @given(label_sequences, st.randoms(use_true_random=False))
  def test_counts_and_relabeling(self, cluster_ids, random):
    got = estimators.estimate_crp_alpha_closed_form(cluster_ids)
    joins = sum(len(set(s)) - 1 for s in cluster_ids if s)
    changes = sum(len(list(itertools.groupby(s))) - 1 for s in cluster_ids if s)
    self.assertAlmostEqual(got, (joins + 1) / (changes + 2))
    self.assertTrue(0 < got < 1)
    names = list('abcd')
    renamed = dict(zip(names, random.sample(names, 4)))
    self.assertAlmostEqual(
      estimators.estimate_crp_alpha_closed_form(
        [[renamed[x] for x in s] for s in cluster_ids]
      ),
      got,
    )

  def test_type_errors(self):
    with self.assertRaises(TypeError):
      estimators.estimate_crp_alpha_closed_form(['a', 'b'])
    with self.assertRaises(TypeError):
      estimators.estimate_crp_alpha_closed_form([[[0], [1]]])


if __name__ == '__main__':
  absltest.main()
