"""Sanity tests of the reference parity fixtures and their loader.

These check that the committed fixtures are well formed and that
`reference_fixtures` exposes them consistently; parity with uisrnn_jax itself
is tested elsewhere (decode, loss and training tests use this loader).
"""

import jax
import numpy as np
import reference_fixtures as rf
from absl.testing import absltest, parameterized

from uisrnn_jax import model

_MODEL_NAMES = rf.names()
_TRAJECTORY_NAMES = rf.trajectory_names()

_SIGMA2_FLOOR = np.float32(1e-6)


def _is_first_appearance_order(labels: np.ndarray) -> bool:
  return np.array_equal(labels, rf.relabel_first_appearance(labels))


def _assert_params_shaped_like_init(
  test: absltest.TestCase, params, *, observation_dim, hidden_size, depth
):
  expected = model.init_params(
    jax.random.key(0),
    observation_dim=observation_dim,
    hidden_size=hidden_size,
    depth=depth,
  )
  test.assertEqual(jax.tree.structure(params), jax.tree.structure(expected))
  for got, want in zip(
    jax.tree.leaves(params), jax.tree.leaves(expected), strict=True
  ):
    test.assertEqual(got.shape, want.shape)
    test.assertEqual(got.dtype, np.float32)
    test.assertTrue(np.all(np.isfinite(got)))


class FixtureFilesTest(absltest.TestCase):
  def test_every_file_loads_without_pickle(self):
    paths = sorted(rf.FIXTURE_DIR.glob('*.npz'))
    self.assertNotEmpty(paths)
    for path in paths:
      with np.load(path, allow_pickle=False) as data:
        for key in data.files:
          self.assertFalse(data[key].dtype.hasobject, f'{path.name}: {key}')
        if path.stem == 'encoder_expected':  # resemblyzer's, not uisrnn's
          self.assertEqual(str(data['meta/resemblyzer_version']), '0.1.4')
        else:
          self.assertEqual(str(data['meta/uisrnn_version']), '0.1.2')

  def test_total_size_is_small(self):
    total = sum(p.stat().st_size for p in rf.FIXTURE_DIR.glob('*.npz'))
    self.assertLess(total, 1_000_000)

  def test_every_file_is_reachable_from_the_loader(self):
    stems = {p.stem for p in rf.FIXTURE_DIR.glob('*.npz')}
    expected = {f'model_{n}' for n in _MODEL_NAMES}
    expected |= {f'trajectory_{n}' for n in _TRAJECTORY_NAMES}
    expected.add('estimators')
    # Made by make_torch_model_fixture.py, read by tests/convert_test.py.
    expected.add('reference_model_expected')
    # Made by make_encoder_fixture.py, read by tests/audio_test.py.
    expected.add('encoder_expected')
    self.assertEqual(stems, expected)

  def test_coverage(self):
    fixtures = [rf.load(n) for n in _MODEL_NAMES]
    self.assertGreaterEqual(len(fixtures), 3)
    self.assertIn(2, {f.depth for f in fixtures})
    cases = [c for f in fixtures for c in f.decode_cases]
    self.assertEqual({c.beam_size for c in cases}, {1, 3, 10})
    self.assertEqual({c.look_ahead for c in cases}, {1, 2, 3})
    self.assertEqual({c.test_iteration for c in cases}, {1, 2})
    self.assertTrue(any(f.loss_cases for f in fixtures if f.depth == 2))
    trajectories = [rf.load_trajectory(n) for n in _TRAJECTORY_NAMES]
    self.assertEqual({t.learn_sigma2 for t in trajectories}, {True, False})
    self.assertIn(2, {t.depth for t in trajectories})

  def test_unknown_name_raises(self):
    with self.assertRaises(FileNotFoundError):
      rf.load('no_such_fixture')


