"""Whole runs: data loading, train-and-checkpoint, decode-and-report.

These are the functions `train.py`, `infer.py` and the notebooks call; each
takes a config and paths, nothing global.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from uisrnn_jax import checkpoint, config_check, decode, evals, parallel, toy
from uisrnn_jax import data as data_lib
from uisrnn_jax import train as train_lib
from uisrnn_jax.errors import (
  ConfigError,
  DataFormatError,
  InputFileNotFoundError,
)

METRICS_FILE = 'metrics.jsonl'


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


def load_npz(path: str, *, observation_dim: int | None = None) -> Dataset:
  """Reads a dataset in the LibriSim ``.npz`` format (no pickles).

  Required keys: ``embeddings`` float[N, D] (finite) and ``offsets``
  int[C + 1] rising from 0 to N with no empty conversation; optional:
  ``labels`` str[N], ``starts``/``ends`` float[N] (seconds) and
  ``conversation_ids`` str[C]. Arrays are read with ``allow_pickle=False``,
  so object arrays are refused.

  Args:
    path: the file.
    observation_dim: the D the embeddings must have, or None for any.

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
    try:
      return _read_npz(z, path, observation_dim)
    except DataFormatError:
      raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as e:
      # Object arrays (they need pickle) and damaged archive members.
      raise DataFormatError(
        f'{path}: an array cannot be read without unpickling or is damaged '
        f'({type(e).__name__}: {e})'
      ) from e


def _array(z: Any, key: str, path: str, kinds: str, what: str) -> np.ndarray:
  """``z[key]`` as a 1-D or 2-D array whose dtype kind is in ``kinds``."""
  value = z[key]
  if value.dtype.kind not in kinds:
    raise DataFormatError(f'{path}: {key} must be {what}, got {value.dtype}')
  return value


def _read_npz(z: Any, path: str, observation_dim: int | None) -> Dataset:
  for key in ('embeddings', 'offsets'):
    if key not in z.files:
      raise DataFormatError(
        f'{path}: missing key {key!r} (has {sorted(z.files)}); expected '
        'embeddings float[N, D] and offsets int[C + 1]'
      )
  emb = _array(z, 'embeddings', path, 'f', 'a float array [N, D]')
  off = _array(z, 'offsets', path, 'iu', 'an int array [C + 1]')
  if emb.ndim != 2 or off.ndim != 1 or len(off) < 2:
    raise DataFormatError(
      f'{path}: embeddings must be 2-D [N, D] and offsets 1-D [C + 1] with '
      f'C >= 1, got shapes {emb.shape} and {off.shape}'
    )
  off = off.astype(np.int64)
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
  finite = np.isfinite(emb).all(axis=1)
  if not finite.all():
    row = int(np.flatnonzero(~finite)[0])
    conversation = int(np.searchsorted(off, row, side='right')) - 1
    raise DataFormatError(
      f'{path}: embeddings have NaN or Inf in {int(np.sum(~finite))} rows, '
      f'first at row {row} (conversation {conversation})'
    )
  split = lambda a: [a[i:j] for i, j in zip(off[:-1], off[1:])]  # noqa: E731
  out = Dataset(sequences=split(emb.astype(np.float64)))
  kinds = {'labels': ('U', 'strings'), 'starts': ('iuf', 'numbers')}
  kinds['ends'] = kinds['starts']
  for key, (kind, what) in kinds.items():
    if key in z.files:
      value = _array(z, key, path, kind, f'{what} [N]')
      if value.shape != (len(emb),):
        raise DataFormatError(
          f'{path}: {key} must have one entry per row, shape ({len(emb)},), '
          f'got {value.shape}'
        )
      if kind != 'U' and not np.all(np.isfinite(value)):
        raise DataFormatError(f'{path}: {key} has NaN or Inf')
      setattr(out, key, split(value))
  if 'conversation_ids' in z.files:
    ids = _array(z, 'conversation_ids', path, 'U', 'strings [C]')
    if ids.shape != (len(off) - 1,):
      raise DataFormatError(
        f'{path}: conversation_ids must have one entry per conversation, '
        f'shape ({len(off) - 1},), got {ids.shape}'
      )
    out.ids = [str(x) for x in ids]
  out.turns = _read_turns(z, path, len(off) - 1)
  return out


