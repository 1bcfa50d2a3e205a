"""The seed's API (uisrnn 0.1.2) served by uisrnn_jax.compat and friends.

Runs without torch: models of the reference come from the parity fixtures
(``tests/fixtures/model_*.npz``). Loading the reference's own torch files is
tested in convert_test.py.
"""

import argparse
import contextlib
import io
import os
import random
import sys
from unittest import mock

import jax
import numpy as np
import optax
import reference_fixtures
from absl import logging
from absl.testing import absltest, parameterized
from jax_testing import run_python

import uisrnn_jax as uisrnn
from configs import default
from uisrnn_jax import (
  arguments,
  checkpoint,
  compat,
  convert,
  estimators,
  evals,
  train,
)
from uisrnn_jax.contrib import range_search_crp_alpha

# The documented defaults of uisrnn 0.1.2's parse_arguments().
SEED_MODEL_DEFAULTS = dict(
  observation_dim=256,
  rnn_hidden_size=512,
  rnn_depth=1,
  rnn_dropout=0.2,
  transition_bias=None,
  crp_alpha=1.0,
  sigma2=None,
  verbosity=3,
  enable_cuda=True,
)
SEED_TRAINING_DEFAULTS = dict(
  optimizer='adam',
  learning_rate=1e-3,
  train_iteration=20000,
  batch_size=10,
  num_permutations=10,
  sigma_alpha=1.0,
  sigma_beta=1.0,
  regularization_weight=1e-5,
  grad_max_norm=5.0,
  enforce_cluster_id_uniqueness=True,
)
SEED_INFERENCE_DEFAULTS = dict(beam_size=10, look_ahead=1, test_iteration=2)

# The seed's integration example: four speakers on the corners of a square.
CENTERS = {
  'A': (0.0, 0.0),
  'B': (0.0, 1.0),
  'C': (1.0, 0.0),
  'D': (1.0, 1.0),
}


def square_sequence(labels, rng, sigma=0.01):
  """float64[N, 2] observations near the corner of each label."""
  centers = np.array([CENTERS[x] for x in labels])
  return centers + sigma * rng.normal(size=centers.shape)


def runs(*parts):
  """['A', 'A', 'B'] from ('A', 2), ('B', 1)."""
  return [label for label, n in parts for _ in range(n)]


def tiny_args(**model_overrides):
  """Seed-style namespaces for a 2-D model that trains in a second."""
  model_args, training_args, inference_args = uisrnn.parse_arguments([])
  model_args.observation_dim = 2
  model_args.rnn_hidden_size = 8
  model_args.rnn_depth = 2
  model_args.verbosity = 2
  for key, value in model_overrides.items():
    setattr(model_args, key, value)
  training_args.learning_rate = 0.01
  training_args.train_iteration = 2
  training_args.batch_size = 4
  training_args.num_permutations = 2
  inference_args.beam_size = 3
  return model_args, training_args, inference_args


def tiny_data(seed=0):
  """Two short training sequences of the square's speakers."""
  rng = np.random.default_rng(seed)
  ids = [
    np.array(runs(('A', 4), ('B', 3), ('A', 2), ('C', 3))),
    np.array(runs(('D', 3), ('C', 5), ('D', 2))),
  ]
  return [square_sequence(x, rng) for x in ids], ids


def fixture_model(name='trained_d4_h8_l1', **model_args):
  """A UISRNN holding a reference model from the parity fixtures."""
  fixture = reference_fixtures.load(name)
  reference = convert.ReferenceModel(
    params=fixture.params,
    transition_bias=fixture.transition_bias,
    transition_bias_denominator=fixture.transition_bias_denominator,
    crp_alpha=fixture.crp_alpha,
  )
  model_args.setdefault('verbosity', 1)
  return compat.UISRNN.from_reference_model(reference, **model_args), fixture


def inference_args(case):
  return argparse.Namespace(
    beam_size=case.beam_size,
    look_ahead=case.look_ahead,
    test_iteration=case.test_iteration,
  )


@contextlib.contextmanager
def untouched_global_rng(test):
  """Asserts that the block leaves `random` and `np.random` state alone."""
  py_state, np_state = random.getstate(), np.random.get_state()
  yield
  test.assertEqual(random.getstate(), py_state)
  after = np.random.get_state()
  test.assertEqual(after[0], np_state[0])
  np.testing.assert_array_equal(after[1], np_state[1])
  test.assertEqual(after[2:], np_state[2:])


