"""Training-side parity with uisrnn 0.1.2, from committed fixtures (no torch).

The fixtures (tests/fixtures, made by make_reference_fixtures.py) hold the
reference's loss parts on fixed batches, and a few steps of its training
loop with the batches it sampled and its weights after every step.
"""

import jax
import jax.numpy as jnp
import numpy as np
import reference_fixtures
from absl.testing import absltest, parameterized

from uisrnn_jax import estimators, losses, train


def _loss_cases():
  for name in reference_fixtures.names():
    for i, _ in enumerate(reference_fixtures.load(name).loss_cases):
      yield {'testcase_name': f'{name}_{i}', 'name': name, 'index': i}


def _batch(observations):
  x, mask = reference_fixtures.pad_batch(observations)
  return {
    'observations': jnp.asarray(x, jnp.float32),
    'mask': jnp.asarray(mask),
  }


class LossParityTest(parameterized.TestCase):
  @parameterized.named_parameters(*_loss_cases())
  def test_loss_parts_equal_reference(self, name, index):
    fixture = reference_fixtures.load(name)
    case = fixture.loss_cases[index]
    _, parts = jax.jit(
      lambda p, b: losses.total_loss(
        p,
        b,
        jax.random.key(0),
        sigma_alpha=case.sigma_alpha,
        sigma_beta=case.sigma_beta,
        regularization_weight=case.regularization_weight,
      )
    )(fixture.params, _batch(case.observations))
    np.testing.assert_allclose(parts['nll'], case.nll, rtol=2e-5)
    np.testing.assert_allclose(
      parts['sigma2_prior'], case.sigma2_prior, rtol=2e-5, atol=1e-5
    )
    np.testing.assert_allclose(
      parts['regularization'], case.regularization, rtol=2e-5
    )


class TrajectoryParityTest(parameterized.TestCase):
  @parameterized.named_parameters(
    (name, name) for name in reference_fixtures.trajectory_names()
  )
  def test_training_steps_follow_reference(self, name):
    traj = reference_fixtures.load_trajectory(name)
    tx = train.make_optimizer(
      learning_rate=traj.learning_rate,
      grad_max_norm=traj.grad_max_norm,
      learn_sigma2=traj.learn_sigma2,
    )
    params = traj.initial_params
    state = train.TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      transition_bias=jnp.asarray(0.5, jnp.float32),
      transition_bias_denominator=jnp.zeros((), jnp.float32),
      crp_alpha=jnp.asarray(1.0, jnp.float32),
      tx=tx,
    )
    step = jax.jit(
      train.make_train_step(
        dict(
          sigma_alpha=traj.sigma_alpha,
          sigma_beta=traj.sigma_beta,
          regularization_weight=traj.regularization_weight,
        )
      )
    )
    for s, ref in enumerate(traj.steps):
      state, metrics = step(state, _batch(ref.observations), jax.random.key(0))
      np.testing.assert_allclose(
        metrics['nll'], ref.nll, rtol=1e-4, err_msg=f'step {s}'
      )
      np.testing.assert_allclose(
        metrics['sigma2_prior'],
        ref.sigma2_prior,
        rtol=1e-4,
        atol=1e-4,
        err_msg=f'step {s}',
      )
      for ours, theirs in zip(
        jax.tree.leaves(state.params), jax.tree.leaves(ref.params)
      ):
        np.testing.assert_allclose(ours, theirs, atol=2e-5, err_msg=f'step {s}')


class EstimatorParityTest(parameterized.TestCase):
  def test_transition_bias_equals_reference(self):
    for case in reference_fixtures.load_estimators().transition_bias_cases:
      bias, denom = estimators.estimate_transition_bias(
        case.cluster_ids, smooth=case.smooth
      )
      self.assertAlmostEqual(bias, case.bias, places=12, msg=case.name)
      self.assertAlmostEqual(denom, case.denominator, places=12, msg=case.name)

  def test_crp_alpha_equals_reference(self):
    # The reference's contrib ignores the last label of its input (its
    # sequence splitter stops one short); ours does not, so it is given the
    # input without that label here.
    for case in reference_fixtures.load_estimators().crp_alpha_cases:
      alpha = estimators.estimate_crp_alpha(
        case.cluster_id[:-1],
        search_range=case.search_range,
        search_step=case.search_step,
      )
      self.assertAlmostEqual(alpha, case.alpha, places=9, msg=case.name)


if __name__ == '__main__':
  absltest.main()
