r"""Training throughput of uisrnn_jax against the reference ``uisrnn`` 0.1.2.

Trains Google's PyTorch ``uisrnn.UISRNN`` and this package on the same data
with the same configuration (the seed's defaults: observation_dim 256, hidden
512, depth 1, batch 10, 10 permutations, Adam with lr 1e-3, sigma2 learned,
transition_bias estimated) and reports real (non-padded) observations per
second for both, measured in the same run, phases alternating and never
concurrent.

Usage (from the repository root):
  python benchmarks/train_speed.py                 # LibriSim if present
  python benchmarks/train_speed.py --data=toy --iters=50 --repeats=1

Data: ``--data=librisim`` reads the real d-vectors of
``/work/shared/data/librisim/train.npz`` (one sequence per conversation);
``--data=toy`` generates `uisrnn_jax.toy` data of similar shape; ``auto``
(the default) takes LibriSim when the file exists. The LibriSim encoder ends in
a ReLU, so about 60% of the entries are exactly 0.0; the reference treats an
exact 0.0 as padding (its loss masks them out and its sigma2 prior divides by
their count, giving NaN), so the reference alone gets 1e-6 added to every
entry. Our package masks padding explicitly and trains on the data as is.

What is timed: for the reference, whole iterations of ``fit_concatenated``'s
loop (``pack_sequence`` on the host, forward, backward, clipping, Adam,
clamping), from the start of iteration ``warmup`` to the return of ``fit``;
observations are counted from the PackedSequence ``pack_sequence`` returns
(``sum(batch_sizes) - batch_size``: its seq_lengths are lengths + 1). For
ours, the loop of `uisrnn_jax.train.fit`: batch assembly with its random
streams, then the jitted, state-donating step, blocking on every step so each
step's wall time is known (``--pipelined``: without waiting, as `fit` runs,
so the host assembles the next batch while the step computes); observations
are counted from the masks. Our step
is compiled ahead of time for every padded length the timed batches use;
that compile time is reported separately and excluded.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import default  # noqa: E402
from uisrnn_jax import data as data_lib  # noqa: E402
from uisrnn_jax import dataset as dataset_lib  # noqa: E402
from uisrnn_jax import losses, toy, train  # noqa: E402

LIBRISIM = '/work/shared/data/librisim/train.npz'
REFERENCE_OFFSET = 1e-6  # keeps the reference from taking 0.0 for padding


def load_data(
  kind: str, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray], str]:
  """The training sequences (float64[N_i, 256]) and their labels.

  Args:
    kind: 'librisim', 'toy', or 'auto' (LibriSim when the file exists).
    seed: seed of the toy data.

  Returns:
    ``(sequences, cluster_ids, description)``.
  """
  if kind == 'auto':
    kind = 'librisim' if os.path.exists(LIBRISIM) else 'toy'
  if kind == 'librisim':
    data = dataset_lib.load_npz(LIBRISIM)
    seqs, ids = data.sequences, data.labels
    desc = (
      f'LibriSim train.npz: {len(seqs)} conversations, '
      f'{int(data.offsets[-1])} d-vectors'
    )
  elif kind == 'toy':
    # Shaped like LibriSim: 75-222 observations, 2-4 speakers, short turns.
    seqs, ids = toy.make_toy_dataset(
      np.random.default_rng(seed),
      num_sequences=300,
      num_speakers=4,
      observation_dim=256,
      length=222,
      min_length=75,
      min_turn=3,
      max_turn=15,
      noise=0.1,
    )
    desc = f'uisrnn_jax.toy: {len(seqs)} sequences, {sum(map(len, seqs))} rows'
  else:
    raise ValueError(f'--data must be auto, librisim or toy, got {kind!r}')
  return seqs, ids, desc


def machine_info() -> dict[str, str]:
  """CPU model, cores, library versions and the current load."""
  import torch

  cpu = platform.processor() or 'unknown'
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          cpu = line.split(':', 1)[1].strip()
          break
  except OSError:
    pass
  return {
    'cpu': cpu,
    'cores': str(os.cpu_count()),
    'python': platform.python_version(),
    'jax': jax.__version__,
    'torch': torch.__version__,
    'torch_threads': str(torch.get_num_threads()),
    'xla_flags': os.environ.get('XLA_FLAGS', '(none)'),
  }


def uptime() -> str:
  """The output of ``uptime`` (load averages), or /proc/loadavg."""
  try:
    return subprocess.run(
      ['uptime'], capture_output=True, text=True, check=True
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    with open('/proc/loadavg') as f:
      return 'loadavg ' + f.read().strip()


def reference_args(iterations: int) -> tuple[Any, Any]:
  """The reference's default model and training arguments."""
  import uisrnn

  argv, sys.argv = sys.argv, sys.argv[:1]  # it parses sys.argv itself
  try:
    model_args, training_args, _ = uisrnn.parse_arguments()
  finally:
    sys.argv = argv
  model_args.verbosity = 1  # only the final 'Done training' line
  training_args.train_iteration = iterations
  return model_args, training_args