class ParseArgumentsTest(absltest.TestCase):
  def test_defaults_are_the_seeds(self):
    model_args, training_args, inference_args = uisrnn.parse_arguments([])
    self.assertEqual(vars(model_args), SEED_MODEL_DEFAULTS)
    self.assertEqual(vars(training_args), SEED_TRAINING_DEFAULTS)
    self.assertEqual(vars(inference_args), SEED_INFERENCE_DEFAULTS)

  def test_short_forms(self):
    _, training_args, inference_args = uisrnn.parse_arguments(
      ['-l', '0.5', '-t', '7', '-b', '3', '-s', '4', '-o', 'adam', '-r', '0.1']
    )
    self.assertEqual(training_args.learning_rate, 0.5)
    self.assertEqual(training_args.train_iteration, 7)
    self.assertEqual(training_args.batch_size, 3)
    self.assertEqual(training_args.optimizer, 'adam')
    self.assertEqual(training_args.regularization_weight, 0.1)
    self.assertEqual(inference_args.beam_size, 4)

  def test_each_group_gets_its_own_flags(self):
    model_args, training_args, inference_args = uisrnn.parse_arguments(
      [
        '--observation_dim=2',
        '--transition_bias=0.3',
        '--sigma2=0.05',
        '--enable_cuda=false',
        '--verbosity=4',
        '--enforce_cluster_id_uniqueness=no',
        '--look_ahead=2',
        '--test_iteration=1',
      ]
    )
    self.assertEqual(model_args.observation_dim, 2)
    self.assertEqual(model_args.transition_bias, 0.3)
    self.assertEqual(model_args.sigma2, 0.05)
    self.assertFalse(model_args.enable_cuda)
    self.assertEqual(model_args.verbosity, 4)
    self.assertFalse(training_args.enforce_cluster_id_uniqueness)
    self.assertEqual(
      (inference_args.look_ahead, inference_args.test_iteration), (2, 1)
    )
    self.assertFalse(hasattr(model_args, 'learning_rate'))
    self.assertFalse(hasattr(training_args, 'beam_size'))

  def test_reads_sys_argv_by_default(self):
    with mock.patch.object(sys, 'argv', ['demo.py', '-l', '0.25']):
      _, training_args, _ = uisrnn.parse_arguments()
    self.assertEqual(training_args.learning_rate, 0.25)

  def test_rejects_unknown_flags_and_bad_values(self):
    for argv in (['--no_such_flag=1'], ['-o', 'sgd'], ['--enable_cuda=maybe']):
      with self.subTest(argv=argv), contextlib.redirect_stderr(io.StringIO()):
        with self.assertRaises(SystemExit):
          uisrnn.parse_arguments(argv)

  def test_help_lists_every_flag(self):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), self.assertRaises(SystemExit) as cm:
      uisrnn.parse_arguments(['--help'])
    self.assertEqual(cm.exception.code, 0)
    for flag in (
      *SEED_MODEL_DEFAULTS,
      *SEED_TRAINING_DEFAULTS,
      *SEED_INFERENCE_DEFAULTS,
    ):
      self.assertIn(f'--{flag}', out.getvalue())

  def test_str2bool(self):
    self.assertTrue(arguments.str2bool('Yes'))
    self.assertFalse(arguments.str2bool('0'))
    with self.assertRaises(argparse.ArgumentTypeError):
      arguments.str2bool('maybe')

  def test_default_config_is_configs_default_without_data(self):
    ours = compat.default_config()
    expected = default.get_config().to_dict()
    del expected['data']
    self.assertEqual(ours.to_dict(), expected)
    ours.model.rnn_hidden_size = 7  # every call builds a fresh config
    self.assertEqual(compat.default_config().model.rnn_hidden_size, 512)
    self.assertEqual(arguments.parse_arguments([])[0].rnn_hidden_size, 512)


class LoggerTest(absltest.TestCase):
  def test_verbosity_gates_and_maps_levels(self):
    logger = compat.Logger(verbosity=2)
    with self.assertLogs('absl', level='DEBUG') as logs:
      logger.print(1, 'an error')
      logger.print(2, 'a warning')
      logger.print(3, 'dropped: above verbosity')
      logger.print(2, 'an important step', severity=logging.INFO)
    self.assertEqual(
      [(r.levelname, r.getMessage()) for r in logs.records],
      [
        ('ERROR', 'an error'),
        ('WARNING', 'a warning'),
        ('INFO', 'an important step'),
      ],
    )

  def test_debug_level_and_named_methods(self):
    logger = compat.Logger(verbosity=4)
    with self.assertLogs('absl', level='DEBUG') as logs:
      logger.debug('d')
      logger.info('i')
      logger.warning('w')
      logger.error('e')
    self.assertEqual(
      [r.levelname for r in logs.records], ['DEBUG', 'INFO', 'WARNING', 'ERROR']
    )

  def test_fatal_raises(self):
    with self.assertRaisesRegex(RuntimeError, 'boom'):
      compat.Logger(verbosity=0).fatal('boom')
    compat.Logger(verbosity=-1).fatal('silenced')  # below level 0: dropped

  def test_model_logger_uses_model_args_verbosity(self):
    model = compat.UISRNN(tiny_args(verbosity=4)[0])
    self.assertIsInstance(model.logger, compat.Logger)
    self.assertEqual(model.logger.verbosity, 4)


