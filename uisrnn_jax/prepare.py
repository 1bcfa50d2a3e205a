"""``uisrnn-prepare``: recordings + reference RTTM/UEM -> training data.

::

  uisrnn-prepare AUDIO... --rttm=A.rttm[,B.rttm] [--uem=U.uem] --output=data.npz
  uisrnn-prepare corpus/ --rttm=corpus.rttm --output=data.npz
  uisrnn-prepare manifest.jsonl --output=data.npz     # NeMo-style manifest
  uisrnn-prepare ... --shard_index=3 --num_shards=8 --output=part-3.npz
  uisrnn-prepare --merge part-*.npz --output=data.npz

One conversation per audio file, named by the file stem, which is matched to
the ``<uri>`` of the RTTM and UEM lines. A manifest has one JSON object per
line with ``audio_filepath``, ``rttm_filepath`` and optionally
``uem_filepath``.

What is written is the project's ``.npz`` input format (see
`dataset.load_npz`): ``embeddings`` float32[N, 256], ``offsets``,
``labels`` (reference speaker ids), ``starts``/``ends`` (window times in
the recording), ``conversation_ids``, the reference turns (``turn_offsets``,
``turn_starts``, ``turn_ends``, ``turn_speakers``, cut to the UEM) and
``overlapped`` bool[N], so ``train.py`` and ``infer.py`` take it unchanged
(and its parts can be training shards, `shards`).

Windows and labels:

- windows (1.6 s every 0.4 s, `audio.embed_regions`) are cut from the
  reference speech (the union of the turns, within the UEM; regions closer
  than ``--merge_gap`` are embedded as one), so windows outside reference
  speech or outside the UEM never exist; a file missing from the UEM is
  used whole;
- a window is labelled with the speaker who covers most of it; a window
  with less than ``--min_speech_fraction`` reference speech (one that
  spans a merged gap) is left out;
- a window where two or more speakers talk together for at least
  ``--overlap_min`` seconds is ``overlapped`` (kept, dominant speaker;
  ``--drop_overlap`` leaves it out).

Every input is checked before anything is embedded or written: readable,
non-empty audio; an RTTM entry for every file (``--allow_no_reference``
takes a file without one as holding no speech: it is left out); well-formed
RTTM/UEM lines (file and line in the message); no overlapping UEM regions;
no turn or UEM region beyond the end of the audio.

Embeddings are cached per file (``--cache_dir``, default
``<output>.cache``), keyed by the file and the window settings, so an
interrupted run resumes without re-embedding what was done; one file is held
in memory at a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from uisrnn_jax import audio, rttm
from uisrnn_jax import dataset as dataset_lib
from uisrnn_jax.errors import DataFormatError, InputFileNotFoundError

# Reference turns may end this much after the audio (rounding in RTTMs).
END_TOLERANCE = 0.05


@dataclasses.dataclass(frozen=True)
class Item:
  """One recording to prepare: its audio and its reference."""

  audio: str
  uri: str
  turns: rttm.Turns | None  # None: no reference (no speech)
  uem: np.ndarray | None  # float[K, 2]; None: the whole file


@dataclasses.dataclass(frozen=True)
class Settings:
  """Window and label settings (part of the cache key)."""

  rate: float = audio.DEFAULT_RATE
  min_coverage: float = audio.DEFAULT_MIN_COVERAGE
  merge_gap: float = 0.5
  min_speech_fraction: float = 0.5
  overlap_min: float = 0.1
  drop_overlap: bool = False


def _read_manifest(path: str) -> list[dict[str, str]]:
  rows = []
  with open(path, encoding='utf-8') as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        raise DataFormatError(f'{path}, line {number}: not JSON ({e})') from e
      if not isinstance(row, dict) or 'audio_filepath' not in row:
        raise DataFormatError(
          f'{path}, line {number}: needs an "audio_filepath" field'
        )
      if 'rttm_filepath' not in row:
        raise DataFormatError(
          f'{path}, line {number}: needs an "rttm_filepath" field'
        )
      base = os.path.dirname(os.path.abspath(path))
      rows.append(
        {
          k: v if os.path.isabs(v) else os.path.join(base, v)
          for k, v in row.items()
          if k in ('audio_filepath', 'rttm_filepath', 'uem_filepath') and v
        }
      )
  return rows


def collect_items(
  inputs: Sequence[str],
  *,
  rttm_paths: Sequence[str] = (),
  uem_path: str | None = None,
  allow_no_reference: bool = False,
) -> list[Item]:
  """The recordings named by ``inputs`` with their references, checked.

  Args:
    inputs: audio files, directories of audio, or ``.json``/``.jsonl``
      manifests.
    rttm_paths: reference RTTM files for the audio given directly.
    uem_path: a UEM file for the audio given directly.
    allow_no_reference: a file without RTTM turns holds no speech (it is
      skipped) instead of being an error.

  Raises:
    errors.InputFileNotFoundError: a missing file.
    errors.DataFormatError, errors.AudioError: see the module docstring.
  """
  direct = [p for p in inputs if not p.endswith(('.json', '.jsonl'))]
  manifests = [p for p in inputs if p.endswith(('.json', '.jsonl'))]
  for path in manifests:
    if not os.path.isfile(path):
      raise InputFileNotFoundError(f'no such manifest: {path}')
  pairs: list[tuple[str, dict[str, rttm.Turns], dict[str, np.ndarray] | None]]
  pairs = []
  if direct:
    if not rttm_paths:
      raise DataFormatError('--rttm is required for audio given directly')
    references = rttm.read_rttm(list(rttm_paths))
    uems = rttm.read_uem(uem_path) if uem_path else None
    pairs += [(p, references, uems) for p in audio.audio_inputs(direct)]
  for manifest in manifests:
    for row in _read_manifest(manifest):
      uem = row.get('uem_filepath')
      pairs.append(
        (
          row['audio_filepath'],
          rttm.read_rttm(row['rttm_filepath']),
          rttm.read_uem(uem) if uem else None,
        )
      )
  items, seen = [], {}
  for path, references, uems in pairs:
    uri = audio.uri_of(path)
    if uri in seen:
      raise DataFormatError(
        f'{path} and {seen[uri]} have the same file id {uri!r}'
      )
    seen[uri] = path
    duration = _duration(path)
    turns = references.get(uri)
    if turns is None and not allow_no_reference:
      raise DataFormatError(
        f'{path}: no RTTM turns for file id {uri!r} (pass '
        '--allow_no_reference if it holds no speech)'
      )
    uem = None if uems is None else uems.get(uri)
    if (
      turns is not None
      and len(turns[1])
      and (float(np.max(turns[1])) > duration + END_TOLERANCE)
    ):
      raise DataFormatError(
        f'{path}: a reference turn of {uri!r} ends at '
        f'{float(np.max(turns[1])):.3f} s, after the audio ({duration:.3f} s)'
      )
    if uem is not None and float(uem[-1, 1]) > duration + END_TOLERANCE:
      raise DataFormatError(
        f'{path}: a UEM region of {uri!r} ends at {float(uem[-1, 1]):.3f} s,'
        f' after the audio ({duration:.3f} s)'
      )
    items.append(Item(path, uri, turns, uem))
  return items


def _duration(path: str) -> float:
  """Seconds of audio from the header (decoding only when needed)."""
  import soundfile

  audio.check_audio(path)
  try:
    return float(soundfile.info(path).duration)
  except Exception:  # noqa: BLE001 - not libsndfile's: decode it
    return len(audio.load_audio(path)) / audio.SAMPLE_RATE


def _intersect(spans: np.ndarray, within: np.ndarray) -> np.ndarray:
  """Intersection of two sets of sorted, disjoint spans."""
  out = []
  for a, b in spans:
    for c, d in within:
      lo, hi = max(a, c), min(b, d)
      if hi > lo:
        out.append((lo, hi))
  return np.array(sorted(out), np.float64).reshape(-1, 2)


def reference_regions(item: Item, duration: float) -> tuple[np.ndarray, Any]:
  """Reference speech (union of turns) and turns, both cut to the UEM."""
  uem = item.uem if item.uem is not None else np.array([[0.0, duration]])
  if item.turns is None or len(item.turns[0]) == 0:
    return np.zeros((0, 2)), (np.zeros(0), np.zeros(0), [])
  onsets, offsets, speakers = item.turns
  union = audio.merge_regions(
    np.stack([onsets, offsets], 1)[np.argsort(onsets)], 0.0
  )
  speech = _intersect(union, uem)
  cut = [[], [], []]
  for a, b, s in zip(onsets, offsets, speakers):
    for lo, hi in _intersect(np.array([[a, b]]), uem):
      cut[0].append(lo)
      cut[1].append(hi)
      cut[2].append(str(s))
  return speech, (np.array(cut[0]), np.array(cut[1]), cut[2])


def label_windows(
  starts: np.ndarray,
  ends: np.ndarray,
  turns: Any,
  *,
  overlap_min: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Dominant speaker, speech fraction and overlap of each window.

  >>> label_windows(np.array([0.0]), np.array([2.0]),
  ...               (np.array([0.0, 0.5]), np.array([1.5, 2.0]), ['a', 'b']),
  ...               overlap_min=0.5)
  (array(['a'], dtype='<U1'), array([1.]), array([ True]))

  Returns:
    ``(labels str[N], speech fraction float[N], overlapped bool[N])``; the
    label of a window without reference speech is ``''``.
  """
  onsets, offsets, speakers = turns
  names = sorted(set(speakers))
  n = len(starts)
  if not names:
    return np.full(n, '', dtype='<U1'), np.zeros(n), np.zeros(n, bool)
  cover = np.zeros((n, len(names)))
  grid_step = 0.01  # 10 ms: speech and overlap time on a grid per window
  speech = np.zeros(n)
  overlap = np.zeros(n)
  for i, (s, e) in enumerate(zip(starts, ends)):
    t = np.arange(s, e, grid_step) + grid_step / 2
    active = (t[:, None] >= onsets[None, :]) & (t[:, None] < offsets[None, :])
    per_speaker = np.zeros((len(t), len(names)), bool)
    for k, name in enumerate(names):
      mine = [j for j, sp in enumerate(speakers) if sp == name]
      per_speaker[:, k] = active[:, mine].any(axis=1)
    cover[i] = per_speaker.sum(axis=0) * grid_step
    talking = per_speaker.sum(axis=1)
    speech[i] = np.mean(talking > 0) if len(t) else 0.0
    overlap[i] = np.sum(talking > 1) * grid_step
  labels = np.array(names)[np.argmax(cover, axis=1)]
  labels = np.where(cover.max(axis=1) > 0, labels, '')
  return labels, speech, overlap >= overlap_min - 1e-9


