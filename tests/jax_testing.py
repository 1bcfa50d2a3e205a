"""Test helpers shared by several test files (not collected as tests)."""

import contextlib
import logging

import jax


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