class ConstructionTest(parameterized.TestCase):
  def test_seed_attributes(self):
    model = uisrnn.UISRNN(tiny_args()[0])
    self.assertEqual(model.observation_dim, 2)
    self.assertIsNone(model.transition_bias)
    self.assertEqual(model.transition_bias_denominator, 0.0)
    self.assertEqual(model.crp_alpha, 1.0)
    np.testing.assert_array_equal(model.sigma2, np.full(2, 0.1, np.float32))
    self.assertTrue(model.estimate_sigma2)
    self.assertTrue(model.estimate_transition_bias)

  def test_given_values(self):
    model = uisrnn.UISRNN(
      tiny_args(transition_bias=0.2, sigma2=0.05, crp_alpha=0.8)[0]
    )
    self.assertEqual(model.transition_bias, 0.2)
    self.assertEqual(model.crp_alpha, 0.8)
    np.testing.assert_array_equal(model.sigma2, np.full(2, 0.05, np.float32))
    self.assertFalse(model.estimate_sigma2)
    self.assertFalse(model.estimate_transition_bias)

  def test_attributes_are_assignable_like_the_seeds(self):
    model = uisrnn.UISRNN(tiny_args()[0])
    model.transition_bias = 0.3
    model.transition_bias_denominator = 12
    model.crp_alpha = 0.5
    self.assertEqual(
      (
        model.transition_bias,
        model.transition_bias_denominator,
        model.crp_alpha,
      ),
      (0.3, 12.0, 0.5),
    )
    with self.assertRaises(ValueError):
      model.crp_alpha = 0.0
    with self.assertRaises(TypeError):
      model.transition_bias = '0.3'

  def test_missing_attributes_take_the_seeds_defaults(self):
    # What UISRNN builds itself from (a 512-unit model is slow to create).
    args = argparse.Namespace(observation_dim=3)
    config = compat.model_config(args)
    for name, value in SEED_MODEL_DEFAULTS.items():
      if name not in ('verbosity', 'enable_cuda'):
        expected = 3 if name == 'observation_dim' else value
        self.assertEqual(config.model[name], expected, name)
    self.assertEqual(compat._verbosity(args), 3)

  def test_enable_cuda_is_accepted(self):
    model = uisrnn.UISRNN(tiny_args(enable_cuda=True)[0])
    self.assertEqual(model.observation_dim, 2)

  def test_seed_attribute_sets_the_initial_weights(self):
    a = uisrnn.UISRNN(tiny_args(seed=1)[0]).params
    b = uisrnn.UISRNN(tiny_args(seed=1)[0]).params
    c = uisrnn.UISRNN(tiny_args(seed=2)[0]).params
    np.testing.assert_array_equal(a['head']['w1'], b['head']['w1'])
    self.assertFalse(np.array_equal(a['head']['w1'], c['head']['w1']))

  @parameterized.named_parameters(
    ('depth_str', 'rnn_depth', 'two', TypeError),
    ('dim_float', 'observation_dim', 2.0, TypeError),
    ('dim_bool', 'observation_dim', True, TypeError),
    ('dim_zero', 'observation_dim', 0, ValueError),
    ('p0_one', 'transition_bias', 1.0, ValueError),
    ('alpha_negative', 'crp_alpha', -1.0, ValueError),
    ('sigma2_str', 'sigma2', '0.1', TypeError),
    ('dropout_one', 'rnn_dropout', 1.0, ValueError),
    ('verbosity_str', 'verbosity', 'high', TypeError),
  )
  def test_bad_model_args(self, name, value, error):
    with self.assertRaisesRegex(error, f'model_args.{name}'):
      uisrnn.UISRNN(tiny_args(**{name: value})[0])

  def test_none_args(self):
    with self.assertRaisesRegex(TypeError, 'model_args'):
      uisrnn.UISRNN(None)


class FitValidationTest(parameterized.TestCase):
  """Bad inputs raise the seed's exception types before anything changes."""

  def setUp(self):
    super().setUp()
    self.model_args, self.training_args, _ = tiny_args()
    self.model = uisrnn.UISRNN(self.model_args)
    self.sequences, self.ids = tiny_data()

  def assert_untouched(self):
    self.assertEqual(int(self.model.state.step), 0)
    self.assertIsNone(self.model.transition_bias)
    np.testing.assert_array_equal(
      self.model.sigma2, np.full(2, 0.1, np.float32)
    )

  def test_wrong_container_types(self):
    for sequences, ids in (
      (tuple(self.sequences), self.ids),
      ({'a': self.sequences[0]}, self.ids),
      (self.sequences, tuple(self.ids)),
      (self.sequences[0].tolist(), self.ids[0]),
    ):
      with self.assertRaises(TypeError):
        self.model.fit(sequences, ids, self.training_args)
    self.assert_untouched()

  def test_non_float_sequence(self):
    with self.assertRaisesRegex(TypeError, 'float'):
      self.model.fit(
        [self.sequences[0], self.sequences[1].astype(int)],
        self.ids,
        self.training_args,
      )
    self.assert_untouched()

  def test_non_string_labels(self):
    with self.assertRaisesRegex(TypeError, 'string'):
      self.model.fit(
        self.sequences,
        [self.ids[0], np.arange(len(self.ids[1]))],
        self.training_args,
      )
    with self.assertRaisesRegex(TypeError, 'string'):
      self.model.fit(
        self.sequences[0], list(range(len(self.ids[0]))), self.training_args
      )
    self.assert_untouched()

  def test_wrong_dimensions_and_lengths(self):
    cases = (
      ([self.sequences[0][:, 0]], [self.ids[0]], '2-D'),
      ([np.zeros((3, 5))], [np.array(['a'] * 3)], 'observation_dim=2'),
      ([self.sequences[0]], [self.ids[0][:-1]], 'labels'),
      (self.sequences, self.ids[:1], 'label sequences'),
      ([], [], 'no training sequences'),
      ([np.full((3, 2), np.nan)], [np.array(['a'] * 3)], 'NaN'),
    )
    for sequences, ids, message in cases:
      with self.subTest(message), self.assertRaisesRegex(ValueError, message):
        self.model.fit(sequences, ids, self.training_args)
    with self.assertRaisesRegex(ValueError, '1-D'):
      self.model.fit(
        self.sequences[0],
        self.ids[0].reshape(-1, 1),
        self.training_args,
      )
    self.assert_untouched()

  @parameterized.named_parameters(
    ('iterations_float', 'train_iteration', 2.5, TypeError),
    ('lr_str', 'learning_rate', '0.1', TypeError),
    ('optimizer', 'optimizer', 'sgd', ValueError),
    ('batch_zero', 'batch_size', 0, ValueError),
    ('uniqueness_str', 'enforce_cluster_id_uniqueness', 'yes', TypeError),
  )
  def test_bad_training_args(self, name, value, error):
    setattr(self.training_args, name, value)
    with self.assertRaisesRegex(error, f'training_args.{name}'):
      self.model.fit(self.sequences, self.ids, self.training_args)
    self.assert_untouched()


