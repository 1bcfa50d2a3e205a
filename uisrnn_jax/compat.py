"""Google's ``uisrnn`` 0.1.2 API over the functional core.

Scripts written for the seed run after changing one import::

  import uisrnn_jax as uisrnn

  model_args, training_args, inference_args = uisrnn.parse_arguments()
  model = uisrnn.UISRNN(model_args)
  model.fit(train_sequences, train_cluster_ids, training_args)
  predicted = model.predict(test_sequences, inference_args)
  model.save('model.uisrnn')   # one msgpack file, no pickle
  model.load('saved_by_uisrnn_0.1.2.uisrnn')   # also reads the seed's files

`UISRNN` is the package's only stateful object: it holds a
`uisrnn_jax.train.TrainState` and the config built from the seed's argument
namespaces, and every method delegates to the pure functions
(`train.fit`, `decode.predict_labels`). The seed's quirks it keeps, each
tested in ``tests/compat_test.py``:

* ``test_iteration`` tiling: ``predict`` decodes M back-to-back copies of a
  sequence and returns the labels of the last copy.
* The decode-time mean update of ``_update_beam_state`` (``mean_rule =
  'reference'``), so predictions match the seed's with the same weights.
* ``transition_bias`` pooled across ``fit`` calls, weighted by the
  transition counts (``transition_bias_denominator``).
* A fresh optimizer at every ``fit`` call (the seed builds Adam inside
  ``fit``; the step count, which seeds data sampling and dropout, goes on).
* The unsquared-norm L2 regularisation and the 1e-6 clamp of sigma2 live in
  `uisrnn_jax.losses` and `uisrnn_jax.train`.

Documented differences: predicted labels are renumbered 0, 1, 2, ... in
order of first appearance within the returned copy (the seed returns its
raw speaker indices of the last copy, which for ``test_iteration > 1`` need
not start at 0; the partition is the same); float32 input is accepted as
well as float64; the models are initialised from ``jax.random.key(seed)``
(``model_args.seed``, default 0) rather than torch's global RNG;
``enable_cuda`` is ignored (JAX places arrays); messages go to
``absl.logging``.
"""

from __future__ import annotations

import argparse
import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from uisrnn_jax import (
  checkpoint,
  config_check,
  convert,
  data,
  decode,
  defaults,
  errors,
  train,
)
from uisrnn_jax import model as model_lib
from uisrnn_jax import streaming as streaming_lib

# The seed's verbosity levels and the absl severity each is logged at.
_SEVERITY = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO}

# The seed's argument names (= config fields, checked by config_check).
_MODEL_FIELDS = (
  'observation_dim',
  'rnn_hidden_size',
  'rnn_depth',
  'rnn_dropout',
  'transition_bias',
  'crp_alpha',
  'sigma2',
)
_TRAINING_FIELDS = (
  'optimizer',
  'learning_rate',
  'train_iteration',
  'batch_size',
  'num_permutations',
  'sigma_alpha',
  'sigma_beta',
  'regularization_weight',
  'grad_max_norm',
  'enforce_cluster_id_uniqueness',
)
# Every decode field may come from inference_args: the seed's (beam_size,
# look_ahead, test_iteration) and ours (max_speakers, grown automatically,
# see `predict`; resegment_iterations; ...), each defaulting to the config's.
_INFERENCE_FIELDS = tuple(config_check.SCHEMA['decode'])

_CONCATENATED_WARNING = (
  'transition_bias is estimated from one concatenated training sequence, so '
  'every change between the original sequences counts as a speaker change '
  'and the estimate is biased. Pass a list of sequences to fit(), or '
  'estimate transition_bias before concatenating and give it in model_args.'
)


