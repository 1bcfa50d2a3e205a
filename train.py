"""Train UIS-RNN: python train.py --config=configs/toy.py --workdir=runs/toy"""

from absl import app

from uisrnn_jax import cli

if __name__ == '__main__':
  app.run(cli.train_main, flags_parser=cli.parse_flags)
