"""Flag conventions every jaxcxr tool's entry shares (absl): multi-host flags and quiet logs.

Each tool (`jaxcxr.train`, `jaxcxr.evaluate`, `jaxcxr.audit`, `jaxcxr.models`,
`jaxcxr.weights.convert_checkpoint`) defines its flags in a `define_flags()` called only when it
runs as a program, so that importing a module never defines flags; tools that run on several
hosts add `define_multihost_flags()` and call `init_multihost()` first thing in `main`.
"""

from __future__ import annotations

import logging as std_logging

from absl import flags, logging


def define_multihost_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """`--coordinator_address`, `--num_processes`, `--process_id` and `--multihost`."""
  flags.DEFINE_string(
    "coordinator_address",
    None,
    "host:port of process 0 for multi-process runs (with "
    "--num_processes and --process_id); omit on SLURM/TPU pods and pass --multihost.",
    flag_values=flag_values,
  )
  flags.DEFINE_integer(
    "num_processes", None, "Number of processes in a multi-process run.", flag_values=flag_values
  )
  flags.DEFINE_integer(
    "process_id", None, "This process's id in a multi-process run.", flag_values=flag_values
  )
  flags.DEFINE_bool(
    "multihost",
    False,
    "Call jax.distributed.initialize() with auto-detection.",
    flag_values=flag_values,
  )


def init_multihost(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Starts `jax.distributed` when the multi-host flags ask for it (before any JAX computation)."""
  if flag_values.coordinator_address or flag_values.multihost:
    from jaxcxr import sharding  # pylint: disable=g-import-not-at-top  # Imports JAX.

    sharding.initialize_distributed(
      flag_values.coordinator_address, flag_values.num_processes, flag_values.process_id
    )


class QuietCheckpointLogs(std_logging.Filter):
  """Drops orbax's per-save INFO chatter (dozens of lines per checkpoint); keeps its warnings."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname


def quiet_checkpoint_logs() -> None:
  """Installs `QuietCheckpointLogs` on absl's log handler."""
  logging.get_absl_handler().addFilter(QuietCheckpointLogs())
