"""The shipped pretrained checkpoint: found, loads, validates and decodes."""

import os
import subprocess
import sys

import numpy as np
import pytest

from configs import librisim
from uisrnn_jax import (
  config_check,
  dataset,
  decode,
  errors,
  experiment,
  pretrained,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV = os.path.join(librisim.DATA_DIR, 'dev.npz')


@pytest.fixture(scope='module')
def model():
  return pretrained.load()


def test_module_prints_the_existing_checkpoint_path():
  out = subprocess.run(
    [sys.executable, '-m', 'uisrnn_jax.pretrained'],
    cwd=REPO,
    capture_output=True,
    text=True,
    check=True,
  ).stdout.strip()
  assert out == pretrained.checkpoint_path()
  assert os.path.isfile(out) and out.endswith('.msgpack')
  # A few MB, so it can ship inside the wheel.
  assert 0.1e6 < os.path.getsize(out) < 20e6


def test_main_refuses_arguments(capsys):
  assert pretrained.main(['--workdir=x']) == 1
  assert 'unexpected arguments' in capsys.readouterr().err


def test_missing_file_is_a_checkpoint_error(monkeypatch, tmp_path):
  monkeypatch.setattr(pretrained, '_DIRECTORY', str(tmp_path))
  with pytest.raises(errors.CheckpointError, match='missing'):
    pretrained.checkpoint_path()
  assert pretrained.main([]) == 1


def test_loads_validates_and_carries_the_config_decode_settings(model):
  state, config = model
  config_check.validate_config(config)
  assert state.params['sigma2'].shape == (256,)
  assert config.model.observation_dim == 256
  assert 0 < float(state.transition_bias) < 1
  assert float(state.crp_alpha) > 0
  # configs/librisim.py decodes the shipped model as its model card reports
  # (fields added to the decode config since training take their defaults).
  assert decode.DecodeSettings.from_config(
    config.decode
  ) == decode.DecodeSettings.from_config(librisim.get_config().decode)
  assert config.model.sigma2 == librisim.get_config().model.sigma2


def test_decodes_a_synthetic_sequence(model):
  """Runs without ../shared: the file decodes into well-formed labels.

  Quality is checked on real d-vectors (LibriSim dev, below): synthetic
  vectors are outside what the model was trained on, so how many speakers
  it hears in them says nothing about the model.
  """
  state, config = model
  rng = np.random.default_rng(0)
  x = np.abs(rng.normal(size=(60, 256)))
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  data = dataset.Dataset(sequences=[x])
  (labels,) = experiment.decode_dataset(state, data, config.decode)
  (again,) = experiment.decode_dataset(state, data, config.decode)
  assert labels.shape == (60,)
  np.testing.assert_array_equal(labels, again)  # deterministic
  # Speakers are numbered 0, 1, 2, ... in order of first appearance.
  first = [int(k) for k in dict.fromkeys(labels.tolist())]
  assert first == list(range(len(first)))


@pytest.mark.skipif(
  not os.path.exists(DEV),
  reason='LibriSim data not found (../shared/data/librisim/dev.npz)',
)
def test_decodes_librisim_dev_as_the_model_card_reports(model):
  state, config = model
  dev = dataset.load_npz(DEV, observation_dim=256)
  # All 40 dev conversations without the count search (a fifth of the full
  # decode's time): README model card, 0.907. Decoding is deterministic; the
  # margin allows for another machine's float rounding.
  single = config.decode.copy_and_resolve_references()
  single.count_search = 0
  predicted = experiment.decode_dataset(state, dev, single)
  accuracy = experiment.accuracy_report(dev, predicted)['accuracy']
  assert abs(accuracy - 0.907) < 0.01
  # The file's own decoding (with the count search) on the conversations
  # whose count the single beam search gets wrong (tuning log section 9):
  # it must gain there.
  hard = [1, 3, 14, 22]
  subset = dataset.Dataset(
    sequences=[dev.sequences[i] for i in hard],
    labels=[dev.labels[i] for i in hard],
  )
  searched = experiment.decode_dataset(state, subset, config.decode)
  before = experiment.accuracy_report(subset, [predicted[i] for i in hard])
  after = experiment.accuracy_report(subset, searched)
  assert after['accuracy'] > before['accuracy'] + 0.05


def test_the_audio_front_end_uses_it_when_given_no_model():
  from uisrnn_jax import audio

  model = audio.load_model(None)
  assert model.source == pretrained.checkpoint_path()
  assert int(model.state.params['sigma2'].shape[-1]) == 256
