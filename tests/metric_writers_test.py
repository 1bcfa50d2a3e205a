"""Tests of the training metric writers (uisrnn_jax.metric_writers)."""

import json
import os

import numpy as np
from absl.testing import absltest

from uisrnn_jax import metric_writers


class _FakeWriter:
  def __init__(self):
    self.calls = []

  def write_scalars(self, step, scalars):
    self.calls.append(('write', step, dict(scalars)))

  def flush(self):
    self.calls.append(('flush',))

  def close(self):
    self.calls.append(('close',))


class WritersTest(absltest.TestCase):
  def test_jsonl_round_trip_and_append(self):
    path = os.path.join(self.create_tempdir().full_path, 'sub', 'metrics.jsonl')
    writer = metric_writers.JsonlWriter(path)
    writer.write_scalars(1, {'loss': 0.5, 'nll': np.float32(0.25)})
    # Flushed on write: readable while the writer is still open.
    self.assertEqual(
      metric_writers.read_jsonl(path), [{'step': 1, 'loss': 0.5, 'nll': 0.25}]
    )
    writer.write_scalars(np.int64(2), {'loss': float('nan')})
    writer.close()
    writer.close()  # idempotent
    with metric_writers.JsonlWriter(path) as resumed:  # a resumed run appends
      resumed.write_scalars(3, {'loss': 0.125})
    records = metric_writers.read_jsonl(path)
    self.assertEqual([r['step'] for r in records], [1, 2, 3])
    self.assertTrue(np.isnan(records[1]['loss']))
    self.assertEqual(records[2], {'step': 3, 'loss': 0.125})
    with open(path) as f:
      lines = f.read().splitlines()
    self.assertLen(lines, 3)
    self.assertEqual(json.loads(lines[0])['loss'], 0.5)

  def test_unfinished_last_line_from_a_killed_writer(self):
    path = os.path.join(self.create_tempdir().full_path, 'metrics.jsonl')
    with metric_writers.JsonlWriter(path) as writer:
      writer.write_scalars(1, {'loss': 0.5})
    with open(path, 'a') as f:
      f.write('{"step": 2, "lo')  # killed mid-line
    self.assertEqual(
      metric_writers.read_jsonl(path), [{'step': 1, 'loss': 0.5}]
    )
    with metric_writers.JsonlWriter(path) as resumed:
      resumed.write_scalars(2, {'loss': 0.25})
    self.assertEqual(
      metric_writers.read_jsonl(path),
      [{'step': 1, 'loss': 0.5}, {'step': 2, 'loss': 0.25}],
    )
    with open(path, 'a') as f:
      f.write('not json\n{"step": 3}\n')  # damage that is not a cut
    with self.assertRaisesRegex(ValueError, 'line 3 is not JSON'):
      metric_writers.read_jsonl(path)

  def test_step_is_reserved(self):
    path = os.path.join(self.create_tempdir().full_path, 'm.jsonl')
    with metric_writers.JsonlWriter(path) as writer:
      with self.assertRaisesRegex(ValueError, 'reserved'):
        writer.write_scalars(0, {'step': 1.0})

  def test_logging_writer(self):
    writer = metric_writers.LoggingWriter()
    with self.assertLogs(level='INFO') as logs:
      writer.write_scalars(7, {'loss': 1.5, 'nll': 0.25})
    self.assertIn('[7] loss=1.5, nll=0.25', logs.output[0])
    writer.flush()
    writer.close()

  def test_protocol(self):
    path = os.path.join(self.create_tempdir().full_path, 'm.jsonl')
    with metric_writers.JsonlWriter(path) as jsonl:
      for writer in (
        jsonl,
        metric_writers.LoggingWriter(),
        metric_writers.MultiWriter([]),
      ):
        self.assertIsInstance(writer, metric_writers.MetricWriter)
    self.assertNotIsInstance(object(), metric_writers.MetricWriter)

  def test_multi_writer_forwards(self):
    fakes = [_FakeWriter(), _FakeWriter()]
    writer = metric_writers.MultiWriter(fakes)
    writer.write_scalars(3, {'loss': 2.0})
    writer.flush()
    writer.close()
    for fake in fakes:
      self.assertEqual(
        fake.calls, [('write', 3, {'loss': 2.0}), ('flush',), ('close',)]
      )

  def test_multi_writer_with_jsonl(self):
    path = os.path.join(self.create_tempdir().full_path, 'm.jsonl')
    writer = metric_writers.MultiWriter(
      [metric_writers.JsonlWriter(path), metric_writers.LoggingWriter()]
    )
    writer.write_scalars(10, {'loss': 0.75})
    writer.close()
    self.assertEqual(
      metric_writers.read_jsonl(path), [{'step': 10, 'loss': 0.75}]
    )


if __name__ == '__main__':
  absltest.main()
