"""Tests of uisrnn_jax.decode against a brute-force NumPy beam search.

`brute_force_decode` re-implements the reference decoder's decisions
(uisrnn 0.1.2 `predict_single`) with explicit Python loops over chunks,
hypotheses and assignment tuples, in float64, sharing no code with the JAX
implementation. Shapes are tiny and each decode setting compiles once: the
models differ only in parameter values, which are traced.
"""

import dataclasses
import functools
import itertools
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax_testing import compile_log

from uisrnn_jax import decode, errors, model

D, H = 4, 8


def _np(params):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), params)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def np_rnn_step(p, h, x):
  """PyTorch's GRU equations, layer by layer, for one time step."""
  out = []
  inp = x
  for i, layer in enumerate(p['rnn']):
    gi = layer['w_ih'] @ inp + layer['b_ih']
    gh = layer['w_hh'] @ h[i] + layer['b_hh']
    hid = h.shape[1]
    r = _sigmoid(gi[:hid] + gh[:hid])
    z = _sigmoid(gi[hid : 2 * hid] + gh[hid : 2 * hid])
    n = np.tanh(gi[2 * hid :] + r * gh[2 * hid :])
    inp = (1 - z) * n + z * h[i]
    out.append(inp)
  return np.stack(out)


def np_head(p, h_top):
  head = p['head']
  return (
    head['w2'] @ np.maximum(head['w1'] @ h_top + head['b1'], 0) + head['b2']
  )


@dataclasses.dataclass
class Hyp:
  """One hypothesis of the brute-force search (plain Python lists)."""

  hidden: list
  mean: list
  count: list
  blocks: list
  trace: list
  cost: float = 0.0

  def copy(self):
    return Hyp(
      list(self.hidden),
      list(self.mean),
      list(self.count),
      list(self.blocks),
      list(self.trace),
      self.cost,
    )


def _extend(p, hyp, xs, tup, p0, alpha, mean_rule, cap):
  """Applies an assignment tuple; returns None if it is invalid."""
  weight = 1.0 / (2.0 * p['sigma2'])
  new_hidden = np_rnn_step(p, p['init_hidden'], np.zeros(len(weight)))
  new_mean = np_head(p, new_hidden[-1])
  hyp = hyp.copy()
  for x, c in zip(xs, tup):
    num = len(hyp.mean)
    log_norm = np.log(sum(hyp.blocks) + alpha)
    if c > num or (c == num and cap is not None and num >= cap):
      return None
    if c < num:
      fit = np.sum((hyp.mean[c] - x) ** 2 * weight)
      if hyp.trace and c == hyp.trace[-1]:
        trans = -np.log(1 - p0)
      else:
        trans = -(np.log(p0) + np.log(hyp.blocks[c]) - log_norm)
      h = np_rnn_step(p, hyp.hidden[c], x)
      m = np_head(p, h[-1])
      n = hyp.count[c]
      if mean_rule == 'reference':
        mean = (hyp.mean[c] * (n - 1) + m) / n
      else:
        mean = (hyp.mean[c] * (n + 1) + m) / (n + 2)
      if c != hyp.trace[-1]:
        hyp.blocks[c] += 1
      hyp.hidden[c], hyp.mean[c] = h, mean
      hyp.count[c] += 1
    else:
      fit = np.sum((new_mean - x) ** 2 * weight)
      trans = -(np.log(p0) + np.log(alpha) - log_norm)
      h = np_rnn_step(p, new_hidden, x)
      m = np_head(p, h[-1])
      mean = m if mean_rule == 'reference' else (new_mean + m) / 2
      hyp.hidden.append(h)
      hyp.mean.append(mean)
      hyp.count.append(1)
      hyp.blocks.append(1)
    hyp.trace.append(c)
    hyp.cost += fit + trans
  return hyp


def first_appearance(labels):
  order = {}
  return np.array([order.setdefault(v, len(order)) for v in labels])


def brute_force_decode(
  params,
  seq,
  *,
  p0,
  alpha,
  beam_size,
  look_ahead=1,
  test_iteration=1,
  mean_rule='reference',
  cap=None,
  least=1,
):
  """The reference decoder's decisions, by enumeration, in float64.

  ``least``: a candidate is dropped when the speakers it has in the last
  copy so far plus the observations of that copy still to come are fewer
  than min(least, N) (it can no longer reach the minimum).

  Returns:
    (labels of the last copy in first-appearance order, the largest number
    of speakers of any kept hypothesis).
  """
  p = _np(params)
  n = len(seq)
  tiled = np.tile(np.asarray(seq, np.float64), (test_iteration, 1))
  copy_start = (test_iteration - 1) * n
  beams = [Hyp([], [], [], [], [])]
  most = 0
  for start in range(0, len(tiled), look_ahead):
    xs = tiled[start : start + look_ahead]
    end = start + len(xs)
    to_come = min(n, len(tiled) - end)
    cands = []
    for rank, hyp in enumerate(beams):
      for tup in itertools.product(
        range(len(hyp.mean) + len(xs)), repeat=len(xs)
      ):
        new = _extend(p, hyp, xs, tup, p0, alpha, mean_rule, cap)
        if new is None or not np.isfinite(new.cost):
          continue
        seen = len(set(new.trace[copy_start:]))
        if seen + to_come >= min(least, n):
          cands.append((new.cost, rank, tup, new))
    cands.sort(key=lambda c: c[:3])  # cost, then rank, then tuple
    beams = [c[3] for c in cands[:beam_size]]
    most = max([most] + [len(b.mean) for b in beams])
  return first_appearance(beams[0].trace[-len(seq) :]), most


