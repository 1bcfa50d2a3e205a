"""The fixed list of bad inputs: each raises its documented exception.

Every entry of the table in `uisrnn_jax.errors` is exercised through the
paths a user reaches it by (the library functions, `train.fit`,
`decode.predict_labels`, the seed-compatible `compat.UISRNN`, the whole-run
`experiment.train_and_evaluate` and `train.py`), and the runs check that
nothing was written. Shapes match other test files (D = 4, H = 8 for
decoding; the train tests' small config), so little is compiled here.
"""

import argparse
import ast
import json
import os
import pickle
import zipfile

import jax
import jax_testing
import ml_collections
import numpy as np
from absl.testing import absltest, parameterized
from flax import serialization

from configs import default, toy
from uisrnn_jax import (
  checkpoint,
  compat,
  config_check,
  data,
  decode,
  errors,
  experiment,
  model,
  train,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D, H = 4, 8


def _seq(n, d=D, seed=0):
  return np.random.default_rng(seed).normal(size=(n, d))


def _decode_settings(**kwargs):
  base = dict(beam_size=3, max_speakers=16, test_iteration=1, bucket=16)
  base.update(kwargs)
  return base


def _params(seed=0):
  return model.init_params(
    jax.random.key(seed), observation_dim=D, hidden_size=H, depth=1
  )


_small_config = jax_testing.tiny_config


def _labels(n):
  return np.array(['a', 'b'] * (n // 2) + ['a'] * (n % 2))


_VALUE = errors.InvalidSequenceError
_TYPE = errors.SequenceTypeError
# (name, sequence, exception, message) with observation_dim D.
BAD_SEQUENCES = (
  ('nan', np.array([[0.0] * (D - 1) + [np.nan]] * 3), _VALUE, 'NaN or Inf'),
  ('inf', np.array([[0.0] * (D - 1) + [-np.inf]] * 3), _VALUE, 'NaN or Inf'),
  ('empty', np.zeros((0, D)), _VALUE, r'empty \(0 observations\)'),
  ('wrong_dim', np.zeros((3, D + 1)), _VALUE, f'dimension {D + 1}.*={D}'),
  ('one_dim', np.zeros(D), _VALUE, '2-D'),
  ('int', np.ones((3, D), np.int64), _TYPE, 'float numpy array, got int64'),
  ('object', np.ones((3, D), object), _TYPE, 'float numpy array, got object'),
  ('bool', np.ones((3, D), bool), _TYPE, 'float numpy array, got bool'),
  ('list', [[0.0] * D] * 3, _TYPE, 'float numpy array, got list'),
)


class HierarchyTest(absltest.TestCase):
  def test_classes_keep_builtin_types_and_old_names(self):
    self.assertTrue(issubclass(errors.UISRNNJaxError, ValueError))
    for cls in (errors.SequenceTypeError, errors.LabelsTypeError):
      self.assertTrue(issubclass(cls, TypeError))
      self.assertTrue(issubclass(cls, errors.UISRNNJaxError))
    self.assertTrue(
      issubclass(errors.InputFileNotFoundError, FileNotFoundError)
    )
    self.assertIs(checkpoint.CheckpointError, errors.CheckpointError)
    self.assertIs(experiment.DataFormatError, errors.DataFormatError)
    for name in errors.__all__:
      self.assertTrue(issubclass(getattr(errors, name), errors.UISRNNJaxError))


class SequenceTest(parameterized.TestCase):
  @parameterized.named_parameters(*BAD_SEQUENCES)
  def test_check_sequence(self, value, error, message):
    with self.assertRaisesRegex(error, message) as ctx:
      data.check_sequence(value, observation_dim=D)
    # Type problems are TypeErrors (as in uisrnn), the rest ValueErrors.
    self.assertEqual(
      isinstance(ctx.exception, TypeError), error is errors.SequenceTypeError
    )

  @parameterized.named_parameters(*BAD_SEQUENCES)
  def test_predict_labels_checks_every_sequence_first(
    self, value, error, message
  ):
    good = _seq(5).astype(np.float32)
    with self.assertRaisesRegex(error, message) as ctx:
      decode.predict_labels(
        _params(),
        [good, value],  # the good one is not decoded first
        transition_bias=0.3,
        crp_alpha=1.0,
        config=_decode_settings(),
      )
    self.assertIn('sequences[1]', str(ctx.exception))

  @parameterized.named_parameters(*BAD_SEQUENCES)
  def test_fit_rejects_before_training(self, value, error, message):
    config = _small_config()
    config.model.observation_dim = D
    state = train.create_train_state(jax.random.key(0), config)
    with self.assertRaisesRegex(error, message):
      train.fit(
        state,
        [_seq(4), value],
        [_labels(4), _labels(3)],
        config,
        num_steps=1,
        progress=False,
      )
    self.assertEqual(int(state.step), 0)

  def test_nan_message_names_the_row(self):
    x = _seq(5)
    x[3, 1] = np.nan
    with self.assertRaisesRegex(
      errors.InvalidSequenceError, r'seq has NaN .* 1 observation.*row 3'
    ):
      data.check_sequence(x, name='seq')


class LengthOneTest(absltest.TestCase):
  """Length 1 is valid: it trains (no transition) and decodes to [0]."""

  def test_decode_length_one(self):
    (got,) = decode.predict_labels(
      _params(),
      [_seq(1).astype(np.float32)],
      transition_bias=0.3,
      crp_alpha=1.0,
      config=_decode_settings(),
    )
    np.testing.assert_array_equal(got, [0])

  def test_train_on_length_one_sequences(self):
    config = _small_config()
    seqs = [_seq(1, d=3, seed=i) for i in range(4)]
    ids = [np.array([s]) for s in 'abab']
    state = train.create_train_state(jax.random.key(0), config)
    state = train.fit(state, seqs, ids, config, num_steps=2, progress=False)
    self.assertEqual(int(state.step), 2)
    # No transition anywhere: the smoothed estimate is exactly 1/2.
    self.assertEqual(float(state.transition_bias), 0.5)
    for leaf in jax.tree.leaves(state.params):
      self.assertTrue(np.all(np.isfinite(leaf)))


class LabelsTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ('short', ['a', 'b'], errors.InvalidLabelsError, '2 labels for a .* of 3'),
    ('long', np.array(['a'] * 4), errors.InvalidLabelsError, '4 labels'),
    ('two_d', np.array([['a']] * 3), errors.InvalidLabelsError, '1-D'),
    ('ints', [1, 2, 3], errors.LabelsTypeError, 'strings only, got int 1'),
    ('int_array', np.arange(3), errors.LabelsTypeError, 'got dtype int64'),
    ('none', ['a', None, 'b'], errors.LabelsTypeError, 'got NoneType None'),
    ('bytes', np.array([b'a'] * 3), errors.LabelsTypeError, r'dtype \|S1'),
    ('string', 'abc', errors.LabelsTypeError, 'got str'),
  )
  def test_fit_and_compat_fit_reject(self, labels, error, message):
    with self.assertRaisesRegex(error, message):
      data.check_labels(labels, 3)
    config = _small_config()
    state = train.create_train_state(jax.random.key(0), config)
    with self.assertRaisesRegex(error, message):
      train.fit(
        state,
        [_seq(4, d=3), _seq(3, d=3)],
        [_labels(4), labels],
        config,
        num_steps=1,
        progress=False,
      )
    # The seed-compatible API raises the seed's types (TypeError for
    # non-string labels, ValueError for a wrong length) and changes nothing.
    uis = compat.UISRNN(
      argparse.Namespace(observation_dim=3, rnn_hidden_size=8, verbosity=0)
    )
    before = jax.tree.map(np.array, uis.state.params)
    seed_type = TypeError if issubclass(error, TypeError) else ValueError
    with self.assertRaises(seed_type):
      uis.fit(
        [_seq(4, d=3), _seq(3, d=3)],
        [_labels(4), labels],
        argparse.Namespace(train_iteration=1),
      )
    self.assertIsNone(uis.transition_bias)
    jax.tree.map(np.testing.assert_array_equal, uis.state.params, before)


class CompatTest(parameterized.TestCase):
  @parameterized.named_parameters(*BAD_SEQUENCES)
  def test_compat_predict_keeps_seed_exception_types(
    self, value, error, message
  ):
    uis = compat.UISRNN(
      argparse.Namespace(observation_dim=D, rnn_hidden_size=H, verbosity=0)
    )
    uis.transition_bias = 0.3
    seed_type = TypeError if error is errors.SequenceTypeError else ValueError
    with self.assertRaisesRegex(seed_type, message):
      uis.predict([_seq(3), value], argparse.Namespace(test_iteration=1))


class SpeakerOverflowTest(absltest.TestCase):
  def _three_speakers(self):
    centers = 3.0 * np.array(
      [[1, 1, 1, 1], [-1, -1, -1, -1], [1, -1, 1, -1]], np.float32
    )
    ids = np.array([0, 1, 0, 2, 2, 1])
    return centers[ids]

  def test_error_policy_raises_and_disallow_does_not(self):
    seq = self._three_speakers()
    kw = dict(transition_bias=0.3, crp_alpha=1.0)
    # With a beam of 3, the hypothesis "second observation is a new
    # speaker" survives step 2 whatever the weights: more than 1 speaker.
    with self.assertRaisesRegex(
      errors.SpeakerOverflowError, r'sequence 0 needs more than max_speakers=1'
    ):
      decode.predict_labels(
        _params(),
        [seq],
        config=_decode_settings(max_speakers=1, speaker_overflow='error'),
        **kw,
      )
    (got,) = decode.predict_labels(
      _params(),
      [seq],
      config=_decode_settings(max_speakers=1, speaker_overflow='disallow'),
      **kw,
    )
    np.testing.assert_array_equal(got, np.zeros(6))


class ConfigTest(parameterized.TestCase):
  def test_shipped_configs_are_valid(self):
    for config in (
      toy.get_config(),
      default.get_config(),
      compat.default_config(),
    ):
      self.assertIs(config_check.validate_config(config), config)
    # The JSON a checkpoint stores reads back valid.
    stored = toy.get_config().to_json()
    config_check.validate_config(ml_collections.ConfigDict(json.loads(stored)))

  @parameterized.named_parameters(
    ('unknown_top', lambda c: c.__setitem__('trian', {}), 'unknown .*trian'),
    (
      'unknown_field',
      lambda c: c.train.__setitem__('learning_rat', 0.1),
      r'config.train.learning_rat; did you mean config.train.learning_rate',
    ),
    ('missing_field', lambda c: c.decode.__delitem__('beam_size'), 'no field'),
    ('missing_group', lambda c: c.__delitem__('model'), "no 'model'"),
    ('negative_batch', ('train', 'batch_size', -3), 'batch_size must be >= 1'),
    ('negative_iterations', ('train', 'train_iteration', -1), '>= 0'),
    ('float_for_int', ('train', 'batch_size', 2.5), 'must be an int'),
    ('bool_for_int', ('model', 'rnn_depth', True), 'must be an int'),
    ('str_for_float', ('train', 'learning_rate', '1e-3'), 'must be a number'),
    ('nan_rate', ('train', 'learning_rate', float('nan')), 'finite'),
    ('dropout_one', ('model', 'rnn_dropout', 1.0), r'in \[0, 1\)'),
    ('p0', ('model', 'transition_bias', 1.5), r'in \(0, 1\)'),
    ('mean_rule', ('decode', 'mean_rule', 'mean'), "'reference'"),
    ('loss', ('train', 'loss', 'nl'), "one of \\('nll', 'sample_mean'\\)"),
    ('overflow', ('decode', 'speaker_overflow', 'grow'), 'disallow'),
    ('estimator', ('model', 'crp_alpha_estimator', 'guess'), 'closed_form'),
    ('optimizer', ('train', 'optimizer', 'sgd'), "'adam'"),
    ('none_int', ('decode', 'beam_size', None), 'must be an int'),
    ('path_type', ('data', 'train_path', 3), 'must be a string'),
  )
  def test_rejects(self, change, message):
    config = toy.get_config()
    if callable(change):
      change(config)
    else:
      group, key, value = change
      # Assigning across types is refused by ConfigDict itself, so replace
      # the group as a config file written from scratch would set it.
      fields = config[group].to_dict()
      fields[key] = value
      config[group] = ml_collections.ConfigDict(fields)
    with self.assertRaisesRegex(errors.ConfigError, message):
      config_check.validate_config(config)

  def test_check_field(self):
    # One checker for configs, DecodeSettings, compat and train.
    self.assertEqual(
      config_check.check_field('decode.beam_size', np.int32(3)), 3
    )
    self.assertIs(
      type(config_check.check_field('model.crp_alpha', np.float32(0.5))), float
    )
    self.assertIsNone(config_check.check_field('model.sigma2', None))
    with self.assertRaisesRegex(
      errors.ConfigTypeError, r'^inference_args.beam_size must be an int'
    ) as ctx:
      config_check.check_field(
        'decode.beam_size', '3', where='inference_args.beam_size'
      )
    self.assertIsInstance(ctx.exception, TypeError)
    with self.assertRaisesRegex(
      errors.ConfigError, r'^config.seed must be >= 0'
    ):
      config_check.check_field('seed', -1)
    with self.assertRaisesRegex(
      errors.ConfigError, 'did you mean config.decode.beam_size'
    ):
      config_check.check_field('decode.beam_sise', 3)
    with self.assertRaisesRegex(errors.ConfigError, 'not a config field'):
      config_check.check_field('decode', 3)

  def test_train_checks_its_config(self):
    config = _small_config()
    config.train.optimizer = 'sgd'
    with self.assertRaisesRegex(errors.ConfigError, 'config.train.optimizer'):
      train.create_train_state(jax.random.key(0), config)

  def test_unknown_override_is_a_flag_error_not_a_traceback(self):
    # ml_collections rejects it while parsing flags, before our code runs;
    # cli.parse_flags turns its AttributeError into absl's flag error.
    workdir = os.path.join(self.create_tempdir().full_path, 'run')
    result = jax_testing.run_python(
      '-c',
      'from absl import app; from uisrnn_jax import cli; '
      'app.run(cli.train_main, flags_parser=cli.parse_flags)',
      '--config=configs/toy.py',
      f'--workdir={workdir}',
      '--config.train.learning_rat=0.1',
    )
    self.assertEqual(result.returncode, 1, result.stderr)
    self.assertIn(
      'Flags parsing error: unknown config key --config.train.learning_rat',
      result.stderr,
    )
    self.assertNotIn('Traceback', result.stderr)
    self.assertFalse(os.path.exists(workdir))

  def test_train_and_evaluate_rejects_before_writing(self):
    config = toy.get_config()
    config.train.checkpoint_every = 0
    workdir = os.path.join(self.create_tempdir().full_path, 'run')
    with self.assertRaisesRegex(
      errors.ConfigError, 'checkpoint_every must be >= 1'
    ):
      experiment.train_and_evaluate(config, workdir, progress=False)
    self.assertFalse(os.path.exists(workdir))

  def test_train_script_exits_with_the_message_and_writes_nothing(self):
    workdir = os.path.join(self.create_tempdir().full_path, 'run')
    result = jax_testing.run_python(
      'train.py',
      '--config=configs/toy.py',
      f'--workdir={workdir}',
      '--config.train.batch_size=-2',
    )
    self.assertEqual(result.returncode, 1, result.stderr)
    self.assertIn(
      'error: config.train.batch_size must be >= 1, got -2', result.stderr
    )
    self.assertFalse(os.path.exists(workdir))

  def test_priors_are_checked(self):
    for p0, alpha, message in (
      (float('nan'), 1.0, r'transition_bias must be in \(0, 1\), got nan'),
      (1.0, 1.0, 'transition_bias'),
      (0.3, 0.0, 'crp_alpha must be positive'),
    ):
      with self.assertRaisesRegex(errors.ConfigError, message):
        decode.predict_labels(
          _params(),
          [_seq(3)],
          transition_bias=p0,
          crp_alpha=alpha,
          config=_decode_settings(),
        )


class CheckpointTest(absltest.TestCase):
  def setUp(self):
    super().setUp()
    self.config = _small_config()
    self.state = train.create_train_state(jax.random.key(0), self.config)
    self.workdir = self.create_tempdir().full_path
    self.path = checkpoint.save_checkpoint(
      self.workdir, self.state, self.config
    )
    with open(self.path, 'rb') as f:
      self.raw = f.read()

  def _write(self, name, payload):
    path = os.path.join(self.create_tempdir().full_path, name)
    with open(path, 'wb') as f:
      f.write(payload)
    return path

  def test_missing(self):
    with self.assertRaisesRegex(errors.CheckpointError, 'no checkpoint at'):
      checkpoint.read_checkpoint(self.path + '.gone')
    with self.assertRaisesRegex(errors.CheckpointError, 'no checkpoint in'):
      checkpoint.load_inference_state(self.create_tempdir().full_path)

  def test_truncated(self):
    for size in (0, 1, len(self.raw) // 2, len(self.raw) - 1):
      with self.subTest(size=size):
        path = self._write('ckpt_1.msgpack', self.raw[:size])
        with self.assertRaisesRegex(
          errors.CheckpointError, 'empty|truncated or corrupted'
        ):
          checkpoint.read_checkpoint(path)

  def test_flipped_byte_in_the_arrays_is_detected(self):
    # A flip inside float data still parses as msgpack; the checksum
    # catches it.
    corrupted = bytearray(self.raw)
    corrupted[len(corrupted) // 2] ^= 0x01
    path = self._write('ckpt_1.msgpack', bytes(corrupted))
    with self.assertRaisesRegex(errors.CheckpointError, 'corrupted|truncated'):
      checkpoint.load_inference_state(path)

  def test_garbage_and_foreign_files(self):
    for payload in (
      b'\x00garbage' * 10,
      pickle.dumps({'format': checkpoint.FORMAT}),
      serialization.msgpack_serialize({'hello': 1}),
      serialization.msgpack_serialize(
        {'format': checkpoint.FORMAT, 'version': 99}
      ),
    ):
      with self.subTest(payload=payload[:12]):
        path = self._write('x.msgpack', payload)
        with self.assertRaises(errors.CheckpointError):
          checkpoint.load_inference_state(path)

  def test_version_one_files_still_load(self):
    payload = serialization.msgpack_serialize(
      {
        'format': checkpoint.FORMAT,
        'version': 1,
        'config': self.config.to_json(),
        'state': serialization.to_state_dict(
          checkpoint._state_dict(jax.device_get(self.state))
        ),
      }
    )
    state, config = checkpoint.load_inference_state(
      self._write('v1.msgpack', payload)
    )
    self.assertEqual(config.model.rnn_hidden_size, 8)
    jax.tree.map(np.testing.assert_array_equal, state.params, self.state.params)

  def test_invalid_stored_config(self):
    bad = ml_collections.ConfigDict(self.config.to_dict())
    bad.train.learning_rat = 0.1
    path = checkpoint.save_checkpoint(
      self.create_tempdir().full_path, self.state, bad
    )
    with self.assertRaisesRegex(
      errors.CheckpointError, 'invalid config.*learning_rat'
    ):
      checkpoint.load_inference_state(path)

  def test_resume_from_a_corrupted_checkpoint_writes_nothing(self):
    config = _small_config()
    config.toy.num_train = 2
    config.train.train_iteration = 3
    with open(self.path, 'r+b') as f:
      f.seek(len(self.raw) // 2)
      f.write(b'\xff\xff\xff\xff')
    before = sorted(os.listdir(self.workdir))
    with self.assertRaises(errors.CheckpointError):
      experiment.train_and_evaluate(config, self.workdir, progress=False)
    self.assertEqual(sorted(os.listdir(self.workdir)), before)

  def test_shape_mismatch(self):
    bigger = _small_config()
    bigger.model.rnn_hidden_size = 16
    target = train.create_train_state(jax.random.key(0), bigger)
    with self.assertRaisesRegex(errors.CheckpointError, 'does not match'):
      checkpoint.restore_state(self.path, target)


class _Marker:
  """Unpickling this creates a file: proof that nothing was unpickled."""

  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return (open, (self.path, 'w'))


class InputFileTest(parameterized.TestCase):
  def _npz(self, **arrays):
    good = dict(
      embeddings=_seq(5, d=3),
      offsets=np.array([0, 2, 5]),
      labels=np.array(list('aabab')),
    )
    good.update(arrays)
    path = os.path.join(self.create_tempdir().full_path, 'x.npz')
    np.savez(path, **{k: v for k, v in good.items() if v is not None})
    return path

  def test_good_file_loads(self):
    dataset = experiment.load_npz(self._npz(), observation_dim=3)
    self.assertLen(dataset.sequences, 2)
    self.assertEqual(dataset.labels[1].tolist(), ['b', 'a', 'b'])

  def test_missing_file(self):
    with self.assertRaisesRegex(errors.InputFileNotFoundError, 'no such'):
      experiment.load_npz('/nonexistent/x.npz')
    with self.assertRaises(FileNotFoundError):
      experiment.load_npz('/nonexistent/x.npz')

  @parameterized.named_parameters(
    ('no_embeddings', dict(embeddings=None), "missing key 'embeddings'"),
    ('no_offsets', dict(offsets=None), "missing key 'offsets'"),
    ('int_embeddings', dict(embeddings=np.ones((5, 3), int)), 'float'),
    ('str_embeddings', dict(embeddings=np.full((5, 3), 'x')), 'float'),
    ('nan', dict(embeddings=np.full((5, 3), np.nan)), r'NaN .*row 0'),
    ('1d_embeddings', dict(embeddings=np.ones(5)), '2-D'),
    ('float_offsets', dict(offsets=np.array([0.0, 2, 5])), 'int'),
    ('offsets_end', dict(offsets=np.array([0, 2, 4])), 'rise from 0 to 5'),
    ('empty_conv', dict(offsets=np.array([0, 2, 2, 5])), 'no empty'),
    ('int_labels', dict(labels=np.arange(5)), 'labels must be strings'),
    ('short_labels', dict(labels=np.array(list('aab'))), 'one entry per row'),
    ('bad_ids', dict(conversation_ids=np.array(['a'])), 'one entry per conv'),
    ('nan_starts', dict(starts=np.full(5, np.nan)), 'starts has NaN'),
    ('wrong_dim', dict(embeddings=_seq(5, d=4)), 'observation_dim=3'),
  )
  def test_bad_npz(self, arrays, message):
    path = self._npz(**arrays)
    with self.assertRaisesRegex(errors.DataFormatError, message):
      experiment.load_npz(path, observation_dim=3)

  def test_not_npz_files(self):
    tmp = self.create_tempdir().full_path
    text = os.path.join(tmp, 'text.npz')
    with open(text, 'w') as f:
      f.write('embeddings,offsets\n1,2\n')
    npy = os.path.join(tmp, 'one.npy')
    np.save(npy, np.ones((3, 3)))
    truncated = os.path.join(tmp, 'cut.npz')
    np.savez(truncated, embeddings=np.ones((50, 3)), offsets=np.array([0, 50]))
    with open(truncated, 'r+b') as f:
      f.truncate(os.path.getsize(truncated) // 2)
    for path in (text, npy, truncated):
      with self.subTest(path=os.path.basename(path)):
        with self.assertRaises(errors.DataFormatError):
          experiment.load_npz(path)

  def test_pickles_are_refused_not_run(self):
    tmp = self.create_tempdir().full_path
    marker = os.path.join(tmp, 'unpickled')
    raw_pickle = os.path.join(tmp, 'raw.npz')
    with open(raw_pickle, 'wb') as f:
      pickle.dump(_Marker(marker), f)
    obj_npz = os.path.join(tmp, 'obj.npz')
    obj = np.empty(1, object)
    obj[0] = _Marker(marker)
    np.savez(obj_npz, embeddings=obj, offsets=np.array([0, 1]))
    for path in (raw_pickle, obj_npz):
      with self.subTest(path=os.path.basename(path)):
        with self.assertRaisesRegex(
          errors.DataFormatError, os.path.basename(path)
        ):
          experiment.load_npz(path)
        self.assertFalse(os.path.exists(marker))

  def test_zip_member_damage(self):
    path = self._npz()
    damaged = path + '.damaged.npz'
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(damaged, 'w') as dst:
      for item in src.infolist():
        payload = src.read(item)
        if item.filename == 'embeddings.npy':
          payload = payload[:20]  # a header cut short
        dst.writestr(item, payload)
    with self.assertRaises(errors.DataFormatError):
      experiment.load_npz(damaged)

  def test_train_and_evaluate_rejects_bad_files_before_writing(self):
    tmp = self.create_tempdir().full_path
    good = self._npz()
    unlabelled = self._npz(labels=None)
    nan = self._npz(embeddings=np.full((5, 3), np.inf))
    for train_path, test_path, error, message in (
      ('/nonexistent.npz', '', errors.InputFileNotFoundError, 'no such'),
      (nan, '', errors.DataFormatError, 'NaN or Inf'),
      (unlabelled, '', errors.DataFormatError, 'no labels'),
      (good, nan, errors.DataFormatError, 'NaN or Inf'),
      ('', good, errors.ConfigError, 'train_path is empty'),
    ):
      with self.subTest(train=train_path, test=test_path):
        config = _small_config()
        config.data.train_path = train_path
        config.data.test_path = test_path
        workdir = os.path.join(tmp, 'run')
        with self.assertRaisesRegex(error, message):
          experiment.train_and_evaluate(config, workdir, progress=False)
        self.assertFalse(os.path.exists(workdir))


if __name__ == '__main__':
  absltest.main()


def _unpickling_risks(source, filename='<src>'):
  """Calls that could unpickle: np.load without allow_pickle=False,
  torch.load without weights_only=True, and any use of pickle-like modules
  except naming ``pickle.UnpicklingError`` (to catch it)."""
  risky_modules = {'pickle', 'cPickle', 'dill', 'cloudpickle', 'joblib'}
  risky_modules |= {'shelve', 'marshal', '_pickle'}
  found = []
  tree = ast.parse(source, filename)
  aliases = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        aliases[alias.asname or alias.name] = alias.name
    elif isinstance(node, ast.ImportFrom):
      module = (node.module or '').split('.')[0]
      for alias in node.names:
        if module in risky_modules and alias.name != 'UnpicklingError':
          found.append(f'{filename}:{node.lineno} from {module} import')
        aliases[alias.asname or alias.name] = f'{node.module}.{alias.name}'

  def keyword(call, name):
    for kw in call.keywords:
      if kw.arg == name and isinstance(kw.value, ast.Constant):
        return kw.value.value
    return None

  for node in ast.walk(tree):
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
      module = aliases.get(node.value.id, node.value.id).split('.')[0]
      if module in risky_modules and node.attr != 'UnpicklingError':
        found.append(f'{filename}:{node.lineno} {module}.{node.attr}')
    if not isinstance(node, ast.Call):
      continue
    func = node.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
      target = f'{aliases.get(func.value.id, func.value.id)}.{func.attr}'
    elif isinstance(func, ast.Name):
      target = aliases.get(func.id, func.id)
    else:
      continue
    if target in ('numpy.load', 'jax.numpy.load'):
      if keyword(node, 'allow_pickle') is not False:
        found.append(f'{filename}:{node.lineno} np.load without allow_pickle')
    elif target == 'torch.load':
      if keyword(node, 'weights_only') is not True:
        found.append(f'{filename}:{node.lineno} torch.load not weights_only')
  return found


class NoUnpicklingTest(absltest.TestCase):
  def test_scanner_finds_risks(self):
    bad = (
      'import numpy as np\nimport pickle\nimport torch\n'
      'np.load(p)\nnp.load(p, allow_pickle=True)\npickle.loads(b)\n'
      'torch.load(p)\nfrom numpy import load\nload(p)\n'
      'from pickle import Unpickler\n'
    )
    self.assertLen(_unpickling_risks(bad), 6)
    good = (
      'import numpy as np\nimport pickle\nimport torch\n'
      'np.load(p, allow_pickle=False)\n'
      'torch.load(p, map_location="cpu", weights_only=True)\n'
      'try:\n  pass\nexcept pickle.UnpicklingError:\n  pass\n'
    )
    self.assertEqual(_unpickling_risks(good), [])

  def test_package_and_scripts_never_unpickle(self):
    paths = [os.path.join(REPO, name) for name in ('train.py', 'infer.py')]
    for package in ('uisrnn_jax', 'benchmarks'):
      for root, _, files in os.walk(os.path.join(REPO, package)):
        paths += [os.path.join(root, f) for f in files if f.endswith('.py')]
    self.assertGreater(len(paths), 10)
    found = []
    for path in paths:
      with open(path, encoding='utf-8') as f:
        found += _unpickling_risks(f.read(), os.path.relpath(path, REPO))
    self.assertEqual(found, [])