class Logger:
  """The seed's logger: messages up to ``verbosity`` pass, to absl.logging.

  Levels are the seed's: 0 fatal (raises RuntimeError), 1 errors, 2 warnings
  and important steps, 3 less important steps, 4 and above debugging. A
  message whose level exceeds ``verbosity`` is dropped; the others are
  logged with absl, by default at the severity the seed's label for the
  level names (1 ERROR, 2 WARNING, 3 INFO, 4+ DEBUG), so absl's own
  threshold applies too (outside ``absl.app``, INFO and DEBUG are hidden
  unless ``absl.logging.set_verbosity`` says otherwise). Training progress
  is logged by `uisrnn_jax.train.fit` at INFO.

  Args:
    verbosity: the highest level that is logged.
  """

  def __init__(self, verbosity: int = 3):
    self.verbosity = verbosity

  def print(
    self, level: int, message: str, *, severity: int | None = None
  ) -> None:
    """Logs ``message`` if ``level <= verbosity``.

    Args:
      level: the seed's level of the message.
      message: the text.
      severity: absl severity (e.g. ``logging.INFO``) to log at, overriding
        the level's (the seed logs its "Done training" at level 1).

    Raises:
      RuntimeError: for level 0 (fatal), like the seed.
    """
    if level > self.verbosity:
      return
    if level <= 0:
      raise RuntimeError(message)
    if severity is None:
      severity = _SEVERITY.get(level, logging.DEBUG)
    logging.log(severity, '%s', message)

  def fatal(self, message: str) -> None:
    """Level 0: raises RuntimeError (if verbosity >= 0)."""
    self.print(0, message)

  def error(self, message: str) -> None:
    """Level 1."""
    self.print(1, message)

  def warning(self, message: str) -> None:
    """Level 2."""
    self.print(2, message)

  def info(self, message: str) -> None:
    """Level 3."""
    self.print(3, message)

  def debug(self, message: str) -> None:
    """Level 4."""
    self.print(4, message)


def _read_args(
  args: Any, owner: str, group: str, fields: Sequence[str], defaults: Any
) -> dict[str, Any]:
  """Reads and checks the seed's fields from a namespace-like object.

  A missing attribute takes its default from ``defaults`` (the seed's);
  attributes not listed are ignored, as the seed ignores them. Each value
  is checked as config field ``<group>.<name>`` (`config_check`).
  """
  if args is None:
    raise TypeError(
      f'{owner} must be an argparse.Namespace (or any object with the '
      'attributes), got None'
    )
  return {
    name: config_check.check_field(
      f'{group}.{name}',
      getattr(args, name, defaults[name]),
      where=f'{owner}.{name}',
    )
    for name in fields
  }


def default_config() -> ml_collections.ConfigDict:
  """The default config (`uisrnn_jax.defaults`) without its ``data`` group.

  `UISRNN` gets its data from ``fit`` and ``predict``, not from files.

  Returns:
    A ConfigDict with ``seed`` and the groups ``model``, ``train`` and
    ``decode``.
  """
  config = defaults.get_config()
  del config['data']
  return config


def model_config(model_args: Any) -> ml_collections.ConfigDict:
  """`default_config` with the ``model`` group taken from ``model_args``.

  Args:
    model_args: the seed's model namespace (``parse_arguments()[0]``), or
      any object with its attributes; missing ones take the seed's defaults.
      An optional integer attribute ``seed`` (ours, default 0) seeds the
      initial weights, data sampling and dropout.

  Returns:
    The config; it decodes with the seed's mean update
    (``decode.mean_rule = 'reference'``).

  Raises:
    TypeError: an argument has the wrong type.
    ValueError: an argument is out of range.
  """
  config = default_config()
  config.model.update(
    _read_args(model_args, 'model_args', 'model', _MODEL_FIELDS, config.model)
  )
  config.seed = config_check.check_field(
    'seed', getattr(model_args, 'seed', 0), where='model_args.seed'
  )
  return config


def _verbosity(model_args: Any) -> int:
  value = getattr(model_args, 'verbosity', 3)
  if isinstance(value, (bool, np.bool_)) or not isinstance(
    value, numbers.Integral
  ):
    raise TypeError(f'model_args.verbosity must be an int, got {value!r}')
  return int(value)


