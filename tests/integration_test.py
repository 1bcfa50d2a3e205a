"""End to end: the toy config trains, checkpoints, resumes and decodes."""

import json
import os

import numpy as np
from absl.testing import absltest
from jax_testing import run_python

from configs import toy
from uisrnn_jax import checkpoint, experiment


class ToyRunTest(absltest.TestCase):
  def test_toy_config_reaches_full_accuracy(self):
    config = toy.get_config()
    workdir = self.create_tempdir().full_path
    state = experiment.train_and_evaluate(config, workdir, progress=False)
    self.assertEqual(int(state.step), config.train.train_iteration)
    _, test = experiment.load_splits(config)
    predicted = experiment.decode_dataset(state, test, config.decode)
    report = experiment.accuracy_report(test, predicted)
    self.assertEqual(report['accuracy'], 1.0)
    # Metrics were logged as JSON lines at the configured cadence.
    with open(os.path.join(workdir, experiment.METRICS_FILE)) as f:
      steps = [json.loads(line)['step'] for line in f]
    self.assertEqual(
      steps,
      list(
        range(
          config.train.log_every,
          config.train.train_iteration + 1,
          config.train.log_every,
        )
      ),
    )
    # Rerunning a finished run trains nothing more and keeps the result.
    again = experiment.train_and_evaluate(config, workdir, progress=False)
    np.testing.assert_array_equal(
      again.params['sigma2'], state.params['sigma2']
    )

  def test_scripts_train_resume_and_infer(self):
    workdir = self.create_tempdir().full_path
    out = os.path.join(workdir, 'pred.npz')
    common = [
      '--config=configs/toy.py',
      f'--workdir={workdir}',
      '--config.train.checkpoint_every=3',
      '--config.toy.num_train=4',
      '--config.toy.num_test=2',
    ]

    def run(script, *args):
      return run_python(script, *common, *args, check=True).stdout

    run('train.py', '--config.train.train_iteration=4')
    self.assertEqual(checkpoint.checkpoint_steps(workdir), [3, 4])
    run('train.py', '--config.train.train_iteration=7')  # resumes from 4
    self.assertEqual(checkpoint.checkpoint_steps(workdir), [4, 6, 7])  # keeps 3
    stdout = run('infer.py', f'--output={out}')
    self.assertIn('accuracy:', stdout)
    with np.load(out, allow_pickle=False) as z:
      self.assertEqual(z['offsets'][0], 0)
      self.assertLen(z['predicted'], z['offsets'][-1])
      self.assertEqual(z['predicted'].dtype, np.int32)


if __name__ == '__main__':
  absltest.main()
