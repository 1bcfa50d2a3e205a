"""Tests of uisrnn_jax.model against an independent NumPy GRU."""

from unittest import mock

import chex
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from uisrnn_jax import model


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def numpy_gru_layer(w_ih, w_hh, b_ih, b_hh, h, xs):
  """PyTorch's documented nn.GRU equations, one step at a time."""
  hidden = w_hh.shape[1]
  outs = []
  for x in xs:
    r = _sigmoid(
      w_ih[:hidden] @ x + b_ih[:hidden] + w_hh[:hidden] @ h + b_hh[:hidden]
    )
    z = _sigmoid(
      w_ih[hidden : 2 * hidden] @ x
      + b_ih[hidden : 2 * hidden]
      + w_hh[hidden : 2 * hidden] @ h
      + b_hh[hidden : 2 * hidden]
    )
    n = np.tanh(
      w_ih[2 * hidden :] @ x
      + b_ih[2 * hidden :]
      + r * (w_hh[2 * hidden :] @ h + b_hh[2 * hidden :])
    )
    h = (1 - z) * n + z * h
    outs.append(h)
  return np.stack(outs)


def numpy_means(params, xs):
  """Training-time running-mean predictions for one sequence, in NumPy."""
  p = jax.tree.map(np.asarray, params)
  inp = np.concatenate([np.zeros((1, xs.shape[1])), xs[:-1]])
  for i, layer in enumerate(p['rnn']):
    inp = numpy_gru_layer(
      layer['w_ih'],
      layer['w_hh'],
      layer['b_ih'],
      layer['b_hh'],
      p['init_hidden'][i],
      inp,
    )
  head = p['head']
  m = np.maximum(inp @ head['w1'].T + head['b1'], 0) @ head['w2'].T + head['b2']
  return np.cumsum(m, axis=0) / np.arange(1, len(m) + 1)[:, None]


def _random_params(depth, seed=0, d=4, h=8):
  params = model.init_params(
    jax.random.key(seed), observation_dim=d, hidden_size=h, depth=depth
  )
  # Non-zero initial hidden state so that h0 handling is exercised.
  params['init_hidden'] = 0.3 * jax.random.normal(
    jax.random.key(seed + 1), params['init_hidden'].shape
  )
  return params


