"""Flag conventions every jaxcxr tool's entry shares (absl): multi-host flags and quiet logs.

Each tool (`jaxcxr.train`, `jaxcxr.evaluate`, `jaxcxr.predict`, `jaxcxr.export`,
`jaxcxr.markers`, `jaxcxr.audit`, `jaxcxr.models`, `jaxcxr.weights.convert_checkpoint`) defines
its flags in a `define_flags()` called only when it runs as a program, so that importing a
module never defines flags; tools that run on several hosts add `define_multihost_flags()` and
call `init_multihost()` first thing in `main`.

Each tool starts with `cli.run(main)` instead of `absl.app.run(main)`: it quiets third-party
start-up noise (`quiet_logs`), appends the overridable config keys to `--help`
(`config_keys_help`) and reports a user error as its message alone with exit status 2
(`is_user_error`; `--verbose` shows the traceback), while a bug keeps its traceback.
`phase(...)` logs what a long silent step is doing and how long it took.
"""

from __future__ import annotations

import ast
import contextlib
import logging as std_logging
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from absl import app, flags, logging


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


# --- user errors ----------------------------------------------------------------------------------


class UserError(Exception):
  """A mistake in what the user asked for, reported as its message alone (exit status 2).

  A subclass may set another `exit_code` (jaxcxr.training.guards: a diverged run 4, a preempted
  one 75).
  """

  exit_code = 2


# Where a deliberate `raise` of one of `_USER_ERROR_TYPES` is about the user's input: jaxcxr's own
# code (its messages name the key, file or value and what was expected), the recipes and builders,
# ml_collections (locked-config "Did you mean ...?" and type errors) and absl's flag parsing. The
# same types raised inside JAX, Flax, NumPy, ... (a shape mismatch) or by a subscript or attribute
# access in jaxcxr (not a `raise` statement) are bugs and keep their traceback.
_USER_ERROR_TYPES = (ValueError, LookupError, AttributeError, TypeError, FileNotFoundError)
_USER_ERROR_PATHS = re.compile(
  r"[/\\](jaxcxr|configs|tfds_builders|ml_collections|absl[/\\]flags)[/\\]"
)
# TFDS' own check that a dataset's manual directory exists is an AssertionError with a good message.
_TFDS_MANUAL_DIR = re.compile(
  r"tensorflow_datasets[/\\]core[/\\]download[/\\]download_manager\.py$"
)


def is_user_error(exc: BaseException) -> bool:
  """Whether `exc` is a user's mistake (bad key, value or path) rather than a bug.

  `UserError` anywhere; otherwise a ValueError, LookupError, AttributeError, TypeError or
  FileNotFoundError whose innermost frame is an explicit `raise` in jaxcxr, `configs/`,
  `tfds_builders/`, ml_collections or absl's flags; TFDS' unknown-dataset error and its
  missing-manual-dir assertion.
  No raise site has to change for this: the config and data layers already raise these types
  with messages that name what is wrong.
  """
  if isinstance(exc, UserError):
    return True
  frames = traceback.extract_tb(exc.__traceback__)
  if not frames:
    return False
  last = frames[-1]
  if isinstance(exc, AssertionError):
    return bool(_TFDS_MANUAL_DIR.search(last.filename))
  if _is_tfds_not_found(exc):
    return True
  if not isinstance(exc, _USER_ERROR_TYPES):
    return False
  return bool(_USER_ERROR_PATHS.search(last.filename)) and (last.line or "").startswith("raise")


def _is_tfds_not_found(exc: BaseException) -> bool:
  """TFDS' unknown dataset name (checked by name: importing TFDS here would slow every tool)."""
  cls = type(exc)
  return cls.__name__ == "DatasetNotFoundError" and cls.__module__.startswith("tensorflow_datasets")


