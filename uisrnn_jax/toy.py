"""Deterministic toy diarization data: noisy speaker centres taking turns.

Each speaker is a point on a sphere (its "voice"); an utterance is a sequence
of turns, each turn a run of observations ``centre + noise * N(0, I)``. The
task is easy by construction (centres far apart relative to the noise, see
``DEFAULT_RADIUS``), so a small UIS-RNN labels test sequences perfectly; it
exists for demos, notebooks and tests, and nothing is read from or written to
disk.

>>> rng = np.random.default_rng(0)
>>> seqs, ids = make_toy_dataset(rng, num_sequences=3, num_speakers=4,
...                              observation_dim=8, length=20, noise=0.1)
>>> len(seqs), seqs[0].shape, seqs[0].dtype, ids[0][:2]
(3, (20, 8), dtype('float64'), array(['spk0', 'spk0'], dtype='<U4'))
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Norm of the speaker centres. With up to observation_dim speakers they are
# 2.83 apart, so at the toy config's noise (0.3) the boundary between two
# centres is 1.41 = 4.7 noise standard deviations from each. Trained for 300
# steps on such data, the reference UIS-RNN labels every test frame correctly
# when decoding with its training-time running mean (radius 1 leaves a few
# errors); its own decode rule mislabels some second frames of a speaker.
DEFAULT_RADIUS = 2.0

# Observations closer than this to zero are pushed out to it: the reference
# treats an exact 0.0 as padding, and float32 casting must not create one.
_MIN_MAGNITUDE = 1e-6


def _check_int(value: Any, name: str, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f'{name} must be an int, got {type(value).__name__}')
  if value < minimum:
    raise ValueError(f'{name} must be >= {minimum}, got {value}')
  return int(value)


def make_speaker_centers(
  rng: np.random.Generator,
  num_speakers: int,
  observation_dim: int,
  *,
  radius: float = DEFAULT_RADIUS,
) -> np.ndarray:
  """Draws well-separated speaker centres on a sphere.

  With ``num_speakers <= observation_dim`` the centres are random orthonormal
  directions scaled by ``radius`` (every pair exactly ``radius * sqrt(2)``
  apart). Otherwise they are picked by farthest-point sampling from random
  directions, which spreads them as evenly as the dimension allows (e.g. about
  a square for 4 speakers in 2-D).

  Args:
    rng: source of randomness.
    num_speakers: S >= 1.
    observation_dim: D >= 1.
    radius: norm of every centre, > 0.

  Returns:
    float64[S, D] centres, each of norm ``radius``.
  """
  num_speakers = _check_int(num_speakers, 'num_speakers', 1)
  observation_dim = _check_int(observation_dim, 'observation_dim', 1)
  if not radius > 0:
    raise ValueError(f'radius must be positive, got {radius}')
  if num_speakers <= observation_dim:
    gaussian = rng.standard_normal((observation_dim, num_speakers))
    q, r = np.linalg.qr(gaussian)
    directions = (q * np.sign(np.diag(r))).T  # Haar-distributed columns
  else:
    candidates = rng.standard_normal((64 * num_speakers, observation_dim))
    candidates /= np.linalg.norm(candidates, axis=1, keepdims=True)
    chosen = [0]
    distance = np.linalg.norm(candidates - candidates[0], axis=1)
    for _ in range(num_speakers - 1):
      chosen.append(int(np.argmax(distance)))
      new = np.linalg.norm(candidates - candidates[chosen[-1]], axis=1)
      distance = np.minimum(distance, new)
    directions = candidates[chosen]
  return radius * directions


def _turn_lengths(
  rng: np.random.Generator, length: int, min_turn: int, max_turn: int
) -> np.ndarray:
  """Random turn lengths in [min_turn, max_turn] summing to ``length``.

  The last turn is cut to fit; at least two turns are returned.
  """
  most = -(-length // min_turn)
  turns = rng.integers(min_turn, max_turn + 1, size=most)
  num_turns = int(np.searchsorted(np.cumsum(turns), length)) + 1
  turns = turns[:num_turns]
  turns[-1] -= turns.sum() - length
  if num_turns == 1:  # a single turn would cover the sequence: split it
    cut = int(rng.integers(1, length))
    turns = np.array([cut, length - cut])
  return turns


def make_toy_dataset(
  rng: np.random.Generator,
  *,
  num_sequences: int,
  num_speakers: int,
  observation_dim: int,
  length: int,
  noise: float,
  min_length: int | None = None,
  min_turn: int = 2,
  max_turn: int = 10,
  radius: float = DEFAULT_RADIUS,
  centers: np.ndarray | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """Generates sequences of noisy observations of speakers taking turns.

  A pool of ``num_speakers`` centres (``make_speaker_centers``, or the given
  ``centers``) is shared by all sequences; speaker ``j`` is labelled
  ``f'spk{j}'``. Each sequence picks between 2 and ``num_speakers`` speakers
  (never more than it has turns), lets each of them take a turn in random
  order, then continues with random turns, each by a speaker other than the
  previous one. Turn lengths are uniform in ``[min_turn, max_turn]`` (the
  last is cut to fit). Every chosen speaker appears, neighbouring turns have
  different speakers, and no observation is exactly zero. Identical
  generator states give identical data.

  Args:
    rng: source of randomness; the only one used.
    num_sequences: number of sequences, >= 0.
    num_speakers: S >= 2, size of the speaker pool.
    observation_dim: D >= 1.
    length: N, observations per sequence (the maximum if ``min_length``).
    noise: standard deviation of the per-dimension Gaussian noise, >= 0.
    min_length: if given, lengths are uniform in ``[min_length, length]``.
    min_turn: shortest turn, >= 1.
    max_turn: longest turn, >= ``min_turn``.
    radius: norm of the generated centres (ignored with ``centers``).
    centers: float[S, D] speaker centres to use instead of drawing them.

  Returns:
    ``(sequences, cluster_ids)``: lists of ``num_sequences`` float64[N_i, D]
    arrays and matching str[N_i] label arrays.

  Raises:
    ValueError / TypeError: for out-of-range or mistyped arguments.
  """
  num_sequences = _check_int(num_sequences, 'num_sequences', 0)
  num_speakers = _check_int(num_speakers, 'num_speakers', 2)
  observation_dim = _check_int(observation_dim, 'observation_dim', 1)
  length = _check_int(length, 'length', 2)
  min_length = length if min_length is None else min_length
  min_length = _check_int(min_length, 'min_length', 2)
  if min_length > length:
    raise ValueError(f'min_length ({min_length}) exceeds length ({length})')
  min_turn = _check_int(min_turn, 'min_turn', 1)
  max_turn = _check_int(max_turn, 'max_turn', min_turn)
  if not (np.isfinite(noise) and noise >= 0):
    raise ValueError(f'noise must be finite and >= 0, got {noise}')
  if centers is None:
    centers = make_speaker_centers(
      rng, num_speakers, observation_dim, radius=radius
    )
  else:
    centers = np.asarray(centers, dtype=np.float64)
    if centers.shape != (num_speakers, observation_dim):
      raise ValueError(
        f'centers must have shape {(num_speakers, observation_dim)}, got '
        f'{centers.shape}'
      )
  names = np.array([f'spk{j}' for j in range(num_speakers)])

  sequences, cluster_ids = [], []
  for _ in range(num_sequences):
    n = int(rng.integers(min_length, length + 1))
    turns = _turn_lengths(rng, n, min_turn, max_turn)
    k = int(rng.integers(2, min(num_speakers, turns.size) + 1))
    speakers = rng.choice(num_speakers, size=k, replace=False)
    # First k turns: each speaker once. Later turns step by 1..k-1 (mod k)
    # through the k speakers, so no turn repeats the previous speaker.
    steps = rng.integers(1, k, size=turns.size - k)
    slots = np.concatenate([np.arange(k), (k - 1 + np.cumsum(steps)) % k])
    frame_speakers = np.repeat(speakers[slots], turns)
    observations = centers[frame_speakers] + noise * rng.standard_normal(
      (n, observation_dim)
    )
    tiny = np.abs(observations) < _MIN_MAGNITUDE
    observations[tiny] = np.copysign(_MIN_MAGNITUDE, observations[tiny])
    sequences.append(observations)
    cluster_ids.append(names[frame_speakers])
  return sequences, cluster_ids


def toy_train_test(
  config_toy: Any, seed: int, observation_dim: int
) -> tuple[
  list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]
]:
  """Train and test splits of toy data, from a config's ``toy`` group.

  Both splits share one speaker pool; they come from independent streams
  spawned from ``seed``, so changing ``num_train`` leaves the test split (and
  the pool) unchanged.

  Args:
    config_toy: ConfigDict-like with ``num_train``, ``num_test``,
      ``num_speakers``, ``length`` and ``noise`` attributes.
    seed: integer seed.
    observation_dim: D.

  Returns:
    ``(train_sequences, train_cluster_ids, test_sequences, test_cluster_ids)``
    as from ``make_toy_dataset``.
  """
  pool_seed, train_seed, test_seed = np.random.SeedSequence(seed).spawn(3)
  common = dict(
    num_speakers=config_toy.num_speakers,
    observation_dim=observation_dim,
    length=config_toy.length,
    noise=config_toy.noise,
  )
  centers = make_speaker_centers(
    np.random.default_rng(pool_seed),
    _check_int(config_toy.num_speakers, 'num_speakers', 2),
    observation_dim,
  )
  train = make_toy_dataset(
    np.random.default_rng(train_seed),
    num_sequences=config_toy.num_train,
    centers=centers,
    **common,
  )
  test = make_toy_dataset(
    np.random.default_rng(test_seed),
    num_sequences=config_toy.num_test,
    centers=centers,
    **common,
  )
  return (*train, *test)