def labeling_cost(params, seq, labels, *, p0, alpha, mean_rule='reference'):
  """Negative log-likelihood of one full labeling (first-appearance ids)."""
  p = _np(params)
  hyp = _extend(
    p, Hyp([], [], [], [], []), seq, labels, p0, alpha, mean_rule, None
  )
  return hyp.cost


def random_params(seed, depth=1, scale=3.0, sigma2=0.5):
  params = model.init_params(
    jax.random.key(seed), observation_dim=D, hidden_size=H, depth=depth
  )
  params = jax.tree.map(lambda a: a * scale, params)
  params['init_hidden'] = 0.3 * jax.random.normal(
    jax.random.key(seed + 100), params['init_hidden'].shape
  )
  params['sigma2'] = jnp.full((D,), sigma2, jnp.float32)
  return params


def clustered_sequence(rng, n, num_clusters=3, spread=2.0, noise=0.3):
  centers = rng.normal(size=(num_clusters, D)) * spread
  ids = rng.integers(0, num_clusters, size=n)
  return (centers[ids] + noise * rng.normal(size=(n, D))).astype(np.float32)


def tracking_params(sigma2=0.1):
  """A GRU + head whose prediction is ~ the last observation it was fed.

  z = 0 (so h' = n), n = tanh(a [x; -x]) and the head undoes the tanh
  approximately: m = (relu(h+) - relu(h-)) / a ~ x. A new speaker is
  predicted at m_0 = 0 exactly.
  """
  a = 0.1
  eye = np.eye(D)
  w_ih = np.zeros((3 * H, D))
  w_ih[2 * H :] = np.concatenate([a * eye, -a * eye])
  b_ih = np.zeros(3 * H)
  b_ih[H : 2 * H] = -30.0  # update gate closed
  w2 = np.concatenate([eye, -eye], axis=1) / a
  params = {
    'rnn': [
      {
        'w_ih': w_ih,
        'w_hh': np.zeros((3 * H, H)),
        'b_ih': b_ih,
        'b_hh': np.zeros(3 * H),
      }
    ],
    'head': {'w1': np.eye(H), 'b1': np.zeros(H), 'w2': w2, 'b2': np.zeros(D)},
    'init_hidden': np.zeros((1, H)),
    'sigma2': np.full(D, sigma2),
  }
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)


def constant_mean_params(value=0.5):
  """All weights zero and b2 = value: every mean is the same constant."""
  params = jax.tree.map(jnp.zeros_like, random_params(0))
  params['head']['b2'] = jnp.full((D,), value, jnp.float32)
  params['sigma2'] = jnp.ones((D,), jnp.float32)
  return params


def settings(**kwargs):
  base = dict(beam_size=3, max_speakers=16, test_iteration=1, bucket=16)
  base.update(kwargs)
  return base


# Decode settings x model depth; each row compiles once.
CASES = [
  dict(testcase_name='la1', look_ahead=1, test_iteration=1, depth=1),
  dict(
    testcase_name='la1_ti2_depth2_cumulative',
    look_ahead=1,
    test_iteration=2,
    depth=2,
    mean_rule='cumulative',
    beam_size=4,
  ),
  dict(testcase_name='la2_depth2', look_ahead=2, test_iteration=1, depth=2),
  dict(
    testcase_name='la2_ti2_cumulative',
    look_ahead=2,
    test_iteration=2,
    depth=1,
    mean_rule='cumulative',
  ),
  dict(testcase_name='la3', look_ahead=3, test_iteration=1, depth=1),
]


