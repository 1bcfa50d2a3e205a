"""The one field checker: configs, `DecodeSettings`, `compat` and `train`.

Every config field has one entry in `SCHEMA` (group -> field -> check) and
one default in `uisrnn_jax.defaults`; nothing else checks fields. A check is
a function ``check(where, value) -> value`` that raises
`errors.ConfigTypeError` (a ``ConfigError`` and a ``TypeError``) for a
value of the wrong type, `errors.ConfigError` (a ``ValueError``) for one out
of range, with ``where`` (e.g. ``config.train.loss``, or
``inference_args.beam_size`` when `uisrnn_jax.compat` reads the seed's
namespaces) naming the field, and returns the value as a plain Python
``int``, ``float``, ``bool`` or ``str``.

* `validate_config` checks a whole run config (from a config file with
  command-line overrides, or stored in a checkpoint): every key known, every
  known key present, every value of the right type and in range.
  ml_collections already rejects an override of an unknown field or of the
  wrong type on the command line; this catches the rest: a typo in a config
  file (``config.train.learning_rat``), a value a config file set to the
  wrong type, negative sizes, unknown names (``train.loss='nl'``), and
  configs read back from checkpoints.
* `check_field` checks one field, by its dotted name (``'decode.beam_size'``,
  ``'seed'``); `decode.DecodeSettings`, `uisrnn_jax.compat` (the seed's
  argument namespaces) and `uisrnn_jax.train` use it.
* The check builders (`integer`, `real`, `choice`, `boolean`, `string`)
  serve the few values that are not config fields (e.g. compat's
  ``num_processes``).

Example::

  validate_config(toy.get_config())  # returns the config
  config.train.loss = 'nl'
  validate_config(config)
  # ConfigError: config.train.loss must be one of ('nll', 'sample_mean'),
  # got 'nl'
  check_field('decode.beam_size', 0, where='inference_args.beam_size')
  # ConfigError: inference_args.beam_size must be >= 1, got 0
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from uisrnn_jax.errors import ConfigError, ConfigTypeError

Check = Callable[[str, Any], Any]


def _is_bool(value: Any) -> bool:
  return isinstance(value, bool) or type(value).__name__ == 'bool_'


def _type_error(where: str, what: str, value: Any) -> ConfigTypeError:
  return ConfigTypeError(
    f'{where} must be {what}, got {type(value).__name__} {value!r}'
  )


def integer(low: int, *, optional: bool = False) -> Check:
  """A check for an int >= ``low`` (or None, when ``optional``)."""

  def check(where: str, value: Any) -> int | None:
    if value is None and optional:
      return None
    if _is_bool(value) or not isinstance(value, numbers.Integral):
      raise _type_error(where, 'an int', value)
    if value < low:
      raise ConfigError(f'{where} must be >= {low}, got {value}')
    return int(value)

  check.__doc__ = f'int >= {low}' + (' or None' if optional else '')
  return check


def real(
  test: Callable[[float], bool] = lambda v: True,
  expected: str = '',
  *,
  optional: bool = False,
) -> Check:
  """A check for a finite real number (ints allowed) passing ``test``."""

  def check(where: str, value: Any) -> float | None:
    if value is None and optional:
      return None
    if _is_bool(value) or not isinstance(value, numbers.Real):
      raise _type_error(where, 'a number', value)
    if not (math.isfinite(value) and test(float(value))):
      want = f'finite and {expected}' if expected else 'finite'
      raise ConfigError(f'{where} must be {want}, got {value}')
    return float(value)

  check.__doc__ = f'float {expected}'.strip()
  return check


def choice(*options: str) -> Check:
  """A check for one of ``options``."""

  def check(where: str, value: Any) -> str:
    if value not in options:
      raise ConfigError(f'{where} must be one of {options}, got {value!r}')
    return value

  check.__doc__ = f'one of {options}'
  return check


def boolean(where: str, value: Any) -> bool:
  """Checks a bool (NumPy's too)."""
  if not _is_bool(value):
    raise _type_error(where, 'a bool', value)
  return bool(value)


def string(where: str, value: Any) -> str:
  """Checks a string."""
  if not isinstance(value, str):
    raise _type_error(where, 'a string', value)
  return value


positive = real(lambda v: v > 0, '> 0')
nonnegative = real(lambda v: v >= 0, '>= 0')

# Group -> field -> check. A check as a group: a top-level scalar.
SCHEMA: dict[str, Any] = {
  'seed': integer(0),
  'model': {
    'observation_dim': integer(1),
    'rnn_hidden_size': integer(1),
    'rnn_depth': integer(1),
    'rnn_dropout': real(lambda v: 0 <= v < 1, 'in [0, 1)'),
    'transition_bias': real(lambda v: 0 < v < 1, 'in (0, 1)', optional=True),
    'crp_alpha': positive,
    'sigma2': real(lambda v: v > 0, '> 0', optional=True),
    'crp_alpha_estimator': choice('given', 'range_search', 'closed_form'),
  },
  'train': {
    'optimizer': choice('adam'),
    'learning_rate': nonnegative,
    'train_iteration': integer(0),
    'batch_size': integer(1, optional=True),
    'num_permutations': integer(0),
    'sigma_alpha': real(),
    'sigma_beta': real(),
    'regularization_weight': nonnegative,
    'grad_max_norm': positive,
    'enforce_cluster_id_uniqueness': boolean,
    'loss': choice('nll', 'sample_mean'),
    'loss_samples': integer(1),
    'bucket': integer(1),
    'compile_seconds': nonnegative,
    'log_every': integer(1),
    'checkpoint_every': integer(1),
    'num_devices': integer(0),
    'steps_per_shard': integer(1),
  },
  'decode': {
    'beam_size': integer(1),
    'look_ahead': integer(1),
    'test_iteration': integer(1),
    'max_speakers': integer(1),
    'speaker_overflow': choice('error', 'disallow'),
    'mean_rule': choice('reference', 'cumulative'),
    'resegment_iterations': integer(0),
    'resegment_emission': choice('centroid', 'neighbours'),
    'resegment_neighbours': integer(1),
    'resegment_exclude': integer(0),
    'count_search': integer(0),
    'count_penalty': nonnegative,
    'bucket': integer(1),
    'min_speakers': integer(1),
    'num_speakers': integer(1, optional=True),
  },
  'data': {
    'train_path': string,
    'test_path': string,
    'train_shards': string,
  },
  'toy': {
    'num_train': integer(1),
    'num_test': integer(1),
    'num_speakers': integer(2),
    'length': integer(1),
    'noise': nonnegative,
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
  ('decode', 'resegment_emission'),
  ('decode', 'resegment_neighbours'),
  ('decode', 'resegment_exclude'),
  ('decode', 'count_search'),
  ('decode', 'count_penalty'),
  ('decode', 'min_speakers'),
  ('decode', 'num_speakers'),
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


def field_check(name: str) -> Check:
  """The check of a field, by dotted name (``'train.loss'``, ``'seed'``).

  Raises:
    ConfigError: no such field in `SCHEMA`.
  """
  group, _, key = name.partition('.')
  spec = SCHEMA.get(group)
  if spec is None:
    raise _unknown('config', group, SCHEMA)
  if callable(spec) != (not key):
    raise ConfigError(f'{name!r} is not a config field')
  if callable(spec):
    return spec
  if key not in spec:
    raise _unknown(f'config.{group}', key, spec)
  return spec[key]


def check_field(name: str, value: Any, *, where: str | None = None) -> Any:
  """Checks one config field's value against `SCHEMA`.

  Args:
    name: the field, dotted (``'decode.beam_size'``; ``'seed'``).
    value: its value.
    where: how to call it in messages (default ``config.<name>``).

  Returns:
    The value as a plain Python int, float, bool or str (None stays None).

  Raises:
    ConfigTypeError: (a ConfigError and a TypeError) a wrong type.
    ConfigError: out of range, or an unknown field.
  """
  return field_check(name)(f'config.{name}' if where is None else where, value)


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
    ConfigError: an unknown or missing key, or a value of the wrong type
      (`ConfigTypeError`) or out of range; the message names the field.
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


__all__ = [
  'OPTIONAL_FIELDS',
  'REQUIRED',
  'SCHEMA',
  'Check',
  'boolean',
  'check_field',
  'choice',
  'field_check',
  'integer',
  'nonnegative',
  'positive',
  'real',
  'string',
  'validate_config',
]
