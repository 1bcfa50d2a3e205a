"""Audio front end: audio file -> d-vectors -> UIS-RNN labels -> RTTM.

Needs the ``[audio]`` extra (``pip install -e '.[audio]'``): ``resemblyzer``
0.1.4, whose pretrained GE2E voice encoder ships inside its PyPI package
(nothing is downloaded at run time; it runs on torch, CPU by default).

The pipeline is the one the LibriSim data was made with, so a model trained
on LibriSim (``configs/librisim.py``) applies directly:

1. load any format librosa/soundfile reads (wav, flac, mp3, ...), mono,
   resampled to 16 kHz, volume normalised to -30 dBFS (increase only), as
   ``resemblyzer.preprocess_wav`` does;
2. optionally (``vad=True``, the default, also as resemblyzer does) drop
   long silences found by webrtcvad; unlike ``preprocess_wav`` we keep the
   map from the kept samples back to the original time line, so the RTTM is
   in the original audio's time and the dropped silences are non-speech;
3. ``VoiceEncoder('cpu').embed_utterance(wav, return_partials=True,
   rate=rate, min_coverage=min_coverage)``: one 256-dim d-vector per 1.6 s
   window, ``rate`` windows per second (default 2.5: every 0.4 s);
4. decode the windows as one sequence with a trained checkpoint
   (`checkpoint.load_inference_state` + `decode.predict_labels`);
5. turn window labels into turns with `evaluation.frames_to_segments` (each
   window owns the span between the midpoints of neighbouring window
   centres; the last one owns the rest of the audio), split them where
   silence was dropped, and write RTTM.

Command line (installed as ``uisrnn-diarize`` by the package)::

  uisrnn-diarize meeting.wav --workdir=runs/librisim --output=meeting.rttm

>>> from uisrnn_jax import audio
>>> turns = audio.diarize('meeting.flac', 'runs/librisim')   # doctest: +SKIP
>>> print(audio.rttm_text('meeting', turns))                 # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import os
import sys
import types
from collections.abc import Sequence
from typing import Any

import numpy as np

SAMPLE_RATE = 16000
DEFAULT_RATE = 2.5
DEFAULT_MIN_COVERAGE = 0.5

_INSTALL_HINT = (
  "the audio front end needs the [audio] extra: pip install 'uisrnn-jax[audio]'"
  ' (or pip install resemblyzer==0.1.4)'
)


def _import_resemblyzer() -> types.ModuleType:
  """Imports resemblyzer, working around webrtcvad's ``pkg_resources`` use.

  webrtcvad 2.0.10 (a resemblyzer dependency) runs ``import pkg_resources``
  only to read its own version, and setuptools >= 81 no longer ships
  ``pkg_resources``. When it is missing, a stand-in answering
  ``get_distribution(name).version`` from ``importlib.metadata`` is put in
  ``sys.modules`` for the duration of the import and removed afterwards.
  """
  shim = None
  if 'webrtcvad' not in sys.modules:
    try:
      importlib.import_module('pkg_resources')
    except ImportError:
      from importlib import metadata

      shim = types.ModuleType('pkg_resources')
      shim.get_distribution = lambda name: types.SimpleNamespace(  # type: ignore[attr-defined]
        version=metadata.version(name)
      )
      sys.modules['pkg_resources'] = shim
  try:
    _import_numba()
    import resemblyzer
  except ImportError as e:
    raise ImportError(f'{_INSTALL_HINT} ({e})') from e
  finally:
    if shim is not None and sys.modules.get('pkg_resources') is shim:
      del sys.modules['pkg_resources']
  return resemblyzer


def _import_numba() -> None:
  """Imports numba (librosa needs it) even next to an old ``coverage``.

  numba >= 0.61 subclasses ``coverage.types.Tracer`` when ``coverage`` is
  importable, which fails with coverage < 7.7 (e.g. the ``coverage==7.6.0``
  that ``uisrnn`` 0.1.2, our ``[reference]`` extra, pins). Then numba is
  imported with ``coverage`` hidden, which only turns off numba's coverage
  reporting of compiled code; ``coverage`` itself is restored afterwards.
  """
  if 'numba' in sys.modules:
    return
  try:
    import coverage.types
  except ImportError:
    hide = False
  else:
    hide = not hasattr(coverage.types, 'Tracer')
  if not hide:
    importlib.import_module('numba')
    return
  saved = sys.modules.get('coverage')
  sys.modules['coverage'] = None  # type: ignore[assignment]  # -> ImportError
  try:
    importlib.import_module('numba')
  finally:
    if saved is None:
      del sys.modules['coverage']
    else:
      sys.modules['coverage'] = saved


@functools.lru_cache(maxsize=2)
def voice_encoder(device: str = 'cpu') -> Any:
  """resemblyzer's pretrained ``VoiceEncoder`` on ``device`` (cached)."""
  return _import_resemblyzer().VoiceEncoder(device, verbose=False)


