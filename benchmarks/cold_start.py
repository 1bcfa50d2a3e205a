r"""Cold start: what a user waits for, against uisrnn 0.1.2, in one run.

Times the whole ``fit`` call of the seed-compatible API (`uisrnn_jax.compat.
UISRNN`, model built inside the timing) at the seed's defaults
(observation_dim 256, hidden 512, batch 10, 10 permutations) against the
reference ``uisrnn.UISRNN`` on the same data, each phase in a fresh Python
process, one after the other:

1. reference: ``fit(N)`` twice in one process (torch; no compilation);
2. ours, first process, empty compilation cache: ``fit(N)`` (compiles
   included), then the same call again (warm);
3. ours, second process sharing that cache: ``fit(N)`` (compiled programs
   loaded from disk), then again (warm).

The three phases form a round, repeated ``--repeats`` times (3 by default,
each round with an empty cache of its own): the reference's speed on this
machine varies by up to 1.8x from one process to the next (74-139 ms per
iteration seen), so one round says little. Ratios are the reference's mean
``fit`` wall time over ours in the same round (same number of iterations of
the same batch size on the same data, so a ratio of throughputs); the table
gives their median over rounds and the range. Each of our phases also reports how many programs XLA
compiled and their total compile time, from jax's monitoring events.

Usage (from the repository root):
  python benchmarks/cold_start.py                  # 40 toy sequences, N=100
  python benchmarks/cold_start.py --iters=300 --sequences=80
  python benchmarks/cold_start.py --data=librisim  # LibriSim train.npz

Data: ``toy`` is the issue's bench: 40 `uisrnn_jax.toy` sequences of
60-140 observations with 2-5 speakers, D=256. ``librisim`` reads
``../shared/data/librisim/train.npz`` (next to the repository) (the reference gets +1e-6 on every
entry, as in benchmarks/train_speed.py, because it takes exact zeros for
padding).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRISIM = os.path.join(
  os.path.dirname(REPO), 'shared', 'data', 'librisim', 'train.npz'
)
REFERENCE_OFFSET = 1e-6


def load_data(kind: str, num: int, seed: int):
  """``(sequences, cluster_ids)``: float64[N_i, 256] arrays and labels."""
  import numpy as np

  if kind == 'librisim':
    z = np.load(LIBRISIM, allow_pickle=False)
    off, emb, lab = z['offsets'], z['embeddings'], z['labels']
    bounds = list(zip(off[:-1], off[1:]))
    return [emb[a:b].astype(np.float64) for a, b in bounds], [
      lab[a:b] for a, b in bounds
    ]
  if kind != 'toy':
    raise ValueError(f'--data must be toy or librisim, got {kind!r}')
  sys.path.insert(0, REPO)
  from uisrnn_jax import toy

  return toy.make_toy_dataset(
    np.random.default_rng(seed),
    num_sequences=num,
    num_speakers=5,
    observation_dim=256,
    length=140,
    min_length=60,
    min_turn=3,
    max_turn=15,
    noise=0.1,
  )


def child(args: argparse.Namespace) -> None:
  """One phase in this fresh process; prints one JSON line."""
  tic = time.perf_counter()
  import numpy as np

  sequences, cluster_ids = load_data(args.data, args.sequences, args.seed)
  cluster_ids = [list(map(str, ids)) for ids in cluster_ids]
  model_args = argparse.Namespace(
    observation_dim=256,
    rnn_hidden_size=512,
    rnn_depth=1,
    rnn_dropout=0.2,
    sigma2=None,
    transition_bias=None,
    crp_alpha=1.0,
    verbosity=1,
  )
  training_args = argparse.Namespace(
    optimizer='adam',
    learning_rate=1e-3,
    train_iteration=args.iters,
    batch_size=10,
    num_permutations=10,
    sigma_alpha=1.0,
    sigma_beta=1.0,
    regularization_weight=1e-5,
    grad_max_norm=5.0,
    enforce_cluster_id_uniqueness=True,
  )
  compiles, hits = [], []
  if args.child == 'reference':
    import torch
    import uisrnn

    if args.torch_threads > 0:
      torch.set_num_threads(args.torch_threads)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    sequences = [s + REFERENCE_OFFSET for s in sequences]

    def build():
      return uisrnn.UISRNN(model_args)
  else:
    sys.path.insert(0, REPO)
    from jax import monitoring

    from uisrnn_jax import compat

    def listen(name, seconds, **kwargs):
      if name == '/jax/core/compile/backend_compile_duration':
        compiles.append(seconds)

    def count_hits(name, **kwargs):
      if name == '/jax/compilation_cache/cache_hits':
        hits.append(name)

    monitoring.register_event_duration_secs_listener(listen)
    monitoring.register_event_listener(count_hits)

    def build():
      return compat.UISRNN(model_args)

  setup_s = time.perf_counter() - tic
  calls = []
  with open(os.devnull, 'w') as devnull:
    stdout, sys.stdout = sys.stdout, devnull
    try:
      start = time.perf_counter()
      model = build()
      for _ in range(args.calls):
        before, hits_before = len(compiles), len(hits)
        model.fit(sequences, cluster_ids, training_args)
        end = time.perf_counter()
        calls.append(
          {
            'wall_s': end - start,
            'compiles': len(compiles) - before,
            'cache_hits': len(hits) - hits_before,
            'compile_s': sum(compiles[before:]),
          }
        )
        start = end
    finally:
      sys.stdout = stdout
  print(json.dumps({'setup_s': setup_s, 'calls': calls}), flush=True)


def plan_table(args: argparse.Namespace) -> None:
  """Compile count against padding for several `train.compile_seconds`.

  Host work only: draws the batches of a run as `train.fit` does and lays
  them out with `train.planned_shapes` (0: every batch its own shape, as
  before the plan), then prints shapes, real fraction of padded slots and
  the predicted run time (compiles at 3 s + row-steps at
  `train.row_step_seconds`).
  """
  import numpy as np

  sys.path.insert(0, REPO)
  from configs import default, librisim
  from uisrnn_jax import data as data_lib
  from uisrnn_jax import train

  sequences, cluster_ids = load_data(args.data, args.sequences, args.seed)
  config = (librisim if args.config == 'librisim' else default).get_config()
  if args.config != 'librisim':
    config.train.train_iteration = args.iters
  t = config.train
  samples, _ = data_lib.prepare_training_data(
    sequences,
    cluster_ids,
    observation_dim=config.model.observation_dim,
    enforce_uniqueness=t.enforce_cluster_id_uniqueness,
    num_permutations=t.num_permutations,
    rng=np.random.default_rng((config.seed, 0)),
  )
  seconds = train.row_step_seconds(config.model)
  n = t.train_iteration
  print(
    f'{args.config} config, {args.data} data: {n} steps of batch '
    f'{t.batch_size}, H={config.model.rnn_hidden_size}; predicted run time '
    f'= shapes x {train.COMPILE_SECONDS:g} s + row-steps x '
    f'{1e6 * seconds:.0f} us'
  )
  print()
  print(
    '| train.compile_seconds | shapes | real fraction | predicted run (s) '
    '| planning (s) |'
  )
  print('|---:|---:|---:|---:|---:|')
  for value in (0.0, 0.3, 1.0, 3.0, 10.0):
    config.train.compile_seconds = value
    tic = time.perf_counter()
    shapes = train.planned_shapes(samples, config, seed=config.seed)
    planning = time.perf_counter() - tic
    used, real, work = set(), 0, 0.0
    for step in range(n):
      rng = np.random.default_rng((config.seed, 1, step))
      idx = samples.sample_indices(t.batch_size, rng)
      lengths = samples.lengths[idx]
      fitted = data_lib.fit_shape(lengths, shapes) if shapes else None
      if fitted is None:
        steps, rows = data_lib.packed_layout(lengths, t.bucket)
        shape = (data_lib.bucketed_rows(len(rows)), steps)
      else:
        shape = fitted[0]
      used.add(shape)
      real += int(lengths.sum())
      work += shape[0] * shape[1]
    # work counts slots; the step also pays ROW_OVERHEAD rows per length.
    predicted = len(used) * train.COMPILE_SECONDS + seconds * work
    print(
      f'| {value:g} | {len(used)} | {real / work:.2f} | {predicted:.0f} | '
      f'{planning:.1f} |'
    )


def run_phase(kind: str, argv: Sequence[str], cache: str) -> dict:
  """Runs ``child`` in a fresh interpreter and returns its JSON."""
  env = dict(os.environ, UISRNN_JAX_CACHE_DIR=cache, JAX_PLATFORMS='cpu')
  env.pop('JAX_COMPILATION_CACHE_DIR', None)
  out = subprocess.run(
    [sys.executable, os.path.abspath(__file__), f'--child={kind}', *argv],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
  )
  if out.returncode:
    raise SystemExit(f'{kind} phase failed:\n{out.stderr[-3000:]}')
  return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--data', default='toy', help='toy or librisim')
  parser.add_argument('--sequences', type=int, default=40, help='toy only')
  parser.add_argument('--iters', type=int, default=100, help='N per fit')
  parser.add_argument(
    '--calls', type=int, default=2, help='fit(N) calls per process'
  )
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument(
    '--repeats',
    type=int,
    default=3,
    help='rounds of (reference, first, second process); medians reported',
  )
  parser.add_argument(
    '--torch_threads', type=int, default=0, help="0: torch's default"
  )
  parser.add_argument(
    '--cache', default='', help='cache dir for ours (default: a fresh one)'
  )
  parser.add_argument(
    '--plan_only',
    action='store_true',
    help='print compile count against padding (host only) and stop',
  )
  parser.add_argument(
    '--config',
    default='default',
    help="--plan_only: default (the seed's, --iters steps) or librisim",
  )
  parser.add_argument('--child', default='', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    child(args)
    return
  if args.plan_only:
    plan_table(args)
    return
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from train_speed import uptime  # imports jax: parent process only

  passed = list(sys.argv[1:] if argv is None else argv)
  command = 'python ' + shlex.join([os.path.relpath(__file__, REPO), *passed])
  load_before = uptime()
  rounds = []
  for _ in range(args.repeats):
    # A round: the reference, then ours twice on a cache of the round's own,
    # back to back, so that each ratio compares runs minutes apart at most.
    with tempfile.TemporaryDirectory(prefix='uisrnn_jax_cold_') as tmp:
      cache = args.cache or os.path.join(tmp, 'jax_cache')
      rounds.append(
        {
          'reference': run_phase('reference', passed, cache),
          'first process': run_phase('ours', passed, cache),
          'second process': run_phase('ours', passed, cache),
        }
      )
  load_after = uptime()
  print_rounds(args, command, rounds, load_before, load_after)


def _spread(values: Sequence[float], fmt: str) -> str:
  """``median (min-max)`` of ``values``, or the value alone for one."""
  import numpy as np

  if len(values) == 1:
    return format(values[0], fmt)
  return (
    f'{format(float(np.median(values)), fmt)} '
    f'({format(min(values), fmt)}-{format(max(values), fmt)})'
  )


def print_rounds(args, command, rounds, load_before, load_after) -> None:
  """The markdown table: each phase's median over rounds (and range), and
  its ratio to the reference of the same round."""
  n = args.iters
  print(f'Command: `{command}`')
  print(f'Load before: `{load_before}`; after: `{load_after}`.')
  print(
    f'Data: {args.data}'
    + (f', {args.sequences} sequences' if args.data == 'toy' else '')
    + f'; fit({n}) x {args.calls} per process; the model is built inside '
    f'the first timing; {len(rounds)} round(s) of reference, first and '
    'second process; medians over rounds (min-max).'
  )
  print()
  print(
    '| phase | ms / iteration | vs reference (same round) | XLA programs '
    'built (from the cache), time |'
  )
  print('|---|---:|---:|---:|')
  ref = [
    sum(c['wall_s'] for c in r['reference']['calls'])
    / len(r['reference']['calls'])
    for r in rounds
  ]
  for i in range(args.calls):
    print(
      f'| reference, call {i + 1} | '
      + _spread(
        [1e3 * r['reference']['calls'][i]['wall_s'] / n for r in rounds], '.0f'
      )
      + ' | 1.00x | - |'
    )
  summary = {}
  for name in ('first process', 'second process'):
    for i in range(args.calls):
      calls = [r[name]['calls'][i] for r in rounds]
      ratios = [ref_s / c['wall_s'] for ref_s, c in zip(ref, calls)]
      summary[(name, i)] = _spread(ratios, '.2f')
      print(
        f'| ours, {name}, call {i + 1} | '
        + _spread([1e3 * c['wall_s'] / n for c in calls], '.0f')
        + f' | **{summary[(name, i)]}x** | '
        + _spread([c['compiles'] for c in calls], '.0f')
        + ' ('
        + _spread([c['cache_hits'] for c in calls], '.0f')
        + '), '
        + _spread([c['compile_s'] for c in calls], '.1f')
        + ' s |'
      )
  print()
  line = (
    f'cold (first process, call 1): {summary[("first process", 0)]}x; '
    f'second process, call 1: {summary[("second process", 0)]}x'
  )
  if args.calls > 1:
    line += f'; warm (first process, call 2): {summary[("first process", 1)]}x'
  print(line)


if __name__ == '__main__':
  main()