class ModelFixtureTest(parameterized.TestCase):
  @parameterized.parameters(*_MODEL_NAMES)
  def test_params_match_init_params(self, name):
    fixture = rf.load(name)
    _assert_params_shaped_like_init(
      self,
      fixture.params,
      observation_dim=fixture.observation_dim,
      hidden_size=fixture.hidden_size,
      depth=fixture.depth,
    )
    np.testing.assert_array_equal(
      fixture.params['rnn'][0]['w_ih'], fixture.state_dict['gru.weight_ih_l0']
    )
    self.assertTrue(np.all(np.asarray(fixture.params['sigma2']) > 0))

  @parameterized.parameters(*_MODEL_NAMES)
  def test_scalars(self, name):
    fixture = rf.load(name)
    self.assertBetween(fixture.transition_bias, 0.0, 1.0)
    self.assertGreaterEqual(fixture.transition_bias_denominator, 0.0)
    self.assertGreater(fixture.crp_alpha, 0.0)
    self.assertEqual(fixture.versions['uisrnn'], '0.1.2')

  @parameterized.parameters(*_MODEL_NAMES)
  def test_decode_cases(self, name):
    fixture = rf.load(name)
    self.assertNotEmpty(fixture.decode_cases)
    for case in fixture.decode_cases:
      n = len(case.sequence)
      self.assertEqual(case.sequence.shape, (n, fixture.observation_dim))
      self.assertEqual(case.sequence.dtype, np.float64)
      self.assertBetween(n, 10, 40)
      self.assertIs(case.sequence, fixture.test_sequences[case.sequence_index])
      self.assertEqual(case.labels.shape, (n,))
      self.assertTrue(np.issubdtype(case.labels.dtype, np.integer))
      self.assertGreaterEqual(case.labels.min(), 0)
      if case.test_iteration == 1:
        self.assertTrue(_is_first_appearance_order(case.labels), case)
      # With more copies the labels are the tail of a longer trace; they keep
      # the speaker indices of that trace (e.g. all 2s).
      self.assertTrue(_is_first_appearance_order(case.canonical_labels))
      self.assertTrue(np.isfinite(case.cost))
      self.assertGreater(case.cost, 0.0)
      self.assertGreaterEqual(case.margin, 0.0)

  @parameterized.parameters(*_MODEL_NAMES)
  def test_loss_cases(self, name):
    fixture = rf.load(name)
    self.assertNotEmpty(fixture.loss_cases)
    sigma2 = np.asarray(fixture.params['sigma2'], np.float64)
    for case in fixture.loss_cases:
      self.assertGreater(len(case.observations), 1)
      for obs in case.observations:
        self.assertEqual(obs.shape[1], fixture.observation_dim)
        self.assertEqual(obs.dtype, np.float32)
        self.assertTrue(np.all(obs != 0.0))  # zero is the reference's padding
      padded, mask = case.padded()
      self.assertEqual(padded.shape[:2], mask.shape)
      self.assertEqual(mask.sum(), sum(len(o) for o in case.observations))
      self.assertTrue(np.all(padded[~mask] == 0.0))
      self.assertTrue(np.isfinite(case.nll) and case.nll > 0.0)
      # loss2 and loss3 depend only on stored values; recompute them.
      n = float(mask.sum())
      a, b = case.sigma_alpha, case.sigma_beta
      prior = np.sum(
        (2 * a + n + 2) / (2 * n) * np.log(sigma2) + b / (sigma2 * n)
      )
      self.assertAlmostEqual(case.sigma2_prior, prior, delta=1e-5 * abs(prior))
      norms = sum(
        np.linalg.norm(v.astype(np.float64))
        for v in fixture.state_dict.values()
      )
      reg = case.regularization_weight * norms
      self.assertAlmostEqual(case.regularization, reg, delta=1e-5 * reg)
      self.assertAlmostEqual(
        case.total, case.nll + case.sigma2_prior + case.regularization
      )


