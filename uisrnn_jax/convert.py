"""Reads model files written by Google's ``uisrnn`` 0.1.2 and converts them.

``uisrnn.UISRNN.save()`` writes a ``torch.save`` file holding a dict::

  {'rnn_state_dict': CoreRNN.state_dict(),       # torch tensors
   'rnn_init_hidden': float32[L, 1, H],          # NumPy array
   'sigma2': float32[D],                         # NumPy array
   'transition_bias': float or None,
   'transition_bias_denominator': float,
   'crp_alpha': float}

Because of the NumPy arrays, torch >= 2.6 refuses to load it by default (its
``weights_only`` unpickler rejects NumPy globals), which is why uisrnn 0.1.2's
own ``load()`` fails on current torch. We load it with ``weights_only=True``
and allow exactly the NumPy globals such a file needs (`safe_numpy_globals`):
nothing in the file can run code. Only this path needs torch (the ``torch``
extra: ``pip install 'uisrnn-jax[torch]'``); it is imported on first use.

Convert once, then load without torch::

  python -m uisrnn_jax.convert reference_model.uisrnn model.msgpack

The output is the model file format of `uisrnn_jax.checkpoint.write_model`
(what `uisrnn_jax.compat.UISRNN.save` writes); ``UISRNN.load`` reads both.
"""

from __future__ import annotations

import argparse
import functools
import os
import pickle
import sys
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from uisrnn_jax import checkpoint
from uisrnn_jax import model as model_lib

TORCH_EXTRA_HINT = (
  'reading model files of the reference uisrnn package needs PyTorch: pip '
  "install 'uisrnn-jax[torch]' (or convert the file once, where torch is "
  'installed, with: python -m uisrnn_jax.convert REF_FILE OUT_FILE)'
)

_ZIP_MAGIC = b'PK\x03\x04'
_REQUIRED_KEYS = (
  'rnn_state_dict',
  'rnn_init_hidden',
  'sigma2',
  'transition_bias',
  'transition_bias_denominator',
  'crp_alpha',
)


class ReferenceFileError(ValueError):
  """A file is not a readable uisrnn 0.1.2 model file."""


def is_torch_file(header: bytes) -> bool:
  """Whether a file's first bytes look like a ``torch.save`` file.

  Args:
    header: at least the first 2 bytes of the file.

  Returns:
    True for torch's zip format (the default since torch 1.6) and for its
    legacy format, a pickle (protocol 2 or higher) of a magic number.
  """
  return header.startswith(_ZIP_MAGIC) or (
    len(header) >= 2 and header[0] == 0x80 and 2 <= header[1] <= 5
  )


def _import_torch() -> Any:
  try:
    import torch  # noqa: PLC0415 (optional dependency)
  except ImportError as e:
    raise ImportError(TORCH_EXTRA_HINT) from e
  return torch


def safe_numpy_globals() -> list[Any]:
  """The NumPy globals a uisrnn 0.1.2 model file needs, and no others.

  Arrays pickle as ``numpy.core.multiarray._reconstruct(numpy.ndarray, ...)``
  followed by their ``numpy.dtype``, whose state is set on the dtype's class
  (``numpy.dtypes.Float32DType`` for the float32 arrays of the file). NumPy
  scalars (a p0 or alpha computed with NumPy) pickle as
  ``numpy.core.multiarray.scalar`` with a float64 or int64 dtype. Files
  written under NumPy 1.x name the module ``numpy.core.multiarray``, under
  NumPy 2.x ``numpy._core.multiarray``; both names are allowed.

  Returns:
    Entries for ``torch.serialization.safe_globals``: objects, or
    ``(object, qualified name)`` pairs for the alternative module name.
  """
  multiarray = _multiarray()
  here = multiarray.__name__  # numpy._core.multiarray under NumPy 2
  other = (
    'numpy.core.multiarray'
    if here == 'numpy._core.multiarray'
    else 'numpy._core.multiarray'
  )
  functions = (multiarray._reconstruct, multiarray.scalar)
  dtype_classes = {
    type(np.dtype(t)) for t in (np.float32, np.float64, np.int64)
  }
  return [
    *functions,
    *((f, f'{other}.{f.__name__}') for f in functions),
    np.ndarray,
    np.dtype,
    *sorted(dtype_classes, key=lambda c: c.__name__),
  ]