class FitTest(absltest.TestCase):
  def test_transition_bias_estimated_and_pooled_across_fits(self):
    model_args, training_args, _ = tiny_args()
    training_args.train_iteration = 0  # estimates only
    model = uisrnn.UISRNN(model_args)
    sequences, ids = tiny_data()
    model.fit(sequences, ids, training_args)
    p0_a, den_a = estimators.estimate_transition_bias(ids)
    self.assertAlmostEqual(model.transition_bias, p0_a, places=6)
    self.assertEqual(model.transition_bias_denominator, den_a)
    more = [np.array(runs(('A', 9), ('B', 1)))]
    model.fit([sequences[0][:10]], more, training_args)
    p0_b, den_b = estimators.estimate_transition_bias(more)
    self.assertAlmostEqual(
      model.transition_bias,
      (p0_a * den_a + p0_b * den_b) / (den_a + den_b),
      places=6,
    )
    self.assertEqual(model.transition_bias_denominator, den_a + den_b)

  def test_given_transition_bias_stays(self):
    model_args, training_args, _ = tiny_args(transition_bias=0.25)
    training_args.train_iteration = 0
    model = uisrnn.UISRNN(model_args)
    model.fit(*tiny_data(), training_args)
    self.assertEqual(model.transition_bias, 0.25)
    self.assertEqual(model.transition_bias_denominator, 0.0)
    # As in the seed, fit() leaves a given p0 alone: an assigned (or
    # loaded) value stays.
    model.transition_bias = 0.4
    model.fit(*tiny_data(), training_args)
    self.assertEqual(model.transition_bias, 0.4)

  def test_concatenated_sequence_warns_like_the_seed(self):
    model_args, training_args, _ = tiny_args()
    training_args.train_iteration = 0
    sequences, ids = tiny_data()
    concatenated = np.concatenate(sequences)
    labels = [f'{i}_{x}' for i, s in enumerate(ids) for x in s]
    model = uisrnn.UISRNN(model_args)
    with self.assertLogs('absl', level='WARNING') as logs:
      model.fit(concatenated, labels, training_args)
    self.assertLen(logs.records, 1)  # once: the seed's, via model.logger
    self.assertIn('concatenated', logs.output[0])
    self.assertEqual(logs.records[0].levelname, 'WARNING')
    # One sequence: the change between the two utterances counts.
    self.assertAlmostEqual(
      model.transition_bias,
      estimators.estimate_transition_bias([labels])[0],
      places=6,
    )

  def test_no_concatenated_warning_when_not_estimating_or_quiet(self):
    sequences, ids = tiny_data()
    labels = [x for s in ids for x in s]
    for overrides in (dict(transition_bias=0.1), dict(verbosity=1)):
      model_args, training_args, _ = tiny_args(**overrides)
      training_args.train_iteration = 0
      model = uisrnn.UISRNN(model_args)
      with self.assertNoLogs('absl', level='WARNING'):
        model.fit(np.concatenate(sequences), labels, training_args)

  def test_each_fit_builds_a_fresh_optimizer_from_its_args(self):
    _, training_args, _ = tiny_args()
    training_args.train_iteration = 0  # no compilation needed
    for overrides, learn_sigma2 in ((dict(), True), (dict(sigma2=0.05), False)):
      model = uisrnn.UISRNN(tiny_args(**overrides)[0])
      for learning_rate, grad_max_norm in ((0.02, 1.0), (0.5, 3.0)):
        training_args.learning_rate = learning_rate
        training_args.grad_max_norm = grad_max_norm
        model.fit(*tiny_data(), training_args)
        # make_optimizer is cached: the same settings give the same object.
        self.assertIs(
          model.state.tx,
          train.make_optimizer(
            learning_rate=learning_rate,
            grad_max_norm=grad_max_norm,
            learn_sigma2=learn_sigma2,
          ),
        )

  def test_training_changes_weights_and_restarts_the_optimizer(self):
    model_args, training_args, _ = tiny_args()
    model = uisrnn.UISRNN(model_args)
    sequences, ids = tiny_data()
    before = jax.device_get(model.params)
    model.fit(sequences, ids, training_args)
    after = jax.device_get(model.params)
    self.assertFalse(np.allclose(before['head']['w2'], after['head']['w2']))
    self.assertFalse(np.allclose(before['sigma2'], after['sigma2']))
    model.fit(sequences, ids, training_args)
    self.assertEqual(int(model.state.step), 4)  # the step count goes on
    # The seed builds Adam inside fit(): its step counts restart at 0.
    counts = optax.tree_utils.tree_get_all_with_path(
      model.state.opt_state, 'count'
    )
    self.assertNotEmpty(counts)
    for _, count in counts:
      self.assertEqual(int(count), 2)

  def test_label_sequences_may_be_lists_or_arrays(self):
    model_args, training_args, _ = tiny_args()
    training_args.train_iteration = 0
    sequences, ids = tiny_data()
    model = uisrnn.UISRNN(model_args)
    model.fit(sequences, [ids[0].tolist(), ids[1]], training_args)
    self.assertIsNotNone(model.transition_bias)


