"""Decoding parity with uisrnn 0.1.2, from committed fixtures (no torch).

Every fixture holds a reference model and the labels its ``predict``
returned for several sequences and (beam_size, look_ahead, test_iteration)
settings. Our labels must be identical (after renumbering the reference's in
order of first appearance, as ours are). Cases sharing settings are decoded
in one batched call, so each (fixture shape, settings) pair compiles once.

Compiling dominates the run time (a few seconds per pair on a shared 2-core
machine), so by default every setting is checked on one fixture shape
(`DEFAULT_SHAPES`): 8 compilations instead of 24. Set
``UISRNN_JAX_FULL_PARITY=1`` to check every case of every fixture.
"""

import collections
import os

import numpy as np
import reference_fixtures
from absl.testing import absltest, parameterized

from uisrnn_jax import decode

# Enough slots that no surviving hypothesis of these short sequences
# overflows (with 'error', an overflow would fail the test loudly).
MAX_SPEAKERS = 16

# (beam_size, look_ahead, test_iteration) -> fixture shape checked by default.
# The two d4_h8_l1 fixtures share compiled programs.
DEFAULT_SHAPES = {
  (1, 1, 1): 'd4_h8_l1',
  (10, 1, 2): 'd4_h8_l1',
  (10, 2, 2): 'd4_h8_l1',
  (10, 3, 2): 'd4_h8_l1',
  (3, 1, 1): 'd6_h16_l2',
  (3, 2, 1): 'd6_h16_l2',
  (3, 3, 1): 'd6_h16_l2',
  (1, 2, 2): 'd8_h12_l1',
}


def _full() -> bool:
  return os.environ.get('UISRNN_JAX_FULL_PARITY', '') not in ('', '0')


def _groups(name):
  fixture = reference_fixtures.load(name)
  groups = collections.defaultdict(list)
  for case in fixture.decode_cases:
    key = (case.beam_size, case.look_ahead, case.test_iteration)
    shape = DEFAULT_SHAPES.get(key)
    if _full() or (shape is not None and shape in name):
      groups[key].append(case)
  return fixture, groups


class DecodeParityTest(parameterized.TestCase):
  def test_default_subset_covers_every_setting(self):
    settings = set()
    for name in reference_fixtures.names():
      for case in reference_fixtures.load(name).decode_cases:
        key = (case.beam_size, case.look_ahead, case.test_iteration)
        settings.add(key)
        self.assertIn(key, DEFAULT_SHAPES)
    self.assertEqual(settings, set(DEFAULT_SHAPES))
    for shape in DEFAULT_SHAPES.values():
      self.assertTrue(any(shape in n for n in reference_fixtures.names()))

  @parameterized.named_parameters(
    (name, name) for name in reference_fixtures.names()
  )
  def test_labels_equal_reference(self, name):
    fixture, groups = _groups(name)
    self.assertNotEmpty(groups)
    for (beam_size, look_ahead, test_iteration), cases in groups.items():
      config = dict(
        beam_size=beam_size,
        look_ahead=look_ahead,
        test_iteration=test_iteration,
        max_speakers=MAX_SPEAKERS,
        speaker_overflow='error',
        mean_rule='reference',
        bucket=64,
      )
      got = decode.predict_labels(
        fixture.params,
        [case.sequence for case in cases],
        transition_bias=fixture.transition_bias,
        crp_alpha=fixture.crp_alpha,
        config=config,
      )
      for case, labels in zip(cases, got):
        with self.subTest(
          beam_size=beam_size,
          look_ahead=look_ahead,
          test_iteration=test_iteration,
          length=len(case.sequence),
          margin=case.margin,
        ):
          np.testing.assert_array_equal(labels, case.canonical_labels)


if __name__ == '__main__':
  absltest.main()
