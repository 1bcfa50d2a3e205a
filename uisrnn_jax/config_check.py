"""Checks a run config before anything is trained, decoded or written.

`validate_config` compares a config (from a config file with command-line
overrides, or stored in a checkpoint) with `SCHEMA`: every key must be
known, every known key present, and every value of the right type and in
range. ml_collections already rejects an override of an unknown field or of
the wrong type on the command line; this catches the rest: a typo in a
config file (``config.train.learning_rat``), a value a config file set to
the wrong type, negative sizes, unknown names (``train.loss='nl'``), and
configs read back from checkpoints.

A new config field must be added to `SCHEMA` (with a default in
`uisrnn_jax.defaults`).

Example::

  validate_config(toy.get_config())  # returns the config
  config.train.loss = 'nl'
  validate_config(config)
  # ConfigError: config.train.loss must be one of ('nll', 'sample_mean'),
  # got 'nl'
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from uisrnn_jax.errors import ConfigError

Check = Callable[[str, Any], None]


def _is_bool(value: Any) -> bool:
  return isinstance(value, bool) or type(value).__name__ == 'bool_'


def _int(low: int, *, optional: bool = False) -> Check:
  """An int >= low (None allowed when optional)."""

  def check(where: str, value: Any) -> None:
    if value is None and optional:
      return
    if _is_bool(value) or not isinstance(value, numbers.Integral):
      raise ConfigError(
        f'{where} must be an int, got {type(value).__name__} {value!r}'
      )
    if value < low:
      raise ConfigError(f'{where} must be >= {low}, got {value}')

  check.__doc__ = f'int >= {low}' + (' or None' if optional else '')
  return check


def _float(
  test: Callable[[float], bool] = lambda v: True,
  expected: str = '',
  *,
  optional: bool = False,
) -> Check:
  """A finite real number (ints allowed) passing ``test``."""

  def check(where: str, value: Any) -> None:
    if value is None and optional:
      return
    if _is_bool(value) or not isinstance(value, numbers.Real):
      raise ConfigError(
        f'{where} must be a number, got {type(value).__name__} {value!r}'
      )
    if not (math.isfinite(value) and test(float(value))):
      want = f'finite and {expected}' if expected else 'finite'
      raise ConfigError(f'{where} must be {want}, got {value}')

  check.__doc__ = f'float {expected}'.strip()
  return check


def _choice(*options: str) -> Check:
  def check(where: str, value: Any) -> None:
    if value not in options:
      raise ConfigError(f'{where} must be one of {options}, got {value!r}')

  check.__doc__ = f'one of {options}'
  return check


def _bool(where: str, value: Any) -> None:
  if not _is_bool(value):
    raise ConfigError(
      f'{where} must be a bool, got {type(value).__name__} {value!r}'
    )


def _str(where: str, value: Any) -> None:
  if not isinstance(value, str):
    raise ConfigError(
      f'{where} must be a string, got {type(value).__name__} {value!r}'
    )


_positive = _float(lambda v: v > 0, '> 0')
_nonnegative = _float(lambda v: v >= 0, '>= 0')

# Group -> field -> check. ``None`` as a group: a top-level scalar.
SCHEMA: dict[str, Any] = {
  'seed': _int(0),
  'model': {
    'observation_dim': _int(1),
    'rnn_hidden_size': _int(1),
    'rnn_depth': _int(1),
    'rnn_dropout': _float(lambda v: 0 <= v < 1, 'in [0, 1)'),
    'transition_bias': _float(lambda v: 0 < v < 1, 'in (0, 1)', optional=True),
    'crp_alpha': _positive,
    'sigma2': _float(lambda v: v > 0, '> 0', optional=True),
    'crp_alpha_estimator': _choice('given', 'range_search', 'closed_form'),
  },
  'train': {
    'optimizer': _choice('adam'),
    'learning_rate': _nonnegative,
    'train_iteration': _int(0),
    'batch_size': _int(1, optional=True),
    'num_permutations': _int(0),
    'sigma_alpha': _float(),
    'sigma_beta': _float(),
    'regularization_weight': _nonnegative,
    'grad_max_norm': _positive,
    'enforce_cluster_id_uniqueness': _bool,
    'loss': _choice('nll', 'sample_mean'),
    'loss_samples': _int(1),
    'bucket': _int(1),
    'compile_seconds': _nonnegative,
    'log_every': _int(1),
    'checkpoint_every': _int(1),
    'num_devices': _int(0),
    'steps_per_shard': _int(1),
  },
  'decode': {
    'beam_size': _int(1),
    'look_ahead': _int(1),
    'test_iteration': _int(1),
    'max_speakers': _int(1),
    'speaker_overflow': _choice('error', 'disallow'),
    'mean_rule': _choice('reference', 'cumulative'),
    'resegment_iterations': _int(0),
    'bucket': _int(1),
  },
  'data': {
    'train_path': _str,
    'test_path': _str,
    'train_shards': _str,
  },
  'toy': {
    'num_train': _int(1),
    'num_test': _int(1),
    'num_speakers': _int(2),
    'length': _int(1),
    'noise': _nonnegative,
  },
}
# Groups every config needs; ``data`` and ``toy`` are checked when present.
REQUIRED = ('seed', 'model', 'train', 'decode')
# Fields a group may lack (added after the first checkpoints were written).
OPTIONAL_FIELDS = {
  ('train', 'num_devices'),
  ('train', 'steps_per_shard'),
  ('train', 'compile_seconds'),
  ('data', 'train_shards'),
  ('decode', 'resegment_iterations'),
}


def _keys(config: Any, where: str) -> list[str]:
  if not isinstance(config, Mapping) and not hasattr(config, 'keys'):
    raise ConfigError(
      f'{where} must be a ConfigDict or mapping, got {type(config).__name__}'
    )
  return list(config.keys())


def _unknown(where: str, key: str, known: Any) -> ConfigError:
  hint = difflib.get_close_matches(key, list(known), n=1)
  more = f'; did you mean {where}.{hint[0]}?' if hint else ''
  return ConfigError(
    f'unknown config key {where}.{key}{more} (known: {sorted(known)})'
  )


def validate_config(
  config: Any,
  *,
  required: tuple[str, ...] = REQUIRED,
  name: str = 'config',
) -> Any:
  """Checks keys, types and ranges of a run config against `SCHEMA`.

  Args:
    config: a ConfigDict (or nested mapping) with the groups of
      `uisrnn_jax.defaults`.
    required: top-level keys that must be present.
    name: how to call the config in messages (e.g. the checkpoint path).

  Returns:
    ``config``, unchanged.

  Raises:
    ConfigError: an unknown or missing key, or a value of the wrong type or
      out of range; the message names the field.
  """
  top = _keys(config, name)
  for key in top:
    if key not in SCHEMA:
      raise _unknown(name, key, SCHEMA)
  for key in required:
    if key not in top:
      raise ConfigError(f'{name} has no {key!r} (needs {list(required)})')
  for group, spec in SCHEMA.items():
    if group not in top:
      continue
    value = config[group]
    where = f'{name}.{group}'
    if callable(spec):
      spec(where, value)
      continue
    fields = _keys(value, where)
    for key in fields:
      if key not in spec:
        raise _unknown(where, key, spec)
    for key, check in spec.items():
      if key not in fields:
        if (group, key) in OPTIONAL_FIELDS:
          continue
        raise ConfigError(f'{where} has no field {key!r}')
      check(f'{where}.{key}', value[key])
  return config


__all__ = ['OPTIONAL_FIELDS', 'REQUIRED', 'SCHEMA', 'validate_config']