class PredictTest(parameterized.TestCase):
  def test_matches_the_reference_on_fixtures(self):
    # Weights, p0 and alpha of a uisrnn 0.1.2 model, decoded through the
    # seed's API; the labels are the reference's, renumbered. Two settings
    # here (decode_parity_test.py has every case).
    model, fixture = fixture_model()
    settings = {(3, 1, 1), (10, 1, 2)}
    cases = [
      c
      for c in fixture.decode_cases
      if (c.beam_size, c.look_ahead, c.test_iteration) in settings
    ]
    self.assertLen(cases, 6)
    for case in cases:
      with self.subTest(case=case):
        labels = model.predict(case.sequence, inference_args(case))
        self.assertEqual(labels, case.canonical_labels.tolist())

  def test_test_iteration_returns_the_last_copy_renumbered(self):
    model, fixture = fixture_model()
    sequence = fixture.test_sequences[0]
    args = argparse.Namespace(beam_size=3, look_ahead=1, test_iteration=1)
    tiled = model.predict(np.tile(sequence, (2, 1)), args)
    args.test_iteration = 2
    labels = model.predict(sequence, args)
    self.assertEqual(
      labels, evals.renumber_labels(tiled[len(sequence) :]).tolist()
    )

  def test_one_sequence_gives_a_list_of_ints_and_a_list_gives_lists(self):
    model, fixture = fixture_model()
    args = argparse.Namespace(beam_size=3, look_ahead=1, test_iteration=1)
    seq_a, seq_b = fixture.test_sequences[:2]
    single = model.predict(seq_a, args)
    self.assertIsInstance(single, list)
    self.assertLen(single, len(seq_a))
    self.assertTrue(all(type(x) is int for x in single))
    both = model.predict([seq_a, seq_b], args)
    self.assertEqual(both, [single, model.predict(seq_b, args)])
    self.assertTrue(all(type(x) is int for row in both for x in row))
    self.assertEqual(model.predict([], args), [])
    # float32 input is accepted too (the seed demands float64).
    self.assertEqual(model.predict(seq_a.astype(np.float32), args), single)

  def test_bad_inputs_raise_the_seeds_types_before_decoding(self):
    model, fixture = fixture_model()
    args = argparse.Namespace(beam_size=3, look_ahead=1, test_iteration=1)
    good = fixture.test_sequences[0]
    type_errors = (
      tuple(fixture.test_sequences),
      good.tolist(),
      good.astype(np.int64),
      [good, good.astype(np.int64)],
      [good, 'not an array'],
    )
    value_errors = (
      (good[:, 0], '2-D'),
      (np.zeros((5, 3)), 'observation_dim=4'),
      ([good, np.zeros((0, 4))], 'empty'),
      (np.full((3, 4), np.inf), 'NaN or Inf'),
    )
    with mock.patch.object(
      compat.decode, 'predict_labels', side_effect=AssertionError('decoded')
    ):
      for bad in type_errors:
        with self.subTest(bad=type(bad)), self.assertRaises(TypeError):
          model.predict(bad, args)
      for bad, message in value_errors:
        with self.subTest(message), self.assertRaisesRegex(ValueError, message):
          model.predict(bad, args)

  @parameterized.named_parameters(
    ('beam_zero', 'beam_size', 0, ValueError),
    ('beam_str', 'beam_size', '3', TypeError),
    ('look_ahead_float', 'look_ahead', 1.0, TypeError),
    ('iterations_negative', 'test_iteration', -1, ValueError),
  )
  def test_bad_inference_args(self, name, value, error):
    model, fixture = fixture_model()
    args = argparse.Namespace(beam_size=3, look_ahead=1, test_iteration=1)
    setattr(args, name, value)
    with self.assertRaisesRegex(error, f'inference_args.{name}'):
      model.predict(fixture.test_sequences[0], args)

  def test_untrained_model_without_transition_bias(self):
    model_args, _, inference_args_ = tiny_args()
    with self.assertRaisesRegex(RuntimeError, 'fit'):
      uisrnn.UISRNN(model_args).predict(np.zeros((3, 2)), inference_args_)

  def test_more_speakers_than_slots_are_decoded_with_more_slots(self):
    model, fixture = fixture_model()
    case = next(
      c
      for c in fixture.decode_cases
      if c.labels.max() >= 2 and c.look_ahead == 1 and len(c.sequence) <= 24
    )
    args = inference_args(case)
    args.max_speakers = 2  # ours; the labels need three
    self.assertEqual(
      model.predict(case.sequence, args), case.canonical_labels.tolist()
    )

  def test_speaker_count_from_inference_args(self):
    # pyannote's names through inference_args, like every decode field.
    model, fixture = fixture_model()
    case = next(
      c
      for c in fixture.decode_cases
      if c.labels.max() >= 2 and c.look_ahead == 1 and len(c.sequence) <= 24
    )
    found = int(np.max(case.canonical_labels)) + 1
    args = inference_args(case)
    args.num_speakers = found - 1
    self.assertLen(set(model.predict(case.sequence, args)), found - 1)
    del args.num_speakers
    args.min_speakers = found + 1
    self.assertLen(set(model.predict(case.sequence, args)), found + 1)
    args.min_speakers = 'two'
    with self.assertRaisesRegex(TypeError, 'inference_args.min_speakers'):
      model.predict(case.sequence, args)

  def test_parallel_predict_is_batched_predict(self):
    model, fixture = fixture_model()
    args = argparse.Namespace(beam_size=3, look_ahead=1, test_iteration=1)
    sequences = fixture.test_sequences[:2]
    self.assertEqual(
      uisrnn.parallel_predict(model, sequences, args, num_processes=2),
      model.predict(sequences, args),
    )
    with self.assertRaisesRegex(TypeError, 'list'):
      uisrnn.parallel_predict(model, sequences[0], args)
    with self.assertRaises(ValueError):
      uisrnn.parallel_predict(model, sequences, args, num_processes=0)


