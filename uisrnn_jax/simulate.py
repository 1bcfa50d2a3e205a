"""Multi-speaker conversations from single-speaker audio: ``uisrnn-simulate``.

Supervised diarization needs labelled conversations; most corpora hold one
speaker per file. This module cuts turns out of single-speaker audio and
joins them into conversations, written as 16 kHz mono audio with an exact
RTTM reference, deterministically from a seed.

Sources. Each positional argument is a directory (or an audio file). An
audio file directly inside a given directory belongs to the speaker named by
its file name up to the first ``-`` (LibriSpeech's ``SPEAKER-CHAPTER-UTT``);
a file inside a subdirectory belongs to the speaker named by that first-level
subdirectory (``test-other/SPEAKER/...``). A speaker's audio is the
concatenation of its files in name order, each resampled to 16 kHz, downmixed
and (by default) scaled to an RMS of ``level_dbfs``.

Pseudo-speakers. Each of ``speed_factors`` turns every speaker into one
pseudo-speaker (``1034@0.9``; factor 1 keeps the name ``1034``): its audio
is resampled by the factor with `scipy.signal.resample_poly`, as Kaldi's
speed perturbation does, so it lasts ``1 / factor`` as long and its pitch is
``factor`` times the original. Two pseudo-speakers of one source never meet
in a conversation unless ``same_source=True``.

One conversation (`plan_conversation`):

1. ``k`` speakers are drawn from ``num_speakers`` and chosen uniformly
   without replacement; their draw order is their entry order. A target
   length ``L`` is drawn from ``duration``.
2. Turns are added until less than ``min_remaining`` seconds of ``L`` are
   left; the turn that would pass ``L`` is cut at ``L`` (and a turn or
   pause is shortened if a speaker yet to enter would not fit). A turn is a
   contiguous chunk, at a uniform position, of its speaker's audio, of a
   length drawn from ``turn_length`` (the whole audio if that is shorter).
3. The next speaker always differs from the current one. Speaker 2 takes the
   second turn; speakers 3..k get entry times uniform in
   ``[0, entry_fraction * L]`` and take the first turn that starts after it
   (earlier when the time left gets short, so every chosen speaker speaks).
   Otherwise the next speaker is uniform among those who have spoken, the
   current one excluded.
4. With probability ``overlap_probability`` a turn starts before the
   previous one ends, by a length drawn from ``overlap_length`` (shortened so
   that it ends after the previous turn and at most two people speak at
   once); otherwise it starts after a pause drawn from ``pause``.
5. Each chunk fades in and out linearly over ``fade`` seconds and chunks are
   added sample by sample; a mix peaking above full scale is scaled down as a
   whole (the factor is in the manifest).

All times lie on a 1 ms grid (16 samples), so the RTTM's 3-decimal times are
exact. The RTTM marks where each chunk was placed; pauses inside a source
chunk are part of its turn, as in LibriSim.

``--preset=librisim`` is LibriSim's own recipe (`PRESETS`): 2-4 speakers,
31-90 s, turns uniform in 1-6 s, butt-joined (no pause, no overlap) with a
5 ms fade. `benchmarks/simulate_stats.py` compares its statistics with
``librisim/train.npz``.

Output, in ``--output`` DIR (an existing non-empty DIR only with
``--overwrite``):

- ``<prefix>_<i>.wav`` (or ``.flac``, 16-bit) and ``<prefix>_<i>.rttm``, one
  pair per conversation, the RTTM's file id being the file stem;
- ``reference.rttm``: all conversations' turns in one RTTM (the same lines);
- ``manifest.jsonl``: one NeMo-style line per conversation
  (``audio_filepath`` and ``rttm_filepath`` relative to DIR, ``duration``,
  ``num_speakers``, ``speakers``, and ``turns``: speaker, onset and duration
  in seconds, source speaker, speed factor and start sample in the
  pseudo-speaker's audio), and ``simulation.json`` (options, seed, sources).

Every file is written atomically (a temporary file renamed into place), and
the manifest last: a corpus without ``manifest.jsonl`` is incomplete. Every
check of the input and options runs before anything is written.

Command line::

  uisrnn-simulate ../shared/data/librispeech-samples/train-clean-100 \\
    --output=sim/train --num_conversations=300 --seed=0 \\
    --speed_factors=0.9,1.0,1.1 --pause=uniform:0,0.5 \\
    --overlap_probability=0.1 --overlap_length=uniform:0.2,1

>>> from uisrnn_jax import simulate
>>> options = simulate.Options(**simulate.PRESETS['librisim'])
>>> simulate.simulate(['speakers/'], 'sim', options=options, seed=0,
...                   num_conversations=10)             # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import dataclasses
import fractions
import io
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from uisrnn_jax.errors import (
  ConfigError,
  DataFormatError,
  InputFileNotFoundError,
  UISRNNJaxError,
)

SAMPLE_RATE = 16000
GRID = SAMPLE_RATE // 1000  # samples per millisecond: every time is on it
AUDIO_EXTENSIONS = ('.flac', '.wav', '.ogg', '.mp3', '.opus', '.aif', '.aiff')
MANIFEST = 'manifest.jsonl'
CORPUS_RTTM = 'reference.rttm'
MIN_SOURCE = 0.1  # seconds of audio a speaker needs
SETTINGS = 'simulation.json'
_TMP_PREFIX = '.tmp_'
_INSTALL_HINT = (
  "reading audio needs soundfile: pip install 'uisrnn-jax[audio]'"
  ' (or pip install soundfile)'
)


# ---------------------------------------------------------------------------
# Option values.


@dataclasses.dataclass(frozen=True)
class Distribution:
  """A distribution of durations in seconds, written ``kind:a[,b]``.

  ``constant:V`` (or just ``V``), ``uniform:LO,HI``, ``exponential:MEAN``,
  ``gamma:SHAPE,MEAN``.

  >>> Distribution.parse('uniform:1,6').mean
  3.5
  """

  kind: str
  params: tuple[float, ...]

  _ARITY = {'constant': 1, 'uniform': 2, 'exponential': 1, 'gamma': 2}

  @classmethod
  def parse(cls, text: str | float, *, name: str = 'value') -> Distribution:
    """Parses ``kind:a[,b]``; raises `ConfigError` naming ``name``."""
    if isinstance(text, (int, float)):
      text = repr(float(text))
    kind, _, rest = str(text).strip().partition(':')
    if not rest:
      kind, rest = 'constant', kind
    kind = kind.strip().lower()
    if kind not in cls._ARITY:
      raise ConfigError(
        f'{name}: unknown distribution {kind!r} in {text!r} (use '
        'constant:V, uniform:LO,HI, exponential:MEAN or gamma:SHAPE,MEAN)'
      )
    try:
      params = tuple(float(p) for p in rest.split(','))
    except ValueError:
      raise ConfigError(
        f'{name}: {text!r} has a non-numeric parameter'
      ) from None
    if len(params) != cls._ARITY[kind]:
      raise ConfigError(
        f'{name}: {kind} takes {cls._ARITY[kind]} parameter(s), got {text!r}'
      )
    if not all(math.isfinite(p) and p >= 0 for p in params):
      raise ConfigError(f'{name}: parameters must be finite and >= 0: {text!r}')
    if kind == 'uniform' and params[0] > params[1]:
      raise ConfigError(f'{name}: uniform needs LO <= HI, got {text!r}')
    if kind in ('exponential', 'gamma') and min(params) <= 0:
      raise ConfigError(f'{name}: {kind} parameters must be > 0: {text!r}')
    return cls(kind, params)

  @property
  def mean(self) -> float:
    if self.kind == 'uniform':
      return (self.params[0] + self.params[1]) / 2
    return self.params[-1]

  @property
  def minimum(self) -> float:
    """The lower end of the support."""
    return self.params[0] if self.kind in ('constant', 'uniform') else 0.0

  def sample(self, rng: np.random.Generator) -> float:
    if self.kind == 'constant':
      return self.params[0]
    if self.kind == 'uniform':
      return float(rng.uniform(*self.params))
    if self.kind == 'exponential':
      return float(rng.exponential(self.params[0]))
    shape, mean = self.params
    return float(rng.gamma(shape, mean / shape))

  def __str__(self) -> str:
    return f'{self.kind}:' + ','.join(f'{p:.10g}' for p in self.params)


@dataclasses.dataclass(frozen=True)
class SpeakerCount:
  """Speakers per conversation: ``3``, a range ``2-4`` (uniform) or weights
  ``2:1,3:1,4:2``.

  >>> SpeakerCount.parse('2-4').values
  (2, 3, 4)
  """

  values: tuple[int, ...]
  probabilities: tuple[float, ...]

  @classmethod
  def parse(cls, text: str | int, *, name: str = 'num_speakers'):
    text = str(text).strip()
    try:
      if ':' in text:
        pairs = [p.split(':') for p in text.split(',')]
        values = tuple(int(v) for v, _ in pairs)
        weights = [float(w) for _, w in pairs]
      elif '-' in text:
        lo, hi = (int(v) for v in text.split('-'))
        values, weights = tuple(range(lo, hi + 1)), [1.0] * (hi - lo + 1)
      else:
        values, weights = (int(text),), [1.0]
    except ValueError:
      raise ConfigError(
        f'{name}: {text!r} is not N, LO-HI or N:WEIGHT,... (integers)'
      ) from None
    if not values or min(values) < 2:
      raise ConfigError(
        f'{name}: every conversation needs >= 2 speakers: {text!r}'
      )
    if len(set(values)) != len(values):
      raise ConfigError(f'{name}: a speaker count is repeated in {text!r}')
    if not all(math.isfinite(w) and w >= 0 for w in weights) or not sum(
      weights
    ):
      raise ConfigError(f'{name}: weights must be >= 0, not all 0: {text!r}')
    total = sum(weights)
    return cls(values, tuple(w / total for w in weights))

  def sample(self, rng: np.random.Generator) -> int:
    return int(self.values[rng.choice(len(self.values), p=self.probabilities)])

  def __str__(self) -> str:
    lo, hi = min(self.values), max(self.values)
    if len(set(self.probabilities)) == 1 and self.values == tuple(
      range(lo, hi + 1)
    ):
      return str(lo) if lo == hi else f'{lo}-{hi}'
    return ','.join(
      f'{v}:{p:.10g}' for v, p in zip(self.values, self.probabilities)
    )


def parse_speed_factors(text: str | Sequence[float]) -> tuple[float, ...]:
  """``0.9,1.0,1.1`` -> ``(0.9, 1.0, 1.1)``; each in [0.5, 2], distinct."""
  try:
    if isinstance(text, str):
      factors = tuple(float(f) for f in text.split(','))
    else:
      factors = tuple(float(f) for f in text)
  except ValueError:
    raise ConfigError(
      f'speed_factors: {text!r} is not a list of numbers'
    ) from None
  if not factors or len(set(factors)) != len(factors):
    raise ConfigError(f'speed_factors: need distinct factors, got {text!r}')
  for f in factors:
    if not 0.5 <= f <= 2.0:
      raise ConfigError(f'speed_factors: {f} is outside [0.5, 2]')
    if abs(float(_ratio(f)) - f) > 1e-9:
      raise ConfigError(
        f'speed_factors: {f} is not a ratio of integers <= 1000 (use e.g. 0.9)'
      )
  return factors


def _ratio(factor: float) -> fractions.Fraction:
  return fractions.Fraction(factor).limit_denominator(1000)


@dataclasses.dataclass(frozen=True)
class Options:
  """How conversations are made (see the module docstring).

  Durations are in seconds. The defaults are LibriSim's recipe without
  speed perturbation (``PRESETS['librisim']``).
  """

  num_speakers: SpeakerCount = SpeakerCount.parse('2-4')
  duration: Distribution = Distribution.parse('uniform:31,90')
  turn_length: Distribution = Distribution.parse('uniform:1,6')
  pause: Distribution = Distribution.parse('constant:0')
  overlap_probability: float = 0.0
  overlap_length: Distribution = Distribution.parse('uniform:0.2,1')
  speed_factors: tuple[float, ...] = (1.0,)
  same_source: bool = False
  entry_fraction: float = 0.6
  min_remaining: float = 1.0
  fade: float = 0.005
  level_dbfs: float | None = -30.0

  def __post_init__(self):
    # Accept the command-line spellings too.
    for field, parse in (
      ('num_speakers', SpeakerCount.parse),
      ('duration', Distribution.parse),
      ('turn_length', Distribution.parse),
      ('pause', Distribution.parse),
      ('overlap_length', Distribution.parse),
    ):
      value = getattr(self, field)
      if not isinstance(value, (SpeakerCount, Distribution)):
        object.__setattr__(self, field, parse(value, name=field))
    object.__setattr__(
      self, 'speed_factors', parse_speed_factors(self.speed_factors)
    )
    self.validate()

  def validate(self) -> None:
    """Raises `ConfigError` for values out of range."""
    if not 0 <= self.overlap_probability <= 1:
      raise ConfigError(
        f'overlap_probability must be in [0, 1], got {self.overlap_probability}'
      )
    if not 0 <= self.entry_fraction <= 1:
      raise ConfigError(
        f'entry_fraction must be in [0, 1], got {self.entry_fraction}'
      )
    if not (math.isfinite(self.min_remaining) and self.min_remaining >= 0.001):
      raise ConfigError(
        f'min_remaining must be >= 0.001 s, got {self.min_remaining}'
      )
    if not (math.isfinite(self.fade) and 0 <= self.fade <= 1):
      raise ConfigError(f'fade must be in [0, 1] s, got {self.fade}')
    if self.level_dbfs is not None and not -100 <= self.level_dbfs <= 0:
      raise ConfigError(
        f'level_dbfs must be in [-100, 0] (or None), got {self.level_dbfs}'
      )
    if self.turn_length.mean <= 0:
      raise ConfigError(f'turn_length must be > 0, got {self.turn_length}')
    need = max(self.num_speakers.values) * self.min_remaining
    if self.duration.minimum < need:
      raise ConfigError(
        f'duration: {self.duration} can draw lengths below {need:g} s, the '
        f'least that {max(self.num_speakers.values)} speakers with '
        f'min_remaining={self.min_remaining:g} s need; use uniform:LO,HI '
        f'with LO >= {need:g}'
      )

  def to_json(self) -> dict[str, Any]:
    return {
      f.name: (
        str(getattr(self, f.name))
        if isinstance(getattr(self, f.name), (SpeakerCount, Distribution))
        else getattr(self, f.name)
      )
      for f in dataclasses.fields(self)
    }


PRESETS: dict[str, dict[str, Any]] = {
  # librisim/README.md, "Simulation recipe": butt-joined turns of U(1, 6) s,
  # 2-4 speakers, 31-90 s, later speakers entering in the first 60 %.
  'librisim': dict(
    num_speakers='2-4',
    duration='uniform:31,90',
    turn_length='uniform:1,6',
    pause='constant:0',
    overlap_probability=0.0,
    speed_factors=(1.0,),
    entry_fraction=0.6,
    min_remaining=1.0,
    fade=0.005,
    level_dbfs=-30.0,
  ),
}


# ---------------------------------------------------------------------------
# Sources.


def find_speakers(paths: Sequence[str]) -> dict[str, list[str]]:
  """Audio files per speaker (see the module docstring for the naming).

  Returns:
    ``{speaker: [file, ...]}``, speakers and files sorted.

  Raises:
    InputFileNotFoundError: a path does not exist.
    DataFormatError: a path holds no audio file.
  """
  if not paths:
    raise ConfigError('no source directory given')
  speakers: dict[str, list[str]] = {}
  for root in paths:
    if os.path.isfile(root):
      found = [(os.path.dirname(root) or '.', root)]
    elif os.path.isdir(root):
      found = [
        (dirpath, os.path.join(dirpath, name))
        for dirpath, _, names in _walk_visible(root)
        for name in names
      ]
    else:
      raise InputFileNotFoundError(f'no such source directory or file: {root}')
    count = 0
    for dirpath, path in sorted(found):
      name = os.path.basename(path)
      if name.startswith('.') or not name.lower().endswith(AUDIO_EXTENSIONS):
        continue
      rel = os.path.relpath(dirpath, root) if os.path.isdir(root) else '.'
      if rel == '.':
        speaker = os.path.splitext(name)[0].split('-')[0]
      else:
        speaker = rel.split(os.sep)[0]
      speaker = '_'.join(speaker.split()) or '_'
      speakers.setdefault(speaker, []).append(path)
      count += 1
    if not count:
      raise DataFormatError(
        f'{root}: no audio files ({", ".join(AUDIO_EXTENSIONS)})'
      )
  return {s: sorted(files) for s, files in sorted(speakers.items())}


def _walk_visible(root: str):
  for dirpath, dirnames, names in os.walk(root):
    dirnames[:] = [d for d in dirnames if not d.startswith('.')]
    yield dirpath, dirnames, names


def read_audio(path: str) -> np.ndarray:
  """float32 mono samples at 16 kHz of any file soundfile reads.

  Raises:
    DataFormatError: the file cannot be decoded, is empty or not finite.
  """
  try:
    import soundfile
  except ImportError as e:
    raise ImportError(f'{_INSTALL_HINT} ({e})') from e
  from scipy import signal

  try:
    data, rate = soundfile.read(path, dtype='float32', always_2d=True)
  except Exception as e:  # noqa: BLE001 - libsndfile raises several types
    raise DataFormatError(f'{path}: cannot read audio ({e})') from e
  if data.shape[0] == 0:
    raise DataFormatError(f'{path}: no audio samples')
  wav = data.mean(axis=1)
  if rate != SAMPLE_RATE:
    g = math.gcd(SAMPLE_RATE, rate)
    wav = signal.resample_poly(wav, SAMPLE_RATE // g, rate // g)
  if not np.all(np.isfinite(wav)):
    raise DataFormatError(f'{path}: audio holds NaN or Inf')
  return np.asarray(wav, np.float32)


def set_level(
  wav: np.ndarray, dbfs: float, *, name: str = 'audio'
) -> np.ndarray:
  """``wav`` scaled to an RMS of ``dbfs`` dB full scale.

  Raises:
    DataFormatError: ``wav`` is all zeros.
  """
  rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
  if rms == 0:
    raise DataFormatError(f'{name}: silent (all samples are 0)')
  return (wav * (10 ** (dbfs / 20) / rms)).astype(np.float32)


def perturb_speed(wav: np.ndarray, factor: float) -> np.ndarray:
  """Speed perturbation: ``wav`` played ``factor`` times as fast.

  Resamples by ``1 / factor`` (`scipy.signal.resample_poly`) and keeps the
  sample rate, so the duration is divided by ``factor`` and every frequency
  multiplied by it, as in Kaldi's ``sox speed``.

  Returns:
    float32[ceil(len(wav) / factor)].
  """
  ratio = _ratio(factor)
  if ratio == 1:
    return np.asarray(wav, np.float32)
  from scipy import signal

  out = signal.resample_poly(wav, ratio.denominator, ratio.numerator)
  return np.asarray(out, np.float32)


def pseudo_name(speaker: str, factor: float) -> str:
  """``1034@0.9``; factor 1 keeps the speaker's name."""
  return speaker if factor == 1 else f'{speaker}@{factor:g}'


