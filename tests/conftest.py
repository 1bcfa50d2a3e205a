"""pytest setup: absltest helpers (create_tempdir) need parsed absl flags."""

from absl import flags


def pytest_configure(config):
  del config
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
