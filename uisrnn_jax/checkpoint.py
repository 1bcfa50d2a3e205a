"""Checkpoints: single msgpack files, written atomically, never unpickled.

A training run's ``workdir`` holds ``ckpt_<step>.msgpack`` files. Each is
written to a temporary file in the same directory, flushed to disk and then
renamed over its final name, so a crash mid-write leaves the previous
checkpoints intact and never a truncated file under a checkpoint name. The
newest ``keep`` files are kept.

The payload is ``flax.serialization`` msgpack (no pickle): the train state
(step, params, optimizer state, p0 and its denominator, crp_alpha) plus the
config as JSON, and a format tag checked on load.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import serialization

from uisrnn_jax import train as train_lib

FORMAT = 'uisrnn_jax.checkpoint'
VERSION = 1
_NAME = re.compile(r'^ckpt_(\d+)\.msgpack$')


class CheckpointError(ValueError):
  """A checkpoint is missing, truncated, corrupted or does not fit."""


def _state_dict(state: train_lib.TrainState) -> dict[str, Any]:
  return {
    'step': state.step,
    'params': state.params,
    'opt_state': state.opt_state,
    'transition_bias': state.transition_bias,
    'transition_bias_denominator': state.transition_bias_denominator,
    'crp_alpha': state.crp_alpha,
  }


def atomic_write(path: str, payload: bytes) -> None:
  """Writes ``payload`` to ``path`` via a synced temporary file and rename."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix='.tmp_', dir=directory)
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(payload)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def checkpoint_steps(workdir: str) -> list[int]:
  """Steps of the complete checkpoints in ``workdir``, ascending."""
  if not os.path.isdir(workdir):
    return []
  steps = [
    int(m.group(1)) for n in os.listdir(workdir) if (m := _NAME.match(n))
  ]
  return sorted(steps)


def checkpoint_path(workdir: str, step: int) -> str:
  """The file name of the checkpoint at ``step``."""
  return os.path.join(workdir, f'ckpt_{step}.msgpack')


def latest_checkpoint(workdir: str) -> str | None:
  """Path of the newest checkpoint in ``workdir``, or None."""
  steps = checkpoint_steps(workdir)
  return checkpoint_path(workdir, steps[-1]) if steps else None


def save_checkpoint(
  workdir: str,
  state: train_lib.TrainState,
  config: ml_collections.ConfigDict,
  *,
  keep: int = 3,
) -> str:
  """Saves ``state`` (and the config) as ``workdir/ckpt_<step>.msgpack``.

  Args:
    workdir: the run's directory (created if needed).
    state: the train state.
    config: the run's config, stored alongside as JSON.
    keep: how many newest checkpoints to keep (older ones are deleted only
      after the new one is complete).

  Returns:
    The path written.
  """
  state = jax.device_get(state)
  payload = serialization.msgpack_serialize(
    {
      'format': FORMAT,
      'version': VERSION,
      'config': config.to_json(),
      'state': serialization.to_state_dict(_state_dict(state)),
    }
  )
  step = int(state.step)
  path = checkpoint_path(workdir, step)
  atomic_write(path, payload)
  for old in checkpoint_steps(workdir)[:-keep]:
    os.remove(checkpoint_path(workdir, old))
  return path


def read_checkpoint(path: str) -> dict[str, Any]:
  """Reads and checks a checkpoint file into plain nested dicts.

  Raises:
    CheckpointError: missing, truncated, corrupted, or not a checkpoint.
  """
  if not os.path.isfile(path):
    raise CheckpointError(f'no checkpoint at {path}')
  with open(path, 'rb') as f:
    raw = f.read()
  try:
    restored = serialization.msgpack_restore(raw)
  except Exception as e:  # msgpack raises several types on bad bytes
    raise CheckpointError(
      f'{path} is truncated or corrupted and cannot be read: {e}'
    ) from e
  if not isinstance(restored, dict) or restored.get('format') != FORMAT:
    raise CheckpointError(f'{path} is not a uisrnn_jax checkpoint')
  if restored.get('version') != VERSION:
    raise CheckpointError(
      f'{path} has checkpoint version {restored.get("version")}, this '
      f'uisrnn_jax reads version {VERSION}'
    )
  return restored


def config_from_checkpoint(
  restored: dict[str, Any],
) -> ml_collections.ConfigDict:
  """The config stored in a checkpoint read by `read_checkpoint`."""
  return ml_collections.ConfigDict(json.loads(restored['config']))


def restore_state(
  path: str, target: train_lib.TrainState
) -> train_lib.TrainState:
  """Restores a checkpoint into the structure of ``target``.

  Args:
    path: checkpoint file.
    target: a state of the same model and optimizer (e.g. from
      `train.create_train_state` with the run's config).

  Returns:
    The restored state (its ``tx`` is the target's).

  Raises:
    CheckpointError: unreadable, or its arrays do not fit ``target``.
  """
  restored = read_checkpoint(path)
  target_dict = _state_dict(target)
  try:
    values = serialization.from_state_dict(target_dict, restored['state'])
  except (KeyError, ValueError, TypeError) as e:
    raise CheckpointError(f'{path} does not match the model: {e}') from e

  def check(t, v):
    if np.shape(t) != np.shape(v):
      raise CheckpointError(
        f'{path} does not match the model: an array of shape {np.shape(v)} '
        f'where {np.shape(t)} is expected'
      )
    return jax.numpy.asarray(v, dtype=jax.numpy.asarray(t).dtype)

  values = jax.tree.map(check, target_dict, values)
  return target.replace(**values)


def load_inference_state(
  workdir_or_path: str,
) -> tuple[train_lib.TrainState, ml_collections.ConfigDict]:
  """Loads the newest checkpoint of a run (or a given file) with its config.

  Args:
    workdir_or_path: a run directory or a checkpoint file.

  Returns:
    ``(state, config)`` with the config the run was trained with.

  Raises:
    CheckpointError: nothing to load, or the file is unreadable.
  """
  path = workdir_or_path
  if os.path.isdir(path):
    path = latest_checkpoint(path)
    if path is None:
      raise CheckpointError(
        f'no checkpoint in {workdir_or_path}: run train.py with '
        f'--workdir={workdir_or_path} first'
      )
  config = config_from_checkpoint(read_checkpoint(path))
  target = train_lib.create_train_state(jax.random.key(0), config)
  return restore_state(path, target), config
