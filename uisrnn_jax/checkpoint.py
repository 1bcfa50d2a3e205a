"""Checkpoints: single msgpack files, written atomically, never unpickled.

A training run's ``workdir`` holds ``ckpt_<step>.msgpack`` files. Each is
written to a temporary file in the same directory (``.tmp_ckpt_*``), synced to
disk, renamed over its final name, and the directory is synced, so a crash
(even SIGKILL or power loss) mid-write leaves the previous checkpoints intact
and never a truncated file under a checkpoint name. Only then are checkpoints
beyond the newest ``keep`` deleted. A temporary file left by a crash is
removed by `remove_stale_temporaries` (called when a run resumes).

The file is ``flax.serialization`` msgpack (no pickle): a format tag and
version, and a body (msgpack again) holding the train state (step, params,
optimizer state, p0 and its denominator, crp_alpha) and the config as JSON,
with the body's SHA-256, so a corrupted file is detected on load rather than
restored with wrong numbers. Version 1 files (no checksum) still load.

A *model file* (`write_model` / `read_model`, what ``UISRNN.save`` and
``python -m uisrnn_jax.convert`` write) holds a trained model alone: the
parameters, p0 and its denominator, crp_alpha, the step count and the
model's shape, as msgpack with its own format tag. `read_model` also reads
a run checkpoint; uisrnn 0.1.2's torch files are read by
`uisrnn_jax.convert`, which writes them out as model files.

Every file the package writes goes through `atomic_write`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import tempfile
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import serialization

from uisrnn_jax import config_check, parallel
from uisrnn_jax import model as model_lib
from uisrnn_jax import train as train_lib
from uisrnn_jax.errors import CheckpointError, ConfigError, OutputWriteError

FORMAT = 'uisrnn_jax.checkpoint'
VERSION = 2  # 1: no body checksum (still readable)
_NAME = re.compile(r'^ckpt_(\d+)\.msgpack$')
TMP_PREFIX = '.tmp_ckpt_'
MODEL_FORMAT = 'uisrnn_jax.model'
MODEL_VERSION = 1


def _state_dict(state: train_lib.TrainState) -> dict[str, Any]:
  return {
    'step': state.step,
    'params': state.params,
    'opt_state': state.opt_state,
    'transition_bias': state.transition_bias,
    'transition_bias_denominator': state.transition_bias_denominator,
    'crp_alpha': state.crp_alpha,
  }


def _fsync_directory(directory: str) -> None:
  """Makes a rename in ``directory`` durable (no-op where unsupported)."""
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:  # e.g. Windows cannot open directories
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def make_directory(path: str) -> None:
  """``os.makedirs(path, exist_ok=True)``, failing with `OutputWriteError`."""
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise OutputWriteError(path, e, 'create directory') from e


def remove(path: str) -> None:
  """``os.remove(path)``, failing with `OutputWriteError`."""
  try:
    os.remove(path)
  except OSError as e:
    raise OutputWriteError(path, e, 'remove') from e


def atomic_write(path: str, payload: bytes, *, prefix: str = '.tmp_') -> None:
  """Writes ``payload`` to ``path`` so that it is either complete or absent.

  The bytes go to a temporary file in the same directory, which is flushed
  and fsynced, then renamed over ``path`` (atomic on POSIX), and the
  directory is fsynced so the rename survives a power loss. Until the rename,
  an existing file at ``path`` is untouched; a crash leaves at most a
  temporary file named ``prefix*``, a failed write (e.g. a full disk) none.
  The file gets the permissions a new file gets (``0o666`` less the umask).

  Args:
    path: the destination.
    payload: the file's complete contents.
    prefix: name prefix of the temporary file.

  Raises:
    errors.OutputWriteError: the file cannot be written (the message names
      ``path`` and the cause, e.g. "No space left on device").
  """
  directory = os.path.dirname(os.path.abspath(path))
  make_directory(directory)
  try:
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
  except OSError as e:
    raise OutputWriteError(path, e) from e
  try:
    os.fchmod(fd, 0o666 & ~_umask())
    with os.fdopen(fd, 'wb') as f:
      f.write(payload)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    if os.path.exists(tmp):
      os.remove(tmp)
    if isinstance(e, OSError):
      raise OutputWriteError(path, e) from e
    raise
  _fsync_directory(directory)


def _umask() -> int:
  """The process's umask.

  Read from ``/proc/self/status`` where Linux has it; elsewhere by setting
  and restoring it (which, for a moment, applies to other threads too).
  """
  try:
    with open('/proc/self/status', encoding='ascii') as f:
      for line in f:
        if line.startswith('Umask:'):
          return int(line.split()[1], 8)
  except (OSError, ValueError):
    pass
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def remove_stale_temporaries(workdir: str) -> list[str]:
  """Deletes checkpoint temporaries a crashed run left in ``workdir``.

  Call only when no other process writes checkpoints to ``workdir``.

  Returns:
    The removed paths.
  """
  if not os.path.isdir(workdir):
    return []
  removed = []
  for name in os.listdir(workdir):
    if name.startswith(TMP_PREFIX):
      path = os.path.join(workdir, name)
      remove(path)
      removed.append(path)
  return removed


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

  Raises:
    errors.OutputWriteError: the checkpoint cannot be written; the older
      checkpoints are then untouched.
  """
  state = parallel.to_host(state)  # also multi-process replicated arrays
  body = serialization.msgpack_serialize(
    {
      'config': config.to_json(),
      'state': serialization.to_state_dict(_state_dict(state)),
    }
  )
  payload = serialization.msgpack_serialize(
    {
      'format': FORMAT,
      'version': VERSION,
      'sha256': hashlib.sha256(body).hexdigest(),
      'body': body,
    }
  )
  step = int(state.step)
  path = checkpoint_path(workdir, step)
  atomic_write(path, payload, prefix=TMP_PREFIX)
  for old in checkpoint_steps(workdir)[:-keep]:
    remove(checkpoint_path(workdir, old))
  return path


