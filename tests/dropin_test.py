"""``import uisrnn_jax as uisrnn`` runs code written for uisrnn 0.1.2.

Three kinds of tests:

* Public names: every public name of the seed's modules exists in ours,
  of the same kind, and every function takes the seed's parameters under the
  seed's names and positions (needs the seed, the ``reference`` extra).
* Behaviour on small cases: hand-computed expected values, so they run
  without the seed, and the same calls on the seed where it is installed.
* ``UISRNN.online_predict``: pushing a sequence in chunks ends with the
  labels of ``predict`` with ``test_iteration=1``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import os
import random
import types
from importlib import metadata
from unittest import mock

import numpy as np
from absl.testing import absltest, parameterized

import uisrnn_jax
from uisrnn_jax import errors

try:
  import torch
except ImportError:  # the torch extra is optional
  torch = None

try:
  import uisrnn as seed

  SEED_VERSION = metadata.version('uisrnn')
except ImportError:  # the reference extra is optional
  seed, SEED_VERSION = None, None

NEEDS_SEED = (
  "the seed (pip install 'uisrnn-jax[reference]', uisrnn 0.1.2) is not "
  'installed; only the hand-computed expectations run'
)
NEEDS_TORCH = "torch (pip install 'uisrnn-jax[torch]') is not installed"

# Seed module -> ours.
MODULES = {
  'uisrnn': 'uisrnn_jax',
  'uisrnn.utils': 'uisrnn_jax.utils',
  'uisrnn.evals': 'uisrnn_jax.evals',
  'uisrnn.arguments': 'uisrnn_jax.arguments',
  'uisrnn.loss_func': 'uisrnn_jax.loss_func',
  'uisrnn.contrib.range_search_crp_alpha': (
    'uisrnn_jax.contrib.range_search_crp_alpha'
  ),
}


def public_names(module: types.ModuleType) -> dict[str, object]:
  """Public names a module defines, without the modules it merely imports.

  ``np``, ``torch`` or ``optimize`` in a seed module are imports, not API;
  the seed package's own submodules (``uisrnn.utils``) are API.
  """
  names = {}
  for name in dir(module):
    if name.startswith('_'):
      continue
    value = getattr(module, name)
    if isinstance(value, types.ModuleType) and not value.__name__.startswith(
      ('uisrnn.', 'uisrnn_jax.')
    ):
      continue
    names[name] = value
  return names


@contextlib.contextmanager
def global_rng_untouched(test: absltest.TestCase):
  """Asserts the block leaves Python's and NumPy's global RNGs as they were."""
  python_state, numpy_state = random.getstate(), np.random.get_state()
  yield
  test.assertEqual(random.getstate(), python_state)
  after = np.random.get_state()
  test.assertTrue(np.array_equal(after[1], numpy_state[1]))
  test.assertEqual(after[2:], numpy_state[2:])


@absltest.skipIf(seed is None, NEEDS_SEED)
class PublicNamesTest(parameterized.TestCase):
  """Every public name of the seed's modules, in ours, alike."""

  def test_seed_version(self):
    self.assertEqual(SEED_VERSION, '0.1.2')

  @parameterized.named_parameters(
    (name.replace('.', '_'), name, ours) for name, ours in MODULES.items()
  )
  def test_same_public_names(self, seed_name, our_name):
    theirs = public_names(importlib.import_module(seed_name))
    ours = importlib.import_module(our_name)
    self.assertNotEmpty(theirs)
    missing = sorted(name for name in theirs if not hasattr(ours, name))
    self.assertEmpty(missing, f'{our_name} lacks {missing} of {seed_name}')
    for name, value in theirs.items():
      with self.subTest(name=name):
        mine = getattr(ours, name)
        if isinstance(value, types.ModuleType):
          self.assertIsInstance(mine, types.ModuleType)
        elif inspect.isclass(value):
          self.assertTrue(inspect.isclass(mine), name)
        else:
          self.assertTrue(callable(mine), name)
          self.assert_accepts_seed_parameters(value, mine)

  def assert_accepts_seed_parameters(self, theirs, mine):
    """Every seed parameter exists in ours, by name, at the same position."""
    their_params = list(inspect.signature(theirs).parameters.values())
    my_params = inspect.signature(mine).parameters
    my_positional = [
      p.name
      for p in my_params.values()
      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    for i, param in enumerate(their_params):
      self.assertIn(param.name, my_params, f'{mine.__qualname__}')
      self.assertEqual(my_positional[i], param.name, mine.__qualname__)
      if param.default is inspect.Parameter.empty:
        continue
      self.assertEqual(
        my_params[param.name].default, param.default, mine.__qualname__
      )
    # Our extra parameters are optional, so seed-style calls bind.
    for name, param in my_params.items():
      if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
        continue
      if name not in {p.name for p in their_params}:
        self.assertIsNot(param.default, inspect.Parameter.empty, name)

  def test_uisrnn_module_holds_the_class(self):
    self.assertIs(uisrnn_jax.uisrnn.UISRNN, uisrnn_jax.UISRNN)
    self.assertIs(
      uisrnn_jax.uisrnn.parallel_predict, uisrnn_jax.parallel_predict
    )


class EvalsTest(parameterized.TestCase):
  def test_get_list_inverse_index(self):
    # The seed's own example: mixed types are fine.
    self.assertEqual(
      uisrnn_jax.evals.get_list_inverse_index(['a', 3, 'abc']),
      {'a': 0, 3: 1, 'abc': 2},
    )
    # A repeated value keeps its last position.
    self.assertEqual(
      uisrnn_jax.evals.get_list_inverse_index(['x', 'y', 'x']), {'x': 2, 'y': 1}
    )
    self.assertEqual(uisrnn_jax.evals.get_list_inverse_index([]), {})

  @parameterized.parameters(('ab',), (('a', 'b'),), (np.array([1, 2]),))
  def test_get_list_inverse_index_needs_a_list(self, value):
    with self.assertRaisesRegex(TypeError, 'list'):
      uisrnn_jax.evals.get_list_inverse_index(value)

  @absltest.skipIf(seed is None, NEEDS_SEED)
  def test_get_list_inverse_index_parity(self):
    for ids in (['a', 3, 'abc'], ['x', 'y', 'x'], [2.5, 1, (1, 2)], []):
      self.assertEqual(
        uisrnn_jax.evals.get_list_inverse_index(ids),
        seed.evals.get_list_inverse_index(ids),
      )

  # (sequence1, sequence2, accuracy by hand)
  ACCURACY_CASES = (
    ([0, 0, 1, 2, 2], [3, 3, 4, 4, 1], 0.8),
    ([0, 0, 1, 2, 2], [3, 3, 4, 1, 1], 1.0),
    ([1, 1], [1, 2], 0.5),
    (['a', 'b', 'b', 'a'], [7, 7, 8, 8], 0.5),
    ([1.5, 1.5, 2.0], [True, False, False], 2 / 3),
    ([np.int64(4), np.int64(4), 5], ['x', 'x', 'y'], 1.0),
  )

  def test_compute_sequence_match_accuracy(self):
    for first, second, expected in self.ACCURACY_CASES:
      self.assertAlmostEqual(
        uisrnn_jax.compute_sequence_match_accuracy(first, second), expected
      )

  @absltest.skipIf(seed is None, NEEDS_SEED)
  def test_compute_sequence_match_accuracy_parity(self):
    for first, second, _ in self.ACCURACY_CASES:
      self.assertAlmostEqual(
        uisrnn_jax.compute_sequence_match_accuracy(first, second),
        seed.compute_sequence_match_accuracy(first, second),
      )


class UtilsTest(parameterized.TestCase):
  """The seed's utils, called as the seed's own tests call them."""

  def test_resize_sequence_integers(self):
    # The seed's utils_test: integer observations, integer cluster ids.
    subs, lengths = uisrnn_jax.utils.resize_sequence(
      sequence=np.array([[1, 1], [2, 2], [3, 3]]),
      cluster_id=np.array([1, 2, 1]),
      num_permutations=None,
    )
    self.assertEqual([s.tolist() for s in subs], [[[1, 1], [3, 3]], [[2, 2]]])
    self.assertEqual(lengths, [3, 2])

  def test_resize_sequence_integers_permuted(self):
    with global_rng_untouched(self):
      subs, lengths = uisrnn_jax.utils.resize_sequence(
        sequence=np.array([[1, 1], [2, 2], [3, 3]]),
        cluster_id=np.array([1, 2, 1]),
        num_permutations=2,
        rng=np.random.default_rng(0),
      )
    self.assertLen(subs, 4)
    for sub in subs[:2]:  # speaker 1: two runs, [1, 1] and [3, 3]
      self.assertIn(sub.tolist(), ([[1, 1], [3, 3]], [[3, 3], [1, 1]]))
    self.assertEqual([s.tolist() for s in subs[2:]], [[[2, 2]]] * 2)
    self.assertEqual(lengths, [3, 3, 2, 2])

  @parameterized.named_parameters(
    ('int_list', [10, -3, 10, 7], [[-3], [0, 2], [7]]),
    ('float_array', np.array([0.5, 0.25, 0.5, 9.0]), [[0.25], [0, 2], [9.0]]),
    ('str_list', ['b', 'a', 'b', 'c'], [['a'], ['b', 'b'], ['c']]),
    ('numpy_ints', list(np.array([3, 1, 3, 2])), [[1], [3, 3], [2]]),
  )
  def test_resize_sequence_label_types(self, labels, groups):
    # Sub-sequences come in sorted label order; rows hold their index.
    sequence = np.arange(4)[:, None] * np.ones((1, 2))
    subs, lengths = uisrnn_jax.utils.resize_sequence(sequence, labels)
    del groups  # (labels by group, for the reader)
    order = sorted(set(np.asarray(labels).tolist()))
    expected = [
      [i for i, x in enumerate(np.asarray(labels).tolist()) if x == label]
      for label in order
    ]
    self.assertEqual([s[:, 0].astype(int).tolist() for s in subs], expected)
    self.assertEqual(lengths, [len(e) + 1 for e in expected])

  @parameterized.named_parameters(
    ('mixed', np.zeros((2, 1)), ['1', 1], errors.LabelsTypeError),
    ('none', np.zeros((2, 1)), [None, None], errors.LabelsTypeError),
    ('tuples', np.zeros((2, 1)), [(0,), (1,)], errors.LabelsTypeError),
    ('too_few', np.zeros((2, 1)), [1], errors.InvalidLabelsError),
    ('strings', np.zeros((2, 1)).astype(str), [1, 2], errors.SequenceTypeError),
    ('bools', np.zeros((2, 1), bool), [1, 2], errors.SequenceTypeError),
    ('list', [[0.0], [1.0]], [1, 2], errors.SequenceTypeError),
    ('nan', np.array([[0.0], [np.nan]]), [1, 2], errors.InvalidSequenceError),
  )
  def test_resize_sequence_errors(self, sequence, labels, error):
    with self.assertRaises(error):
      uisrnn_jax.utils.resize_sequence(sequence, labels)

  @absltest.skipIf(seed is None, NEEDS_SEED)
  def test_resize_sequence_parity(self):
    rng = np.random.default_rng(3)
    for sequence, labels in (
      (rng.integers(-5, 5, size=(9, 3)), rng.integers(0, 4, size=9)),
      (rng.normal(size=(9, 3)), rng.choice(['x', 'y', 'z'], size=9)),
      (
        rng.normal(size=(5, 2)).astype(np.float32),
        np.array([2.5, 1, 1, 2.5, 0]),
      ),
    ):
      theirs, their_lengths = seed.utils.resize_sequence(sequence, labels)
      ours, our_lengths = uisrnn_jax.utils.resize_sequence(sequence, labels)
      self.assertEqual(our_lengths, their_lengths)
      self.assertLen(ours, len(theirs))
      for mine, their in zip(ours, theirs):
        np.testing.assert_allclose(mine, their.astype(np.float32))

  # (cluster_ids, expected (p0, denominator) with smooth=1, by hand)
  BIAS_CASES = (
    ([[1, 1, 2], [3]], (0.5, 4.0)),
    ([np.array([0, 1, 0, 0])], ((1 + 2) / (2 + 3), 5.0)),
    ([['a', 'a', 'b'], np.array(['c', 'd'])], ((1 + 2) / (2 + 3), 5.0)),
    ([[1, 'a', 'a', None], [(1, 2), (1, 2)]], ((1 + 2) / (2 + 4), 6.0)),
    ([np.array([0.5, 0.5]), [True, 1, 1.0]], (1 / (2 + 3), 5.0)),
    ([], (0.5, 2.0)),
  )

  def test_estimate_transition_bias_any_labels(self):
    for cluster_ids, expected in self.BIAS_CASES:
      self.assertEqual(
        uisrnn_jax.utils.estimate_transition_bias(cluster_ids), expected
      )

  @absltest.skipIf(seed is None, NEEDS_SEED)
  def test_estimate_transition_bias_parity(self):
    for cluster_ids, _ in self.BIAS_CASES:
      for smooth in (1, 0.5):
        ours = uisrnn_jax.utils.estimate_transition_bias(cluster_ids, smooth)
        theirs = seed.utils.estimate_transition_bias(cluster_ids, smooth)
        np.testing.assert_allclose(ours, theirs)

  def test_estimate_transition_bias_rejects_flat_sequences(self):
    # The seed iterates over the characters of each label here (or fails on
    # ints); we refuse instead of answering wrongly.
    for flat in (['spk1', 'spk1', 'spk2'], np.array(['a', 'b']), [1, 1, 2]):
      with self.assertRaisesRegex(TypeError, 'label'):
        uisrnn_jax.utils.estimate_transition_bias(flat)

  def test_concatenate_training_data_numbers_without_uniqueness(self):
    sequence, labels = uisrnn_jax.utils.concatenate_training_data(
      [np.array([[1, 2]]), np.array([[3, 4], [5, 6]])],
      [[7], np.array([8, 7])],
      enforce_uniqueness=False,
      shuffle=False,
    )
    self.assertEqual(sequence.tolist(), [[1, 2], [3, 4], [5, 6]])
    self.assertEqual(labels, [7, 8, 7])
    # Uniqueness prefixes strings, so it needs them (the seed's join does).
    with self.assertRaises(TypeError):
      uisrnn_jax.utils.concatenate_training_data(
        [np.zeros((1, 2))], [[7]], enforce_uniqueness=True
      )

  def test_generate_random_string(self):
    with global_rng_untouched(self):
      first = uisrnn_jax.utils.generate_random_string(
        rng=np.random.default_rng(5)
      )
      again = uisrnn_jax.utils.generate_random_string(
        rng=np.random.default_rng(5)
      )
      long = uisrnn_jax.utils.generate_random_string(200)
    self.assertEqual(first, again)
    self.assertLen(first, 6)
    self.assertLen(long, 200)
    self.assertTrue(set(long) <= set('ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'))
    self.assertGreater(len(set(long)), 20)
    self.assertEqual(uisrnn_jax.utils.generate_random_string(0), '')

  @absltest.skipIf(torch is None, NEEDS_TORCH)
  def test_pack_sequence_by_hand(self):
    subs = [
      np.array([[1.0]]),
      np.array([[2.0], [3.0], [4.0]]),
      np.array([[5.0], [6.0]]),
    ]
    packed, truth = uisrnn_jax.utils.pack_sequence(
      subs, [2, 4, 3], None, 1, 'cpu'
    )
    # Longest first, behind one zero step: columns [0,2,3,4], [0,5,6,0], [0,1,0,0].
    expected = np.array(
      [[0, 0, 0], [2, 5, 1], [3, 6, 0], [4, 0, 0]], np.float32
    )
    padded, lengths = torch.nn.utils.rnn.pad_packed_sequence(packed)
    np.testing.assert_array_equal(padded[..., 0].numpy(), expected)
    self.assertEqual(lengths.tolist(), [4, 3, 2])
    np.testing.assert_array_equal(truth[..., 0].numpy(), expected[1:])
    self.assertEqual(truth.dtype, torch.float32)
    with global_rng_untouched(self):
      packed, truth = uisrnn_jax.utils.pack_sequence(
        subs, [2, 4, 3], 5, 1, 'cpu', rng=np.random.default_rng(0)
      )
    self.assertEqual(tuple(truth.shape[1:]), (5, 1))
    for b in range(5):  # each column is one of the sub-sequences
      column = [x for x in truth[:, b, 0].tolist() if x]
      self.assertIn(column, [[1.0], [2.0, 3.0, 4.0], [5.0, 6.0]])

  @absltest.skipIf(seed is None, NEEDS_SEED)
  def test_pack_sequence_parity(self):
    rng = np.random.default_rng(1)
    subs, lengths = seed.utils.resize_sequence(
      rng.normal(size=(12, 3)), rng.choice(list('abcd'), size=12)
    )
    chosen = np.array([0, 2, 2, 3, 1])

    class FixedDraw:  # our rng; the seed draws from np.random.choice
      def choice(self, n, size):
        del n, size
        return chosen

    with mock.patch.object(np.random, 'choice', lambda n, size: chosen):
      their_packed, their_truth = seed.utils.pack_sequence(
        subs, lengths, len(chosen), 3, 'cpu'
      )
    our_packed, our_truth = uisrnn_jax.utils.pack_sequence(
      subs, lengths, len(chosen), 3, 'cpu', rng=FixedDraw()
    )
    torch.testing.assert_close(our_packed.data, their_packed.data)
    self.assertEqual(
      our_packed.batch_sizes.tolist(), their_packed.batch_sizes.tolist()
    )
    torch.testing.assert_close(our_truth, their_truth)
    # batch_size=None is every sub-sequence once: the seed's batch with
    # np.random.choice returning every index (its own None path fails on
    # current torch: negatively strided lengths).
    every = np.arange(len(lengths))
    with mock.patch.object(np.random, 'choice', lambda n, size: every):
      their_packed, their_truth = seed.utils.pack_sequence(
        subs, lengths, len(every), 3, 'cpu'
      )
    our_packed, our_truth = uisrnn_jax.utils.pack_sequence(
      subs, lengths, None, 3, 'cpu'
    )
    torch.testing.assert_close(our_packed.data, their_packed.data)
    torch.testing.assert_close(our_truth, their_truth)


class StrictFitPredictTest(parameterized.TestCase):
  """What utils accept, fit and predict refuse with TypeError, as the seed."""

  def setUp(self):
    super().setUp()
    # The seed reads every flag, so start from the (shared) defaults.
    model_args, self.training_args, self.inference_args = (
      uisrnn_jax.parse_arguments([])
    )
    model_args.observation_dim, model_args.rnn_hidden_size = 2, 4
    model_args.transition_bias, model_args.verbosity = 0.3, 1
    model_args.enable_cuda = False
    self.training_args.train_iteration = 1
    self.inference_args.test_iteration = 1
    self.model_args = model_args

  def models(self):
    args = self.model_args
    yield uisrnn_jax.UISRNN(args)
    if seed is not None:
      yield seed.UISRNN(args)

  def test_fit_refuses_integer_labels_and_observations(self):
    training_args = self.training_args
    for model in self.models():
      with self.subTest(model=type(model).__module__):
        with self.assertRaises(TypeError):
          model.fit(np.zeros((3, 2)), np.array([1, 2, 1]), training_args)
        with self.assertRaises(TypeError):
          model.fit(
            np.zeros((3, 2), int), np.array(['a', 'b', 'a']), training_args
          )

  def test_predict_refuses_integer_observations(self):
    inference_args = self.inference_args
    for model in self.models():
      with self.subTest(model=type(model).__module__):
        with self.assertRaises(TypeError):
          model.predict(np.zeros((3, 2), int), inference_args)


class ArgumentsTest(parameterized.TestCase):
  @parameterized.parameters(
    ('yes', True), ('T', True), ('1', True), ('No', False), ('f', False)
  )
  def test_str2bool(self, text, expected):
    self.assertIs(uisrnn_jax.arguments.str2bool(text), expected)
    if seed is not None:
      self.assertIs(seed.arguments.str2bool(text), expected)

  def test_str2bool_rejects(self):
    with self.assertRaises(argparse.ArgumentTypeError):
      uisrnn_jax.arguments.str2bool('maybe')

  @absltest.skipIf(seed is None, NEEDS_SEED)
  def test_parse_arguments_parity(self):
    # The seed reads sys.argv only.
    for argv in (
      [],
      ['-l', '0.5', '--rnn_depth', '3', '-s', '4'],
      ['--enable_cuda', 'false', '--transition_bias', '0.2'],
    ):
      with mock.patch('sys.argv', ['prog', *argv]):
        theirs = seed.parse_arguments()
        ours_from_sys_argv = uisrnn_jax.parse_arguments()
      ours = uisrnn_jax.parse_arguments(argv)
      for mine, mine_sys, their in zip(ours, ours_from_sys_argv, theirs):
        self.assertEqual(vars(mine), vars(their))
        self.assertEqual(vars(mine_sys), vars(their))


class LossFuncTest(absltest.TestCase):
  """uisrnn.loss_func on arrays: hand values, and the seed's numbers."""

  def test_hand_values(self):
    loss_func = uisrnn_jax.loss_func
    # Two real steps (the zero-error one is padding): (1*1 + 4*0.5 + 9*2) / 2.
    value = loss_func.weighted_mse_loss(
      np.array([[1.0, 2.0], [3.0, 0.0], [0.0, 5.0]]),
      np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 5.0]]),
      np.array([1.0, 0.5]),
    )
    self.assertAlmostEqual(float(value), (1 + 2 + 9) / 2, places=5)
    # (2*1 + 4 + 2) / (2*4) * log(2) + 3 / (2 * 4), one dimension.
    value = loss_func.sigma2_prior_loss(4, 1.0, 3.0, np.array([2.0]))
    self.assertAlmostEqual(float(value), np.log(2.0) + 3 / 8, places=5)
    value = loss_func.regularization_loss(
      [np.array([3.0, 4.0]), np.ones(4)], 0.1
    )
    self.assertAlmostEqual(float(value), 0.1 * (5 + 2), places=5)

  @absltest.skipIf(seed is None, NEEDS_SEED)
  def test_parity(self):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 2, 3)).astype(np.float32)
    y = rng.normal(size=(6, 2, 3)).astype(np.float32)
    y[4:, 1] = x[4:, 1]  # padding: zero error
    w = rng.uniform(0.5, 2.0, size=3).astype(np.float32)
    sigma2 = rng.uniform(0.1, 1.0, size=3).astype(np.float32)
    params = [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=4)]
    pairs = [
      (
        uisrnn_jax.loss_func.weighted_mse_loss(x, y, w),
        seed.loss_func.weighted_mse_loss(
          torch.tensor(x), torch.tensor(y), torch.tensor(w)
        ),
      ),
      (
        uisrnn_jax.loss_func.sigma2_prior_loss(9, 1.5, 0.5, sigma2),
        seed.loss_func.sigma2_prior_loss(9, 1.5, 0.5, torch.tensor(sigma2)),
      ),
      (
        uisrnn_jax.loss_func.regularization_loss(params, 1e-3),
        seed.loss_func.regularization_loss(
          [torch.tensor(p, dtype=torch.float32) for p in params], 1e-3
        ),
      ),
    ]
    for ours, theirs in pairs:
      self.assertAlmostEqual(float(ours), float(theirs), places=5)


