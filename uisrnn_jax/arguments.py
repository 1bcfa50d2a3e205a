"""The seed's command-line arguments: three argparse namespaces.

Same flags, short forms, defaults and choices as ``uisrnn/arguments.py`` of
uisrnn 0.1.2, so scripts written against ``uisrnn.parse_arguments()`` run
unchanged:

  >>> model_args, training_args, inference_args = parse_arguments(
  ...     ['-l', '0.01', '--rnn_depth', '2'])
  >>> training_args.learning_rate, model_args.rnn_depth
  (0.01, 2)

The namespaces map one to one onto the config groups of
`uisrnn_jax.defaults` (``model``, ``train``, ``decode``), and each flag takes
its default from there (``verbosity`` and ``enable_cuda`` have no config
field); see `uisrnn_jax.compat`. This module is the only place where the
seed's argparse flags are defined; our own scripts use ml_collections
configs instead.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from uisrnn_jax import defaults


def str2bool(value: str) -> bool:
  """Parses a boolean flag value such as ``true``, ``no`` or ``1``.

  >>> str2bool('Yes'), str2bool('0')
  (True, False)

  Args:
    value: the command-line string.

  Returns:
    The boolean.

  Raises:
    argparse.ArgumentTypeError: the string is not a recognised boolean.
  """
  lowered = value.lower()
  if lowered in ('yes', 'true', 't', 'y', '1'):
    return True
  if lowered in ('no', 'false', 'f', 'n', '0'):
    return False
  raise argparse.ArgumentTypeError(
    f'expected a boolean (true/false, yes/no, 1/0), got {value!r}'
  )


def model_parser() -> argparse.ArgumentParser:
  """Flags of ``model_args`` (the config's ``model`` group)."""
  model = defaults.get_config().model
  parser = argparse.ArgumentParser(
    description='Model configurations.', add_help=False
  )
  parser.add_argument(
    '--observation_dim',
    default=model.observation_dim,
    type=int,
    help='Dimension D of the observations (e.g. d-vector embeddings).',
  )
  parser.add_argument(
    '--rnn_hidden_size',
    default=model.rnn_hidden_size,
    type=int,
    help='Units in each GRU layer.',
  )
  parser.add_argument(
    '--rnn_depth',
    default=model.rnn_depth,
    type=int,
    help='Number of stacked GRU layers.',
  )
  parser.add_argument(
    '--rnn_dropout',
    default=model.rnn_dropout,
    type=float,
    help='Dropout between stacked GRU layers while training (depth >= 2).',
  )
  parser.add_argument(
    '--transition_bias',
    default=model.transition_bias,
    type=float,
    help='p0, the probability of a speaker change (Eq. 6 of the paper). '
    'Fixed when given; otherwise estimated from the training labels '
    '(Eq. 13) and pooled over successive fit() calls.',
  )
  parser.add_argument(
    '--crp_alpha',
    default=model.crp_alpha,
    type=float,
    help='alpha, the concentration of the Chinese restaurant process over '
    'speakers (Eq. 7 of the paper). Used as given; see '
    'uisrnn_jax.contrib.range_search_crp_alpha to estimate it.',
  )
  parser.add_argument(
    '--sigma2',
    default=model.sigma2,
    type=float,
    help='sigma^2, the observation variance (Eq. 11 of the paper). Fixed '
    'when given; otherwise learned, per dimension, starting at 0.1.',
  )
  parser.add_argument(
    '--verbosity',
    default=3,
    type=int,
    help='How much the model logs: 0 fatal only, 1 errors, 2 important '
    'steps and warnings, 3 less important steps, 4 or more debugging.',
  )
  parser.add_argument(
    '--enable_cuda',
    default=True,
    type=str2bool,
    help='Accepted for compatibility and ignored: device placement follows '
    'JAX (set JAX_PLATFORMS, e.g. JAX_PLATFORMS=cpu).',
  )
  return parser


def training_parser() -> argparse.ArgumentParser:
  """Flags of ``training_args`` (the config's ``train`` group)."""
  train = defaults.get_config().train
  parser = argparse.ArgumentParser(
    description='Training configurations.', add_help=False
  )
  parser.add_argument(
    '--optimizer',
    '-o',
    default=train.optimizer,
    choices=['adam'],
    help='Optimizer (only Adam is supported).',
  )
  parser.add_argument(
    '--learning_rate',
    '-l',
    default=train.learning_rate,
    type=float,
    help='Learning rate of the optimizer.',
  )
  parser.add_argument(
    '--train_iteration',
    '-t',
    default=train.train_iteration,
    type=int,
    help='Training steps per fit() call.',
  )
  parser.add_argument(
    '--batch_size',
    '-b',
    default=train.batch_size,
    type=int,
    help='Speaker sub-sequences per training step.',
  )
  parser.add_argument(
    '--num_permutations',
    default=train.num_permutations,
    type=int,
    help='Copies of each speaker sub-sequence with shuffled turns (data '
    'augmentation).',
  )
  parser.add_argument(
    '--sigma_alpha',
    default=train.sigma_alpha,
    type=float,
    help='Shape of the inverse-gamma prior on sigma2 (only when sigma2 is '
    'learned).',
  )
  parser.add_argument(
    '--sigma_beta',
    default=train.sigma_beta,
    type=float,
    help='Scale of the inverse-gamma prior on sigma2 (only when sigma2 is '
    'learned).',
  )
  parser.add_argument(
    '--regularization_weight',
    '-r',
    default=train.regularization_weight,
    type=float,
    help='Weight of the L2 regularization of the network weights.',
  )
  parser.add_argument(
    '--grad_max_norm',
    default=train.grad_max_norm,
    type=float,
    help='Global-norm clipping threshold of the network gradients.',
  )
  parser.add_argument(
    '--enforce_cluster_id_uniqueness',
    default=train.enforce_cluster_id_uniqueness,
    type=str2bool,
    help='Treat equal labels in different training sequences as different '
    "speakers (e.g. 'a' in [a, b] and in [a, c]). Only used when fit() "
    'gets a list of sequences.',
  )
  return parser


def inference_parser() -> argparse.ArgumentParser:
  """Flags of ``inference_args`` (the config's ``decode`` group)."""
  decode = defaults.get_config().decode
  parser = argparse.ArgumentParser(
    description='Inference configurations.', add_help=False
  )
  parser.add_argument(
    '--beam_size',
    '-s',
    default=decode.beam_size,
    type=int,
    help='Hypotheses kept by the beam search.',
  )
  parser.add_argument(
    '--look_ahead',
    default=decode.look_ahead,
    type=int,
    help='Observations assigned jointly at each beam-search step.',
  )
  parser.add_argument(
    '--test_iteration',
    default=decode.test_iteration,
    type=int,
    help='Decode M back-to-back copies of each test sequence and return the '
    'labels of the last copy.',
  )
  return parser


def parse_arguments(
  argv: Sequence[str] | None = None,
) -> tuple[argparse.Namespace, argparse.Namespace, argparse.Namespace]:
  """Parses the seed's flags into ``(model_args, training_args, inference_args)``.

  All three groups share one command line. An unknown flag, or ``--help``,
  is handled by a parser that knows every flag (argparse prints usage and
  exits), as in the seed.

  Args:
    argv: the arguments without the program name; None reads ``sys.argv``
      (the seed's only mode).

  Returns:
    Three ``argparse.Namespace`` objects, each holding its group's flags.
  """
  groups = (model_parser(), training_parser(), inference_parser())
  argparse.ArgumentParser(parents=list(groups)).parse_args(argv)
  model_args, training_args, inference_args = (
    parser.parse_known_args(argv)[0] for parser in groups
  )
  return model_args, training_args, inference_args
