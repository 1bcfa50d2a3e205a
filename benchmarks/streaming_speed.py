"""Streaming latency: time of one `streaming.push` after a long history.

At the seed's sizes (D=256, H=512, beam 10, look_ahead 1) with random
weights, pushes ``--history`` observations, then times one-observation
pushes and prints the median.

Usage (from the repository root):
  python benchmarks/streaming_speed.py
  python benchmarks/streaming_speed.py --history=2000,8000 --pushes=50
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from uisrnn_jax import model, streaming  # noqa: E402

D, H = 256, 512


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--history', default='1000,8000')
  parser.add_argument('--pushes', type=int, default=50)
  args = parser.parse_args()
  params = model.init_params(
    jax.random.key(0), observation_dim=D, hidden_size=H
  )
  rng = np.random.default_rng(0)
  config = dict(
    beam_size=10,
    look_ahead=1,
    test_iteration=1,
    max_speakers=16,
    speaker_overflow='disallow',
  )
  print(f'load average {os.getloadavg()[0]:.1f}; D={D}, H={H}, beam 10')
  print('| history | median push (ms) |')
  print('|---:|---:|')
  for history in map(int, args.history.split(',')):
    n = history + args.pushes
    centres = rng.normal(size=(3, D)) * 0.3
    ids = np.repeat(rng.integers(0, 3, n // 5 + 1), 5)[:n]
    seq = (centres[ids] + 0.1 * rng.normal(size=(n, D))).astype(np.float32)
    state = streaming.init(
      params,
      transition_bias=0.1,
      crp_alpha=1.0,
      config=config,
      capacity=1 << n.bit_length(),
    )
    state, _ = streaming.push(params, state, seq[:history])
    times = []
    for i in range(history, n):
      tic = time.perf_counter()
      state, _ = streaming.push(params, state, seq[i])
      times.append(time.perf_counter() - tic)
    print(f'| {history} | {1e3 * np.median(times[5:]):.2f} |')


if __name__ == '__main__':
  main()
