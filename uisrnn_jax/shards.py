"""Training data larger than memory: many `.npz` shards, one in memory.

A shard is an ordinary file in the LibriSim ``.npz`` format (see
`experiment.load_npz`: ``embeddings`` float[N, D], ``offsets`` int[C + 1],
``labels`` str[N], optional ``starts``/``ends`` float[N] and
``conversation_ids`` str[C]), holding whole conversations.

`write_shards` splits a `experiment.Dataset` into such files, *uncompressed*
(``np.savez``), so that `load_shard` memory-maps every array straight from
the zip archive: nothing is read until it is used, and pages are dropped
again under memory pressure. ``np.load(mmap_mode=...)`` cannot do this for
``.npz`` files (it ignores ``mmap_mode`` for archives, and a compressed
member such as ``np.savez_compressed`` writes cannot be mapped at all), so
`load_shard` locates each stored member itself; compressed members are read
into memory as usual (memory is then still bounded by one shard).

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
import io
import math
import os
import struct
import zipfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from absl import logging

# Module imports only (no `from ... import name`): experiment may import
# this module back to train from shards.
from uisrnn_jax import checkpoint, experiment
from uisrnn_jax import train as train_lib

__all__ = [
  'expand_shard_paths',
  'fit_sharded',
  'iter_shards',
  'load_shard',
  'shard_for_step',
  'write_shards',
]

_LOCAL_HEADER = b'PK\x03\x04'


def _member_memmap(path: str, info: zipfile.ZipInfo) -> np.ndarray | None:
  """Maps a stored (uncompressed) ``.npy`` member of a zip; None if compressed.

  Raises:
    ValueError: a malformed member, or an object array (needs pickle).
  """
  if info.compress_type != zipfile.ZIP_STORED:
    return None
  with open(path, 'rb') as f:
    f.seek(info.header_offset)
    header = f.read(30)
    if len(header) != 30 or header[:4] != _LOCAL_HEADER:
      raise ValueError(f'bad zip local header for {info.filename!r}')
    name_len, extra_len = struct.unpack('<HH', header[26:30])
    f.seek(info.header_offset + 30 + name_len + extra_len)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
      shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
      shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
      return None  # let np.load handle (or reject) other versions
    offset = f.tell()
  if dtype.hasobject:
    raise ValueError(f'{info.filename!r} is an object array (needs pickle)')
  if int(np.prod(shape)) == 0:
    return np.zeros(shape, dtype)
  return np.memmap(
    path,
    dtype=dtype,
    mode='r',
    offset=offset,
    shape=shape,
    order='F' if fortran else 'C',
  )


def _open_arrays(path: str, mmap: bool) -> dict[str, np.ndarray]:
  """Every array of an ``.npz`` file, memory-mapped where possible."""
  if not os.path.exists(path):
    raise FileNotFoundError(f'no such shard: {path}')
  arrays = {}
  try:
    with zipfile.ZipFile(path) as zf:
      infos = [i for i in zf.infolist() if i.filename.endswith('.npy')]
    if mmap:
      for info in infos:
        mapped = _member_memmap(path, info)
        if mapped is not None:
          arrays[info.filename[: -len('.npy')]] = mapped
    if len(arrays) < len(infos):
      with np.load(path, allow_pickle=False) as z:
        for key in z.files:
          if key not in arrays:
            arrays[key] = z[key]
  except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
    raise experiment.DataFormatError(
      f'{path}: not a readable .npz shard ({e})'
    ) from e
  return arrays


def load_shard(path: str, *, mmap: bool = True) -> experiment.Dataset:
  """Reads one shard as an `experiment.Dataset` of views into the file.

  Sequences keep the stored dtype (e.g. float16 or float32; `train.fit`
  casts samples to float32) and, with ``mmap``, are slices of memory maps.

  Args:
    path: an ``.npz`` file in the LibriSim format.
    mmap: memory-map uncompressed members (see the module docstring).

  Returns:
    `experiment.Dataset` with sequences, labels, starts, ends and ids as
    present in the file.

  Raises:
    FileNotFoundError: no such file.
    experiment.DataFormatError: not a zip/npz, missing keys, object arrays,
      or inconsistent shapes.
  """
  z = _open_arrays(path, mmap)
  for key in ('embeddings', 'offsets'):
    if key not in z:
      raise experiment.DataFormatError(
        f'{path}: missing key {key!r} (has {sorted(z)}); expected '
        'embeddings float[N, D] and offsets int[C + 1]'
      )
  emb = z['embeddings']
  off = np.asarray(z['offsets']).astype(np.int64)
  if emb.ndim != 2 or off.ndim != 1 or len(off) < 2:
    raise experiment.DataFormatError(
      f'{path}: embeddings must be 2-D, offsets 1-D'
    )
  if off[0] != 0 or off[-1] != len(emb) or np.any(np.diff(off) < 1):
    raise experiment.DataFormatError(
      f'{path}: offsets must rise from 0 to {len(emb)} with no empty '
      'conversation'
    )

  def split(a):
    return [a[i:j] for i, j in zip(off[:-1], off[1:])]

  out = experiment.Dataset(sequences=split(emb))
  for key in ('labels', 'starts', 'ends'):
    if key in z:
      if len(z[key]) != len(emb):
        raise experiment.DataFormatError(
          f'{path}: {key} must have one entry per row'
        )
      setattr(out, key, split(z[key]))
  if 'conversation_ids' in z:
    out.ids = [str(x) for x in z['conversation_ids']]
  return out


def _save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
  """Uncompressed ``np.savez``, written atomically (`checkpoint.atomic_write`)."""
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  checkpoint.atomic_write(path, buf.getvalue(), prefix='.tmp_')


def write_shards(
  dataset: experiment.Dataset,
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
    dataset: an `experiment.Dataset` (``labels``, ``starts``, ``ends``,
      ``ids`` are written when present).
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
  os.makedirs(directory, exist_ok=True)
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
    seqs = [dataset.sequences[c] for c in idx]
    arrays = {
      'embeddings': np.concatenate(seqs).astype(dtype),
      'offsets': np.concatenate([[0], np.cumsum([len(s) for s in seqs])]),
    }
    for key in ('labels', 'starts', 'ends'):
      value = getattr(dataset, key)
      if value is not None:
        arrays[key] = np.concatenate([np.asarray(value[c]) for c in idx])
    if dataset.ids is not None:
      arrays['conversation_ids'] = np.asarray([dataset.ids[c] for c in idx])
    path = os.path.join(directory, f'{prefix}-{n:05d}.npz')
    _save_npz(path, arrays)
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


def iter_shards(
  paths: str | Sequence[str], *, mmap: bool = True
) -> Iterator[tuple[str, experiment.Dataset]]:
  """Yields ``(path, dataset)`` one shard at a time (see `load_shard`)."""
  for path in expand_shard_paths(paths):
    yield path, load_shard(path, mmap=mmap)


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

  Global step s trains on shard ``(s // steps_per_shard) % len(paths)``:
  shards are visited in order, ``steps_per_shard`` steps each, cycling for
  further epochs. Each visit is one `train.fit` call on that shard's data
  (so the batches of step s are those `fit` would draw from that shard at
  step s). p0 (and crp_alpha, if configured) is estimated when a shard is
  entered for the first time (first epoch, at its first step) and, as in
  `fit`, p0 is pooled over calls weighted by transition counts: after one
  epoch it is (K + changes) / (2 K + transitions) over all K shards' data,
  the whole set's estimate up to each shard's add-one smoothing. A
  configured crp_alpha estimator keeps the last shard's estimate. Since the schedule depends on the global
  step only, resuming from a checkpoint mid-shard continues exactly as an
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
    experiment.DataFormatError: a malformed or unlabelled shard.
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
    index = visit % len(paths)
    count = min(steps_per_shard - step % steps_per_shard, end - step)
    entering = step % steps_per_shard == 0
    estimate = (entering and visit < len(paths)) or math.isnan(
      float(state.transition_bias)
    )
    dataset = load_shard(paths[index], mmap=mmap)
    if dataset.labels is None:
      raise experiment.DataFormatError(
        f'{paths[index]}: training shards need labels'
      )
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