_TURN_KEYS = ('turn_offsets', 'turn_starts', 'turn_ends', 'turn_speakers')


def _read_turns(
  z: Any, path: str, num_conversations: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
  """Reference turns from ``turn_offsets/turn_starts/turn_ends/
  turn_speakers`` (all four, or none), split per conversation."""
  present = [k for k in _TURN_KEYS if k in z.files]
  if not present:
    return None
  if len(present) != len(_TURN_KEYS):
    missing = sorted(set(_TURN_KEYS) - set(present))
    raise DataFormatError(f'{path}: has {present} but not {missing}')
  toff = z['turn_offsets'].astype(np.int64)
  t_starts = z['turn_starts'].astype(np.float64)
  t_ends = z['turn_ends'].astype(np.float64)
  speakers = z['turn_speakers']
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


def load_splits(
  config: ml_collections.ConfigDict,
) -> tuple[Dataset | None, Dataset | None]:
  """Train and test data: the configured files, else generated toy data.

  Returns:
    ``(train, test)``; with files, a split whose path is empty is None.

  Raises:
    errors.ConfigError: no data files and no ``toy`` config group.
    errors.DataFormatError, errors.InputFileNotFoundError: see `load_npz`
      (embeddings must have ``config.model.observation_dim`` columns).
  """
  d = config.model.observation_dim
  if config.data.train_path or config.data.test_path:
    train = (
      load_npz(config.data.train_path, observation_dim=d)
      if config.data.train_path
      else None
    )
    test = (
      load_npz(config.data.test_path, observation_dim=d)
      if config.data.test_path
      else None
    )
    return train, test
  if 'toy' not in config:
    raise ConfigError(
      'config.data.train_path and test_path are empty and the config has no '
      "'toy' group to generate data from"
    )
  tr_x, tr_y, te_x, te_y = toy.toy_train_test(config.toy, config.seed, d)
  return Dataset(tr_x, tr_y), Dataset(te_x, te_y)


def _check_training_data(
  config: ml_collections.ConfigDict, train_data: Dataset | None
) -> None:
  """Raises unless ``train_data`` is labelled, valid training data."""
  if train_data is None:
    raise ConfigError(
      'training needs labelled data: config.data.train_path is empty while '
      'data.test_path is set'
    )
  where = config.data.train_path or 'the toy data'
  if train_data.labels is None:
    raise DataFormatError(
      f'{where}: has no labels; training needs labels str[N]'
    )
  for i, (seq, ids) in enumerate(
    zip(train_data.sequences, train_data.labels, strict=True)
  ):
    name = f'{where}: conversation {i}'
    data_lib.check_sequence(
      seq, observation_dim=config.model.observation_dim, name=name
    )
    data_lib.check_labels(ids, len(seq), name=f'{name} labels')


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  progress: bool | None = None,
) -> train_lib.TrainState:
  """Trains to ``config.train.train_iteration`` steps, resuming if possible.

  Checkpoints go to ``workdir`` every ``config.train.checkpoint_every`` steps
  and at the end; metrics to ``workdir/metrics.jsonl``. Rerunning with the
  same workdir resumes from the newest checkpoint and trains exactly as an
  uninterrupted run would have (see `train.fit`); temporary files a crash
  left there are removed.

  The config, the data and the checkpoint to resume from are all checked
  before anything is written.

  Returns:
    The final train state.

  Raises:
    errors.ConfigError: an invalid config (`config_check.validate_config`).
    errors.DataFormatError, errors.InputFileNotFoundError: a data file is
      missing or not in the documented format (see `load_npz`).
    errors.InvalidSequenceError, errors.InvalidLabelsError: invalid data.
    errors.CheckpointError: the newest checkpoint in ``workdir`` is
      unreadable or does not fit the config's model.
  """
  config_check.validate_config(config)
  shard_spec = config.data.get('train_shards', '')
  if shard_spec:
    from uisrnn_jax import shards  # imports this module

    shard_paths = shards.expand_shard_paths(shard_spec)
    train_data = None
  else:
    train_data, _ = load_splits(config)
    _check_training_data(config, train_data)
  state = train_lib.create_train_state(jax.random.key(config.seed), config)
  latest = checkpoint.latest_checkpoint(workdir)
  if latest is not None:
    state = checkpoint.restore_state(latest, state)
    logging.info('resuming from %s (step %d)', latest, int(state.step))
  os.makedirs(workdir, exist_ok=True)
  for path in checkpoint.remove_stale_temporaries(workdir):
    logging.warning('removed %s, left by an interrupted checkpoint write', path)
  start = int(state.step)
  remaining = config.train.train_iteration - start
  if remaining <= 0:
    logging.info('already trained for %d steps; nothing to do', start)
    return state
  every = max(int(config.train.checkpoint_every), 1)

  # With several processes (jax.distributed), all of them train and only
  # process 0 writes checkpoints and metrics.
  writes = jax.process_index() == 0

  def on_step(s):
    step = int(s.step)  # cheap: the host already knows the count
    if step % every == 0 and step < config.train.train_iteration:
      if writes:
        checkpoint.save_checkpoint(workdir, s, config)
      else:
        parallel.to_host(s)  # the gather every process must join

  writer = (
    evals.JsonlWriter(os.path.join(workdir, METRICS_FILE)) if writes else None
  )
  try:
    if train_data is None:  # shards: one at a time, estimates per shard
      state = shards.fit_sharded(
        state,
        shard_paths,
        config,
        steps_per_shard=config.train.steps_per_shard,
        num_steps=remaining,
        writer=writer,
        progress=progress,
        on_step=on_step,
      )
    else:
      state = train_lib.fit(
        state,
        train_data.sequences,
        train_data.labels,
        config,
        num_steps=remaining,
        writer=writer,
        progress=progress,
        on_step=on_step,
        update_estimates=start == 0,
      )
  finally:
    if writer is not None:
      writer.close()
  if writes:
    path = checkpoint.save_checkpoint(workdir, state, config)
    logging.info('saved %s', path)
  return state