def _multiarray() -> Any:
  """``numpy._core.multiarray`` (NumPy 2), or ``numpy.core.multiarray``."""
  core = getattr(np, '_core', None)
  if core is not None and hasattr(core, 'multiarray'):
    return core.multiarray
  return np.core.multiarray  # NumPy < 2


def _as_numpy(value: Any, name: str) -> np.ndarray:
  if hasattr(value, 'detach'):  # a torch tensor
    value = value.detach().cpu().numpy()
  if not isinstance(value, np.ndarray) or value.dtype.kind != 'f':
    raise ReferenceFileError(
      f'{name} must be a float tensor or array, got {type(value).__name__}'
    )
  return value


def _as_float(value: Any, name: str, *, optional: bool = False) -> float | None:
  if value is None and optional:
    return None
  if isinstance(value, (bool, np.bool_)) or not isinstance(
    value, (int, float, np.integer, np.floating)
  ):
    raise ReferenceFileError(
      f'{name} must be a number, got {type(value).__name__}'
    )
  return float(value)


def reference_model_from_dict(var_dict: Any) -> checkpoint.TrainedModel:
  """Converts the dict that uisrnn 0.1.2's ``save()`` writes.

  Args:
    var_dict: the loaded dict (tensors may be torch tensors or NumPy).

  Returns:
    The converted model (`checkpoint.TrainedModel`, step 0).

  Raises:
    ReferenceFileError: keys are missing, or values have the wrong type or
      inconsistent shapes.
  """
  if not isinstance(var_dict, dict):
    raise ReferenceFileError(
      f'expected the dict written by uisrnn.UISRNN.save(), got '
      f'{type(var_dict).__name__}'
    )
  missing = [k for k in _REQUIRED_KEYS if k not in var_dict]
  if missing:
    raise ReferenceFileError(
      f'not a uisrnn model file: keys {missing} are missing (found '
      f'{sorted(var_dict)})'
    )
  state_dict = var_dict['rnn_state_dict']
  if not hasattr(state_dict, 'items'):
    raise ReferenceFileError('rnn_state_dict must be a state dict')
  tensors = {
    k: _as_numpy(v, f'rnn_state_dict[{k!r}]') for k, v in state_dict.items()
  }
  init_hidden = _as_numpy(var_dict['rnn_init_hidden'], 'rnn_init_hidden')
  sigma2 = _as_numpy(var_dict['sigma2'], 'sigma2')
  try:
    params = model_lib.params_from_torch(tensors, init_hidden, sigma2)
  except KeyError as e:
    raise ReferenceFileError(
      f'rnn_state_dict lacks {e}; found {sorted(tensors)}'
    ) from e
  except ValueError as e:
    raise ReferenceFileError(f'inconsistent tensor shapes: {e}') from e
  if not params['rnn']:
    raise ReferenceFileError('rnn_state_dict has no GRU layer')
  _check_shapes(params)
  return checkpoint.TrainedModel(
    params=params,
    transition_bias=_as_float(
      var_dict['transition_bias'], 'transition_bias', optional=True
    ),
    transition_bias_denominator=_as_float(
      var_dict['transition_bias_denominator'], 'transition_bias_denominator'
    ),
    crp_alpha=_as_float(var_dict['crp_alpha'], 'crp_alpha'),
  )