class BruteForceTest(parameterized.TestCase):
  @parameterized.named_parameters(*CASES)
  def test_matches_brute_force(
    self, look_ahead, test_iteration, depth, mean_rule='reference', **kw
  ):
    config = settings(
      look_ahead=look_ahead,
      test_iteration=test_iteration,
      mean_rule=mean_rule,
      **kw,
    )
    num_distinct = []
    for seed in range(3):
      rng = np.random.default_rng(seed)
      params = random_params(seed, depth=depth)
      p0 = [0.3, 0.45, 0.2][seed]
      alpha = [1.0, 0.5, 2.0][seed]
      seqs = [clustered_sequence(rng, n) for n in (7, 10, 13)]
      ours = decode.predict_labels(
        params, seqs, transition_bias=p0, crp_alpha=alpha, config=config
      )
      for seq, got in zip(seqs, ours):
        want, most = brute_force_decode(
          params,
          seq,
          p0=p0,
          alpha=alpha,
          beam_size=config['beam_size'],
          look_ahead=look_ahead,
          test_iteration=test_iteration,
          mean_rule=mean_rule,
        )
        self.assertLessEqual(most, config['max_speakers'])
        np.testing.assert_array_equal(got, want)
        self.assertEqual(got.dtype, np.int32)
        num_distinct.append(len(set(got.tolist())))
    # The cases must exercise several speakers, or they prove little.
    self.assertGreaterEqual(max(num_distinct), 3)

  def test_look_ahead_two_is_exhaustive_on_four_observations(self):
    # With look_ahead 2 and 4 observations, the first chunk leaves at most
    # two hypotheses (00, 01) and the second scores every extension, so a
    # beam of 3 finds the best of all 15 labelings.
    config = settings(look_ahead=2)
    params = random_params(11, depth=2)  # one whose winners differ
    p0, alpha = 0.4, 1.0
    labelings = [
      tup
      for tup in itertools.product(range(4), repeat=4)
      if tup == tuple(first_appearance(tup))
    ]
    self.assertLen(labelings, 15)
    seqs = [
      clustered_sequence(np.random.default_rng(seed), 4, spread=1.0)
      for seed in range(4)
    ]
    got = decode.predict_labels(
      params, seqs, transition_bias=p0, crp_alpha=alpha, config=config
    )
    winners = set()
    for seq, labels in zip(seqs, got):
      costs = [
        labeling_cost(params, seq, lab, p0=p0, alpha=alpha) for lab in labelings
      ]
      best = labelings[int(np.argmin(costs))]
      np.testing.assert_array_equal(labels, best)
      winners.add(best)
    self.assertGreater(len(winners), 1)


class KnownLabelsTest(absltest.TestCase):
  def test_tracking_model_labels_clusters(self):
    centers = 1.5 * np.array(
      [[1, 1, 1, 1], [-1, -1, -1, -1], [1, -1, 1, -1]], np.float32
    )
    ids = np.array([0, 0, 1, 1, 0, 2, 2, 1, 0, 2])
    noise = np.random.default_rng(0).normal(size=(len(ids), D)) * 0.05
    seq = centers[ids] + noise.astype(np.float32)
    got = decode.predict_labels(
      tracking_params(),
      seq,
      transition_bias=0.3,
      crp_alpha=1.0,
      config=settings(),
    )[0]
    np.testing.assert_array_equal(got, ids)

  def test_constant_means_low_p0_never_switches(self):
    seq = np.random.default_rng(1).normal(size=(9, D)).astype(np.float32)
    got = decode.predict_labels(
      constant_mean_params(),
      seq,
      transition_bias=0.1,
      crp_alpha=1.0,
      config=settings(),
    )[0]
    np.testing.assert_array_equal(got, np.zeros(9))

  def test_constant_means_high_p0_alternates(self):
    # Equal means leave only the transition terms. With p0 = 0.9 staying
    # costs -log 0.1 = 2.30; switching to the other speaker costs
    # -log 0.9 + log((t - 1 + alpha) / blocks) ~ 0.8, and with alpha = 0.5
    # a third speaker always costs more than switching back.
    seq = np.random.default_rng(2).normal(size=(8, D)).astype(np.float32)
    got = decode.predict_labels(
      constant_mean_params(),
      seq,
      transition_bias=0.9,
      crp_alpha=0.5,
      config=settings(),
    )[0]
    np.testing.assert_array_equal(got, [0, 1, 0, 1, 0, 1, 0, 1])