def decode_dataset(
  state: train_lib.TrainState,
  dataset: Dataset,
  decode_config: Any,
  *,
  progress: bool | None = None,
) -> list[np.ndarray]:
  """Labels every conversation of ``dataset`` with a trained state.

  With several visible devices, every batch of utterances is split over
  them (`decode.predict_labels` with a mesh; same labels as one device).
  """
  return decode.predict_labels(
    state.params,
    dataset.sequences,
    transition_bias=float(state.transition_bias),
    crp_alpha=float(state.crp_alpha),
    config=decode_config,
    mesh=parallel.mesh_from_config(0),
    progress=progress,
  )


def accuracy_report(
  dataset: Dataset, predicted: list[np.ndarray]
) -> dict[str, Any]:
  """Per-conversation and mean frame accuracy (Hungarian matching)."""
  scores = [
    evals.frame_accuracy(ref, hyp)
    for ref, hyp in zip(dataset.labels, predicted, strict=True)
  ]
  return {'accuracy': float(np.mean(scores)), 'per_sequence': scores}


def write_predictions(
  path: str, dataset: Dataset, predicted: list[np.ndarray]
) -> None:
  """Writes labels as ``.npz`` (``predicted`` aligned to rows, ``offsets``)
  or ``.json``; with window times, also an RTTM next to it."""
  flat = np.concatenate(predicted).astype(np.int32)
  payload: bytes
  if path.endswith('.json'):
    record = {
      'offsets': dataset.offsets.tolist(),
      'predicted': [p.tolist() for p in predicted],
    }
    payload = json.dumps(record).encode()
  else:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, predicted=flat, offsets=dataset.offsets)
    payload = buf.getvalue()
  checkpoint.atomic_write(path, payload)
  if dataset.starts is not None and dataset.ends is not None:
    rttm = os.path.splitext(path)[0] + '.rttm'
    checkpoint.atomic_write(rttm, rttm_text(dataset, predicted).encode())


