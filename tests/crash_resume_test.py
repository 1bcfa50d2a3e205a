"""Training killed with SIGKILL resumes to the same parameters.

Real subprocesses run `experiment.train_and_evaluate` (what ``train.py``
calls) on a tiny toy config of 40 steps with a checkpoint every 5. A hook
in the child sends itself SIGKILL, once, where the environment says: after
a given step (in the middle of the run), or halfway through writing the
bytes of a given checkpoint (inside `checkpoint.atomic_write`, before the
rename). Rerunning without the hook must resume from the newest complete
checkpoint and end with exactly the parameters and optimizer state of an
uninterrupted run with the same seed (randomness is a function of the seed
and the step, see `train.fit`).
"""

import json
import os
import signal
import subprocess
import sys
import tempfile

import jax
import numpy as np
from absl.testing import absltest

from uisrnn_jax import checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS, EVERY = 40, 5

# The child: a tiny toy run, with optional SIGKILL hooks.
DRIVER = r"""
import os, signal, sys
from absl import logging
from configs import toy
from uisrnn_jax import checkpoint, experiment, train

config = toy.get_config()
config.model.observation_dim = 4
config.model.rnn_hidden_size = 8
config.toy.update(num_train=4, num_test=1, length=12)
config.train.update(
  train_iteration=int(sys.argv[2]), checkpoint_every=int(sys.argv[3]),
  batch_size=4, num_permutations=2, bucket=16, log_every=10)

logging.set_verbosity(logging.INFO)
kill_step = int(os.environ.get('KILL_AFTER_STEP', -1))
kill_ckpt = int(os.environ.get('KILL_IN_CHECKPOINT', -1))

if kill_step >= 0:
  original_fit = train.fit

  def fit(*args, on_step=None, **kwargs):
    def hook(state):
      if on_step is not None:
        on_step(state)
      if int(state.step) == kill_step:
        os.kill(os.getpid(), signal.SIGKILL)
    return original_fit(*args, on_step=hook, **kwargs)

  train.fit = fit

if kill_ckpt >= 0:
  original_write = checkpoint.atomic_write
  original_fdopen = os.fdopen
  armed = []

  class HalfWriter:
    # Writes half the bytes, makes them durable, then dies.
    def __init__(self, f):
      self.f = f
    def __enter__(self):
      return self
    def __exit__(self, *exc):
      return self.f.__exit__(*exc)
    def write(self, data):
      self.f.write(data[: len(data) // 2])
      self.f.flush()
      os.fsync(self.f.fileno())
      os.kill(os.getpid(), signal.SIGKILL)
    def __getattr__(self, name):
      return getattr(self.f, name)

  def fdopen(*args, **kwargs):
    f = original_fdopen(*args, **kwargs)
    return HalfWriter(f) if armed else f

  def atomic_write(path, payload, **kwargs):
    if path == checkpoint.checkpoint_path(sys.argv[1], kill_ckpt):
      armed.append(path)
    return original_write(path, payload, **kwargs)

  os.fdopen = fdopen
  checkpoint.atomic_write = atomic_write

experiment.train_and_evaluate(config, sys.argv[1], progress=False)
"""


def _run(workdir, cache_dir, **kill):
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env['JAX_PLATFORMS'] = 'cpu'
  # The five runs compile the same programs: compile them once.
  env['JAX_COMPILATION_CACHE_DIR'] = cache_dir
  env['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  env['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'
  env.update({k: str(v) for k, v in kill.items()})
  return subprocess.run(
    [sys.executable, '-c', DRIVER, workdir, str(STEPS), str(EVERY)],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
  )


def _final_state(workdir):
  restored = checkpoint.read_checkpoint(
    checkpoint.checkpoint_path(workdir, STEPS)
  )
  return restored['state']


def _assert_same_state(test, got, want):
  test.assertEqual(
    jax.tree.structure(got), jax.tree.structure(want), 'state layout'
  )
  for (path, a), b in zip(
    jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)
  ):
    np.testing.assert_array_equal(
      np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path)
    )


class CrashResumeTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._tmp = tempfile.TemporaryDirectory()
    cls.addClassCleanup(cls._tmp.cleanup)
    cls.base = cls._tmp.name
    cls.cache = os.path.join(cls.base, 'jax_cache')
    straight = os.path.join(cls.base, 'straight')
    result = _run(straight, cls.cache)
    assert result.returncode == 0, result.stderr
    cls.want = _final_state(straight)

  def test_killed_mid_run_resumes_to_the_same_parameters(self):
    workdir = os.path.join(self.base, 'mid_run')
    killed = _run(workdir, self.cache, KILL_AFTER_STEP=17)
    self.assertEqual(killed.returncode, -signal.SIGKILL, killed.stderr)
    self.assertEqual(checkpoint.checkpoint_steps(workdir), [5, 10, 15])
    resumed = _run(workdir, self.cache)
    self.assertEqual(resumed.returncode, 0, resumed.stderr)
    self.assertIn('ckpt_15.msgpack (step 15)', resumed.stderr)
    self.assertEqual(int(_final_state(workdir)['step']), STEPS)
    _assert_same_state(self, _final_state(workdir), self.want)

  def test_killed_mid_checkpoint_write_keeps_the_previous_one(self):
    workdir = os.path.join(self.base, 'mid_write')
    killed = _run(workdir, self.cache, KILL_IN_CHECKPOINT=15)
    self.assertEqual(killed.returncode, -signal.SIGKILL, killed.stderr)
    # The kill hit inside atomic_write: half a temporary file, no ckpt_15,
    # and the previous checkpoints intact and readable.
    names = sorted(os.listdir(workdir))
    partial = [n for n in names if n.startswith(checkpoint.TMP_PREFIX)]
    self.assertLen(partial, 1, names)
    complete = os.path.getsize(checkpoint.checkpoint_path(workdir, 10))
    size = os.path.getsize(os.path.join(workdir, partial[0]))
    self.assertBetween(size, 1, complete - 1)
    self.assertEqual(checkpoint.checkpoint_steps(workdir), [5, 10])
    for step in (5, 10):
      restored = checkpoint.read_checkpoint(
        checkpoint.checkpoint_path(workdir, step)
      )
      self.assertEqual(int(restored['state']['step']), step)
    resumed = _run(workdir, self.cache)
    self.assertEqual(resumed.returncode, 0, resumed.stderr)
    self.assertIn('ckpt_10.msgpack (step 10)', resumed.stderr)
    self.assertIn('left by an interrupted checkpoint write', resumed.stderr)
    self.assertEmpty(
      [n for n in os.listdir(workdir) if n.startswith(checkpoint.TMP_PREFIX)]
    )
    self.assertEqual(checkpoint.checkpoint_steps(workdir), [30, 35, 40])
    _assert_same_state(self, _final_state(workdir), self.want)
    # Metrics: step 10 from the first run, the rest after resuming.
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      steps = [json.loads(line)['step'] for line in f]
    self.assertEqual(steps, [10, 20, 30, 40])


if __name__ == '__main__':
  absltest.main()