class SaveLoadTest(absltest.TestCase):
  def test_round_trip(self):
    model, _ = fixture_model()
    model.state = model.state.replace(step=model.state.step + 5)
    path = os.path.join(self.create_tempdir().full_path, 'sub', 'm.uisrnn')
    model.save(path)
    with open(path, 'rb') as f:
      head = f.read(1)
    self.assertEqual(head[0] & 0xF0, 0x80)  # a msgpack map, not a pickle
    self.assertEqual(os.listdir(os.path.dirname(path)), ['m.uisrnn'])
    other = compat.UISRNN(
      argparse.Namespace(
        observation_dim=4, rnn_hidden_size=8, rnn_depth=1, verbosity=1
      )
    )
    other.load(path)
    jax.tree.map(
      np.testing.assert_array_equal,
      jax.device_get(model.params),
      jax.device_get(other.params),
    )
    self.assertEqual(other.transition_bias, model.transition_bias)
    self.assertEqual(
      other.transition_bias_denominator, model.transition_bias_denominator
    )
    self.assertEqual(other.crp_alpha, model.crp_alpha)
    self.assertEqual(int(other.state.step), int(model.state.step))

  def test_untrained_model_keeps_unknown_transition_bias(self):
    model = compat.UISRNN(tiny_args()[0])
    path = self.create_tempfile().full_path
    model.save(path)
    other = compat.UISRNN(tiny_args(seed=3)[0])
    other.load(path)
    self.assertIsNone(other.transition_bias)
    np.testing.assert_array_equal(
      model.params['head']['w1'], other.params['head']['w1']
    )

  def test_loads_a_training_checkpoint(self):
    config = compat.default_config()
    config.model.update(observation_dim=2, rnn_hidden_size=8, rnn_depth=2)
    state = train.create_train_state(jax.random.key(5), config)
    state = state.replace(
      transition_bias=jax.numpy.float32(0.125), step=jax.numpy.int32(3)
    )
    workdir = self.create_tempdir().full_path
    path = checkpoint.save_checkpoint(workdir, state, config)
    model = compat.UISRNN(tiny_args()[0])
    model.load(path)
    self.assertEqual(model.transition_bias, 0.125)
    np.testing.assert_array_equal(
      model.params['head']['w2'], state.params['head']['w2']
    )

  def test_shape_mismatch_and_bad_files(self):
    model, _ = fixture_model()
    path = self.create_tempfile().full_path
    model.save(path)
    wrong = compat.UISRNN(tiny_args()[0])  # D=2, L=2; the file D=4, L=1
    with self.assertRaisesRegex(
      checkpoint.CheckpointError, 'observation_dim=4, rnn_hidden_size=8'
    ):
      wrong.load(path)
    garbage = self.create_tempfile(content='not a model').full_path
    with self.assertRaisesRegex(checkpoint.CheckpointError, 'not a uisrnn'):
      model.load(garbage)
    with self.assertRaises(FileNotFoundError):
      model.load(os.path.join(self.create_tempdir().full_path, 'missing'))

  def test_reference_file_without_torch_names_the_extra(self):
    path = self.create_tempfile().full_path
    with open(path, 'wb') as f:
      f.write(b'PK\x03\x04' + bytes(60))  # a zip file: torch's format
    model, _ = fixture_model()
    with mock.patch.dict(sys.modules, {'torch': None}):
      with self.assertRaisesRegex(ImportError, r'uisrnn-jax\[torch\]'):
        model.load(path)


