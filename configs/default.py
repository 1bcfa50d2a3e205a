"""The seed's defaults, one to one, plus our own fields.

The values and what each means are in ``uisrnn_jax/defaults.py``, so that
the installed package (`uisrnn_jax.UISRNN`, checkpoints) uses the same ones.

Usage:
  python train.py --config=configs/default.py --workdir=runs/default \
    --config.data.train_path=my_train.npz
"""

import ml_collections

from uisrnn_jax import defaults


def get_config() -> ml_collections.ConfigDict:
  """Returns the default configuration (a fresh copy each call)."""
  return defaults.get_config()
