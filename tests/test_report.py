"""The run report: every figure it references exists and is non-empty; scalars and stages read."""

import json
import os
import re
import shutil

import numpy as np
import pytest

from jaxcxr import evaluate, gallery, report, train
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
  c = tiny_config(tfds_dir, eval_every_steps=3, **{"report.html": True})
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
  assert _tiles(page), "no heat-map gallery at the end of training (config.report.gallery)"
  assert "95% patient-bootstrap intervals" in page and "Thresholds chosen on <b>val</b>" in page


def test_external_evaluations_side_by_side(run, tmp_path):
  evaluate.evaluate_external(
    str(run), "chest_xray_pneumonia:test", str(tmp_path / "ext"), manual_dir=KERMANY
  )
  page = (run / report.build(str(run), gallery=0)).read_text()
  assert "external: chest_xray_pneumonia:test (ext)" in page
  assert "[&#x27;covid19&#x27;] have no positives here" in page
  for rel in _images(page):
    assert (run / rel).is_file() and (run / rel).stat().st_size > 1000, rel
  assert any("external0_roc_pr.png" in r for r in _images(page))


def _tiles(page: str) -> list[tuple[str, int, int, str]]:
  """`(kind, split index, class, img src)` of every gallery tile of the page."""
  return [
    (kind, int(i), int(c), src)
    for kind, i, c, src in re.findall(
      r'<figure class="tile \w+" data-kind="(\w+)" data-index="(\d+)" data-class="(\d+)">'
      r'<img src="([^"]+)"',
      page,
    )
  ]


def test_select_most_confident_correct_and_wrong_per_class():
  labels = np.array([0, 0, 0, 1, 1, 2])
  probs = np.array(
    [[0.9, 0.1, 0], [0.6, 0.4, 0], [0.2, 0.7, 0.1], [0.3, 0.7, 0], [0.1, 0.1, 0.8], [0.5, 0.4, 0.1]]
  )
  got = {}
  for t in gallery.select(labels, probs, 2):
    got.setdefault((t["class"], t["kind"]), []).append((t["row"], t["target"]))
  assert got[(0, "correct")] == [(0, 0), (1, 0)]  # Most confident first.
  assert got[(0, "wrong")] == [(2, 1)]
  assert got[(1, "correct")] == [(3, 1)] and got[(1, "wrong")] == [(4, 2)]
  assert (2, "correct") not in got and got[(2, "wrong")] == [(5, 0)]
  assert [t["row"] for t in gallery.select(labels, probs, 1) if t["class"] == 0] == [0, 2]
  multi = gallery.select(np.array([[1, 0], [1, 1], [0, 1]]), np.array([[0.9, 0.8], [0.3, 0.6],
                         [0.2, 0.45]]), 5)  # fmt: skip
  assert [(t["class"], t["kind"], t["row"]) for t in multi] == [
    (0, "correct", 0), (0, "wrong", 1), (1, "correct", 1), (1, "wrong", 0), (1, "wrong", 2),
  ]  # fmt: skip


def test_heat_map_gallery_matches_the_test_predictions(tiny_run):
  run = tiny_run
  page = open(report.build(run, gallery=2)).read()
  assert "<h2>Heat maps (test)</h2>" in page
  tiles = _tiles(page)
  assert tiles, "the gallery shows no tile"
  with np.load(os.path.join(run, "eval", "test_predictions.npz")) as z:
    by_index = {
      int(i): (int(y), p) for i, y, p in zip(z["index"], z["label"], z["probs"], strict=True)
    }
  names = json.load(open(os.path.join(run, "data_splits.json")))["class_names"]
  seen = set()
  for kind, index, c, src in tiles:
    path = os.path.join(run, src)
    assert os.path.getsize(path) > 0 and open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n", src
    true, probs = by_index[index]
    assert true == c  # Grouped by the true class.
    assert (probs.argmax() == true) == (kind == "correct"), (kind, index, probs, true)
    caption = f"true {names[true]}; predicted {names[probs.argmax()]} (p = {probs.max():.3f})"
    assert caption in page
    seen.add((c, kind, index))
  assert len(seen) == len(tiles)  # No image twice in a group.
  for c in range(len(names)):  # Up to K of each: all the class has when it has fewer.
    for kind in gallery.KINDS:
      have = sum(
        (y == c) and ((p.argmax() == y) == (kind == "correct")) for y, p in by_index.values()
      )
      assert sum(t[0] == kind and t[2] == c for t in tiles) == min(2, have)
  index = json.load(open(os.path.join(run, gallery.GALLERY_DIR, "index.json")))
  assert index["max_prob_diff"] < 1e-4  # The images read again are the ones evaluated.
  assert sorted(os.listdir(os.path.join(run, gallery.GALLERY_DIR))) == sorted(
    [os.path.basename(t[3]) for t in tiles] + ["index.json"]
  )

  off = open(report.build(run, gallery=0)).read()
  assert "Gallery off" in off and not _tiles(off) and "test_roc_pr.png" in off


def test_report_without_the_data_says_why_the_gallery_is_missing(tiny_run, tmp_path):
  run = tmp_path / "run"
  shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("report*", "test_pngs"))
  config = json.loads((run / "config.json").read_text())
  config["input"]["data_dir"] = str(tmp_path / "gone")  # The prepared data removed.
  (run / "config.json").write_text(json.dumps(config))
  page = (run / report.build(str(run), gallery=2)).read_text()
  assert "No heat-map gallery: FileNotFoundError" in page and "is not prepared in" in page
  assert not _tiles(page) and "test_confusion.png" in page
  for rel in _images(page):
    assert (run / rel).stat().st_size > 1000, rel
