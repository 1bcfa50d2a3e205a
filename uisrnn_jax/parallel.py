"""Data parallelism over devices with `jax.sharding` (no home-made workers).

A 1-D `Mesh` with axis ``'data'`` spans the devices. Parameters and the
optimizer state are replicated on every device; the leading (batch) axis of
a batch is split across them. The jitted training step of `train` is used
unchanged: ``jax.jit`` propagates the input shardings, the SPMD partitioner
inserts the gradient all-reduce, and every reduction in the loss
(``jnp.sum(mask)``, the NLL's sum over real steps) is over the *global*
batch, so a step on N devices computes the same loss and update as on one.

Decoding shards the utterance axis: ``decode.predict_labels(..., mesh=mesh)``
runs `decode.decode_batch` under `jax.shard_map`, so each device
beam-searches its own utterances with no communication at all, and the
labels equal single-device decoding.

Multi-host (several processes, each with its own devices): call
``jax.distributed.initialize()`` in every process before anything else
touches JAX, then build the mesh with `make_mesh()` (it spans the devices of
all processes). `shard_batch` takes the *global* batch, identical in every
process (the training loop draws it from a seed, so it is), and each process
transfers only the rows of its own devices; with ``process_local=True`` it
instead takes this process's rows only and the global batch is their
concatenation in process order.

>>> mesh = make_mesh()                      # every visible device
>>> state = replicate(state, mesh)
>>> batch = shard_batch(batch, mesh)        # leading axis over 'data'
>>> state, metrics = step_fn(state, batch, key)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from uisrnn_jax import config_check, errors

AXIS = 'data'

__all__ = [
  'AXIS',
  'data_sharding',
  'make_mesh',
  'mesh_from_config',
  'pad_batch_rows',
  'replicate',
  'replicated_sharding',
  'shard_batch',
  'to_host',
]


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh with axis ``'data'`` over ``devices``.

  Args:
    devices: the devices to span; None means every device of every process
      (``jax.devices()``).

  Returns:
    A `jax.sharding.Mesh` of shape ``(len(devices),)``.

  Raises:
    ValueError: an empty device list.
  """
  devices = jax.devices() if devices is None else list(devices)
  if not devices:
    raise ValueError('make_mesh needs at least one device')
  return Mesh(np.asarray(devices, dtype=object), (AXIS,))


def mesh_from_config(num_devices: int = 0) -> Mesh | None:
  """The mesh for ``train.num_devices``, or None for plain one-device runs.

  Args:
    num_devices: 0 for every visible device, else the first ``num_devices``
      of ``jax.devices()``.

  Returns:
    A mesh when more than one device is used, else None.

  Raises:
    errors.ConfigError: not an int (`errors.ConfigTypeError`, also a
      TypeError), negative, or more devices than are visible.
  """
  available = jax.devices()
  num_devices = config_check.check_field(
    'train.num_devices', num_devices, where='train.num_devices'
  )
  if num_devices > len(available):
    raise errors.ConfigError(
      f'train.num_devices={num_devices}, but {len(available)} device(s) are '
      'visible (0 means all)'
    )
  devices = available if num_devices == 0 else available[:num_devices]
  return make_mesh(devices) if len(devices) > 1 else None


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array."""
  return NamedSharding(mesh, PartitionSpec())


def data_sharding(mesh: Mesh) -> NamedSharding:
  """The leading axis split over ``'data'``, the others whole."""
  return NamedSharding(mesh, PartitionSpec(AXIS))


def _put(x: Any, sharding: NamedSharding, process_local: bool) -> jax.Array:
  if jax.process_count() == 1:
    return jax.device_put(x, sharding)
  if process_local:
    return jax.make_array_from_process_local_data(sharding, np.asarray(x))
  host = np.asarray(x)
  return jax.make_array_from_callback(host.shape, sharding, lambda i: host[i])


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every array leaf of ``tree`` whole on every device of ``mesh``.

  In a multi-process run every process must pass the same values.

  Args:
    tree: a pytree of arrays (e.g. a `train.TrainState`).
    mesh: the mesh.

  Returns:
    The same pytree with replicated `jax.Array` leaves.
  """
  sharding = replicated_sharding(mesh)
  return jax.tree.map(lambda x: _put(x, sharding, False), tree)


