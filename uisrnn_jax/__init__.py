"""uisrnn_jax: UIS-RNN speaker diarization as a functional JAX library.

The top level also serves Google's ``uisrnn`` 0.1.2 API, so that scripts
written for it need one changed import, ``import uisrnn_jax as uisrnn``:
`UISRNN`, `parse_arguments`, `compute_sequence_match_accuracy`,
`parallel_predict`, `output_result`, and the modules `utils` and `contrib`
(see `uisrnn_jax.compat`). They are imported on first access, so
``import uisrnn_jax`` stays cheap (no JAX, never torch).
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
  'utils': ('uisrnn_jax.utils', None),
  'contrib': ('uisrnn_jax.contrib', None),
}

__all__ = [
  'UISRNN',
  '__version__',
  'compute_sequence_match_accuracy',
  'contrib',
  'output_result',
  'parallel_predict',
  'parse_arguments',
  'utils',
]

if TYPE_CHECKING:
  from uisrnn_jax import contrib, utils
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
