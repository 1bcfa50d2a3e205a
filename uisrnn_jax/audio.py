"""Audio front end: audio file -> speech -> d-vectors -> UIS-RNN -> RTTM.

Needs the ``[audio]`` extra plus resemblyzer's encoder weights::

  pip install -e '.[audio]'
  pip install --no-deps resemblyzer==0.1.4

``silero-vad`` (speech detection) and resemblyzer's GE2E voice encoder both
ship their models inside their PyPI packages: nothing is downloaded at run
time. resemblyzer is used only as the carrier of ``pretrained.pt`` (found
with `importlib.util.find_spec`, never imported): its Python code imports
``webrtcvad``, which has no wheels, so the network (3-layer LSTM) and its
mel front end are reimplemented here (`VoiceEncoder`, `mel_spectrogram`),
numerically the same as ``resemblyzer.VoiceEncoder.embed_utterance``.

The pipeline (`embed_audio`, `diarize`):

1. `load_audio`: any file soundfile reads (wav, flac, ogg, mp3, ...; other
   formats through librosa/audioread when installed), any sample rate and
   channel count: downmixed to mono, resampled to 16 kHz (soxr, librosa's
   default resampler). Missing, unreadable and empty files raise
   `errors.AudioError` naming the file.
2. `speech_regions`: silero-vad speech probabilities every 32 ms and its
   own hysteresis rule (`VadOptions`: threshold, minimum speech and silence
   durations, padding). Regions closer than ``VadOptions.merge_gap`` are
   merged for windowing only.
3. `embed_audio`: the (volume-normalised, as resemblyzer does) audio of
   each merged region is cut into 1.6 s windows every ``1 / rate`` s
   (resemblyzer's partial-utterance rule, per region), so no window
   straddles a long non-speech span; one 256-dim d-vector per window.
4. `diarize`: all windows of a recording decoded as one UIS-RNN sequence;
   window labels become turns per region (`rttm.frames_to_segments`),
   cut to the detected speech (non-speech is never labelled), in the
   original audio's time. Returns a ``pyannote.core.Annotation``.

Command line (``uisrnn-diarize``; see `main`)::

  uisrnn-diarize meeting.wav --workdir=runs/librisim --output=meeting.rttm
  uisrnn-diarize a.wav b.flac --workdir=runs/librisim --output=out/ \\
      --reference=ref.rttm --uem=ref.uem --report=report.csv

>>> from uisrnn_jax import audio, rttm
>>> annotation = audio.diarize('meeting.flac', 'runs/librisim')  # doctest: +SKIP
>>> print(rttm.annotation_text(annotation))                       # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import importlib.util
import os
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from uisrnn_jax.errors import AudioError, InputFileNotFoundError

SAMPLE_RATE = 16000
DEFAULT_RATE = 2.5
DEFAULT_MIN_COVERAGE = 0.5
AUDIO_EXTENSIONS = ('.wav', '.flac', '.ogg', '.mp3', '.opus', '.m4a', '.aiff')

# resemblyzer's hyperparameters (resemblyzer/hparams.py).
_N_FFT = 400  # 25 ms
_HOP = 160  # 10 ms
_N_MELS = 40
_PARTIAL_FRAMES = 160  # 1.6 s
_HIDDEN = 256
_NORM_DBFS = -30.0
_VAD_CHUNK = 512  # silero's window at 16 kHz (32 ms)

_INSTALL_HINT = (
  "the audio front end needs the [audio] extra and resemblyzer's encoder "
  "weights: pip install -e '.[audio]' && pip install --no-deps "
  'resemblyzer==0.1.4'
)


def _require(module: str) -> Any:
  try:
    return importlib.import_module(module)
  except ImportError as e:
    raise ImportError(f'{_INSTALL_HINT} ({e})') from e


# --------------------------------------------------------------------------
# Loading


def load_audio(path: str, *, normalize: bool = False) -> np.ndarray:
  """Reads an audio file as float32 mono samples at 16 kHz.

  Args:
    path: the file.
    normalize: raise the level to -30 dBFS (never lower it), as
      ``resemblyzer.preprocess_wav`` does before embedding.

  Raises:
    errors.InputFileNotFoundError: no such file.
    errors.AudioError: the file cannot be decoded, has no samples or has
      non-finite samples (the message names the file).
  """
  if not os.path.isfile(path):
    raise InputFileNotFoundError(f'no such audio file: {path}')
  import soundfile

  try:
    wav, sr = soundfile.read(path, dtype='float32', always_2d=True)
    wav = wav[:, 0].copy() if wav.shape[1] == 1 else wav.mean(axis=1)
  except Exception as e:  # noqa: BLE001 - libsndfile raises several types
    wav, sr = _load_other_format(path, e)
  if wav.size == 0:
    raise AudioError(f'{path}: no audio samples (zero-length audio)')
  if not np.all(np.isfinite(wav)):
    raise AudioError(f'{path}: audio has NaN or Inf samples')
  if sr != SAMPLE_RATE:
    import soxr

    wav = soxr.resample(wav, sr, SAMPLE_RATE, quality='HQ')
  wav = np.asarray(wav, np.float32)
  return normalize_volume(wav) if normalize else wav


def _load_other_format(path: str, error: Exception) -> tuple[np.ndarray, int]:
  """librosa/audioread for what libsndfile cannot read (e.g. m4a)."""
  try:
    import audioread  # noqa: F401 - only to know whether a fallback exists
  except ImportError:
    raise AudioError(f'{path}: cannot decode audio ({error})') from error
  try:
    with audioread.audio_open(path) as f:
      sr, channels = f.samplerate, f.channels
      raw = b''.join(f)
  except Exception as e:  # noqa: BLE001 - backends raise many types
    raise AudioError(f'{path}: cannot decode audio ({error}; {e})') from e
  pcm = np.frombuffer(raw, '<i2').astype(np.float32) / 32768.0
  if channels > 1:
    pcm = pcm[: len(pcm) - len(pcm) % channels].reshape(-1, channels)
    pcm = pcm.mean(axis=1)
  return pcm, int(sr)


def volume_gain(wav: np.ndarray, target_dbfs: float = _NORM_DBFS) -> float:
  """The factor that raises ``wav`` to ``target_dbfs`` RMS (>= 1)."""
  block = 1 << 20  # float64 sums over blocks: no float64 copy of the audio
  total = sum(
    float(np.dot(x, x)) for x in (
      wav[i : i + block].astype(np.float64) for i in range(0, len(wav), block)
    )
  )  # fmt: skip
  power = total / len(wav) if len(wav) else 0.0
  if power <= 0:
    return 1.0
  change = target_dbfs - 10 * np.log10(power)
  return 1.0 if change < 0 else float(10 ** (change / 20))


def normalize_volume(wav: np.ndarray, target_dbfs: float = _NORM_DBFS):
  """Scales ``wav`` up to ``target_dbfs`` RMS (never down; silence kept),
  as ``resemblyzer.preprocess_wav`` does."""
  gain = volume_gain(wav, target_dbfs)
  return wav if gain == 1.0 else (wav * np.float32(gain)).astype(np.float32)


# --------------------------------------------------------------------------
# Speech detection (silero-vad)


@dataclasses.dataclass(frozen=True)
class VadOptions:
  """Speech detection settings (silero-vad's, in seconds).

  Attributes:
    threshold: speech probability above which a 32 ms chunk is speech
      (silero's hysteresis ends speech below ``threshold - 0.15``).
    min_speech: speech regions shorter than this are dropped.
    min_silence: silences shorter than this do not end a region.
    speech_pad: padding added to both ends of each region.
    merge_gap: regions closer than this are embedded as one (windows may
      span such a gap; the gap itself is still not labelled). 0 embeds
      every region on its own.
  """

  threshold: float = 0.3  # silero's own default is 0.5; see BENCHMARKS.md
  min_speech: float = 0.25
  min_silence: float = 0.1
  speech_pad: float = 0.03
  merge_gap: float = 0.5

  def __post_init__(self):
    if not 0 < self.threshold < 1:
      raise ValueError(f'vad threshold must be in (0, 1), got {self.threshold}')
    for name in ('min_speech', 'min_silence', 'speech_pad', 'merge_gap'):
      value = getattr(self, name)
      if not (np.isfinite(value) and value >= 0):
        raise ValueError(f'vad {name} must be >= 0 seconds, got {value}')


@functools.lru_cache(maxsize=1)
def _silero_model() -> Any:
  """silero-vad's TorchScript model from its package data (no download).

  ``silero_vad.model`` sets ``torch.set_num_threads(1)`` when imported;
  the previous thread count is restored, so the encoder keeps all cores.
  """
  torch = _require('torch')
  threads = torch.get_num_threads()
  try:
    silero_vad = _require('silero_vad')
  finally:
    torch.set_num_threads(threads)
  return silero_vad.load_silero_vad(onnx=False)


def speech_probabilities(
  wav: np.ndarray, *, stream_chunks: int = 250, warmup_chunks: int = 32
) -> np.ndarray:
  """silero-vad speech probability of every 512-sample (32 ms) chunk.

  The model is recurrent and runs chunk by chunk; to be fast on long audio
  the recording is cut into streams of ``stream_chunks`` chunks (8 s) run as
  one batch, each stream first fed the ``warmup_chunks`` chunks (1 s)
  before it, whose outputs are discarded, so that its state has settled.

  Returns:
    float32[ceil(len(wav) / 512)].
  """
  torch = _require('torch')
  model = _silero_model()
  n = -(-len(wav) // _VAD_CHUNK)
  if n == 0:
    return np.zeros(0, np.float32)
  stream = min(stream_chunks, n)
  num = -(-n // stream)
  padded = np.zeros((warmup_chunks + num * stream) * _VAD_CHUNK, np.float32)
  padded[warmup_chunks * _VAD_CHUNK :][: len(wav)] = wav
  chunks = padded.reshape(-1, _VAD_CHUNK)
  # [num, warmup + stream, 512]: a strided view, each stream's chunks
  # with the warm-up chunks before it (no copy of the recording).
  view = np.lib.stride_tricks.as_strided(
    chunks,
    shape=(num, warmup_chunks + stream, _VAD_CHUNK),
    strides=(stream * chunks.strides[0], *chunks.strides),
    writeable=False,
  )
  model.reset_states()
  out = np.empty((num, warmup_chunks + stream), np.float32)
  with torch.inference_mode():
    for t in range(view.shape[1]):
      step = torch.from_numpy(np.ascontiguousarray(view[:, t]))
      out[:, t] = model(step, SAMPLE_RATE).numpy().reshape(-1)
  model.reset_states()
  return out[:, warmup_chunks:].reshape(-1)[:n]


def speech_regions(
  wav: np.ndarray, options: VadOptions = VadOptions()
) -> np.ndarray:
  """Speech regions of a 16 kHz recording, seconds.

  Returns:
    float64[K, 2] ``[start, end)`` rows, sorted and disjoint.
  """
  silero_vad = _require('silero_vad')
  probs = speech_probabilities(wav)
  stamps = silero_vad.get_speech_timestamps_from_probs(
    probs.tolist(),
    sampling_rate=SAMPLE_RATE,
    threshold=options.threshold,
    min_speech_duration_ms=options.min_speech * 1000,
    min_silence_duration_ms=options.min_silence * 1000,
    speech_pad_ms=options.speech_pad * 1000,
    audio_length_samples=len(wav),
  )
  regions = np.array(
    [(s['start'], s['end']) for s in stamps], np.float64
  ).reshape(-1, 2)
  return np.clip(regions / SAMPLE_RATE, 0, len(wav) / SAMPLE_RATE)


def merge_regions(regions: np.ndarray, gap: float) -> np.ndarray:
  """Joins regions whose gap is shorter than ``gap`` seconds.

  >>> merge_regions(np.array([[0., 1.], [1.2, 2.], [3., 4.]]), 0.5).tolist()
  [[0.0, 2.0], [3.0, 4.0]]
  """
  merged: list[list[float]] = []
  for a, b in np.asarray(regions, np.float64).reshape(-1, 2):
    if merged and a - merged[-1][1] < gap:
      merged[-1][1] = max(merged[-1][1], b)
    else:
      merged.append([a, b])
  return np.array(merged, np.float64).reshape(-1, 2)


# --------------------------------------------------------------------------
# d-vectors (resemblyzer's GE2E encoder)


@functools.lru_cache(maxsize=1)
def _mel_filters() -> np.ndarray:
  """float32[40, 201] Slaney-style mel filterbank (librosa's default)."""
  f_sp, min_log_hz = 200.0 / 3, 1000.0
  min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0

  def to_mel(f):
    f = np.asarray(f, np.float64)
    return np.where(
      f >= min_log_hz,
      min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep,
      f / f_sp,
    )

  def to_hz(m):
    return np.where(
      m >= min_log_mel,
      min_log_hz * np.exp(logstep * (m - min_log_mel)),
      f_sp * m,
    )

  fft_freqs = np.linspace(0, SAMPLE_RATE / 2, 1 + _N_FFT // 2)
  mel_f = to_hz(np.linspace(to_mel(0.0), to_mel(SAMPLE_RATE / 2), _N_MELS + 2))
  fdiff = np.diff(mel_f)
  ramps = mel_f[:, None] - fft_freqs[None, :]
  lower = -ramps[:-2] / fdiff[:-1, None]
  upper = ramps[2:] / fdiff[1:, None]
  weights = np.maximum(0, np.minimum(lower, upper))
  weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
  return weights.astype(np.float32)


def mel_spectrogram(wav: np.ndarray, *, block: int = 8192) -> np.ndarray:
  """Power mel spectrogram as resemblyzer computes it (not log).

  librosa's ``melspectrogram(n_fft=400, hop_length=160, n_mels=40)``:
  centred frames (zero padding), periodic Hann window, |STFT|^2, Slaney
  mel filters. Computed in blocks of ``block`` frames (bounded memory).

  Returns:
    float32[1 + len(wav) // 160, 40].
  """
  half = _N_FFT // 2
  padded = np.pad(np.asarray(wav, np.float32), (half, half))
  frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP]
  window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_N_FFT) / _N_FFT)).astype(
    np.float32
  )
  filters = _mel_filters()
  out = np.empty((len(frames), _N_MELS), np.float32)
  for i in range(0, len(frames), block):
    spec = np.fft.rfft(frames[i : i + block] * window, axis=1)
    power = (spec.real**2 + spec.imag**2).astype(np.float32)
    out[i : i + block] = power @ filters.T
  return out


