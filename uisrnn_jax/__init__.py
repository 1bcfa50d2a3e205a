"""uisrnn_jax: UIS-RNN speaker diarization as a functional JAX library.

The top level also serves Google's ``uisrnn`` 0.1.2 API, so that scripts
written for it need one changed import, ``import uisrnn_jax as uisrnn``:
every public name of the seed's package, `UISRNN`, `parse_arguments`,
`compute_sequence_match_accuracy`, `parallel_predict`, `output_result`, and
the modules `arguments`, `evals`, `loss_func`, `utils`, `contrib` and
`uisrnn` (the seed's module of the `UISRNN` class; here `uisrnn_jax.compat`).
They are imported on first access, so ``import uisrnn_jax`` stays cheap (no
JAX, never torch).

``__version__`` is the package's one version string; ``pyproject.toml``
reads it from here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = '0.1.0'

# Public name -> (module, attribute or None for the module itself).
_LAZY = {
  'UISRNN': ('uisrnn_jax.compat', 'UISRNN'),
  'parse_arguments': ('uisrnn_jax.arguments', 'parse_arguments'),
  'compute_sequence_match_accuracy': (
    'uisrnn_jax.evals',
    'compute_sequence_match_accuracy',
  ),
  'parallel_predict': ('uisrnn_jax.compat', 'parallel_predict'),
  'output_result': ('uisrnn_jax.compat', 'output_result'),
  'arguments': ('uisrnn_jax.arguments', None),
  'contrib': ('uisrnn_jax.contrib', None),
  'evals': ('uisrnn_jax.evals', None),
  'loss_func': ('uisrnn_jax.loss_func', None),
  'uisrnn': ('uisrnn_jax.compat', None),
  'utils': ('uisrnn_jax.utils', None),
}

__all__ = [
  'UISRNN',
  '__version__',
  'arguments',
  'compute_sequence_match_accuracy',
  'contrib',
  'evals',
  'loss_func',
  'output_result',
  'parallel_predict',
  'parse_arguments',
  'uisrnn',
  'utils',
]

if TYPE_CHECKING:
  from uisrnn_jax import arguments, contrib, evals, loss_func, utils
  from uisrnn_jax import compat as uisrnn
  from uisrnn_jax.arguments import parse_arguments
  from uisrnn_jax.compat import UISRNN, output_result, parallel_predict
  from uisrnn_jax.evals import compute_sequence_match_accuracy


def __getattr__(name: str) -> Any:
  if name not in _LAZY:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  module_name, attribute = _LAZY[name]
  module = importlib.import_module(module_name)
  value = module if attribute is None else getattr(module, attribute)
  globals()[name] = value
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_LAZY))
