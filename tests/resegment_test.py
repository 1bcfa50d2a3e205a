"""Tests of uisrnn_jax.resegment (Viterbi resegmentation).

The Viterbi path is checked against an exhaustive search over every label
path in NumPy (float64, tiny T and S), the full resegmentation against a hand
computed case, and the loop's guarantees (monotone joint score, no new
speakers, padding untouched) on random inputs. Decoder integration: the
option equals resegmenting the plain beam search's labels.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from decode_test import clustered_sequence, random_params
from jax_testing import compile_log

from uisrnn_jax import decode, resegment

# One compilation per (iterations, shape), shared by the random cases.
_resegment = jax.jit(
  resegment.resegment,
  static_argnames=(
    'iterations',
    'num_slots',
    'emission',
    'neighbours',
    'exclude',
  ),
)


def brute_force_path(scores, active, mask, p0):
  """The best path by enumerating all of them (real positions only)."""
  t = int(mask.sum())
  slots = np.flatnonzero(active)
  k = len(slots)
  log_stay = np.log1p(-p0)
  log_switch = np.log(p0) - np.log(max(k - 1, 1))
  best, best_path = -np.inf, None
  for path in itertools.product(slots, repeat=t):
    total = sum(scores[i, s] for i, s in enumerate(path))
    total += sum(
      log_stay if a == b else log_switch for a, b in zip(path, path[1:])
    )
    if total > best:
      best, best_path = total, path
  return np.array(best_path), best


def joint_score(x, labels, mask, weight, p0, num_slots):
  """The objective resegmentation raises: centroids of ``labels``, then
  emissions plus transitions of ``labels`` (as `resegment.path_log_score`)."""
  means, counts = resegment.speaker_means(x, labels, mask, num_slots)
  return float(
    resegment.path_log_score(
      resegment.emissions(x, means, weight),
      labels,
      counts > 0,
      mask,
      log_stay=jnp.log1p(-p0),
      log_p0=jnp.log(p0),
    )
  )


class ViterbiTest(parameterized.TestCase):
  @parameterized.parameters(
    (0, 0.1, 5), (1, 0.3, 6), (2, 0.6, 5), (3, 0.9, 4), (4, 0.05, 1)
  )
  def test_matches_exhaustive_search(self, seed, p0, length):
    """Every path of length <= 6 over 3 active of 4 slots is enumerated,
    including p0 > 0.5, where changing speaker beats staying."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(scale=2.0, size=(7, 4))
    active = np.array([True, False, True, True])
    mask = np.arange(7) < length
    want, want_score = brute_force_path(scores, active, mask, p0)
    got = np.asarray(
      resegment.viterbi(
        jnp.asarray(scores, jnp.float32),
        jnp.asarray(active),
        jnp.asarray(mask),
        log_stay=jnp.log1p(-p0),
        log_p0=jnp.log(p0),
      )
    )
    got_score = float(
      resegment.path_log_score(
        jnp.asarray(scores, jnp.float32),
        jnp.asarray(got),
        jnp.asarray(active),
        jnp.asarray(mask),
        log_stay=jnp.log1p(-p0),
        log_p0=jnp.log(p0),
      )
    )
    self.assertAlmostEqual(got_score, want_score, places=4)
    np.testing.assert_array_equal(got[:length], want)
    # Padded positions repeat the last real label.
    np.testing.assert_array_equal(got[length:], want[-1])

  def test_single_active_speaker(self):
    scores = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)))
    path = resegment.viterbi(
      scores,
      jnp.array([False, True, False]),
      jnp.ones(5, bool),
      log_stay=jnp.log(0.9),
      log_p0=jnp.log(0.1),
    )
    np.testing.assert_array_equal(path, [1] * 5)


