"""The ``.npz`` input format and `Dataset`: reading, checking, writing.

One file holds whole conversations of d-vectors (the LibriSim format; no
pickles):

* ``embeddings`` float[N, D], finite; ``offsets`` int[C + 1], rising from 0
  to N with no empty conversation (conversation c is rows
  ``offsets[c]:offsets[c + 1]``);
* optional: ``labels`` str[N], ``starts``/``ends`` float[N] (window times in
  seconds), ``conversation_ids`` str[C], and exact reference turns
  ``turn_offsets`` int[C + 1], ``turn_starts``/``turn_ends`` float[T],
  ``turn_speakers`` [T] (all four or none).

`load_npz` reads and checks a file into a `Dataset`, either in memory or as
memory maps straight into the archive (``mmap=True``: training data larger
than memory, see `uisrnn_jax.shards`); `write_npz` writes one. Every reader
of these files goes through `load_npz`, so every file is checked alike.

This is the on-disk format; `uisrnn_jax.data` turns sequences in memory into
training batches.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from uisrnn_jax import checkpoint
from uisrnn_jax.errors import DataFormatError, InputFileNotFoundError

# Rows checked for NaN/Inf at a time, so checking a memory-mapped file
# needs little memory.
_FINITE_CHUNK_ROWS = 1 << 16
_ZIP_LOCAL_HEADER = b'PK\x03\x04'
_TURN_KEYS = ('turn_offsets', 'turn_starts', 'turn_ends', 'turn_speakers')


@dataclasses.dataclass
class Dataset:
  """Sequences with optional labels and window times.

  Attributes:
    sequences: float[N_i, D] arrays, one per conversation.
    labels: matching string arrays, or None when unlabelled.
    starts, ends: matching float seconds per row, or None.
    ids: a name per conversation.
    turns: exact reference turns per conversation, ``(starts float[T_c],
      ends float[T_c], speakers str[T_c])`` in seconds, or None (then DER
      uses turns made from ``labels``; see `evaluation`).
  """

  sequences: list[np.ndarray]
  labels: list[np.ndarray] | None = None
  starts: list[np.ndarray] | None = None
  ends: list[np.ndarray] | None = None
  ids: list[str] | None = None
  turns: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

  @property
  def offsets(self) -> np.ndarray:
    """int64[C + 1] row offsets of the concatenated conversations."""
    return np.concatenate([[0], np.cumsum([len(s) for s in self.sequences])])

  def subset(self, indices: Any) -> Dataset:
    """The conversations at ``indices`` (a slice or a list of ints)."""
    rows = range(len(self.sequences))
    if isinstance(indices, slice):
      picked = list(rows[indices])
    else:
      picked = [rows[i] for i in indices]  # IndexError when out of range
    take = lambda xs: None if xs is None else [xs[i] for i in picked]  # noqa: E731
    return Dataset(
      sequences=take(self.sequences),
      labels=take(self.labels),
      starts=take(self.starts),
      ends=take(self.ends),
      ids=take(self.ids),
      turns=take(self.turns),
    )


def load_npz(
  path: str,
  *,
  observation_dim: int | None = None,
  mmap: bool = False,
  dtype: Any = np.float64,
) -> Dataset:
  """Reads and checks a file in the ``.npz`` input format (no pickles).

  Arrays are read with ``allow_pickle=False``, so object arrays are refused.

  Args:
    path: the file.
    observation_dim: the D the embeddings must have, or None for any.
    mmap: memory-map the arrays stored uncompressed (``np.savez``, as
      `write_npz` with ``compress=False`` writes them): nothing is read
      until it is used, and pages are dropped again under memory pressure.
      ``np.load(mmap_mode=...)`` ignores ``mmap_mode`` for archives, so the
      members are located here; compressed members are read into memory.
    dtype: the embeddings' dtype in the `Dataset` (a copy), or None to keep
      the stored one (with ``mmap``, the sequences are then views of the
      memory maps).

  Returns:
    The `Dataset`, split into conversations.

  Raises:
    errors.InputFileNotFoundError: no such file (a FileNotFoundError).
    errors.DataFormatError: not an ``.npz`` archive, a missing key, an object
      or otherwise wrongly typed array, inconsistent shapes, NaN or Inf, or
      embeddings of another dimension than ``observation_dim``.
  """
  if not os.path.exists(path):
    raise InputFileNotFoundError(f'no such input file: {path}')
  try:
    z = np.load(path, allow_pickle=False)
  except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
    # A pickle, text or any non-NumPy file ends up here.
    raise DataFormatError(
      f'{path}: not an .npz archive of plain arrays ({e})'
    ) from e
  if not isinstance(z, np.lib.npyio.NpzFile):
    raise DataFormatError(
      f'{path}: a single .npy array, not an .npz archive with embeddings '
      'and offsets'
    )
  with z:
    read = _member_reader(path, z, mmap)
    try:
      return _read(read, set(z.files), path, observation_dim, dtype)
    except DataFormatError:
      raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as e:
      # Object arrays (they need pickle) and damaged archive members.
      raise DataFormatError(
        f'{path}: an array cannot be read without unpickling or is damaged '
        f'({type(e).__name__}: {e})'
      ) from e


def _member_reader(
  path: str, z: Any, mmap: bool
) -> Callable[[str], np.ndarray]:
  """``read(key)``: the array, memory-mapped where ``mmap`` allows."""

  def read(key: str) -> np.ndarray:
    if mmap:
      mapped = _member_memmap(path, z.zip.getinfo(f'{key}.npy'))
      if mapped is not None:
        return mapped
    return z[key]

  return read


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
    if len(header) != 30 or header[:4] != _ZIP_LOCAL_HEADER:
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


def _array(
  read: Callable[[str], np.ndarray], key: str, path: str, kinds: str, what: str
) -> np.ndarray:
  """``read(key)``, refused unless its dtype kind is in ``kinds``."""
  value = read(key)
  if value.dtype.kind not in kinds:
    raise DataFormatError(f'{path}: {key} must be {what}, got {value.dtype}')
  return value


def _first_non_finite_row(emb: np.ndarray) -> tuple[int, int] | None:
  """``(first row with NaN or Inf, number of such rows)``, or None."""
  first, count = None, 0
  for a in range(0, len(emb), _FINITE_CHUNK_ROWS):
    bad = ~np.isfinite(emb[a : a + _FINITE_CHUNK_ROWS]).all(axis=1)
    if bad.any():
      count += int(bad.sum())
      if first is None:
        first = a + int(np.flatnonzero(bad)[0])
  return None if first is None else (first, count)


def _read(
  read: Callable[[str], np.ndarray],
  files: set[str],
  path: str,
  observation_dim: int | None,
  dtype: Any,
) -> Dataset:
  for key in ('embeddings', 'offsets'):
    if key not in files:
      raise DataFormatError(
        f'{path}: missing key {key!r} (has {sorted(files)}); expected '
        'embeddings float[N, D] and offsets int[C + 1]'
      )
  emb = _array(read, 'embeddings', path, 'f', 'a float array [N, D]')
  off = _array(read, 'offsets', path, 'iu', 'an int array [C + 1]')
  if emb.ndim != 2 or off.ndim != 1 or len(off) < 2:
    raise DataFormatError(
      f'{path}: embeddings must be 2-D [N, D] and offsets 1-D [C + 1] with '
      f'C >= 1, got shapes {emb.shape} and {off.shape}'
    )
  off = np.asarray(off).astype(np.int64)
  if off[0] != 0 or off[-1] != len(emb) or np.any(np.diff(off) < 1):
    raise DataFormatError(
      f'{path}: offsets must rise from 0 to {len(emb)} with no empty '
      'conversation'
    )
  if observation_dim is not None and emb.shape[1] != observation_dim:
    raise DataFormatError(
      f'{path}: embeddings have dimension {emb.shape[1]}, the model expects '
      f'observation_dim={observation_dim}'
    )
  non_finite = _first_non_finite_row(emb)
  if non_finite is not None:
    row, count = non_finite
    conversation = int(np.searchsorted(off, row, side='right')) - 1
    raise DataFormatError(
      f'{path}: embeddings have NaN or Inf in {count} rows, first at row '
      f'{row} (conversation {conversation})'
    )
  split = lambda a: [a[i:j] for i, j in zip(off[:-1], off[1:])]  # noqa: E731
  out = Dataset(sequences=split(emb if dtype is None else emb.astype(dtype)))
  kinds = {'labels': ('U', 'strings'), 'starts': ('iuf', 'numbers')}
  kinds['ends'] = kinds['starts']
  for key, (kind, what) in kinds.items():
    if key in files:
      value = _array(read, key, path, kind, f'{what} [N]')
      if value.shape != (len(emb),):
        raise DataFormatError(
          f'{path}: {key} must have one entry per row, shape ({len(emb)},), '
          f'got {value.shape}'
        )
      if kind != 'U' and not np.all(np.isfinite(value)):
        raise DataFormatError(f'{path}: {key} has NaN or Inf')
      setattr(out, key, split(value))
  if 'conversation_ids' in files:
    ids = _array(read, 'conversation_ids', path, 'U', 'strings [C]')
    if ids.shape != (len(off) - 1,):
      raise DataFormatError(
        f'{path}: conversation_ids must have one entry per conversation, '
        f'shape ({len(off) - 1},), got {ids.shape}'
      )
    out.ids = [str(x) for x in ids]
  out.turns = _read_turns(read, files, path, len(off) - 1)
  return out


def _read_turns(
  read: Callable[[str], np.ndarray],
  files: set[str],
  path: str,
  num_conversations: int,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
  """Reference turns from ``turn_offsets/turn_starts/turn_ends/
  turn_speakers`` (all four, or none), split per conversation."""
  present = [k for k in _TURN_KEYS if k in files]
  if not present:
    return None
  if len(present) != len(_TURN_KEYS):
    missing = sorted(set(_TURN_KEYS) - set(present))
    raise DataFormatError(f'{path}: has {present} but not {missing}')
  toff = _array(read, 'turn_offsets', path, 'iu', 'an int array [C + 1]')
  toff = toff.astype(np.int64)
  times = [
    _array(read, key, path, 'iuf', 'numbers [T]').astype(np.float64)
    for key in ('turn_starts', 'turn_ends')
  ]
  t_starts, t_ends = times
  speakers = read('turn_speakers')
  num_turns = len(t_starts)
  if (
    toff.ndim != 1
    or len(toff) != num_conversations + 1
    or toff[0] != 0
    or toff[-1] != num_turns
    or np.any(np.diff(toff) < 0)
    or len(t_ends) != num_turns
    or len(speakers) != num_turns
  ):
    raise DataFormatError(
      f'{path}: turn_offsets must rise from 0 to {num_turns} over '
      f'{num_conversations} conversations, with one turn_starts/turn_ends/'
      'turn_speakers entry per turn'
    )
  if np.any(t_ends < t_starts) or not np.all(np.isfinite(t_starts + t_ends)):
    raise DataFormatError(f'{path}: turns must be finite with ends >= starts')
  return [
    (t_starts[a:b], t_ends[a:b], speakers[a:b])
    for a, b in zip(toff[:-1], toff[1:])
  ]


def npz_arrays(dataset: Dataset, *, dtype: Any = None) -> dict[str, Any]:
  """The arrays of ``dataset`` under the format's keys (see the module).

  Args:
    dataset: what to store; its optional fields are stored when present.
    dtype: the stored embedding dtype (None: the sequences' own).

  Returns:
    ``{key: array}``, ready for ``np.savez``.
  """
  emb = np.concatenate(dataset.sequences)
  arrays: dict[str, Any] = {
    'embeddings': emb if dtype is None else emb.astype(dtype),
    'offsets': dataset.offsets,
  }
  for key in ('labels', 'starts', 'ends'):
    value = getattr(dataset, key)
    if value is not None:
      arrays[key] = np.concatenate([np.asarray(v) for v in value])
  if dataset.ids is not None:
    arrays['conversation_ids'] = np.asarray([str(i) for i in dataset.ids])
  if dataset.turns is not None:
    t_starts, t_ends, speakers = zip(*dataset.turns)
    arrays['turn_offsets'] = np.concatenate(
      [[0], np.cumsum([len(s) for s in t_starts])]
    )
    arrays['turn_starts'] = np.concatenate(t_starts).astype(np.float64)
    arrays['turn_ends'] = np.concatenate(t_ends).astype(np.float64)
    arrays['turn_speakers'] = np.concatenate([np.asarray(s) for s in speakers])
  return arrays


def write_npz(
  path: str,
  dataset: Dataset,
  *,
  dtype: Any = None,
  compress: bool = True,
  prefix: str = '.tmp_',
) -> None:
  """Writes ``dataset`` in the ``.npz`` input format, atomically.

  Args:
    path: the file (`checkpoint.atomic_write`: complete or absent).
    dataset: what to store (see `npz_arrays`).
    dtype: the stored embedding dtype (None: the sequences' own).
    compress: ``np.savez_compressed``; False writes ``np.savez``, whose
      members `load_npz` can memory-map.
    prefix: name prefix of the temporary file.

  Raises:
    ValueError: ``dataset`` has no conversation.
  """
  if not dataset.sequences:
    raise ValueError('the dataset has no conversations')
  write_arrays(
    path, npz_arrays(dataset, dtype=dtype), compress=compress, prefix=prefix
  )


def write_arrays(
  path: str,
  arrays: dict[str, np.ndarray],
  *,
  compress: bool = True,
  prefix: str = '.tmp_',
) -> None:
  """Writes ``{key: array}`` as one ``.npz`` file, atomically.

  The file is complete or absent (`checkpoint.atomic_write`); nothing here
  checks that the arrays form a dataset (`load_npz` does).

  Raises:
    errors.OutputWriteError: the file cannot be written.
  """
  buf = io.BytesIO()
  save = np.savez_compressed if compress else np.savez
  save(buf, **arrays)
  checkpoint.atomic_write(path, buf.getvalue(), prefix=prefix)


def input_files(spec: str) -> list[str]:
  """The ``.npz`` files an ``--input`` names.

  Args:
    spec: a file, a directory (its ``*.npz`` files, sorted by name, not
      recursive) or a comma-separated list of files.

  Returns:
    The paths, in order.

  Raises:
    errors.InputFileNotFoundError: a listed file or the directory does not
      exist, or the directory holds no ``.npz`` file.
  """
  if os.path.isdir(spec):
    paths = sorted(
      os.path.join(spec, f)
      for f in os.listdir(spec)
      if f.endswith('.npz') and os.path.isfile(os.path.join(spec, f))
    )
    if not paths:
      raise InputFileNotFoundError(f'no .npz files in directory {spec}')
    return paths
  paths = [p.strip() for p in spec.split(',') if p.strip()]
  if not paths:
    raise InputFileNotFoundError(f'no input files in {spec!r}')
  for path in paths:
    if not os.path.isfile(path):
      raise InputFileNotFoundError(f'no such input file: {path}')
  return paths


def count_conversations(path: str) -> int | None:
  """Number of conversations in an ``.npz`` file, reading only ``offsets``;
  None when that cannot be read (`load_npz` then reports the problem)."""
  try:
    with np.load(path, allow_pickle=False) as z:
      return int(len(z['offsets']) - 1)
  except Exception:  # noqa: BLE001 - any failure is reported by load_npz
    return None
