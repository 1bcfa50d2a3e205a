"""Estimators of UIS-RNN's speaker-turn hyperparameters from training labels.

Host-side NumPy only. Every estimator takes ``cluster_ids``: a list of label
sequences, one per utterance, each a list or 1-D array of hashable labels
(strings as in the reference's ``train_cluster_ids``, ints, ...). Labels only
matter up to equality (Python's ``==``, as in the reference) within one
sequence; no transition is counted across a sequence boundary.

Terminology used throughout (for one sequence):

* a *turn* (the paper's block) is a maximal run of equal labels;
* a *change* is the start of every turn but the first (#changes = #turns - 1);
* a *join* is a change to a speaker with no earlier turn in that sequence, so
  a sequence with K speakers has K - 1 joins. The first speaker of a sequence
  is neither a change nor a join.

For example, ``['a', 'a', 'b', 'a', 'c']`` has 4 transitions (pairs of
neighbours), turns ``a b a c``, 3 changes and 2 joins (``b``, ``c``).

Functions:
  estimate_transition_bias: p0 of the paper's Eq. 13, smoothed.
  combine_transition_bias: pools estimates of successive ``fit`` calls.
  crp_log_likelihood: log P(turn sequence | alpha) under the speaker CRP.
  estimate_crp_alpha_range_search: grid-search maximum of that likelihood.
  estimate_crp_alpha: the same, with the input format of the reference's
    ``uisrnn.contrib.range_search_crp_alpha.estimate_crp_alpha``.
  estimate_crp_alpha_closed_form: Fini & Brutti (2019)'s estimate.
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Sequence

import numpy as np

LabelSequences = Sequence[Sequence[Hashable] | np.ndarray]


def _describe(value: object) -> str:
  return type(value).__name__


def _label_items(
  seq: object, where: str, name: str
) -> np.ndarray | Sequence[object]:
  """Checks one label sequence's structure; returns a typed array or items.

  Returns:
    A 1-D array of a non-object dtype as it is, otherwise the labels as a
    list or tuple.

  Raises:
    TypeError: a single string or bytes label (a flat sequence passed where
      a list of sequences belongs), an array that is not 1-D, or neither a
      list, tuple nor array.
  """
  if isinstance(seq, (str, bytes)):
    raise TypeError(
      f'{where} is a single label {seq!r}; {name} must be a list of label '
      'sequences (each a list or 1-D array of labels). To pass one sequence, '
      f'wrap it: [{name}].'
    )
  if isinstance(seq, np.ndarray):
    if seq.ndim != 1:
      raise TypeError(
        f'{where} must be a 1-D array of labels, got shape {seq.shape}'
      )
    return seq.tolist() if seq.dtype.kind == 'O' else seq
  if isinstance(seq, (list, tuple)):
    return seq
  raise TypeError(
    f'{where} must be a list or 1-D numpy array of labels, got {_describe(seq)}'
  )


def _as_label_strings(seq: object, index: int, name: str) -> np.ndarray:
  """Validates one sequence of string labels; returns a 1-D str array."""
  where = f'{name}[{index}]'
  items = _label_items(seq, where, name)
  if isinstance(items, np.ndarray):
    if items.size and items.dtype.kind != 'U':
      raise TypeError(
        f'{where} must hold string labels, got an array of dtype {items.dtype}'
      )
    return items.astype(str)
  for item in items:
    if not isinstance(item, str):
      raise TypeError(
        f'{where} must hold string labels, got {item!r} of type '
        f'{_describe(item)}'
      )
  return np.asarray(items, dtype=str) if items else np.zeros(0, dtype=str)


def _label_codes(seq: object, index: int, name: str) -> np.ndarray:
  """Validates one label sequence and returns int64[N] codes of its labels.

  Equal labels (by ``==`` and hash, so ``1`` and ``1.0`` are one label) get
  equal codes and different labels different codes; the code values
  themselves mean nothing.
  """
  where = f'{name}[{index}]'
  items = _label_items(seq, where, name)
  if isinstance(items, np.ndarray):
    return np.unique(items, return_inverse=True)[1].reshape(-1).astype(np.int64)
  codes: dict[Hashable, int] = {}
  try:
    return np.fromiter(
      (codes.setdefault(x, len(codes)) for x in items),
      dtype=np.int64,
      count=len(items),
    )
  except TypeError:
    bad = next(x for x in items if not isinstance(x, Hashable))
    raise TypeError(
      f'{where} holds {bad!r} of type {_describe(bad)}; labels must be '
      'hashable (strings, ints, ...)'
    ) from None


def _as_label_sequences(
  cluster_ids: LabelSequences, name: str = 'cluster_ids'
) -> list[np.ndarray]:
  """Validates ``cluster_ids`` and returns int64 label codes per sequence.

  Raises:
    TypeError: if ``cluster_ids`` is not a list/tuple/array of label sequences,
      or a label is not hashable.
  """
  if isinstance(cluster_ids, np.ndarray):
    if cluster_ids.ndim == 1 and cluster_ids.dtype.kind in 'US':
      raise TypeError(
        f'{name} is a flat array of labels; it must be a list of label '
        f'sequences, one per utterance. To pass one sequence, wrap it: '
        f'[{name}].'
      )
    if cluster_ids.ndim == 0:
      raise TypeError(
        f'{name} must be a list of label sequences, got a 0-d array'
      )
    sequences = list(cluster_ids)
  elif isinstance(cluster_ids, (list, tuple)):
    sequences = cluster_ids
  else:
    raise TypeError(
      f'{name} must be a list of label sequences (each a list or 1-D array '
      f'of labels), got {_describe(cluster_ids)}'
    )
  return [_label_codes(s, i, name) for i, s in enumerate(sequences)]


def _check_real(value: object, name: str) -> float:
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise TypeError(f'{name} must be a real number, got {_describe(value)}')
  value = float(value)
  if not np.isfinite(value):
    raise ValueError(f'{name} must be finite, got {value}')
  return value


def _turn_occurrences(labels: np.ndarray) -> np.ndarray:
  """Per turn, how many earlier turns of the same speaker the sequence has.

  Args:
    labels: int64[N] label codes of one sequence (`_label_codes`).

  Returns:
    int64[num_turns]; zero marks the first turn of a speaker (the first turn
    of the sequence or a join), n > 0 a return to a speaker with n turns.
  """
  if labels.size == 0:
    return np.zeros(0, dtype=np.int64)
  starts = np.ones(labels.size, dtype=bool)
  starts[1:] = labels[1:] != labels[:-1]
  _, codes = np.unique(labels[starts], return_inverse=True)
  codes = codes.reshape(-1)
  # Rank of each turn within its speaker's turns: sort stably by speaker, then
  # subtract the position at which the speaker's group begins.
  order = np.argsort(codes, kind='stable')
  sorted_codes = codes[order]
  positions = np.arange(codes.size)
  group_begins = np.ones(codes.size, dtype=bool)
  group_begins[1:] = sorted_codes[1:] != sorted_codes[:-1]
  first = np.maximum.accumulate(np.where(group_begins, positions, 0))
  occurrences = np.empty_like(positions)
  occurrences[order] = positions - first
  return occurrences


def _count_transitions(labels: np.ndarray) -> tuple[int, int]:
  """Returns (#speaker changes, #transitions) of one label sequence."""
  if labels.size < 2:
    return 0, 0
  return int(np.count_nonzero(labels[1:] != labels[:-1])), labels.size - 1


def estimate_transition_bias(
  cluster_ids: LabelSequences, smooth: float = 1.0
) -> tuple[float, float]:
  """Estimates p0, the probability of a speaker change (paper Eq. 13).

  ``p0 = (smooth + #changes) / (2 * smooth + #transitions)``, where the counts
  run over neighbouring pairs within each sequence (a sequence of length N has
  N - 1 transitions, none across sequence boundaries). ``smooth`` is an
  add-``smooth`` (Laplace) prior: it keeps p0 away from 0 (one speaker only,
  where ``log p0`` would be -inf) and from 0/0 (no transitions at all, where
  the estimate falls back to 1/2).

  >>> estimate_transition_bias([['a', 'a', 'b'], ['c']])
  (0.5, 4.0)
  >>> estimate_transition_bias([['a', 'a', 'a', 'b', 'b']], smooth=0.5)
  (0.3, 5.0)
  >>> estimate_transition_bias([np.array([7, 7, 3]), [0, 1]])  # any labels
  (0.6, 5.0)

  Args:
    cluster_ids: list of label sequences, each a list or 1-D array of
      hashable labels.
    smooth: non-negative pseudo-count; 0 gives the unsmoothed estimate, which
      requires at least one transition.

  Returns:
    ``(p0, denominator)`` as Python floats; ``denominator = 2 * smooth +
    #transitions`` weighs this estimate when pooling successive ``fit`` calls
    with ``combine_transition_bias``.

  Raises:
    TypeError: if ``cluster_ids`` is not a list of label sequences, a label
      is not hashable, or ``smooth`` is not a real number.
    ValueError: if ``smooth`` is negative or not finite, or is 0 while there is
      no transition (0/0).
  """
  smooth = _check_real(smooth, 'smooth')
  if smooth < 0:
    raise ValueError(f'smooth must be non-negative, got {smooth}')
  changes = transitions = 0
  for labels in _as_label_sequences(cluster_ids):
    c, t = _count_transitions(labels)
    changes += c
    transitions += t
  denominator = 2.0 * smooth + transitions
  if denominator == 0:
    raise ValueError(
      'cannot estimate the transition bias with smooth=0 from sequences '
      'without any transition (every sequence has fewer than 2 labels)'
    )
  return (smooth + changes) / denominator, denominator


def combine_transition_bias(
  p0_a: float | None,
  denominator_a: float,
  p0_b: float,
  denominator_b: float,
) -> tuple[float, float]:
  """Pools two transition-bias estimates, weighting each by its denominator.

  This is how the reference pools the estimates of successive ``fit`` calls:
  each call's smoothing pseudo-counts are kept, so pooling calls on ``a`` and
  ``b`` gives ``(2 * smooth + changes_a + changes_b) / (4 * smooth +
  transitions_a + transitions_b)``, not the estimate from ``a + b`` at once.

  >>> combine_transition_bias(None, 0.0, 0.25, 4.0)
  (0.25, 4.0)
  >>> combine_transition_bias(0.5, 2.0, 0.25, 6.0)
  (0.3125, 8.0)

  Args:
    p0_a: the running estimate, or None if there is none yet.
    denominator_a: its denominator (ignored if ``p0_a`` is None).
    p0_b: the new estimate.
    denominator_b: its denominator.

  Returns:
    ``(p0, denominator)``: the weighted mean and the summed denominators, or
    ``(p0_b, denominator_b)`` when ``p0_a`` is None.

  Raises:
    ValueError: if a denominator is negative or both are zero.
  """
  p0_b = _check_real(p0_b, 'p0_b')
  denominator_b = _check_real(denominator_b, 'denominator_b')
  if denominator_b < 0:
    raise ValueError(f'denominator_b must be >= 0, got {denominator_b}')
  if p0_a is None:
    return p0_b, denominator_b
  p0_a = _check_real(p0_a, 'p0_a')
  denominator_a = _check_real(denominator_a, 'denominator_a')
  if denominator_a < 0:
    raise ValueError(f'denominator_a must be >= 0, got {denominator_a}')
  total = denominator_a + denominator_b
  if total == 0:
    raise ValueError('cannot combine two estimates with zero denominators')
  return (p0_a * denominator_a + p0_b * denominator_b) / total, total


def _crp_statistics(
  cluster_ids: LabelSequences,
) -> tuple[int, np.ndarray, np.ndarray, float]:
  """Sufficient statistics of the speaker CRP likelihood.

  Returns:
    ``(num_joins, others, counts, constant)``: the total number of joins; for
    every change, ``others`` = the number of earlier turns of the sequence not
    by the speaker being left (the CRP mass of existing speakers one may
    change to), given as distinct values int64[M] with their counts int64[M];
    and the alpha-free ``sum(log(#earlier turns of the returned-to speaker))``
    over changes back to an existing speaker.
  """
  num_joins = 0
  constant = 0.0
  others = []
  for labels in _as_label_sequences(cluster_ids):
    occurrences = _turn_occurrences(labels)
    if occurrences.size < 2:
      continue
    # Before turn b there are b turns, occurrences[b-1] + 1 of them by the
    # speaker of turn b - 1.
    others.append(np.arange(occurrences.size - 1) - occurrences[:-1])
    later = occurrences[1:]
    num_joins += int(np.count_nonzero(later == 0))
    constant += float(np.sum(np.log(later[later > 0])))
  if not others:
    empty = np.zeros(0, dtype=np.int64)
    return num_joins, empty, empty, constant
  values, counts = np.unique(np.concatenate(others), return_counts=True)
  return num_joins, values, counts, constant


def _log_likelihood(
  stats: tuple[int, np.ndarray, np.ndarray, float],
  alphas: np.ndarray,
  include_constant: bool,
) -> np.ndarray:
  num_joins, values, counts, constant = stats
  log_lik = num_joins * np.log(alphas)
  for value, count in zip(values, counts):  # few distinct values
    log_lik -= count * np.log(value + alphas)
  return log_lik + constant if include_constant else log_lik


def crp_log_likelihood(
  cluster_ids: LabelSequences,
  alpha: float | np.ndarray,
  *,
  include_constant: bool = False,
) -> float | np.ndarray:
  """Log-probability of the speaker turns under UIS-RNN's CRP, given alpha.

  Given where the speaker changes are, each change of a sequence picks the
  next speaker among all but the current one: an existing speaker k with
  probability ``N_k / (N_other + alpha)``, a new one with ``alpha / (N_other
  + alpha)``, where ``N_k`` counts k's earlier turns and ``N_other`` the
  earlier turns of all speakers but the current one. Summed over sequences::

    log L(alpha) = #joins * log(alpha) - sum_changes log(N_other + alpha)
                   [+ sum_returns log(N_k)]

  The bracketed term does not depend on alpha and is left out by default,
  which is what the reference contrib computes (its ``_get_cdf``); with
  ``include_constant=True`` the probabilities of all turn sequences with the
  same change positions sum to 1. Computed in log space from per-change
  counts, so it stays finite on sequences of any length (the contrib multiplies
  the factors and overflows to ``log(0) = -inf`` after ~150 changes).

  >>> float(crp_log_likelihood([['a', 'b', 'a']], 1.0))  # -log(1 + 1)
  -0.6931471805599453

  Args:
    cluster_ids: list of label sequences, each a list or 1-D array of
      hashable labels.
    alpha: positive float, or float64[G] array of them.
    include_constant: add the alpha-independent term (see above).

  Returns:
    float, or float64[G] if ``alpha`` is an array.

  Raises:
    TypeError: for malformed ``cluster_ids``.
    ValueError: if an alpha is not positive and finite.
  """
  alphas = np.asarray(alpha, dtype=np.float64)
  if not np.all(np.isfinite(alphas) & (alphas > 0)):
    raise ValueError(f'alpha must be positive and finite, got {alpha}')
  stats = _crp_statistics(cluster_ids)
  log_lik = _log_likelihood(stats, alphas, include_constant)
  return float(log_lik) if log_lik.ndim == 0 else log_lik


def _alpha_grid(search_range: float, search_step: float) -> np.ndarray:
  """``k * search_step`` for k = 1 .. ceil(search_range / search_step) - 1."""
  search_range = _check_real(search_range, 'search_range')
  search_step = _check_real(search_step, 'search_step')
  if search_step <= 0:
    raise ValueError(f'search_step must be positive, got {search_step}')
  # The reference's bound, kept to reproduce its grid in floating point.
  size = int(np.ceil(search_range / search_step)) - 1
  if size < 1:
    raise ValueError(
      f'empty search grid: search_range ({search_range}) must exceed '
      f'search_step ({search_step})'
    )
  return np.arange(1, size + 1) * search_step


def estimate_crp_alpha_range_search(
  cluster_ids: LabelSequences,
  search_range: float = 1.0,
  search_step: float = 0.01,
) -> float:
  """Maximum-likelihood CRP alpha over a grid (the reference contrib's method).

  Maximises ``crp_log_likelihood(cluster_ids, alpha)`` over ``alpha`` in
  ``{search_step, 2 * search_step, ...}`` below ``search_range`` (exactly
  the reference's grid ``k * search_step``, ``1 <= k < ceil(search_range /
  search_step)``), returning the smallest maximiser. It gives the reference's
  answer wherever the reference does not underflow, but in log space: the
  reference returns NaN once a sequence has ~150 changes.

  If no sequence has more than one speaker change (e.g. each has one or two
  turns, or no sequence is given), the likelihood is flat and the answer is
  ``search_step``, the first grid point, as in the reference.

  >>> estimate_crp_alpha_range_search(
  ...     [['a', 'a', 'b', 'b', 'b', 'a', 'a'],
  ...      ['a', 'a', 'a', 'b', 'b', 'b', 'a', 'a', 'a', 'c', 'c', 'c']])
  0.5

  Args:
    cluster_ids: list of label sequences, each a list or 1-D array of
      hashable labels.
    search_range: exclusive upper end of the grid.
    search_step: grid spacing and first grid point.

  Returns:
    The best alpha, a Python float.

  Raises:
    TypeError: for malformed ``cluster_ids`` or non-numeric search params.
    ValueError: if ``search_step <= 0``, a parameter is not finite, or the
      grid is empty (``search_range <= search_step``).
  """
  alphas = _alpha_grid(search_range, search_step)
  log_lik = _log_likelihood(
    _crp_statistics(cluster_ids), alphas, include_constant=False
  )
  return float(alphas[np.argmax(log_lik)])


def _split_concatenated_ids(train_cluster_id: object) -> list[np.ndarray]:
  """Splits ``'<seq>_<speaker>'`` labels into per-sequence speaker labels."""
  if isinstance(train_cluster_id, np.ndarray):
    if train_cluster_id.ndim != 1:
      raise TypeError(
        'train_cluster_id must be a 1-D array of "<seq>_<speaker>" strings, '
        f'got shape {train_cluster_id.shape}'
      )
  elif not isinstance(train_cluster_id, (list, tuple)):
    raise TypeError(
      'train_cluster_id must be a list or 1-D array of "<seq>_<speaker>" '
      f'strings, got {_describe(train_cluster_id)}'
    )
  labels = _as_label_strings(train_cluster_id, 0, 'train_cluster_id')
  if labels.size == 0:
    return []
  parts = np.char.partition(labels, '_')
  if not np.all(parts[:, 1] == '_'):
    bad = labels[parts[:, 1] != '_'][0]
    raise ValueError(
      f'train_cluster_id labels must look like "<seq>_<speaker>", got {bad!r}'
    )
  seq_ids, speakers = parts[:, 0], parts[:, 2]
  boundaries = np.flatnonzero(seq_ids[1:] != seq_ids[:-1]) + 1
  return np.split(speakers, boundaries)


def estimate_crp_alpha(
  train_cluster_id: Sequence[str] | np.ndarray,
  search_range: float = 1,
  search_step: float = 0.01,
) -> float:
  """Range search for alpha with the reference contrib's signature and input.

  Drop-in for ``uisrnn.contrib.range_search_crp_alpha.estimate_crp_alpha``:
  the input is one concatenated sequence of ``'<seq>_<speaker>'`` strings, and
  each run of equal ``<seq>`` prefixes (up to the first ``'_'``) is one
  sequence. Differences from the reference: the last label is used (the
  reference drops it, and with it a final one-label sequence), speaker ids
  need not be integers, and long sequences do not underflow to NaN.

  >>> estimate_crp_alpha(np.array(
  ...     ['0_0', '0_0', '0_1', '0_1', '0_1', '0_0', '0_0', '1_0', '1_0', '1_0',
  ...      '1_1', '1_1', '1_1', '1_0', '1_0', '1_0', '1_2', '1_2', '1_2']))
  0.5

  Args:
    train_cluster_id: str[N] concatenated ``'<seq>_<speaker>'`` labels.
    search_range: exclusive upper end of the grid.
    search_step: grid spacing and first grid point.

  Returns:
    The best alpha, a Python float.

  Raises:
    TypeError: if the input is not a list/1-D array of strings.
    ValueError: if a label has no ``'_'``, or for bad search parameters.
  """
  return estimate_crp_alpha_range_search(
    _split_concatenated_ids(train_cluster_id), search_range, search_step
  )


def estimate_crp_alpha_closed_form(cluster_ids: LabelSequences) -> float:
  """Closed-form alpha of Fini & Brutti (2019), with add-one smoothing.

  ``alpha = (#joins + 1) / (#changes + 2)``, counted over all sequences: the
  smoothed fraction of speaker changes that go to a speaker not seen before in
  the sequence. The first label of a sequence is neither a change nor a join;
  a sequence with K speakers and T turns adds K - 1 joins and T - 1 changes.
  Returns 1/2 when there are no changes.

  E. Fini and A. Brutti, "Supervised online diarization with sample mean loss
  for multi-domain data", ICASSP 2020 (arXiv:1911.01266).

  >>> estimate_crp_alpha_closed_form([['a', 'b', 'a', 'c'], ['x', 'x']])
  0.6

  Args:
    cluster_ids: list of label sequences, each a list or 1-D array of
      hashable labels.

  Returns:
    alpha in (0, 1), a Python float.

  Raises:
    TypeError: for malformed ``cluster_ids``.
  """
  joins = changes = 0
  for labels in _as_label_sequences(cluster_ids):
    occurrences = _turn_occurrences(labels)
    if occurrences.size:
      changes += occurrences.size - 1
      joins += int(np.count_nonzero(occurrences[1:] == 0))
  return (joins + 1) / (changes + 2)
