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
    pytest.skip(f"real data not found at {path} (set JAXCXR_SHARED_DATA); skipping", allow_module_level=False)
  return path


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory) -> str:
  """One TFDS data dir per test session, so each dataset is prepared once."""
  return str(tmp_path_factory.mktemp("tfds"))