def _check_shapes(params: model_lib.Params) -> None:
  """Checks the converted tensors against the shapes of a D/H/L model."""
  depth, hidden = params['init_hidden'].shape
  dims = dict(
    observation_dim=params['sigma2'].shape[-1], hidden_size=hidden, depth=depth
  )
  expected = jax.eval_shape(
    functools.partial(model_lib.init_params, **dims), jax.random.key(0)
  )
  flat_expected = jax.tree_util.tree_leaves_with_path(expected)
  flat_got = jax.tree_util.tree_leaves_with_path(params)
  for (path, want), (_, got) in zip(flat_expected, flat_got):
    if want.shape != np.shape(got):
      raise ReferenceFileError(
        f'tensor {jax.tree_util.keystr(path)} has shape {np.shape(got)}, '
        f'expected {want.shape} for observation_dim='
        f'{dims["observation_dim"]}, rnn_hidden_size={hidden}, '
        f'rnn_depth={depth}'
      )


def read_reference_model(
  path: str | os.PathLike[str],
) -> checkpoint.TrainedModel:
  """Loads a model file written by uisrnn 0.1.2's ``UISRNN.save()``.

  Uses ``torch.load(path, weights_only=True)`` with only
  `safe_numpy_globals` allowed, so the file cannot run code.

  Args:
    path: the file.

  Returns:
    The converted model (`checkpoint.TrainedModel`, step 0).

  Raises:
    ImportError: torch is not installed (the message names the extra).
    FileNotFoundError: no such file.
    ReferenceFileError: not a uisrnn model file, or it holds anything but
      tensors, the allowed NumPy types and plain Python values.
  """
  path = os.fspath(path)
  torch = _import_torch()
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no model file at {path}')
  try:
    with torch.serialization.safe_globals(safe_numpy_globals()):
      var_dict = torch.load(path, map_location='cpu', weights_only=True)
  except pickle.UnpicklingError as e:
    raise ReferenceFileError(
      f'{path} cannot be loaded safely (weights_only): it holds objects a '
      f'uisrnn 0.1.2 model file does not have. {str(e).splitlines()[-1]}'
    ) from e
  except (RuntimeError, EOFError, OSError) as e:  # torch's zip reader
    raise ReferenceFileError(f'{path} is not a readable torch file: {e}') from e
  return reference_model_from_dict(var_dict)


def convert(
  reference_path: str | os.PathLike[str], output_path: str | os.PathLike[str]
) -> checkpoint.TrainedModel:
  """Converts a uisrnn 0.1.2 model file into our model file format.

  The output is what `uisrnn_jax.compat.UISRNN.save` writes
  (`checkpoint.write_model`), so ``UISRNN.load(output_path)`` then works
  without torch.

  Args:
    reference_path: file written by ``uisrnn.UISRNN.save()``.
    output_path: where to write (atomically; parent directories are made).

  Returns:
    The converted model, as read.

  Raises:
    See `read_reference_model`.
  """
  reference = read_reference_model(reference_path)
  checkpoint.write_model(output_path, reference)
  return reference


def main(argv: Sequence[str] | None = None) -> int:
  """``python -m uisrnn_jax.convert REF_FILE OUT_FILE``."""
  parser = argparse.ArgumentParser(
    prog='python -m uisrnn_jax.convert',
    description='Convert a model file saved by uisrnn 0.1.2 (PyTorch) into '
    'the uisrnn_jax model format, loadable with uisrnn_jax.UISRNN.load '
    'without PyTorch.',
  )
  parser.add_argument('reference_file', help='file written by UISRNN.save()')
  parser.add_argument('output_file', help='uisrnn_jax model file to write')
  args = parser.parse_args(argv)
  try:
    reference = convert(args.reference_file, args.output_file)
  except (ImportError, OSError, ReferenceFileError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(
    f'converted {args.reference_file} -> {args.output_file}: '
    f'observation_dim={reference.observation_dim}, '
    f'rnn_hidden_size={reference.rnn_hidden_size}, '
    f'rnn_depth={reference.rnn_depth}, '
    f'transition_bias={reference.transition_bias}, '
    f'crp_alpha={reference.crp_alpha}'
  )
  return 0


if __name__ == '__main__':
  sys.exit(main())
