"""The default run configuration: the one place where default values live.

The ``model``, ``train`` and ``decode`` groups start from uisrnn 0.1.2's
argument defaults (``uisrnn/arguments.py``; the seed-style flags of
`uisrnn_jax.arguments` take their defaults from here, and a test checks them
against the seed's values), followed by our own fields.
``configs/default.py`` returns this config, and the other config files
start from it; `uisrnn_jax.compat` builds `UISRNN`'s config from it.
A new field also needs a check in `uisrnn_jax.config_check.SCHEMA`.

Usage:
  python train.py --config=configs/default.py --workdir=runs/default \
    --config.data.train_path=my_train.npz
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  """Returns the default configuration."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  # Model (the seed's model_args).
  config.model = ml_collections.ConfigDict()
  config.model.observation_dim = 256
  config.model.rnn_hidden_size = 512
  config.model.rnn_depth = 1
  config.model.rnn_dropout = 0.2
  # None -> estimated from training labels (paper Eq. 13).
  config.model.transition_bias = config_dict.placeholder(float)
  config.model.crp_alpha = 1.0
  # None -> learned, starting at 0.1.
  config.model.sigma2 = config_dict.placeholder(float)
  # 'given' keeps crp_alpha; 'range_search' (the seed's contrib) or
  # 'closed_form' (Fini & Brutti 2019) estimate it from training labels.
  config.model.crp_alpha_estimator = 'given'

  # Training (the seed's training_args, plus our own knobs below them).
  config.train = ml_collections.ConfigDict()
  config.train.optimizer = 'adam'
  config.train.learning_rate = 1e-3
  config.train.train_iteration = 20000
  # None -> the whole training set every step (batch learning).
  config.train.batch_size = config_dict.placeholder(int)
  config.train.batch_size = 10
  config.train.num_permutations = 10
  config.train.sigma_alpha = 1.0
  config.train.sigma_beta = 1.0
  config.train.regularization_weight = 1e-5
  config.train.grad_max_norm = 5.0
  config.train.enforce_cluster_id_uniqueness = True
  # 'nll' (the seed's) or 'sample_mean' (Fini & Brutti 2019's Sample Mean
  # Loss, whose target is the mean of `loss_samples` future observations).
  config.train.loss = 'nll'
  config.train.loss_samples = 5
  # Batches pack several speaker samples per row; row lengths are multiples
  # of `bucket` (powers of two above `bucket * 8`) and row counts in
  # 1, 2, 3, 4, 6, 8, 12, ..., so the jitted step compiles for few shapes
  # (about 15 on LibriSim).
  config.train.bucket = 32
  # Seconds one compile of the step costs, to choose a run's batch shapes
  # before its first step (train.planned_shapes: few shapes for a short
  # run, more for a long one); 0 lets every batch take its own shape.
  config.train.compile_seconds = 3.0
  config.train.log_every = 100
  config.train.checkpoint_every = 1000
  # Data-parallel training over this many devices (0: every visible one).
  config.train.num_devices = 0
  # With data.train_shards: steps on each shard before moving to the next.
  config.train.steps_per_shard = 1000

  # Inference (the seed's inference_args, plus fixed-shape decoding knobs).
  config.decode = ml_collections.ConfigDict()
  config.decode.beam_size = 10
  config.decode.look_ahead = 1
  config.decode.test_iteration = 2
  # Fixed number of speaker slots per hypothesis, and what happens when a
  # sequence needs more: 'error' raises, 'disallow' forbids new speakers.
  config.decode.max_speakers = 16
  config.decode.speaker_overflow = 'error'
  # 'reference' reproduces uisrnn 0.1.2's running-mean update at decode
  # time; 'cumulative' uses the training-time mean (m_0 + ... + m_n)/(n + 1).
  config.decode.mean_rule = 'reference'
  # Rounds of Viterbi resegmentation after the beam search (offline; 0 = off;
  # see uisrnn_jax/resegment.py).
  config.decode.resegment_iterations = 0
  # What a speaker's emission is in resegmentation: 'centroid' (its mean) or
  # 'neighbours' (mean distance to its resegment_neighbours nearest
  # observations, not counting the resegment_exclude on either side: windows
  # that share audio).
  config.decode.resegment_emission = 'centroid'
  config.decode.resegment_neighbours = 10
  config.decode.resegment_exclude = 0
  # Speaker-count search (offline; 0 = off; see decode.DecodeSettings): also
  # decode with exactly 1..count_search fewer and more speakers than the
  # beam search found, and keep the labelling of least model cost plus
  # count_penalty * log(N) nats per speaker (N observations).
  config.decode.count_search = 0
  config.decode.count_penalty = 0.0
  # Speaker count (pyannote's names; see decode.speaker_count_config):
  # min_speakers, the least number of speakers of the labels (1: any;
  # offline only); num_speakers, when set, fixes the count (min_speakers =
  # max_speakers = num_speakers, speaker_overflow = 'disallow'). A maximum
  # alone is max_speakers with speaker_overflow = 'disallow'.
  config.decode.min_speakers = 1
  config.decode.num_speakers = config_dict.placeholder(int)
  config.decode.bucket = 64

  # Data files (npz in the LibriSim format); empty -> generated toy data.
  config.data = ml_collections.ConfigDict()
  config.data.train_path = ''
  config.data.test_path = ''
  # Training data larger than memory: a glob of .npz shards (see
  # uisrnn_jax.shards.write_shards), visited in turn instead of train_path.
  config.data.train_shards = ''
  return config
