"""`jaxcxr.evaluate --data`: a trained run scored on another dataset (Kermany's dummy data)."""

import json
import os
import subprocess
import sys

import pytest

from jaxcxr import evaluate, train
from jaxcxr.data import classes
from tests.conftest import REPO, tiny_config

KERMANY = str(REPO / "tfds_builders" / "chest_xray_pneumonia" / "dummy_data")
# Kermany's dummy data: 14 readable images (train 8 + 1 corrupt, val 2, test 4).


@pytest.fixture(scope="module")
def run(tfds_dir, tmp_path_factory):
  """A tiny synthetic_cxr run (normal, pneumonia, covid19) with its saved temperature/thresholds."""
  workdir = tmp_path_factory.mktemp("external_run")
  c = tiny_config(tfds_dir)
  c.report.bootstrap = 200
  train.train_and_evaluate(c, str(workdir))
  return workdir


@pytest.fixture(scope="module")
def ext_dir(tmp_path_factory):
  """One evaluation data dir for the module (each dummy build is made once)."""
  return str(tmp_path_factory.mktemp("ext_tfds"))


def test_resolve_class_map_refuses_unknown_classes_and_counts_drops():
  run = ["normal", "pneumonia", "covid19"]
  assert classes.resolve_class_map("k", ["normal", "pneumonia"], run, {}) == (
    {"normal": "normal", "pneumonia": "pneumonia"},
    [],
  )
  with pytest.raises(ValueError, match=r"\['bacterial', 'viral'\].*bacterial=-,viral=-"):
    classes.resolve_class_map("k3", ["normal", "bacterial", "viral"], run, {})
  cmap, dropped = classes.resolve_class_map(
    "k3", ["normal", "bacterial", "viral"], run, {"bacterial": "pneumonia", "viral": "-"}
  )
  assert cmap == {"normal": "normal", "bacterial": "pneumonia"} and dropped == ["viral"]
  with pytest.raises(ValueError, match="not classes of the run"):
    classes.resolve_class_map("k", ["normal"], run, {"normal": "healthy"})
  with pytest.raises(ValueError, match="not classes of k"):
    classes.resolve_class_map("k", ["normal"], run, {"Normal": "normal"})


def test_kermany_test_split_scored_with_the_runs_calibration(run, ext_dir, tmp_path):
  own = (run / "eval" / "test.json").read_text()
  out = tmp_path / "kermany_test"
  r = evaluate.evaluate_external(
    str(run), "chest_xray_pneumonia/2class:test", str(out), manual_dir=KERMANY, data_dir=ext_dir
  )
  saved = json.loads((out / "evaluation.json").read_text())
  assert saved["num_examples"] == r["num_examples"] == 4
  assert saved["class_names"] == ["normal", "pneumonia", "covid19"]
  assert saved["external"]["images_per_run_class"] == {"normal": 2, "pneumonia": 2, "covid19": 0}
  assert "accuracy_ci95" in saved and saved["bootstrap"]["n_resamples"] == 200
  # The run's saved temperature and val-chosen thresholds are applied, not refitted.
  temp = json.loads((run / "calibration" / "temperature.json").read_text())
  assert saved["calibration_scaled"]["temperature"] == temp["temperature"]
  points = json.loads((run / "calibration" / "operating_points.json").read_text())
  for name, entry in saved["operating_points"]["classes"].items():
    assert entry["threshold"] == points["classes"][name]["threshold"]
  # covid19 is absent: AUROC is undefined and the report says why; specificity is defined.
  assert saved["auroc_macro"] is None and "covid19" in saved["auroc_note"]
  notes = saved["external"]["undefined"]
  assert "sensitivity (recall) of ['covid19']" in notes and "specificity of ['covid19']" in notes
  assert saved["operating_points"]["classes"]["covid19"]["specificity"] is not None
  assert (out / "predictions.npz").exists()
  assert (run / "eval" / "test.json").read_text() == own  # The run's own report is untouched.
  index = json.loads((run / "external" / "index.json").read_text())
  assert {"out": str(out), "data": "chest_xray_pneumonia/2class", "split": "test"} in index


def test_unknown_classes_are_refused_or_mapped_and_all_images(run, ext_dir, tmp_path):
  with pytest.raises(ValueError, match=r"\['bacterial', 'viral'\]"):
    evaluate.evaluate_external(
      str(run), "chest_xray_pneumonia/3class", str(tmp_path / "a"), manual_dir=KERMANY,
      data_dir=ext_dir,
    )  # fmt: skip
  r = evaluate.evaluate_external(
    str(run), "chest_xray_pneumonia/3class", str(tmp_path / "b"), manual_dir=KERMANY,
    data_dir=ext_dir, all_images=True, class_map={"bacterial": "pneumonia", "viral": "-"},
  )  # fmt: skip
  ext = r["external"]
  assert ext["split"] == "all" and sorted(ext["splits_read"]) == ["test", "train", "val"]
  assert ext["left_out_classes"] == ["viral"]
  dropped = sum(ext["left_out_images"]["left_out_by_class_map"].values())
  assert dropped > 0 and r["num_examples"] + dropped == 14  # Every record: scored or counted.


def test_out_and_data_dir_may_not_be_the_runs_own(run, tfds_dir):
  with pytest.raises(ValueError, match="own eval folder"):
    evaluate.evaluate_external(str(run), "chest_xray_pneumonia", str(run / "eval"))
  with pytest.raises(ValueError, match="training data dir"):
    evaluate.evaluate_external(
      str(run), "chest_xray_pneumonia", str(run / "x"), data_dir=tfds_dir, manual_dir=KERMANY
    )


def test_cli_scores_a_split_into_out(run, ext_dir, tmp_path):
  out = tmp_path / "cli"
  cmd = [
    sys.executable, "-m", "jaxcxr.evaluate", f"--workdir={run}", "--data=chest_xray_pneumonia:val",
    f"--manual_dir={KERMANY}", f"--data_dir={ext_dir}", f"--out={out}", "--class_map=pneumonia=-",
  ]  # fmt: skip
  env = dict(os.environ, PYTHONPATH=str(REPO))
  p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
  assert p.returncode == 0, p.stderr[-3000:]
  saved = json.loads((out / "evaluation.json").read_text())
  assert saved["num_examples"] == 1 and saved["external"]["left_out_classes"] == ["pneumonia"]
  bad_cmd = [a for a in cmd if not a.startswith(("--data=", "--out=", "--class_map="))]
  bad = subprocess.run(
    bad_cmd + ["--data=chest_xray_pneumonia/3class:val", f"--out={out}2"],
    capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
  )  # fmt: skip
  assert bad.returncode == 2 and "does not know" in bad.stderr