def _without_tfds_catalogue(message: str) -> str:
  """TFDS' "Dataset X not found" with its list of ~450 catalogue names replaced by jaxcxr's."""
  import pathlib  # pylint: disable=g-import-not-at-top

  builders = pathlib.Path(__file__).resolve().parents[1] / "tfds_builders"
  ours = sorted(p.name for p in builders.iterdir() if (p / "__init__.py").exists())
  lines = message.splitlines()
  if "Available datasets:" in lines:
    i = lines.index("Available datasets:")
    j = i + 1
    while j < len(lines) and lines[j].startswith("\t- "):
      j += 1
    lines[i:j] = [f"jaxcxr's datasets: {', '.join(ours)} (TFDS' catalogue: tfds.list_builders())."]
  return "\n".join(lines)


def user_error_message(exc: BaseException) -> str:
  """The text of `exc` as the user should read it, without the quoting that KeyError adds.

  ml_collections wraps a KeyError in an AttributeError (`'\\'batchsize\\'\\nDid you mean ...'`):
  unwrap nested exceptions and print the string itself, newlines included.
  """
  if _is_tfds_not_found(exc):
    return _without_tfds_catalogue(str(exc))
  while len(exc.args) == 1 and isinstance(exc.args[0], BaseException):
    exc = exc.args[0]
  if len(exc.args) == 1 and isinstance(exc.args[0], str):
    message = exc.args[0]
  else:
    message = str(exc)
  if re.fullmatch(r"'.*'|\".*\"", message, re.DOTALL):
    try:
      message = ast.literal_eval(message)
    except (ValueError, SyntaxError):
      pass
  # A locked ConfigDict lists every field of the sub-config (dozens of lines) before its "Did you
  # mean" suggestion; the suggestion alone says what to change.
  return re.sub(r' Other fields present: ".*"(?=\nDid you mean)', "", message, flags=re.DOTALL)


def _verbose(flag_values: flags.FlagValues) -> bool:
  if flag_values.is_parsed():
    return flag_values["verbose"].value or flag_values["verbosity"].value >= 1
  return any(a in ("--verbose", "--verbose=true", "--verbose=True") for a in sys.argv[1:])


# --- start-up noise -------------------------------------------------------------------------------


class QuietStartupLogs(std_logging.Filter):
  """Drops third-party start-up messages that say nothing about this run; keeps the rest.

  - JAX's `Unable to initialize backend 'tpu' ... Failed to open libtpu.so` (INFO): JAX probes for
    a TPU on every start; without one it uses the GPU or CPU, which the mesh line reports.
  - TFDS' `OpenCV is not installed ... Defaulting to PIL` (WARNING): PIL is jaxcxr's decoder.
  - apache-beam's `apitools not found, and bigquery client libraries are not installed` (WARNING):
    about Google Cloud I/O, which no jaxcxr builder uses.
  """

  DROP = (
    re.compile(r"Unable to initialize backend 'tpu'.*libtpu", re.DOTALL),
    re.compile(r"^OpenCV is not installed"),
    re.compile(r"^apitools not found"),
  )

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno >= std_logging.ERROR:
      return True
    message = record.getMessage()
    return not any(p.search(message) for p in self.DROP)


