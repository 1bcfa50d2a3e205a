"""Tests of data-parallel training and sharded decoding (uisrnn_jax.parallel).

The multi-device checks need 4 CPU devices, which XLA only creates when
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` is set before JAX is
imported; this pytest process has imported JAX already, so they run once in
one subprocess (`_run_child`, this file with ``--child``) that prints its
measurements as JSON, and the test methods check them.
"""

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from uisrnn_jax import parallel

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DEVICES = 4


def _tiny_config(batch_size):
  from configs import toy

  config = toy.get_config()
  config.model.observation_dim = 3
  config.model.rnn_hidden_size = 8
  config.train.batch_size = batch_size
  config.train.num_permutations = 2
  config.train.bucket = 16
  config.train.log_every = 100
  config.decode.beam_size = 3
  config.decode.max_speakers = 4
  config.decode.bucket = 32
  return config


def _toy_data(seed=0, num=6, d=3):
  rng = np.random.default_rng(seed)
  centres = 3 * rng.normal(size=(3, d))
  seqs, ids = [], []
  for _ in range(num):
    turns = rng.integers(0, 3, 5)
    labels = np.repeat(turns, rng.integers(1, 4, 5))
    seqs.append(centres[labels] + 0.1 * rng.normal(size=(len(labels), d)))
    ids.append(np.array([f's{x}' for x in labels]))
  return seqs, ids


def _max_diff(a, b):
  return max(
    float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )


def _child():
  """Runs in a subprocess with 4 host devices; prints results as JSON."""
  from uisrnn_jax import decode, train

  out = {'devices': jax.device_count()}
  mesh = parallel.make_mesh()
  seqs, ids = _toy_data()

  # fit: 4 devices against one. Packed batches have a varying number of
  # rows, so the 4-device run also pads rows to a multiple of 4.
  config = _tiny_config(8)
  runs = {}
  for name, num_devices in (('one', 1), ('all', 0)):
    config.train.num_devices = num_devices
    state = train.create_train_state(jax.random.key(0), config)
    runs[name] = train.fit(
      state, seqs, ids, config, num_steps=4, progress=False
    )
  out['fit_diff'] = _max_diff(runs['one'].params, runs['all'].params)
  out['fit_moved'] = _max_diff(
    runs['one'].params,
    train.create_train_state(jax.random.key(0), config).params,
  )
  sharding = runs['all'].params['sigma2'].sharding
  out['fit_devices'] = len(sharding.device_set)
  out['fit_replicated'] = bool(sharding.is_fully_replicated)

  # The loss normalisation is global: rows with very different numbers of
  # real steps on different devices.
  loss_kw = train.losses.loss_kwargs(config.train, config.model)
  loss = jax.jit(
    lambda p, b, k: train.losses.total_loss(p, b, k, **loss_kw)[1]['nll']
  )
  params = runs['one'].params
  rng = np.random.default_rng(1)
  lengths = np.array([8, 8, 1, 1, 2, 1, 7, 3])
  mask = np.arange(8)[None] < lengths[:, None]
  obs = np.where(mask[..., None], rng.normal(size=(8, 8, 3)), 0.0)
  batch = {'observations': obs.astype(np.float32), 'mask': mask}
  key = jax.random.key(2)
  replicated = parallel.replicate(params, mesh)
  out['nll_whole'] = float(loss(params, batch, key))
  out['nll_sharded'] = float(
    loss(replicated, parallel.shard_batch(batch, mesh), key)
  )
  groups = {k: v.reshape((4, 2) + v.shape[1:]) for k, v in batch.items()}
  per_device = jax.vmap(loss, in_axes=(None, 0, None))(params, groups, key)
  out['nll_mean_of_devices'] = float(np.mean(per_device))

  # Not divisible: an error without pad, masked rows (same loss) with it.
  odd = {k: v[:6] for k, v in batch.items()}
  try:
    parallel.shard_batch(odd, mesh)
    out['odd_error'] = ''
  except ValueError as e:
    out['odd_error'] = str(e)
  padded = parallel.shard_batch(odd, mesh, pad=True)
  out['padded_rows'] = int(padded['mask'].shape[0])
  out['padded_loss_diff'] = abs(
    float(loss(params, odd, key)) - float(loss(replicated, padded, key))
  )
  try:
    parallel.mesh_from_config(_DEVICES + 1)
    out['too_many_error'] = ''
  except ValueError as e:
    out['too_many_error'] = str(e)

  # Sharded decoding: 7 utterances of mixed lengths (not a multiple of 4,
  # two length buckets), against single-device decoding.
  state = runs['all']
  config = _tiny_config(8)
  config.decode.max_speakers = 8  # the briefly trained model over-splits
  test_seqs, _ = _toy_data(seed=3, num=7)
  test_seqs.append(np.concatenate(test_seqs[:2]))
  kw = dict(
    transition_bias=0.3,
    crp_alpha=1.0,
    config=config.decode,
  )
  one = decode.predict_labels(state.params, test_seqs, **kw)
  sharded = decode.predict_labels(
    state.params, test_seqs, mesh=mesh, batch_size=4, **kw
  )
  out['decode_equal'] = [
    bool(np.array_equal(a, b)) for a, b in zip(one, sharded, strict=True)
  ]
  out['decode_lengths'] = [len(s) for s in sharded]
  # infer.py's path: decode_dataset shards by itself when it sees devices.
  from uisrnn_jax import dataset as dataset_lib
  from uisrnn_jax import experiment

  state = state.replace(
    transition_bias=jnp.float32(0.3), crp_alpha=jnp.float32(1.0)
  )
  via_infer = experiment.decode_dataset(
    state, dataset_lib.Dataset(test_seqs), config.decode
  )
  out['infer_equal'] = [
    bool(np.array_equal(a, b)) for a, b in zip(one, via_infer, strict=True)
  ]
  out['decode_speakers'] = [int(np.max(a)) + 1 for a in one]
  # Overflow on the sharded path: the same exception class as one device.
  from uisrnn_jax import errors

  config.decode.max_speakers = 1
  try:
    decode.predict_labels(state.params, test_seqs, mesh=mesh, **kw)
    out['overflow_error'] = ''
  except errors.SpeakerOverflowError as e:
    out['overflow_error'] = f'{type(e).__name__}: {e}'
  print(json.dumps(out))


