"""Whole runs: data loading, train-and-checkpoint, decode-and-report.

These are the functions `train.py`, `infer.py` and the notebooks call; each
takes a config and paths, nothing global.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from uisrnn_jax import (
  checkpoint,
  config_check,
  decode,
  evals,
  evaluation,
  metric_writers,
  parallel,
  shards,
  toy,
)
from uisrnn_jax import data as data_lib
from uisrnn_jax import dataset as dataset_lib
from uisrnn_jax import rttm as rttm_lib
from uisrnn_jax import train as train_lib
from uisrnn_jax.dataset import Dataset
from uisrnn_jax.errors import ArgumentError, ConfigError, DataFormatError

METRICS_FILE = 'metrics.jsonl'


def load_splits(
  config: ml_collections.ConfigDict,
) -> tuple[Dataset | None, Dataset | None]:
  """Train and test data: the configured files, else generated toy data.

  Returns:
    ``(train, test)``; with files, a split whose path is empty is None.

  Raises:
    errors.ConfigError: no data files and no ``toy`` config group.
    errors.DataFormatError, errors.InputFileNotFoundError: see `dataset.load_npz`
      (embeddings must have ``config.model.observation_dim`` columns).
  """
  d = config.model.observation_dim
  if config.data.train_path or config.data.test_path:
    train = (
      dataset_lib.load_npz(config.data.train_path, observation_dim=d)
      if config.data.train_path
      else None
    )
    test = (
      dataset_lib.load_npz(config.data.test_path, observation_dim=d)
      if config.data.test_path
      else None
    )
    return train, test
  if 'toy' not in config:
    raise ConfigError(
      'config.data.train_path and test_path are empty and the config has no '
      "'toy' group to generate data from"
    )
  tr_x, tr_y, te_x, te_y = toy.toy_train_test(config.toy, config.seed, d)
  return Dataset(tr_x, tr_y), Dataset(te_x, te_y)


def _check_training_data(
  config: ml_collections.ConfigDict, train_data: Dataset | None
) -> None:
  """Raises unless ``train_data`` is labelled, valid training data."""
  if train_data is None:
    raise ConfigError(
      'training needs labelled data: config.data.train_path is empty while '
      'data.test_path is set'
    )
  where = config.data.train_path or 'the toy data'
  if train_data.labels is None:
    raise DataFormatError(
      f'{where}: has no labels; training needs labels str[N]'
    )
  for i, (seq, ids) in enumerate(
    zip(train_data.sequences, train_data.labels, strict=True)
  ):
    name = f'{where}: conversation {i}'
    data_lib.check_sequence(
      seq, observation_dim=config.model.observation_dim, name=name
    )
    data_lib.check_labels(ids, len(seq), name=f'{name} labels')


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  progress: bool | None = None,
) -> train_lib.TrainState:
  """Trains to ``config.train.train_iteration`` steps, resuming if possible.

  Checkpoints go to ``workdir`` every ``config.train.checkpoint_every`` steps
  and at the end; metrics to ``workdir/metrics.jsonl``. Rerunning with the
  same workdir resumes from the newest checkpoint and trains exactly as an
  uninterrupted run would have (see `train.fit`); temporary files a crash
  left there are removed.

  The config, the data and the checkpoint to resume from are all checked
  before anything is written.

  Returns:
    The final train state.

  Raises:
    errors.ConfigError: an invalid config (`config_check.validate_config`).
    errors.DataFormatError, errors.InputFileNotFoundError: a data file is
      missing or not in the documented format (see `dataset.load_npz`).
    errors.InvalidSequenceError, errors.InvalidLabelsError: invalid data.
    errors.CheckpointError: the newest checkpoint in ``workdir`` is
      unreadable or does not fit the config's model.
  """
  config_check.validate_config(config)
  shard_spec = config.data.get('train_shards', '')
  if shard_spec:
    shard_paths = shards.expand_shard_paths(shard_spec)
    train_data = None
  else:
    train_data, _ = load_splits(config)
    _check_training_data(config, train_data)
  state = train_lib.create_train_state(jax.random.key(config.seed), config)
  latest = checkpoint.latest_checkpoint(workdir)
  if latest is not None:
    state = checkpoint.restore_state(latest, state)
    logging.info('resuming from %s (step %d)', latest, int(state.step))
  checkpoint.make_directory(workdir)
  for path in checkpoint.remove_stale_temporaries(workdir):
    logging.warning('removed %s, left by an interrupted checkpoint write', path)
  start = int(state.step)
  remaining = config.train.train_iteration - start
  if remaining <= 0:
    logging.info('already trained for %d steps; nothing to do', start)
    return state
  every = max(int(config.train.checkpoint_every), 1)

  # With several processes (jax.distributed), all of them train and only
  # process 0 writes checkpoints and metrics.
  writes = jax.process_index() == 0

  def on_step(s):
    step = int(s.step)  # cheap: the host already knows the count
    if step % every == 0 and step < config.train.train_iteration:
      if writes:
        checkpoint.save_checkpoint(workdir, s, config)
      else:
        parallel.to_host(s)  # the gather every process must join

  writer = (
    metric_writers.JsonlWriter(os.path.join(workdir, METRICS_FILE))
    if writes
    else None
  )
  try:
    if train_data is None:  # shards: one at a time, estimates per shard
      state = shards.fit_sharded(
        state,
        shard_paths,
        config,
        steps_per_shard=config.train.steps_per_shard,
        num_steps=remaining,
        writer=writer,
        progress=progress,
        on_step=on_step,
      )
    else:
      state = train_lib.fit(
        state,
        train_data.sequences,
        train_data.labels,
        config,
        num_steps=remaining,
        writer=writer,
        progress=progress,
        on_step=on_step,
        update_estimates=start == 0,
      )
  finally:
    if writer is not None:
      writer.close()
  if writes:
    path = checkpoint.save_checkpoint(workdir, state, config)
    logging.info('saved %s', path)
  return state


def decode_dataset(
  state: train_lib.TrainState,
  dataset: Dataset,
  decode_config: Any,
  *,
  progress: bool | None = None,
) -> list[np.ndarray]:
  """Labels every conversation of ``dataset`` with a trained state.

  With several visible devices, every batch of utterances is split over
  them (`decode.predict_labels` with a mesh; same labels as one device).
  """
  return decode.predict_labels(
    state.params,
    dataset.sequences,
    transition_bias=float(state.transition_bias),
    crp_alpha=float(state.crp_alpha),
    config=decode_config,
    mesh=parallel.mesh_from_config(0),
    progress=progress,
  )


def accuracy_report(
  dataset: Dataset, predicted: list[np.ndarray]
) -> dict[str, Any]:
  """Per-conversation and mean frame accuracy (Hungarian matching)."""
  scores = [
    evals.frame_accuracy(ref, hyp)
    for ref, hyp in zip(dataset.labels, predicted, strict=True)
  ]
  return {'accuracy': float(np.mean(scores)), 'per_sequence': scores}


def write_predictions(
  path: str, dataset: Dataset, predicted: list[np.ndarray]
) -> None:
  """Writes labels as ``.npz`` (``predicted`` aligned to rows, ``offsets``)
  or ``.json``; with window times, also an RTTM next to it."""
  flat = np.concatenate(predicted).astype(np.int32)
  payload: bytes
  if path.endswith('.json'):
    record = {
      'offsets': dataset.offsets.tolist(),
      'predicted': [p.tolist() for p in predicted],
    }
    payload = json.dumps(record).encode()
  else:
    buf = io.BytesIO()
    np.savez_compressed(buf, predicted=flat, offsets=dataset.offsets)
    payload = buf.getvalue()
  checkpoint.atomic_write(path, payload)
  if dataset.starts is not None and dataset.ends is not None:
    rttm = os.path.splitext(path)[0] + '.rttm'
    text = rttm_lib.predictions_text(
      dataset.ids, dataset.starts, dataset.ends, predicted
    )
    checkpoint.atomic_write(rttm, text.encode())


def iter_decoded(
  state: train_lib.TrainState,
  paths: list[str],
  decode_config: Any,
  *,
  observation_dim: int | None = None,
  progress: bool | None = None,
  validate_first: bool = True,
):
  """Decodes files one at a time: yields ``(path, dataset, predicted)``.

  Only one file's data is held at a time (memory is bounded by the largest
  file, as long as the caller drops each dataset before the next). A tqdm
  bar (stderr) counts conversations over all files.

  Args:
    state: a trained state (e.g. from `checkpoint.load_inference_state`).
    paths: ``.npz`` files in the documented format.
    decode_config: the ``decode`` config group.
    observation_dim: checked against every file (None: the model's).
    progress: show the bar; None shows it when there is more than one file.
    validate_first: load (and drop) every file before decoding the first,
      so a bad file raises before anything is yielded or written; this
      reads every file twice.

  Yields:
    ``(path, Dataset, list of int32[N_c] labels)`` per file, in order.

  Raises:
    errors.DataFormatError and the decoding errors of `decode_dataset`, for
    the file where the problem is found.
  """
  from tqdm.auto import tqdm

  if observation_dim is None:
    observation_dim = int(state.params['sigma2'].shape[-1])
  if progress is None:
    progress = len(paths) > 1
  if validate_first:
    counts = [
      len(dataset_lib.load_npz(p, observation_dim=observation_dim).sequences)
      for p in paths
    ]
  else:
    counts = (
      [dataset_lib.count_conversations(p) for p in paths] if progress else []
    )
  total = sum(counts) if counts and None not in counts else None
  bar = tqdm(
    total=total, disable=not progress, unit='utt', desc='decoding files'
  )
  try:
    for i, path in enumerate(paths):
      bar.set_postfix_str(f'file {i + 1}/{len(paths)} {os.path.basename(path)}')
      dataset = dataset_lib.load_npz(path, observation_dim=observation_dim)
      predicted = decode_dataset(
        state, dataset, decode_config, progress=False if progress else None
      )
      bar.update(len(predicted))
      yield path, dataset, predicted
  finally:
    bar.close()


TEST_SPLIT = 'config test split'


@dataclasses.dataclass
class FileResult:
  """One decoded input of `infer`.

  Attributes:
    path: the input file (`TEST_SPLIT` for the config's test split).
    num_sequences: its conversations.
    output: where its labels were written, or None.
    report: its `evaluation.Report` (labelled input, pyannote.metrics
      installed), else None.
  """

  path: str
  num_sequences: int
  output: str | None = None
  report: Any = None


@dataclasses.dataclass
class InferenceResult:
  """What `infer` did and measured.

  Attributes:
    files: one `FileResult` per input, in order.
    many: several inputs (or a directory): results are worth showing per
      file.
    report: `evaluation.combine` of the files' reports (None without
      labels or without pyannote.metrics).
    accuracies: ``(conversation, frame accuracy)`` of every labelled
      conversation when DER cannot be computed (no pyannote.metrics), else
      empty.
    plotted: the conversation drawn by ``plot``, or None.
  """

  files: list[FileResult]
  many: bool
  report: Any = None
  accuracies: list[tuple[str, float]] = dataclasses.field(default_factory=list)
  plotted: str | None = None


def output_paths(
  inputs: list[str], output: str | None, many: bool
) -> list[str | None]:
  """Where `infer` writes each input's labels (None: nowhere).

  Args:
    inputs: the input files.
    output: a file (one input), a directory (created; one file per input,
      named like it), or None.
    many: treat ``output`` as a directory even without a trailing ``/``.

  Raises:
    errors.ArgumentError: two inputs share a file name, or an output would
      overwrite its input.
  """
  if not output:
    return [None] * len(inputs)
  as_directory = many or os.path.isdir(output) or output.endswith(os.sep)
  if not as_directory:
    return [output]
  names = [os.path.basename(p) for p in inputs]
  if len(set(names)) != len(names):
    raise ArgumentError(
      f'inputs share file names, so their outputs in {output} would '
      f'collide: {sorted(names)}'
    )
  outputs = [os.path.join(output, n) for n in names]
  for src, dst in zip(inputs, outputs):
    if os.path.exists(dst) and os.path.samefile(src, dst):
      raise ArgumentError(f'output {output} would overwrite input {src}')
  checkpoint.make_directory(output)
  return outputs


def timeline_args(
  dataset: Dataset, predicted: list[np.ndarray], c: int
) -> dict[str, Any]:
  """Arguments of `plots.plot_timeline` for conversation ``c``."""
  return dict(
    ref_labels=None if dataset.labels is None else dataset.labels[c],
    pred_labels=predicted[c],
    starts=None if dataset.starts is None else dataset.starts[c],
    ends=None if dataset.ends is None else dataset.ends[c],
    title=dataset.ids[c] if dataset.ids else f'seq{c}',
  )


def infer(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  inputs: str | None = None,
  output: str | None = None,
  collar: float = evaluation.DEFAULT_COLLAR,
  plot: str | None = None,
  plot_index: int = 0,
  on_file: Any = None,
) -> InferenceResult:
  """Decodes inputs with a run's newest checkpoint, writes and scores them.

  What ``infer.py`` does. Inputs are decoded one file at a time (bounded
  memory; see `iter_decoded`); every argument and input file is checked
  before anything is decoded or written.

  Args:
    config: the config (its ``decode`` group decodes; without ``inputs``,
      its test split is decoded).
    workdir: the run directory (or a checkpoint file).
    inputs: ``.npz`` files as `dataset.input_files` takes them, or None.
    output: where labels go (see `output_paths` and `write_predictions`).
    collar: DER collar in seconds, total width (see `evaluation`).
    plot: a PNG file for a timeline of one conversation, or None.
    plot_index: the conversation drawn, counting across all inputs.
    on_file: ``on_file(result, file)`` is called with the result so far
      and each `FileResult` as soon as that file is done (e.g. to print).

  Returns:
    The `InferenceResult`.

  Raises:
    errors.UISRNNJaxError: an invalid config, checkpoint, input or argument
      (`errors.ArgumentError`).
  """
  config_check.validate_config(config)
  state, _ = checkpoint.load_inference_state(workdir)
  if plot_index < 0:
    raise ArgumentError(f'plot_index must be >= 0, got {plot_index}')
  if inputs:
    paths = dataset_lib.input_files(inputs)
    many = len(paths) > 1 or os.path.isdir(inputs)
    if plot:  # refuse a bad plot_index before writing anything
      counts = [dataset_lib.count_conversations(p) for p in paths]
      if None not in counts and plot_index >= sum(counts):
        raise ArgumentError(
          f'plot_index={plot_index} but the inputs hold {sum(counts)} '
          'conversations'
        )
    outputs = output_paths(paths, output, many)
    decoded = iter_decoded(
      state,
      paths,
      config.decode,
      observation_dim=int(state.params['sigma2'].shape[-1]),
    )
  else:
    _, test = load_splits(config)
    if test is None:
      raise ConfigError(
        'nothing to decode: no input files and config.data.test_path is empty'
      )
    many, outputs = False, [output]
    decoded = iter(
      [(TEST_SPLIT, test, decode_dataset(state, test, config.decode))]
    )
  with_der = evaluation.available()
  result = InferenceResult(files=[], many=many)
  reports, seen, to_plot = [], 0, None
  for (path, dataset, predicted), out in zip(decoded, outputs, strict=True):
    file = FileResult(path, len(predicted), output=out)
    if out:
      write_predictions(out, dataset, predicted)
    if dataset.labels is not None:
      if with_der:
        file.report = evaluation.evaluate(dataset, predicted, collar=collar)
        reports.append(file.report)
      else:
        result.accuracies.extend(
          (dataset.ids[i] if dataset.ids else f'sequence {i}', score)
          for i, score in enumerate(
            accuracy_report(dataset, predicted)['per_sequence']
          )
        )
    if plot and seen <= plot_index < seen + len(predicted):
      to_plot = timeline_args(dataset, predicted, plot_index - seen)
    seen += len(predicted)
    result.files.append(file)
    if on_file is not None:
      on_file(result, file)
    del dataset, predicted  # one file at a time
  if reports:
    result.report = evaluation.combine(reports)
  if plot:
    if to_plot is None:
      raise ArgumentError(
        f'plot_index={plot_index} but there are only {seen} conversations'
      )
    write_timeline(plot, to_plot)
    result.plotted = to_plot['title']
  return result


def write_timeline(path: str, args: dict[str, Any]) -> None:
  """Draws `plots.plot_timeline` (``args``) into a file, atomically.

  The image format is the file's extension (``.png``, ``.svg``, ``.pdf``,
  ...; PNG without one).
  """
  from uisrnn_jax import plots

  ax = plots.plot_timeline(**args)
  buf = io.BytesIO()
  extension = os.path.splitext(path)[1][1:].lower()
  ax.figure.savefig(buf, format=extension or 'png', dpi=120)
  checkpoint.atomic_write(path, buf.getvalue())
