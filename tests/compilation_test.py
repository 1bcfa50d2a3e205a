"""Tests of the persistent compilation cache (`uisrnn_jax.compilation`)."""

import os
import re
import textwrap
from unittest import mock

import jax_testing
from absl.testing import absltest, parameterized

from uisrnn_jax import compilation

# Compiles one program twice in fresh processes sharing a cache directory and
# prints how many compilations were cache hits.
_CHILD = textwrap.dedent(
  """
  import jax, jax.numpy as jnp
  from jax import monitoring
  from uisrnn_jax import compilation
  hits = []
  monitoring.register_event_listener(
    lambda name, **kw: hits.append(name)
    if name == '/jax/compilation_cache/cache_hits' else None)
  print('dir', compilation.enable_cache())
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum())
  print('value', float(f(jnp.ones((8, 8)))))
  print('hits', len(hits))
  """
)


class CacheDirTest(parameterized.TestCase):
  def test_env_var_sets_the_directory(self):
    d = self.create_tempdir().full_path
    with mock.patch.dict(os.environ, {compilation.ENV_VAR: d}):
      self.assertEqual(compilation.cache_dir(), d)

  @parameterized.parameters('', '0', 'off', 'OFF', 'none', 'false')
  def test_env_var_disables(self, value):
    with mock.patch.dict(os.environ, {compilation.ENV_VAR: value}):
      self.assertIsNone(compilation.cache_dir())

  def test_argument_wins_over_env_var(self):
    with mock.patch.dict(os.environ, {compilation.ENV_VAR: 'off'}):
      self.assertEqual(compilation.cache_dir('/x/y'), '/x/y')

  def test_default_is_under_the_user_cache(self):
    env = {k: v for k, v in os.environ.items() if k != compilation.ENV_VAR}
    env['XDG_CACHE_HOME'] = '/home/u/.cache'
    with mock.patch.dict(os.environ, env, clear=True):
      self.assertEqual(compilation.cache_dir(), '/home/u/.cache/uisrnn_jax/jax')

  def test_tests_do_not_use_the_real_cache(self):
    # conftest points the cache into this run's temporary directory.
    self.assertTrue(
      compilation.cache_dir().startswith(os.environ['TMPDIR']),
      compilation.cache_dir(),
    )


class DependencyTest(absltest.TestCase):
  def test_the_core_install_has_the_lock_a_bounded_cache_needs(self):
    # enable_cache bounds the cache (jax_compilation_cache_max_size), and
    # jax then locks it with `filelock`; without that package every cache
    # read and write fails with a warning (seen on `pip install -e .`).
    self.assertGreater(compilation.MAX_BYTES, 0)
    try:
      import tomllib
    except ModuleNotFoundError:  # Python 3.10
      self.skipTest('reading pyproject.toml needs tomllib (Python 3.11+)')
    path = os.path.join(os.path.dirname(__file__), '..', 'pyproject.toml')
    with open(path, 'rb') as f:
      deps = tomllib.load(f)['project']['dependencies']
    names = {re.split(r'[<>=!~ \[]', d, maxsplit=1)[0].lower() for d in deps}
    self.assertIn('filelock', names)


class PersistentCacheTest(absltest.TestCase):
  def _run(self, env):
    with mock.patch.dict(os.environ, env):
      out = jax_testing.run_python('-c', _CHILD, check=True).stdout
    return dict(line.split(' ', 1) for line in out.splitlines())

  def test_second_process_loads_what_the_first_compiled(self):
    d = os.path.join(self.create_tempdir().full_path, 'cache')
    first = self._run({compilation.ENV_VAR: d})
    self.assertEqual(first['dir'], d)
    self.assertEqual(first['hits'], '0')
    self.assertNotEmpty([f for f in os.listdir(d) if f.endswith('-cache')])
    second = self._run({compilation.ENV_VAR: d})
    self.assertGreaterEqual(int(second['hits']), 1)
    self.assertEqual(second['value'], first['value'])

  def test_disabled_writes_nothing(self):
    out = self._run({compilation.ENV_VAR: 'off'})
    self.assertEqual(out['dir'], 'None')
    self.assertEqual(out['hits'], '0')

  def test_jax_own_setting_is_kept(self):
    d = self.create_tempdir().full_path
    out = self._run(
      {compilation.ENV_VAR: 'off', 'JAX_COMPILATION_CACHE_DIR': d}
    )
    self.assertEqual(out['dir'], d)


if __name__ == '__main__':
  absltest.main()