def _unpack(raw: bytes, path: str) -> Any:
  try:
    return serialization.msgpack_restore(raw)
  except Exception as e:  # msgpack raises several types on bad bytes
    raise CheckpointError(
      f'{path} is truncated or corrupted and cannot be read: '
      f'{type(e).__name__}: {e}'
    ) from e


def read_checkpoint(path: str) -> dict[str, Any]:
  """Reads and checks a checkpoint file into plain nested dicts.

  Returns:
    ``{'format', 'version', 'config': JSON str, 'state': nested dicts}``.

  Raises:
    CheckpointError: missing, truncated, corrupted (checksum mismatch), or
      not a checkpoint.
  """
  if not os.path.isfile(path):
    raise CheckpointError(f'no checkpoint at {path}')
  with open(path, 'rb') as f:
    raw = f.read()
  if not raw:
    raise CheckpointError(f'{path} is empty (truncated)')
  restored = _unpack(raw, path)
  if not isinstance(restored, dict) or restored.get('format') != FORMAT:
    raise CheckpointError(f'{path} is not a uisrnn_jax checkpoint')
  version = restored.get('version')
  if version == 1:
    out = restored
  elif version == VERSION:
    body = restored.get('body')
    if not isinstance(body, bytes):
      raise CheckpointError(f'{path} is corrupted: it has no body')
    if hashlib.sha256(body).hexdigest() != restored.get('sha256'):
      raise CheckpointError(
        f'{path} is corrupted: its checksum (sha256) does not match'
      )
    out = {'format': FORMAT, 'version': version, **_unpack(body, path)}
  else:
    raise CheckpointError(
      f'{path} has checkpoint version {version}, this uisrnn_jax reads '
      f'versions 1 to {VERSION}'
    )
  if not isinstance(out.get('config'), str) or not isinstance(
    out.get('state'), dict
  ):
    raise CheckpointError(f'{path} is corrupted: no config or state')
  return out


def config_from_checkpoint(
  restored: dict[str, Any], path: str = 'checkpoint'
) -> ml_collections.ConfigDict:
  """The config stored in a checkpoint read by `read_checkpoint`.

  Raises:
    CheckpointError: the stored config is not valid JSON or fails
      `config_check.validate_config` (unknown keys, wrong types).
  """
  try:
    config = ml_collections.ConfigDict(json.loads(restored['config']))
  except (ValueError, TypeError) as e:
    raise CheckpointError(f'{path} holds an unreadable config: {e}') from e
  try:
    config_check.validate_config(config, name=f'config in {path}')
  except ConfigError as e:
    raise CheckpointError(f'{path} holds an invalid config: {e}') from e
  return config


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
  config = config_from_checkpoint(read_checkpoint(path), path)
  target = train_lib.create_train_state(jax.random.key(0), config)
  return restore_state(path, target), config