def run_reference(
  sequences: Sequence[np.ndarray],
  cluster_ids: Sequence[np.ndarray],
  *,
  warmup: int,
  iters: int,
  seed: int,
) -> dict[str, Any]:
  """Times ``iters`` iterations of the reference's training loop.

  Args:
    sequences: float64 training sequences (0.0 entries already offset).
    cluster_ids: their labels.
    warmup: iterations run before timing starts.
    iters: iterations timed.
    seed: seeds NumPy's and torch's global generators.

  Returns:
    ``{'obs': [...], 'step_s': [...], 'total_s': float}`` for the timed
    iterations.
  """
  import torch
  import uisrnn
  from uisrnn import utils

  np.random.seed(seed)
  torch.manual_seed(seed)
  model_args, training_args = reference_args(warmup + iters)
  model = uisrnn.UISRNN(model_args)
  starts, counts = [], []
  original = utils.pack_sequence

  def timed_pack_sequence(*args, **kwargs):
    starts.append(time.perf_counter())
    packed, truth = original(*args, **kwargs)
    counts.append(int(packed.batch_sizes.sum()) - truth.shape[1])
    return packed, truth

  utils.pack_sequence = timed_pack_sequence
  try:
    with open(os.devnull, 'w') as devnull:
      stdout, sys.stdout = sys.stdout, devnull
      try:
        model.fit(list(sequences), list(cluster_ids), training_args)
      finally:
        sys.stdout = stdout
    end = time.perf_counter()
  finally:
    utils.pack_sequence = original
  if len(starts) != warmup + iters:
    raise RuntimeError(
      f'expected {warmup + iters} iterations, saw {len(starts)}'
    )
  bounds = starts[warmup:] + [end]
  return {
    'obs': counts[warmup:],
    'step_s': list(np.diff(bounds)),
    'total_s': end - starts[warmup],
  }


