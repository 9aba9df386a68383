"""Shared test fixtures: paths to the real shared data and a prepared tiny synthetic dataset."""

from __future__ import annotations

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def shared_data_dir() -> pathlib.Path:
  """`../shared/data` beside the repository, or $JAXCXR_SHARED_DATA."""
  return pathlib.Path(os.environ.get("JAXCXR_SHARED_DATA", REPO.parent / "shared" / "data"))


def require_shared(sub: str) -> pathlib.Path:
  path = shared_data_dir() / sub
  if not path.is_dir():
    pytest.skip(
      f"real data not found at {path} (set JAXCXR_SHARED_DATA); skipping", allow_module_level=False
    )
  return path


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory) -> str:
  """One TFDS data dir per test session, so each dataset is prepared once."""
  return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(data_dir: str, **overrides):
  """The quick-start recipe shrunk for tests: synthetic_cxr/tiny (24/8/8), 32 px, a few steps."""
  from configs import quickstart  # pylint: disable=g-import-not-at-top

  c = quickstart.get_config()
  c.input.data = "synthetic_cxr/tiny"
  c.input.data_dir = data_dir
  c.input.image_size = 32
  c.input.batch_size = 8
  c.input.num_threads = 2
  c.num_epochs = 0.0
  c.total_steps = 6
  c.schedule.warmup_steps = 2
  c.eval_every_steps = 0
  c.checkpoint_every_steps = 2
  c.log_every_steps = 1
  c.progress_bar = False
  return set_keys(c, **overrides)


def set_keys(c, **overrides):
  """Sets dotted keys (`'input.splits.method'`) of a ConfigDict; returns it."""
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c
