"""Command-line entry points (absl flags live here and nowhere else).

  python train.py --config=configs/toy.py --workdir=runs/toy
  python infer.py --config=configs/toy.py --workdir=runs/toy \
      [--input=FILE.npz|DIR|A.npz,B.npz] [--output=PRED.npz|PRED.json|DIR] \
      [--plot=timeline.png --plot_index=0] [--collar=0.25]

Any config field can be overridden, e.g. ``--config.train.learning_rate=0.01``.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from uisrnn_jax import checkpoint, config_check, errors, experiment

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
  anything is written.
  """
  if len(argv) > 1:
    raise SystemExit(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.INFO)
  from uisrnn_jax import compilation  # compiled programs reused across runs

  compilation.enable_cache()
  if _DISTRIBUTED.value:
    import jax

    jax.distributed.initialize()  # before anything else touches devices
  config = _CONFIG.value
  try:
    config_check.validate_config(config)
    state = experiment.train_and_evaluate(config, _WORKDIR.value)
  except errors.UISRNNJaxError as e:
    raise SystemExit(f'error: {e}') from e
  print(
    f'trained {int(state.step)} steps: transition_bias='
    f'{float(state.transition_bias):.4f} crp_alpha={float(state.crp_alpha):.3f}'
    f' -> {_WORKDIR.value}'
  )


def _output_paths(inputs: list[str], output: str | None, many: bool):
  """Output file per input (None: write nothing); checked before decoding."""
  if not output:
    return [None] * len(inputs)
  as_directory = many or os.path.isdir(output) or output.endswith(os.sep)
  if not as_directory:
    return [output]
  names = [os.path.basename(p) for p in inputs]
  if len(set(names)) != len(names):
    raise SystemExit(
      'error: inputs share file names, so their outputs in '
      f'{output} would collide: {sorted(names)}'
    )
  outputs = [os.path.join(output, n) for n in names]
  for src, dst in zip(inputs, outputs):
    if os.path.exists(dst) and os.path.samefile(src, dst):
      raise SystemExit(f'error: --output={output} would overwrite input {src}')
  os.makedirs(output, exist_ok=True)
  return outputs


def _print_report(dataset_reports: list, accuracy_only: list) -> None:
  """Prints the per-conversation table and the totals."""
  from uisrnn_jax import evaluation

  if dataset_reports:
    report = evaluation.combine(dataset_reports)
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
    print(
      f'speaker-count error: {report.speaker_count_error:.3f} (mean '
      f'|#predicted - #reference|; signed {report.speaker_count_bias:+.3f})'
    )
  elif accuracy_only:
    scores = [s for _, s in accuracy_only]
    for name, score in accuracy_only:
      print(f'  {name}: accuracy {score:.4f}')
    print(f'accuracy: {np.mean(scores):.4f} over {len(scores)} sequences')
    print('DER: not computed (pip install pyannote.metrics)')


def infer_main(argv: list[str]) -> None:
  """Decodes with the newest checkpoint in --workdir and reports scores.

  Inputs are decoded one file at a time (bounded memory). With labels, it
  prints a per-conversation table, mean accuracy, DER and speaker-count
  error (`uisrnn_jax.evaluation`). Bad input (`errors.UISRNNJaxError`)
  exits with status 1 and ``error: <message>``.
  """
  if len(argv) > 1:
    raise SystemExit(f'unexpected arguments: {argv[1:]}')
  from uisrnn_jax import evaluation

  config = _CONFIG.value
  from uisrnn_jax import compilation  # compiled programs reused across runs

  compilation.enable_cache()
  try:
    config_check.validate_config(config)
    state, _ = checkpoint.load_inference_state(_WORKDIR.value)
  except errors.UISRNNJaxError as e:
    raise SystemExit(f'error: {e}') from e
  if _PLOT_INDEX.value < 0:
    raise SystemExit(
      f'error: --plot_index must be >= 0, got {_PLOT_INDEX.value}'
    )
  dim = int(state.params['sigma2'].shape[-1])
  try:
    if _INPUT.value:
      inputs = experiment.input_files(_INPUT.value)
      many = len(inputs) > 1 or os.path.isdir(_INPUT.value)
      if _PLOT.value:  # refuse a bad --plot_index before writing anything
        counts = [experiment.count_conversations(p) for p in inputs]
        if None not in counts and _PLOT_INDEX.value >= sum(counts):
          raise SystemExit(
            f'error: --plot_index={_PLOT_INDEX.value} but the inputs hold '
            f'{sum(counts)} conversations'
          )
      outputs = _output_paths(inputs, _OUTPUT.value, many)
      decoded = experiment.iter_decoded(
        state, inputs, config.decode, observation_dim=dim
      )
    else:
      _, dataset = experiment.load_splits(config)
      if dataset is None:
        raise SystemExit('error: no --input and no config.data.test_path')
      many = False
      outputs = [_OUTPUT.value]
      predicted = experiment.decode_dataset(state, dataset, config.decode)
      decoded = iter([('config test split', dataset, predicted)])
    with_der = evaluation.available()
    reports, accuracy_only, seen, to_plot = [], [], 0, None
    for (path, dataset, predicted), out in zip(decoded, outputs, strict=True):
      if out:
        experiment.write_predictions(out, dataset, predicted)
        print(f'wrote labels of {len(predicted)} sequences to {out}')
      if dataset.labels is not None:
        if with_der:
          report = evaluation.evaluate(dataset, predicted, collar=_COLLAR.value)
          reports.append(report)
          if many:
            print(f'{path}: {report.summary()}')
        else:
          accuracy_only.extend(
            (dataset.ids[i] if dataset.ids else f'sequence {i}', score)
            for i, score in enumerate(
              experiment.accuracy_report(dataset, predicted)['per_sequence']
            )
          )
      if _PLOT.value and seen <= _PLOT_INDEX.value < seen + len(predicted):
        to_plot = _timeline_args(dataset, predicted, _PLOT_INDEX.value - seen)
      seen += len(predicted)
      del dataset, predicted  # one file at a time
  except errors.UISRNNJaxError as e:
    raise SystemExit(f'error: {e}') from e
  _print_report(reports, accuracy_only)
  if _PLOT.value:
    if to_plot is None:
      raise SystemExit(
        f'error: --plot_index={_PLOT_INDEX.value} but there are only {seen} '
        'conversations'
      )
    from uisrnn_jax import plots

    ax = plots.plot_timeline(**to_plot)
    ax.figure.savefig(_PLOT.value, dpi=120)
    print(f'wrote timeline of {to_plot["title"]} to {_PLOT.value}')
  sys.stdout.flush()


def _timeline_args(dataset, predicted, c: int) -> dict:
  """Arguments of `plots.plot_timeline` for conversation ``c``."""
  name = dataset.ids[c] if dataset.ids else f'seq{c}'
  return dict(
    ref_labels=None if dataset.labels is None else dataset.labels[c],
    pred_labels=predicted[c],
    starts=None if dataset.starts is None else dataset.starts[c],
    ends=None if dataset.ends is None else dataset.ends[c],
    title=name,
  )
