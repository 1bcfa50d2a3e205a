"""Accuracy of the two decode-time running-mean rules, on toy and real data.

uisrnn 0.1.2 predicts a speaker's next embedding at decode time from
(mean * (n - 2) + m_n) / (n - 1) -- which drops the zero-input output m_0 and
the first output m_1 -- while training predicts with (m_0 + ... + m_n) / (n +
1). ``decode.mean_rule`` selects 'reference' (the former) or 'cumulative'
(the latter). This script trains one model per dataset and decodes the same
test set with both rules.

  python benchmarks/mean_rule.py [--seeds 0 1 2] \
      [--librisim ../shared/data/librisim --librisim_steps 1500]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import default, toy  # noqa: E402
from uisrnn_jax import dataset as dataset_lib  # noqa: E402
from uisrnn_jax import decode, evals, train  # noqa: E402
from uisrnn_jax import toy as toy_data  # noqa: E402


def accuracy_by_rule(state, sequences, labels, decode_config):
  out = {}
  for rule in ('reference', 'cumulative'):
    decode_config.mean_rule = rule
    predicted = decode.predict_labels(
      state.params,
      sequences,
      transition_bias=float(state.transition_bias),
      crp_alpha=float(state.crp_alpha),
      config=decode_config,
      progress=False,
    )
    out[rule] = float(
      np.mean([evals.frame_accuracy(r, p) for r, p in zip(labels, predicted)])
    )
  return out


def toy_rows(seeds):
  rows = []
  for seed in seeds:
    config = toy.get_config()
    config.seed = seed
    tr_x, tr_y, te_x, te_y = toy_data.toy_train_test(
      config.toy, seed, config.model.observation_dim
    )
    state = train.create_train_state(jax.random.key(seed), config)
    state = train.fit(state, tr_x, tr_y, config, progress=False)
    acc = accuracy_by_rule(state, te_x, te_y, config.decode)
    rows.append((f'toy (configs/toy.py), seed {seed}', acc))
  return rows


def librisim_rows(path, steps):
  config = default.get_config()
  config.model.rnn_hidden_size = 256
  config.model.rnn_dropout = 0.0
  config.train.train_iteration = steps
  config.train.batch_size = 32
  config.train.learning_rate = 1e-3
  config.train.num_permutations = 4
  config.decode.test_iteration = 1
  config.decode.beam_size = 10
  train_set = dataset_lib.load_npz(os.path.join(path, 'train.npz'))
  dev = dataset_lib.load_npz(os.path.join(path, 'dev.npz'))
  state = train.create_train_state(jax.random.key(0), config)
  tic = time.perf_counter()
  state = train.fit(
    state, train_set.sequences, train_set.labels, config, progress=False
  )
  print(f'librisim: trained {steps} steps in {time.perf_counter() - tic:.0f} s')
  acc = accuracy_by_rule(state, dev.sequences, dev.labels, config.decode)
  return [(f'LibriSim dev (hidden 256, {steps} steps)', acc)]


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
  parser.add_argument('--librisim', default='')
  parser.add_argument('--librisim_steps', type=int, default=1500)
  args = parser.parse_args()
  rows = toy_rows(args.seeds)
  if args.librisim:
    rows += librisim_rows(args.librisim, args.librisim_steps)
  print(
    '\n| data | accuracy, mean_rule=reference | accuracy, mean_rule=cumulative |'
  )
  print('|---|---|---|')
  for name, acc in rows:
    print(f'| {name} | {acc["reference"]:.4f} | {acc["cumulative"]:.4f} |')


if __name__ == '__main__':
  main()
