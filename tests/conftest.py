"""pytest setup: a fresh temporary root per run, and parsed absl flags.

Every run of the suite writes below one new, empty directory, made here
before any test module is imported: ``TMPDIR`` (so `tempfile`, and the
subprocesses the tests start, use it) and ``TEST_TMPDIR`` (absltest's
``create_tempdir`` root, which otherwise is a fixed ``/tmp/absl_testing``
shared by every run). A test that forgets to create its directory then
fails on every machine, instead of passing wherever an earlier run left the
directory behind.
"""

import os
import shutil
import tempfile

from absl import flags

_RUN_TMPDIR = tempfile.mkdtemp(prefix='uisrnn_jax_tests_')
os.environ['TMPDIR'] = _RUN_TMPDIR
os.environ['TEST_TMPDIR'] = _RUN_TMPDIR
tempfile.tempdir = _RUN_TMPDIR
# Compiled programs go to this run's cache, never the user's (compilation.py).
os.environ['UISRNN_JAX_CACHE_DIR'] = os.path.join(_RUN_TMPDIR, 'jax_cache')


def pytest_configure(config):
  del config
  # absltest helpers (create_tempdir) need parsed absl flags; absltest may
  # have been imported before this file, with the old default root.
  from absl.testing import absltest  # noqa: F401  (defines --test_tmpdir)

  flags.FLAGS.test_tmpdir = _RUN_TMPDIR
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def pytest_unconfigure(config):
  del config
  shutil.rmtree(_RUN_TMPDIR, ignore_errors=True)
