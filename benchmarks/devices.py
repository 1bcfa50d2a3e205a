"""Training and decoding throughput on 1, 2 and 4 host (CPU) devices.

Each device count runs in its own subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` set before JAX is
imported. Training is `train.fit` on a mesh over the N devices (state
replicated, packed batches split by rows, padded to a multiple of N);
decoding is `decode.predict_labels` with a mesh (utterances split over the
devices under `shard_map`). Both are timed on a second, identical run, after
a first run has compiled every shape.

Host devices are threads of one process sharing the machine's cores, so this
measures the overhead or gain of the sharded programs on CPU, not what real
accelerators would give: on a 2-core machine at most 2x is possible, and
other load on the machine shows up directly.

Usage (from the repository root):
  python benchmarks/devices.py
  python benchmarks/devices.py --devices=1,2 --train_steps=50
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

from absl import app, flags

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
sys.path.insert(0, _ROOT)

_DEVICES = flags.DEFINE_list('devices', ['1', '2', '4'], 'Device counts.')
_CHILD = flags.DEFINE_integer('child', 0, 'Internal: run one device count.')
_TRAIN_STEPS = flags.DEFINE_integer('train_steps', 60, 'Timed train steps.')
_BATCH = flags.DEFINE_integer('batch_size', 32, 'Samples per train step.')
_DIM = flags.DEFINE_integer('observation_dim', 64, 'D.')
_HIDDEN = flags.DEFINE_integer('hidden', 128, 'GRU hidden size.')
_UTTERANCES = flags.DEFINE_integer('utterances', 64, 'Utterances to decode.')
_LENGTH = flags.DEFINE_integer('length', 100, 'Observations per utterance.')
_REPEATS = flags.DEFINE_integer('repeats', 2, 'Timed repeats (best kept).')


def _config():
  from configs import toy

  config = toy.get_config()
  config.model.observation_dim = _DIM.value
  config.model.rnn_hidden_size = _HIDDEN.value
  config.train.batch_size = _BATCH.value
  config.train.num_permutations = 2
  config.train.log_every = 10**9
  config.decode.beam_size = 4
  config.decode.max_speakers = 8
  config.decode.bucket = 32
  return config


def _data(config, num, length, seed):
  import numpy as np

  from uisrnn_jax import toy

  rng = np.random.default_rng(seed)
  return toy.make_toy_dataset(
    rng,
    num_sequences=num,
    num_speakers=4,
    observation_dim=config.model.observation_dim,
    length=length,
    noise=0.1,
  )


def _child(n: int) -> dict:
  import jax

  from uisrnn_jax import decode, parallel, train

  assert jax.device_count() == n, (jax.device_count(), n)
  config = _config()
  mesh = parallel.make_mesh()
  train_x, train_y = _data(config, 40, 60, 0)

  def run_fit():
    state = train.create_train_state(jax.random.key(0), config)
    tic = time.perf_counter()
    state = train.fit(
      state,
      train_x,
      train_y,
      config,
      num_steps=_TRAIN_STEPS.value,
      progress=False,
      mesh=mesh if n > 1 else None,
    )
    jax.block_until_ready(state.params)
    return time.perf_counter() - tic, state

  run_fit()  # compiles every batch shape of this (deterministic) run
  best, state = min(
    (run_fit() for _ in range(_REPEATS.value)), key=lambda r: r[0]
  )
  train_steps = _TRAIN_STEPS.value / best

  test_x, _ = _data(config, _UTTERANCES.value, _LENGTH.value, 1)
  kw = dict(transition_bias=0.2, crp_alpha=1.0, config=config.decode)

  def run_decode():
    tic = time.perf_counter()
    decode.predict_labels(
      state.params,
      test_x,
      mesh=mesh,
      batch_size=_UTTERANCES.value,
      progress=False,
      **kw,
    )
    return time.perf_counter() - tic

  run_decode()
  decode_s = min(run_decode() for _ in range(_REPEATS.value))
  observations = _UTTERANCES.value * _LENGTH.value
  return {
    'devices': n,
    'train_steps_per_s': train_steps,
    'decode_utterances_per_s': _UTTERANCES.value / decode_s,
    'decode_observations_per_s': observations / decode_s,
  }


def main(argv):
  del argv
  if _CHILD.value:
    print(json.dumps(_child(_CHILD.value)))
    return
  rows = []
  for n in [int(x) for x in _DEVICES.value]:
    env = dict(os.environ)
    env['XLA_FLAGS'] = (
      env.get('XLA_FLAGS', '') + f' --xla_force_host_platform_device_count={n}'
    )
    env['JAX_PLATFORMS'] = 'cpu'
    args = [a for a in sys.argv[1:] if not a.startswith('--devices')]
    proc = subprocess.run(
      [sys.executable, os.path.abspath(__file__), f'--child={n}', *args],
      env=env,
      capture_output=True,
      text=True,
      check=False,
    )
    if proc.returncode:
      sys.exit(f'{n} devices failed:\n{proc.stderr[-3000:]}')
    rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f'{n} device(s) done', file=sys.stderr)

  print(
    f'{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}'
    f'); D={_DIM.value}, H={_HIDDEN.value}, batch_size={_BATCH.value} '
    f'samples (packed rows), decode {_UTTERANCES.value} x {_LENGTH.value} '
    'observations, beam 4\n'
  )
  base = rows[0]
  print(
    '| devices | train steps/s | vs first | decode utterances/s | '
    'decode observations/s | vs first |'
  )
  print('|---|---|---|---|---|---|')
  for r in rows:
    print(
      f'| {r["devices"]} | {r["train_steps_per_s"]:.1f} | '
      f'{r["train_steps_per_s"] / base["train_steps_per_s"]:.2f}x | '
      f'{r["decode_utterances_per_s"]:.1f} | '
      f'{r["decode_observations_per_s"]:.0f} | '
      f'{r["decode_utterances_per_s"] / base["decode_utterances_per_s"]:.2f}x |'
    )


if __name__ == '__main__':
  app.run(main)