def perturbed_length(num_samples: int, factor: float) -> int:
  """``len(perturb_speed(wav, factor))`` for ``len(wav) == num_samples``."""
  ratio = _ratio(factor)
  return -(-num_samples * ratio.denominator // ratio.numerator)


@dataclasses.dataclass
class Sources:
  """The speakers' audio; pseudo-speakers' audio is made when asked for.

  Attributes:
    speech: ``{source speaker: float32[n]}`` at 16 kHz (files concatenated).
    base: ``{pseudo-speaker: source speaker}``.
    factor: ``{pseudo-speaker: speed factor}``.
    files: ``{source speaker: [file, ...]}`` in concatenation order.
  """

  speech: dict[str, np.ndarray]
  base: dict[str, str]
  factor: dict[str, float]
  files: dict[str, list[str]]
  _cache: dict[str, np.ndarray] = dataclasses.field(
    default_factory=dict, repr=False
  )

  @property
  def lengths(self) -> dict[str, int]:
    """Samples of audio per pseudo-speaker."""
    return {
      name: perturbed_length(len(self.speech[self.base[name]]), f)
      for name, f in self.factor.items()
    }

  def audio(self, name: str) -> np.ndarray:
    """float32 audio of pseudo-speaker ``name`` (the last few are cached,
    so memory holds the sources once, not once per speed factor)."""
    if name not in self._cache:
      if len(self._cache) >= 8:
        del self._cache[next(iter(self._cache))]
      self._cache[name] = perturb_speed(
        self.speech[self.base[name]], self.factor[name]
      )
    return self._cache[name]


def load_sources(
  paths: Sequence[str], options: Options, *, progress: bool = False
) -> Sources:
  """Finds, reads and levels the speakers under ``paths``, and names their
  pseudo-speakers.

  Raises:
    ConfigError: fewer speakers than ``options.num_speakers`` may need.
    InputFileNotFoundError, DataFormatError: see `find_speakers`,
      `read_audio`, `set_level`.
  """
  files = find_speakers(paths)
  base = {pseudo_name(s, f): s for s in files for f in options.speed_factors}
  check_speaker_count(base, options)  # before reading anything
  speech, factor = {}, {}
  items = list(files.items())
  for speaker, speaker_files in _progress(items, progress, 'reading'):
    parts = []
    for path in speaker_files:
      wav = read_audio(path)
      if options.level_dbfs is not None:
        wav = set_level(wav, options.level_dbfs, name=path)
      parts.append(wav)
    speech[speaker] = np.concatenate(parts)
    if len(speech[speaker]) < MIN_SOURCE * SAMPLE_RATE:
      raise DataFormatError(
        f'speaker {speaker}: {len(speech[speaker]) / SAMPLE_RATE:g} s of audio '
        f'({", ".join(speaker_files)}), fewer than {MIN_SOURCE:g} s'
      )
    for f in options.speed_factors:
      factor[pseudo_name(speaker, f)] = f
  return Sources(speech, base, factor, files)


# ---------------------------------------------------------------------------
# Planning and rendering.


@dataclasses.dataclass(frozen=True)
class Turn:
  """One chunk of a pseudo-speaker's audio placed in a conversation.

  Attributes:
    speaker: pseudo-speaker name.
    onset: first sample in the conversation (a multiple of `GRID`).
    length: samples (a multiple of `GRID`).
    source_start: first sample in the pseudo-speaker's audio.
  """

  speaker: str
  onset: int
  length: int
  source_start: int

  @property
  def end(self) -> int:
    return self.onset + self.length


@dataclasses.dataclass(frozen=True)
class Conversation:
  """A planned conversation: who speaks which chunk when.

  Attributes:
    id: file stem and RTTM file id.
    num_samples: length of the audio (the end of its last turn).
    speakers: pseudo-speakers in entry order.
    turns: in onset order.
  """

  id: str
  num_samples: int
  speakers: tuple[str, ...]
  turns: tuple[Turn, ...]


def _ms(seconds: float) -> int:
  return int(round(seconds * 1000))


def plan_conversation(
  rng: np.random.Generator,
  *,
  conversation_id: str,
  lengths: Mapping[str, int],
  base: Mapping[str, str],
  options: Options,
) -> Conversation:
  """Draws one conversation (steps 1-4 of the module docstring).

  Args:
    rng: its random stream.
    conversation_id: the name it gets.
    lengths: samples of audio per pseudo-speaker.
    base: source speaker of each pseudo-speaker.
    options: the settings.

  Returns:
    A `Conversation`; its times are in samples on the 1 ms grid.
  """
  k = options.num_speakers.sample(rng)
  names = sorted(lengths)
  if options.same_source:
    chosen = [names[i] for i in rng.choice(len(names), k, replace=False)]
  else:
    by_base: dict[str, list[str]] = {}
    for name in names:
      by_base.setdefault(base[name], []).append(name)
    bases = sorted(by_base)
    chosen = []
    for i in rng.choice(len(bases), k, replace=False):
      group = by_base[bases[i]]
      chosen.append(group[rng.integers(len(group))])
  target = _ms(options.duration.sample(rng))
  left_min = _ms(options.min_remaining)
  # A waiting speaker is let in early once the time left would hardly hold
  # one typical turn (and pause) per waiting speaker.
  force_at = max(_ms(options.turn_length.mean), left_min) + _ms(
    options.pause.mean
  )
  entry = [0, 0] + sorted(
    int(round(t))
    for t in rng.uniform(0, options.entry_fraction * target, k - 2)
  )
  pending = list(range(k))  # speakers yet to enter, in entry order
  spoken: list[int] = []
  turns: list[Turn] = []
  end = 0  # ms: the end of the last turn
  before_last = 0  # ms: the end of the turn before the last one
  current = -1
  while target - end >= left_min:
    newcomer = bool(pending) and (
      len(spoken) < 2
      or entry[pending[0]] <= end
      or target - end < len(pending) * force_at + left_min
    )
    if newcomer:
      j = pending.pop(0)
      spoken.append(j)
    else:
      others = [s for s in spoken if s != current]
      j = others[rng.integers(len(others))]
    speaker = chosen[j]
    src_ms = lengths[speaker] // GRID
    length = min(max(1, _ms(options.turn_length.sample(rng))), src_ms)
    onset = end
    ov = 0
    if turns and rng.random() < options.overlap_probability:
      # Shortened so that this turn ends after the last one and starts after
      # the one before it ended (at most two voices at once).
      earliest = max(before_last, turns[-1].onset // GRID + 1)
      ov = _ms(options.overlap_length.sample(rng))
      ov = max(0, min(ov, end - earliest, length - 1))
      onset = end - ov
    if turns and not ov:
      pause = _ms(options.pause.sample(rng))
      room = target - end - (len(pending) + 1) * left_min
      if pause > room:
        if not pending and not newcomer:
          break  # the pause ends the conversation
        pause = max(0, room)
      onset = end + pause
    length = min(length, target - onset - len(pending) * left_min)
    length = max(1, length)
    start = int(rng.integers(0, lengths[speaker] - length * GRID + 1))
    turns.append(Turn(speaker, onset * GRID, length * GRID, start))
    before_last = end
    end = max(end, onset + length)
    current = j
  return Conversation(
    conversation_id,
    end * GRID,
    tuple(chosen[j] for j in spoken),
    tuple(turns),
  )


def conversation_rng(seed: int, index: int) -> np.random.Generator:
  """The random stream of conversation ``index``: independent of how many
  conversations are made, so a larger run extends a smaller one."""
  return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def plan(
  sources_lengths: Mapping[str, int],
  base: Mapping[str, str],
  options: Options,
  *,
  seed: int,
  num_conversations: int,
  prefix: str = 'sim',
) -> list[Conversation]:
  """`plan_conversation` for conversations ``0 .. num_conversations - 1``.

  Raises:
    ConfigError: fewer (source) speakers than a conversation may need.
  """
  check_speaker_count(base, options)
  width = max(4, len(str(num_conversations - 1)))
  return [
    plan_conversation(
      conversation_rng(seed, i),
      conversation_id=f'{prefix}_{i:0{width}d}',
      lengths=sources_lengths,
      base=base,
      options=options,
    )
    for i in range(num_conversations)
  ]


def check_speaker_count(base: Mapping[str, str], options: Options) -> None:
  """Raises `ConfigError` if a conversation could need more speakers than
  there are (source speakers, unless ``same_source``)."""
  available = len(base) if options.same_source else len(set(base.values()))
  need = max(options.num_speakers.values)
  if available < need:
    kind = 'pseudo-speakers' if options.same_source else 'speakers'
    raise ConfigError(
      f'num_speakers={options.num_speakers} needs {need} {kind}, '
      f'found {available}'
    )


def _fade(length: int, fade: int) -> np.ndarray | None:
  fade = min(fade, length // 2)
  if fade <= 0:
    return None
  gain = np.ones(length, np.float32)
  ramp = np.arange(1, fade + 1, dtype=np.float32) / (fade + 1)
  gain[:fade] = ramp
  gain[length - fade :] = ramp[::-1]
  return gain


def render(
  conversation: Conversation,
  audio: Callable[[str], np.ndarray],
  *,
  fade: float,
) -> tuple[np.ndarray, float]:
  """Mixes a planned conversation (step 5 of the module docstring).

  Args:
    conversation: the plan.
    audio: the audio of a pseudo-speaker by name (`Sources.audio`).
    fade: seconds of linear fade at each end of every chunk.

  Returns:
    ``(float32[num_samples], gain)``: the mix and the factor it was scaled
    by to stay within full scale (1.0 almost always).
  """
  mix = np.zeros(conversation.num_samples, np.float32)
  fade_samples = int(round(fade * SAMPLE_RATE))
  for t in conversation.turns:
    chunk = audio(t.speaker)[t.source_start : t.source_start + t.length]
    if len(chunk) != t.length:
      raise ValueError(f'{conversation.id}: {t} runs past its source')
    gain = _fade(t.length, fade_samples)
    mix[t.onset : t.end] += chunk if gain is None else chunk * gain
  peak = float(np.max(np.abs(mix))) if len(mix) else 0.0
  scale = 1.0
  if peak > 1.0:
    scale = 0.999 / peak
    mix *= scale
  return mix, scale


# ---------------------------------------------------------------------------
# Writing.


def rttm_text(conversation: Conversation) -> str:
  """The conversation's reference turns as RTTM ``SPEAKER`` lines.

  The one place this module writes RTTM (`audio.rttm_text`, which names
  speakers ``spk<name>``); times are exact (1 ms grid).
  """
  from uisrnn_jax import audio as audio_lib

  turns = [
    (t.onset // GRID / 1000, t.end // GRID / 1000, t.speaker)
    for t in conversation.turns
  ]
  return audio_lib.rttm_text(conversation.id, turns)


def _encode(wav: np.ndarray, audio_format: str) -> bytes:
  import soundfile

  buf = io.BytesIO()
  soundfile.write(
    buf, wav, SAMPLE_RATE, format=audio_format.upper(), subtype='PCM_16'
  )
  return buf.getvalue()


def _manifest_entry(
  conversation: Conversation, sources: Sources, audio_name: str, gain: float
) -> dict[str, Any]:
  return {
    'audio_filepath': audio_name,
    'rttm_filepath': conversation.id + '.rttm',
    'offset': 0.0,
    'duration': conversation.num_samples / SAMPLE_RATE,
    'uri': conversation.id,
    'num_speakers': len(conversation.speakers),
    'speakers': list(conversation.speakers),
    'gain': gain,
    'turns': [
      {
        'speaker': t.speaker,
        'onset': t.onset / SAMPLE_RATE,
        'duration': t.length / SAMPLE_RATE,
        'source': sources.base[t.speaker],
        'factor': sources.factor[t.speaker],
        'source_start': t.source_start,
      }
      for t in conversation.turns
    ],
  }


def _prepare_output(
  output: str, overwrite: bool, *, remove: bool, prefix: str
) -> None:
  """Refuses a non-empty ``output`` unless ``overwrite``.

  With ``remove``, deletes the old corpus: its manifest first (so that it
  stops looking complete), then the files it lists, files named like this
  run's (``<prefix>_<digits>.wav|flac|rttm``, e.g. from an interrupted run)
  and temporaries. Nothing else in ``output`` is touched.
  """
  if os.path.exists(output) and not os.path.isdir(output):
    raise ConfigError(f'--output {output} exists and is not a directory')
  if not os.path.isdir(output) or not os.listdir(output):
    return
  if not overwrite:
    raise ConfigError(
      f'--output {output} is not empty; pass --overwrite to replace its '
      'simulated corpus'
    )
  if not remove:
    return
  manifest = os.path.join(output, MANIFEST)
  old = {SETTINGS, CORPUS_RTTM}
  if os.path.isfile(manifest):
    with open(manifest) as f:
      for line in f:
        try:
          entry = json.loads(line)
        except json.JSONDecodeError:
          continue
        if isinstance(entry, dict):
          old |= {entry.get('audio_filepath'), entry.get('rttm_filepath')}
    os.remove(manifest)
  ours = re.compile(rf'{re.escape(prefix)}_\d+\.(wav|flac|rttm)')
  for name in os.listdir(output):
    path = os.path.join(output, name)
    if os.path.isfile(path) and (
      name in old or ours.fullmatch(name) or name.startswith(_TMP_PREFIX)
    ):
      os.remove(path)


def simulate(
  paths: Sequence[str],
  output: str,
  *,
  options: Options,
  seed: int,
  num_conversations: int,
  prefix: str = 'sim',
  audio_format: str = 'wav',
  overwrite: bool = False,
  progress: bool = True,
) -> list[Conversation]:
  """Makes ``num_conversations`` conversations from the speakers under
  ``paths`` and writes them to ``output`` (see the module docstring).

  Returns:
    The conversations written.

  Raises:
    ConfigError: bad option values, too few speakers, or a non-empty
      ``output`` without ``overwrite``.
    InputFileNotFoundError, DataFormatError: missing, empty or unreadable
      sources.
  """
  from uisrnn_jax import checkpoint

  if num_conversations < 1:
    raise ConfigError(
      f'num_conversations must be >= 1, got {num_conversations}'
    )
  if not isinstance(seed, int) or seed < 0:
    raise ConfigError(f'seed must be an integer >= 0, got {seed!r}')
  if audio_format not in ('wav', 'flac'):
    raise ConfigError(f'format must be wav or flac, got {audio_format!r}')
  if (
    not prefix
    or any(c in prefix for c in '/\\')
    or prefix != '_'.join(prefix.split())
  ):
    raise ConfigError(f'prefix must be a plain file name part, got {prefix!r}')
  _prepare_output(
    output, overwrite, remove=False, prefix=prefix
  )  # fail before reading
  sources = load_sources(paths, options, progress=progress)
  conversations = plan(
    sources.lengths,
    sources.base,
    options,
    seed=seed,
    num_conversations=num_conversations,
    prefix=prefix,
  )
  _prepare_output(output, overwrite, remove=True, prefix=prefix)
  os.makedirs(output, exist_ok=True)
  entries = []
  for conversation in _progress(conversations, progress, 'conversations'):
    mix, gain = render(conversation, sources.audio, fade=options.fade)
    audio_name = f'{conversation.id}.{audio_format}'
    checkpoint.atomic_write(
      os.path.join(output, audio_name),
      _encode(mix, audio_format),
      prefix=_TMP_PREFIX,
    )
    checkpoint.atomic_write(
      os.path.join(output, conversation.id + '.rttm'),
      rttm_text(conversation).encode(),
      prefix=_TMP_PREFIX,
    )
    entries.append(_manifest_entry(conversation, sources, audio_name, gain))
  settings = {
    'seed': seed,
    'num_conversations': num_conversations,
    'prefix': prefix,
    'format': audio_format,
    'sample_rate': SAMPLE_RATE,
    'options': options.to_json(),
    'sources': sources.files,
  }
  checkpoint.atomic_write(
    os.path.join(output, CORPUS_RTTM),
    ''.join(rttm_text(c) for c in conversations).encode(),
    prefix=_TMP_PREFIX,
  )
  checkpoint.atomic_write(
    os.path.join(output, SETTINGS),
    (json.dumps(settings, indent=1) + '\n').encode(),
    prefix=_TMP_PREFIX,
  )
  checkpoint.atomic_write(
    os.path.join(output, MANIFEST),
    ''.join(json.dumps(e) + '\n' for e in entries).encode(),
    prefix=_TMP_PREFIX,
  )
  return conversations


def _progress(items: Iterable, enabled: bool, desc: str) -> Iterable:
  if not enabled:
    return items
  from tqdm import tqdm

  return tqdm(items, desc=desc, unit='', file=sys.stderr, leave=False)


# ---------------------------------------------------------------------------
# Command line.


def _parser() -> argparse.ArgumentParser:
  d = Options()
  p = argparse.ArgumentParser(
    prog='uisrnn-simulate',
    description='Multi-speaker conversations (16 kHz mono audio + exact '
    'RTTM) from single-speaker audio, deterministic by seed.',
    epilog='Distributions (seconds): constant:V (or V), uniform:LO,HI, '
    'exponential:MEAN, gamma:SHAPE,MEAN. Flags given with --preset '
    'override it. Output: <prefix>_NNNN.wav|flac + .rttm, reference.rttm, '
    'simulation.json and, last, manifest.jsonl.',
  )
  p.add_argument(
    'sources',
    nargs='+',
    help='directories of audio: one subdirectory per speaker, or files '
    'named SPEAKER-*',
  )
  p.add_argument('--output', required=True, help='directory to write')
  p.add_argument('--num_conversations', type=int, default=10, help='(10)')
  p.add_argument('--seed', type=int, default=0, help='(0)')
  p.add_argument('--preset', choices=sorted(PRESETS), help='a named setting')
  p.add_argument(
    '--num_speakers',
    help=f'speakers per conversation: N, LO-HI or N:W,... ({d.num_speakers})',
  )
  p.add_argument('--duration', help=f'target length ({d.duration})')
  p.add_argument('--turn_length', help=f'turn length ({d.turn_length})')
  p.add_argument('--pause', help=f'pause between turns ({d.pause})')
  p.add_argument(
    '--overlap_probability',
    type=float,
    help=f'chance a turn overlaps the last one ({d.overlap_probability:g})',
  )
  p.add_argument(
    '--overlap_length', help=f'overlap length ({d.overlap_length})'
  )
  p.add_argument(
    '--speed_factors',
    help='e.g. 0.9,1.0,1.1: one pseudo-speaker per speaker and factor (1.0)',
  )
  p.add_argument(
    '--same_source',
    action='store_true',
    default=None,
    help='let pseudo-speakers of one speaker meet in a conversation',
  )
  p.add_argument(
    '--entry_fraction',
    type=float,
    help='speakers 3.. enter within this share of the length '
    f'({d.entry_fraction:g})',
  )
  p.add_argument(
    '--min_remaining',
    type=float,
    help=f'stop adding turns when less time is left ({d.min_remaining:g} s)',
  )
  p.add_argument(
    '--fade_ms',
    type=float,
    help=f'linear fade at both ends of a turn ({d.fade * 1000:g})',
  )
  p.add_argument(
    '--level_dbfs',
    help=f'RMS level of each source file, or none to keep ({d.level_dbfs:g})',
  )
  p.add_argument('--prefix', default='sim', help='file name prefix (sim)')
  p.add_argument('--format', default='wav', choices=('wav', 'flac'))
  p.add_argument(
    '--overwrite',
    action='store_true',
    help='replace the simulated corpus in a non-empty --output',
  )
  p.add_argument(
    '--noprogress', dest='progress', action='store_false', default=True
  )
  return p


def options_from_args(args: argparse.Namespace) -> Options:
  """Preset values, overridden by the flags given."""
  values = dict(PRESETS[args.preset]) if args.preset else {}
  for name in (
    'num_speakers',
    'duration',
    'turn_length',
    'pause',
    'overlap_probability',
    'overlap_length',
    'speed_factors',
    'same_source',
    'entry_fraction',
    'min_remaining',
  ):
    if getattr(args, name) is not None:
      values[name] = getattr(args, name)
  if args.fade_ms is not None:
    values['fade'] = args.fade_ms / 1000
  if args.level_dbfs is not None:
    if args.level_dbfs.lower() == 'none':
      values['level_dbfs'] = None
    else:
      try:
        values['level_dbfs'] = float(args.level_dbfs)
      except ValueError:
        raise ConfigError(
          f'level_dbfs must be a number or none, got {args.level_dbfs!r}'
        ) from None
  return Options(**values)


def main(argv: Sequence[str] | None = None) -> int:
  """``uisrnn-simulate SOURCES... --output=DIR [options]``.

  Returns:
    The exit status: 0, or 1 with ``error: ...`` on stderr for bad input.
  """
  args = _parser().parse_args(argv)
  try:
    options = options_from_args(args)
    conversations = simulate(
      args.sources,
      args.output,
      options=options,
      seed=args.seed,
      num_conversations=args.num_conversations,
      prefix=args.prefix,
      audio_format=args.format,
      overwrite=args.overwrite,
      progress=args.progress,
    )
  except (UISRNNJaxError, FileNotFoundError, ImportError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  seconds = sum(c.num_samples for c in conversations) / SAMPLE_RATE
  turns = sum(len(c.turns) for c in conversations)
  print(
    f'wrote {len(conversations)} conversations ({seconds / 60:.1f} min, '
    f'{turns} turns) to {args.output}',
    file=sys.stderr,
  )
  return 0


def console_main() -> None:
  """Entry point of the ``uisrnn-simulate`` console script."""
  raise SystemExit(main())


if __name__ == '__main__':
  console_main()