class UISRNN:
  """Unbounded Interleaved-State RNN with the seed's object API.

  Attributes:
    observation_dim: D, the dimension of the observations.
    logger: a `Logger` with the seed's verbosity levels.
    config: the ConfigDict the model was built with (``model`` group from
      ``model_args``; ``train`` and ``decode`` are filled per call).
    state: the `uisrnn_jax.train.TrainState` (params, p0, alpha, ...).

  Example (the seed's four-speaker toy, shortened)::

    model = UISRNN(argparse.Namespace(observation_dim=2, rnn_hidden_size=8,
                                      rnn_depth=2, verbosity=1))
    model.fit(train_sequences, train_cluster_ids, training_args)
    labels = model.predict(test_sequence, inference_args)  # [0, 0, 1, ...]
  """

  def __init__(self, args: Any):
    """Builds an untrained model.

    Args:
      args: the seed's ``model_args`` (see `model_config`).

    Raises:
      TypeError, ValueError: a bad argument (see `model_config`).
    """
    self.config = model_config(args)
    self.logger = Logger(_verbosity(args))
    from uisrnn_jax import compilation  # compiled programs reused across runs

    compilation.enable_cache()
    self.observation_dim = int(self.config.model.observation_dim)
    self.state = train.create_train_state(
      jax.random.key(self.config.seed), self.config
    )

  @classmethod
  def from_reference_model(
    cls, reference: checkpoint.TrainedModel, **model_args: Any
  ) -> UISRNN:
    """A model holding a trained model, e.g. a converted uisrnn 0.1.2 one.

    Args:
      reference: a `uisrnn_jax.checkpoint.TrainedModel` (what
        `uisrnn_jax.convert.read_reference_model` returns).
      **model_args: other ``model_args`` fields (e.g. ``verbosity``).

    Returns:
      The model, with the reference's weights, p0, alpha and step.
    """
    args = dict(
      observation_dim=reference.observation_dim,
      rnn_hidden_size=reference.rnn_hidden_size,
      rnn_depth=reference.rnn_depth,
      crp_alpha=reference.crp_alpha,
    )
    args.update(model_args)
    model = cls(argparse.Namespace(**args))
    model._set_loaded(reference)
    return model

  # The seed's attributes. ---------------------------------------------------

  @property
  def params(self) -> model_lib.Params:
    """The parameter pytree (see `uisrnn_jax.model`)."""
    return self.state.params

  @property
  def transition_bias(self) -> float | None:
    """p0; None until estimated by ``fit`` (or given in ``model_args``)."""
    return _nan_to_none(_from_float32(self.state.transition_bias))

  @transition_bias.setter
  def transition_bias(self, value: float | None) -> None:
    value = config_check.check_field(
      'model.transition_bias', value, where='UISRNN.transition_bias'
    )
    self.state = self.state.replace(
      transition_bias=jnp.asarray(
        math.nan if value is None else value, jnp.float32
      )
    )

  @property
  def transition_bias_denominator(self) -> float:
    """Transitions counted for p0 so far: its weight when pooling fits."""
    return _from_float32(self.state.transition_bias_denominator)

  @transition_bias_denominator.setter
  def transition_bias_denominator(self, value: float) -> None:
    value = config_check.nonnegative(
      'UISRNN.transition_bias_denominator', value
    )
    self.state = self.state.replace(
      transition_bias_denominator=jnp.asarray(value, jnp.float32)
    )

  @property
  def crp_alpha(self) -> float:
    """alpha, the CRP concentration used by ``predict``."""
    return _from_float32(self.state.crp_alpha)

  @crp_alpha.setter
  def crp_alpha(self, value: float) -> None:
    value = config_check.check_field(
      'model.crp_alpha', value, where='UISRNN.crp_alpha'
    )
    self.state = self.state.replace(crp_alpha=jnp.asarray(value, jnp.float32))

  @property
  def sigma2(self) -> np.ndarray:
    """float32[D] observation variance (a copy; learned unless given)."""
    return np.array(self.state.params['sigma2'])

  @property
  def estimate_sigma2(self) -> bool:
    """Whether ``fit`` learns sigma2 (``model_args.sigma2`` was None)."""
    return self.config.model.sigma2 is None

  @property
  def estimate_transition_bias(self) -> bool:
    """Whether ``fit`` estimates p0 (``model_args.transition_bias`` None)."""
    return self.config.model.transition_bias is None

  # Training. ----------------------------------------------------------------

  def fit(
    self,
    train_sequences: np.ndarray | list[np.ndarray],
    train_cluster_ids: Any,
    args: Any,
  ) -> None:
    """Trains for ``args.train_iteration`` steps; call again to continue.

    Unless ``model_args.transition_bias`` was given, p0 is estimated from
    these labels and pooled with earlier calls (weighted by transition
    counts); otherwise the model's p0 is left as it is. From one
    concatenated sequence that estimate is biased (every boundary between
    the original sequences looks like a speaker change), and the seed's
    warning is logged at level 2.

    For example, three utterances as a list (recommended)::

      train_sequences = [float[5, D], float[3, D], float[8, D]]
      train_cluster_ids = [['a', 'a', 'b', 'a', 'b'],   # 'a' of utterance 0
                           ['a', 'c', 'c'],             # is not 'a' of 1
                           np.array(['x'] * 4 + ['y'] * 4)]

    or concatenated, with labels that are unique across utterances::

      train_sequences = float[16, D]
      train_cluster_ids = ['0_a', '0_a', '0_b', '0_a', '0_b', '1_a', '1_c',
                           '1_c', '2_x', ..., '2_y']

    Args:
      train_sequences: a list of float[N_i, D] arrays, or one concatenated
        float[N, D] array.
      train_cluster_ids: a matching list of label sequences (each a list or
        1-D array of strings), or one concatenated label sequence. With a
        list, ``args.enforce_cluster_id_uniqueness`` says whether equal
        labels in different sequences are different speakers.
      args: the seed's ``training_args``.

    Raises:
      TypeError: wrong types (sequences not a list or float array, labels
        not strings, bad ``args`` values).
      ValueError: wrong shapes or lengths, or no data. Nothing is changed.
      RuntimeError: the loss became NaN or infinite.
    """
    if isinstance(train_sequences, np.ndarray):
      concatenated = True
      sequences, cluster_ids = [train_sequences], [train_cluster_ids]
    elif isinstance(train_sequences, list):
      concatenated = False
      sequences, cluster_ids = train_sequences, train_cluster_ids
      if not isinstance(cluster_ids, list):
        raise TypeError(
          'train_cluster_ids must be a list of label sequences when '
          f'train_sequences is a list, got {type(cluster_ids).__name__}'
        )
    else:
      raise TypeError(
        'train_sequences must be a list of float arrays or one concatenated '
        f'float array, got {type(train_sequences).__name__}'
      )
    config = self._training_config(args)
    if concatenated and self.estimate_transition_bias:
      self.logger.print(2, _CONCATENATED_WARNING)
    t = config.train
    # Quirk (fresh optimizer per fit): the seed builds Adam inside fit(), so
    # every call starts from new moments, with that call's learning rate.
    tx = train.make_optimizer(
      learning_rate=float(t.learning_rate),
      grad_max_norm=float(t.grad_max_norm),
      learn_sigma2=self.estimate_sigma2,
    )
    state = self.state.replace(tx=tx, opt_state=tx.init(self.state.params))
    # Quirk (pooled transition_bias): train.fit pools the new estimate with
    # the state's, weighted by the denominators. A given p0 is not touched,
    # so a loaded or assigned value stays, as in the seed.
    self.state = train.fit(
      state,
      sequences,
      cluster_ids,
      config,
      num_steps=t.train_iteration,
      update_estimates=self.estimate_transition_bias,
    )
    self.logger.print(
      1,
      f'Done training with {t.train_iteration} iterations',
      severity=logging.INFO,
    )

  def _training_config(self, args: Any) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(self.config.to_dict())
    config.train.update(
      _read_args(args, 'training_args', 'train', _TRAINING_FIELDS, config.train)
    )
    return config

  # Inference. ---------------------------------------------------------------

  def predict(
    self, test_sequences: np.ndarray | list[np.ndarray], args: Any
  ) -> list[int] | list[list[int]]:
    """Labels one test sequence, or each of a list of them.

    The seed's quirk ``test_iteration``: each sequence is decoded as M
    back-to-back copies and the labels of the last copy are returned. Our
    labels are renumbered 0, 1, 2, ... in order of first appearance in that
    copy; the seed returns its raw speaker indices there (the same
    partition; identical when ``test_iteration == 1``). All sequences of a
    list are decoded together in batches (`decode.predict_labels`).

    Speaker slots: ``args.max_speakers`` (ours; default 16) per hypothesis;
    a sequence needing more is decoded again with twice as many, up to its
    length times ``test_iteration``, so the number of speakers is unbounded
    as in the seed. Every ``decode`` config field may be given in ``args``,
    among them pyannote's speaker count (`decode.speaker_count_config`):
    ``num_speakers`` (exactly that many), ``min_speakers``, and a maximum
    as ``max_speakers`` with ``speaker_overflow='disallow'``.

    For example, one utterance of five observations::

      model.predict(float[5, D], inference_args)  ->  [0, 0, 1, 0, 2]
      model.predict([float[5, D], float[3, D]], inference_args)
          ->  [[0, 0, 1, 0, 2], [0, 1, 1]]

    Args:
      test_sequences: one float[N, D] array, or a list of them.
      args: the seed's ``inference_args`` (``beam_size``, ``look_ahead``,
        ``test_iteration``).

    Returns:
      For one array, a list of N ints; for a list, a list of such lists.

    Raises:
      TypeError: not an array or list, a non-float array, or bad ``args``.
      ValueError: a sequence that is not 2-D, empty, not finite, or of
        another dimension than ``observation_dim``. Raised before decoding.
      RuntimeError: the model has no transition_bias yet (not trained).
    """
    if isinstance(test_sequences, np.ndarray):
      single, sequences = True, [test_sequences]  # the seed's predict_single
    elif isinstance(test_sequences, list):
      single, sequences = False, test_sequences
    else:
      raise TypeError(
        'test_sequences must be a float numpy array or a list of them, got '
        f'{type(test_sequences).__name__}'
      )
    for i, sequence in enumerate(sequences):
      data.check_sequence(
        sequence,
        observation_dim=self.observation_dim,
        name='test_sequence' if single else f'test_sequences[{i}]',
      )
    decode_config = self._decode_config(args)
    if self.transition_bias is None:
      raise RuntimeError(
        'transition_bias is unknown: call fit() first, load() a model, or '
        'give model_args.transition_bias'
      )
    labels = self._decode(sequences, decode_config)
    result = [[int(x) for x in row] for row in labels]
    return result[0] if single else result

  def online_predict(self, args: Any) -> OnlinePredictor:
    """Starts streaming prediction: push chunks, read the labels so far.

    The seed's open request (google/uis-rnn issue #28). Observations of one
    sequence arrive in chunks; after each chunk the returned labels are the
    best labelling of everything pushed so far, and after the last chunk
    they equal ``predict(whole_sequence, args)`` with ``test_iteration=1``
    (a stream cannot be decoded as back-to-back copies, so
    ``args.test_iteration`` is not used). Decoding is
    `uisrnn_jax.streaming`; earlier labels may still change as later
    observations arrive, exactly as the offline beam search would revise
    them::

      stream = model.online_predict(inference_args)
      stream.push(float[3, D])  ->  [0, 0, 1]
      stream.push(float[2, D])  ->  [0, 0, 1, 1, 0]
      stream.reset()            # the next sequence

    The predictor holds this model's current weights, ``transition_bias``
    and ``crp_alpha``; a later ``fit`` or ``load`` does not change it.

    Args:
      args: the seed's ``inference_args`` (``beam_size``, ``look_ahead``;
        ours: ``max_speakers``, the initial speaker slots, grown as in
        `predict`).

    Returns:
      An `OnlinePredictor` with nothing observed.

    Raises:
      TypeError: bad ``args``.
      ValueError: ``args.resegment_iterations`` > 0 (resegmentation needs
        the whole sequence).
      RuntimeError: the model has no transition_bias yet (not trained).
    """
    config = self._decode_config(args)
    if config.resegment_iterations:
      raise ValueError(
        'online_predict cannot resegment: resegmentation needs the whole '
        'sequence; set inference_args.resegment_iterations=0, got '
        f'{config.resegment_iterations}'
      )
    if self.transition_bias is None:
      raise RuntimeError(
        'transition_bias is unknown: call fit() first, load() a model, or '
        'give model_args.transition_bias'
      )
    config.test_iteration = 1
    return OnlinePredictor(
      self.params,
      transition_bias=self.transition_bias,
      crp_alpha=self.crp_alpha,
      config=config,
      logger=self.logger,
    )

  def _decode_config(self, args: Any) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(self.config.decode.to_dict())
    config.update(
      _read_args(args, 'inference_args', 'decode', _INFERENCE_FIELDS, config)
    )
    return config

  def _decode(
    self, sequences: Sequence[np.ndarray], config: ml_collections.ConfigDict
  ) -> list[np.ndarray]:
    if not sequences:
      return []
    # A hypothesis has at most one speaker per observation, so this many
    # slots can never overflow.
    bound = max(len(s) for s in sequences) * config.test_iteration
    while True:
      try:
        # Quirk (test_iteration tiling) and the seed's decode-time mean
        # update (decode.mean_rule = 'reference') are done by the decoder.
        return decode.predict_labels(
          self.params,
          sequences,
          transition_bias=self.transition_bias,
          crp_alpha=self.crp_alpha,
          config=config,
        )
      except errors.SpeakerOverflowError:
        # Only the speaker-slot overflow is retried, with twice the slots.
        if config.max_speakers >= bound:
          raise
        config.max_speakers = min(2 * config.max_speakers, bound)
        self.logger.print(
          4, f'decoding again with max_speakers={config.max_speakers}'
        )

  # Files. -------------------------------------------------------------------

  def save(self, filepath: str | os.PathLike[str]) -> None:
    """Writes the model to one msgpack file (no pickle), atomically.

    The file (`uisrnn_jax.checkpoint.write_model`) holds the parameters,
    ``transition_bias``, its denominator, ``crp_alpha``, the step count and
    the model's shape; `load` reads it.

    Args:
      filepath: where to write; parent directories are created.

    Raises:
      uisrnn_jax.errors.OutputWriteError: (an OSError) the file cannot be
        written, e.g. the disk is full; an existing file is left as it was.
    """
    checkpoint.write_model(
      filepath, checkpoint.TrainedModel.from_state(self.state)
    )

  def load(self, filepath: str | os.PathLike[str]) -> None:
    """Loads weights, ``transition_bias`` (and denominator) and ``crp_alpha``.

    Reads three formats: our own (`save`), a training checkpoint of
    ``train.py`` (``ckpt_<step>.msgpack``), and a file written by uisrnn
    0.1.2's ``save()``, a torch file. The last needs torch (``pip install
    'uisrnn-jax[torch]'``) and is loaded with ``weights_only=True`` and only
    the NumPy types it needs allowed (`uisrnn_jax.convert`), so it cannot
    run code; ``python -m uisrnn_jax.convert`` turns it into our format
    once. ``model_args.sigma2`` and ``transition_bias`` still decide what a
    later ``fit`` learns.

    Args:
      filepath: the file.

    Raises:
      FileNotFoundError: no such file.
      ImportError: a torch file, and torch is missing (names the extra).
      uisrnn_jax.checkpoint.CheckpointError: unreadable, not a model file,
        or a model of another shape than this one's ``model_args``.
    """
    path = os.fspath(filepath)
    with open(path, 'rb') as f:
      header = f.read(8)
    if header.startswith(b'PK'):  # a zip file: torch's format
      loaded = _read_reference(path)
    else:
      loaded = checkpoint.read_model(path)
      if loaded is None and convert.is_torch_file(header):
        loaded = _read_reference(path)
      elif loaded is None:
        raise checkpoint.CheckpointError(
          f'{path} is not a uisrnn_jax model file, a train.py checkpoint or '
          'a uisrnn 0.1.2 model file'
        )
    self._check_shape(path, loaded.params)
    self._set_loaded(loaded)
    self.logger.print(
      3,
      f'Loaded model from {path}: transition_bias={self.transition_bias}, '
      f'crp_alpha={self.crp_alpha}, sigma2={self.sigma2}',
    )

  def _check_shape(self, path: str, params: model_lib.Params) -> None:
    expected = jax.tree.map(np.shape, self.state.params)
    got = jax.tree.map(np.shape, params)
    if jax.tree.structure(expected) != jax.tree.structure(got) or any(
      a != b for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got))
    ):
      found = (
        f'observation_dim={params["sigma2"].shape[-1]}, rnn_hidden_size='
        f'{params["init_hidden"].shape[-1]}, rnn_depth={len(params["rnn"])}'
      )
      m = self.config.model
      raise checkpoint.CheckpointError(
        f'{path} holds a model with {found}, but this UISRNN was built with '
        f'observation_dim={m.observation_dim}, rnn_hidden_size='
        f'{m.rnn_hidden_size}, rnn_depth={m.rnn_depth}; construct it with '
        'matching model_args'
      )

  def _set_loaded(self, loaded: checkpoint.TrainedModel) -> None:
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), loaded.params)
    p0 = loaded.transition_bias
    self.state = self.state.replace(
      step=jnp.asarray(loaded.step, jnp.int32),
      params=params,
      opt_state=self.state.tx.init(params),
      transition_bias=jnp.asarray(math.nan if p0 is None else p0, jnp.float32),
      transition_bias_denominator=jnp.asarray(
        loaded.transition_bias_denominator, jnp.float32
      ),
      crp_alpha=jnp.asarray(loaded.crp_alpha, jnp.float32),
    )


