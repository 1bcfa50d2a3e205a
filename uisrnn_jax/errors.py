"""The exceptions raised for bad input, one class per kind of problem.

Every error this package raises because of what it was given (arrays,
labels, a config, a checkpoint, an input file) is a `UISRNNJaxError`, which
is a ``ValueError``; the ones about a wrong *type* are also ``TypeError``,
so code written for Google's ``uisrnn`` 0.1.2 (which raises ``TypeError`` and
``ValueError``) keeps catching them. Each is raised before anything is
written, and its message names the problem and the offending argument,
file or config field.

==========================  ===============================================
exception                   raised when
==========================  ===============================================
`InvalidSequenceError`      a sequence is not 2-D, is empty (0 rows), has
                            another observation dimension than the model,
                            or holds NaN or Inf
`SequenceTypeError`         a sequence is not a NumPy array of a floating
                            dtype (int, bool, object, a list, ...)
`InvalidLabelsError`        labels are not 1-D or have another length than
                            their sequence
`LabelsTypeError`           labels are not strings (training needs string
                            labels, as in uisrnn)
`SpeakerOverflowError`      decoding with ``speaker_overflow='error'``
                            needed more than ``max_speakers`` speakers
`ConfigError`               a config has an unknown or missing key, or a
                            value out of range (negative sizes, unknown
                            names such as ``train.loss``)
`ConfigTypeError`           a config value (or a field of the seed's
                            argument namespaces) has the wrong type (also a
                            ``TypeError``)
`CheckpointError`           a checkpoint is missing, truncated, corrupted
                            (checksum mismatch), or does not fit the model
`DataFormatError`           an input file is not the documented ``.npz``
`InputFileNotFoundError`    an input file does not exist (also a
                            ``FileNotFoundError``)
==========================  ===============================================

A sequence of length 1 is valid everywhere: in training it is a speaker
sample of one observation with no transition (p0 is estimated with add-one
smoothing, so even all-length-1 data gives p0 = 1/2), and it decodes to
``[0]``.
"""

from __future__ import annotations


class UISRNNJaxError(ValueError):
  """Base class: the input (data, config, checkpoint, file) is invalid."""


class InvalidSequenceError(UISRNNJaxError):
  """A sequence has the wrong shape, is empty, or is not finite."""


class SequenceTypeError(InvalidSequenceError, TypeError):
  """A sequence is not a float NumPy array (int/object dtype, a list...)."""


class InvalidLabelsError(UISRNNJaxError):
  """Labels are not 1-D or not one per observation."""


class LabelsTypeError(InvalidLabelsError, TypeError):
  """Labels are not strings."""


class SpeakerOverflowError(UISRNNJaxError):
  """A sequence needs more than ``decode.max_speakers`` speakers."""


class ConfigError(UISRNNJaxError):
  """A config key is unknown or missing, or its value is invalid."""


class ConfigTypeError(ConfigError, TypeError):
  """A config value has the wrong type (a string for a number, ...)."""


class CheckpointError(UISRNNJaxError):
  """A checkpoint is missing, truncated, corrupted or does not fit."""


class DataFormatError(UISRNNJaxError):
  """An input file is not in the documented ``.npz`` format."""


class InputFileNotFoundError(DataFormatError, FileNotFoundError):
  """An input file does not exist."""


__all__ = [
  'CheckpointError',
  'ConfigError',
  'ConfigTypeError',
  'DataFormatError',
  'InputFileNotFoundError',
  'InvalidLabelsError',
  'InvalidSequenceError',
  'LabelsTypeError',
  'SequenceTypeError',
  'SpeakerOverflowError',
  'UISRNNJaxError',
]