class JaxRunner:
  """Our training loop, as in `uisrnn_jax.train.fit`, with its compile step.

  Attributes:
    config: the seed's defaults (`configs.default`), bucket as given.
    samples: the packed training samples (`data.SampleSet`).
    state: the current `train.TrainState`.
  """

  def __init__(
    self,
    sequences: Sequence[np.ndarray],
    cluster_ids: Sequence[np.ndarray],
    *,
    seed: int,
    bucket: int,
  ):
    config = default.get_config()
    config.seed = seed
    config.train.bucket = bucket
    self.config = config
    t = config.train
    self.samples, labels = data_lib.prepare_training_data(
      list(sequences),
      list(cluster_ids),
      observation_dim=config.model.observation_dim,
      enforce_uniqueness=t.enforce_cluster_id_uniqueness,
      num_permutations=t.num_permutations,
      rng=np.random.default_rng((seed, 0)),
    )
    state = train.create_train_state(jax.random.key(seed), config)
    self.state = train.update_transition_bias(
      state, labels, config.model.transition_bias
    )
    kw = losses.loss_kwargs(t, config.model)
    self.step_fn = jax.jit(train.make_train_step(kw), donate_argnums=0)
    self.key = jax.random.key(seed)
    self.next_step = 0
    self.compile_s: dict[tuple[int, int], float] = {}
    self.shapes = None

  def batch(self, step: int) -> dict[str, np.ndarray]:
    """The batch of global step ``step``, drawn as `train.fit` draws it."""
    rng = np.random.default_rng((self.config.seed, 1, step))
    t = self.config.train
    return self.samples.sample_batch(
      t.batch_size, rng, bucket=t.bucket, shapes=self.shapes
    )

  def compile_for(self, steps: range) -> None:
    """Compiles the step ahead of time for every batch shape in ``steps``.

    The shapes are planned as `train.fit` plans them for a run of
    ``config.train.train_iteration`` steps.
    """
    self.shapes = train.planned_shapes(
      self.samples, self.config, seed=self.config.seed, end=steps.stop
    )
    for step in steps:
      batch = self.batch(step)
      shape = batch['mask'].shape  # (rows, padded length)
      if shape not in self.compile_s:
        tic = time.perf_counter()
        self.step_fn.lower(self.state, batch, self.key).compile()
        self.compile_s[shape] = time.perf_counter() - tic

  def run(self, num_steps: int, *, pipelined: bool = False) -> dict[str, Any]:
    """Runs ``num_steps`` steps; per-step wall times and real counts.

    Pipelined, the loop does not wait for each step (as `train.fit`, which
    syncs only to log), so the next batch is assembled while the device
    computes; the per-step times are then the phase's mean.
    """
    obs, lengths, slots, times = [], [], [], []
    begin = time.perf_counter()
    for step in range(self.next_step, self.next_step + num_steps):
      tic = time.perf_counter()
      batch = self.batch(step)
      self.state, metrics = self.step_fn(self.state, batch, self.key)
      if not pipelined:
        jax.block_until_ready(metrics['loss'])
      times.append(time.perf_counter() - tic)
      obs.append(int(batch['mask'].sum()))
      lengths.append(batch['mask'].shape[1])
      slots.append(batch['mask'].size)
    jax.block_until_ready(metrics['loss'])
    total = time.perf_counter() - begin
    if pipelined:
      times = [total / num_steps] * num_steps
    self.next_step += num_steps
    loss = float(metrics['loss'])
    if not np.isfinite(loss):
      raise RuntimeError(f'our training loss became {loss}')
    return {
      'obs': obs,
      'lengths': lengths,
      'slots': slots,
      'step_s': times,
      'total_s': total,
    }