def _read_reference(path: str) -> checkpoint.TrainedModel:
  """A uisrnn 0.1.2 model file, its problems as `CheckpointError`."""
  try:
    return convert.read_reference_model(path)
  except convert.ReferenceFileError as e:
    raise checkpoint.CheckpointError(str(e)) from e


def _nan_to_none(value: float) -> float | None:
  return None if math.isnan(value) else value


def _from_float32(value: Any) -> float:
  """A stored float32 scalar as the shortest Python float that rounds to it.

  So a ``crp_alpha`` given as 0.8 reads back as 0.8, not 0.800000011920929.
  """
  return float(str(np.float32(value)))


def parallel_predict(
  model: UISRNN,
  test_sequences: list[np.ndarray],
  args: Any,
  num_processes: int = 4,
) -> list[list[int]]:
  """The seed's multiprocess prediction, served by batched decoding.

  ``model.predict`` already decodes a list of sequences together in padded
  batches on one device, so no processes are started; ``num_processes`` is
  accepted (and checked) for compatibility only.

  Args:
    model: a `UISRNN`.
    test_sequences: a list of float[N_i, D] arrays.
    args: the seed's ``inference_args``.
    num_processes: ignored (must be a positive int).

  Returns:
    One list of int labels per sequence.

  Raises:
    TypeError: ``test_sequences`` is not a list (as in the seed), or see
      `UISRNN.predict`.
  """
  if not isinstance(test_sequences, list):
    raise TypeError(
      f'test_sequences must be a list, got {type(test_sequences).__name__}'
    )
  config_check.integer(1)('parallel_predict.num_processes', num_processes)
  return model.predict(test_sequences, args)


