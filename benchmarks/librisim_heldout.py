r"""LibriSim on unseen speakers of train's kind: held-out train speakers.

The dev split's 10 speakers are LibriSpeech test-other speakers with about
63 s from ten recordings each; the 200 train speakers (and the 51 of the
held-out final split) are train-clean-100 speakers with one utterance of
about 11 s each. A model trained on train meets, on dev, speakers whose
d-vectors vary more than any it has seen. This benchmark measures both
systems on unseen speakers of train's kind instead:

1. ``--held_out`` of the 197 speakers heard in train.npz (a seeded choice)
   are set aside. The model trains, with `configs/librisim.py`, on the train
   conversations that none of them speaks in (121 of 300 for 50 speakers).
2. Each held-out speaker's speech is cut into runs: maximal stretches of
   windows labelled with that speaker in any train conversation, less the
   window at each end that straddles a turn change.
3. ``--conversations`` conversations are simulated from those runs with the
   LibriSim recipe at the level of windows: 2-4 speakers, 31-90 s, turns of
   1-6 s cut from a random run of the speaker, the next speaker always a
   different one, every speaker entering within the first 60 % of the
   conversation. Windows are 0.4 s apart and 1.6 s long; DER reference turns
   are made from the window labels, the same for every system.

The same simulation from dev's speakers is a control: it shows what the
simulation itself changes (its joins are clean and its turns shorter than
the real ones). Real dev is scored too. Rows: this package (``--seeds``,
with means), spectralcluster 0.2.22 Turn-to-Diarize and ICASSP 2018 (see
benchmarks/librisim.py).

Usage (from the repository root):
  python benchmarks/librisim_heldout.py                  # seed 0
  python benchmarks/librisim_heldout.py --seeds=0,1,2    # three seeds + means

Needs: spectralcluster==0.2.22 and pyannote.metrics.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The sibling benchmark (this directory is sys.path[0] for a script).
import librisim as librisim_bench  # noqa: E402

from configs import librisim  # noqa: E402
from uisrnn_jax import dataset as dataset_lib  # noqa: E402

WINDOW_STEP_S = 0.4
WINDOW_LENGTH_S = 1.6


def speaker_runs(
  dataset: dataset_lib.Dataset, speakers: set[str]
) -> dict[str, list[np.ndarray]]:
  """Each speaker's runs of windows, less the turn-straddling end windows.

  Args:
    dataset: a labelled dataset.
    speakers: whose runs to collect.

  Returns:
    speaker -> list of float[n, D] runs of at least two windows.
  """
  runs: dict[str, list[np.ndarray]] = {s: [] for s in speakers}
  for x, labels in zip(dataset.sequences, dataset.labels):
    cuts = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    bounds = np.concatenate([[0], cuts, [len(labels)]])
    for start, end in zip(bounds[:-1], bounds[1:]):
      speaker = str(labels[start])
      if speaker not in runs:
        continue
      # The first and last windows of a run also cover the neighbour's turn.
      lo = start + (start > 0)
      hi = end - (end < len(labels))
      if hi - lo >= 2:
        runs[speaker].append(x[lo:hi])
  return runs


def simulate(
  runs: dict[str, list[np.ndarray]], num: int, rng: np.random.Generator
) -> dataset_lib.Dataset:
  """``num`` conversations from ``runs`` (the LibriSim recipe on windows).

  Args:
    runs: `speaker_runs` output; speakers without runs are skipped.
    num: conversations to make.
    rng: the only source of randomness.

  Returns:
    A dataset with sequences, labels, window starts/ends and ids.
  """
  pool = sorted(s for s in runs if runs[s])
  if len(pool) < 4:
    raise ValueError(f'need at least 4 speakers with runs, got {len(pool)}')
  out = dataset_lib.Dataset(sequences=[], labels=[], starts=[], ends=[], ids=[])
  for c in range(num):
    chosen = [
      str(s) for s in rng.choice(pool, size=rng.integers(2, 5), replace=False)
    ]
    length = int(rng.uniform(31, 90) / WINDOW_STEP_S)
    # Speaker 2 takes the second turn; speakers 3.. the first turn after
    # their entry time.
    entries = sorted(rng.uniform(0, 0.6 * length, size=len(chosen) - 2))
    waiting, spoken = chosen[1:], [chosen[0]]
    speaker, parts, labels = chosen[0], [], []
    while length - len(labels) >= 3:
      turn = max(2, round(rng.uniform(1, 6) / WINDOW_STEP_S))
      run = runs[speaker][rng.integers(len(runs[speaker]))]
      start = rng.integers(0, max(len(run) - turn, 0) + 1)
      piece = run[start : start + turn][: length - len(labels)]
      parts.append(piece)
      labels += [speaker] * len(piece)
      due = bool(entries) and len(labels) >= entries[0]
      # Latecomers still waiting near the end enter at once (6 s each).
      late = length - len(labels) < len(waiting) * round(6 / WINDOW_STEP_S)
      if waiting and (len(spoken) == 1 or due or late):
        if len(spoken) > 1:
          entries.pop(0)
        speaker = waiting.pop(0)
        spoken.append(speaker)
      else:
        speaker = str(rng.choice([s for s in spoken if s != speaker]))
    x = np.concatenate(parts)
    starts = WINDOW_STEP_S * np.arange(len(x))
    out.sequences.append(x)
    out.labels.append(np.array(labels))
    out.starts.append(starts)
    out.ends.append(starts + WINDOW_LENGTH_S)
    out.ids.append(f'simulated_{c:04d}')
  return out


def held_out_split(
  path: str, num_held_out: int, seed: int, workdir: str
) -> tuple[set[str], str, dataset_lib.Dataset]:
  """Holds out speakers of ``path``; writes the training conversations.

  Returns:
    (held-out speakers, path of an .npz with the train conversations none of
    them speaks in, the whole of ``path`` as a dataset).
  """
  dataset = dataset_lib.load_npz(path)
  pool = sorted({str(s) for labels in dataset.labels for s in labels})
  rng = np.random.default_rng(seed)
  held = {str(s) for s in rng.choice(pool, size=num_held_out, replace=False)}
  keep = [
    c
    for c, labels in enumerate(dataset.labels)
    if not held.intersection(labels.tolist())
  ]
  train = dataset.subset(keep)
  train_path = os.path.join(workdir, 'train_without_held_out.npz')
  dataset_lib.write_npz(
    train_path,
    dataset_lib.Dataset(train.sequences, train.labels),
    dtype=np.float32,
    compress=False,
  )
  print(
    f'{num_held_out} of {len(pool)} train speakers held out; training on '
    f'{len(keep)} of {len(dataset.sequences)} conversations.',
    flush=True,
  )
  return held, train_path, dataset


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--data_dir', default=librisim.DATA_DIR)
  parser.add_argument('--held_out', type=int, default=50)
  parser.add_argument('--conversations', type=int, default=80)
  parser.add_argument('--split_seed', type=int, default=0)
  parser.add_argument(
    '--seeds',
    default='0',
    help='comma-separated training seeds for our rows (mean rows follow)',
  )
  args = parser.parse_args(argv)
  load_before = os.getloadavg()
  dev = dataset_lib.load_npz(os.path.join(args.data_dir, 'dev.npz'))
  with tempfile.TemporaryDirectory(prefix='librisim_heldout_') as tmp:
    held, train_path, train_all = held_out_split(
      os.path.join(args.data_dir, 'train.npz'),
      args.held_out,
      args.split_seed,
      tmp,
    )
    rng = np.random.default_rng(args.split_seed + 1)
    evaluated = {
      'Simulated from held-out train speakers': simulate(
        speaker_runs(train_all, held), args.conversations, rng
      ),
      'Simulated from dev speakers (control)': simulate(
        speaker_runs(dev, {str(s) for x in dev.labels for s in x}),
        args.conversations,
        rng,
      ),
      'LibriSim dev': dev,
    }
    rows = {title: [] for title in evaluated}
    for seed in (int(x) for x in args.seeds.split(',')):
      trained = librisim_bench.train_ours(train_path, seed)
      trained['name'] = trained['name'].replace(
        'seed', 'trained without the held-out speakers, seed'
      )
      for title, dataset in evaluated.items():
        rows[title].extend(librisim_bench.decode_ours(trained, dataset))
  clusterers = librisim_bench.spectral_clusterers()
  for title, dataset in evaluated.items():
    for name in (librisim_bench.TURN_TO_DIARIZE, librisim_bench.ICASSP2018):
      rows[title].append(
        librisim_bench.run_spectral(name, clusterers[name], dataset)
      )
    librisim_bench.print_table(title, dataset, rows[title], load_before)
  sys.stdout.flush()


if __name__ == '__main__':
  main()
