"""Training data larger than memory: many `.npz` shards, one in memory.

A shard is an ordinary file in the ``.npz`` input format (see
`uisrnn_jax.dataset`: ``embeddings`` float[N, D], ``offsets`` int[C + 1],
``labels`` str[N], optional window times, ids and turns), holding whole
conversations.

`write_shards` splits a `dataset.Dataset` into such files, *uncompressed*
(``np.savez``), so that `load_shard` memory-maps every array straight from
the zip archive (`dataset.load_npz` with ``mmap=True``): nothing is read
until it is used, and pages are dropped again under memory pressure.
Compressed members (``np.savez_compressed``) are read into memory as usual
(memory is then still bounded by one shard). Every shard is checked as any
input file is (dtypes, shapes, NaN/Inf, dimension, turns).

`fit_sharded` trains shard by shard with `train.fit`, continuing from the
state, so peak memory is that of one shard's training data (its speaker
samples and permuted copies) rather than of the whole set. The shard a step
trains on is a function of the global step only (step s uses shard
``(s // steps_per_shard) % num_shards``), so a run resumed from a checkpoint
continues exactly like an uninterrupted one.

>>> paths = write_shards(dataset, 'shards/', rows_per_shard=100_000)
>>> state = fit_sharded(state, paths, config, steps_per_shard=500)
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from absl import logging

from uisrnn_jax import dataset as dataset_lib
from uisrnn_jax import train as train_lib
from uisrnn_jax.errors import DataFormatError

__all__ = [
  'expand_shard_paths',
  'fit_sharded',
  'load_shard',
  'shard_for_step',
  'write_shards',
]


def load_shard(
  path: str, *, mmap: bool = True, observation_dim: int | None = None
) -> dataset_lib.Dataset:
  """Reads one shard as a `dataset.Dataset` of views into the file.

  `dataset.load_npz` with the stored dtype kept (e.g. float16 or float32;
  `train.fit` casts samples to float32) and, with ``mmap``, memory maps:
  the file is checked like any input file.

  Args:
    path: an ``.npz`` file in the input format.
    mmap: memory-map uncompressed members (see the module docstring).
    observation_dim: the D the embeddings must have, or None for any.

  Returns:
    `dataset.Dataset` with sequences, labels, starts, ends, ids and turns
    as present in the file.

  Raises:
    errors.InputFileNotFoundError: no such file (a FileNotFoundError).
    errors.DataFormatError: see `dataset.load_npz`.
  """
  return dataset_lib.load_npz(
    path, observation_dim=observation_dim, mmap=mmap, dtype=None
  )


def write_shards(
  dataset: dataset_lib.Dataset,
  directory: str,
  rows_per_shard: int,
  *,
  dtype: Any = np.float32,
  prefix: str = 'shard',
) -> list[str]:
  """Writes a dataset as uncompressed, memory-mappable ``.npz`` shards.

  Conversations are kept whole and in order: a shard takes conversations
  until the next would exceed ``rows_per_shard`` rows (a longer conversation
  gets a shard of its own). Each file is written to a temporary name and
  renamed, so a crash never leaves a truncated shard.

  Args:
    dataset: a `dataset.Dataset` (its labels, times, ids and turns are
      written when present).
    directory: created if needed.
    rows_per_shard: target rows (observations) per shard, >= 1.
    dtype: the stored embedding dtype.
    prefix: files are ``{prefix}-00000.npz``, ``{prefix}-00001.npz``, ...

  Returns:
    The shard paths, in order.

  Raises:
    ValueError: ``rows_per_shard`` < 1 or an empty dataset.
  """
  if isinstance(rows_per_shard, bool) or int(rows_per_shard) < 1:
    raise ValueError(f'rows_per_shard must be >= 1, got {rows_per_shard}')
  if not dataset.sequences:
    raise ValueError('the dataset has no conversations')
  groups: list[list[int]] = [[]]
  rows = 0
  for c, seq in enumerate(dataset.sequences):
    if groups[-1] and rows + len(seq) > rows_per_shard:
      groups.append([])
      rows = 0
    groups[-1].append(c)
    rows += len(seq)

  paths = []
  for n, idx in enumerate(groups):
    path = os.path.join(directory, f'{prefix}-{n:05d}.npz')
    dataset_lib.write_npz(
      path, dataset.subset(idx), dtype=dtype, compress=False
    )
    paths.append(path)
  return paths


def expand_shard_paths(spec: str | Sequence[str]) -> list[str]:
  """Shard paths from a glob pattern (sorted) or an explicit list.

  Raises:
    FileNotFoundError: the pattern matches nothing, or a listed file is
      missing.
  """
  if isinstance(spec, str):
    paths = sorted(glob.glob(spec))
    if not paths:
      raise FileNotFoundError(f'no shard matches {spec!r}')
    return paths
  paths = [str(p) for p in spec]
  if not paths:
    raise FileNotFoundError('no shard paths given')
  for p in paths:
    if not os.path.exists(p):
      raise FileNotFoundError(f'no such shard: {p}')
  return paths


def shard_for_step(step: int, num_shards: int, steps_per_shard: int) -> int:
  """Index of the shard global step ``step`` trains on (cycling)."""
  return (step // steps_per_shard) % num_shards


def fit_sharded(
  state: train_lib.TrainState,
  shard_paths: str | Sequence[str],
  config: Any,
  *,
  steps_per_shard: int,
  num_steps: int | None = None,
  seed: int | None = None,
  writer: Any = None,
  progress: bool | None = None,
  on_step: Callable[[Any], None] | None = None,
  mesh: Any = None,
  mmap: bool = True,
) -> train_lib.TrainState:
  """Trains with `train.fit` shard by shard; memory is bounded by one shard.

  Global step s trains on shard ``(s // steps_per_shard) % len(paths)``
  (`shard_for_step`): shards are visited in order, ``steps_per_shard``
  steps each, cycling for further epochs. Each visit is one `train.fit`
  call on that shard's data (so the batches of step s are those `fit` would
  draw from that shard at step s). p0 (and crp_alpha, if configured) is
  estimated when a shard is entered for the first time (first epoch, at its
  first step) and, as in `fit`, p0 is pooled over calls weighted by
  transition counts: after one epoch it is (K + changes) / (2 K +
  transitions) over all K shards' data, the whole set's estimate up to each
  shard's add-one smoothing. A configured crp_alpha estimator keeps the last
  shard's estimate. Since the schedule depends on the global step only,
  resuming from a checkpoint mid-shard continues exactly as an
  uninterrupted run.

  Args:
    state: a `train.TrainState` (fresh, restored or from an earlier call).
    shard_paths: a glob pattern or a list of ``.npz`` shard files.
    config: full config, as for `train.fit`.
    steps_per_shard: steps per shard visit, >= 1.
    num_steps: steps to run from ``state.step`` (default: one epoch,
      ``len(paths) * steps_per_shard``).
    seed: data/dropout seed (default ``config.seed``).
    writer: metric writer passed to every `fit` call.
    progress: progress bars (one per shard visit).
    on_step: called after every step, as in `fit` (e.g. checkpoints).
    mesh: data-parallel mesh, as in `fit`.
    mmap: memory-map uncompressed shards.

  Returns:
    The trained state.

  Raises:
    FileNotFoundError: missing shards.
    DataFormatError: a malformed or unlabelled shard.
    ValueError: ``steps_per_shard`` < 1 or ``num_steps`` < 0.
  """
  paths = expand_shard_paths(shard_paths)
  if isinstance(steps_per_shard, bool) or int(steps_per_shard) < 1:
    raise ValueError(f'steps_per_shard must be >= 1, got {steps_per_shard}')
  steps_per_shard = int(steps_per_shard)
  if num_steps is None:
    num_steps = len(paths) * steps_per_shard
  if num_steps < 0:
    raise ValueError(f'num_steps must be >= 0, got {num_steps}')
  step = int(state.step)
  end = step + num_steps
  while step < end:
    visit = step // steps_per_shard
    index = shard_for_step(step, len(paths), steps_per_shard)
    count = min(steps_per_shard - step % steps_per_shard, end - step)
    entering = step % steps_per_shard == 0
    estimate = (entering and visit < len(paths)) or math.isnan(
      float(state.transition_bias)
    )
    dataset = load_shard(
      paths[index], mmap=mmap, observation_dim=config.model.observation_dim
    )
    if dataset.labels is None:
      raise DataFormatError(f'{paths[index]}: training shards need labels')
    logging.info(
      'fit_sharded: steps %d-%d on shard %d/%d (%s)',
      step,
      step + count,
      index + 1,
      len(paths),
      paths[index],
    )
    state = train_lib.fit(
      state,
      dataset.sequences,
      dataset.labels,
      config,
      num_steps=count,
      seed=seed,
      writer=writer,
      progress=progress,
      on_step=on_step,
      update_estimates=estimate,
      mesh=mesh,
    )
    del dataset
    step += count
  return state