def result_filename(model_args: Any) -> str:
  """The seed's result file name, ``layer_<H>_<L>_<dropout>_result.txt``."""
  return (
    f'layer_{model_args.rnn_hidden_size}_{model_args.rnn_depth}_'
    f'{model_args.rnn_dropout:.1f}_result.txt'
  )


def output_result(
  model_args: Any,
  training_args: Any,
  test_record: Sequence[tuple[float, int]],
  *,
  append_to: str | os.PathLike[str] | None = None,
) -> str:
  """Summarises an experiment as the seed's text block.

  The seed also appends the text to ``layer_<H>_<L>_<dropout>_result.txt``
  in the working directory; here that is opt-in:
  ``output_result(..., append_to=result_filename(model_args))``.

  >>> import argparse
  >>> print(output_result(
  ...     argparse.Namespace(crp_alpha=1.0),
  ...     argparse.Namespace(sigma_alpha=1.0, sigma_beta=1.0,
  ...                        learning_rate=0.01, regularization_weight=1e-5,
  ...                        batch_size=10),
  ...     [(1.0, 30), (0.5, 20)]).splitlines()[9])
    averaged accuracy: 0.750000

  Args:
    model_args: needs ``crp_alpha``.
    training_args: needs ``sigma_alpha``, ``sigma_beta``, ``learning_rate``,
      ``regularization_weight`` and ``batch_size``.
    test_record: ``(accuracy, length)`` per test sequence.
    append_to: a file to append the text to (created if missing).

  Returns:
    The summary text.

  Raises:
    ValueError: ``test_record`` is empty.
    TypeError: an entry is not an ``(accuracy, length)`` pair.
  """
  records = list(test_record)
  if not records:
    raise ValueError('test_record is empty: no accuracy to summarise')
  for record in records:
    if not isinstance(record, (tuple, list)) or len(record) != 2:
      raise TypeError(
        f'test_record entries must be (accuracy, length) pairs, got {record!r}'
      )
  accuracies = [float(accuracy) for accuracy, _ in records]
  lines = [
    'Config:',
    f'  sigma_alpha: {training_args.sigma_alpha}',
    f'  sigma_beta: {training_args.sigma_beta}',
    f'  crp_alpha: {model_args.crp_alpha}',
    f'  learning rate: {training_args.learning_rate}',
    f'  regularization: {training_args.regularization_weight}',
    f'  batch size: {training_args.batch_size}',
    '',
    'Performance:',
    f'  averaged accuracy: {np.mean(accuracies):.6f}',
    '  accuracy numbers for all testing sequences:',
    *(f'    {accuracy:.6f}' for accuracy in accuracies),
    '=' * 80,
  ]
  text = '\n'.join(lines) + '\n'
  if append_to is not None:
    with open(append_to, 'a', encoding='utf-8') as f:
      f.write(text)
  return text


