"""Whole runs: data loading, train-and-checkpoint, decode-and-report.

These are the functions `train.py`, `infer.py` and the notebooks call; each
takes a config and paths, nothing global.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from uisrnn_jax import checkpoint, decode, evals, toy
from uisrnn_jax import train as train_lib

METRICS_FILE = 'metrics.jsonl'


class DataFormatError(ValueError):
  """An input file is not in the documented ``.npz`` format."""


@dataclasses.dataclass
class Dataset:
  """Sequences with optional labels and window times.

  Attributes:
    sequences: float[N_i, D] arrays, one per conversation.
    labels: matching string arrays, or None when unlabelled.
    starts, ends: matching float seconds per row, or None.
    ids: a name per conversation.
  """

  sequences: list[np.ndarray]
  labels: list[np.ndarray] | None = None
  starts: list[np.ndarray] | None = None
  ends: list[np.ndarray] | None = None
  ids: list[str] | None = None

  @property
  def offsets(self) -> np.ndarray:
    """int64[C + 1] row offsets of the concatenated conversations."""
    return np.concatenate([[0], np.cumsum([len(s) for s in self.sequences])])


def load_npz(path: str) -> Dataset:
  """Reads a dataset in the LibriSim ``.npz`` format (no pickles).

  Required keys: ``embeddings`` float[N, D] and ``offsets`` int[C + 1];
  optional: ``labels`` str[N], ``starts``/``ends`` float[N] (seconds) and
  ``conversation_ids`` str[C].

  Raises:
    DataFormatError: missing keys, object arrays or inconsistent shapes.
    FileNotFoundError: no such file.
  """
  try:
    z = np.load(path, allow_pickle=False)
  except ValueError as e:  # object arrays need pickle: refuse them
    raise DataFormatError(f'{path}: not a plain .npz file ({e})') from e
  except OSError as e:
    if not os.path.exists(path):
      raise FileNotFoundError(f'no such input file: {path}') from e
    raise DataFormatError(f'{path}: not an .npz file ({e})') from e
  with z:
    for key in ('embeddings', 'offsets'):
      if key not in z.files:
        raise DataFormatError(
          f'{path}: missing key {key!r} (has {sorted(z.files)}); expected '
          'embeddings float[N, D] and offsets int[C + 1]'
        )
    emb = z['embeddings']
    off = z['offsets'].astype(np.int64)
    if emb.ndim != 2 or off.ndim != 1 or len(off) < 2:
      raise DataFormatError(f'{path}: embeddings must be 2-D, offsets 1-D')
    if off[0] != 0 or off[-1] != len(emb) or np.any(np.diff(off) < 1):
      raise DataFormatError(
        f'{path}: offsets must rise from 0 to {len(emb)} with no empty '
        'conversation'
      )
    split = lambda a: [a[i:j] for i, j in zip(off[:-1], off[1:])]  # noqa: E731
    out = Dataset(sequences=split(emb.astype(np.float64)))
    for key in ('labels', 'starts', 'ends'):
      if key in z.files:
        if len(z[key]) != len(emb):
          raise DataFormatError(f'{path}: {key} must have one entry per row')
        setattr(out, key, split(z[key]))
    if 'conversation_ids' in z.files:
      out.ids = [str(x) for x in z['conversation_ids']]
  return out


def load_splits(config: ml_collections.ConfigDict) -> tuple[Dataset, Dataset]:
  """Train and test data: the configured files, else generated toy data."""
  d = config.model.observation_dim
  if config.data.train_path or config.data.test_path:
    train = load_npz(config.data.train_path) if config.data.train_path else None
    test = load_npz(config.data.test_path) if config.data.test_path else None
    return train, test
  tr_x, tr_y, te_x, te_y = toy.toy_train_test(config.toy, config.seed, d)
  return Dataset(tr_x, tr_y), Dataset(te_x, te_y)


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
  uninterrupted run would have (see `train.fit`).

  Returns:
    The final train state.
  """
  train_data, _ = load_splits(config)
  if train_data is None or train_data.labels is None:
    raise ValueError('training needs labelled data: set config.data.train_path')
  os.makedirs(workdir, exist_ok=True)
  state = train_lib.create_train_state(jax.random.key(config.seed), config)
  latest = checkpoint.latest_checkpoint(workdir)
  if latest is not None:
    state = checkpoint.restore_state(latest, state)
    logging.info('resuming from %s (step %d)', latest, int(state.step))
  start = int(state.step)
  remaining = config.train.train_iteration - start
  if remaining <= 0:
    logging.info('already trained for %d steps; nothing to do', start)
    return state
  every = max(int(config.train.checkpoint_every), 1)

  def on_step(s):
    step = int(s.step)  # cheap: the host already knows the count
    if step % every == 0 and step < config.train.train_iteration:
      checkpoint.save_checkpoint(workdir, s, config)

  writer = evals.JsonlWriter(os.path.join(workdir, METRICS_FILE))
  try:
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
    writer.close()
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
  """Labels every conversation of ``dataset`` with a trained state."""
  return decode.predict_labels(
    state.params,
    dataset.sequences,
    transition_bias=float(state.transition_bias),
    crp_alpha=float(state.crp_alpha),
    config=decode_config,
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

  Consecutive windows with one label form a turn; a boundary between windows
  lies halfway between their centres.
  """
  lines = []
  for c, labels in enumerate(predicted):
    name = dataset.ids[c] if dataset.ids else f'seq{c}'
    starts = np.asarray(dataset.starts[c], np.float64)
    ends = np.asarray(dataset.ends[c], np.float64)
    centres = (starts + ends) / 2
    cuts = np.concatenate(
      [[starts[0]], (centres[:-1] + centres[1:]) / 2, [ends[-1]]]
    )
    change = np.flatnonzero(np.diff(labels) != 0) + 1
    bounds = np.concatenate([[0], change, [len(labels)]])
    for a, b in zip(bounds[:-1], bounds[1:]):
      onset, offset = cuts[a], cuts[b]
      lines.append(
        f'SPEAKER {name} 1 {onset:.3f} {offset - onset:.3f} <NA> <NA> '
        f'spk{labels[a]} <NA> <NA>'
      )
  return '\n'.join(lines) + '\n'
