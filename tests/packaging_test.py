"""Packaging: the license file, one version string, and the py.typed marker."""

from __future__ import annotations

import email.parser
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

from absl.testing import absltest

import uisrnn_jax

try:
  import tomllib
except ImportError:  # Python 3.10
  tomllib = None

try:
  from packaging import version as packaging_version
except ImportError:
  packaging_version = None

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = pathlib.Path(uisrnn_jax.__file__).resolve().parent
NEEDS_TOMLLIB = 'tomllib needs Python >= 3.11'


def read_pyproject() -> dict:
  with open(ROOT / 'pyproject.toml', 'rb') as f:
    return tomllib.load(f)


@absltest.skipIf(tomllib is None, NEEDS_TOMLLIB)
class PyprojectTest(absltest.TestCase):
  def test_version_has_one_source(self):
    pyproject = read_pyproject()
    self.assertNotIn('version', pyproject['project'])
    self.assertIn('version', pyproject['project']['dynamic'])
    self.assertEqual(
      pyproject['tool']['setuptools']['dynamic']['version'],
      {'attr': 'uisrnn_jax.__version__'},
    )

  def test_version_is_pep440(self):
    if packaging_version is None:
      self.skipTest('the packaging module is not installed')
    parsed = packaging_version.Version(uisrnn_jax.__version__)
    self.assertEqual(str(parsed), uisrnn_jax.__version__)

  def test_license_matches(self):
    project = read_pyproject()['project']
    self.assertEqual(project['license'], 'Apache-2.0')
    self.assertEqual(project['license-files'], ['LICENSE'])
    text = (ROOT / 'LICENSE').read_text(encoding='utf-8')
    self.assertIn('Apache License\n', text)
    self.assertIn('Version 2.0, January 2004', text)
    self.assertIn(
      'TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION', text
    )
    self.assertIn('END OF TERMS AND CONDITIONS', text)
    self.assertIn('APPENDIX: How to apply the Apache License', text)

  def test_py_typed_is_package_data(self):
    self.assertTrue((PACKAGE / 'py.typed').is_file())
    package_data = read_pyproject()['tool']['setuptools']['package-data']
    self.assertIn('py.typed', package_data['uisrnn_jax'])


@absltest.skipIf(tomllib is None, NEEDS_TOMLLIB)
class WheelTest(absltest.TestCase):
  """Builds the wheel from a copy of the source (no network, ~5 s)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    try:
      import setuptools  # noqa: PLC0415
    except ImportError:
      raise absltest.SkipTest('setuptools is not installed') from None
    if int(setuptools.__version__.split('.')[0]) < 77:
      raise absltest.SkipTest(
        f'the build needs setuptools >= 77, found {setuptools.__version__}'
      )

  def test_wheel_contents(self):
    source = pathlib.Path(self.create_tempdir('source').full_path)
    out = pathlib.Path(self.create_tempdir('out').full_path)
    for name in ('pyproject.toml', 'README.md', 'LICENSE'):
      shutil.copy(ROOT / name, source / name)
    shutil.copytree(
      PACKAGE,
      source / 'uisrnn_jax',
      ignore=shutil.ignore_patterns('__pycache__'),
    )
    result = subprocess.run(
      [
        sys.executable,
        '-c',
        'import sys; from setuptools import build_meta; '
        'print(build_meta.build_wheel(sys.argv[1]))',
        os.fspath(out),
      ],
      cwd=source,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertNotIn('DeprecationWarning', result.stderr)
    wheel = out / result.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as z:
      names = set(z.namelist())
      dist_info = f'uisrnn_jax-{uisrnn_jax.__version__}.dist-info'
      metadata = email.parser.Parser().parsestr(
        z.read(f'{dist_info}/METADATA').decode('utf-8')
      )
      self.assertEqual(
        z.read(f'{dist_info}/licenses/LICENSE'),
        (ROOT / 'LICENSE').read_bytes(),
      )
    self.assertIn('uisrnn_jax/py.typed', names)
    self.assertEqual(metadata['Version'], uisrnn_jax.__version__)
    self.assertEqual(metadata['License-Expression'], 'Apache-2.0')
    modules = {
      f'uisrnn_jax/{p.relative_to(PACKAGE).as_posix()}'
      for p in PACKAGE.rglob('*.py')
      if '__pycache__' not in p.parts
    }
    self.assertEmpty(modules - names)


if __name__ == '__main__':
  absltest.main()
