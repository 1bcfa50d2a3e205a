r"""LibriSim dev: this package against uisrnn 0.1.2 and spectralcluster 0.2.22.

One markdown table on the dev split of the LibriSim data (real GE2E
d-vectors, see ../shared/data/librisim/README.md): frame accuracy (Hungarian
matching), DER (pyannote.metrics, collar 0.25 s, no overlap in this data),
speaker-count error (mean |predicted - true| speakers per conversation),
training time and decoding time.

Rows:
- ``uisrnn_jax``: `configs/librisim.py`, trained on train.npz here (one row
  per ``--seeds`` seed, then their mean). When the config resegments, the
  same model's beam search alone gets a row of its own too.
- ``uisrnn 0.1.2``: Google's PyTorch package with its default model and
  training arguments (hidden 512, batch 10, 10 permutations, lr 1e-3),
  ``--uisrnn_iterations`` iterations on the same train data + 1e-6 (it treats
  an exact 0.0 as padding and its sigma2 prior then gives NaN). By default
  its trained weights are decoded with this package's beam search in
  ``mean_rule='reference'`` mode with uisrnn's default inference arguments
  (beam 10, look_ahead 1, test_iteration 2), which reproduces uisrnn's
  decisions for the same weights (tests/decode_parity_test.py) and takes seconds
  instead of tens of minutes; ``--uisrnn_decode=torch`` runs its own
  ``predict`` instead.
- ``spectralcluster 0.2.22``: unsupervised, no training. ``turn-to-diarize``
  is its Turn-to-Diarize configuration without the speaker-turn constraint
  (which needs a turn detector): RowWiseThreshold + Symmetrize refinement,
  autotuned p-percentile, GraphCut Laplacian, row-wise renormalisation;
  ``icassp2018`` is its ICASSP 2018 configuration. Both: 2-7 clusters,
  cosine distance. Its autotune starts afresh for every conversation (see
  `spectral_clusterers` for the row that does not). Turn-to-Diarize's labels
  are also shown after our resegmentation (with our last model's sigma2 and
  p0), so that the refinement is credited to neither side alone.

Usage (from the repository root):
  python benchmarks/librisim.py                          # all rows
  python benchmarks/librisim.py --uisrnn_iterations=7000 # the issue's run
  python benchmarks/librisim.py --only=spectral          # fast rows only
  python benchmarks/librisim.py --ours_workdir=runs/librisim  # reuse a run
  python benchmarks/librisim.py --seeds=0,1,2        # three seeds + means

Needs: pip install -e '.[reference]' (uisrnn 0.1.2, torch), spectralcluster
==0.2.22 and pyannote.metrics.
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import platform
import sys
import tempfile
import time
import types
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The sibling benchmark (this directory is sys.path[0] for a script).
import train_speed  # noqa: E402

from configs import librisim  # noqa: E402
from uisrnn_jax import (  # noqa: E402
  checkpoint,
  decode,
  evaluation,
  experiment,
  model,
  resegment,
)
from uisrnn_jax import dataset as dataset_lib  # noqa: E402

# Keeps uisrnn 0.1.2 from taking 0.0 for padding.
REFERENCE_OFFSET = train_speed.REFERENCE_OFFSET
COLLAR = 0.25
TURN_TO_DIARIZE = 'spectralcluster 0.2.22, turn-to-diarize (no turn constraint)'
ICASSP2018 = 'spectralcluster 0.2.22, icassp2018'


# Scoring --------------------------------------------------------------------


def score(dataset, predicted) -> dict[str, float]:
  """Accuracy, DER and speaker-count error (`uisrnn_jax.evaluation`)."""
  report = evaluation.evaluate(dataset, predicted, collar=COLLAR)
  return {
    'accuracy': report.accuracy,
    'der': report.der,
    'speaker_count_error': report.speaker_count_error,
    'mean_speakers': float(np.mean([r.num_predicted for r in report.rows])),
  }


# Systems ------------------------------------------------------------------


def train_ours(train_path: str, seed: int, workdir: str = '') -> dict:
  """Trains `configs/librisim.py` on ``train_path`` (or loads ``workdir``).

  Returns:
    ``state``, ``config``, ``train_s`` (None when loaded) and ``name``.
  """
  config = librisim.get_config()
  config.seed = seed
  config.data.train_path = train_path
  config.data.test_path = ''
  train_s = None
  if workdir:
    state, _ = checkpoint.load_inference_state(workdir)
  else:
    with tempfile.TemporaryDirectory(prefix='librisim_bench_') as tmp:
      tic = time.perf_counter()
      state = experiment.train_and_evaluate(config, tmp, progress=False)
      train_s = time.perf_counter() - tic
  name = (
    f'uisrnn_jax, configs/librisim.py ({config.train.train_iteration} steps,'
    f' hidden {config.model.rnn_hidden_size}, seed {seed})'
  )
  return {'state': state, 'config': config, 'train_s': train_s, 'name': name}


def decode_ours(trained: dict, dataset) -> list[dict]:
  """Rows of a `train_ours` model on ``dataset``: the config's decoding, then
  the same with its offline steps taken away one at a time (the count
  search, the neighbour emission, the resegmentation), whichever it uses."""
  config, name = trained['config'], trained['name']
  decode_config = config.decode
  rounds = decode_config.resegment_iterations
  emission = decode_config.get('resegment_emission', 'centroid')
  search = decode_config.get('count_search', 0)
  steps = []
  if rounds:
    steps.append(f'resegmentation ({rounds} rounds, {emission})')
  if search:
    steps.append(
      f'count search (+-{search}, penalty {decode_config.count_penalty:g}'
      ' log N)'
    )
  label = f'{name}, beam search' + ''.join(f' + {s}' for s in steps)
  variants = [(label, decode_config, 'ours')]

  def without(group, description, **fields):
    plain = decode_config.copy_and_resolve_references()
    plain.update(fields)
    variants.append((f'{name}, {description}', plain, group))

  if search:
    without(
      'ours, no count search',
      f'beam search + resegmentation ({rounds} rounds, {emission})'
      if rounds
      else 'beam search only',
      count_search=0,
    )
  if rounds and emission != 'centroid':
    without(
      'ours, centroid resegmentation',
      f'beam search + resegmentation ({rounds} rounds, centroid)',
      count_search=0,
      resegment_emission='centroid',
    )
  if rounds or search:
    without(
      'ours, beam search only',
      'beam search only',
      count_search=0,
      resegment_iterations=0,
    )
  rows = []
  for label, decode_config, group in variants:
    tic = time.perf_counter()
    predicted = experiment.decode_dataset(
      trained['state'], dataset, decode_config, progress=False
    )
    rows.append(
      {
        'name': label,
        'group': group,
        'predicted': predicted,
        'train_s': trained['train_s'],
        'decode_s': time.perf_counter() - tic,
      }
    )
  return rows


def resegmented(row: dict, state, dev) -> dict:
  """``row``'s labels refined by `uisrnn_jax.resegment` with the trained
  model's sigma2 and p0 and the config's resegmentation settings (the same
  step as our own decoding's)."""
  settings = librisim.get_config().decode
  weight = 1.0 / (2.0 * np.asarray(state.params['sigma2'], np.float32))
  refine = jax.jit(
    jax.vmap(
      functools.partial(
        resegment.resegment,
        weight=weight,
        transition_bias=float(state.transition_bias),
        iterations=settings.resegment_iterations,
        num_slots=settings.max_speakers,
        emission=settings.resegment_emission,
        neighbours=settings.resegment_neighbours,
        exclude=settings.resegment_exclude,
      )
    )
  )
  tic = time.perf_counter()
  predicted = [None] * len(dev.sequences)
  # The decoder's own batching: by bucketed length, padded with a mask.
  lengths = [len(s) for s in dev.sequences]
  for length, idx in decode.length_batches(lengths, 64, 64):
    obs, mask = decode.pad_batch([dev.sequences[i] for i in idx], length)
    labels = np.zeros(mask.shape, np.int32)
    for r, i in enumerate(idx):
      labels[r, : lengths[i]] = row['predicted'][i]
    out = np.asarray(refine(obs, mask, labels))
    for r, i in enumerate(idx):
      predicted[i] = out[r, : lengths[i]]
  return {
    'name': f'{row["name"]} + uisrnn_jax resegmentation (our sigma2, p0)',
    'predicted': predicted,
    'train_s': None,
    'decode_s': row['decode_s'] + time.perf_counter() - tic,
  }


def run_uisrnn(args, train, dev) -> dict:
  import torch  # noqa: PLC0415
  import uisrnn  # noqa: PLC0415

  torch.manual_seed(0)
  torch.set_num_threads(args.torch_threads)
  # The reference's own defaults, as benchmarks/train_speed.py takes them.
  model_args, training_args = train_speed.reference_args(args.uisrnn_iterations)
  inference_args = types.SimpleNamespace(
    beam_size=10, look_ahead=1, test_iteration=2
  )
  ref = uisrnn.UISRNN(model_args)
  seqs = [s + REFERENCE_OFFSET for s in train.sequences]
  ids = [list(map(str, y)) for y in train.labels]
  tic = time.perf_counter()
  ref.fit(seqs, ids, training_args)
  train_s = time.perf_counter() - tic
  dev_seqs = [s + REFERENCE_OFFSET for s in dev.sequences]
  tic = time.perf_counter()
  if args.uisrnn_decode == 'torch':
    predicted = [np.asarray(ref.predict(s, inference_args)) for s in dev_seqs]
    how = 'its own predict'
  else:
    state = {
      k: v.detach().numpy() for k, v in ref.rnn_model.state_dict().items()
    }
    params = model.params_from_torch(
      state,
      ref.rnn_init_hidden.detach().numpy(),
      ref.sigma2.detach().numpy(),
    )
    settings = decode.DecodeSettings(
      beam_size=10, look_ahead=1, test_iteration=2, mean_rule='reference'
    )
    predicted = decode.predict_labels(
      params,
      dev_seqs,
      transition_bias=float(ref.transition_bias),
      crp_alpha=float(ref.crp_alpha),
      config=settings,
      progress=False,
    )
    how = "decoded by uisrnn_jax, mean_rule='reference'"
  decode_s = time.perf_counter() - tic
  return {
    'name': f'uisrnn 0.1.2 ({args.uisrnn_iterations} iterations, {how})',
    'predicted': predicted,
    'train_s': train_s,
    'decode_s': decode_s,
  }


def spectral_clusterers() -> dict[str, Callable[[], Any]]:
  """Name -> a function returning the clusterer for the next conversation.

  spectralcluster 0.2.22's ``AutoTune.tune`` narrows its p-percentile range
  and halves its search step inside every ``predict`` call and keeps them,
  so one clusterer (and every config sharing the module-level
  ``configs.turntodiarize_auto_tune``) searches later conversations in a
  shrinking range around the earlier conversations' best. The main row
  autotunes each conversation from the configured range, on a copy; the
  "carried" row keeps one clusterer for the whole split, as this benchmark
  did before.
  """
  from spectralcluster import configs  # noqa: PLC0415

  # A copy taken before any predict call has mutated the shared object.
  autotune = copy.deepcopy(configs.turntodiarize_auto_tune)

  def turn_to_diarize() -> Any:
    return configs.SpectralClusterer(
      min_clusters=2,
      max_clusters=7,
      refinement_options=configs.turntodiarize_refinement_options,
      autotune=copy.deepcopy(autotune),
      laplacian_type=configs.LaplacianType.GraphCut,
      row_wise_renorm=True,
      custom_dist='cosine',
    )

  carried = turn_to_diarize()
  return {
    TURN_TO_DIARIZE: turn_to_diarize,
    f'{TURN_TO_DIARIZE}, autotune state carried across conversations': (
      lambda: carried
    ),
    ICASSP2018: lambda: copy.deepcopy(configs.icassp2018_clusterer),
  }


def run_spectral(name: str, make_clusterer: Callable[[], Any], dataset) -> dict:
  """Clusters every conversation of ``dataset``; a row of the table."""
  tic = time.perf_counter()
  predicted = [
    np.asarray(make_clusterer().predict(s.astype(np.float64)))
    for s in dataset.sequences
  ]
  return {
    'name': name,
    'predicted': predicted,
    'train_s': None,
    'decode_s': time.perf_counter() - tic,
  }


def print_table(title: str, dataset, rows: list[dict], load_before) -> None:
  """The markdown table of ``rows`` scored on ``dataset``, with mean rows
  for the groups that have several seeds."""
  n_ref = np.mean([len(set(r.tolist())) for r in dataset.labels])
  print(
    f'\n{title}: {len(dataset.sequences)} conversations, '
    f'{sum(len(s) for s in dataset.sequences)} windows, {n_ref:.2f} '
    f'speakers per conversation. DER: pyannote.metrics, collar {COLLAR} s.'
  )
  print(
    f'Machine: {platform.machine()}, {os.cpu_count()} cores; load average '
    f'{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after.\n'
  )
  print(
    '| system | accuracy | DER | speaker-count error | mean speakers '
    '| training s | decoding s |'
  )
  print('|---|---:|---:|---:|---:|---:|---:|')
  groups: dict[str, list[dict]] = {}
  for row in rows:
    s = score(dataset, row['predicted'])
    if 'group' in row:
      groups.setdefault(row['group'], []).append(
        {**s, 'train_s': row['train_s'], 'decode_s': row['decode_s']}
      )
    train_s = '—' if row['train_s'] is None else f'{row["train_s"]:.0f}'
    print(
      f'| {row["name"]} | {s["accuracy"]:.3f} | {s["der"]:.3f} | '
      f'{s["speaker_count_error"]:.2f} | {s["mean_speakers"]:.2f} | '
      f'{train_s} | {row["decode_s"]:.1f} |'
    )
  for group, scores in groups.items():
    if len(scores) < 2:
      continue
    mean = {
      k: np.mean([x[k] for x in scores if x[k] is not None] or [np.nan])
      for k in scores[0]
    }
    spread = {
      k: (min(x[k] for x in scores), max(x[k] for x in scores))
      for k in ('accuracy', 'der')
    }
    print(
      f'| **{group}, mean of {len(scores)} seeds** (range: accuracy '
      f'{spread["accuracy"][0]:.3f}–{spread["accuracy"][1]:.3f}, DER '
      f'{spread["der"][0]:.3f}–{spread["der"][1]:.3f}) | '
      f'{mean["accuracy"]:.3f} | {mean["der"]:.3f} | '
      f'{mean["speaker_count_error"]:.2f} | {mean["mean_speakers"]:.2f} | '
      f'{mean["train_s"]:.0f} | {mean["decode_s"]:.1f} |'
    )


# Main -----------------------------------------------------------------------


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--data_dir', default=librisim.DATA_DIR)
  parser.add_argument(
    '--only',
    default='ours,uisrnn,spectral',
    help='comma-separated subset of ours, uisrnn, spectral',
  )
  parser.add_argument('--ours_workdir', default='')
  parser.add_argument(
    '--seeds',
    default='0',
    help='comma-separated training seeds for our rows (mean rows follow)',
  )
  parser.add_argument('--uisrnn_iterations', type=int, default=1000)
  parser.add_argument(
    '--uisrnn_decode', choices=('jax', 'torch'), default='jax'
  )
  parser.add_argument('--torch_threads', type=int, default=1)
  args = parser.parse_args(argv)
  train_path = os.path.join(args.data_dir, 'train.npz')
  dev_path = os.path.join(args.data_dir, 'dev.npz')
  dev = dataset_lib.load_npz(dev_path)
  only = set(args.only.split(','))
  load_before = os.getloadavg()
  rows = []
  state = None
  if 'ours' in only:
    seeds = [int(x) for x in args.seeds.split(',')]
    if args.ours_workdir:
      seeds = seeds[:1]
    for seed in seeds:
      trained = train_ours(train_path, seed, args.ours_workdir)
      rows.extend(decode_ours(trained, dev))
      state = trained['state']
  if 'uisrnn' in only:
    rows.append(run_uisrnn(args, dataset_lib.load_npz(train_path), dev))
  if 'spectral' in only:
    rounds = librisim.get_config().decode.resegment_iterations
    for name, clusterer in spectral_clusterers().items():
      rows.append(run_spectral(name, clusterer, dev))
      if state is not None and rounds and name == TURN_TO_DIARIZE:
        rows.append(resegmented(rows[-1], state, dev))
  print_table('LibriSim dev', dev, rows, load_before)
  if 'uisrnn' in only and args.uisrnn_iterations < 7000:
    print(
      '\nFor comparison, measured by the issue author on this dev split: '
      'uisrnn 0.1.2 after 7000 iterations (956 s): accuracy 0.732, DER '
      '0.259, ~5 speakers predicted per conversation.'
    )
  sys.stdout.flush()


if __name__ == '__main__':
  main()
