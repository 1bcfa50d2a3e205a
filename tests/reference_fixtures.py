"""Loads the parity fixtures recorded from the reference ``uisrnn`` 0.1.2.

The ``.npz`` files in ``tests/fixtures/`` hold what Google's PyTorch package
computed (see ``tests/fixtures/make_reference_fixtures.py``, which made them);
this module reads them with NumPy and ``uisrnn_jax.model`` only, so parity
tests run without torch. Under pytest (and when a test file is run directly)
``tests/`` is on ``sys.path``:

  >>> import reference_fixtures
  >>> fixture = reference_fixtures.load('trained_d4_h8_l1')
  >>> case = fixture.decode_cases[0]
  >>> case.sequence.shape, case.labels[:4]
  ((12, 4), array([0, 1, 0, 1]))

Three kinds of fixture:

* Models (`names`, `load`): a reference model's weights and inference
  settings, with the labels its ``predict`` returned for several test
  sequences and settings (`DecodeCase`), and the three loss parts its
  training loop computed on fixed batches (`LossCase`).
* Training trajectories (`trajectory_names`, `load_trajectory`): a few
  iterations of ``fit_concatenated`` from stored initial weights, with the
  batch each step sampled, the loss parts, and the weights after each step.
* Estimators (`load_estimators`): ``utils.estimate_transition_bias`` and
  ``contrib.range_search_crp_alpha.estimate_crp_alpha`` on small inputs.

Arrays are read-only and every ``load*`` call is cached, so tests share one
copy; copy an array before changing it.

File layout (keys of each ``.npz``; ``<i>`` counts from 0; every file also
has ``meta/{uisrnn,torch,numpy,python}_version`` strings):

  model_<name>.npz
    observation_dim, hidden_size, depth            int
    sd/<torch key>                                 float32, CoreRNN.state_dict
    init_hidden                                    float32[L, 1, H]
    sigma2                                         float32[D]
    transition_bias, transition_bias_denominator, crp_alpha   float64
    sequence/<j>/observations                      float64[N_j, D]
    sequence/<j>/truth                             int64[N_j] (generator's)
    decode/<i>/{sequence_index, beam_size, look_ahead, test_iteration}  int
    decode/<i>/labels                              int64[N]
    decode/<i>/{cost, margin}                      float64
    loss/<i>/observations                          float32[sum n_k, D]
    loss/<i>/lengths                               int64[B] (the n_k)
    loss/<i>/{sigma_alpha, sigma_beta, regularization_weight}  float64
    loss/<i>/{nll, sigma2_prior, regularization}   float64 (torch float32)
  trajectory_<name>.npz
    observation_dim, hidden_size, depth, batch_size, num_steps   int
    learn_sigma2                                   bool
    learning_rate, grad_max_norm, sigma_alpha, sigma_beta,
    regularization_weight                          float64
    train_sequence, train_cluster_id               float64[N, D], str[N]
    initial/{sd/<torch key>, init_hidden, sigma2}  weights before step 0
    step/<s>/{observations, lengths}               the batch of step s
    step/<s>/{sd/<torch key>, init_hidden, sigma2} weights after step s
    nll, sigma2_prior, regularization, grad_norm   float32[num_steps]
  estimators.npz
    transition/<i>/{name, cluster_ids, lengths, smooth, bias, denominator}
    crp/<i>/{name, cluster_id, search_range, search_step, alpha}
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from uisrnn_jax import model

FIXTURE_DIR = pathlib.Path(__file__).resolve().parent / 'fixtures'

Params = model.Params

_MODEL_PREFIX = 'model_'
_TRAJECTORY_PREFIX = 'trajectory_'
_ESTIMATORS = 'estimators'


@dataclasses.dataclass(frozen=True)
class DecodeCase:
  """One call of the reference's ``predict`` and what it returned.

  Attributes:
    sequence: float64[N, D] the test sequence (the reference casts it to
      float32 before use).
    sequence_index: which of the fixture's ``test_sequences`` it is.
    beam_size: K.
    look_ahead: observations assigned per beam-search step.
    test_iteration: copies of the sequence decoded back to back.
    labels: int64[N] the reference's labels, as returned. For
      ``test_iteration == 1`` they are numbered in order of first appearance;
      for more copies they are the tail of the longer trace and may start
      at any speaker index (see `canonical_labels`).
    cost: the reference's negative log-likelihood of the returned hypothesis
      (its ``neg_likelihood``, accumulated in float32, over all copies).
    margin: smallest score gap at any decision of the search (between the
      last kept and first dropped extension at each step, and between the
      two best at the end); a small margin means a float32 rounding
      difference may legitimately flip the result.
  """

  sequence: np.ndarray
  sequence_index: int
  beam_size: int
  look_ahead: int
  test_iteration: int
  labels: np.ndarray
  cost: float
  margin: float

  @property
  def canonical_labels(self) -> np.ndarray:
    """`labels` renumbered in order of first appearance (int64[N])."""
    return relabel_first_appearance(self.labels)


@dataclasses.dataclass(frozen=True)
class LossCase:
  """The reference's loss parts for one fixed batch of speaker turns.

  Attributes:
    observations: per speaker, float32[n_k, D] observations x_1..x_n in
      order (no exact zeros); the reference packs ``[0, x_1, ..., x_n]``.
    sigma_alpha: inverse-gamma shape of the sigma2 prior.
    sigma_beta: inverse-gamma scale of the sigma2 prior.
    regularization_weight: weight of the summed unsquared L2 norms.
    nll: loss1, the negative log-likelihood part.
    sigma2_prior: loss2, the inverse-gamma prior on sigma2.
    regularization: loss3, the weight regularization.
  """

  observations: list[np.ndarray]
  sigma_alpha: float
  sigma_beta: float
  regularization_weight: float
  nll: float
  sigma2_prior: float
  regularization: float

  @property
  def total(self) -> float:
    """The training objective, ``nll + sigma2_prior + regularization``."""
    return self.nll + self.sigma2_prior + self.regularization

  def padded(self) -> tuple[np.ndarray, np.ndarray]:
    """The batch right-padded with zeros, and its validity mask.

    Returns:
      ``(float32[B, T, D], bool[B, T])`` with T the longest sub-sequence.
    """
    return pad_batch(self.observations)


@dataclasses.dataclass(frozen=True)
class ReferenceFixture:
  """A reference model with its decode and loss cases.

  Attributes:
    name: fixture name (see `names`).
    observation_dim: D.
    hidden_size: H.
    depth: L, GRU layers.
    params: our parameter pytree (``model.params_from_torch``).
    state_dict: the reference's ``CoreRNN.state_dict()`` (float32 arrays).
    transition_bias: p0 of the model.
    transition_bias_denominator: its pooling weight (0.0 when p0 was given).
    crp_alpha: CRP concentration.
    test_sequences: the distinct float64[N, D] test sequences.
    decode_cases: reference ``predict`` calls.
    loss_cases: reference loss evaluations with ``params``.
    versions: package versions the fixture was made with.
  """

  name: str
  observation_dim: int
  hidden_size: int
  depth: int
  params: Params
  state_dict: dict[str, np.ndarray]
  transition_bias: float
  transition_bias_denominator: float
  crp_alpha: float
  test_sequences: list[np.ndarray]
  decode_cases: list[DecodeCase]
  loss_cases: list[LossCase]
  versions: dict[str, str]


@dataclasses.dataclass(frozen=True)
class TrainingStep:
  """One iteration of the reference's training loop.

  Attributes:
    observations: the batch: per sampled speaker sub-sequence, float32[n_k, D]
      (sampled with replacement, so a sub-sequence can appear twice).
    nll: loss1 before the update.
    sigma2_prior: loss2 before the update.
    regularization: loss3 before the update.
    grad_norm: global L2 norm of the RNN and mean-head gradients before
      clipping (``clip_grad_norm_``'s return value).
    params: our parameter pytree after the Adam update and sigma2 clamp.
  """

  observations: list[np.ndarray]
  nll: float
  sigma2_prior: float
  regularization: float
  grad_norm: float
  params: Params

  @property
  def total(self) -> float:
    """The loss that was differentiated at this step."""
    return self.nll + self.sigma2_prior + self.regularization


@dataclasses.dataclass(frozen=True)
class TrajectoryFixture:
  """A short reference training run from known weights on known batches.

  Attributes:
    name: fixture name (see `trajectory_names`).
    observation_dim: D.
    hidden_size: H.
    depth: L (dropout is 0, so the run is deterministic).
    learn_sigma2: whether sigma2 was trained (else frozen).
    learning_rate: Adam learning rate (one for all parameters).
    grad_max_norm: clipping norm of the RNN and mean-head gradients.
    sigma_alpha: inverse-gamma shape.
    sigma_beta: inverse-gamma scale.
    regularization_weight: weight of the L2 norms.
    batch_size: sub-sequences per step.
    initial_params: our parameter pytree before the first step.
    steps: every iteration, in order.
    train_sequence: float64[N, D] the data given to ``fit_concatenated``.
    train_cluster_id: str[N] its ``'<utterance>_<speaker>'`` labels.
  """

  name: str
  observation_dim: int
  hidden_size: int
  depth: int
  learn_sigma2: bool
  learning_rate: float
  grad_max_norm: float
  sigma_alpha: float
  sigma_beta: float
  regularization_weight: float
  batch_size: int
  initial_params: Params
  steps: list[TrainingStep]
  train_sequence: np.ndarray
  train_cluster_id: np.ndarray

  @property
  def final_params(self) -> Params:
    """Weights after the last step."""
    return self.steps[-1].params


@dataclasses.dataclass(frozen=True)
class TransitionBiasCase:
  """One call of ``utils.estimate_transition_bias(cluster_ids, smooth)``.

  Attributes:
    name: what the case exercises, e.g. ``'empty_sequence'``.
    cluster_ids: the list of label sequences (str arrays, maybe empty).
    smooth: the smoothing count.
    bias: returned transition bias.
    denominator: returned ``bias_denominator``.
  """

  name: str
  cluster_ids: list[np.ndarray]
  smooth: float
  bias: float
  denominator: float


@dataclasses.dataclass(frozen=True)
class CrpAlphaCase:
  """One call of ``range_search_crp_alpha.estimate_crp_alpha``.

  Attributes:
    name: what the case exercises.
    cluster_id: str[N] concatenated ``'<sequence>_<int speaker>'`` labels.
    search_range: the ``search_range`` argument.
    search_step: the ``search_step`` argument.
    alpha: the returned alpha.
  """

  name: str
  cluster_id: np.ndarray
  search_range: float
  search_step: float
  alpha: float


@dataclasses.dataclass(frozen=True)
class EstimatorFixtures:
  """All recorded estimator calls.

  Attributes:
    transition_bias_cases: ``estimate_transition_bias`` calls.
    crp_alpha_cases: ``estimate_crp_alpha`` calls.
  """

  transition_bias_cases: list[TransitionBiasCase]
  crp_alpha_cases: list[CrpAlphaCase]


def relabel_first_appearance(labels: Any) -> np.ndarray:
  """Renumbers labels 0, 1, ... in order of first appearance.

  Args:
    labels: int[N] speaker labels.

  Returns:
    int64[N], e.g. ``[2, 2, 0, 2] -> [0, 0, 1, 0]``.
  """
  mapping: dict[int, int] = {}
  return np.array(
    [mapping.setdefault(int(x), len(mapping)) for x in np.asarray(labels)],
    np.int64,
  )


def pad_batch(observations: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """Right-pads sub-sequences with zeros.

  Args:
    observations: per sequence, float[n_k, D].

  Returns:
    ``(float32[B, T, D], bool[B, T])``, T the longest n_k.
  """
  longest = max(len(x) for x in observations)
  dim = observations[0].shape[1]
  padded = np.zeros((len(observations), longest, dim), np.float32)
  mask = np.zeros((len(observations), longest), bool)
  for b, x in enumerate(observations):
    padded[b, : len(x)] = x
    mask[b, : len(x)] = True
  return padded, mask


def _fixture_names(prefix: str) -> list[str]:
  return sorted(
    path.stem[len(prefix) :] for path in FIXTURE_DIR.glob(f'{prefix}*.npz')
  )


def names() -> list[str]:
  """Names of the model fixtures, sorted; pass one to `load`."""
  return _fixture_names(_MODEL_PREFIX)


def trajectory_names() -> list[str]:
  """Names of the training-trajectory fixtures; pass one to `load_trajectory`."""
  return _fixture_names(_TRAJECTORY_PREFIX)


def _read(stem: str) -> dict[str, np.ndarray]:
  """Reads every array of a fixture file (no pickles) as read-only arrays."""
  path = FIXTURE_DIR / f'{stem}.npz'
  if not path.exists():
    raise FileNotFoundError(f'no fixture {path}')
  with np.load(path, allow_pickle=False) as data:
    arrays = {key: data[key] for key in data.files}
  for value in arrays.values():
    value.setflags(write=False)
  return arrays


def _count(arrays: Mapping[str, np.ndarray], group: str) -> int:
  """Number of ``<group>/<i>/...`` entries, checking they are 0..n-1."""
  indices = {
    int(key.split('/')[1]) for key in arrays if key.startswith(group + '/')
  }
  if indices != set(range(len(indices))):
    raise ValueError(f'{group} cases are not numbered 0..n-1: {indices}')
  return len(indices)


def _split(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
  """Cuts a concatenation back into pieces of the given lengths."""
  if int(np.sum(lengths)) != len(flat):
    raise ValueError(f'lengths sum to {np.sum(lengths)}, not {len(flat)}')
  return np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []


def _params(arrays: Mapping[str, np.ndarray], prefix: str = '') -> Params:
  """Our pytree from the ``<prefix>sd/...``, init_hidden and sigma2 keys."""
  state_dict = _state_dict(arrays, prefix)
  return model.params_from_torch(
    state_dict, arrays[prefix + 'init_hidden'], arrays[prefix + 'sigma2']
  )


def _state_dict(
  arrays: Mapping[str, np.ndarray], prefix: str = ''
) -> dict[str, np.ndarray]:
  start = prefix + 'sd/'
  return {k[len(start) :]: v for k, v in arrays.items() if k.startswith(start)}


def _versions(arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
  return {
    k[len('meta/') : -len('_version')]: str(v)
    for k, v in arrays.items()
    if k.startswith('meta/')
  }


@functools.cache
def load(name: str) -> ReferenceFixture:
  """Loads a model fixture.

  Args:
    name: one of `names()`, e.g. ``'trained_d4_h8_l1'``.

  Returns:
    The fixture, with ``params`` in our pytree layout.

  Raises:
    FileNotFoundError: if there is no such fixture.
  """
  a = _read(_MODEL_PREFIX + name)
  test_sequences = [
    a[f'sequence/{j}/observations'] for j in range(_count(a, 'sequence'))
  ]
  decode_cases = []
  for i in range(_count(a, 'decode')):
    p = f'decode/{i}/'
    index = int(a[p + 'sequence_index'])
    decode_cases.append(
      DecodeCase(
        sequence=test_sequences[index],
        sequence_index=index,
        beam_size=int(a[p + 'beam_size']),
        look_ahead=int(a[p + 'look_ahead']),
        test_iteration=int(a[p + 'test_iteration']),
        labels=a[p + 'labels'],
        cost=float(a[p + 'cost']),
        margin=float(a[p + 'margin']),
      )
    )
  loss_cases = []
  for i in range(_count(a, 'loss')):
    p = f'loss/{i}/'
    loss_cases.append(
      LossCase(
        observations=_split(a[p + 'observations'], a[p + 'lengths']),
        sigma_alpha=float(a[p + 'sigma_alpha']),
        sigma_beta=float(a[p + 'sigma_beta']),
        regularization_weight=float(a[p + 'regularization_weight']),
        nll=float(a[p + 'nll']),
        sigma2_prior=float(a[p + 'sigma2_prior']),
        regularization=float(a[p + 'regularization']),
      )
    )
  return ReferenceFixture(
    name=name,
    observation_dim=int(a['observation_dim']),
    hidden_size=int(a['hidden_size']),
    depth=int(a['depth']),
    params=_params(a),
    state_dict=_state_dict(a),
    transition_bias=float(a['transition_bias']),
    transition_bias_denominator=float(a['transition_bias_denominator']),
    crp_alpha=float(a['crp_alpha']),
    test_sequences=test_sequences,
    decode_cases=decode_cases,
    loss_cases=loss_cases,
    versions=_versions(a),
  )


@functools.cache
def load_trajectory(name: str) -> TrajectoryFixture:
  """Loads a training-trajectory fixture.

  Args:
    name: one of `trajectory_names()`.

  Returns:
    The fixture; replaying ``steps[s].observations`` from ``initial_params``
    should give ``steps[s].params`` after each step.

  Raises:
    FileNotFoundError: if there is no such fixture.
  """
  a = _read(_TRAJECTORY_PREFIX + name)
  num_steps = int(a['num_steps'])
  if _count(a, 'step') != num_steps:
    raise ValueError(f'{name}: expected {num_steps} steps')
  steps = [
    TrainingStep(
      observations=_split(a[f'step/{s}/observations'], a[f'step/{s}/lengths']),
      nll=float(a['nll'][s]),
      sigma2_prior=float(a['sigma2_prior'][s]),
      regularization=float(a['regularization'][s]),
      grad_norm=float(a['grad_norm'][s]),
      params=_params(a, f'step/{s}/'),
    )
    for s in range(num_steps)
  ]
  return TrajectoryFixture(
    name=name,
    observation_dim=int(a['observation_dim']),
    hidden_size=int(a['hidden_size']),
    depth=int(a['depth']),
    learn_sigma2=bool(a['learn_sigma2']),
    learning_rate=float(a['learning_rate']),
    grad_max_norm=float(a['grad_max_norm']),
    sigma_alpha=float(a['sigma_alpha']),
    sigma_beta=float(a['sigma_beta']),
    regularization_weight=float(a['regularization_weight']),
    batch_size=int(a['batch_size']),
    initial_params=_params(a, 'initial/'),
    steps=steps,
    train_sequence=a['train_sequence'],
    train_cluster_id=a['train_cluster_id'],
  )


@functools.cache
def load_estimators() -> EstimatorFixtures:
  """Loads the transition-bias and CRP-alpha estimator cases."""
  a = _read(_ESTIMATORS)
  transition = []
  for i in range(_count(a, 'transition')):
    p = f'transition/{i}/'
    transition.append(
      TransitionBiasCase(
        name=str(a[p + 'name']),
        cluster_ids=_split(a[p + 'cluster_ids'], a[p + 'lengths']),
        smooth=float(a[p + 'smooth']),
        bias=float(a[p + 'bias']),
        denominator=float(a[p + 'denominator']),
      )
    )
  crp = []
  for i in range(_count(a, 'crp')):
    p = f'crp/{i}/'
    crp.append(
      CrpAlphaCase(
        name=str(a[p + 'name']),
        cluster_id=a[p + 'cluster_id'],
        search_range=float(a[p + 'search_range']),
        search_step=float(a[p + 'search_step']),
        alpha=float(a[p + 'alpha']),
      )
    )
  return EstimatorFixtures(
    transition_bias_cases=transition, crp_alpha_cases=crp
  )