class BatchingTest(absltest.TestCase):
  def test_batched_equals_one_by_one(self):
    params = random_params(5)
    rng = np.random.default_rng(5)
    # Lengths span two buckets of 16, in shuffled order; the programs are
    # those other tests compile too (4 rows of 16, 1 row of 16 or 32).
    seqs = [clustered_sequence(rng, n) for n in (5, 16, 20, 9, 1)]
    kw = dict(transition_bias=0.35, crp_alpha=1.0, config=settings())
    together = decode.predict_labels(params, seqs, **kw)
    self.assertLen(together, len(seqs))
    for seq, got in zip(seqs, together):
      self.assertEqual(got.shape, (len(seq),))
      np.testing.assert_array_equal(got, first_appearance(got))  # 0, 1, ...
      (alone,) = decode.predict_labels(params, [seq], **kw)
      np.testing.assert_array_equal(got, alone)
    self.assertGreater(max(len(set(g.tolist())) for g in together), 1)

  def test_padding_content_is_ignored(self):
    params = random_params(4)
    seq = clustered_sequence(np.random.default_rng(4), 11)
    obs, mask = decode.pad_batch([seq, seq], 16, batch=4)
    obs[1, 11:] = 1e3  # garbage where the mask is False
    s = decode.DecodeSettings.from_config(settings())
    labels, _ = decode.decode_batch(params, obs, mask, 0.3, 1.0, settings=s)
    labels = np.asarray(labels)
    np.testing.assert_array_equal(labels[0], labels[1])
    np.testing.assert_array_equal(labels[0, 11:], -1)

  def test_same_bucket_does_not_recompile(self):
    params = random_params(5)
    rng = np.random.default_rng(5)
    kw = dict(
      transition_bias=0.3,
      crp_alpha=1.0,
      config=settings(speaker_overflow='disallow'),
    )
    decode.predict_labels(params, [clustered_sequence(rng, 3)], **kw)
    with compile_log() as log:
      for n in (9, 16, 1):  # all in the bucket of 16
        decode.predict_labels(params, [clustered_sequence(rng, n)], **kw)
    self.assertEmpty([m for m in log if 'Compiling jit(decode_batch)' in m])
    with compile_log() as log:  # control: a bucket no other test uses
      decode.predict_labels(params, [clustered_sequence(rng, 40)], **kw)
    self.assertNotEmpty([m for m in log if 'Compiling jit(decode_batch)' in m])

  def test_jitted_core_traces_once_per_shape(self):
    params = random_params(6)
    rng = np.random.default_rng(6)
    s = decode.DecodeSettings.from_config(settings())
    fn = jax.jit(
      chex.assert_max_traces(
        lambda p, x, m: decode.decode(
          p, x, m, transition_bias=0.3, crp_alpha=1.0, settings=s
        ),
        n=1,
      )
    )
    for n in (10, 3, 16):  # different real lengths, one padded shape
      seq = clustered_sequence(rng, n)
      obs = jnp.zeros((16, D)).at[:n].set(seq)
      labels = fn(params, obs, jnp.arange(16) < n)
      want = decode.predict_labels(
        params, seq, transition_bias=0.3, crp_alpha=1.0, config=settings()
      )[0]
      np.testing.assert_array_equal(labels[:n], want)
      np.testing.assert_array_equal(labels[n:], -1)


class OverflowTest(absltest.TestCase):
  def _three_speakers(self):
    centers = 1.5 * np.array(
      [[1, 1, 1, 1], [-1, -1, -1, -1], [1, -1, 1, -1]], np.float32
    )
    ids = np.array([0, 1, 0, 2, 2, 1])
    noise = np.random.default_rng(0).normal(size=(len(ids), D)) * 0.05
    return centers[ids] + noise.astype(np.float32)

  def test_error_policy_raises(self):
    seq = self._three_speakers()
    config = settings(max_speakers=2, speaker_overflow='error')
    with self.assertRaisesRegex(
      ValueError, r'max_speakers=2.*speaker_overflow'
    ):
      decode.predict_labels(
        tracking_params(),
        [seq[:2], seq],
        transition_bias=0.3,
        crp_alpha=1.0,
        config=config,
      )
    # Every step scores new-speaker candidates, but on a one-speaker
    # sequence no hypothesis with a third speaker survives: no error.
    one = self._three_speakers()[[0, 2, 0, 2, 2]]
    got = decode.predict_labels(
      tracking_params(),
      [one, one[:3]],  # two rows, like the call above: no new program
      transition_bias=0.3,
      crp_alpha=1.0,
      config=config,
    )
    np.testing.assert_array_equal(got[0], np.zeros(5))
    np.testing.assert_array_equal(got[1], np.zeros(3))

  def test_disallow_policy_caps_speakers(self):
    seq = self._three_speakers()
    params = tracking_params()
    got = decode.predict_labels(
      params,
      seq,
      transition_bias=0.3,
      crp_alpha=1.0,
      config=settings(max_speakers=2, speaker_overflow='disallow'),
    )[0]
    want, most = brute_force_decode(
      params, seq, p0=0.3, alpha=1.0, beam_size=3, cap=2
    )
    self.assertLessEqual(most, 2)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got[:3], [0, 1, 0])

  def test_dead_rows_produce_no_nan(self):
    s = decode.DecodeSettings(beam_size=4, max_speakers=3, look_ahead=1)
    params = random_params(8)
    consts = decode.make_constants(params, transition_bias=0.3, crp_alpha=1.0)
    beam = decode.init_beam(s, observation_dim=D, hidden=H, depth=1)
    step = jax.jit(
      lambda b, x: decode.beam_step(
        params,
        consts,
        b,
        x[None],
        decode.input_projection(params, x)[None],
        jnp.ones((1,), bool),
        s,
      )
    )
    rng = np.random.default_rng(8)
    for t in range(4):
      beam, parent, slots, _ = step(beam, jnp.asarray(rng.normal(size=D)))
      cost = np.asarray(beam.cost)
      self.assertFalse(np.any(np.isnan(cost)))
      self.assertFalse(np.any(np.isnan(np.asarray(beam.pool_mean))))
      # After t + 1 observations there are Bell(t + 1) hypotheses.
      self.assertEqual(np.sum(np.isfinite(cost)), min(4, [1, 2, 5, 15][t]))
      self.assertTrue(np.all(np.diff(cost[np.isfinite(cost)]) >= 0))


