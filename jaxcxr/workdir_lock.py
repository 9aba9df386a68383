"""An advisory lock on a training workdir, so that two runs never train into the same folder.

Two trainings on one workdir both resume from the same step and then race on its checkpoints:
one dies minutes later in a background save and leaves a half-written step folder behind. The
lock is a `fcntl.flock` on `WORKDIR/.lock`, which the kernel releases when its process exits,
however it exits (`kill -9` included), so a crashed run never leaves a lock that blocks the
next one. The file records who holds it (pid, host, start time) for the error message.

Where the file system offers no `flock` (some network mounts), the record alone decides: a
record of a process that is gone from this host is stale and taken over; a live one, or one
from another host (whose processes cannot be checked from here), is refused.

The lock is per process and re-entrant: a process that holds it (a notebook resuming a run,
the tests) may take it again. `hold` keeps it until `release` or the end of the process.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
from typing import Any

LOCK_FILE = ".lock"

# workdir -> open lock file, for the locks this process holds.
_held: dict[str, Any] = {}


class WorkdirLockedError(RuntimeError):
  """Another process trains into the workdir."""


def _holder(f) -> dict[str, Any]:
  f.seek(0)
  try:
    return json.loads(f.read() or "{}")
  except ValueError:
    return {}


def _describe(workdir: str, holder: dict[str, Any]) -> str:
  who = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
  return (
    f"{workdir} is in use by another training ({who}, since {holder.get('started', '?')}; lock "
    f"{os.path.join(workdir, LOCK_FILE)}). Wait for it to finish, stop it, or train into "
    "another workdir: two runs on one workdir overwrite each other's checkpoints."
  )


def _alive_here(holder: dict[str, Any]) -> bool:
  """Whether the holder may still run: a live pid on this host, or a host we cannot check."""
  if holder.get("host") != socket.gethostname():
    return bool(holder)
  try:
    os.kill(int(holder["pid"]), 0)
  except (KeyError, TypeError, ValueError, ProcessLookupError):
    return False
  except PermissionError:  # it exists, under another user
    return True
  return True


def hold(workdir: str) -> None:
  """Takes the lock on `workdir` for this process (a no-op if it holds it already).

  Raises:
    WorkdirLockedError: another live process holds it; the message names its pid and host.
  """
  workdir = os.path.abspath(workdir)
  if workdir in _held:
    return
  os.makedirs(workdir, exist_ok=True)
  f = open(os.path.join(workdir, LOCK_FILE), "a+")  # noqa: SIM115  # held past this function
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = _holder(f)
    f.close()
    raise WorkdirLockedError(_describe(workdir, holder)) from None
  except OSError as e:
    if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
      f.close()
      raise
    # No flock here: the record decides (stale if its process is gone from this host).
    holder = _holder(f)
    if holder.get("pid") != os.getpid() and _alive_here(holder):
      f.close()
      raise WorkdirLockedError(_describe(workdir, holder)) from None
  record = {
    "pid": os.getpid(),
    "host": socket.gethostname(),
    "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
  }
  f.seek(0)
  f.truncate()
  f.write(json.dumps(record) + "\n")
  f.flush()
  _held[workdir] = f


def release(workdir: str) -> None:
  """Gives the lock on `workdir` back (a no-op if this process does not hold it)."""
  f = _held.pop(os.path.abspath(workdir), None)
  if f is None:
    return
  f.seek(0)
  f.truncate()  # an empty record: nobody holds it
  f.flush()
  fcntl.flock(f, fcntl.LOCK_UN)
  f.close()
