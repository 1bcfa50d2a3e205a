r"""The fp32 matrix-product throughput this machine gives XLA.

Times one jitted ``[M, K] x [K, N]`` product (default: 480 x 512 x 1536,
the training step's largest dense product at the seed's defaults, see
BENCHMARKS.md "Cold start") and prints GFLOP/s, so the step's time can be
compared with what the CPU can do at all.

Usage (from the repository root):
  python benchmarks/cpu_peak.py                 # every core
  taskset -c 0 python benchmarks/cpu_peak.py    # one core
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--shape', default='480,512,1536', help='M,K,N')
  parser.add_argument('--calls', type=int, default=200)
  args = parser.parse_args(argv)
  m, k, n = (int(v) for v in args.shape.split(','))

  import jax
  import jax.numpy as jnp
  import numpy as np

  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.random((m, k), np.float32))
  b = jnp.asarray(rng.random((k, n), np.float32))
  product = jax.jit(jnp.matmul)
  product(a, b).block_until_ready()
  tic = time.perf_counter()
  for _ in range(args.calls):
    out = product(a, b)
  out.block_until_ready()
  seconds = (time.perf_counter() - tic) / args.calls
  cores = len(os.sched_getaffinity(0))
  print(
    f'[{m}, {k}] x [{k}, {n}] float32 on {cores} core(s): '
    f'{1e6 * seconds:.0f} us, {2 * m * k * n / seconds / 1e9:.1f} GFLOP/s'
  )


if __name__ == '__main__':
  main()