def refines(labels, truth):
  """Every predicted speaker lies within one true speaker."""
  return all(len(set(truth[labels == k])) == 1 for k in set(labels.tolist()))


class SpeakerCountTest(parameterized.TestCase):
  """pyannote's num/min/max_speakers inside the beam search."""

  # Three far-apart speakers (tracking model: mean ~ the speaker's last
  # observation, new speakers predicted at 0).
  ids = np.array([0, 0, 1, 1, 0, 2, 2, 1, 0, 2])

  def _sequence(self):
    centers = 1.5 * np.array(
      [[1, 1, 1, 1], [-1, -1, -1, -1], [1, -1, 1, -1]], np.float32
    )
    noise = np.random.default_rng(0).normal(size=(len(self.ids), D)) * 0.05
    return centers[self.ids] + noise.astype(np.float32)

  def _decode(self, **count):
    config = decode.speaker_count_config(settings(), **count)
    return decode.predict_labels(
      tracking_params(),
      self._sequence(),
      transition_bias=0.3,
      crp_alpha=1.0,
      config=config,
    )[0]

  def _reference(self, **kw):
    return brute_force_decode(
      tracking_params(), self._sequence(), p0=0.3, alpha=1.0, beam_size=3, **kw
    )

  def test_unconstrained_finds_three(self):
    np.testing.assert_array_equal(self._decode(), self.ids)

  def test_num_speakers_three_is_the_truth(self):
    np.testing.assert_array_equal(self._decode(num_speakers=3), self.ids)

  def test_max_two_merges_the_third_speaker(self):
    got = self._decode(max_speakers=2)
    want, most = self._reference(cap=2)
    np.testing.assert_array_equal(got, want)
    self.assertLessEqual(most, 2)
    self.assertEqual(set(got.tolist()), {0, 1})
    # Speakers 0 and 1 (the farthest apart) stay apart.
    self.assertEqual(set(got[self.ids == 0].tolist()), {0})
    self.assertEqual(set(got[self.ids == 1].tolist()), {1})

  def test_min_four_splits_a_speaker(self):
    got = self._decode(min_speakers=4)
    want, _ = self._reference(least=4)
    np.testing.assert_array_equal(got, want)
    self.assertLen(set(got.tolist()), 4)
    self.assertTrue(refines(got, self.ids), got)  # splits, never merges

  def test_min_two_is_no_constraint_here(self):
    np.testing.assert_array_equal(self._decode(min_speakers=2), self.ids)

  def test_sequence_shorter_than_minimum(self):
    # Three observations cannot have four speakers: one per observation.
    got = decode.predict_labels(
      tracking_params(),
      self._sequence()[:3],
      transition_bias=0.3,
      crp_alpha=1.0,
      config=decode.speaker_count_config(settings(), min_speakers=4),
    )[0]
    np.testing.assert_array_equal(got, [0, 1, 2])

  @parameterized.named_parameters(
    ('la1', 1, 1, 3),
    ('la1_ti2', 1, 2, 4),
    ('la2', 2, 1, 4),
    ('la2_ti2', 2, 2, 3),
  )
  def test_minimum_matches_brute_force(self, look_ahead, test_iteration, least):
    config = settings(
      look_ahead=look_ahead, test_iteration=test_iteration, min_speakers=least
    )
    counts = []
    for seed in range(2):
      rng = np.random.default_rng(seed)
      params = random_params(seed)
      seqs = [clustered_sequence(rng, n, num_clusters=2) for n in (6, 9)]
      ours = decode.predict_labels(
        params, seqs, transition_bias=0.2, crp_alpha=1.0, config=config
      )
      for seq, got in zip(seqs, ours):
        want, _ = brute_force_decode(
          params,
          seq,
          p0=0.2,
          alpha=1.0,
          beam_size=3,
          look_ahead=look_ahead,
          test_iteration=test_iteration,
          least=least,
        )
        np.testing.assert_array_equal(got, want)
        self.assertGreaterEqual(len(set(got.tolist())), least)
        counts.append(len(set(got.tolist())))
    self.assertIn(least, counts)  # the minimum was binding somewhere

  def test_minimum_compiles_once(self):
    params = random_params(3)
    rng = np.random.default_rng(3)
    config = decode.speaker_count_config(settings(), min_speakers=3)
    kw = dict(transition_bias=0.3, crp_alpha=1.0, config=config)
    decode.predict_labels(params, [clustered_sequence(rng, 5)], **kw)
    with compile_log() as log:
      for n in (9, 16, 2):  # same bucket of 16, same settings
        decode.predict_labels(params, [clustered_sequence(rng, n)], **kw)
    self.assertEmpty([m for m in log if 'Compiling jit(decode_batch)' in m])

  def test_resegmentation_keeps_the_minimum(self):
    got = decode.predict_labels(
      tracking_params(),
      self._sequence(),
      transition_bias=0.3,
      crp_alpha=1.0,
      config=settings(min_speakers=4, resegment_iterations=2),
    )[0]
    self.assertGreaterEqual(len(set(got.tolist())), 4)

  def test_speaker_count_config(self):
    from uisrnn_jax import defaults  # noqa: PLC0415

    base = defaults.get_config().decode
    got = decode.speaker_count_config(base, num_speakers=3)
    self.assertEqual(
      (got.min_speakers, got.max_speakers, got.speaker_overflow),
      (3, 3, 'disallow'),
    )
    self.assertEqual((base.min_speakers, base.max_speakers), (1, 16))
    got = decode.speaker_count_config(base, min_speakers=2, max_speakers=5)
    self.assertEqual((got.min_speakers, got.max_speakers), (2, 5))
    self.assertEqual(got.speaker_overflow, 'disallow')
    got = decode.speaker_count_config(base, min_speakers=2)
    self.assertEqual((got.max_speakers, got.speaker_overflow), (16, 'error'))
    s = decode.speaker_count_config(decode.DecodeSettings(), num_speakers=2)
    self.assertEqual(
      s,
      decode.DecodeSettings(
        min_speakers=2, max_speakers=2, speaker_overflow='disallow'
      ),
    )
    # The config field num_speakers (infer.py --config.decode.num_speakers).
    base.num_speakers = 4
    s = decode.DecodeSettings.from_config(base)
    self.assertEqual((s.min_speakers, s.max_speakers), (4, 4))
    self.assertEqual(s.speaker_overflow, 'disallow')

  def test_speaker_count_errors(self):
    with self.assertRaisesRegex(errors.ConfigError, 'num_speakers=3 fixes'):
      decode.speaker_count_config(settings(), num_speakers=3, min_speakers=2)
    with self.assertRaisesRegex(errors.ConfigError, 'min_speakers=5 exceeds'):
      decode.speaker_count_config(settings(), min_speakers=5, max_speakers=4)
    with self.assertRaisesRegex(
      errors.ConfigError, 'max_speakers must be >= 1'
    ):
      decode.speaker_count_config(settings(), max_speakers=0)
    with self.assertRaisesRegex(errors.ConfigTypeError, 'num_speakers must'):
      decode.speaker_count_config(settings(), num_speakers=2.5)


