"""Loading and converting model files written by uisrnn 0.1.2's ``save()``.

The fixture ``tests/fixtures/reference_model.uisrnn`` is a tiny model saved by
the reference itself, and ``reference_model_expected.npz`` what the reference
computed with it (``tests/fixtures/make_torch_model_fixture.py`` made both).
Reading a torch file needs torch (the ``torch`` extra); without it, those
tests are skipped with the reason below, and only the error naming the extra
is tested.
"""

import argparse
import io
import os
import pathlib
import sys
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from unittest import mock

import jax
import numpy as np
from absl.testing import absltest
from jax_testing import run_python

from uisrnn_jax import (
  arguments,
  checkpoint,
  compat,
  convert,
  estimators,
  evals,
  losses,
)

try:
  import torch
except ImportError:
  torch = None

NEEDS_TORCH = "needs torch for reference model files: pip install -e '.[torch]'"
REPO = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = REPO / 'tests' / 'fixtures'
REFERENCE_FILE = str(FIXTURES / 'reference_model.uisrnn')

_EXECUTED = []


def _record(message):
  _EXECUTED.append(message)
  return message


class _Payload:
  """Unpickling this calls `_record`: what weights_only must refuse."""

  def __reduce__(self):
    return (_record, ('code ran while loading',))


def expected():
  return np.load(FIXTURES / 'reference_model_expected.npz', allow_pickle=False)


def reference_args(**overrides):
  args = dict(observation_dim=4, rnn_hidden_size=8, rnn_depth=2, verbosity=1)
  args.update(overrides)
  return argparse.Namespace(**args)


def load_var_dict(path):
  """The reference file's dict, loaded the way uisrnn_jax does."""
  with torch.serialization.safe_globals(convert.safe_numpy_globals()):
    return torch.load(path, weights_only=True)


def decode_cases(arrays):
  """{(beam_size, look_ahead, test_iteration): [(sequence_index, labels)]}."""
  cases = {}
  i = 0
  while f'decode/{i}/labels' in arrays:
    prefix = f'decode/{i}/'
    key = tuple(
      int(arrays[prefix + k])
      for k in ('beam_size', 'look_ahead', 'test_iteration')
    )
    cases.setdefault(key, []).append(
      (int(arrays[prefix + 'sequence_index']), arrays[prefix + 'labels'])
    )
    i += 1
  return cases


class WithoutTorchTest(absltest.TestCase):
  def test_error_names_the_extra(self):
    with mock.patch.dict(sys.modules, {'torch': None}):
      with self.assertRaisesRegex(ImportError, r"'uisrnn-jax\[torch\]'"):
        convert.read_reference_model(REFERENCE_FILE)

  def test_is_torch_file(self):
    self.assertTrue(convert.is_torch_file(b'PK\x03\x04rest'))
    self.assertTrue(convert.is_torch_file(b'\x80\x02\x8a\x0a'))
    self.assertFalse(convert.is_torch_file(b'\x87\xa6format'))  # msgpack
    self.assertFalse(convert.is_torch_file(b''))