@functools.lru_cache(maxsize=1)
def _run_child():
  env = dict(os.environ)
  env['XLA_FLAGS'] = (
    env.get('XLA_FLAGS', '')
    + f' --xla_force_host_platform_device_count={_DEVICES}'
  )
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONPATH'] = os.pathsep.join(
    [_ROOT, os.path.join(_ROOT, 'tests'), env.get('PYTHONPATH', '')]
  )
  proc = subprocess.run(
    [sys.executable, os.path.abspath(__file__), '--child'],
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
    cwd=_ROOT,
  )
  if proc.returncode:
    raise AssertionError(f'child failed:\n{proc.stderr[-4000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


class MultiDeviceTest(absltest.TestCase):
  def setUp(self):
    super().setUp()
    self.out = _run_child()

  def test_child_has_four_devices(self):
    self.assertEqual(self.out['devices'], _DEVICES)

  def test_data_parallel_fit_matches_one_device(self):
    # Training moved the parameters, and both runs moved them alike.
    self.assertGreater(self.out['fit_moved'], 1e-2)
    self.assertLess(self.out['fit_diff'], 1e-5)
    self.assertEqual(self.out['fit_devices'], _DEVICES)
    self.assertTrue(self.out['fit_replicated'])

  def test_loss_normalisation_is_global(self):
    self.assertAlmostEqual(
      self.out['nll_sharded'], self.out['nll_whole'], places=5
    )
    # A per-device mean would be a different number on this batch.
    self.assertGreater(
      abs(self.out['nll_mean_of_devices'] - self.out['nll_whole']), 1e-2
    )

  def test_batch_not_divisible(self):
    self.assertIn('not divisible by the 4 devices', self.out['odd_error'])
    self.assertEqual(self.out['padded_rows'], 8)
    self.assertLess(self.out['padded_loss_diff'], 1e-5)
    self.assertIn('train.num_devices=5', self.out['too_many_error'])

  def test_sharded_decoding_equals_single_device(self):
    self.assertLen(self.out['decode_equal'], 8)
    self.assertTrue(all(self.out['decode_equal']), self.out['decode_equal'])
    self.assertLen(self.out['infer_equal'], 8)
    self.assertTrue(all(self.out['infer_equal']), self.out['infer_equal'])
    self.assertGreater(max(self.out['decode_speakers']), 1)

  def test_sharded_overflow_is_speaker_overflow_error(self):
    self.assertStartsWith(
      self.out['overflow_error'], 'SpeakerOverflowError: sequence '
    )
    self.assertIn('max_speakers=1', self.out['overflow_error'])


class OneDeviceTest(absltest.TestCase):
  """In-process checks (this process sees one device)."""

  def test_mesh_from_config_single_device_is_none(self):
    self.assertIsNone(parallel.mesh_from_config(0))
    self.assertIsNone(parallel.mesh_from_config(1))
    with self.assertRaisesRegex(ValueError, 'num_devices'):
      parallel.mesh_from_config(-1)
    with self.assertRaisesRegex(TypeError, 'must be an int'):
      parallel.mesh_from_config(1.5)

  def test_pad_batch_rows(self):
    batch = {
      'observations': np.ones((3, 2, 1), np.float32),
      'mask': np.ones((3, 2), bool),
    }
    padded = parallel.pad_batch_rows(batch, 4)
    self.assertEqual(padded['observations'].shape, (4, 2, 1))
    np.testing.assert_array_equal(padded['mask'][3], [False, False])
    np.testing.assert_array_equal(padded['observations'][3], 0.0)
    self.assertIs(parallel.pad_batch_rows(batch, 3), batch)
    with self.assertRaisesRegex(ValueError, 'mask'):
      parallel.pad_batch_rows({'x': np.ones((3, 1))}, 2)

  def test_decode_with_one_device_mesh_equals_no_mesh(self):
    from uisrnn_jax import decode, model

    params = model.init_params(
      jax.random.key(0), observation_dim=3, hidden_size=8, depth=1
    )
    seqs, _ = _toy_data(seed=1, num=3)
    config = _tiny_config(4).decode
    config.speaker_overflow = 'disallow'  # untrained: many speakers
    kw = dict(transition_bias=0.3, crp_alpha=1.0, config=config)
    mesh = parallel.make_mesh(jax.devices()[:1])
    plain = decode.predict_labels(params, seqs, **kw)
    meshed = decode.predict_labels(params, seqs, mesh=mesh, **kw)
    for a, b in zip(plain, meshed, strict=True):
      np.testing.assert_array_equal(a, b)

  def test_shard_batch_on_one_device_mesh(self):
    mesh = parallel.make_mesh(jax.devices()[:1])
    out = parallel.shard_batch({'a': np.arange(3), 'b': np.ones((3, 2))}, mesh)
    np.testing.assert_array_equal(out['a'], np.arange(3))
    with self.assertRaisesRegex(ValueError, 'same leading batch axis'):
      parallel.shard_batch({'a': np.arange(3), 'b': np.ones((2, 2))}, mesh)


if __name__ == '__main__':
  if sys.argv[1:] == ['--child']:
    _child()
  else:
    absltest.main()