class EndToEndTest(absltest.TestCase):
  """The seed's integration example, through the seed's API only."""

  def test_four_speakers_on_a_square(self):
    rng = np.random.default_rng(0)
    patterns = (
      runs(('A', 6), ('B', 5), ('A', 4), ('C', 8), ('D', 5)),
      runs(('C', 5), ('A', 7), ('D', 6), ('B', 6), ('C', 3)),
    )
    train_ids = [np.array(patterns[i % 2]) for i in range(8)]
    train_sequences = [square_sequence(x, rng) for x in train_ids]
    model_args, training_args, inference_args_ = uisrnn.parse_arguments([])
    model_args.observation_dim = 2
    model_args.rnn_depth = 2
    model_args.rnn_hidden_size = 8
    model_args.verbosity = 1
    training_args.learning_rate = 0.01
    training_args.train_iteration = 200
    training_args.batch_size = 4
    training_args.num_permutations = 2

    model = uisrnn.UISRNN(model_args)
    model.fit(train_sequences, train_ids, training_args)
    test_ids = [
      runs(('D', 10), ('B', 20), ('A', 15), ('C', 15)),
      runs(('A', 12), ('C', 20), ('B', 10), ('D', 18)),
    ]
    test_sequences = [square_sequence(x, rng) for x in test_ids]
    predicted = model.predict(test_sequences, inference_args_)
    for labels, truth in zip(predicted, test_ids):
      self.assertEqual(
        uisrnn.compute_sequence_match_accuracy(labels, truth), 1.0
      )

    path = os.path.join(self.create_tempdir().full_path, 'model.uisrnn')
    model.save(path)
    loaded = uisrnn.UISRNN(model_args)
    loaded.load(path)
    self.assertEqual(loaded.transition_bias, model.transition_bias)
    self.assertEqual(loaded.predict(test_sequences, inference_args_), predicted)

    # Fit again on a subset: p0 is pooled with the new estimate.
    transition_bias = loaded.transition_bias
    subset_ids = [np.array(runs(('A', 10), ('B', 10)))] * 2
    training_args.train_iteration = 5
    loaded.fit(
      [square_sequence(x, rng) for x in subset_ids], subset_ids, training_args
    )
    self.assertLess(loaded.transition_bias, transition_bias)
    _, subset_denominator = estimators.estimate_transition_bias(subset_ids)
    self.assertEqual(
      loaded.transition_bias_denominator,
      model.transition_bias_denominator + subset_denominator,
    )


class UtilsTest(absltest.TestCase):
  def test_enforce_cluster_id_uniqueness(self):
    self.assertEqual(
      uisrnn.utils.enforce_cluster_id_uniqueness([['a', 'b'], np.array(['a'])]),
      [['0_a', '0_b'], ['1_a']],
    )
    for bad in ((['a'],), [('a', 'b')], [[1, 2]]):
      with self.assertRaises(TypeError):
        uisrnn.utils.enforce_cluster_id_uniqueness(bad)

  def test_concatenate_training_data(self):
    sequences = [np.zeros((2, 3)), np.ones((1, 3)), np.full((3, 3), 2.0)]
    ids = [['a', 'b'], np.array(['a']), ['c', 'c', 'd']]
    seq, cluster_id = uisrnn.utils.concatenate_training_data(
      sequences, ids, enforce_uniqueness=False, shuffle=False
    )
    np.testing.assert_array_equal(seq, np.concatenate(sequences))
    self.assertEqual(cluster_id, ['a', 'b', 'a', 'c', 'c', 'd'])
    with untouched_global_rng(self):
      seq, cluster_id = uisrnn.utils.concatenate_training_data(
        sequences, ids, rng=np.random.default_rng(1)
      )
    order = np.random.default_rng(1).permutation(3)
    np.testing.assert_array_equal(
      seq, np.concatenate([sequences[i] for i in order])
    )
    self.assertEqual(
      cluster_id, [f'{i}_{x}' for i in order for x in list(ids[i])]
    )

  def test_concatenate_training_data_errors(self):
    concat = uisrnn.utils.concatenate_training_data
    with self.assertRaises(TypeError):
      concat((np.zeros((1, 2)),), [['a']])
    with self.assertRaises(TypeError):
      concat([np.zeros((1, 2))], [[1]])
    with self.assertRaisesRegex(ValueError, 'same length'):
      concat([np.zeros((1, 2))], [['a'], ['b']])
    with self.assertRaisesRegex(ValueError, 'observation'):
      concat([np.zeros((1, 2)), np.zeros((1, 3))], [['a'], ['b']])
    with self.assertRaisesRegex(ValueError, 'labels'):
      concat([np.zeros((2, 2))], [['a']])

  def test_sample_permuted_segments(self):
    index = [1, 2, 6, 10, 11, 12]
    runs_ = [[1, 2], [6], [10, 11, 12]]
    with untouched_global_rng(self):
      samples = uisrnn.utils.sample_permuted_segments(
        index, 20, rng=np.random.default_rng(0)
      )
      uisrnn.utils.sample_permuted_segments(index, 2)  # a fresh generator
    self.assertLen(samples, 20)
    seen = set()
    for sample in samples:
      self.assertEqual(sorted(sample.tolist()), index)
      # Each sample is the runs, whole, in some order.
      pieces = np.split(sample, np.flatnonzero(np.diff(sample) != 1) + 1)
      self.assertCountEqual([p.tolist() for p in pieces], runs_)
      seen.add(tuple(sample.tolist()))
    self.assertGreater(len(seen), 1)
    again = uisrnn.utils.sample_permuted_segments(
      index, 20, rng=np.random.default_rng(0)
    )
    self.assertEqual([s.tolist() for s in samples], [s.tolist() for s in again])

  def test_resize_sequence(self):
    sequence = np.arange(12.0).reshape(6, 2)
    cluster_id = np.array(['b', 'a', 'a', 'b', 'b', 'a'])
    subs, lengths = uisrnn.utils.resize_sequence(sequence, cluster_id)
    self.assertEqual([s[:, 0].tolist() for s in subs], [[2, 4, 10], [0, 6, 8]])
    self.assertEqual(lengths, [4, 4])
    self.assertEqual(subs[0].dtype, np.float32)
    with untouched_global_rng(self):
      subs, lengths = uisrnn.utils.resize_sequence(
        sequence, cluster_id, num_permutations=3, rng=np.random.default_rng(0)
      )
    self.assertLen(subs, 6)
    self.assertEqual(lengths, [4] * 6)
    for sub in subs[:3]:  # speaker 'a': rows 1, 2, 5
      self.assertCountEqual(sub[:, 0].tolist(), [2.0, 4.0, 10.0])
    # Integer observations are fine, as in the seed; strings are not.
    subs, _ = uisrnn.utils.resize_sequence(sequence.astype(int), cluster_id)
    self.assertEqual([s[:, 0].tolist() for s in subs], [[2, 4, 10], [0, 6, 8]])
    with self.assertRaises(TypeError):
      uisrnn.utils.resize_sequence(sequence.astype(str), cluster_id)
    with self.assertRaises(ValueError):
      uisrnn.utils.resize_sequence(sequence, cluster_id[:-1])

  def test_estimate_transition_bias(self):
    # The seed's Eq. 13 with smoothing: (1 + changes) / (2 + transitions).
    self.assertEqual(
      uisrnn.utils.estimate_transition_bias([['a', 'a', 'b'], ['c', 'd']]),
      ((1 + 2) / (2 + 3), 5.0),
    )
    self.assertEqual(
      uisrnn.utils.estimate_transition_bias([['a', 'b']], smooth=0),
      (1.0, 1.0),
    )

  def test_contrib_estimate_crp_alpha(self):
    train_cluster_id = np.array(
      ['0_0', '0_0', '0_1', '0_1', '0_1', '0_0', '0_0', '1_0', '1_0', '1_0']
      + ['1_1', '1_1', '1_1', '1_0', '1_0', '1_0', '1_2', '1_2', '1_2']
    )
    self.assertAlmostEqual(
      range_search_crp_alpha.estimate_crp_alpha(train_cluster_id), 0.5
    )
    self.assertIs(
      uisrnn.contrib.range_search_crp_alpha.estimate_crp_alpha,
      estimators.estimate_crp_alpha,
    )

  def test_compute_sequence_match_accuracy(self):
    self.assertEqual(
      uisrnn.compute_sequence_match_accuracy(
        [1, 1, 2, 2, 3], ['a', 'a', 'b', 'c', 'c']
      ),
      0.8,
    )
    with self.assertRaises(TypeError):
      uisrnn.compute_sequence_match_accuracy((1, 2), [1, 2])
    with self.assertRaises(ValueError):
      uisrnn.compute_sequence_match_accuracy([1, 2], [1])


