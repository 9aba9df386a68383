"""Shared test fixtures: paths to the real shared data and a prepared tiny synthetic dataset."""

from __future__ import annotations

import os
import pathlib
import sys

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
  # The HTML report (figures, heat-map gallery) costs more than such a run; tests/test_report.py
  # turns it on where it is the subject.
  c.report.html = False
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


@pytest.fixture(scope="session")
def tiny_run(tfds_dir, tmp_path_factory) -> str:
  """One trained tiny quick-start run per session (6 steps, 32 px), for the tools that read a
  run's workdir (predict, export, markers). Its test split is written out as PNG files under
  `WORKDIR/test_pngs/<index>.png` (lossless: the pixels the eval pipeline decoded)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  from jaxcxr import inference, train  # pylint: disable=g-import-not-at-top
  from jaxcxr.data import splits  # pylint: disable=g-import-not-at-top

  workdir = tmp_path_factory.mktemp("tiny_run")
  c = tiny_config(tfds_dir, eval_every_steps=3, best_monitor="val_loss")
  train.train_and_evaluate(c, str(workdir))
  test = splits.load(inference.load_run_config(str(workdir)).input).split("test")
  (workdir / "test_pngs").mkdir()
  for i in range(len(test)):
    img = np.asarray(test[i]["image"])
    Image.fromarray(img[..., 0] if img.ndim == 3 else img).save(workdir / "test_pngs" / f"{i}.png")
  return str(workdir)


def load_benchmark(name: str):
  """`benchmarks/<name>.py` as a module, for tests of a benchmark's logic (no training). The
  script imports benchmarks/common.py as `common`, as it does when run from its folder."""
  import importlib.util  # pylint: disable=g-import-not-at-top

  if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))
  spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
