"""JAX's persistent compilation cache, on by default in a per-user cache directory.

A ResNet-50 train step takes seconds to tens of seconds to compile on every run of the CLI;
with JAX's persistent compilation cache a later process with the same program, shapes, jaxlib
and device loads the executable from disk instead (see JAX's "Persistent compilation cache"
documentation). ``import jaxcxr`` calls :func:`enable` once:

* the directory is ``$JAXCXR_COMPILATION_CACHE_DIR`` if set, else
  ``$XDG_CACHE_HOME/jaxcxr/jax_compilation_cache`` (``~/.cache/jaxcxr/...``);
* a directory the user already gave JAX (``JAX_COMPILATION_CACHE_DIR`` or
  ``jax.config.update('jax_compilation_cache_dir', ...)``) is left as it is;
* ``JAXCXR_COMPILATION_CACHE=0`` (or ``off``/``false``/``no``) turns it off.

Only programs that took at least JAX's ``jax_persistent_cache_min_compile_time_secs`` (1 s by
default) to compile are written, so the many tiny eager kernels are not.
"""

from __future__ import annotations

import os

import jax

__all__ = ["ENV_DIR", "ENV_SWITCH", "default_dir", "enable"]

ENV_SWITCH = "JAXCXR_COMPILATION_CACHE"
ENV_DIR = "JAXCXR_COMPILATION_CACHE_DIR"
_OFF = ("0", "off", "false", "no")


def default_dir() -> str:
  """``$JAXCXR_COMPILATION_CACHE_DIR``, else ``$XDG_CACHE_HOME/jaxcxr/jax_compilation_cache``."""
  return user_cache_dir("jax_compilation_cache", ENV_DIR)


def user_cache_dir(name: str, env_var: str) -> str:
  """``$env_var`` if set, else ``$XDG_CACHE_HOME/jaxcxr/<name>`` (``~/.cache/jaxcxr/<name>``):
  where jaxcxr keeps what it can rebuild (compiled programs, prepared images)."""
  if os.environ.get(env_var):
    return os.path.expanduser(os.environ[env_var])
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "jaxcxr", name)


def enable(path: str | None = None) -> str | None:
  """Points JAX's persistent compilation cache at ``path`` (default: :func:`default_dir`).

  Args:
      path: cache directory; created if missing.

  Returns:
      The directory in use, or ``None`` when ``$JAXCXR_COMPILATION_CACHE`` switches it off.
  """
  if os.environ.get(ENV_SWITCH, "").strip().lower() in _OFF:
    return None
  current = jax.config.jax_compilation_cache_dir
  if current and path is None:
    return current  # The user's own setting wins.
  path = path or default_dir()
  os.makedirs(path, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", path)
  return path