class OutputResultTest(absltest.TestCase):
  def setUp(self):
    super().setUp()
    self.model_args, self.training_args, _ = uisrnn.parse_arguments([])

  def test_text_and_no_file_by_default(self):
    cwd = self.create_tempdir().full_path
    here = os.getcwd()
    os.chdir(cwd)
    try:
      text = uisrnn.output_result(
        self.model_args, self.training_args, [(1.0, 10), (0.5, 30)]
      )
    finally:
      os.chdir(here)
    self.assertEqual(os.listdir(cwd), [])
    self.assertEqual(
      text,
      'Config:\n'
      '  sigma_alpha: 1.0\n'
      '  sigma_beta: 1.0\n'
      '  crp_alpha: 1.0\n'
      '  learning rate: 0.001\n'
      '  regularization: 1e-05\n'
      '  batch size: 10\n'
      '\n'
      'Performance:\n'
      '  averaged accuracy: 0.750000\n'
      '  accuracy numbers for all testing sequences:\n'
      '    1.000000\n'
      '    0.500000\n' + '=' * 80 + '\n',
    )

  def test_append_to_is_opt_in(self):
    directory = self.create_tempdir().full_path
    path = os.path.join(directory, compat.result_filename(self.model_args))
    self.assertEqual(os.path.basename(path), 'layer_512_1_0.2_result.txt')
    first = uisrnn.output_result(
      self.model_args, self.training_args, [(1.0, 1)], append_to=path
    )
    second = uisrnn.utils.output_result(
      self.model_args, self.training_args, [(0.0, 1)], append_to=path
    )
    with open(path) as f:
      self.assertEqual(f.read(), first + second)

  def test_bad_records(self):
    with self.assertRaises(ValueError):
      uisrnn.output_result(self.model_args, self.training_args, [])
    with self.assertRaises(TypeError):
      uisrnn.output_result(self.model_args, self.training_args, [0.5])


class PackageTest(absltest.TestCase):
  def test_the_seeds_names_are_exported(self):
    for name in (
      'UISRNN',
      'parse_arguments',
      'compute_sequence_match_accuracy',
      'parallel_predict',
      'output_result',
      'utils',
      'contrib',
    ):
      self.assertIn(name, uisrnn.__all__)
      self.assertIsNotNone(getattr(uisrnn, name))
    self.assertIs(uisrnn.UISRNN, compat.UISRNN)
    self.assertIs(
      uisrnn.compute_sequence_match_accuracy,
      evals.compute_sequence_match_accuracy,
    )
    with self.assertRaises(AttributeError):
      uisrnn.no_such_name  # noqa: B018

  def test_import_is_cheap_and_never_imports_torch(self):
    code = (
      'import sys, uisrnn_jax as uisrnn\n'
      'assert "jax" not in sys.modules, "jax imported eagerly"\n'
      'uisrnn.UISRNN, uisrnn.utils, uisrnn.contrib, uisrnn.parse_arguments\n'
      'import uisrnn_jax.convert\n'
      'assert "torch" not in sys.modules, "torch imported"\n'
      'print(uisrnn.__version__)\n'
    )
    result = run_python('-c', code)
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertEqual(result.stdout.strip(), uisrnn.__version__)


if __name__ == '__main__':
  absltest.main()
