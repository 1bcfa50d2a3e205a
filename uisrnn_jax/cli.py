"""Command-line entry points (absl flags live here and nowhere else).

  python train.py --config=configs/toy.py --workdir=runs/toy
  python infer.py --config=configs/toy.py --workdir=runs/toy \
      [--input=FILE.npz|DIR|A.npz,B.npz] [--output=PRED.npz|PRED.json|DIR] \
      [--plot=timeline.png --plot_index=0] [--collar=0.25]

Any config field can be overridden, e.g. ``--config.train.learning_rate=0.01``.
"""

from __future__ import annotations

import sys

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from uisrnn_jax import compilation, config_check, errors, experiment

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'Path to a config file.'
)
_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Checkpoints and metrics go here.'
)
_INPUT = flags.DEFINE_string(
  'input',
  None,
  'infer: .npz file, directory of .npz files, or comma-separated list of '
  '.npz files to decode (default: the config test split).',
)
_OUTPUT = flags.DEFINE_string(
  'output',
  None,
  'infer: where to write labels: a .npz or .json file for one input, a '
  'directory (one <input name>.npz per input) for several.',
)
_PLOT = flags.DEFINE_string(
  'plot',
  None,
  'infer: save a PNG timeline of reference vs predicted speakers here.',
)
_PLOT_INDEX = flags.DEFINE_integer(
  'plot_index',
  0,
  'infer: which conversation --plot draws (counting across all inputs).',
)
_COLLAR = flags.DEFINE_float(
  'collar',
  0.25,
  'infer: DER collar in seconds, total width (pyannote.metrics: +-collar/2 '
  'around each reference boundary).',
)
_DISTRIBUTED = flags.DEFINE_bool(
  'distributed',
  False,
  'train: call jax.distributed.initialize() first (multi-host training; '
  'start the same command on every host, see the README).',
)
flags.mark_flags_as_required(['config', 'workdir'])


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a clear error for an unknown --config.* key.

  ml_collections raises a bare ``AttributeError`` (a traceback) for an
  override of a field the config does not have; this reports it like any
  other flag error, ``FATAL Flags parsing error: unknown config key ...``,
  and exits with status 1. Use as
  ``app.run(main, flags_parser=cli.parse_flags)``.
  """
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError) as e:
    detail = e.args[0] if e.args else str(e)
    overrides = [a.split('=')[0] for a in argv[1:] if a.startswith('--config.')]
    named = [a for a in overrides if a.rsplit('.', 1)[-1] in str(detail)]
    sys.stderr.write(
      f'FATAL Flags parsing error: unknown config key '
      f'{", ".join(named or overrides)} ({detail})\n'
    )
    sys.exit(1)


def train_main(argv: list[str]) -> None:
  """Trains (or resumes) a run in --workdir.

  Bad input (`uisrnn_jax.errors.UISRNNJaxError`: an invalid config, data
  file or checkpoint) exits with status 1 and ``error: <message>`` before
  anything is written. So does a checkpoint or metrics file that cannot be
  written (`errors.OutputWriteError`: a full disk, ...), naming the file and
  the cause; the checkpoints written before stay intact.
  """
  if len(argv) > 1:
    raise SystemExit(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.INFO)
  compilation.enable_cache()  # compiled programs reused across runs
  if _DISTRIBUTED.value:
    import jax

    jax.distributed.initialize()  # before anything else touches devices
  config = _CONFIG.value
  try:
    config_check.validate_config(config)
    state = experiment.train_and_evaluate(config, _WORKDIR.value)
  except (errors.UISRNNJaxError, errors.OutputWriteError) as e:
    raise SystemExit(f'error: {e}') from e
  print(
    f'trained {int(state.step)} steps: transition_bias='
    f'{float(state.transition_bias):.4f} crp_alpha={float(state.crp_alpha):.3f}'
    f' -> {_WORKDIR.value}'
  )


def print_infer_report(result: experiment.InferenceResult) -> None:
  """Prints the per-conversation table and the totals of `experiment.infer`."""
  report = result.report
  if report is not None:
    print(report.table())
    n = len(report.rows)
    print(f'accuracy: {report.accuracy:.4f} over {n} sequences (mean)')
    how = (
      f'collar {report.collar:g} s total width'
      if report.timed
      else 'no window times: frame units, no collar'
    )
    overlap = 'skipped' if report.skip_overlap else 'scored'
    print(
      f'DER: {report.der:.4f} (pyannote.metrics, accumulated over '
      f'conversations; {how}; overlap {overlap})'
    )
    print(f'JER: {report.jer:.4f} (pyannote.metrics, same settings)')
    print(
      f'speaker-count error: {report.speaker_count_error:.3f} (mean '
      f'|#predicted - #reference|; signed {report.speaker_count_bias:+.3f})'
    )
  elif result.accuracies:
    scores = [s for _, s in result.accuracies]
    for name, score in result.accuracies:
      print(f'  {name}: accuracy {score:.4f}')
    print(f'accuracy: {np.mean(scores):.4f} over {len(scores)} sequences')
    print('DER: not computed (pip install pyannote.metrics)')


def _print_file(
  result: experiment.InferenceResult, file: experiment.FileResult
) -> None:
  """Prints what `experiment.infer` did with one input, as it is done."""
  if file.output:
    print(f'wrote labels of {file.num_sequences} sequences to {file.output}')
  if result.many and file.report is not None:
    print(f'{file.path}: {file.report.summary()}')


def infer_main(argv: list[str]) -> None:
  """Decodes with the newest checkpoint in --workdir and reports scores.

  `experiment.infer` does the work: inputs are decoded one file at a time
  (bounded memory); with labels, this prints a per-conversation table, mean
  accuracy, DER and speaker-count error (`uisrnn_jax.evaluation`). Bad
  input (`errors.UISRNNJaxError`) and an output that cannot be written
  (`errors.OutputWriteError`) exit with status 1 and ``error: <message>``.
  """
  if len(argv) > 1:
    raise SystemExit(f'unexpected arguments: {argv[1:]}')
  compilation.enable_cache()  # compiled programs reused across runs
  try:
    result = experiment.infer(
      _CONFIG.value,
      _WORKDIR.value,
      inputs=_INPUT.value,
      output=_OUTPUT.value,
      collar=_COLLAR.value,
      plot=_PLOT.value,
      plot_index=_PLOT_INDEX.value,
      on_file=_print_file,
    )
  except (errors.UISRNNJaxError, errors.OutputWriteError) as e:
    raise SystemExit(f'error: {e}') from e
  print_infer_report(result)
  if result.plotted is not None:
    print(f'wrote timeline of {result.plotted} to {_PLOT.value}')
  sys.stdout.flush()
