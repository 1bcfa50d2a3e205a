"""Test helpers shared by several test files (not collected as tests)."""

import contextlib
import logging
import os
import subprocess
import sys

import jax

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(*args, check=False):
  """Runs ``python ARGS`` from the repository root with JAX on the CPU.

  Returns:
    The `subprocess.CompletedProcess`, with text ``stdout``/``stderr``.
  """
  return subprocess.run(
    [sys.executable, *args],
    cwd=REPO,
    env=dict(os.environ, JAX_PLATFORMS='cpu'),
    capture_output=True,
    text=True,
    check=check,
  )


@contextlib.contextmanager
def compile_log():
  """Collects the log messages of JAX compilations inside the block."""
  records = []

  class Handler(logging.Handler):
    def emit(self, record):
      records.append(record.getMessage())

  handler = Handler(logging.WARNING)
  logger = logging.getLogger('jax')
  logger.addHandler(handler)
  try:
    with jax.log_compiles():
      yield records
  finally:
    logger.removeHandler(handler)


def tiny_config(**train_overrides):
  """configs/toy.py shrunk for tests: D=3, H=8, batch 4, 2 permutations."""
  from configs import toy

  config = toy.get_config()
  config.model.observation_dim = 3
  config.model.rnn_hidden_size = 8
  config.train.batch_size = 4
  config.train.num_permutations = 2
  config.train.bucket = 16
  config.train.log_every = 5
  config.train.update(train_overrides)
  return config


def toy_sequences(seed=0, num=6, d=3, turns=6, max_turn=4):
  """Sequences of interleaved speakers around distinct centres, with labels.

  Returns:
    ``(sequences, labels)``: float64[N_i, d] arrays and matching string
    arrays (``'s0'``, ``'s1'``, ``'s2'``).
  """
  import numpy as np

  rng = np.random.default_rng(seed)
  centres = 3 * rng.normal(size=(3, d))
  seqs, ids = [], []
  for _ in range(num):
    speakers = rng.integers(0, 3, turns)
    labels = np.repeat(speakers, rng.integers(1, max_turn + 1, turns))
    seqs.append(centres[labels] + 0.1 * rng.normal(size=(len(labels), d)))
    ids.append(np.array([f's{x}' for x in labels]))
  return seqs, ids
