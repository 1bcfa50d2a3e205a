"""Command-line entry points (absl flags live here and nowhere else).

  python train.py --config=configs/toy.py --workdir=runs/toy
  python infer.py --config=configs/toy.py --workdir=runs/toy \
      [--input=FILE.npz] [--output=PRED.npz|PRED.json]

Any config field can be overridden, e.g. ``--config.train.learning_rate=0.01``.
"""

from __future__ import annotations

import sys

from absl import flags, logging
from ml_collections import config_flags

from uisrnn_jax import checkpoint, experiment

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'Path to a config file.'
)
_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Checkpoints and metrics go here.'
)
_INPUT = flags.DEFINE_string(
  'input', None, 'infer: .npz to decode (default: the config test split).'
)
_OUTPUT = flags.DEFINE_string(
  'output', None, 'infer: where to write labels (.npz or .json).'
)
flags.mark_flags_as_required(['config', 'workdir'])


def train_main(argv: list[str]) -> None:
  """Trains (or resumes) a run in --workdir."""
  if len(argv) > 1:
    raise SystemExit(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.INFO)
  config = _CONFIG.value
  state = experiment.train_and_evaluate(config, _WORKDIR.value)
  print(
    f'trained {int(state.step)} steps: transition_bias='
    f'{float(state.transition_bias):.4f} crp_alpha={float(state.crp_alpha):.3f}'
    f' -> {_WORKDIR.value}'
  )


def infer_main(argv: list[str]) -> None:
  """Decodes with the newest checkpoint in --workdir and reports accuracy."""
  if len(argv) > 1:
    raise SystemExit(f'unexpected arguments: {argv[1:]}')
  config = _CONFIG.value
  try:
    state, _ = checkpoint.load_inference_state(_WORKDIR.value)
  except checkpoint.CheckpointError as e:
    raise SystemExit(f'error: {e}') from e
  if _INPUT.value:
    dataset = experiment.load_npz(_INPUT.value)
  else:
    _, dataset = experiment.load_splits(config)
    if dataset is None:
      raise SystemExit('error: no --input and no config.data.test_path')
  predicted = experiment.decode_dataset(
    state, dataset, config.decode, progress=None
  )
  if _OUTPUT.value:
    experiment.write_predictions(_OUTPUT.value, dataset, predicted)
    print(f'wrote labels of {len(predicted)} sequences to {_OUTPUT.value}')
  if dataset.labels is not None:
    report = experiment.accuracy_report(dataset, predicted)
    for i, score in enumerate(report['per_sequence']):
      name = dataset.ids[i] if dataset.ids else f'sequence {i}'
      print(f'  {name}: accuracy {score:.4f}')
    print(f'accuracy: {report["accuracy"]:.4f} over {len(predicted)} sequences')
  sys.stdout.flush()
