"""The persistent compilation cache: compiled programs reused across runs.

JAX can store every program it compiles on disk and load it again in a later
process instead of compiling it anew (jax's ``jax_compilation_cache_dir``).
`enable_cache` turns that on for this package's entry points (``train.py``,
``infer.py``, ``uisrnn-diarize`` and `uisrnn_jax.compat.UISRNN`), so a second
run with the same shapes compiles nothing it compiled before.

Where the cache lives, first match wins:

1. the ``path`` argument of `enable_cache`;
2. the environment variable ``UISRNN_JAX_CACHE_DIR`` (``''``, ``0``, ``off``
   or ``none`` disable the cache);
3. ``$XDG_CACHE_HOME/uisrnn_jax/jax`` (``~/.cache/uisrnn_jax/jax``).

A cache the user configured for JAX itself (``JAX_COMPILATION_CACHE_DIR``,
or ``jax.config.update('jax_compilation_cache_dir', ...)`` before our entry
point runs) is left as it is. The cache is bounded (`MAX_BYTES`, least
recently used entries are evicted), and a bound makes JAX lock the directory
with a file lock around every read and write, so two processes can share it.
"""

from __future__ import annotations

import os

import jax
from absl import logging

ENV_VAR = 'UISRNN_JAX_CACHE_DIR'
DISABLED = ('', '0', 'off', 'none', 'false')
# Programs that compile faster than this get no disk entry. 0: every program
# is kept, because a fit's nine small programs (~0.03 s each) were otherwise
# recompiled in every process (0.3 s of a second process's start).
MIN_COMPILE_SECONDS = 0.0
MAX_BYTES = 2 << 30


def default_cache_dir() -> str:
  """``$XDG_CACHE_HOME/uisrnn_jax/jax``, or ``~/.cache/uisrnn_jax/jax``."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(
    os.path.expanduser('~'), '.cache'
  )
  return os.path.join(base, 'uisrnn_jax', 'jax')


def cache_dir(path: str | None = None) -> str | None:
  """The directory `enable_cache` would use; None when disabled.

  Args:
    path: an explicit directory (wins over the environment).

  Returns:
    An absolute path, or None when ``UISRNN_JAX_CACHE_DIR`` disables it.
  """
  if path is None:
    path = os.environ.get(ENV_VAR)
    if path is None:
      path = default_cache_dir()
    elif path.strip().lower() in DISABLED:
      return None
  return os.path.abspath(os.path.expanduser(path))


def enable_cache(path: str | None = None) -> str | None:
  """Turns on JAX's persistent compilation cache (idempotent).

  Call it before the first compilation whose result should be reused; it
  changes nothing if JAX's own cache directory is already configured.

  Args:
    path: cache directory; None reads ``UISRNN_JAX_CACHE_DIR`` or uses
      `default_cache_dir`.

  Returns:
    The directory in use, or None if disabled or not writable (then runs
    compile as before; a warning says why).
  """
  current = jax.config.jax_compilation_cache_dir
  if current:
    return current
  directory = cache_dir(path)
  if directory is None:
    return None
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    logging.warning('compilation cache disabled: %s', e)
    return None
  if not os.access(directory, os.W_OK):
    logging.warning('compilation cache disabled: %s is not writable', directory)
    return None
  jax.config.update('jax_compilation_cache_dir', directory)
  jax.config.update(
    'jax_persistent_cache_min_compile_time_secs', MIN_COMPILE_SECONDS
  )
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', -1)
  jax.config.update('jax_compilation_cache_max_size', MAX_BYTES)
  return directory


__all__ = ['ENV_VAR', 'cache_dir', 'default_cache_dir', 'enable_cache']
