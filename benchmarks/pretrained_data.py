r"""Training data for the shipped model: simulate, embed, write ``.npz``.

From single-speaker audio (by default the 200 LibriSim train speakers in
``../shared/data/librispeech-samples/train-clean-100``) this makes
conversations with `uisrnn_jax.simulate` and embeds them as LibriSim was
made (../shared/data/librisim/README.md), in memory, without writing audio:

1. each speaker's audio is read and levelled by `simulate.load_sources`,
   then cut to the speech `audio.speech_regions` finds (silero-vad, the
   speech detection of `uisrnn-diarize`; LibriSim trimmed its sources with
   webrtcvad the same way);
2. conversations are planned and mixed by `simulate.plan` / `simulate.render`
   with the LibriSim preset and the options given here (speed-perturbed
   pseudo-speakers, pauses, overlap);
3. with ``--augment=recording``, every turn's audio gets its own random
   "recording": a gain, a band limit and spectral tilt, and noise (see
   `recording_augment`), so that one speaker's turns vary the way different
   recordings of a speaker do (LibriSim dev speakers have ten recordings;
   train speakers one);
4. the mix is embedded whole by `audio.embed_audio` (``vad=None``; it
   normalises the volume as resemblyzer does and cuts 1.6 s windows every
   0.4 s); each window is labelled with the speaker covering most of its
   samples (ties go to the speaker who entered first).

The output is the project's ``.npz`` input format (`dataset.load_npz`):
embeddings float16, labels, starts, ends, offsets, conversation ids and the
reference turns.

Usage (from the repository root; about 4 min per 300 conversations on 2
idle cores)::

  python benchmarks/pretrained_data.py --output=runs/pretrained/train.npz \
    --num_conversations=300 --seeds=0,1 --augment=recording
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from uisrnn_jax import audio, dataset, simulate  # noqa: E402

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = os.path.normpath(
  os.path.join(
    _REPO, '..', 'shared', 'data', 'librispeech-samples', 'train-clean-100'
  )
)


def recording_augment(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """One random "recording" of ``wav``: gain, band limit, tilt and noise.

  Gain uniform in +-6 dB; with probability 1/2 each, a 2nd-order
  Butterworth high-pass at 60-400 Hz and low-pass at 3-7.5 kHz (log-uniform);
  a first-order spectral tilt ``y[n] = x[n] - a x[n-1]``, ``a`` uniform in
  [-0.5, 0.5]; with probability 1/2, white noise at an SNR uniform in
  15-40 dB.
  """
  from scipy import signal

  x = wav.astype(np.float64)
  if rng.random() < 0.5:
    cut = np.exp(rng.uniform(np.log(60), np.log(400)))
    x = signal.sosfilt(
      signal.butter(2, cut, 'highpass', fs=16000, output='sos'), x
    )
  if rng.random() < 0.5:
    cut = np.exp(rng.uniform(np.log(3000), np.log(7500)))
    x = signal.sosfilt(
      signal.butter(2, cut, 'lowpass', fs=16000, output='sos'), x
    )
  a = rng.uniform(-0.5, 0.5)
  x = signal.lfilter([1.0, -a], [1.0], x)
  if rng.random() < 0.5:
    power = np.mean(x**2) + 1e-12
    snr = rng.uniform(15, 40)
    x = x + rng.normal(0, np.sqrt(power / 10 ** (snr / 10)), len(x))
  x *= 10 ** (rng.uniform(-6, 6) / 20)
  return x.astype(np.float32)


def window_labels(
  conversation: simulate.Conversation, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
  """The speaker covering most samples of each window (ties: first entered).

  LibriSim's rule, on exact sample counts (`prepare.label_windows` uses a
  10 ms grid and breaks ties by name).

  Args:
    conversation: the plan (turn times in samples).
    starts, ends: window bounds in seconds.
  """
  order = {s: i for i, s in enumerate(conversation.speakers)}
  cover = np.zeros((len(starts), len(order)))
  a = np.round(starts * simulate.SAMPLE_RATE)
  b = np.minimum(
    np.round(ends * simulate.SAMPLE_RATE), conversation.num_samples
  )
  for t in conversation.turns:
    overlap = np.minimum(b, t.end) - np.maximum(a, t.onset)
    cover[:, order[t.speaker]] += np.maximum(overlap, 0)
  return np.asarray(conversation.speakers)[np.argmax(cover, axis=1)]


def make_dataset(
  paths: list[str],
  options: simulate.Options,
  *,
  seed: int,
  num_conversations: int,
  augment: str = 'none',
) -> dict[str, np.ndarray]:
  """Simulates and embeds; returns the ``.npz`` arrays (see module doc)."""
  sources = simulate.load_sources(paths, options)
  for name, wav in sources.speech.items():
    spans = np.round(audio.speech_regions(wav) * simulate.SAMPLE_RATE)
    sources.speech[name] = np.concatenate(
      [wav[:0]] + [wav[int(a) : int(b)] for a, b in spans]
    )
  conversations = simulate.plan(
    sources.lengths,
    sources.base,
    options,
    seed=seed,
    num_conversations=num_conversations,
  )
  rng = np.random.default_rng([seed, 1])
  speaker_audio = sources.audio
  if augment == 'recording':
    speaker_audio = lambda name: recording_augment(sources.audio(name), rng)  # noqa: E731
  out = {k: [] for k in ('embeddings', 'labels', 'starts', 'ends')}
  turns = {k: [] for k in ('turn_starts', 'turn_ends', 'turn_speakers')}
  offsets, turn_offsets, durations = [0], [0], []
  t0 = time.time()
  for i, conversation in enumerate(conversations):
    mix, _ = simulate.render(conversation, speaker_audio, fade=options.fade)
    embedded = audio.embed_audio(mix, vad=None)
    out['embeddings'].append(embedded.embeddings.astype(np.float16))
    out['labels'].append(
      window_labels(conversation, embedded.starts, embedded.ends)
    )
    out['starts'].append(embedded.starts.astype(np.float32))
    out['ends'].append(embedded.ends.astype(np.float32))
    offsets.append(offsets[-1] + len(embedded.starts))
    for t in conversation.turns:
      turns['turn_starts'].append(t.onset / simulate.SAMPLE_RATE)
      turns['turn_ends'].append(t.end / simulate.SAMPLE_RATE)
      turns['turn_speakers'].append(t.speaker)
    turn_offsets.append(len(turns['turn_starts']))
    durations.append(conversation.num_samples / simulate.SAMPLE_RATE)
    if (i + 1) % 50 == 0:
      print(
        f'{i + 1}/{num_conversations} conversations, {time.time() - t0:.0f} s',
        file=sys.stderr,
      )
  arrays = {k: np.concatenate(v) for k, v in out.items()}
  arrays['offsets'] = np.asarray(offsets, np.int64)
  arrays['conversation_ids'] = np.asarray([c.id for c in conversations])
  arrays['conversation_durations'] = np.asarray(durations, np.float32)
  arrays['turn_offsets'] = np.asarray(turn_offsets, np.int64)
  arrays['turn_starts'] = np.asarray(turns['turn_starts'], np.float32)
  arrays['turn_ends'] = np.asarray(turns['turn_ends'], np.float32)
  arrays['turn_speakers'] = np.asarray(turns['turn_speakers'])
  arrays['speakers'] = np.asarray(sorted(sources.base))
  return arrays


KEYS = (
  'embeddings',
  'labels',
  'starts',
  'ends',
  'offsets',
  'conversation_ids',
  'conversation_durations',
  'turn_offsets',
  'turn_starts',
  'turn_ends',
  'turn_speakers',
  'speakers',
)
"""The arrays `make_dataset` writes (LibriSim's files have them too)."""


def concatenate(
  parts: list[dict[str, np.ndarray]], tags: list[str]
) -> dict[str, np.ndarray]:
  """Joins datasets in order; conversation ids get ``<tag>_`` prefixes."""
  if len(parts) == 1:
    return {k: parts[0][k] for k in KEYS}
  out = {}
  for key in ('embeddings', 'labels', 'starts', 'ends', 'turn_starts'):
    out[key] = np.concatenate([p[key] for p in parts])
  for key in ('turn_ends', 'turn_speakers', 'conversation_durations'):
    out[key] = np.concatenate([p[key] for p in parts])
  for key in ('offsets', 'turn_offsets'):
    shift = np.cumsum([0] + [p[key][-1] for p in parts[:-1]])
    out[key] = np.concatenate(
      [parts[0][key][:1]] + [p[key][1:] + d for p, d in zip(parts, shift)]
    )
  out['conversation_ids'] = np.asarray(
    [f'{t}_{c}' for p, t in zip(parts, tags) for c in p['conversation_ids']]
  )
  out['speakers'] = np.asarray(
    sorted({str(s) for p in parts for s in p['speakers']})
  )
  return out


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('sources', nargs='*', default=[SOURCES])
  parser.add_argument('--output', required=True, help='the .npz to write')
  parser.add_argument('--num_conversations', type=int, default=600)
  parser.add_argument(
    '--seeds',
    default='0',
    help='comma-separated; --num_conversations conversations per seed',
  )
  parser.add_argument(
    '--include',
    default='',
    help='comma-separated .npz files (e.g. LibriSim train.npz) put first',
  )
  parser.add_argument('--speed_factors', default='0.9,1.0,1.1')
  parser.add_argument(
    '--augment', choices=('none', 'recording'), default='none'
  )
  parser.add_argument('--pause', default='constant:0')
  parser.add_argument('--overlap_probability', type=float, default=0.0)
  parser.add_argument('--overlap_length', default='uniform:0.2,1')
  args = parser.parse_args(argv)
  preset = dict(simulate.PRESETS['librisim'])
  preset.update(
    speed_factors=tuple(float(f) for f in args.speed_factors.split(',')),
    pause=args.pause,
    overlap_probability=args.overlap_probability,
    overlap_length=args.overlap_length,
  )
  options = simulate.Options(**preset)
  t0 = time.time()
  included = [p for p in args.include.split(',') if p]
  parts = [dict(np.load(p, allow_pickle=False)) for p in included]
  tags = [os.path.splitext(os.path.basename(p))[0] for p in included]
  for seed in (int(x) for x in args.seeds.split(',')):
    parts.append(
      make_dataset(
        args.sources,
        options,
        seed=seed,
        num_conversations=args.num_conversations,
        augment=args.augment,
      )
    )
    tags.append(f'seed{seed}')
  arrays = concatenate(parts, tags)
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  dataset.write_arrays(args.output, arrays)
  print(
    f'wrote {args.output}: {len(arrays["offsets"]) - 1} conversations, '
    f'{len(arrays["labels"])} windows, {time.time() - t0:.0f} s'
  )


if __name__ == '__main__':
  main()