class ResegmentTest(parameterized.TestCase):
  def test_hand_computed(self):
    """1-D, speakers at 0 and 1; the beam mislabelled position 2.

    Initial centroids: c0 = 0 (positions 0, 1), c1 = 0.75 (2..5). With
    weight 8 (sigma2 = 1/16) and p0 = 0.1 the emissions at position 2 are
    0 for speaker 0 and -8 * 0.5625 = -4.5 for speaker 1: moving it to
    speaker 0 gains 4.5 nats and keeps one change. Then c0 = 0, c1 = 1 and
    nothing moves any more.
    """
    x = jnp.array([[0.0], [0.0], [0.0], [1.0], [1.0], [1.0], [9.0]])
    mask = jnp.array([True] * 6 + [False])
    labels = jnp.array([0, 0, 1, 1, 1, 1, 3])
    out = resegment.resegment(
      x,
      mask,
      labels,
      weight=jnp.array([8.0]),
      transition_bias=0.1,
      iterations=5,
      num_slots=4,
    )
    np.testing.assert_array_equal(out, [0, 0, 0, 1, 1, 1, 3])
    means, counts = resegment.speaker_means(x, out, mask, 4)
    np.testing.assert_allclose(means[:2, 0], [0.0, 1.0])
    np.testing.assert_array_equal(counts, [3, 3, 0, 0])

  def test_zero_iterations_is_identity(self):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(6, 2)))
    labels = jnp.array([0, 1, 0, 1, 0, 1])
    out = resegment.resegment(
      x,
      jnp.ones(6, bool),
      labels,
      weight=jnp.ones(2),
      transition_bias=0.2,
      iterations=0,
    )
    np.testing.assert_array_equal(out, labels)
    with self.assertRaisesRegex(ValueError, 'iterations'):
      resegment.resegment(
        x,
        jnp.ones(6, bool),
        labels,
        weight=jnp.ones(2),
        transition_bias=0.2,
        iterations=-1,
      )

  @parameterized.parameters(range(6))
  def test_guarantees_on_random_inputs(self, seed):
    """The joint score never falls from round to round, no speaker is
    created, padding is untouched, and the loop stops at a fixed point."""
    rng = np.random.default_rng(seed)
    t, s, d = 40, 5, 3
    x = jnp.asarray(
      clustered_sequence(rng, t, num_clusters=3, spread=1.0, noise=0.6),
      jnp.float32,
    )[:, :d]
    length = int(rng.integers(10, t + 1))
    mask = jnp.arange(t) < length
    labels = jnp.asarray(rng.integers(0, s, t), jnp.int32)
    weight = jnp.full((d,), 0.5 + rng.random())
    p0 = float(rng.uniform(0.05, 0.5))
    common = dict(weight=weight, transition_bias=p0, num_slots=s)
    # Round by round: one round at a time from the previous labels (one
    # compile), which is what `iterations` rounds do (checked at 3).
    scores = [joint_score(x, labels, mask, weight, p0, s)]
    current = labels
    rounds = [labels]
    for _ in range(7):
      current = _resegment(x, mask, current, iterations=1, **common)
      rounds.append(current)
      scores.append(joint_score(x, current, mask, weight, p0, s))
    np.testing.assert_array_equal(
      _resegment(x, mask, labels, iterations=3, **common), rounds[3]
    )
    self.assertTrue(
      all(b >= a - 1e-3 for a, b in zip(scores, scores[1:])), scores
    )
    before = set(np.asarray(labels)[:length].tolist())
    after = set(np.asarray(current)[:length].tolist())
    self.assertLessEqual(after, before)
    np.testing.assert_array_equal(current[length:], labels[length:])
    more = _resegment(
      x,
      mask,
      current,
      weight=weight,
      transition_bias=p0,
      iterations=50,
      num_slots=s,
    )
    converged = _resegment(
      x,
      mask,
      more,
      weight=weight,
      transition_bias=p0,
      iterations=1,
      num_slots=s,
    )
    np.testing.assert_array_equal(converged, more)


def brute_force_neighbour_emissions(x, labels, mask, weight, s, m, exclude):
  """`resegment.neighbour_emissions` by loops in float64."""
  t = len(x)
  out = np.full((t, s), -np.inf)
  for i in range(t):
    for k in range(s):
      d = sorted(
        float(np.sum(weight * (x[i] - x[j]) ** 2))
        for j in range(t)
        if mask[j] and labels[j] == k and abs(i - j) > exclude
      )
      if d:
        out[i, k] = -np.mean(d[:m])
  return out


