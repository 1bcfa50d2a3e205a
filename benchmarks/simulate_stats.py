"""LibriSim's statistics against `uisrnn_jax.simulate`'s librisim preset.

Plans conversations with ``--preset=librisim`` from the LibriSpeech audio
LibriSim was made from (``librispeech-samples/train-clean-100`` for train,
``test-other`` for dev), labels 1.6 s windows every 0.4 s as LibriSim did
(resemblyzer's ``compute_partial_slices`` with ``min_coverage=0.5``; each
window takes the speaker covering most of it, ties to the earlier entrant)
and prints both sets of statistics side by side, with the simulated ones
averaged over seeds. Their spread over seeds is the sampling spread of one
corpus of that size; ``z`` says how many such spreads LibriSim's value (one
draw of its recipe) lies from the simulated mean. The plan is what the RTTM records, so no audio is
rendered.

  python benchmarks/simulate_stats.py [--data=../shared/data] [--seeds=0,...,9]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from uisrnn_jax import simulate  # noqa: E402

WINDOW = 25600  # samples: 160 mel frames of 10 ms
FRAME = 160
STEP_FRAMES = 40  # 0.4 s
MIN_COVERAGE = 0.5


def window_slices(num_samples: int) -> np.ndarray:
  """int64[N, 2] sample ranges of resemblyzer's partial windows."""
  n_frames = int(np.ceil((num_samples + 1) / FRAME))
  steps = max(1, n_frames - WINDOW // FRAME + STEP_FRAMES + 1)
  starts = np.arange(0, steps, STEP_FRAMES) * FRAME
  if len(starts) > 1 and (num_samples - starts[-1]) / WINDOW < MIN_COVERAGE:
    starts = starts[:-1]
  return np.stack([starts, starts + WINDOW], axis=1)


def window_labels(conversation: simulate.Conversation) -> np.ndarray:
  """Majority speaker (index in entry order) of every window."""
  n = conversation.num_samples
  slices = np.minimum(window_slices(n), n)
  order = {s: i for i, s in enumerate(conversation.speakers)}
  cover = np.zeros((len(slices), len(order)))
  for t in conversation.turns:
    inside = np.minimum(slices[:, 1], t.end) - np.maximum(slices[:, 0], t.onset)
    cover[:, order[t.speaker]] += np.maximum(inside, 0)
  return np.argmax(cover, axis=1)  # first maximum: the earlier entrant


def statistics(
  labels: list[np.ndarray],
  durations: np.ndarray,
  turn_lengths: np.ndarray,
  num_turns: np.ndarray,
) -> dict[str, float]:
  """Corpus statistics from window labels and reference turns."""
  ks = np.array([len(set(lab.tolist())) for lab in labels])
  changes = sum(int(np.sum(lab[1:] != lab[:-1])) for lab in labels)
  pairs = sum(len(lab) - 1 for lab in labels)
  runs = []
  for lab in labels:
    cut = np.flatnonzero(lab[1:] != lab[:-1]) + 1
    runs.append(np.diff(np.concatenate([[0], cut, [len(lab)]])))
  runs = np.concatenate(runs)
  return {
    'conversations': len(labels),
    'speakers/conv': ks.mean(),
    'share k=2': np.mean(ks == 2),
    'share k=3': np.mean(ks == 3),
    'share k=4': np.mean(ks == 4),
    'duration s': durations.mean(),
    'duration min s': durations.min(),
    'duration max s': durations.max(),
    'rows/conv': np.mean([len(lab) for lab in labels]),
    'turns/conv': num_turns.mean(),
    'turn s': turn_lengths.mean(),
    'turn s median': np.median(turn_lengths),
    'turn windows': runs.mean(),
    'turn windows median': np.median(runs),
    'label-change fraction': changes / pairs,
  }


def librisim_statistics(path: str) -> dict[str, float]:
  z = np.load(path, allow_pickle=False)
  off = z['offsets']
  labels = []
  for a, b in zip(off[:-1], off[1:]):
    _, inverse = np.unique(z['labels'][a:b], return_inverse=True)
    labels.append(inverse)
  return statistics(
    labels,
    z['conversation_durations'].astype(np.float64),
    (z['turn_ends'] - z['turn_starts']).astype(np.float64),
    np.diff(z['turn_offsets']),
  )


def simulated_statistics(
  sources: simulate.Sources, options, *, seed: int, num_conversations: int
) -> dict[str, float]:
  conversations = simulate.plan(
    sources.lengths,
    sources.base,
    options,
    seed=seed,
    num_conversations=num_conversations,
  )
  sr = simulate.SAMPLE_RATE
  return statistics(
    [window_labels(c) for c in conversations],
    np.array([c.num_samples / sr for c in conversations]),
    np.array([t.length / sr for c in conversations for t in c.turns]),
    np.array([len(c.turns) for c in conversations]),
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    '--data',
    default=os.path.join(_ROOT, '..', 'shared', 'data'),
    help='directory holding librisim/ and librispeech-samples/',
  )
  parser.add_argument('--seeds', default='0,1,2,3,4,5,6,7,8,9')
  args = parser.parse_args()
  seeds = [int(s) for s in args.seeds.split(',')]
  options = simulate.Options(**simulate.PRESETS['librisim'])
  for split, audio in (('train', 'train-clean-100'), ('dev', 'test-other')):
    npz = os.path.join(args.data, 'librisim', f'{split}.npz')
    reference = librisim_statistics(npz)
    sources = simulate.load_sources(
      [os.path.join(args.data, 'librispeech-samples', audio)], options
    )
    runs = [
      simulated_statistics(
        sources,
        options,
        seed=s,
        num_conversations=int(reference['conversations']),
      )
      for s in seeds
    ]
    print(
      f'\n### {split}: librisim/{split}.npz vs --preset=librisim on '
      f'librispeech-samples/{audio} (seeds {args.seeds})\n'
    )
    print(
      '| statistic | LibriSim | simulated, mean ± sd over seeds | diff | z |'
    )
    print('|---|---|---|---|---|')
    for key, ref in reference.items():
      values = np.array([r[key] for r in runs])
      mean, sd = values.mean(), values.std()
      diff = (mean - ref) / ref * 100 if ref else float('nan')
      z = f'{(ref - mean) / sd:+.1f}' if sd > 0 else '-'
      print(
        f'| {key} | {ref:.4g} | {mean:.4g} ± {sd:.2g} | {diff:+.1f} % | {z} |'
      )


if __name__ == '__main__':
  main()