class LabellingCostTest(parameterized.TestCase):
  """`decode.labelling_cost` against the float64 `labeling_cost` above."""

  @parameterized.parameters(1, 2)
  def test_matches_brute_force(self, depth):
    params = random_params(4, depth=depth)
    consts = decode.make_constants(params, transition_bias=0.2, crp_alpha=0.7)
    cost = jax.jit(functools.partial(decode.labelling_cost, num_slots=5))
    rng = np.random.default_rng(depth)
    for n in (1, 2, 9, 14):
      seq = clustered_sequence(rng, n)
      labels = first_appearance(rng.integers(0, 4, size=n))
      want = labeling_cost(
        params, seq, labels, p0=0.2, alpha=0.7, mean_rule='cumulative'
      )
      # Padded to 16 with junk, and speakers in other slots than 0, 1, ...
      slots = np.array([3, 0, 4, 1])[labels]
      obs = np.concatenate([seq, rng.normal(size=(16 - n, D)) * 9])
      got = cost(
        params,
        consts,
        jnp.asarray(obs, jnp.float32),
        jnp.asarray(np.pad(slots, (0, 16 - n), constant_values=2)),
        jnp.arange(16) < n,
      )
      np.testing.assert_allclose(got, want, rtol=2e-5)

  def test_is_the_beam_search_cost(self):
    # One pass, cumulative means: the best hypothesis' accumulated cost is
    # the cost of its labels.
    params = random_params(5)
    seq = clustered_sequence(np.random.default_rng(5), 8)
    config = decode.DecodeSettings(
      beam_size=3, test_iteration=1, mean_rule='cumulative', max_speakers=5
    )
    consts = jax.jit(decode.make_constants)(
      params, transition_bias=0.3, crp_alpha=1.0
    )
    beam = decode.init_beam(config, observation_dim=D, hidden=H, depth=1)
    gi = decode.input_projection(params, jnp.asarray(seq))
    step = jax.jit(functools.partial(decode.beam_step, settings=config))
    for t in range(len(seq)):
      beam, *_ = step(
        params, consts, beam, seq[t : t + 1], gi[t : t + 1],
        jnp.ones((1,), bool),
      )  # fmt: skip
    # The same search's labels (it equals ours, see BruteForceTest).
    labels, _ = brute_force_decode(
      params, seq, p0=0.3, alpha=1.0, beam_size=3, mean_rule='cumulative'
    )
    cost = jax.jit(functools.partial(decode.labelling_cost, num_slots=5))
    got = cost(
      params, consts, jnp.asarray(seq), jnp.asarray(labels),
      jnp.ones(len(seq), bool),
    )  # fmt: skip
    np.testing.assert_allclose(got, beam.cost[0], rtol=1e-5)