class NeighbourEmissionTest(parameterized.TestCase):
  @parameterized.parameters((0, 3, 0, 64), (1, 40, 2, 5))
  def test_matches_brute_force(self, seed, neighbours, exclude, block):
    """Fewer members than neighbours (and more neighbours than T), members
    only inside the excluded span (-inf), padding that is never a
    neighbour, and row blocks that do not divide T."""
    rng = np.random.default_rng(seed)
    t, s, d = 23, 4, 3
    x = rng.normal(size=(t, d))
    labels = rng.integers(0, s, t)
    labels[:2] = 3  # speaker 3: two adjacent observations only
    labels[2:][labels[2:] == 3] = 0
    mask = np.arange(t) < 20
    weight = 0.5 + rng.random(d)
    got = resegment.neighbour_emissions(
      jnp.asarray(x, jnp.float32),
      jnp.asarray(labels, jnp.int32),
      jnp.asarray(mask),
      jnp.asarray(weight, jnp.float32),
      num_slots=s,
      neighbours=neighbours,
      exclude=exclude,
      block=block,
    )
    want = brute_force_neighbour_emissions(
      x, labels, mask, weight, s, neighbours, exclude
    )
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(
      np.asarray(got)[finite], want[finite], rtol=1e-4, atol=1e-4
    )

  def test_two_recordings_of_one_speaker(self):
    """1-D: speaker 0 was recorded at 0 (positions 0-3) and at 2 (4-7),
    speaker 1 is at 1 (8-11), and the beam gave position 12 (at 2) to
    speaker 1. Centroids are 1.0 for speaker 0 and 1.2 for speaker 1, so
    every observation at 2 is nearer speaker 1's (squared distance 0.64
    against 1): the centroid emission hands speaker 0's second recording to
    speaker 1. Speaker 0's nearest observations to them are at distance 0,
    speaker 1's at 1, so the neighbour emission keeps positions 4-7 and
    moves position 12 to speaker 0."""
    x = jnp.array([[0.0]] * 4 + [[2.0]] * 4 + [[1.0]] * 4 + [[2.0]])
    labels = jnp.array([0] * 8 + [1] * 5)
    mask = jnp.ones(13, bool)
    common = dict(
      weight=jnp.array([8.0]), transition_bias=0.1, iterations=5, num_slots=3
    )
    centroid = resegment.resegment(x, mask, labels, **common)
    np.testing.assert_array_equal(centroid, [0] * 4 + [1] * 9)
    moved = resegment.resegment(
      x, mask, labels, emission='neighbours', neighbours=3, **common
    )
    np.testing.assert_array_equal(moved, [0] * 8 + [1] * 4 + [0])

  def test_speaker_inside_its_excluded_span_is_dropped(self):
    """Speaker 2 holds three consecutive windows (positions 5-7): with
    exclude 1, position 6 has no usable neighbour of speaker 2, so the
    speaker is dropped and its windows go to the others."""
    x = jnp.array([[0.0]] * 5 + [[0.5]] * 3 + [[1.0]] * 5)
    labels = jnp.array([0] * 5 + [2] * 3 + [1] * 5)
    out = resegment.resegment(
      x,
      jnp.ones(13, bool),
      labels,
      weight=jnp.array([2.0]),
      transition_bias=0.2,
      iterations=5,
      num_slots=3,
      emission='neighbours',
      neighbours=2,
      exclude=1,
    )
    self.assertNotIn(2, np.asarray(out).tolist())
    np.testing.assert_array_equal(out[:5], 0)
    np.testing.assert_array_equal(out[8:], 1)

  @parameterized.parameters(range(2))
  def test_no_new_speakers_and_padding_kept(self, seed):
    rng = np.random.default_rng(seed)
    t, s = 40, 5
    x = jnp.asarray(
      clustered_sequence(rng, t, num_clusters=3, spread=1.0, noise=0.6),
      jnp.float32,
    )
    length = int(rng.integers(10, t + 1))
    mask = jnp.arange(t) < length
    labels = jnp.asarray(rng.integers(0, s, t), jnp.int32)
    out = np.asarray(
      _resegment(
        x,
        mask,
        labels,
        weight=jnp.full((x.shape[1],), 0.7),
        transition_bias=0.2,
        iterations=6,
        num_slots=s,
        emission='neighbours',
        neighbours=4,
        exclude=seed,
      )
    )
    self.assertLessEqual(
      set(out[:length].tolist()), set(np.asarray(labels)[:length].tolist())
    )
    np.testing.assert_array_equal(out[length:], labels[length:])

  def test_bad_arguments(self):
    x, mask, labels = jnp.zeros((4, 1)), jnp.ones(4, bool), jnp.zeros(4, int)
    common = dict(weight=jnp.ones(1), transition_bias=0.1, iterations=1)
    with self.assertRaisesRegex(ValueError, 'emission'):
      resegment.resegment(x, mask, labels, emission='knn', **common)
    with self.assertRaisesRegex(ValueError, 'neighbours'):
      resegment.resegment(
        x, mask, labels, emission='neighbours', neighbours=0, **common
      )


