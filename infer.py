"""Decode with a trained run: python infer.py --config=configs/toy.py --workdir=runs/toy"""

from absl import app

from uisrnn_jax import cli

if __name__ == '__main__':
  app.run(cli.infer_main, flags_parser=cli.parse_flags)
