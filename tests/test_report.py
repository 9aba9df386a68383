"""The run report: every figure it references exists and is non-empty; scalars and stages read."""

import os
import re

import numpy as np
import pytest

from jaxcxr import evaluate, report, train
from tests.conftest import REPO, tiny_config

KERMANY = str(REPO / "tfds_builders" / "chest_xray_pneumonia" / "dummy_data")


def _images(page: str) -> list[str]:
  return re.findall(r'<img src="([^"]+)"', page)


def test_read_scalars_and_stage_boundaries(tmp_path):
  from tensorboardX import SummaryWriter

  w = SummaryWriter(str(tmp_path))
  for step, stage in [(1, 0), (2, 0), (3, 1), (4, 1), (5, 2)]:
    w.add_scalar("train/loss", 1.0 / step, step)
    w.add_scalar("train/stage", stage, step)
  w.close()
  scalars = report.read_scalars(str(tmp_path))
  steps, loss = scalars["train/loss"]
  assert steps.tolist() == [1, 2, 3, 4, 5] and np.allclose(loss, 1.0 / steps)
  assert report.stage_boundaries(scalars) == [(3, 1), (5, 2)]


@pytest.fixture(scope="module")
def run(tfds_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("report_run")
  c = tiny_config(tfds_dir, eval_every_steps=3)
  c.report.bootstrap = 200
  train.train_and_evaluate(c, str(workdir))  # config.report.html: the report is written at the end.
  return workdir


def test_report_written_at_the_end_of_training_with_every_figure(run):
  page = (run / "report.html").read_text()
  images = _images(page)
  assert images, "the report references no figure"
  for rel in images:
    path = run / rel
    assert path.is_file() and path.stat().st_size > 1000, rel
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", rel
  names = {os.path.basename(r) for r in images}
  for split in ("val", "test"):
    assert {f"{split}_roc_pr.png", f"{split}_reliability.png", f"{split}_confusion.png"} <= names
  assert "test_reliability_scaled.png" in names  # After the temperature fitted on val.
  assert "val_reliability_scaled.png" not in names  # Not shown in-sample on the fitting split.
  assert "training.png" in names
  assert "95% patient-bootstrap intervals" in page and "Thresholds chosen on <b>val</b>" in page


def test_external_evaluations_side_by_side(run, tmp_path):
  evaluate.evaluate_external(
    str(run), "chest_xray_pneumonia:test", str(tmp_path / "ext"), manual_dir=KERMANY
  )
  page = (run / report.build(str(run))).read_text()
  assert "external: chest_xray_pneumonia:test (ext)" in page
  assert "[&#x27;covid19&#x27;] have no positives here" in page
  for rel in _images(page):
    assert (run / rel).is_file() and (run / rel).stat().st_size > 1000, rel
  assert any("external0_roc_pr.png" in r for r in _images(page))