def encoder_weights_path() -> str:
  """resemblyzer's ``pretrained.pt``, located without importing resemblyzer.

  Raises:
    ImportError: resemblyzer is not installed (with the install command).
  """
  spec = importlib.util.find_spec('resemblyzer')
  locations = list(spec.submodule_search_locations or []) if spec else []
  for location in locations:
    path = os.path.join(location, 'pretrained.pt')
    if os.path.isfile(path):
      return path
  raise ImportError(f"resemblyzer's pretrained.pt not found: {_INSTALL_HINT}")


class VoiceEncoder:
  """resemblyzer's GE2E d-vector network (LSTM 40 -> 3 x 256, linear, ReLU).

  Loads the weights resemblyzer 0.1.4 ships (`encoder_weights_path`) into a
  plain ``torch.nn.LSTM``; ``embed(mels)`` maps 160-frame mel windows to
  unit-norm 256-dim d-vectors, in batches (bounded memory).
  """

  def __init__(self, device: str = 'cpu', weights: str | None = None):
    torch = _require('torch')
    self._torch = torch
    self.device = torch.device(device)
    state = torch.load(
      weights or encoder_weights_path(), map_location='cpu', weights_only=True
    )['model_state']
    self.lstm = torch.nn.LSTM(_N_MELS, _HIDDEN, 3, batch_first=True)
    self.linear = torch.nn.Linear(_HIDDEN, _HIDDEN)
    for name, module in (('lstm', self.lstm), ('linear', self.linear)):
      module.load_state_dict(
        {
          k[len(name) + 1 :]: v
          for k, v in state.items()
          if k.startswith(name + '.')
        }
      )
      module.to(self.device).eval()

  def embed(self, mels: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
    """float32[B, 160, 40] mel windows -> float32[B, 256] d-vectors.

    A window the network gives no activation on (e.g. digital silence)
    gets an all-zero vector.
    """
    torch = self._torch
    out = np.zeros((len(mels), _HIDDEN), np.float32)
    with torch.inference_mode():
      for i in range(0, len(mels), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(mels[i : i + batch_size]))
        _, (hidden, _) = self.lstm(x.to(self.device))
        raw = torch.relu(self.linear(hidden[-1]))
        norm = torch.linalg.vector_norm(raw, dim=1, keepdim=True)
        out[i : i + batch_size] = (raw / norm.clamp_min(1e-12)).cpu().numpy()
    return out


@functools.lru_cache(maxsize=2)
def voice_encoder(device: str = 'cpu') -> VoiceEncoder:
  """The pretrained `VoiceEncoder` on ``device`` (cached)."""
  return VoiceEncoder(device)


def partial_windows(
  num_samples: int, *, rate: float, min_coverage: float
) -> np.ndarray:
  """First mel frame of each 1.6 s window of a span (resemblyzer's rule).

  Windows start every ``round(100 / rate)`` frames (10 ms each) until one
  reaches the end; a last window covering less than ``min_coverage`` of
  1.6 s is dropped unless it is the only one.

  Returns:
    int64[W] first frames (``W >= 1``).
  """
  n_frames = int(np.ceil((num_samples + 1) / _HOP))
  step = int(np.round(SAMPLE_RATE / rate / _HOP))
  steps = max(1, n_frames - _PARTIAL_FRAMES + step + 1)
  firsts = np.arange(0, steps, step, dtype=np.int64)
  window = _PARTIAL_FRAMES * _HOP
  coverage = (num_samples - firsts[-1] * _HOP) / window
  if coverage < min_coverage and len(firsts) > 1:
    firsts = firsts[:-1]
  return firsts


@dataclasses.dataclass
class Embedded:
  """Window embeddings of one recording (all times in the original audio).

  Attributes:
    embeddings: float32[N, 256] d-vectors, windows in time order.
    starts, ends: float64[N] window bounds, seconds (``ends`` clipped to
      the window's region).
    region: int64[N] index into ``regions`` of each window.
    regions: float64[R, 2] the (merged) spans windows were cut from.
    speech: float64[K, 2] detected speech, the only time that is labelled
      (``regions`` itself when speech detection is off).
    duration: seconds of audio.
    timings: seconds spent per stage (``'load'``, ``'vad'``, ``'encoder'``).
  """

  embeddings: np.ndarray
  starts: np.ndarray
  ends: np.ndarray
  region: np.ndarray
  regions: np.ndarray
  speech: np.ndarray
  duration: float
  timings: dict[str, float] = dataclasses.field(default_factory=dict)


def _check_rate(rate: float, min_coverage: float) -> None:
  if not 0.625 <= rate <= 100:
    raise ValueError(f'rate must be in [0.625, 100] windows/s, got {rate}')
  if not 0 < min_coverage <= 1:
    raise ValueError(f'min_coverage must be in (0, 1], got {min_coverage}')


def embed_audio(
  path_or_wav: str | np.ndarray,
  *,
  vad: VadOptions | None = VadOptions(),
  rate: float = DEFAULT_RATE,
  min_coverage: float = DEFAULT_MIN_COVERAGE,
  device: str = 'cpu',
) -> Embedded:
  """d-vectors of 1.6 s windows of the speech of a recording.

  Args:
    path_or_wav: an audio file, or float32 mono samples at 16 kHz.
    vad: speech detection settings; None embeds the whole recording.
    rate: windows per second (>= 0.625 so that windows cover the audio).
    min_coverage: keep a last, zero-padded window of a region covering at
      least this fraction of 1.6 s (resemblyzer's argument).
    device: torch device of the encoder.

  Returns:
    An `Embedded`; ``N == 0`` when no speech was found.

  Raises:
    ValueError: ``rate`` outside [0.625, 100], ``min_coverage`` outside
      (0, 1].
    errors.AudioError, errors.InputFileNotFoundError: bad audio file.
  """
  _check_rate(rate, min_coverage)
  timings: dict[str, float] = {}
  tic = time.perf_counter()
  if isinstance(path_or_wav, str):
    wav = load_audio(path_or_wav)
  else:
    wav = np.asarray(path_or_wav, np.float32).reshape(-1)
  duration = len(wav) / SAMPLE_RATE
  timings['load'] = time.perf_counter() - tic
  tic = time.perf_counter()
  if vad is None:
    speech = np.array([[0.0, duration]]) if len(wav) else np.zeros((0, 2))
    regions = speech
  else:
    speech = speech_regions(wav, vad)
    regions = merge_regions(speech, vad.merge_gap)
  timings['vad'] = time.perf_counter() - tic
  tic = time.perf_counter()
  embedded = embed_regions(
    wav,
    regions,
    speech=speech,
    rate=rate,
    min_coverage=min_coverage,
    device=device,
  )
  timings['encoder'] = time.perf_counter() - tic
  embedded.timings = timings
  return embedded


def embed_regions(
  wav: np.ndarray,
  regions: np.ndarray,
  *,
  speech: np.ndarray | None = None,
  rate: float = DEFAULT_RATE,
  min_coverage: float = DEFAULT_MIN_COVERAGE,
  device: str = 'cpu',
  batch_windows: int = 512,
) -> Embedded:
  """d-vectors of 1.6 s windows cut from each of ``regions`` on its own.

  Args:
    wav: float32 mono samples at 16 kHz (volume is normalised here).
    regions: float[R, 2] sorted, disjoint spans in seconds.
    speech: the labelled time (default: ``regions``).
    rate, min_coverage, device: see `embed_audio`.
    batch_windows: mel windows held before they are embedded (memory).

  Returns:
    An `Embedded` (``timings`` empty).
  """
  _check_rate(rate, min_coverage)
  regions = np.asarray(regions, np.float64).reshape(-1, 2)
  wav = np.asarray(wav, np.float32)
  gain = volume_gain(wav)  # applied per region (no copy of the recording)
  encoder = voice_encoder(device) if len(regions) else None
  pending, embedded = [], []
  starts, ends, region = [], [], []
  for r, (a, b) in enumerate(regions):
    lo, hi = round(a * SAMPLE_RATE), min(round(b * SAMPLE_RATE), len(wav))
    if hi <= lo:
      continue
    firsts = partial_windows(hi - lo, rate=rate, min_coverage=min_coverage)
    stop = (int(firsts[-1]) + _PARTIAL_FRAMES) * _HOP
    piece = np.zeros(max(stop, hi - lo), np.float32)
    piece[: hi - lo] = wav[lo:hi]
    piece *= gain
    mel = mel_spectrogram(piece)
    pending.append(mel[firsts[:, None] + np.arange(_PARTIAL_FRAMES)[None, :]])
    starts.append(a + firsts * _HOP / SAMPLE_RATE)
    ends.append(
      np.minimum(a + (firsts + _PARTIAL_FRAMES) * _HOP / SAMPLE_RATE, b)
    )
    region.append(np.full(len(firsts), r, np.int64))
    if sum(len(m) for m in pending) >= batch_windows:
      embedded.append(encoder.embed(np.concatenate(pending)))
      pending = []
  if pending:
    embedded.append(encoder.embed(np.concatenate(pending)))

  def cat(xs, dtype):
    return np.concatenate(xs).astype(dtype) if xs else np.zeros(0, dtype)

  return Embedded(
    embeddings=np.concatenate(embedded)
    if embedded
    else np.zeros((0, _HIDDEN), np.float32),
    starts=cat(starts, np.float64),
    ends=cat(ends, np.float64),
    region=cat(region, np.int64),
    regions=regions,
    speech=regions if speech is None else np.asarray(speech, np.float64),
    duration=len(wav) / SAMPLE_RATE,
  )


def window_turns(
  embedded: Embedded, labels: np.ndarray
) -> list[tuple[float, float, int]]:
  """Speaker turns in the original time line from one label per window.

  Within each region, windows own the spans `rttm.frames_to_segments`
  gives them (the first from the region's start, the last to its end);
  the turns are then cut to the detected speech, so non-speech (including
  a short gap inside a merged region) is never labelled.

  Returns:
    ``[(onset s, offset s, label)]`` sorted by time, non-overlapping.
  """
  from uisrnn_jax import rttm

  labels = np.asarray(labels)
  if len(labels) != len(embedded.starts):
    raise ValueError(f'{len(labels)} labels for {len(embedded.starts)} windows')
  turns = []
  for r, (a, b) in enumerate(embedded.regions):
    idx = np.flatnonzero(embedded.region == r)
    if len(idx) == 0:
      continue
    starts = embedded.starts[idx].copy()
    ends = embedded.ends[idx].copy()
    starts[0], ends[-1] = a, b
    seg = rttm.frames_to_segments(starts, ends, labels[idx])
    inside = embedded.speech[
      (embedded.speech[:, 1] > a) & (embedded.speech[:, 0] < b)
    ]
    for lo, hi, label in zip(*seg):
      for s, e in inside:
        onset, offset = max(lo, s), min(hi, e)
        if offset > onset:
          turns.append((float(onset), float(offset), int(label)))
  turns.sort()
  return turns


# --------------------------------------------------------------------------
# Diarization


@dataclasses.dataclass
class Model:
  """A trained UIS-RNN for d-vectors: inference state and decode config."""

  state: Any
  decode_config: Any
  source: str


def load_model(
  workdir_or_checkpoint: str | None,
  *,
  decode_overrides: dict[str, Any] | None = None,
  num_speakers: int | None = None,
  min_speakers: int | None = None,
  max_speakers: int | None = None,
) -> Model:
  """The model `diarize` decodes with.

  Args:
    workdir_or_checkpoint: a training run directory (newest checkpoint) or
      a checkpoint file; None: the shipped model (`pretrained`).
    decode_overrides: ``decode`` config fields to change (e.g.
      ``{'beam_size': 4}``); the run's stored config otherwise.
    num_speakers, min_speakers, max_speakers: speaker count inside the
      beam search (pyannote's names; `decode.speaker_count_config`).

  Raises:
    errors.CheckpointError: no usable checkpoint (or the shipped one is missing).
    errors.ConfigError: an impossible speaker count.
    ValueError: a model whose observation_dim is not 256.
  """
  from uisrnn_jax import checkpoint, decode

  if workdir_or_checkpoint is None:  # the model shipped in the package
    from uisrnn_jax import pretrained

    workdir_or_checkpoint = pretrained.checkpoint_path()
  state, config = checkpoint.load_inference_state(workdir_or_checkpoint)
  dim = int(state.params['sigma2'].shape[-1])
  if dim != _HIDDEN:
    raise ValueError(
      f'{workdir_or_checkpoint}: the model takes {dim}-dim observations, '
      'resemblyzer d-vectors are 256-dim'
    )
  decode_config = config.decode
  if decode_overrides:
    decode_config = decode_config.copy_and_resolve_references()
    with decode_config.unlocked():  # an older run may lack newer fields
      decode_config.update(decode_overrides)
  decode_config = decode.speaker_count_config(
    decode_config,
    num_speakers=num_speakers,
    min_speakers=min_speakers,
    max_speakers=max_speakers,
  )
  return Model(state, decode_config, workdir_or_checkpoint)


def decode_windows(model: Model, embedded: Embedded) -> np.ndarray:
  """UIS-RNN labels of a recording's windows (one sequence)."""
  from uisrnn_jax import decode

  if len(embedded.embeddings) == 0:
    return np.zeros(0, np.int64)
  (labels,) = decode.predict_labels(
    model.state.params,
    [embedded.embeddings],
    transition_bias=float(model.state.transition_bias),
    crp_alpha=float(model.state.crp_alpha),
    config=model.decode_config,
    progress=False,
  )
  return np.asarray(labels)


def uri_of(path: str) -> str:
  """The file id of an audio file: its name without extension."""
  from uisrnn_jax import rttm

  return rttm.file_id(os.path.splitext(os.path.basename(path))[0])


def diarize(
  path: str,
  model: Model | str | None,
  *,
  vad: VadOptions | None = VadOptions(),
  rate: float = DEFAULT_RATE,
  min_coverage: float = DEFAULT_MIN_COVERAGE,
  device: str = 'cpu',
  decode_overrides: dict[str, Any] | None = None,
  num_speakers: int | None = None,
  min_speakers: int | None = None,
  max_speakers: int | None = None,
  uri: str | None = None,
  timings: dict[str, float] | None = None,
) -> Any:
  """Speaker diarization of an audio file.

  Args:
    path: the audio file.
    model: a `Model` from `load_model`, or a run directory / checkpoint.
    vad, rate, min_coverage, device: see `embed_audio`.
    decode_overrides, num_speakers, min_speakers, max_speakers: see
      `load_model` (only when ``model`` is a path).
    uri: the Annotation's uri (default: the file name without extension).
    timings: if given, filled with seconds per stage (``load``, ``vad``,
      ``encoder``, ``decode``).

  Returns:
    A ``pyannote.core.Annotation``: speakers ``spk0``, ``spk1``, ... in
    order of first appearance; empty (with a warning) when no speech was
    found.

  Raises:
    errors.CheckpointError: no usable checkpoint.
    errors.AudioError, errors.InputFileNotFoundError: bad audio.
    ValueError: a model whose observation_dim is not 256.
  """
  from uisrnn_jax import rttm

  if not isinstance(model, Model):
    model = load_model(
      model,
      decode_overrides=decode_overrides,
      num_speakers=num_speakers,
      min_speakers=min_speakers,
      max_speakers=max_speakers,
    )
  embedded = embed_audio(
    path, vad=vad, rate=rate, min_coverage=min_coverage, device=device
  )
  tic = time.perf_counter()
  labels = decode_windows(model, embedded)
  if timings is not None:
    timings.update(embedded.timings, decode=time.perf_counter() - tic)
  if len(labels) == 0:
    warnings.warn(
      f'{path}: no speech detected; the diarization is empty', stacklevel=2
    )
  turns = window_turns(embedded, labels)
  return rttm.annotation(
    (
      np.array([t[0] for t in turns]),
      np.array([t[1] for t in turns]),
      [t[2] for t in turns],
    ),
    uri or uri_of(path),
  )


# --------------------------------------------------------------------------
# Command line


def audio_inputs(specs: Sequence[str]) -> list[str]:
  """Audio files from paths and directories (their audio files, sorted).

  Raises:
    errors.InputFileNotFoundError: a missing path or an empty directory.
  """
  paths = []
  for spec in specs:
    if os.path.isdir(spec):
      found = sorted(
        os.path.join(spec, f)
        for f in os.listdir(spec)
        if f.lower().endswith(AUDIO_EXTENSIONS)
      )
      if not found:
        raise InputFileNotFoundError(f'no audio files in directory {spec}')
      paths += found
    elif os.path.isfile(spec):
      paths.append(spec)
    else:
      raise InputFileNotFoundError(f'no such audio file: {spec}')
  return paths


def add_vad_flags(parser: argparse.ArgumentParser) -> None:
  """``--vad_threshold``, ``--min_speech``, ... (`VadOptions`), ``--novad``."""
  d = VadOptions()
  group = parser.add_argument_group('speech detection (silero-vad)')
  group.add_argument('--vad_threshold', type=float, default=d.threshold)
  group.add_argument(
    '--min_speech',
    type=float,
    default=d.min_speech,
    help='drop speech shorter than this, s (default %(default)s)',
  )
  group.add_argument(
    '--min_silence',
    type=float,
    default=d.min_silence,
    help='silence shorter than this does not end speech, s '
    '(default %(default)s)',
  )
  group.add_argument(
    '--speech_pad',
    type=float,
    default=d.speech_pad,
    help='pad speech regions by this on each side, s (default %(default)s)',
  )
  group.add_argument(
    '--merge_gap',
    type=float,
    default=d.merge_gap,
    help='embed speech regions closer than this as one, s (default '
    '%(default)s; 0: never)',
  )
  group.add_argument(
    '--novad',
    '--no-vad',
    dest='vad',
    action='store_false',
    help='no speech detection: embed and label the whole recording',
  )


def vad_options(args: argparse.Namespace) -> VadOptions | None:
  """`VadOptions` from `add_vad_flags` flags (None for ``--novad``)."""
  if not args.vad:
    return None
  return VadOptions(
    threshold=args.vad_threshold,
    min_speech=args.min_speech,
    min_silence=args.min_silence,
    speech_pad=args.speech_pad,
    merge_gap=args.merge_gap,
  )


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog='uisrnn-diarize',
    description='Speaker diarization of audio files with a trained UIS-RNN '
    'run, silero-vad speech detection and resemblyzer d-vectors; writes '
    'RTTM and, given a reference, scores it (DER, JER).',
  )
  parser.add_argument(
    'audio', nargs='+', help='audio files (wav, flac, mp3, ...) or directories'
  )
  parser.add_argument(
    '--workdir',
    default=None,
    help='training run directory or checkpoint (default: the shipped '
    'pretrained model, python -m uisrnn_jax.pretrained)',
  )
  parser.add_argument(
    '--output',
    help='RTTM file to write (one input), or directory of <stem>.rttm '
    '(several inputs); default: print RTTM to stdout',
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
  add_vad_flags(parser)
  parser.add_argument('--device', default='cpu', help='torch device')
  parser.add_argument('--beam_size', type=int, help='decode.beam_size')
  parser.add_argument(
    '--count_search',
    type=int,
    help='decode.count_search (0: one beam search, no speaker-count search)',
  )
  for name, what in (
    ('num_speakers', 'exactly this many speakers'),
    ('min_speakers', 'at least this many speakers'),
    ('max_speakers', 'at most this many speakers'),
  ):
    parser.add_argument(f'--{name}', type=int, help=f'{what} (beam search)')
  group = parser.add_argument_group('evaluation')
  group.add_argument(
    '--reference', help='reference RTTM file(s), comma-separated'
  )
  group.add_argument('--uem', help='UEM file of the scored regions')
  group.add_argument(
    '--collar',
    type=float,
    default=0.5,
    help='DER collar, total width in seconds (default %(default)s, i.e. '
    '+-0.25 s as usual for AMI)',
  )
  group.add_argument(
    '--skip_overlap',
    action='store_true',
    help='do not score overlapping reference speech',
  )
  group.add_argument('--report', help='write the scores as .csv or .json')
  return parser


def _outputs(paths: list[str], output: str | None) -> list[str | None]:
  from uisrnn_jax.errors import DataFormatError

  uris = [uri_of(p) for p in paths]
  if len(set(uris)) != len(uris):
    dup = sorted({u for u in uris if uris.count(u) > 1})
    raise DataFormatError(f'two inputs have the same file id: {dup}')
  if output is None:
    return [None] * len(paths)
  if len(paths) == 1 and not os.path.isdir(output):
    return [output]
  if os.path.exists(output) and not os.path.isdir(output):
    raise DataFormatError(
      f'--output={output} is a file, but there are {len(paths)} inputs: '
      'give a directory'
    )
  return [os.path.join(output, f'{u}.rttm') for u in uris]


def main(argv: Sequence[str] | None = None) -> int:
  """``uisrnn-diarize AUDIO... [--workdir=DIR] [--output=OUT] [--reference=R]``.

  Every input is checked (readable audio, reference and UEM well formed)
  before anything is written.

  Returns:
    The exit status (0 on success, 1 on bad input with ``error: ...`` on
    stderr).
  """
  # argparse, not absl flags: absl's flags are one process-wide registry
  # (cli.py's require --config), and this command stands alone.
  args = _parser().parse_args(argv)
  from uisrnn_jax import checkpoint, compilation, evaluation, rttm

  compilation.enable_cache()  # compiled programs reused across runs

  try:
    vad = vad_options(args)
    _check_rate(args.rate, args.min_coverage)
    paths = audio_inputs(args.audio)
    if args.report and not args.report.endswith(('.csv', '.json')):
      raise ValueError(f'--report must end in .csv or .json: {args.report}')
    if args.report and not args.reference:
      raise ValueError('--report needs --reference')
    outputs = _outputs(paths, args.output)
    references = uems = None
    if args.reference:
      references = rttm.read_annotations(args.reference.split(','))
    if args.uem:
      uems = rttm.read_uem(args.uem)
    overrides = {
      name: value
      for name, value in (
        ('beam_size', args.beam_size),
        ('count_search', args.count_search),
      )
      if value is not None
    }
    model = load_model(
      args.workdir,
      decode_overrides=overrides,
      num_speakers=args.num_speakers,
      min_speakers=args.min_speakers,
      max_speakers=args.max_speakers,
    )
    for path in paths:  # fail on a bad file before anything is written
      check_audio(path)
    if references is not None:
      references = reference_annotations(
        references, uems, paths, args.reference
      )
  except (ValueError, FileNotFoundError, checkpoint.CheckpointError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  hypotheses = {}
  for path in paths:  # all files first: an error leaves nothing written
    try:
      with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        annotation = diarize(
          path,
          model,
          vad=vad,
          rate=args.rate,
          min_coverage=args.min_coverage,
          device=args.device,
        )
      for w in caught:
        print(f'warning: {w.message}', file=sys.stderr)
    except (ValueError, FileNotFoundError) as e:
      print(f'error: {e}', file=sys.stderr)
      return 1
    hypotheses[annotation.uri] = annotation
  try:  # a full disk, say: errors.OutputWriteError names the file
    for annotation, out in zip(hypotheses.values(), outputs):
      text = rttm.annotation_text(annotation)
      if out is None:
        sys.stdout.write(text)
        continue
      if os.path.dirname(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
      checkpoint.atomic_write(out, text.encode())
      print(
        f'wrote {len(annotation)} turns of {len(annotation.labels())} '
        f'speakers to {out}',
        file=sys.stderr,
      )
    if references is not None:
      report = evaluation.score_annotations(
        {u: references[u] for u in hypotheses},
        hypotheses,
        uems=uems,
        collar=args.collar,
        skip_overlap=args.skip_overlap,
      )
      print(
        report.table(), file=sys.stderr if args.output is None else sys.stdout
      )
      print(
        report.summary(), file=sys.stderr if args.output is None else sys.stdout
      )
      if args.report:
        report.write(args.report)
        print(f'wrote {args.report}', file=sys.stderr)
  except OSError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0


def reference_annotations(
  references: dict[str, Any],
  uems: dict[str, np.ndarray] | None,
  paths: Sequence[str],
  source: str,
) -> dict[str, Any]:
  """The reference Annotation of every input, by uri.

  A file with no reference turns is an error unless the UEM lists it: then
  it is scored as holding no speech.

  Raises:
    errors.DataFormatError: an input without reference turns or UEM entry.
  """
  from pyannote.core import Annotation

  from uisrnn_jax import errors

  out = {}
  for path in paths:
    uri = uri_of(path)
    if uri in references:
      out[uri] = references[uri]
    elif uems is not None and uri in uems:
      out[uri] = Annotation(uri=uri)
    else:
      raise errors.DataFormatError(
        f'{source}: no reference turns for {uri!r} ({path}); list it in '
        'the UEM (--uem) if it holds no speech'
      )
  return out


def check_audio(path: str) -> None:
  """Raises `errors.AudioError` unless ``path`` is readable, non-empty audio.

  Reads only the header when soundfile can (the whole file otherwise).
  """
  if not os.path.isfile(path):
    raise InputFileNotFoundError(f'no such audio file: {path}')
  import soundfile

  try:
    info = soundfile.info(path)
  except Exception:  # noqa: BLE001 - not libsndfile's: decode it whole
    load_audio(path)
    return
  if info.frames == 0:
    raise AudioError(f'{path}: no audio samples (zero-length audio)')


def console_main() -> None:
  """Entry point of the ``uisrnn-diarize`` console script."""
  raise SystemExit(main())


if __name__ == '__main__':
  console_main()