class CountSearchTest(absltest.TestCase):
  """``count_search``: the best of the counts around the beam search's."""

  def _candidates(self, params, seq):
    """Labels and float64 costs of the free search and of fixed counts, by
    the brute-force search (``settings()``: beam 3, one pass)."""
    search = functools.partial(
      brute_force_decode, params, seq, p0=0.3, alpha=1.0, beam_size=3
    )
    found, _ = search()
    k = len(set(found.tolist()))
    out = {0: found}
    for count in (k - 1, k + 1):
      if 1 <= count <= len(seq):
        out[count], _ = search(cap=count, least=count)
    costs = {
      key: labeling_cost(
        params, seq, labels, p0=0.3, alpha=1.0, mean_rule='cumulative'
      )
      for key, labels in out.items()
    }
    return out, costs

  def test_keeps_the_least_cost_plus_penalty(self):
    picked = set()
    for seed in range(3):
      params = random_params(seed)
      rng = np.random.default_rng(seed)
      seqs = [clustered_sequence(rng, n, num_clusters=3) for n in (7, 12)]
      for seq in seqs:
        cands, costs = self._candidates(params, seq)
        for penalty in (0.0, 3.0):
          config = settings(count_search=1, count_penalty=penalty)
          (labels,) = decode.predict_labels(
            params, seq, config=config, **PRIORS
          )
          per_speaker = penalty * np.log(len(seq))
          score = {
            key: costs[key] + per_speaker * len(set(cands[key].tolist()))
            for key in cands
          }
          best = min(score.values())
          # Float32 against float64: a near-tie may go either way.
          near = [key for key in cands if score[key] - best < 1e-3 * best]
          self.assertTrue(
            any(np.array_equal(labels, cands[key]) for key in near),
            (seed, penalty, labels, cands, score),
          )
          if len(near) == 1:
            picked.add(near[0] != 0)
    self.assertEqual(picked, {True, False})  # both outcomes were tested

  def test_huge_penalty_takes_one_speaker_fewer(self):
    case = SpeakerCountTest()
    seq = case._sequence()  # three far-apart speakers
    config = settings(count_search=1, count_penalty=1e6)
    got = decode.predict_labels(tracking_params(), seq, config=config, **PRIORS)
    want = decode.predict_labels(
      tracking_params(),
      seq,
      config=decode.speaker_count_config(settings(), num_speakers=2),
      **PRIORS,
    )
    np.testing.assert_array_equal(got[0], want[0])
    self.assertLen(set(got[0].tolist()), 2)

  def test_respects_the_minimum_and_a_fixed_count(self):
    seq = SpeakerCountTest()._sequence()
    params = tracking_params()
    big = dict(count_search=2, count_penalty=1e6)
    got = decode.predict_labels(
      params, seq, config=settings(min_speakers=3, **big), **PRIORS
    )[0]
    self.assertLen(set(got.tolist()), 3)
    fixed = decode.speaker_count_config(settings(**big), num_speakers=4)
    got = decode.predict_labels(params, seq, config=fixed, **PRIORS)[0]
    self.assertLen(set(got.tolist()), 4)

  def test_batched_equals_one_by_one(self):
    # Three sequences of different lengths: a padded batch of four rows,
    # one of them all padding.
    params = random_params(2)
    rng = np.random.default_rng(2)
    seqs = [clustered_sequence(rng, n) for n in (12, 5, 9)]
    config = settings(count_search=1, count_penalty=3.0)
    batched = decode.predict_labels(params, seqs, config=config, **PRIORS)
    for seq, got in zip(seqs, batched):
      (alone,) = decode.predict_labels(params, seq, config=config, **PRIORS)
      np.testing.assert_array_equal(got, alone)

  def test_compiles_once_per_bucket(self):
    params = random_params(3)
    rng = np.random.default_rng(3)
    kw = dict(config=settings(count_search=1, count_penalty=3.0), **PRIORS)
    decode.predict_labels(params, [clustered_sequence(rng, 5)], **kw)
    with compile_log() as log:
      for n in (9, 16, 2):  # same bucket of 16, same settings
        decode.predict_labels(params, [clustered_sequence(rng, n)], **kw)
    self.assertEmpty([m for m in log if 'Compiling jit(decode_batch)' in m])


PRIORS = dict(transition_bias=0.3, crp_alpha=1.0)


class RenumberTest(absltest.TestCase):
  def test_first_appearance_order(self):
    labels = jnp.array([3, 3, 0, 5, 0, 1, 7, 7])
    mask = jnp.array([1, 1, 1, 1, 1, 1, 0, 0], bool)
    got = decode.renumber(labels, mask, 8)
    np.testing.assert_array_equal(got, [0, 0, 1, 2, 1, 3, -1, -1])