class OnlinePredictor:
  """Streaming labels of one sequence at a time; see `UISRNN.online_predict`.

  A thin host wrapper over `uisrnn_jax.streaming`: it validates chunks as
  `UISRNN.predict` validates sequences, keeps the observations pushed so far,
  and, when a hypothesis needs more speaker slots than ``max_speakers``,
  decodes them again with twice the slots (as `UISRNN.predict` does), so
  the labels are those of unbounded decoding.

  Attributes:
    observation_dim: D.
    labels: the current labels of every observation pushed since the start
      or the last `reset` (a new list; 0, 1, ... by first appearance).
    num_observations: how many observations that is.
  """

  def __init__(
    self,
    params: model_lib.Params,
    *,
    transition_bias: float,
    crp_alpha: float,
    config: ml_collections.ConfigDict,
    logger: Logger,
  ):
    """Use `UISRNN.online_predict` instead."""
    self._params = params
    self._priors = dict(transition_bias=transition_bias, crp_alpha=crp_alpha)
    self._config = ml_collections.ConfigDict(config.to_dict())
    self._logger = logger
    self.observation_dim = int(params['sigma2'].shape[-1])
    self.reset()

  def reset(self) -> None:
    """Forgets the sequence so far; the next push starts a new one."""
    self._chunks: list[np.ndarray] = []
    self._labels: list[int] = []
    self._state = streaming_lib.init(
      self._params, **self._priors, config=self._config
    )

  @property
  def labels(self) -> list[int]:
    return list(self._labels)

  @property
  def num_observations(self) -> int:
    return len(self._labels)

  def push(self, chunk: np.ndarray) -> list[int]:
    """Adds observations to the current sequence.

    Args:
      chunk: float[C, D] new observations (C may be 0), or one float[D]
        observation.

    Returns:
      The labels of all observations so far (see `labels`).

    Raises:
      TypeError: ``chunk`` is not a float numpy array.
      ValueError: wrong shape or dimension, or NaN/Inf values. Nothing is
        changed.
    """
    if isinstance(chunk, np.ndarray) and chunk.ndim == 1:
      chunk = chunk[None]
    if (
      isinstance(chunk, np.ndarray)
      and chunk.shape == (0, self.observation_dim)
      and np.issubdtype(chunk.dtype, np.floating)
    ):
      return self.labels
    chunk = data.check_sequence(
      chunk, observation_dim=self.observation_dim, name='chunk'
    )
    chunk = chunk.astype(np.float32)
    try:
      self._state, labels = streaming_lib.push(self._params, self._state, chunk)
    except errors.SpeakerOverflowError:
      # A speaker-slot overflow: replay the whole sequence with more slots.
      # At most one speaker per observation, so the total length of slots
      # never overflows.
      total = self.num_observations + len(chunk)
      if self._config.max_speakers >= total:
        raise
      labels = self._replay(chunk, total)
    self._chunks.append(chunk)
    self._labels = [int(x) for x in labels]
    return self.labels

  def _replay(self, chunk: np.ndarray, total: int) -> np.ndarray:
    sequence = np.concatenate([*self._chunks, chunk], axis=0)
    while True:
      self._config.max_speakers = min(2 * self._config.max_speakers, total)
      self._logger.print(
        4, f'decoding again with max_speakers={self._config.max_speakers}'
      )
      state = streaming_lib.init(
        self._params, **self._priors, config=self._config
      )
      try:
        self._state, labels = streaming_lib.push(self._params, state, sequence)
        return labels
      except errors.SpeakerOverflowError:
        if self._config.max_speakers >= total:
          raise