def pad_batch_rows(batch: dict[str, Any], multiple: int) -> dict[str, Any]:
  """Appends all-padding rows so the batch size is a multiple of ``multiple``.

  New rows are zeros with ``mask`` False, so they add nothing to the loss,
  its normalisation (the count of real steps) or the gradient. With the
  standard likelihood and no dropout, a padded batch trains exactly like the
  unpadded one; with dropout (``rnn_depth >= 2``) or the Sample Mean Loss the
  random draws depend on the batch shape, so they differ from the unpadded
  batch's (equally valid, not bit-identical).

  Args:
    batch: ``{'observations': [B, T, D], 'mask': bool[B, T], ...}``; every
      value has the batch axis first.
    multiple: the device count.

  Returns:
    The batch with ``ceil(B / multiple) * multiple`` rows (unchanged, not
    copied, when already divisible).

  Raises:
    ValueError: the batch has no ``'mask'`` entry.
  """
  if 'mask' not in batch:
    raise ValueError("only a batch with a 'mask' entry can be padded")
  rows = len(batch['mask'])
  extra = -rows % multiple
  if extra == 0:
    return batch
  return {
    k: np.concatenate(
      [np.asarray(v), np.zeros((extra,) + v.shape[1:], v.dtype)]
    )
    for k, v in batch.items()
  }


def shard_batch(
  batch: Any,
  mesh: Mesh,
  *,
  pad: bool = False,
  process_local: bool = False,
) -> Any:
  """Splits the leading (batch) axis of every leaf over the mesh's devices.

  Args:
    batch: a pytree of host or device arrays with a common leading axis B
      (the global batch; with ``process_local``, this process's rows).
    mesh: from `make_mesh`.
    pad: when B is not divisible by the device count, append all-padding
      rows (needs a dict batch with a boolean ``'mask'``; see
      `pad_batch_rows`) instead of raising.
    process_local: multi-process runs only: ``batch`` holds this process's
      rows, and the global batch is the concatenation over processes.

  Returns:
    The batch as `jax.Array` leaves sharded with ``PartitionSpec('data')``.

  Raises:
    ValueError: B is not divisible by the number of devices (without
      ``pad``), or the leaves disagree on B.
  """
  devices = mesh.devices.size
  if process_local:
    devices = sum(
      d.process_index == jax.process_index() for d in mesh.devices.flat
    )
  if pad and devices > 1:
    batch = pad_batch_rows(batch, devices)
  leaves = jax.tree.leaves(batch)
  sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
  if len(sizes) != 1 or None in sizes:
    raise ValueError(
      f'every batch entry needs the same leading batch axis, got sizes {sizes}'
    )
  (rows,) = sizes
  if rows % devices:
    raise ValueError(
      f'batch size {rows} is not divisible by the {devices} devices of the '
      f'mesh: use a multiple of {devices} (train.batch_size), set '
      'train.num_devices, or pass pad=True to add masked rows'
    )
  sharding = data_sharding(mesh)
  return jax.tree.map(lambda x: _put(x, sharding, process_local), batch)


def to_host(tree: Any) -> Any:
  """NumPy copies of a pytree of (possibly multi-process) arrays.

  With one process this is ``jax.device_get``. With several, a replicated
  array is read from a local device, and a sharded one is gathered from all
  processes (``process_allgather``; every process must call this).
  """
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils

  def get(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if x.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
      return multihost_utils.process_allgather(x, tiled=True)
    return jax.device_get(x)

  return jax.tree.map(get, tree)
