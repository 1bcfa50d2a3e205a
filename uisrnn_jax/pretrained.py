"""The pretrained UIS-RNN model shipped inside the package.

One checkpoint file (the `uisrnn_jax.checkpoint` msgpack format, with the
config it was trained with, so its decode settings travel with it), trained
by ``configs/librisim.py`` on LibriSim train (conversations of the 200
LibriSpeech train-clean-100 speakers, resemblyzer 0.1.4 d-vectors of 1.6 s
windows every 0.4 s); `uisrnn_jax.audio` uses it when given no model; the
model card and the command that reproduces it are in the README
("Pretrained model"). Anything that takes a run directory takes this file:

  python infer.py --config=configs/librisim.py \\
    --workdir=$(python -m uisrnn_jax.pretrained) --input=F.npz
  uisrnn-diarize meeting.wav --workdir=$(python -m uisrnn_jax.pretrained)

>>> from uisrnn_jax import pretrained
>>> state, config = pretrained.load()                    # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from uisrnn_jax.errors import CheckpointError

if TYPE_CHECKING:
  import ml_collections

  from uisrnn_jax import train as train_lib

NAME = 'librisim'
"""The shipped model's name (its file is ``weights/<NAME>.msgpack``)."""

_DIRECTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'weights')


def checkpoint_path() -> str:
  """Path of the shipped checkpoint file.

  Raises:
    CheckpointError: the file is missing (a broken installation).
  """
  path = os.path.join(_DIRECTORY, f'{NAME}.msgpack')
  if not os.path.isfile(path):
    raise CheckpointError(
      f'the pretrained model is missing from the installation: {path}'
    )
  return path


def load() -> tuple[train_lib.TrainState, ml_collections.ConfigDict]:
  """The shipped model as ``(state, config)``, see
  `checkpoint.load_inference_state`."""
  from uisrnn_jax import checkpoint

  return checkpoint.load_inference_state(checkpoint_path())


def main(argv: Sequence[str] | None = None) -> int:
  """``python -m uisrnn_jax.pretrained``: prints `checkpoint_path`.

  Returns:
    The exit status (1, with ``error: ...`` on stderr, if the file is
    missing or arguments are given).
  """
  argv = sys.argv[1:] if argv is None else list(argv)
  if argv:
    print(
      f'error: unexpected arguments {argv}; usage: python -m '
      'uisrnn_jax.pretrained (prints the shipped checkpoint path)',
      file=sys.stderr,
    )
    return 1
  try:
    print(checkpoint_path())
  except CheckpointError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