class ModelTest(parameterized.TestCase):
  def test_init_shapes_follow_torch_layout(self):
    p = model.init_params(
      jax.random.key(0), observation_dim=4, hidden_size=8, depth=2, sigma2=0.5
    )
    self.assertEqual(p['rnn'][0]['w_ih'].shape, (24, 4))
    self.assertEqual(p['rnn'][1]['w_ih'].shape, (24, 8))
    self.assertEqual(p['rnn'][1]['w_hh'].shape, (24, 8))
    self.assertEqual(p['head']['w2'].shape, (4, 8))
    self.assertEqual(p['init_hidden'].shape, (2, 8))
    np.testing.assert_array_equal(p['sigma2'], np.full(4, 0.5, np.float32))
    bound = 1 / np.sqrt(8)
    for leaf in jax.tree.leaves((p['rnn'], p['head'])):
      self.assertLessEqual(float(jnp.max(jnp.abs(leaf))), bound)

  def test_init_rejects_bad_sizes(self):
    with self.assertRaisesRegex(ValueError, 'positive'):
      model.init_params(jax.random.key(0), observation_dim=0, hidden_size=8)

  def test_gru_cell_matches_numpy(self):
    p = _random_params(1)['rnn'][0]
    rng = np.random.default_rng(0)
    h = rng.normal(size=8).astype(np.float32)
    x = rng.normal(size=4).astype(np.float32)
    got = jax.jit(model.gru_cell)(p, h, x)
    want = numpy_gru_layer(
      *(np.asarray(p[k]) for k in ('w_ih', 'w_hh', 'b_ih', 'b_hh')), h, x[None]
    )[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

  @parameterized.parameters(1, 2, 3)
  def test_predict_means_matches_numpy(self, depth):
    params = _random_params(depth)
    xs = np.random.default_rng(depth).normal(size=(2, 7, 4)).astype(np.float32)
    got = jax.jit(model.predict_means)(params, xs)
    for b in range(2):
      np.testing.assert_allclose(
        got[b], numpy_means(params, xs[b]), rtol=1e-4, atol=1e-5
      )

  @parameterized.parameters(1, 2)
  def test_packed_row_equals_separate_rows(self, depth):
    # Samples of lengths 3, 1 and 4 back to back in one row of 9 (1 padded)
    # predict exactly what they predict alone, each in a row of its own.
    params = _random_params(depth)
    rng = np.random.default_rng(depth)
    pieces = [rng.normal(size=(n, 4)).astype(np.float32) for n in (3, 1, 4)]
    row = np.concatenate(pieces + [np.full((1, 4), 9.0, np.float32)])
    starts = np.zeros((1, 9), bool)
    starts[0, [0, 3, 4]] = True
    got = jax.jit(model.predict_means)(params, row[None], starts=starts)[0]
    t = 0
    for piece in pieces:
      alone = jax.jit(model.predict_means)(params, piece[None])[0]
      np.testing.assert_allclose(
        got[t : t + len(piece)], alone, rtol=1e-5, atol=1e-6
      )
      np.testing.assert_allclose(
        alone, numpy_means(params, piece), rtol=1e-4, atol=1e-5
      )
      t += len(piece)

  def test_segment_cumulative_mean(self):
    values = np.arange(1.0, 7.0, dtype=np.float32).reshape(1, 6, 1)
    starts = np.array([[False, False, True, False, False, True]])
    got = model.segment_cumulative_mean(values, starts)[0, :, 0]
    # Step 0 starts a segment even when not flagged.
    np.testing.assert_allclose(got, [1.0, 1.5, 3.0, 3.5, 4.0, 6.0])

  @parameterized.parameters(
    (1, 0.0), (31, 0.1), (32, 0.0), (70, 0.0), (70, 0.03), (97, 0.3)
  )
  def test_segment_cumulative_mean_across_blocks(self, steps, rate):
    # Segments that run through several blocks of SEGMENT_BLOCK steps, one
    # segment per row, and a row length that is not a multiple of the block.
    rng = np.random.default_rng(steps)
    values = rng.normal(size=(3, steps, 2)).astype(np.float32)
    starts = rng.random((3, steps)) < rate
    starts[1, 40:41] = True  # a start in the middle of a block (if any)
    want = np.zeros_like(values, np.float64)
    for b in range(3):
      for t in range(steps):
        first = max([0] + [s for s in range(t + 1) if starts[b, s]])
        want[b, t] = values[b, first : t + 1].mean(axis=0)
    got = model.segment_cumulative_mean(values, starts)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

  def test_rnn_step_matches_run_rnn(self):
    params = _random_params(2)
    xs = np.random.default_rng(1).normal(size=(1, 5, 4)).astype(np.float32)
    outs = model.run_rnn(params, xs)[0]
    h = params['init_hidden']
    for t in range(5):
      h = model.rnn_step(params, h, xs[0, t])
      np.testing.assert_allclose(h[-1], outs[t], rtol=1e-5, atol=1e-6)

  def test_dropout_only_between_layers_and_needs_key(self):
    xs = jnp.ones((2, 3, 4))
    one_layer = _random_params(1)
    np.testing.assert_allclose(
      model.run_rnn(
        one_layer, xs, dropout_rate=0.5, dropout_key=jax.random.key(0)
      ),
      model.run_rnn(one_layer, xs),
    )
    two_layers = _random_params(2)
    with self.assertRaisesRegex(ValueError, 'dropout_key'):
      model.run_rnn(two_layers, xs, dropout_rate=0.5)
    dropped = model.run_rnn(
      two_layers, xs, dropout_rate=0.5, dropout_key=jax.random.key(0)
    )
    self.assertFalse(np.allclose(dropped, model.run_rnn(two_layers, xs)))

  def test_params_from_torch_round_trip(self):
    params = _random_params(2)
    sd = {}
    for i, layer in enumerate(params['rnn']):
      sd[f'gru.weight_ih_l{i}'] = np.asarray(layer['w_ih'])
      sd[f'gru.weight_hh_l{i}'] = np.asarray(layer['w_hh'])
      sd[f'gru.bias_ih_l{i}'] = np.asarray(layer['b_ih'])
      sd[f'gru.bias_hh_l{i}'] = np.asarray(layer['b_hh'])
    for ours, theirs in (('1', 'linear_mean1'), ('2', 'linear_mean2')):
      sd[f'{theirs}.weight'] = np.asarray(params['head']['w' + ours])
      sd[f'{theirs}.bias'] = np.asarray(params['head']['b' + ours])
    init_hidden = np.asarray(params['init_hidden'])[:, None, :]  # [L, 1, H]
    got = model.params_from_torch(sd, init_hidden, params['sigma2'])
    jax.tree.map(np.testing.assert_array_equal, got, params)


def _plain_recurrence(layer, h0, gi, resets=None, length=None):
  """An unoptimised scan of `model.gru_gates`, differentiated by autodiff;
  outputs from step ``length`` on are zeros (what `gru_recurrence` skips)."""
  if resets is None:
    resets = jnp.zeros(gi.shape[:2], bool)

  def step(h, inputs):
    g, reset = inputs
    h = model.gru_gates(layer, jnp.where(reset[:, None], h0, h), g)
    return h, h

  hs = jax.lax.scan(step, h0, (gi, resets))[1]
  if length is None:
    return hs
  return jnp.where(jnp.arange(gi.shape[0])[:, None, None] < length, hs, 0.0)


def _random_layer(key, hidden, in_dim, dtype=jnp.float32):
  keys = jax.random.split(key, 4)
  scale = 1.0 / np.sqrt(hidden)
  return {
    'w_ih': scale * jax.random.normal(keys[0], (3 * hidden, in_dim), dtype),
    'w_hh': scale * jax.random.normal(keys[1], (3 * hidden, hidden), dtype),
    'b_ih': scale * jax.random.normal(keys[2], (3 * hidden,), dtype),
    'b_hh': scale * jax.random.normal(keys[3], (3 * hidden,), dtype),
  }


class GruRecurrenceGradientTest(parameterized.TestCase):
  """The hand-written VJP of `gru_recurrence` against autodiff and numerics."""

  @parameterized.parameters(
    (1, 1, 3, 0, False),
    (2, 3, 5, 1, False),
    (5, 2, 8, 2, False),
    (12, 4, 6, 3, False),
    (2, 3, 5, 1, True),
    (12, 4, 6, 3, True),
  )
  def test_matches_autodiff_of_plain_scan(
    self, steps, batch, hidden, seed, with_resets
  ):
    keys = jax.random.split(jax.random.key(seed), 5)
    layer = _random_layer(keys[0], hidden, 4)
    h0 = 0.5 * jax.random.normal(keys[1], (batch, hidden))
    gi = jax.random.normal(keys[2], (steps, batch, 3 * hidden))
    cotangent = jax.random.normal(keys[3], (steps, batch, hidden))
    resets = None
    if with_resets:  # restarts at random steps, including step 0 sometimes
      resets = jax.random.bernoulli(keys[4], 0.3, (steps, batch))

    def loss(fn):
      return lambda w_hh, b_hh, h0, gi: jnp.sum(
        fn({**layer, 'w_hh': w_hh, 'b_hh': b_hh}, h0, gi, resets) * cotangent
      )

    args = (layer['w_hh'], layer['b_hh'], h0, gi)
    got = jax.jit(jax.grad(loss(model.gru_recurrence), argnums=(0, 1, 2, 3)))(
      *args
    )
    want = jax.jit(jax.grad(loss(_plain_recurrence), argnums=(0, 1, 2, 3)))(
      *args
    )
    for name, g, w in zip(('w_hh', 'b_hh', 'h0', 'gi'), got, want):
      np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(
      model.gru_recurrence(layer, h0, gi, resets),
      _plain_recurrence(layer, h0, gi, resets),
      rtol=1e-6,
      atol=1e-6,
    )

  @parameterized.parameters(
    (12, 7, False), (12, 7, True), (6, 0, True), (6, 6, False), (5, 1, True)
  )
  def test_skipped_steps_match_autodiff_of_truncated_scan(
    self, steps, length, with_resets
  ):
    # Steps from `length` on are not computed: zero outputs, and gradients
    # equal to autodiff of the plain scan with those outputs zeroed, even
    # when the cotangent there is not zero.
    keys = jax.random.split(jax.random.key(steps + length), 5)
    layer = _random_layer(keys[0], 5, 4)
    h0 = 0.5 * jax.random.normal(keys[1], (3, 5))
    gi = jax.random.normal(keys[2], (steps, 3, 15))
    cotangent = jax.random.normal(keys[3], (steps, 3, 5))
    resets = None
    if with_resets:
      resets = jax.random.bernoulli(keys[4], 0.3, (steps, 3))

    def loss(fn):
      return lambda w_hh, b_hh, h0, gi: jnp.sum(
        fn({**layer, 'w_hh': w_hh, 'b_hh': b_hh}, h0, gi, resets, length)
        * cotangent
      )

    args = (layer['w_hh'], layer['b_hh'], h0, gi)
    out = jax.jit(model.gru_recurrence)(layer, h0, gi, resets, length)
    np.testing.assert_array_equal(out[length:], 0.0)
    np.testing.assert_allclose(
      out, _plain_recurrence(layer, h0, gi, resets, length), atol=1e-6
    )
    got = jax.jit(jax.grad(loss(model.gru_recurrence), argnums=(0, 1, 2, 3)))(
      *args
    )
    want = jax.jit(jax.grad(loss(_plain_recurrence), argnums=(0, 1, 2, 3)))(
      *args
    )
    for name, g, w in zip(('w_hh', 'b_hh', 'h0', 'gi'), got, want):
      np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(got[3][length:], 0.0)

  def test_model_length_changes_nothing_before_it(self):
    # `length` only skips padding: predictions and the gradients of any loss
    # on the steps before it are those of the full run.
    params = _random_params(2, seed=5)
    xs = np.random.default_rng(5).normal(size=(3, 11, 4)).astype(np.float32)
    starts = np.zeros((3, 11), bool)
    starts[:, 0] = starts[0, 3] = starts[2, 6] = True

    def loss(p, length):
      means = model.predict_means(p, xs, starts=starts, length=length)
      return jnp.sum(jnp.sin(means[:, :7]))

    full = model.predict_means(params, xs, starts=starts)
    short = jax.jit(model.predict_means)(params, xs, starts=starts, length=7)
    np.testing.assert_allclose(short[:, :7], full[:, :7], rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_close(
      jax.jit(jax.grad(loss))(params, 7),
      jax.jit(jax.grad(loss))(params, None),
      rtol=1e-5,
      atol=1e-6,
    )

  @parameterized.parameters((1, False), (2, False), (1, True), (2, True))
  def test_model_gradients_match_plain_scan(self, depth, packed):
    params = _random_params(depth, seed=4)  # non-zero init_hidden
    xs = np.random.default_rng(4).normal(size=(3, 9, 4)).astype(np.float32)
    starts = None
    if packed:
      starts = np.zeros((3, 9), bool)
      starts[:, 0] = True
      starts[0, 4] = starts[1, 1] = starts[1, 7] = True

    def loss(p):
      return jnp.sum(jnp.sin(model.predict_means(p, xs, starts=starts)))

    got = jax.jit(jax.grad(loss))(params)
    with mock.patch.object(model, 'gru_recurrence', _plain_recurrence):
      want = jax.jit(jax.grad(loss))(params)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5)
    self.assertGreater(float(jnp.max(jnp.abs(got['init_hidden']))), 0.0)

  @parameterized.parameters(False, True)
  def test_gradients_match_finite_differences_in_float64(self, with_resets):
    with jax.enable_x64(True):
      keys = jax.random.split(jax.random.key(7), 4)
      layer = _random_layer(keys[0], 3, 2, jnp.float64)
      h0 = 0.5 * jax.random.normal(keys[1], (2, 3), jnp.float64)
      gi = jax.random.normal(keys[2], (6, 2, 9), jnp.float64)
      cotangent = jax.random.normal(keys[3], (6, 2, 3), jnp.float64)
      resets = None
      if with_resets:
        resets = jnp.zeros((6, 2), bool).at[2, 0].set(True).at[4, 1].set(True)

      def f(w_hh, b_hh, h0, gi):
        out = model.gru_recurrence(
          {**layer, 'w_hh': w_hh, 'b_hh': b_hh}, h0, gi, resets
        )
        return jnp.sum(out * cotangent)

      args = (layer['w_hh'], layer['b_hh'], h0, gi)
      flat, unravel = jax.flatten_util.ravel_pytree(args)
      self.assertEqual(flat.dtype, jnp.float64)
      f_flat = jax.jit(lambda v: f(*unravel(v)))
      grad = jax.jit(jax.grad(f_flat))(flat)
      steps = 1e-6 * jnp.eye(flat.size, dtype=flat.dtype)  # every entry
      both = jax.jit(jax.vmap(f_flat))
      fd = (both(flat + steps) - both(flat - steps)) / 2e-6
      np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


if __name__ == '__main__':
  absltest.main()