@dataclasses.dataclass(frozen=True)
class TrainedModel:
  """What a model file holds: a trained model without its optimizer.

  Attributes:
    params: the parameter pytree (see `uisrnn_jax.model`).
    transition_bias: p0, or None if it was never estimated or given.
    transition_bias_denominator: pooling weight of p0 (transitions counted).
    crp_alpha: CRP concentration.
    step: training steps taken (0 for a converted uisrnn 0.1.2 model).
  """

  params: model_lib.Params
  transition_bias: float | None
  transition_bias_denominator: float
  crp_alpha: float
  step: int = 0

  @classmethod
  def from_state(cls, state: train_lib.TrainState) -> TrainedModel:
    """The model of a train state (a NaN p0 becomes None)."""
    state = jax.device_get(state)
    p0 = float(state.transition_bias)
    return cls(
      params=state.params,
      transition_bias=None if math.isnan(p0) else p0,
      transition_bias_denominator=float(state.transition_bias_denominator),
      crp_alpha=float(state.crp_alpha),
      step=int(state.step),
    )

  @property
  def observation_dim(self) -> int:
    """D."""
    return int(self.params['sigma2'].shape[-1])

  @property
  def rnn_hidden_size(self) -> int:
    """H."""
    return int(self.params['init_hidden'].shape[-1])

  @property
  def rnn_depth(self) -> int:
    """L."""
    return len(self.params['rnn'])


def write_model(path: str | os.PathLike[str], model: TrainedModel) -> None:
  """Writes ``model`` as a model file (msgpack, no pickle), atomically.

  Args:
    path: where to write; parent directories are created.
    model: the model (parameters are stored as float32).

  Raises:
    errors.OutputWriteError: the file cannot be written.
  """
  params = jax.tree.map(
    lambda x: np.asarray(x, np.float32), jax.device_get(model.params)
  )
  p0 = model.transition_bias
  payload = {
    'format': MODEL_FORMAT,
    'version': MODEL_VERSION,
    'model': {
      'observation_dim': model.observation_dim,
      'rnn_hidden_size': model.rnn_hidden_size,
      'rnn_depth': model.rnn_depth,
    },
    'step': int(model.step),
    'params': serialization.to_state_dict(params),
    'transition_bias': math.nan if p0 is None else float(p0),
    'transition_bias_denominator': float(model.transition_bias_denominator),
    'crp_alpha': float(model.crp_alpha),
  }
  atomic_write(os.fspath(path), serialization.msgpack_serialize(payload))


def read_model(path: str | os.PathLike[str]) -> TrainedModel | None:
  """Reads a model file (`write_model`) or a run checkpoint.

  Args:
    path: the file.

  Returns:
    The model (float32 parameters), or None when the file is in neither
    format (e.g. a uisrnn 0.1.2 torch file; see `uisrnn_jax.convert`).

  Raises:
    FileNotFoundError: no such file.
    CheckpointError: one of the two formats, but of an unknown version,
      corrupted, or holding an invalid config.
  """
  path = os.fspath(path)
  with open(path, 'rb') as f:
    raw = f.read()
  try:
    restored = serialization.msgpack_restore(raw)
  except Exception:  # msgpack raises several types on foreign bytes
    return None
  if not isinstance(restored, dict):
    return None
  if restored.get('format') == FORMAT:
    state, _ = load_inference_state(path)
    return TrainedModel.from_state(state)
  if restored.get('format') != MODEL_FORMAT:
    return None
  if restored.get('version') != MODEL_VERSION:
    raise CheckpointError(
      f'{path} has model file version {restored.get("version")}; this '
      f'uisrnn_jax reads version {MODEL_VERSION}'
    )
  try:
    shape = restored['model']
    target = jax.eval_shape(
      lambda: model_lib.init_params(
        jax.random.key(0),
        observation_dim=int(shape['observation_dim']),
        hidden_size=int(shape['rnn_hidden_size']),
        depth=int(shape['rnn_depth']),
      )
    )
    params = serialization.from_state_dict(target, restored['params'])
    p0 = float(restored['transition_bias'])
    return TrainedModel(
      params=jax.tree.map(lambda x: jax.numpy.asarray(x, np.float32), params),
      transition_bias=None if math.isnan(p0) else p0,
      transition_bias_denominator=float(
        restored['transition_bias_denominator']
      ),
      crp_alpha=float(restored['crp_alpha']),
      step=int(restored['step']),
    )
  except (KeyError, TypeError, ValueError) as e:
    raise CheckpointError(f'{path} is corrupted: {e}') from e
