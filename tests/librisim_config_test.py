"""configs/librisim.py: a valid config whose data paths follow the repo."""

import os

import numpy as np
import pytest

from configs import librisim
from uisrnn_jax import config_check
from uisrnn_jax import dataset as dataset_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_config_is_valid_and_tuned_settings_are_set():
  config = config_check.validate_config(librisim.get_config())
  assert config.model.observation_dim == 256
  assert config.model.crp_alpha_estimator == 'closed_form'
  assert config.model.sigma2 is not None and config.model.sigma2 > 0
  assert config.decode.test_iteration == 2
  assert config.decode.resegment_iterations > 0
  assert config.decode.resegment_emission == 'centroid'
  assert config.decode.count_search == 1
  assert config.decode.count_penalty > 0


def test_data_paths_default_to_shared_dir_next_to_repo():
  config = librisim.get_config()
  expected = os.path.normpath(
    os.path.join(REPO, '..', 'shared', 'data', 'librisim')
  )
  assert config.data.train_path == os.path.join(expected, 'train.npz')
  assert config.data.test_path == os.path.join(expected, 'dev.npz')


@pytest.mark.skipif(
  not os.path.exists(librisim.get_config().data.test_path),
  reason='LibriSim data not found next to the repository '
  '(../shared/data/librisim/dev.npz)',
)
def test_dev_split_loads_with_the_configured_dimension():
  config = librisim.get_config()
  dev = dataset_lib.load_npz(
    config.data.test_path, observation_dim=config.model.observation_dim
  )
  assert len(dev.sequences) == len(dev.labels) > 0
  assert all(s.shape[1] == config.model.observation_dim for s in dev.sequences)
  # The ReLU encoder's exact zeros are data, kept as is (not padding).
  assert np.mean(np.concatenate(dev.sequences) == 0) > 0.3