@absltest.skipIf(torch is None, NEEDS_TORCH)
class ReferenceModelTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.expected = expected()
    cls.model = compat.UISRNN(reference_args())
    cls.model.load(REFERENCE_FILE)

  def test_attributes(self):
    e = self.expected
    self.assertAlmostEqual(
      self.model.transition_bias, float(e['transition_bias']), places=6
    )
    self.assertEqual(
      self.model.transition_bias_denominator,
      float(e['transition_bias_denominator']),
    )
    self.assertEqual(self.model.crp_alpha, float(e['crp_alpha']))
    np.testing.assert_array_equal(self.model.sigma2, e['sigma2'])
    self.assertEqual(self.model.observation_dim, int(e['observation_dim']))

  def test_weights_are_the_state_dict(self):
    var_dict = load_var_dict(REFERENCE_FILE)
    state_dict = var_dict['rnn_state_dict']
    params = self.model.params
    np.testing.assert_array_equal(
      params['rnn'][1]['w_hh'], state_dict['gru.weight_hh_l1'].numpy()
    )
    np.testing.assert_array_equal(
      params['head']['b2'], state_dict['linear_mean2.bias'].numpy()
    )
    np.testing.assert_array_equal(
      params['init_hidden'], var_dict['rnn_init_hidden'][:, 0, :]
    )
    self.assertTrue(np.any(var_dict['rnn_init_hidden'] != 0))  # trained

  def test_predict_returns_the_references_labels(self):
    e = self.expected
    for (beam, look_ahead, iterations), cases in decode_cases(e).items():
      args = argparse.Namespace(
        beam_size=beam, look_ahead=look_ahead, test_iteration=iterations
      )
      sequences = [e[f'sequence/{j}'] for j, _ in cases]
      predicted = self.model.predict(sequences, args)
      for (j, labels), ours in zip(cases, predicted):
        with self.subTest(setting=(beam, look_ahead, iterations), sequence=j):
          self.assertEqual(ours, evals.renumber_labels(labels).tolist())
          if iterations == 1:  # no renumbering difference at all
            self.assertEqual(ours, labels.tolist())

  def test_training_loss_equals_the_references(self):
    e = self.expected
    lengths = e['loss/lengths']
    subs = np.split(e['loss/observations'], np.cumsum(lengths)[:-1])
    steps = int(lengths.max())
    observations = np.zeros((len(subs), steps, 4), np.float32)
    mask = np.zeros((len(subs), steps), bool)
    for i, sub in enumerate(subs):
      observations[i, : len(sub)] = sub
      mask[i, : len(sub)] = True
    _, parts = losses.total_loss(
      self.model.params,
      {'observations': observations, 'mask': mask},
      jax.random.key(0),
      sigma_alpha=float(e['loss/sigma_alpha']),
      sigma_beta=float(e['loss/sigma_beta']),
      regularization_weight=float(e['loss/regularization_weight']),
    )
    for name in ('nll', 'sigma2_prior', 'regularization'):
      np.testing.assert_allclose(
        float(parts[name]), float(e[f'loss/{name}']), rtol=2e-6, err_msg=name
      )

  def test_fit_after_loading_pools_with_the_files_transition_bias(self):
    model = compat.UISRNN(reference_args())
    model.load(REFERENCE_FILE)
    training_args = arguments.training_parser().parse_args(['-t', '0'])
    ids = [np.array(['a'] * 5 + ['b'] * 5)]
    model.fit([np.zeros((10, 4))], ids, training_args)
    p0 = self.model.transition_bias
    denominator = self.model.transition_bias_denominator
    new_p0, new_denominator = estimators.estimate_transition_bias(ids)
    self.assertAlmostEqual(
      model.transition_bias,
      (p0 * denominator + new_p0 * new_denominator)
      / (denominator + new_denominator),
      places=6,
    )
    self.assertEqual(
      model.transition_bias_denominator, denominator + new_denominator
    )

  def test_shape_mismatch(self):
    model = compat.UISRNN(reference_args(rnn_depth=1))
    with self.assertRaisesRegex(checkpoint.CheckpointError, 'rnn_depth=2'):
      model.load(REFERENCE_FILE)