def _cache_path(cache_dir: str, item: Item, settings: Settings) -> str:
  stat = os.stat(item.audio)
  key = json.dumps(
    [
      os.path.abspath(item.audio),
      stat.st_size,
      stat.st_mtime_ns,
      settings.rate,
      settings.min_coverage,
      settings.merge_gap,
      None
      if item.turns is None
      else [np.asarray(x).tolist() for x in item.turns],
      None if item.uem is None else item.uem.tolist(),
    ]
  )
  digest = hashlib.sha256(key.encode()).hexdigest()[:16]
  return os.path.join(cache_dir, f'{item.uri}-{digest}.npz')


def embed_item(
  item: Item, settings: Settings, *, cache_dir: str | None, device: str = 'cpu'
) -> dict[str, np.ndarray]:
  """Windows of one recording: embeddings, times, labels, overlap, turns.

  Cached in ``cache_dir`` (written atomically; reused when the audio file,
  its reference and the window settings are unchanged).
  """
  cache = _cache_path(cache_dir, item, settings) if cache_dir else None
  if cache and os.path.isfile(cache):
    with np.load(cache, allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  wav = audio.load_audio(item.audio)
  duration = len(wav) / audio.SAMPLE_RATE
  speech, turns = reference_regions(item, duration)
  regions = audio.merge_regions(speech, settings.merge_gap)
  embedded = audio.embed_regions(
    wav,
    regions,
    speech=speech,
    rate=settings.rate,
    min_coverage=settings.min_coverage,
    device=device,
  )
  labels, fraction, overlapped = label_windows(
    embedded.starts, embedded.ends, turns, overlap_min=settings.overlap_min
  )
  out = {
    'embeddings': embedded.embeddings.astype(np.float32),
    'starts': embedded.starts,
    'ends': embedded.ends,
    'labels': labels.astype(str),
    'speech_fraction': fraction,
    'overlapped': overlapped,
    'turn_starts': np.asarray(turns[0], np.float64),
    'turn_ends': np.asarray(turns[1], np.float64),
    'turn_speakers': np.asarray(turns[2], dtype=str).reshape(-1),
  }
  if cache:
    os.makedirs(cache_dir, exist_ok=True)
    dataset_lib.write_arrays(cache, out)
  return out


def _keep(windows: dict[str, np.ndarray], settings: Settings) -> np.ndarray:
  keep = (windows['labels'] != '') & (
    windows['speech_fraction'] >= settings.min_speech_fraction
  )
  if settings.drop_overlap:
    keep &= ~windows['overlapped']
  return keep


def prepare(
  items: Sequence[Item],
  output: str,
  settings: Settings = Settings(),
  *,
  cache_dir: str | None = None,
  device: str = 'cpu',
  progress: bool = True,
) -> dict[str, int]:
  """Embeds and labels every item and writes one ``.npz`` (see the module).

  Returns:
    ``{'conversations', 'windows', 'overlapped', 'skipped'}`` counts
    (``skipped``: files that gave no window).

  Raises:
    errors.DataFormatError: no file gave a window.
  """
  from tqdm.auto import tqdm

  parts: dict[str, list[Any]] = {
    k: []
    for k in (
      'embeddings',
      'starts',
      'ends',
      'labels',
      'overlapped',
      'turn_starts',
      'turn_ends',
      'turn_speakers',
    )
  }
  ids, sizes, turn_sizes, skipped = [], [], [], []
  for item in tqdm(items, desc='preparing', unit='file', disable=not progress):
    if item.turns is None:
      skipped.append(item.uri)
      continue
    windows = embed_item(item, settings, cache_dir=cache_dir, device=device)
    keep = _keep(windows, settings)
    if not keep.any():
      skipped.append(item.uri)
      continue
    for key in ('embeddings', 'starts', 'ends', 'labels', 'overlapped'):
      parts[key].append(windows[key][keep])
    for key in ('turn_starts', 'turn_ends', 'turn_speakers'):
      parts[key].append(windows[key])
    ids.append(item.uri)
    sizes.append(int(keep.sum()))
    turn_sizes.append(len(windows['turn_starts']))
  if not ids:
    raise DataFormatError(
      f'no windows to write to {output}: no file has reference speech'
    )
  arrays = {k: np.concatenate(v) for k, v in parts.items()}
  arrays['labels'] = arrays['labels'].astype(str)
  arrays['turn_speakers'] = arrays['turn_speakers'].astype(str)
  arrays['offsets'] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
  arrays['turn_offsets'] = np.concatenate([[0], np.cumsum(turn_sizes)]).astype(
    np.int64
  )
  arrays['conversation_ids'] = np.array(ids, dtype=str)
  write_npz(output, arrays)
  return {
    'conversations': len(ids),
    'windows': int(arrays['offsets'][-1]),
    'overlapped': int(arrays['overlapped'].sum()),
    'skipped': len(skipped),
  }


def write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
  """Writes arrays (`dataset.write_arrays`) and checks them with `load_npz`.

  Raises:
    errors.DataFormatError: the arrays are not a valid dataset (then the
      file is removed again).
  """
  if os.path.dirname(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
  dataset_lib.write_arrays(path, arrays)
  try:
    dataset_lib.load_npz(path)
  except DataFormatError:
    os.remove(path)
    raise


_ROW_KEYS = ('embeddings', 'labels', 'starts', 'ends', 'overlapped')
_TURN_ROW_KEYS = ('turn_starts', 'turn_ends', 'turn_speakers')


def merge(paths: Sequence[str], output: str) -> dict[str, int]:
  """Concatenates prepared parts (e.g. of ``--num_shards`` runs) into one.

  Raises:
    errors.DataFormatError: a part is not a valid dataset, parts have
      different keys, or a conversation id occurs twice.
  """
  arrays: dict[str, list[np.ndarray]] = {}
  offsets, turn_offsets, ids = (
    [np.zeros(1, np.int64)],
    [np.zeros(1, np.int64)],
    [],
  )
  keys = None
  for path in paths:
    dataset_lib.load_npz(path)  # validates
    with np.load(path, allow_pickle=False) as z:
      present = tuple(
        k for k in (*_ROW_KEYS, *_TURN_ROW_KEYS, 'turn_offsets') if k in z
      )
      if keys is None:
        keys = present
      elif present != keys:
        raise DataFormatError(f'{path}: has keys {present}, others {keys}')
      for key in (*_ROW_KEYS, *_TURN_ROW_KEYS):
        if key in z:
          arrays.setdefault(key, []).append(z[key])
      offsets.append(z['offsets'][1:] + offsets[-1][-1])
      if 'turn_offsets' in z:
        turn_offsets.append(z['turn_offsets'][1:] + turn_offsets[-1][-1])
      ids += (
        [str(x) for x in z['conversation_ids']]
        if 'conversation_ids' in z
        else []
      )
  if len(set(ids)) != len(ids):
    dup = sorted({x for x in ids if ids.count(x) > 1})
    raise DataFormatError(f'conversation ids in more than one part: {dup}')
  out = {k: np.concatenate(v) for k, v in arrays.items()}
  out['offsets'] = np.concatenate(offsets)
  if len(turn_offsets) > 1:
    out['turn_offsets'] = np.concatenate(turn_offsets)
  if ids:
    out['conversation_ids'] = np.array(ids, dtype=str)
  write_npz(output, out)
  return {
    'conversations': len(out['offsets']) - 1,
    'windows': int(out['offsets'][-1]),
  }


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog='uisrnn-prepare',
    description='Turn recordings and reference RTTM/UEM into the .npz '
    'training/evaluation format (resemblyzer d-vectors, reference labels).',
  )
  parser.add_argument(
    'inputs',
    nargs='+',
    help='audio files, directories of audio, .jsonl manifests, or (with '
    '--merge) prepared .npz parts',
  )
  parser.add_argument('--output', required=True, help='the .npz to write')
  parser.add_argument('--rttm', help='reference RTTM file(s), comma-separated')
  parser.add_argument('--uem', help='UEM file (files not in it: used whole)')
  parser.add_argument(
    '--allow_no_reference',
    action='store_true',
    help='a file without RTTM turns holds no speech (skipped), not an error',
  )
  d = Settings()
  parser.add_argument('--rate', type=float, default=d.rate)
  parser.add_argument('--min_coverage', type=float, default=d.min_coverage)
  parser.add_argument('--merge_gap', type=float, default=d.merge_gap)
  parser.add_argument(
    '--min_speech_fraction', type=float, default=d.min_speech_fraction
  )
  parser.add_argument(
    '--overlap_min',
    type=float,
    default=d.overlap_min,
    help='seconds of overlapped speech that mark a window overlapped',
  )
  parser.add_argument(
    '--drop_overlap', action='store_true', help='leave overlapped windows out'
  )
  parser.add_argument(
    '--cache_dir', help='per-file embedding cache (default <output>.cache)'
  )
  parser.add_argument('--shard_index', type=int, default=0)
  parser.add_argument('--num_shards', type=int, default=1)
  parser.add_argument(
    '--merge', action='store_true', help='merge prepared .npz parts'
  )
  parser.add_argument('--device', default='cpu')
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """The ``uisrnn-prepare`` command; returns the exit status."""
  args = _parser().parse_args(argv)
  try:
    if args.merge:
      paths = sorted({p for spec in args.inputs for p in glob.glob(spec)})
      missing = [s for s in args.inputs if not glob.glob(s)]
      if missing:
        raise InputFileNotFoundError(f'no such part: {missing[0]}')
      counts = merge(paths, args.output)
    else:
      if not 0 <= args.shard_index < args.num_shards:
        raise ValueError(
          f'--shard_index must be in [0, --num_shards={args.num_shards}), '
          f'got {args.shard_index}'
        )
      settings = Settings(
        rate=args.rate,
        min_coverage=args.min_coverage,
        merge_gap=args.merge_gap,
        min_speech_fraction=args.min_speech_fraction,
        overlap_min=args.overlap_min,
        drop_overlap=args.drop_overlap,
      )
      audio._check_rate(args.rate, args.min_coverage)
      items = collect_items(
        args.inputs,
        rttm_paths=args.rttm.split(',') if args.rttm else (),
        uem_path=args.uem,
        allow_no_reference=args.allow_no_reference,
      )
      items = sorted(items, key=lambda i: i.uri)[
        args.shard_index :: args.num_shards
      ]
      if not items:
        raise DataFormatError(
          f'shard {args.shard_index} of {args.num_shards} has no files'
        )
      cache = args.cache_dir or args.output + '.cache'
      counts = prepare(
        items, args.output, settings, cache_dir=cache, device=args.device
      )
  except (ValueError, OSError) as e:  # OSError: unreadable input, full disk
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(
    f'wrote {counts["windows"]} windows of {counts["conversations"]} '
    f'conversations to {args.output}'
    + (
      f' ({counts["overlapped"]} overlapped)' if 'overlapped' in counts else ''
    )
    + (
      f'; {counts["skipped"]} files without speech'
      if counts.get('skipped')
      else ''
    ),
    file=sys.stderr,
  )
  return 0


def console_main() -> None:
  """Entry point of the ``uisrnn-prepare`` console script."""
  raise SystemExit(main())


if __name__ == '__main__':
  console_main()
