r"""Real recordings end to end: AMI development through VAD, encoder, decoder.

Two modes.

Accuracy (default): every file of an AMI-style split (``<split>.rttm``,
``<split>.uem`` if there is one, and ``<uri>.wav`` in ``--data``; a
``uisrnn-simulate`` corpus is one, with ``--split=reference``) goes through
the full path
of `uisrnn_jax.audio` (silero-vad speech regions, 1.6 s d-vector windows
per region, decode with the ``--workdir`` checkpoint), and the same windows
are also clustered by spectralcluster 0.2.22 Turn-to-Diarize (a fresh
AutoTune per conversation, built by ``benchmarks/librisim.py``). Both are
scored against the reference with the UEM (pyannote.metrics, collar 0.5 s
total width, overlap scored): DER and its parts, JER, speaker-count error,
and the real-time factor (seconds of compute per second of audio) of each
stage.

Speed (``--speed``): one long recording (the excerpts of ``--data``
concatenated and repeated to ``--hours``) diarized once; prints the
real-time factor of each stage, the whole run's speed-up over real time and
the peak resident memory of the process (``ru_maxrss``).

Usage (from the repository root):
  python benchmarks/real_audio.py --workdir=runs/librisim
  python benchmarks/real_audio.py --workdir=runs/librisim --split=train
  python benchmarks/real_audio.py --workdir=runs/librisim --speed --hours=1
  uisrnn-simulate ../shared/data/librispeech-samples/test-other \
    --preset=librisim --num_conversations=20 --output=runs/sim_test_other
  python benchmarks/real_audio.py --workdir=runs/librisim \
    --data=runs/sim_test_other --split=reference

Needs the audio extra (see uisrnn_jax/audio.py), pyannote.metrics and, for
the spectral row, spectralcluster==0.2.22.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(
  0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
)

from uisrnn_jax import audio, evaluation, rttm  # noqa: E402

DEFAULT_DATA = os.path.join(
  os.path.dirname(os.path.abspath(__file__)),
  '..',
  '..',
  'shared',
  'data',
  'ami-excerpts',
)
STAGES = ('vad', 'encoder', 'decode')


def _annotation(embedded, labels, uri):
  turns = audio.window_turns(embedded, labels)
  return rttm.annotation(
    (
      np.array([t[0] for t in turns]),
      np.array([t[1] for t in turns]),
      [t[2] for t in turns],
    ),
    uri,
  )


def _spectral():
  """Turn-to-Diarize as benchmarks/librisim.py builds it (fresh AutoTune)."""
  try:
    import librisim  # benchmarks/librisim.py
  except ImportError as e:  # spectralcluster missing
    print(f'spectral row skipped: {e}', file=sys.stderr)
    return None
  try:
    return librisim.spectral_clusterers()[librisim.TURN_TO_DIARIZE]
  except ImportError as e:
    print(f'spectral row skipped: {e}', file=sys.stderr)
    return None


def accuracy(args) -> None:
  references = rttm.read_annotations(
    os.path.join(args.data, f'{args.split}.rttm')
  )
  uem_path = os.path.join(args.data, f'{args.split}.uem')
  # Without a UEM (e.g. a uisrnn-simulate corpus) every file of the RTTM is
  # scored whole.
  uems = rttm.read_uem(uem_path) if os.path.exists(uem_path) else None
  uris = sorted(uems if uems is not None else references)
  model = audio.load_model(args.workdir)
  vad = audio.VadOptions(
    threshold=args.vad_threshold,
    min_speech=args.min_speech,
    min_silence=args.min_silence,
    merge_gap=args.merge_gap,
  )
  make_spectral = _spectral()
  hyps = {'uisrnn_jax': {}, 'spectral': {}}
  seconds = {'uisrnn_jax': dict.fromkeys(STAGES, 0.0)}
  seconds['spectral'] = dict.fromkeys(STAGES, 0.0)
  total_audio = 0.0
  failures = []
  # One untimed warm-up (model loads, JIT compilation of the decoder).
  first = os.path.join(args.data, f'{uris[0]}.wav')
  audio.decode_windows(model, audio.embed_audio(first, vad=vad))
  for uri in uris:
    path = os.path.join(args.data, f'{uri}.wav')
    embedded = audio.embed_audio(path, vad=vad)
    total_audio += embedded.duration
    tic = time.perf_counter()
    labels = audio.decode_windows(model, embedded)
    decode_s = time.perf_counter() - tic
    for name in hyps:
      seconds[name]['vad'] += embedded.timings['vad']
      seconds[name]['encoder'] += embedded.timings['encoder']
    seconds['uisrnn_jax']['decode'] += decode_s
    hyps['uisrnn_jax'][uri] = _annotation(embedded, labels, uri)
    if make_spectral is not None:
      tic = time.perf_counter()
      sc = np.zeros(len(embedded.embeddings), np.int64)
      if len(embedded.embeddings) >= 2:
        try:
          sc = np.asarray(
            make_spectral().predict(embedded.embeddings.astype(np.float64))
          )
        except Exception as e:  # noqa: BLE001 - its autotune fails on some inputs
          print(
            f'{uri}: spectralcluster failed ({type(e).__name__}: {e}); '
            'scored as one speaker',
            file=sys.stderr,
          )
          failures.append(uri)
      seconds['spectral']['decode'] += time.perf_counter() - tic
      hyps['spectral'][uri] = _annotation(embedded, sc, uri)
  print(
    f'## {args.split} of {args.data} ({len(uris)} files, '
    f'{total_audio:.0f} s of audio), model {args.workdir}\n'
  )
  print(
    '| system | DER | missed | false alarm | confusion | JER | spk-count err '
    '| RTF VAD | RTF encoder | RTF decode |'
  )
  print(
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
  )
  reports = {}
  for name, hyp in hyps.items():
    if not hyp:
      continue
    report = evaluation.score_annotations(
      {u: references[u] for u in hyp}, hyp, uems=uems, collar=args.collar
    )
    reports[name] = report
    scored = sum(r.scored for r in report.rows)
    part = lambda key: sum(getattr(r, key) for r in report.rows) / scored  # noqa: B023, E731
    rtf = {k: v / total_audio for k, v in seconds[name].items()}
    label = (
      name if name == 'uisrnn_jax' else 'spectralcluster 0.2.22 Turn-to-Diarize'
    )
    print(
      f'| {label} | {report.der:.3f} | {part("missed"):.3f} | '
      f'{part("false_alarm"):.3f} | {part("confusion"):.3f} | '
      f'{report.jer:.3f} | {report.speaker_count_error:.2f} | '
      f'{rtf["vad"]:.4f} | {rtf["encoder"]:.4f} | {rtf["decode"]:.4f} |'
    )
  print(
    f'\nDER parts as fractions of scored speech; collar {args.collar:g} s '
    'total width, overlap scored, UEM applied. RTF: compute seconds per '
    'second of audio (the spectral row shares the VAD and encoder).\n'
  )
  if failures:
    print(f'spectralcluster failed on {failures} (scored as one speaker)\n')
  for name, report in reports.items():
    print(f'{name}:\n{report.table()}\n')
  _machine()


def speed(args) -> None:
  import soundfile

  wavs = [
    audio.load_audio(os.path.join(args.data, f))
    for f in sorted(os.listdir(args.data))
    if f.endswith('.wav')
  ]
  unit = np.concatenate(wavs)
  reps = int(np.ceil(args.hours * 3600 * audio.SAMPLE_RATE / len(unit)))
  long = np.tile(unit, reps)[: int(args.hours * 3600 * audio.SAMPLE_RATE)]
  del wavs, unit
  model = audio.load_model(args.workdir)
  with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, 'long.wav')
    soundfile.write(path, long, audio.SAMPLE_RATE, subtype='FLOAT')
    duration = len(long) / audio.SAMPLE_RATE
    del long
    # Warm-up on the first 30 s (model loads, decoder compilation).
    short = os.path.join(d, 'short.wav')
    soundfile.write(short, soundfile.read(path, frames=30 * 16000)[0], 16000)
    audio.diarize(short, model)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    timings = {}
    tic = time.perf_counter()
    annotation = audio.diarize(path, model, timings=timings)
    wall = time.perf_counter() - tic
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(f'## one recording of {duration / 60:.1f} min ({args.data} repeated)\n')
  print('| stage | seconds | RTF |')
  print('| --- | ---: | ---: |')
  for stage in ('load', *STAGES):
    print(
      f'| {stage} | {timings[stage]:.1f} | {timings[stage] / duration:.4f} |'
    )
  print(f'| total (wall) | {wall:.1f} | {wall / duration:.4f} |')
  print(
    f'\n{duration / wall:.1f}x faster than real time; '
    f'{len(annotation)} turns, {len(annotation.labels())} speakers; '
    f'peak RSS {peak:.0f} MiB (before the long run: {before:.0f} MiB)'
  )
  _machine()


def _machine() -> None:
  print(
    f'\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, '
    f'python {platform.python_version()}'
  )


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument(
    '--workdir', required=True, help='trained run or checkpoint'
  )
  parser.add_argument('--data', default=DEFAULT_DATA)
  parser.add_argument('--split', default='development')
  parser.add_argument('--collar', type=float, default=0.5)
  d = audio.VadOptions()
  parser.add_argument('--vad_threshold', type=float, default=d.threshold)
  parser.add_argument('--min_speech', type=float, default=d.min_speech)
  parser.add_argument('--min_silence', type=float, default=d.min_silence)
  parser.add_argument('--merge_gap', type=float, default=d.merge_gap)
  parser.add_argument('--speed', action='store_true')
  parser.add_argument('--hours', type=float, default=1.0)
  args = parser.parse_args(argv)
  if args.speed:
    speed(args)
  else:
    accuracy(args)


if __name__ == '__main__':
  main()
