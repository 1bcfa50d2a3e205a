"""Decoding speed: uisrnn_jax's beam search against uisrnn 0.1.2's.

Builds the reference ``uisrnn.UISRNN`` (PyTorch) at the seed's defaults
(observation_dim 256, hidden 512, depth 1, beam 10, look_ahead 1,
test_iteration 2) with random weights, copies the same weights into our
parameter pytree, checks that both decoders give the same labels, and prints
the time per observation (of the input sequence; each is decoded
test_iteration times) as a markdown table, with speed-ups over the reference
measured in the same run.

Usage (from the repository root; needs the ``reference`` extra):
  python benchmarks/decode_speed.py
  python benchmarks/decode_speed.py --lengths=100,1000 --ref_observations=30

Numbers on a shared machine are noisy; every timing is the best of
``--repeats`` runs (the reference's of two).
"""

from __future__ import annotations

import os
import platform
import sys
import time
import types

import jax
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from uisrnn_jax import data, decode, model  # noqa: E402

_REF_OBS = flags.DEFINE_integer(
  'ref_observations', 40, 'Length of the utterances the reference decodes.'
)
_REF_UTTERANCES = flags.DEFINE_integer(
  'ref_utterances', 3, 'Utterances decoded by both for the label check.'
)
_BATCH = flags.DEFINE_integer('batch', 64, 'Utterances decoded in one call.')
_LENGTHS = flags.DEFINE_list(
  'lengths', ['100', '1000', '10000'], 'Single-utterance lengths to time.'
)
_SPEAKERS = flags.DEFINE_list(
  'max_speakers', ['4', '8', '16', '32'], 'max_speakers values to time.'
)
_SPEAKER_LENGTH = flags.DEFINE_integer(
  'speaker_length', 500, 'Utterance length for the max_speakers sweep.'
)
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timing repeats (best kept).')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed for weights and data.')
_TORCH_THREADS = flags.DEFINE_integer(
  'torch_threads',
  2,
  "Threads for the reference (torch's default on this 2-core machine). On "
  'an idle machine 2 threads gave 64 ms per observation and 1 thread 126 ms; '
  'under load the order flips. Report the faster one.',
)

D, H, DEPTH = 256, 512, 1
TRANSITION_BIAS, CRP_ALPHA = 0.3, 1.0


def _cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown'


def _reference(seed: int):
  import torch  # noqa: PLC0415
  import uisrnn  # noqa: PLC0415

  torch.manual_seed(seed)
  torch.set_num_threads(_TORCH_THREADS.value)
  args = types.SimpleNamespace(
    observation_dim=D,
    rnn_hidden_size=H,
    rnn_depth=DEPTH,
    rnn_dropout=0.2,
    sigma2=None,
    transition_bias=TRANSITION_BIAS,
    crp_alpha=CRP_ALPHA,
    enable_cuda=False,
    verbosity=0,
  )
  ref = uisrnn.UISRNN(args)
  state = {k: v.detach().numpy() for k, v in ref.rnn_model.state_dict().items()}
  params = model.params_from_torch(
    state,
    ref.rnn_init_hidden.detach().numpy(),
    ref.sigma2.detach().numpy(),
  )
  return ref, params