def load_audio(path: str) -> np.ndarray:
  """Reads an audio file as float32 mono at 16 kHz, volume normalised.

  The steps of ``resemblyzer.preprocess_wav`` before silence trimming.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is empty or cannot be decoded.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no such audio file: {path}')
  _import_resemblyzer()
  import librosa
  from resemblyzer import audio as rz_audio
  from resemblyzer import hparams

  load = librosa.load  # imports librosa's audio module (errors propagate)
  try:
    wav, sr = load(path, sr=None, mono=True)
  except Exception as e:  # noqa: BLE001 - decoders raise many types
    raise ValueError(f'{path}: cannot decode audio ({e})') from e
  if wav.size == 0:
    raise ValueError(f'{path}: no audio samples')
  if sr != hparams.sampling_rate:
    wav = librosa.resample(wav, orig_sr=sr, target_sr=hparams.sampling_rate)
  if np.any(wav):
    wav = rz_audio.normalize_volume(
      wav, hparams.audio_norm_target_dBFS, increase_only=True
    )
  return np.asarray(wav, np.float32)


def voice_mask(wav: np.ndarray) -> np.ndarray:
  """Which samples resemblyzer's ``trim_long_silences`` would keep.

  Same computation (webrtcvad mode 3 on 30 ms windows, moving average over
  8 windows, dilation by 6 windows); samples past the last whole VAD window
  count as silence, as there.

  Returns:
    bool[len(wav)].
  """
  _import_resemblyzer()
  import struct

  import webrtcvad
  from resemblyzer import hparams
  from scipy import ndimage

  window = hparams.vad_window_length * SAMPLE_RATE // 1000
  usable = len(wav) - len(wav) % window
  mask = np.zeros(len(wav), bool)
  if usable == 0:
    return mask
  pcm = struct.pack(
    f'{usable}h',
    *np.round(np.clip(wav[:usable], -1, 1) * (2**15 - 1)).astype(np.int16),
  )
  vad = webrtcvad.Vad(mode=3)
  flags = np.array(
    [
      vad.is_speech(pcm[a * 2 : (a + window) * 2], sample_rate=SAMPLE_RATE)
      for a in range(0, usable, window)
    ],
    float,
  )
  width = hparams.vad_moving_average_width
  padded = np.concatenate(
    [np.zeros((width - 1) // 2), flags, np.zeros(width // 2)]
  )
  total = np.cumsum(padded)
  total[width:] = total[width:] - total[:-width]
  smooth = np.round(total[width - 1 :] / width).astype(bool)
  smooth = ndimage.binary_dilation(
    smooth, np.ones(hparams.vad_max_silence_length + 1)
  )
  mask[:usable] = np.repeat(smooth, window)
  return mask


@dataclasses.dataclass
class Embedded:
  """Window embeddings of one recording.

  Attributes:
    embeddings: float32[N, 256] d-vectors (unit norm; all-zero for a window
      the encoder gives no activation on).
    starts, ends: float64[N] window bounds in seconds of the *kept* audio
      (the original audio when ``vad=False``).
    kept: int64[M] original sample index of each kept sample.
    duration: seconds of the original (resampled) audio.
  """

  embeddings: np.ndarray
  starts: np.ndarray
  ends: np.ndarray
  kept: np.ndarray
  duration: float


def embed_audio(
  path_or_wav: str | np.ndarray,
  *,
  rate: float = DEFAULT_RATE,
  min_coverage: float = DEFAULT_MIN_COVERAGE,
  vad: bool = True,
  device: str = 'cpu',
) -> Embedded:
  """d-vectors of overlapping 1.6 s windows of a recording.

  Args:
    path_or_wav: an audio file, or float32 samples at 16 kHz already loaded
      with `load_audio`.
    rate: windows per second (>= 0.625 so that windows cover the audio).
    min_coverage: keep a last, zero-padded window covering at least this
      fraction of 1.6 s (resemblyzer's argument).
    vad: drop long silences before embedding (see the module docstring).
    device: torch device of the encoder.

  Returns:
    An `Embedded`; ``N == 0`` when nothing is left after silence removal.

  Raises:
    ValueError: ``rate`` outside [0.625, 100], ``min_coverage`` outside
      (0, 1], or an unreadable file.
  """
  if not 0.625 <= rate <= 100:
    raise ValueError(f'rate must be in [0.625, 100] windows/s, got {rate}')
  if not 0 < min_coverage <= 1:
    raise ValueError(f'min_coverage must be in (0, 1], got {min_coverage}')
  wav = (
    load_audio(path_or_wav)
    if isinstance(path_or_wav, str)
    else np.asarray(path_or_wav, np.float32)
  )
  duration = len(wav) / SAMPLE_RATE
  kept = (
    np.flatnonzero(voice_mask(wav))
    if vad
    else np.arange(len(wav), dtype=np.int64)
  )
  speech = wav[kept]
  if len(speech) == 0:
    empty = np.zeros(0)
    return Embedded(
      np.zeros((0, 256), np.float32), empty, empty, kept, duration
    )
  _, partials, slices = voice_encoder(device).embed_utterance(
    speech, return_partials=True, rate=rate, min_coverage=min_coverage
  )
  partials = np.nan_to_num(np.asarray(partials, np.float32))  # 0/0 -> 0
  starts = np.array([s.start for s in slices], np.float64) / SAMPLE_RATE
  ends = (
    np.minimum(np.array([s.stop for s in slices], np.float64), len(speech))
    / SAMPLE_RATE
  )
  return Embedded(partials, starts, ends, kept, duration)


def window_turns(
  embedded: Embedded, labels: np.ndarray
) -> list[tuple[float, float, int]]:
  """Speaker turns in the original time line from one label per window.

  Windows own the spans `evaluation.frames_to_segments` gives them, the last
  window extended to the end of the kept audio; each turn is then split
  wherever samples were dropped as silence.

  Returns:
    ``[(onset s, offset s, label)]`` sorted by time, non-overlapping.
  """
  from uisrnn_jax import evaluation

  if len(labels) == 0:
    return []
  n_kept = len(embedded.kept)
  ends = embedded.ends.copy()
  ends[-1] = n_kept / SAMPLE_RATE
  seg_starts, seg_ends, seg_labels = evaluation.frames_to_segments(
    embedded.starts, ends, labels
  )
  # Gaps: positions (in kept samples) where the original index jumps.
  jumps = np.flatnonzero(np.diff(embedded.kept) > 1) + 1
  turns = []
  for a, b, label in zip(seg_starts, seg_ends, seg_labels):
    i, j = round(a * SAMPLE_RATE), min(round(b * SAMPLE_RATE), n_kept)
    cuts = [i, *jumps[(jumps > i) & (jumps < j)].tolist(), j]
    for lo, hi in zip(cuts[:-1], cuts[1:]):
      if hi > lo:
        onset = embedded.kept[lo] / SAMPLE_RATE
        offset = (embedded.kept[hi - 1] + 1) / SAMPLE_RATE
        turns.append((float(onset), float(offset), int(label)))
  return turns


def diarize(
  path: str,
  workdir_or_checkpoint: str,
  *,
  rate: float = DEFAULT_RATE,
  min_coverage: float = DEFAULT_MIN_COVERAGE,
  vad: bool = True,
  device: str = 'cpu',
  decode_overrides: dict[str, Any] | None = None,
) -> list[tuple[float, float, int]]:
  """Speaker turns of an audio file with a trained UIS-RNN checkpoint.

  Args:
    path: the audio file.
    workdir_or_checkpoint: a training run directory (newest checkpoint) or
      a checkpoint file; the model's observation_dim must be 256.
    rate, min_coverage, vad, device: see `embed_audio`.
    decode_overrides: ``decode`` config fields to change (e.g.
      ``{'beam_size': 4}``); the run's stored config otherwise.

  Returns:
    ``[(onset s, offset s, speaker)]``, speakers 0, 1, ... in order of
    first appearance; empty when no speech is left after silence removal.

  Raises:
    errors.CheckpointError: no usable checkpoint.
    ValueError: a model whose observation_dim is not 256, or bad audio.
  """
  from uisrnn_jax import checkpoint, decode

  state, config = checkpoint.load_inference_state(workdir_or_checkpoint)
  dim = int(state.params['sigma2'].shape[-1])
  if dim != 256:
    raise ValueError(
      f'{workdir_or_checkpoint}: the model takes {dim}-dim observations, '
      'resemblyzer d-vectors are 256-dim'
    )
  decode_config = config.decode
  if decode_overrides:
    decode_config = decode_config.copy_and_resolve_references()
    decode_config.update(decode_overrides)
  embedded = embed_audio(
    path, rate=rate, min_coverage=min_coverage, vad=vad, device=device
  )
  if len(embedded.embeddings) == 0:
    return []
  (labels,) = decode.predict_labels(
    state.params,
    [embedded.embeddings],
    transition_bias=float(state.transition_bias),
    crp_alpha=float(state.crp_alpha),
    config=decode_config,
    progress=False,
  )
  return window_turns(embedded, labels)


def rttm_text(file_id: str, turns: Sequence[tuple[float, float, int]]) -> str:
  """RTTM ``SPEAKER`` lines (speakers ``spk<label>``) for one recording."""
  file_id = '_'.join(file_id.split()) or 'audio'
  return ''.join(
    f'SPEAKER {file_id} 1 {a:.3f} {b - a:.3f} <NA> <NA> spk{k} <NA> <NA>\n'
    for a, b, k in turns
  )


def main(argv: Sequence[str] | None = None) -> int:
  """``uisrnn-diarize AUDIO --workdir=DIR --output=out.rttm``.

  Returns:
    The exit status (0 on success, 1 on bad input with ``error: ...`` on
    stderr).
  """
  # argparse, not absl flags: absl's flags are one process-wide registry
  # (cli.py's require --config), and this command stands alone.
  parser = argparse.ArgumentParser(
    prog='uisrnn-diarize',
    description='Speaker diarization of an audio file with a trained '
    'UIS-RNN run and resemblyzer d-vectors; writes RTTM.',
  )
  parser.add_argument('audio', help='audio file (wav, flac, mp3, ...)')
  parser.add_argument(
    '--workdir', required=True, help='training run directory or checkpoint'
  )
  parser.add_argument(
    '--output', help='RTTM file to write (default: print to stdout)'
  )
  parser.add_argument(
    '--rate',
    type=float,
    default=DEFAULT_RATE,
    help='d-vector windows per second (default %(default)s: every 0.4 s)',
  )
  parser.add_argument(
    '--min_coverage', type=float, default=DEFAULT_MIN_COVERAGE
  )
  parser.add_argument(
    '--vad',
    dest='vad',
    action='store_true',
    default=True,
    help='drop long silences (webrtcvad) before embedding (the default)',
  )
  parser.add_argument(
    '--novad',
    '--no-vad',
    dest='vad',
    action='store_false',
    help='embed the whole recording, silences included',
  )
  parser.add_argument('--device', default='cpu', help='torch device')
  parser.add_argument(
    '--file_id', help='RTTM file id (default: the audio file name)'
  )
  parser.add_argument('--beam_size', type=int, help='decode.beam_size')
  parser.add_argument('--max_speakers', type=int, help='decode.max_speakers')
  args = parser.parse_args(argv)
  from uisrnn_jax import compilation  # compiled programs reused across runs

  compilation.enable_cache()
  overrides = {
    k: v
    for k, v in (
      ('beam_size', args.beam_size),
      ('max_speakers', args.max_speakers),
    )
    if v is not None
  }
  from uisrnn_jax import checkpoint

  try:
    turns = diarize(
      args.audio,
      args.workdir,
      rate=args.rate,
      min_coverage=args.min_coverage,
      vad=args.vad,
      device=args.device,
      decode_overrides=overrides,
    )
  except (ValueError, FileNotFoundError, checkpoint.CheckpointError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  file_id = args.file_id or os.path.splitext(os.path.basename(args.audio))[0]
  text = rttm_text(file_id, turns)
  if args.output:
    checkpoint.atomic_write(args.output, text.encode())
    speakers = len({k for _, _, k in turns})
    print(
      f'wrote {len(turns)} turns of {speakers} speakers to {args.output}',
      file=sys.stderr,
    )
  else:
    sys.stdout.write(text)
  return 0


def console_main() -> None:
  """Entry point of the ``uisrnn-diarize`` console script."""
  raise SystemExit(main())


if __name__ == '__main__':
  console_main()
