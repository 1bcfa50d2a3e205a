"""Peak memory of training from shards against loading the whole dataset.

Writes a synthetic labelled dataset in the LibriSim ``.npz`` format
(256-dim float32 embeddings, conversations of 100-200 rows with 2-4
speakers) once as one uncompressed file and once as ``--shards`` shards
(`shards.write_shards`), then trains the same number of steps in a fresh
subprocess per setting and reports each one's peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``):

* ``baseline``: JAX, the model and the compiled step on 1,000 rows (the
  fixed cost every setting pays);
* ``all``: `dataset.load_npz` of the whole file, then one `train.fit`;
* ``shards``: `shards.fit_sharded` over the shards, memory-mapped;
* ``shards_no_mmap``: the same, each shard read into memory.

Usage (from the repository root):
  python benchmarks/shards_memory.py
  python benchmarks/shards_memory.py --rows=480000 --shards=8
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
sys.path.insert(0, _ROOT)

from uisrnn_jax import dataset as dataset_lib  # noqa: E402
from uisrnn_jax import shards  # noqa: E402

_ROWS = flags.DEFINE_integer('rows', 240_000, 'Rows (observations) in all.')
_SHARDS = flags.DEFINE_integer('shards', 8, 'Number of shards.')
_DIM = flags.DEFINE_integer('observation_dim', 256, 'D.')
_STEPS = flags.DEFINE_integer('steps_per_shard', 5, 'Train steps per shard.')
_PERMUTATIONS = flags.DEFINE_integer(
  'num_permutations', 2, 'train.num_permutations (copies per speaker).'
)
_WORKDIR = flags.DEFINE_string('workdir', '', 'Where to write (default tmp).')
_CHILD = flags.DEFINE_string('child', '', 'Internal: run one setting.')
_SETTINGS = ['baseline', 'all', 'shards', 'shards_no_mmap']


def _synthetic(rows: int, dim: int, seed: int = 0) -> dataset_lib.Dataset:
  """Conversations of 100-200 rows, 2-4 of 400 speakers taking turns."""
  rng = np.random.default_rng(seed)
  voices = rng.normal(size=(400, dim)).astype(np.float32)
  seqs, labels = [], []
  total = 0
  while total < rows:
    n = min(int(rng.integers(100, 201)), rows - total)
    who = rng.choice(400, size=int(rng.integers(2, 5)), replace=False)
    turns = np.repeat(rng.integers(0, len(who), n // 5 + 1), 5)[:n]
    seqs.append(voices[who[turns]] + 0.3 * rng.normal(size=(n, dim)))
    labels.append(np.array([f'spk{who[t]}' for t in turns]))
    total += n
  return dataset_lib.Dataset(
    sequences=[s.astype(np.float32) for s in seqs],
    labels=labels,
    ids=[f'conv{i}' for i in range(len(seqs))],
  )


def _config():
  from configs import toy

  config = toy.get_config()
  config.model.observation_dim = _DIM.value
  config.model.rnn_hidden_size = 32
  config.train.batch_size = 8
  # Every row 256 long: fewer batch shapes to compile (speakers here have
  # up to ~150 rows).
  config.train.bucket = 256
  config.train.num_permutations = _PERMUTATIONS.value
  config.train.log_every = 10**9
  return config


def _child(setting: str, directory: str) -> dict:
  import jax

  from uisrnn_jax import train

  config = _config()
  state = train.create_train_state(jax.random.key(0), config)
  paths = shards.expand_shard_paths(os.path.join(directory, 'shard-*.npz'))
  total_steps = _STEPS.value * len(paths)
  tic = time.perf_counter()
  if setting == 'baseline':
    data = shards.load_shard(paths[0])
    keep = np.searchsorted(np.cumsum([len(s) for s in data.sequences]), 1000)
    state = train.fit(
      state,
      data.sequences[: keep + 1],
      data.labels[: keep + 1],
      config,
      num_steps=total_steps,
      progress=False,
    )
  elif setting == 'all':
    data = dataset_lib.load_npz(os.path.join(directory, 'full.npz'))
    state = train.fit(
      state,
      data.sequences,
      data.labels,
      config,
      num_steps=total_steps,
      progress=False,
    )
  else:
    state = shards.fit_sharded(
      state,
      paths,
      config,
      steps_per_shard=_STEPS.value,
      progress=False,
      mmap=setting == 'shards',
    )
  jax.block_until_ready(state.params)
  return {
    'setting': setting,
    'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    'seconds': time.perf_counter() - tic,
    'steps': int(state.step),
  }


def main(argv):
  del argv
  directory = _WORKDIR.value or tempfile.mkdtemp(prefix='shards_memory_')
  if _CHILD.value:
    print(json.dumps(_child(_CHILD.value, directory)))
    return
  os.makedirs(directory, exist_ok=True)
  dataset = _synthetic(_ROWS.value, _DIM.value)
  rows = sum(len(s) for s in dataset.sequences)
  per_shard = -(-rows // _SHARDS.value)
  paths = shards.write_shards(dataset, directory, per_shard)
  dataset_lib.write_npz(
    os.path.join(directory, 'full.npz'), dataset, compress=False
  )
  del dataset
  size = lambda p: os.path.getsize(p) / 2**20  # noqa: E731
  print(
    f'{rows} rows x {_DIM.value} float32 in {len(paths)} shards of about '
    f'{size(paths[0]):.0f} MB ({size(os.path.join(directory, "full.npz")):.0f}'
    f' MB in all); num_permutations={_PERMUTATIONS.value}, '
    f'{_STEPS.value} steps per shard ({_STEPS.value * len(paths)} steps)\n'
  )
  print('| setting | peak RSS (MB) | wall time (s) |')
  print('|---|---|---|')
  args = [a for a in sys.argv[1:] if not a.startswith('--workdir')]
  for setting in _SETTINGS:
    proc = subprocess.run(
      [
        sys.executable,
        os.path.abspath(__file__),
        f'--child={setting}',
        f'--workdir={directory}',
        *args,
      ],
      capture_output=True,
      text=True,
      check=False,
    )
    if proc.returncode:
      sys.exit(f'{setting} failed:\n{proc.stderr[-3000:]}')
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f'| {setting} | {r["peak_rss_mb"]:.0f} | {r["seconds"]:.1f} |')
  if not _WORKDIR.value:
    for name in os.listdir(directory):
      os.remove(os.path.join(directory, name))
    os.rmdir(directory)


if __name__ == '__main__':
  app.run(main)