class ValidationTest(parameterized.TestCase):
  kw = dict(transition_bias=0.3, crp_alpha=1.0, config=settings())

  @parameterized.named_parameters(
    ('one_d', np.zeros(4), ValueError, '2-D'),
    ('three_d', np.zeros((2, 3, 4)), ValueError, '2-D'),
    ('wrong_dim', np.zeros((3, 5)), ValueError, 'observation_dim=4'),
    ('empty', np.zeros((0, 4)), ValueError, 'empty'),
    ('nan', np.full((3, 4), np.nan), ValueError, 'NaN'),
    ('inf', np.full((3, 4), np.inf), ValueError, 'Inf'),
    ('strings', np.full((3, 4), 'a'), TypeError, 'float numpy array'),
    ('ints', np.zeros((3, 4), np.int64), TypeError, 'float numpy array'),
    ('not_array', [[0.0] * 4], TypeError, 'float numpy array'),
  )
  def test_bad_sequence(self, seq, error, message):
    with self.assertRaisesRegex(error, message):
      decode.predict_labels(random_params(0), [seq], **self.kw)

  def test_bad_container(self):
    with self.assertRaisesRegex(TypeError, 'list'):
      decode.predict_labels(random_params(0), 'abc', **self.kw)

  def test_bad_hyperparameters(self):
    seq = np.zeros((3, 4))
    for p0 in (0.0, 1.0, 1.5):
      with self.assertRaisesRegex(ValueError, 'transition_bias'):
        decode.predict_labels(
          random_params(0),
          seq,
          transition_bias=p0,
          crp_alpha=1.0,
          config=settings(),
        )
    with self.assertRaisesRegex(ValueError, 'crp_alpha'):
      decode.predict_labels(
        random_params(0),
        seq,
        transition_bias=0.3,
        crp_alpha=0.0,
        config=settings(),
      )
    with self.assertRaisesRegex(ValueError, 'speaker_overflow'):
      decode.DecodeSettings(speaker_overflow='grow')
    with self.assertRaisesRegex(ValueError, 'mean_rule'):
      decode.DecodeSettings(mean_rule='median')
    with self.assertRaisesRegex(ValueError, 'beam_size'):
      decode.DecodeSettings(beam_size=0)
    with self.assertRaisesRegex(ValueError, 'count_search'):
      decode.DecodeSettings(count_search=-1)
    with self.assertRaisesRegex(ValueError, 'count_penalty'):
      decode.DecodeSettings(count_penalty=-1.0)

  def test_empty_list(self):
    self.assertEqual(decode.predict_labels(random_params(0), [], **self.kw), [])

  def test_from_config_reads_config_dict(self):
    from configs import default  # noqa: PLC0415

    cfg = default.get_config().decode
    s = decode.DecodeSettings.from_config(cfg)
    self.assertEqual(s.beam_size, cfg.beam_size)
    self.assertEqual(s.test_iteration, cfg.test_iteration)
    self.assertEqual(s.max_speakers, cfg.max_speakers)
    self.assertEqual(s.num_slots, cfg.max_speakers + cfg.look_ahead)

  def test_settings_are_the_schema_decode_group(self):
    # One table (config_check.SCHEMA) and one default (defaults.py) per
    # field: the settings are the decode group less its host-side fields.
    from uisrnn_jax import config_check, defaults  # noqa: PLC0415

    fields = {f.name for f in dataclasses.fields(decode.DecodeSettings)}
    self.assertEqual(
      fields | set(decode.HOST_FIELDS), set(config_check.SCHEMA['decode'])
    )
    want = defaults.get_config().decode
    got = decode.DecodeSettings()
    for name in fields:
      self.assertEqual(getattr(got, name), want[name], name)

  def test_settings_checks_are_the_config_checks(self):
    with self.assertRaisesRegex(
      errors.ConfigTypeError, 'beam_size must be an int'
    ):
      decode.DecodeSettings(beam_size='3')
    with self.assertRaises(TypeError):  # still a TypeError, as before
      decode.DecodeSettings(look_ahead=1.0)
    with self.assertRaisesRegex(
      errors.ConfigError, 'test_iteration must be >= 1'
    ):
      decode.DecodeSettings(test_iteration=0)
    # NumPy ints are accepted and stored as Python ints (one jit cache key).
    s = decode.DecodeSettings(beam_size=np.int64(4))
    self.assertIs(type(s.beam_size), int)
    self.assertEqual(s, decode.DecodeSettings(beam_size=4))

  def test_from_config_reads_seed_namespace(self):
    args = types.SimpleNamespace(beam_size=4, look_ahead=2, test_iteration=1)
    s = decode.DecodeSettings.from_config(args)
    self.assertEqual((s.beam_size, s.look_ahead, s.test_iteration), (4, 2, 1))
    self.assertEqual(s.max_speakers, 16)  # default


if __name__ == '__main__':
  absltest.main()