def _utterances(rng: np.random.Generator, lengths, num_speakers: int = 4):
  """Speaker turns around a few centres, in the model's output range."""
  centers = rng.normal(size=(num_speakers, D)) * 0.3
  out = []
  for n in lengths:
    ids = np.repeat(rng.integers(0, num_speakers, size=n // 5 + 1), 5)[:n]
    out.append(centers[ids] + 0.1 * rng.normal(size=(n, D)))
  return out


def _best(fn, repeats: int) -> tuple[float, object]:
  best, result = float('inf'), None
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    best = min(best, time.perf_counter() - start)
  return best, result


def _first_appearance(labels) -> np.ndarray:
  order: dict[int, int] = {}
  return np.array([order.setdefault(int(v), len(order)) for v in labels])


def main(argv):
  del argv
  rng = np.random.default_rng(_SEED.value)
  ref, params = _reference(_SEED.value)
  inference = types.SimpleNamespace(
    beam_size=10, look_ahead=1, test_iteration=2
  )
  config = dict(
    beam_size=10,
    look_ahead=1,
    test_iteration=2,
    max_speakers=16,
    speaker_overflow='error',
    mean_rule='reference',
    bucket=64,
  )
  kw = dict(
    transition_bias=TRANSITION_BIAS, crp_alpha=CRP_ALPHA, progress=False
  )
  rows = []  # (case, observations, seconds per observation, note)

  # Reference on short utterances; they also serve as the label check.
  ref_seqs = _utterances(rng, [_REF_OBS.value] * _REF_UTTERANCES.value)
  ref_time, ref_labels = _best(
    lambda: ref.predict_single(ref_seqs[0], inference), 2
  )
  ref_per_obs = ref_time / len(ref_seqs[0])
  rows.append(
    ('reference uisrnn 0.1.2, 1 utterance', len(ref_seqs[0]), ref_per_obs, '')
  )
  all_ref = [_first_appearance(ref_labels)] + [
    _first_appearance(ref.predict_single(s, inference)) for s in ref_seqs[1:]
  ]

  # Compile times (ahead of time, so they are not mixed with running).
  settings = decode.DecodeSettings.from_config(config)
  compile_times = {}
  for batch, length in ((1, _REF_OBS.value), (_BATCH.value, _REF_OBS.value)):
    t = data.bucketed_length(length, config['bucket'])
    obs = np.zeros((batch, t, D), np.float32)
    mask = np.ones((batch, t), bool)
    start = time.perf_counter()
    decode.decode_batch.lower(
      params,
      obs,
      mask,
      np.float32(TRANSITION_BIAS),
      np.float32(CRP_ALPHA),
      settings=settings,
    ).compile()
    compile_times[batch] = time.perf_counter() - start

  ours = decode.predict_labels(params, ref_seqs, config=config, **kw)
  agree = all(np.array_equal(a, b) for a, b in zip(ours, all_ref))
  speakers = sorted({len(set(labels.tolist())) for labels in all_ref})

  one = [ref_seqs[0]]
  decode.predict_labels(params, one, config=config, **kw)  # warm up
  t_one, _ = _best(
    lambda: decode.predict_labels(params, one, config=config, **kw),
    _REPEATS.value,
  )
  rows.append(('ours, 1 utterance', len(one[0]), t_one / len(one[0]), ''))

  batch = _utterances(
    rng, rng.integers(_REF_OBS.value - 10, _REF_OBS.value + 11, _BATCH.value)
  )
  total = sum(len(s) for s in batch)
  decode.predict_labels(params, batch, config=config, **kw)  # warm up
  t_batch, _ = _best(
    lambda: decode.predict_labels(params, batch, config=config, **kw),
    _REPEATS.value,
  )
  rows.append(
    (
      f'ours, {_BATCH.value} utterances batched',
      total,
      t_batch / total,
      f'lengths {min(map(len, batch))}-{max(map(len, batch))}',
    )
  )

  # An untrained model opens many speakers on long inputs; 'disallow' keeps
  # them within max_speakers (the work per step does not depend on it).
  capped = {**config, 'speaker_overflow': 'disallow'}
  for length in map(int, _LENGTHS.value):
    seq = _utterances(rng, [length])
    decode.predict_labels(params, seq, config=capped, **kw)  # compiles
    repeats = _REPEATS.value if length <= 1000 else 1
    t_len, _ = _best(
      lambda seq=seq: decode.predict_labels(params, seq, config=capped, **kw),
      repeats,
    )
    rows.append(
      (
        f'ours, 1 utterance of {length}',
        length,
        t_len / length,
        "speaker_overflow='disallow'",
      )
    )

  for s in map(int, _SPEAKERS.value):
    cfg = {**config, 'max_speakers': s, 'speaker_overflow': 'disallow'}
    seq = _utterances(rng, [_SPEAKER_LENGTH.value])
    decode.predict_labels(params, seq, config=cfg, **kw)  # compiles
    t_s, _ = _best(
      lambda seq=seq, cfg=cfg: decode.predict_labels(
        params, seq, config=cfg, **kw
      ),
      _REPEATS.value,
    )
    rows.append(
      (
        f'ours, max_speakers={s}',
        _SPEAKER_LENGTH.value,
        t_s / _SPEAKER_LENGTH.value,
        "speaker_overflow='disallow'",
      )
    )

  print(
    f'machine: {_CPU_MODEL}, {os.cpu_count()} cores, load average '
    f'{", ".join(f"{x:.1f}" for x in os.getloadavg())} (shared; noisy)'
  )
  print(
    f'versions: python {platform.python_version()}, jax {jax.__version__}; '
    f'D={D}, H={H}, depth={DEPTH}, beam 10, look_ahead 1, test_iteration 2, '
    f'max_speakers 16; reference with {_TORCH_THREADS.value} torch thread(s)'
  )
  print(
    f'labels agree with the reference on {len(all_ref)} utterances of '
    f'{_REF_OBS.value}: {agree} (speakers per utterance: {speakers})'
  )
  print(
    f'compile time: {compile_times[1]:.2f} s (1 utterance), '
    f'{compile_times[_BATCH.value]:.2f} s ({_BATCH.value} utterances)'
  )
  print()
  print('| case | observations | ms / observation | speed-up | note |')
  print('| --- | ---: | ---: | ---: | --- |')
  for case, n, per_obs, note in rows:
    print(
      f'| {case} | {n} | {per_obs * 1e3:.3f} | '
      f'{ref_per_obs / per_obs:.0f}x | {note} |'
    )
  if not agree:
    raise SystemExit('labels differ from the reference')


_CPU_MODEL = _cpu_model()

if __name__ == '__main__':
  app.run(main)
