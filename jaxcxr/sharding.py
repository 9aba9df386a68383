"""Device mesh, shardings and multi-host helpers.

jaxcxr uses data parallelism through `jax.jit` with `NamedSharding` over a `('data',)` mesh of all
devices (docs/design.md): the batch is split along its first axis, parameters and optimizer state
are replicated. Because the whole train step is one jitted SPMD program, batch-norm statistics and
the mean loss are computed over the *global* batch, so an N-device step equals a 1-device step on
the same global batch (tests/test_sharding.py checks this).

Multi-host: every process runs the same program, reads its own shard of the data and assembles
global arrays with `jax.make_array_from_process_local_data`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> None:
  """Calls `jax.distributed.initialize`, with explicit arguments or cluster auto-detection.

  With no arguments JAX detects SLURM, TPU pods and the like from the environment. For two local
  CPU processes (the test setup) pass the coordinator address and ids; CPU collectives then go
  through gloo.
  """
  if coordinator_address:
    # Cross-process collectives on CPU need an implementation; gloo ships with jaxlib. The flag
    # only concerns the CPU backend (and must be set before any backend starts).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator_address=coordinator_address,
    num_processes=num_processes,
    process_id=process_id,
  )


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D `('data',)` mesh over `devices` (default: all devices of all processes)."""
  devices = list(devices if devices is not None else jax.devices())
  # Auto axes keep classic sharding propagation inside jit; the batch sharding is the only
  # annotation a data-parallel step needs.
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
  """The per-process share of a global batch, with a clear error when it does not divide."""
  n_dev = mesh.devices.size
  if global_batch_size % n_dev:
    raise ValueError(
      f"config.input.batch_size={global_batch_size} must be divisible by the number of devices "
      f"({n_dev}) so that every device gets the same number of examples."
    )
  return global_batch_size // jax.process_count()


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Turns this process's part of a batch into global arrays sharded along `data`."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree (e.g. the train state) on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def to_local(tree: Any, mesh: Mesh) -> Any:
  """This process's rows of a pytree of batch-sharded global arrays, as host numpy, in the order
  `shard_batch` took them (no collective: the inverse of `shard_batch`)."""
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  local = multihost_utils.global_array_to_host_local_array(tree, mesh, P(DATA_AXIS))
  return jax.tree.map(np.asarray, local)


def process_allgather(tree: Any) -> Any:
  """Gathers a pytree into host numpy on every process: global (possibly batch-sharded) arrays
  whole, process-local arrays concatenated along their first axis in process order."""
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  return jax.tree.map(lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), tree)


def sync(name: str) -> None:
  """A barrier across processes (no-op with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    multihost_utils.sync_global_devices(name)