class ContribTest(absltest.TestCase):
  CASES = (
    # The seed's docstring example.
    (
      ['0_0', '0_0', '0_1', '0_1', '0_1', '0_0', '0_0', '1_0', '1_0', '1_0']
      + ['1_1', '1_1', '1_1', '1_0', '1_0', '1_0', '1_2', '1_2', '1_2'],
      0.5,
    ),
    (
      ['0_0', '0_1', '0_0', '0_2', '0_1', '0_0', '1_0', '1_1', '1_0', '1_0'],
      0.36,
    ),
  )

  def test_estimate_crp_alpha(self):
    estimate = uisrnn_jax.contrib.range_search_crp_alpha.estimate_crp_alpha
    for ids, expected in self.CASES:
      self.assertAlmostEqual(estimate(np.array(ids)), expected)

  @absltest.skipIf(seed is None, NEEDS_SEED)
  def test_estimate_crp_alpha_parity(self):
    # Cases whose last label does not change the answer (the seed drops it).
    from uisrnn.contrib import range_search_crp_alpha  # noqa: PLC0415

    for ids, _ in self.CASES:
      for search in ((1, 0.01), (2, 0.05)):
        self.assertAlmostEqual(
          uisrnn_jax.contrib.range_search_crp_alpha.estimate_crp_alpha(
            np.array(ids), *search
          ),
          range_search_crp_alpha.estimate_crp_alpha(np.array(ids), *search),
        )


