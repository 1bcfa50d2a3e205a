"""Tests of uisrnn_jax.losses: hand-computed values, NumPy formulas, gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from uisrnn_jax import data, losses, model


def _constant_head_params(c, d=1, h=2, sigma2=0.5):
  """All-zero network whose head always outputs ``c``: every mean is c."""
  p = model.init_params(jax.random.key(0), observation_dim=d, hidden_size=h)
  p = jax.tree.map(jnp.zeros_like, p)
  p['head']['b2'] = jnp.full((d,), c, jnp.float32)
  p['sigma2'] = jnp.full((d,), sigma2, jnp.float32)
  return p


def _batch(observations, lengths):
  observations = np.asarray(observations, np.float32)
  mask = np.arange(observations.shape[1])[None] < np.asarray(lengths)[:, None]
  return {'observations': observations, 'mask': mask}


KW = dict(sigma_alpha=1.0, sigma_beta=1.0, regularization_weight=0.1)


class LossesTest(parameterized.TestCase):
  def test_real_length(self):
    mask = np.zeros((3, 7), bool)
    self.assertEqual(int(losses.real_length(mask)), 0)
    mask[1, :4] = True
    self.assertEqual(int(losses.real_length(mask)), 4)
    mask[2, 5] = True  # not a prefix: still one past the last real step
    self.assertEqual(int(jax.jit(losses.real_length)(mask)), 6)

  def test_padding_past_the_longest_row_changes_nothing(self):
    # The network stops at the longest real row (`real_length`), so a batch
    # padded with 9 more steps of large values has the loss and gradients
    # of the same batch cut to its real steps.
    rng = np.random.default_rng(3)
    params = model.init_params(
      jax.random.key(2), observation_dim=3, hidden_size=5, depth=2
    )
    lengths = [4, 1, 6]
    short = _batch(rng.normal(size=(3, 6, 3)), lengths)
    long = _batch(
      np.concatenate([short['observations'], np.full((3, 9, 3), 50.0)], 1),
      lengths,
    )

    def value_and_grad(b):
      return jax.jit(
        jax.value_and_grad(
          lambda p: losses.total_loss(p, b, jax.random.key(0), **KW)[0]
        )
      )(params)

    (v_short, g_short), (v_long, g_long) = map(value_and_grad, (short, long))
    self.assertAlmostEqual(float(v_short), float(v_long), places=5)
    for a, b in zip(jax.tree.leaves(g_short), jax.tree.leaves(g_long)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

  def test_hand_computed_case(self):
    # One speaker, observations 1 and 3, a padded third step holding 100.
    # Means are all 2, sigma2 = 0.5, N = 2 real steps.
    params = _constant_head_params(2.0)
    batch = _batch([[[1.0], [3.0], [100.0]]], [2])
    loss, parts = jax.jit(
      lambda p, b: losses.total_loss(p, b, jax.random.key(0), **KW)
    )(params, batch)
    nll = ((2 - 1) ** 2 + (2 - 3) ** 2) / (2 * 0.5) / 2  # = 1
    prior = (2 * 1 + 2 + 2) / (2 * 2) * np.log(0.5) + 1 / (0.5 * 2)
    reg = 0.1 * 2.0  # only b2 = [2] is non-zero
    self.assertAlmostEqual(float(parts['nll']), nll, places=6)
    self.assertAlmostEqual(float(parts['sigma2_prior']), prior, places=6)
    self.assertAlmostEqual(float(parts['regularization']), reg, places=6)
    self.assertAlmostEqual(float(loss), nll + prior + reg, places=5)

  def test_nll_and_prior_match_numpy_formulas(self):
    rng = np.random.default_rng(0)
    params = model.init_params(
      jax.random.key(1), observation_dim=3, hidden_size=5, depth=2
    )
    params['sigma2'] = jnp.asarray(rng.uniform(0.1, 1.0, 3), jnp.float32)
    lengths = [4, 1, 6]
    batch = _batch(rng.normal(size=(3, 6, 3)), lengths)
    loss = jax.jit(functools.partial(losses.total_loss, **KW))
    _, parts = loss(params, batch, jax.random.key(0))
    means = np.asarray(
      jax.jit(model.predict_means)(params, batch['observations'])
    )
    s2 = np.asarray(params['sigma2'])
    n = sum(lengths)
    err = sum(
      np.sum((means[b, :k] - batch['observations'][b, :k]) ** 2 / (2 * s2))
      for b, k in enumerate(lengths)
    )
    np.testing.assert_allclose(parts['nll'], err / n, rtol=1e-5)
    prior = np.sum((2 + n + 2) / (2 * n) * np.log(s2) + 1 / (s2 * n))
    np.testing.assert_allclose(parts['sigma2_prior'], prior, rtol=1e-5)
    norms = sum(
      np.linalg.norm(np.asarray(x).ravel())
      for x in jax.tree.leaves((params['rnn'], params['head']))
    )
    np.testing.assert_allclose(parts['regularization'], 0.1 * norms, rtol=1e-5)

  def test_padding_is_a_mask_not_a_value(self):
    rng = np.random.default_rng(1)
    params = model.init_params(
      jax.random.key(2), observation_dim=3, hidden_size=4
    )
    obs = rng.normal(size=(2, 5, 3))
    obs[0, 1] = 0.0  # an exact zero observation is data, not padding
    batch = _batch(obs, [3, 5])
    garbage = dict(batch, observations=batch['observations'].copy())
    garbage['observations'][0, 3:] = 1e3
    loss = jax.jit(functools.partial(losses.total_loss, **KW))
    a = loss(params, batch, jax.random.key(0))
    b = loss(params, garbage, jax.random.key(0))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    # Dropping the zero row changes the loss: it was counted.
    shorter = _batch(np.delete(obs, 1, axis=1), [2, 4])
    c = loss(params, shorter, jax.random.key(0))
    self.assertNotAlmostEqual(float(a[1]['nll']), float(c[1]['nll']))

  def test_regularization_gradient_is_finite_at_zero(self):
    params = _constant_head_params(0.0)
    grads = jax.grad(lambda p: losses.regularization(p, weight=1.0))(params)
    for g in jax.tree.leaves(grads):
      self.assertTrue(np.all(np.isfinite(g)))

  @parameterized.parameters(0, 3)
  def test_gradients_match_finite_differences(self, loss_samples):
    with jax.enable_x64(True):
      rng = np.random.default_rng(3)
      params = model.init_params(
        jax.random.key(3), observation_dim=2, hidden_size=3, depth=2
      )
      params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
      params['init_hidden'] = jnp.asarray(rng.normal(size=(2, 3)) * 0.3)
      params['sigma2'] = jnp.asarray([0.3, 0.7])
      batch = _batch(rng.normal(size=(2, 4, 2)), [4, 2])
      batch['observations'] = batch['observations'].astype(np.float64)
      key = jax.random.key(5)

      def f(p):
        return losses.total_loss(
          p, batch, key, dropout_rate=0.0, loss_samples=loss_samples, **KW
        )[0]

      flat, unravel = jax.flatten_util.ravel_pytree(params)
      f_flat = jax.jit(lambda v: f(unravel(v)))
      gflat = jax.jit(jax.grad(lambda v: f(unravel(v))))(flat)
      eps = 1e-6
      for i in rng.choice(flat.size, 25, replace=False):
        e = jnp.zeros_like(flat).at[i].set(eps)
        fd = (f_flat(flat + e) - f_flat(flat - e)) / (2 * eps)
        np.testing.assert_allclose(gflat[i], fd, rtol=1e-5, atol=1e-7)

  def test_sample_mean_targets_average_the_future(self):
    # x_t = t, so a target's value tells which steps were averaged.
    steps = 6
    obs = np.broadcast_to(
      np.arange(steps, dtype=np.float32)[None, :, None], (2, steps, 1)
    )
    batch = _batch(obs, [6, 4])
    targets = losses.sample_mean_targets(
      jax.random.key(0), batch['observations'], batch['mask'], 50
    )
    targets = np.asarray(targets)[..., 0]
    for b, n in enumerate([6, 4]):
      for t in range(n):
        self.assertGreaterEqual(targets[b, t], t)
        self.assertLessEqual(targets[b, t], n - 1)
      self.assertEqual(targets[b, n - 1], n - 1)  # only one future sample
      # With 50 draws the mean is near the middle of the window.
      self.assertAlmostEqual(targets[b, 0], (n - 1) / 2, delta=0.6)

  def test_sample_mean_targets_stay_in_their_packed_sample(self):
    # Two samples packed in one row: [0, 1, 2] then [3, 4, 5, 6], x_t = t.
    obs = np.arange(8, dtype=np.float32).reshape(1, 8, 1)
    mask = np.array([[True] * 7 + [False]])
    ends = np.array([[3, 3, 3, 7, 7, 7, 7, 7]], np.int32)
    targets = losses.sample_mean_targets(jax.random.key(1), obs, mask, 40, ends)
    targets = np.asarray(targets)[0, :7, 0]
    for t, end in enumerate(ends[0, :7]):
      self.assertGreaterEqual(targets[t], t)
      self.assertLessEqual(targets[t], end - 1)
    self.assertEqual(targets[2], 2.0)  # last of the first sample
    self.assertEqual(targets[6], 6.0)

  @parameterized.parameters(1, 2)
  def test_packed_batch_gives_the_unpacked_loss_and_gradients(self, depth):
    rng = np.random.default_rng(depth)
    samples = data.SampleSet.from_samples(
      [rng.normal(size=(n, 3)).astype(np.float32) for n in (7, 2, 5, 1, 3, 6)]
    )
    indices = np.array([0, 1, 2, 3, 4, 5, 1])
    packed = samples.batch(indices, bucket=4)
    unpacked = samples.batch(indices, bucket=4, pack=False)
    self.assertLess(packed['mask'].size, unpacked['mask'].size)
    params = model.init_params(
      jax.random.key(depth), observation_dim=3, hidden_size=5, depth=depth
    )
    params['init_hidden'] = 0.2 * jnp.ones_like(params['init_hidden'])

    def run(batch):
      return jax.jit(
        jax.value_and_grad(
          lambda p: losses.total_loss(p, batch, jax.random.key(0), **KW),
          has_aux=True,
        )
      )(params)

    (loss_p, parts_p), grads_p = run(packed)
    (loss_u, parts_u), grads_u = run(unpacked)
    np.testing.assert_allclose(loss_p, loss_u, rtol=1e-5)
    for name in parts_u:
      np.testing.assert_allclose(parts_p[name], parts_u[name], rtol=1e-5)
    for g_p, g_u in zip(jax.tree.leaves(grads_p), jax.tree.leaves(grads_u)):
      np.testing.assert_allclose(g_p, g_u, rtol=2e-4, atol=1e-6)

  def test_loss_kwargs_validates(self):
    class Cfg:
      loss = 'mse'

    with self.assertRaisesRegex(ValueError, 'train.loss'):
      losses.loss_kwargs(Cfg(), None)


if __name__ == '__main__':
  absltest.main()