def summarise(run: dict[str, Any]) -> dict[str, float]:
  """Throughput and step statistics of one timed phase."""
  return {
    'obs_per_s': sum(run['obs']) / run['total_s'],
    'step_ms_median': 1e3 * statistics.median(run['step_s']),
    'step_ms_mean': 1e3 * run['total_s'] / len(run['step_s']),
    'obs_per_step': float(np.mean(run['obs'])),
  }


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--data', default='auto', help='auto, librisim or toy')
  parser.add_argument('--warmup', type=int, default=10, help='untimed steps')
  parser.add_argument('--iters', type=int, default=100, help='timed steps')
  parser.add_argument(
    '--repeats',
    type=int,
    default=3,
    help='timed phases per implementation, alternating reference and ours',
  )
  parser.add_argument(
    '--bucket',
    type=int,
    default=default.get_config().train.bucket,
    help='our train.bucket (padded-length granularity)',
  )
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument(
    '--torch_threads',
    type=int,
    default=0,
    help="torch.set_num_threads for the reference; 0 keeps torch's default",
  )
  parser.add_argument(
    '--skip_reference', action='store_true', help='time ours only'
  )
  parser.add_argument(
    '--pipelined',
    action='store_true',
    help="don't wait for each of our steps (as train.fit runs); per-step "
    'times become phase means',
  )
  args = parser.parse_args(argv)
  command = 'python ' + shlex.join(
    [os.path.relpath(sys.argv[0])]
    + list(sys.argv[1:] if argv is None else argv)
  )

  if args.torch_threads > 0:
    import torch

    torch.set_num_threads(args.torch_threads)
  info = machine_info()
  sequences, cluster_ids, desc = load_data(args.data, args.seed)
  print(f'data: {desc}', flush=True)
  load_before = uptime()

  runner = JaxRunner(sequences, cluster_ids, seed=args.seed, bucket=args.bucket)
  per_phase = args.warmup + args.iters
  total_steps = args.repeats * per_phase
  runner.compile_for(range(total_steps))
  compile_total = sum(runner.compile_s.values())
  print(
    f'ours: compiled {len(runner.compile_s)} batch shapes (rows, length) '
    f'{sorted(runner.compile_s)} in {compile_total:.1f} s',
    flush=True,
  )
  reference_sequences = [s + REFERENCE_OFFSET for s in sequences]

  ref_runs, jax_runs = [], []
  for r in range(args.repeats):
    if not args.skip_reference:
      run = run_reference(
        reference_sequences,
        cluster_ids,
        warmup=args.warmup,
        iters=args.iters,
        seed=args.seed + r,
      )
      ref_runs.append(summarise(run))
      print(
        f'[{r}] reference: {ref_runs[-1]["obs_per_s"]:.0f} obs/s, '
        f'{ref_runs[-1]["step_ms_median"]:.1f} ms/step',
        flush=True,
      )
    runner.run(args.warmup)
    run = runner.run(args.iters, pipelined=args.pipelined)
    jax_runs.append(summarise(run))
    jax_runs[-1]['padded_length'] = float(np.mean(run['lengths']))
    jax_runs[-1]['real_fraction'] = sum(run['obs']) / sum(run['slots'])
    print(
      f'[{r}] ours: {jax_runs[-1]["obs_per_s"]:.0f} obs/s, '
      f'{jax_runs[-1]["step_ms_median"]:.1f} ms/step',
      flush=True,
    )
  load_after = uptime()

  def med(runs, key):
    return statistics.median(x[key] for x in runs)

  threads_note = ', its default' if args.torch_threads <= 0 else ', set'
  print()
  print(f'Command: `{command}`')
  print()
  print(
    f'Machine: {info["cpu"]}, {info["cores"]} cores; Python '
    f'{info["python"]}, jax {info["jax"]}, torch {info["torch"]} '
    f'({info["torch_threads"]} threads{threads_note}); XLA_FLAGS '
    f'{info["xla_flags"]}.'
  )
  print(f'Load before: `{load_before}`; after: `{load_after}`.')
  print(
    f'Data: {desc}. {args.repeats} alternating phases of {args.warmup} '
    f'warm-up + {args.iters} timed steps each; medians over phases. Ours '
    + (
      'pipelined (no wait per step, as train.fit).'
      if args.pipelined
      else 'waits for every step.'
    )
  )
  print()
  print('| | reference uisrnn 0.1.2 | uisrnn-jax |')
  print('|---|---:|---:|')
  ours_obs = med(jax_runs, 'obs_per_s')
  if ref_runs:
    ref_obs = med(ref_runs, 'obs_per_s')
    print(f'| real observations / s | {ref_obs:.0f} | {ours_obs:.0f} |')
    print(
      f'| step wall time, median (ms) | {med(ref_runs, "step_ms_median"):.1f}'
      f' | {med(jax_runs, "step_ms_median"):.1f} |'
    )
    print(
      f'| step wall time, mean (ms) | {med(ref_runs, "step_ms_mean"):.1f} | '
      f'{med(jax_runs, "step_ms_mean"):.1f} |'
    )
    print(
      f'| real observations / step | {med(ref_runs, "obs_per_step"):.1f} | '
      f'{med(jax_runs, "obs_per_step"):.1f} |'
    )
  else:
    print(f'| real observations / s | - | {ours_obs:.0f} |')
    print(
      f'| step wall time, median (ms) | - | '
      f'{med(jax_runs, "step_ms_median"):.1f} |'
    )
  print(
    f'| padded length / step (mean) | longest + 1 (packed) | '
    f'{med(jax_runs, "padded_length"):.1f} |'
  )
  print(
    f'| real fraction of padded slots | - | '
    f'{med(jax_runs, "real_fraction"):.2f} |'
  )
  print(
    f'| compile time (excluded) | - | {compile_total:.1f} s for '
    f'{len(runner.compile_s)} batch shapes |'
  )
  if ref_runs:
    ratios = [
      j['obs_per_s'] / r['obs_per_s'] for r, j in zip(ref_runs, jax_runs)
    ]
    print(
      f'| **speed-up (ours / reference)** | | **{ours_obs / ref_obs:.2f}x** '
      f'(per phase: {", ".join(f"{x:.2f}" for x in ratios)}) |'
    )
    # Throughput from median step times ignores stalls (e.g. torch's threads
    # descheduled on a busy machine), which the mean above includes.
    robust = [
      (j['obs_per_step'] / j['step_ms_median'])
      / (r['obs_per_step'] / r['step_ms_median'])
      for r, j in zip(ref_runs, jax_runs)
    ]
    print(
      '| speed-up from median step times | | '
      f'{statistics.median(robust):.2f}x (per phase: '
      f'{", ".join(f"{x:.2f}" for x in robust)}) |'
    )


if __name__ == '__main__':
  main()