class OutputResultTest(absltest.TestCase):
  @absltest.skipIf(seed is None, NEEDS_SEED)
  def test_same_text_as_the_seed(self):
    model_args = argparse.Namespace(
      crp_alpha=0.8, rnn_hidden_size=8, rnn_depth=1, rnn_dropout=0.2
    )
    training_args = argparse.Namespace(
      sigma_alpha=1.0,
      sigma_beta=2.0,
      learning_rate=0.01,
      regularization_weight=1e-5,
      batch_size=10,
    )
    record = [(1.0, 30), (0.5, 20), (0.25, 3)]
    cwd = os.getcwd()
    os.chdir(self.create_tempdir().full_path)  # the seed writes a file here
    try:
      theirs = seed.output_result(model_args, training_args, record)
    finally:
      os.chdir(cwd)
    self.assertEqual(
      uisrnn_jax.output_result(model_args, training_args, record), theirs
    )


class OnlinePredictTest(parameterized.TestCase):
  """Streaming from the compat class ends where predict(test_iteration=1) does."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # Untrained weights, a small fixed sigma2, a high p0 and a high
    # crp_alpha on three clusters: eight speakers without training.
    cls.model = uisrnn_jax.UISRNN(
      argparse.Namespace(
        observation_dim=4,
        rnn_hidden_size=8,
        rnn_depth=1,
        transition_bias=0.6,
        sigma2=0.1,
        crp_alpha=20.0,
        verbosity=1,
      )
    )
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(3, 4)) * 2.0

    def clustered(n):
      return centers[rng.integers(0, 3, size=n)] + 0.3 * rng.normal(size=(n, 4))

    cls.sequence, cls.other = clustered(21), clustered(9)

  def args(self, **kwargs):
    return argparse.Namespace(
      **{'beam_size': 3, 'look_ahead': 1, 'test_iteration': 1, **kwargs}
    )

  @parameterized.named_parameters(
    ('one_chunk', 1, [21], False),
    ('uneven', 1, [1, 4, 7, 9], True),
    ('single_rows', 1, [1] * 21, False),
    ('empty_chunk', 1, [3, 0, 5, 13], False),
  )
  def test_final_labels_equal_predict(self, look_ahead, sizes, prefixes):
    # (look_ahead > 1 streams are compared with the offline decoder in
    # streaming_test; here every case shares one compiled program.)
    args = self.args(look_ahead=look_ahead)
    expected = self.model.predict(self.sequence, args)
    self.assertGreater(len(set(expected)), 2)  # a case with choices to make
    stream = self.model.online_predict(args)
    start = 0
    for size in sizes:
      labels = stream.push(self.sequence[start : start + size])
      start += size
      self.assertLen(labels, start)
      if prefixes and start < len(self.sequence):
        # A partial answer is the offline answer for the prefix.
        self.assertEqual(
          labels, self.model.predict(self.sequence[:start], args)
        )
    self.assertEqual(labels, expected)
    self.assertEqual(stream.labels, expected)
    self.assertEqual(stream.num_observations, len(self.sequence))

  def test_speaker_slot_overflow_is_replayed(self):
    args = self.args(max_speakers=4)
    expected = self.model.predict(self.sequence, self.args())
    self.assertGreater(max(expected), 3)  # more speakers than 4 slots hold
    stream = self.model.online_predict(args)
    for start in range(0, 21, 4):
      labels = stream.push(self.sequence[start : start + 4])
    self.assertEqual(labels, expected)

  def test_reset_starts_a_new_sequence(self):
    args = self.args()
    stream = self.model.online_predict(args)
    stream.push(self.sequence)
    stream.reset()
    self.assertEqual(stream.labels, [])
    self.assertEqual(
      stream.push(self.other), self.model.predict(self.other, args)
    )

  def test_single_observation_and_test_iteration_unused(self):
    # The seed's default test_iteration=2 cannot apply to a stream.
    stream = self.model.online_predict(self.args(test_iteration=2))
    for row in self.sequence[:5]:
      labels = stream.push(row)
    self.assertEqual(labels, self.model.predict(self.sequence[:5], self.args()))

  @parameterized.named_parameters(
    ('ints', np.zeros((2, 4), int), TypeError),
    ('list', [[0.0, 0.0, 0.0, 0.0]], TypeError),
    ('wrong_dim', np.zeros((2, 3)), ValueError),
    ('empty_wrong_dim', np.zeros((0, 3)), ValueError),
    ('nan', np.full((1, 4), np.nan), ValueError),
    ('three_d', np.zeros((1, 1, 4)), ValueError),
  )
  def test_bad_chunk_changes_nothing(self, chunk, error):
    stream = self.model.online_predict(self.args())
    before = stream.push(self.sequence[:4])
    with self.assertRaises(error):
      stream.push(chunk)
    self.assertEqual(stream.labels, before)
    self.assertEqual(
      stream.push(self.sequence[4:]),
      self.model.predict(self.sequence, self.args()),
    )

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, 'resegment'):
      self.model.online_predict(self.args(resegment_iterations=1))
    untrained = uisrnn_jax.UISRNN(
      argparse.Namespace(observation_dim=3, rnn_hidden_size=4, verbosity=1)
    )
    with self.assertRaisesRegex(RuntimeError, 'transition_bias'):
      untrained.online_predict(self.args())


if __name__ == '__main__':
  absltest.main()