def rttm_text(dataset: Dataset, predicted: list[np.ndarray]) -> str:
  """RTTM speaker turns from per-window labels.

  Windows become turns by `evaluation.frames_to_segments` (consecutive
  windows with one label form a turn; a boundary between windows lies
  halfway between their centres), the same rule DER is computed with. The
  file id is the conversation id (whitespace replaced by ``_``) or
  ``seq<c>``; speakers are ``spk<label>``.
  """
  from uisrnn_jax import evaluation

  lines = []
  for c, labels in enumerate(predicted):
    name = dataset.ids[c] if dataset.ids else f'seq{c}'
    name = '_'.join(str(name).split()) or f'seq{c}'
    segments = evaluation.frames_to_segments(
      dataset.starts[c], dataset.ends[c], np.asarray(labels)
    )
    for onset, offset, label in zip(*segments):
      lines.append(
        f'SPEAKER {name} 1 {onset:.3f} {offset - onset:.3f} <NA> <NA> '
        f'spk{label} <NA> <NA>'
      )
  return '\n'.join(lines) + '\n'


def parse_rttm(text: str) -> dict[str, tuple[np.ndarray, np.ndarray, list]]:
  """Reads RTTM ``SPEAKER`` lines into turns per file id.

  Args:
    text: RTTM contents (other record types and blank lines are skipped).

  Returns:
    ``{file_id: (onsets float64[T], offsets float64[T], speakers list[T])}``
    in file order.

  Raises:
    ValueError: a ``SPEAKER`` line with fewer than 8 fields or a
      non-numeric or negative time.
  """
  out: dict[str, list[list[Any]]] = {}
  for number, line in enumerate(text.splitlines(), 1):
    fields = line.split()
    if not fields or fields[0] != 'SPEAKER':
      continue
    if len(fields) < 8:
      raise ValueError(f'RTTM line {number}: expected >= 8 fields: {line!r}')
    try:
      onset, duration = float(fields[3]), float(fields[4])
    except ValueError as e:
      raise ValueError(f'RTTM line {number}: bad time in {line!r}') from e
    if not (onset >= 0 and duration >= 0):
      raise ValueError(f'RTTM line {number}: negative time in {line!r}')
    turns = out.setdefault(fields[1], [[], [], []])
    turns[0].append(onset)
    turns[1].append(onset + duration)
    turns[2].append(fields[7])
  return {
    name: (np.array(a, np.float64), np.array(b, np.float64), spk)
    for name, (a, b, spk) in out.items()
  }


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


def iter_decoded(
  state: train_lib.TrainState,
  paths: list[str],
  decode_config: Any,
  *,
  observation_dim: int | None = None,
  progress: bool | None = None,
  validate_first: bool = True,
):
  """Decodes files one at a time: yields ``(path, dataset, predicted)``.

  Only one file's data is held at a time (memory is bounded by the largest
  file, as long as the caller drops each dataset before the next). A tqdm
  bar (stderr) counts conversations over all files.

  Args:
    state: a trained state (e.g. from `checkpoint.load_inference_state`).
    paths: ``.npz`` files in the documented format.
    decode_config: the ``decode`` config group.
    observation_dim: checked against every file (None: the model's).
    progress: show the bar; None shows it when there is more than one file.
    validate_first: load (and drop) every file before decoding the first,
      so a bad file raises before anything is yielded or written; this
      reads every file twice.

  Yields:
    ``(path, Dataset, list of int32[N_c] labels)`` per file, in order.

  Raises:
    errors.DataFormatError and the decoding errors of `decode_dataset`, for
    the file where the problem is found.
  """
  from tqdm.auto import tqdm

  if observation_dim is None:
    observation_dim = int(state.params['sigma2'].shape[-1])
  if progress is None:
    progress = len(paths) > 1
  if validate_first:
    counts = [
      len(load_npz(p, observation_dim=observation_dim).sequences) for p in paths
    ]
  else:
    counts = [count_conversations(p) for p in paths] if progress else []
  total = sum(counts) if counts and None not in counts else None
  bar = tqdm(
    total=total, disable=not progress, unit='utt', desc='decoding files'
  )
  try:
    for i, path in enumerate(paths):
      bar.set_postfix_str(f'file {i + 1}/{len(paths)} {os.path.basename(path)}')
      dataset = load_npz(path, observation_dim=observation_dim)
      predicted = decode_dataset(
        state, dataset, decode_config, progress=False if progress else None
      )
      bar.update(len(predicted))
      yield path, dataset, predicted
  finally:
    bar.close()