class DecoderOptionTest(parameterized.TestCase):
  @parameterized.parameters(
    {'emission': 'centroid', 'exclude': 0},
    {'emission': 'neighbours', 'exclude': 1},
  )
  def test_decoder_equals_resegmenting_its_labels(self, emission, exclude):
    """``resegment_iterations`` in the batch decoder == resegmenting the
    plain decoder's labels, then renumbering by first appearance."""
    params = random_params(1, sigma2=0.3)
    rng = np.random.default_rng(3)
    seqs = [
      clustered_sequence(rng, n, num_clusters=3, noise=0.8).astype(np.float32)
      for n in (17, 30, 9)
    ]
    plain = decode.DecodeSettings(
      beam_size=3, test_iteration=1, max_speakers=6, speaker_overflow='disallow'
    )
    refined = decode.DecodeSettings(
      **{
        **vars(plain),
        'resegment_iterations': 4,
        'resegment_emission': emission,
        'resegment_neighbours': 3,
        'resegment_exclude': exclude,
      }
    )
    p0, alpha = 0.2, 1.0
    base = decode.predict_labels(
      params, seqs, transition_bias=p0, crp_alpha=alpha, config=plain
    )
    got = decode.predict_labels(
      params, seqs, transition_bias=p0, crp_alpha=alpha, config=refined
    )
    weight = 1.0 / (2.0 * params['sigma2'])
    # One compiled call for every sequence: padded to 32 with a mask.
    refine = jax.jit(
      lambda x, mask, labels: decode.renumber(
        resegment.resegment(
          x,
          mask,
          labels,
          weight=weight,
          transition_bias=p0,
          iterations=4,
          num_slots=6,
          emission=emission,
          neighbours=3,
          exclude=exclude,
        ),
        mask,
        6,
      )
    )
    changed = 0
    for seq, b, g in zip(seqs, base, got):
      n = len(seq)
      want = refine(
        jnp.asarray(np.pad(seq, ((0, 32 - n), (0, 0)))),
        jnp.arange(32) < n,
        jnp.asarray(np.pad(b, (0, 32 - n))),
      )
      np.testing.assert_array_equal(g, want[:n])
      changed += int(np.any(g != b))
    self.assertGreater(changed, 0, 'the test should exercise a change')

  def test_settings_validation(self):
    with self.assertRaisesRegex(ValueError, 'resegment_iterations'):
      decode.DecodeSettings(resegment_iterations=-1)
    with self.assertRaisesRegex(ValueError, 'resegment_emission'):
      decode.DecodeSettings(resegment_emission='knn')
    with self.assertRaisesRegex(ValueError, 'resegment_neighbours'):
      decode.DecodeSettings(resegment_neighbours=0)
    with self.assertRaisesRegex(ValueError, 'resegment_exclude'):
      decode.DecodeSettings(resegment_exclude=-1)
    with self.assertRaisesRegex(TypeError, 'resegment_iterations'):
      decode.DecodeSettings(resegment_iterations=1.5)

  def test_configs_without_the_field_still_validate(self):
    """Checkpoints written before the option existed keep loading."""
    from configs import default
    from uisrnn_jax import config_check

    config = default.get_config()
    for name in ('iterations', 'emission', 'neighbours', 'exclude'):
      del config.decode[f'resegment_{name}']
    config_check.validate_config(config)
    settings = decode.DecodeSettings.from_config(config.decode)
    self.assertEqual(settings.resegment_iterations, 0)
    self.assertEqual(settings.resegment_emission, 'centroid')
    config.decode.resegment_iterations = -2
    with self.assertRaisesRegex(ValueError, 'resegment_iterations'):
      config_check.validate_config(config)

  def test_jit_compiles_once_per_shape(self):
    """Sequences of any real length in one padded shape share a compile."""
    x = np.zeros((12, 2), np.float32)
    with compile_log() as log:
      for length in (3, 7, 12):
        _resegment(
          x,
          np.arange(12) < length,
          np.zeros(12, np.int32),
          weight=np.ones(2, np.float32),
          transition_bias=np.float32(0.1),
          iterations=3,
          num_slots=4,
        )
    self.assertLen(
      [m for m in log if m.startswith('Compiling jit(resegment')], 1
    )


if __name__ == '__main__':
  absltest.main()