@absltest.skipIf(torch is None, NEEDS_TORCH)
class SafeLoadingTest(absltest.TestCase):
  def assert_loads_like_the_fixture(self, path):
    reference = convert.read_reference_model(path)
    original = convert.read_reference_model(REFERENCE_FILE)
    jax.tree.map(
      np.testing.assert_array_equal, reference.params, original.params
    )
    self.assertEqual(reference.transition_bias, original.transition_bias)
    self.assertAlmostEqual(reference.crp_alpha, original.crp_alpha, places=6)

  def test_allowed_globals_are_exactly_what_the_file_needs(self):
    names = set()
    for entry in convert.safe_numpy_globals():
      if isinstance(entry, tuple):
        names.add(entry[1])
      else:
        names.add(f'{entry.__module__}.{entry.__qualname__}')
    self.assertEqual(
      names,
      {
        'numpy._core.multiarray._reconstruct',
        'numpy._core.multiarray.scalar',
        'numpy.core.multiarray._reconstruct',
        'numpy.core.multiarray.scalar',
        'numpy.ndarray',
        'numpy.dtype',
        'numpy.dtypes.Float32DType',
        'numpy.dtypes.Float64DType',
        'numpy.dtypes.Int64DType',
      },
    )
    # The reference file itself needs these, which torch refuses by default.
    self.assertEqual(
      set(torch.serialization.get_unsafe_globals_in_checkpoint(REFERENCE_FILE)),
      {
        'numpy._core.multiarray._reconstruct',
        'numpy.ndarray',
        'numpy.dtype',
      },
    )

  def test_file_written_under_numpy_1(self):
    # NumPy 1.x names the module numpy.core.multiarray in the pickle.
    path = self.create_tempfile().full_path
    with (
      zipfile.ZipFile(REFERENCE_FILE) as source,
      zipfile.ZipFile(path, 'w') as target,
    ):
      for info in source.infolist():
        data = source.read(info.filename)
        if info.filename.endswith('data.pkl'):
          self.assertIn(b'numpy._core.multiarray\n', data)
          data = data.replace(
            b'numpy._core.multiarray\n', b'numpy.core.multiarray\n'
          )
        target.writestr(info, data)
    self.assert_loads_like_the_fixture(path)

  def test_legacy_torch_format_and_numpy_scalars(self):
    var_dict = load_var_dict(REFERENCE_FILE)
    var_dict['transition_bias'] = np.float64(var_dict['transition_bias'])
    var_dict['transition_bias_denominator'] = np.int64(
      var_dict['transition_bias_denominator']
    )
    var_dict['crp_alpha'] = np.float32(var_dict['crp_alpha'])
    path = self.create_tempfile().full_path
    torch.save(var_dict, path, _use_new_zipfile_serialization=False)
    with open(path, 'rb') as f:
      self.assertFalse(f.read(4).startswith(b'PK'))
    self.assert_loads_like_the_fixture(path)
    model = compat.UISRNN(reference_args())
    model.load(path)  # the legacy header is recognised, too
    self.assertEqual(model.crp_alpha, float(expected()['crp_alpha']))

  def test_refuses_to_run_code_from_a_file(self):
    var_dict = load_var_dict(REFERENCE_FILE)
    var_dict['crp_alpha'] = _Payload()
    path = self.create_tempfile().full_path
    torch.save(var_dict, path)
    with self.assertRaisesRegex(convert.ReferenceFileError, 'weights_only'):
      convert.read_reference_model(path)
    with self.assertRaises(checkpoint.CheckpointError):
      compat.UISRNN(reference_args()).load(path)
    self.assertEqual(_EXECUTED, [])

  def test_not_a_uisrnn_file(self):
    path = self.create_tempfile().full_path
    torch.save({'weights': torch.zeros(3)}, path)
    with self.assertRaisesRegex(convert.ReferenceFileError, 'missing'):
      convert.read_reference_model(path)
    var_dict = load_var_dict(REFERENCE_FILE)
    var_dict['sigma2'] = var_dict['sigma2'][:3]
    torch.save(var_dict, path)
    with self.assertRaisesRegex(convert.ReferenceFileError, 'shape'):
      convert.read_reference_model(path)
    with self.assertRaises(FileNotFoundError):
      convert.read_reference_model(path + '.missing')


@absltest.skipIf(torch is None, NEEDS_TORCH)
class ConvertTest(absltest.TestCase):
  def test_converted_file_loads_without_torch(self):
    out = os.path.join(self.create_tempdir().full_path, 'model.msgpack')
    reference = convert.convert(REFERENCE_FILE, out)
    self.assertEqual(reference.rnn_depth, 2)
    with open(out, 'rb') as f:
      self.assertFalse(convert.is_torch_file(f.read(8)))
    direct = compat.UISRNN(reference_args())
    direct.load(REFERENCE_FILE)
    converted = compat.UISRNN(reference_args())
    with mock.patch.dict(sys.modules, {'torch': None}):
      converted.load(out)
    jax.tree.map(
      np.testing.assert_array_equal,
      jax.device_get(direct.params),
      jax.device_get(converted.params),
    )
    self.assertEqual(converted.transition_bias, direct.transition_bias)
    self.assertEqual(
      converted.transition_bias_denominator,
      direct.transition_bias_denominator,
    )
    self.assertEqual(converted.crp_alpha, direct.crp_alpha)

  def test_main(self):
    directory = self.create_tempdir().full_path
    out = os.path.join(directory, 'model.msgpack')
    stdout = io.StringIO()
    with redirect_stdout(stdout):
      self.assertEqual(convert.main([REFERENCE_FILE, out]), 0)
    self.assertIn('rnn_depth=2', stdout.getvalue())
    self.assertTrue(os.path.isfile(out))
    stderr = io.StringIO()
    with redirect_stderr(stderr):
      self.assertEqual(convert.main([out + '.missing', out]), 1)
    self.assertIn('error:', stderr.getvalue())

  def test_module_entry_point(self):
    out = os.path.join(self.create_tempdir().full_path, 'model.msgpack')
    result = run_python('-m', 'uisrnn_jax.convert', REFERENCE_FILE, out)
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertIn('converted', result.stdout)
    self.assertTrue(os.path.isfile(out))


if __name__ == '__main__':
  absltest.main()