def quiet_logs() -> None:
  """Quiets TensorFlow's C++ INFO lines and installs `QuietStartupLogs` on absl's handler.

  `TF_CPP_MIN_LOG_LEVEL=1` keeps TF's warnings and errors; it is only a default (a value the user
  set wins) and takes effect because TFDS imports TensorFlow lazily, after this runs. TF 2.21's
  `oneDNN custom operations are on` line is printed before its log level is read and stays.
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
  # Records of all loggers (jax, apache_beam, absl) reach absl's handler on the root logger.
  logging.get_absl_handler().addFilter(QuietStartupLogs())


# --- what is happening ----------------------------------------------------------------------------


@contextlib.contextmanager
def phase(what: str) -> Iterator[None]:
  """Logs `what` when it starts and, with its wall time in seconds, when it ends.

  For the long silent steps of a run (preparing a dataset, building a model, compiling a step), so
  that a user sees what is happening and how long it took:

      with cli.phase("compiling the train step"):
        state, metrics = jit_train(state, batch)
  """
  logging.info("%s ...", what)
  start = time.perf_counter()
  yield
  logging.info("%s: done in %.1f s", what, time.perf_counter() - start)


# --- --help ---------------------------------------------------------------------------------------


def config_key_comments() -> dict[str, str]:
  """`{key: comment}` in the order `config_lib.base_config` sets them, read from its source.

  A key's comment is its trailing `# ...`, else the comment block just above it ("" if none).
  """
  import inspect  # pylint: disable=g-import-not-at-top

  from jaxcxr import config_lib  # pylint: disable=g-import-not-at-top

  comments: dict[str, str] = {}
  block: list[str] = []
  for line in inspect.getsource(config_lib.base_config).splitlines():
    stripped = line.strip()
    if stripped.startswith("#"):
      block.append(stripped.lstrip("# "))
      continue
    m = re.match(r"c\.([\w.]+)\s*=[^#]*?(?:#\s*(.*))?$", stripped)
    if m:
      comments[m.group(1)] = m.group(2) or " ".join(block)
    block = []
  return comments


def config_keys_help() -> str:
  """The config keys `--config.KEY=VALUE` can override, with their defaults and comments."""
  import textwrap  # pylint: disable=g-import-not-at-top

  from jaxcxr import config_lib  # pylint: disable=g-import-not-at-top

  defaults = dict(_leaves(config_lib.base_config()))
  comments = config_key_comments()
  keys = [k for k in comments if k in defaults] + [k for k in defaults if k not in comments]
  lines = [
    "",
    "Config keys (override with --config.KEY=VALUE; defaults of jaxcxr.config_lib.base_config(),",
    "which a recipe in configs/ may change; a misspelt key is an error):",
  ]
  for key in keys:
    lines.append(f"  {key} = {defaults[key]!r}")
    if comments.get(key):
      lines += textwrap.wrap(comments[key], 96, initial_indent=" " * 6, subsequent_indent=" " * 6)
  return "\n".join(lines) + "\n"


def _leaves(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
  """`(dotted key, value)` of every leaf of a ConfigDict."""
  for key, value in config.items():
    if hasattr(value, "items") and not isinstance(value, dict):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def run(
  main: Callable[[list[str]], Any],
  *,
  config_help: bool = False,
  flag_values: flags.FlagValues = flags.FLAGS,
) -> None:
  """`absl.app.run(main)` with jaxcxr's conventions (see the module docstring).

  Args:
    main: the tool's main, as for `app.run`.
    config_help: append `config_keys_help()` to `--help` (tools that take `--config`).
    flag_values: where `--verbose` is defined.
  """
  quiet_logs()
  if "verbose" not in flag_values:
    flags.DEFINE_bool(
      "verbose",
      False,
      "Show the traceback of a user error (bad config key, value or path) too.",
      flag_values=flag_values,
    )
  main_module = sys.modules["__main__"]
  if config_help:
    doc = (main_module.__doc__ or "").replace("%", "%%")
    main_module.__doc__ = doc + config_keys_help().replace("%", "%%")
  try:
    app.run(main)
  except Exception as e:  # noqa: BLE001  # Re-raised unless it is a user error.
    if not is_user_error(e) or _verbose(flag_values):
      raise
    spec = getattr(main_module, "__spec__", None)  # `python -m jaxcxr.train`: jaxcxr.train
    program = spec.name.removesuffix(".__main__") if spec else os.path.basename(sys.argv[0])
    sys.stderr.write(
      f"{program}: error: {user_error_message(e)}\n(--verbose shows the traceback)\n"
    )
    sys.exit(getattr(e, "exit_code", 2))