class TrajectoryFixtureTest(parameterized.TestCase):
  @parameterized.parameters(*_TRAJECTORY_NAMES)
  def test_shapes_and_batches(self, name):
    trajectory = rf.load_trajectory(name)
    sizes = dict(
      observation_dim=trajectory.observation_dim,
      hidden_size=trajectory.hidden_size,
      depth=trajectory.depth,
    )
    _assert_params_shaped_like_init(self, trajectory.initial_params, **sizes)
    self.assertBetween(len(trajectory.steps), 5, 10)
    for step in trajectory.steps:
      _assert_params_shaped_like_init(self, step.params, **sizes)
      self.assertLen(step.observations, trajectory.batch_size)
      for obs in step.observations:
        self.assertEqual(obs.shape[1], trajectory.observation_dim)
        self.assertTrue(np.all(obs != 0.0))
      for value in (step.nll, step.sigma2_prior, step.regularization):
        self.assertTrue(np.isfinite(value))
      self.assertGreater(step.grad_norm, 0.0)
    self.assertIs(trajectory.final_params, trajectory.steps[-1].params)
    self.assertEqual(
      trajectory.train_sequence.shape,
      (len(trajectory.train_cluster_id), trajectory.observation_dim),
    )

  @parameterized.parameters(*_TRAJECTORY_NAMES)
  def test_params_move_and_sigma2_respects_the_reference(self, name):
    trajectory = rf.load_trajectory(name)
    before = trajectory.initial_params
    for step in trajectory.steps:
      moved = jax.tree.map(
        lambda a, b: bool(np.any(a != b)), before['rnn'], step.params['rnn']
      )
      self.assertTrue(all(jax.tree.leaves(moved)))
      sigma2 = np.asarray(step.params['sigma2'])
      if trajectory.learn_sigma2:
        self.assertTrue(np.all(sigma2 >= _SIGMA2_FLOOR))
      else:
        np.testing.assert_array_equal(sigma2, before['sigma2'])
      before = step.params

  def test_clamp_fires_in_some_trajectory(self):
    floors = [
      np.any(np.asarray(s.params['sigma2']) == _SIGMA2_FLOOR)
      for n in _TRAJECTORY_NAMES
      for s in rf.load_trajectory(n).steps
    ]
    self.assertTrue(any(floors))

  def test_clipping_is_exercised(self):
    ratios = [
      s.grad_norm / t.grad_max_norm
      for t in map(rf.load_trajectory, _TRAJECTORY_NAMES)
      for s in t.steps
    ]
    self.assertGreater(max(ratios), 1.0)


class EstimatorFixtureTest(absltest.TestCase):
  def test_transition_bias_cases(self):
    cases = rf.load_estimators().transition_bias_cases
    by_name = {c.name: c for c in cases}
    for required in (
      'no_sequences',
      'empty_sequence',
      'length_one',
      'single_speaker',
      'always_changing',
    ):
      self.assertIn(required, by_name)
    self.assertEqual(by_name['no_sequences'].cluster_ids, [])
    self.assertEqual(by_name['empty_sequence'].cluster_ids[0].shape, (0,))
    for case in cases:
      self.assertBetween(case.bias, 0.0, 1.0)
      for ids in case.cluster_ids:
        self.assertEqual(ids.dtype.kind, 'U')
      transitions = sum(max(len(ids) - 1, 0) for ids in case.cluster_ids)
      self.assertAlmostEqual(case.denominator, 2 * case.smooth + transitions)

  def test_crp_alpha_cases(self):
    cases = rf.load_estimators().crp_alpha_cases
    self.assertNotEmpty(cases)
    for case in cases:
      self.assertEqual(case.cluster_id.ndim, 1)
      self.assertEqual(case.cluster_id.dtype.kind, 'U')
      self.assertTrue(all('_' in x for x in case.cluster_id))
      self.assertBetween(case.alpha, case.search_step, case.search_range)


class HelpersTest(absltest.TestCase):
  def test_relabel_first_appearance(self):
    np.testing.assert_array_equal(
      rf.relabel_first_appearance([2, 2, 0, 2, 5]), [0, 0, 1, 0, 2]
    )

  def test_arrays_are_read_only(self):
    case = rf.load(_MODEL_NAMES[0]).decode_cases[0]
    with self.assertRaises(ValueError):
      case.labels[0] = 7


if __name__ == '__main__':
  absltest.main()
