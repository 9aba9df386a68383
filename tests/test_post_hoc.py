"""Temperature and thresholds fitted on validation at the end of training, applied to test."""

import json
import os

import numpy as np
import pytest

from jaxcxr import evaluate, post_hoc, train
from jaxcxr.evaluators import classification
from tests.conftest import tiny_config


def test_parse_operating_point():
  assert post_hoc.parse_operating_point("youden") == {"rule": "youden", "per_class_target": {}}
  assert post_hoc.parse_operating_point("youden, covid19>=0.95") == {
    "rule": "youden",
    "per_class_target": {"covid19": 0.95},
  }
  assert post_hoc.parse_operating_point("sensitivity>=0.9")["target_sensitivity"] == 0.9
  for bad in ("max_f1", "covid19>=1.5", "covid19=0.9"):
    with pytest.raises(ValueError, match="operating_point"):
      post_hoc.parse_operating_point(bad)


def _json(path):
  with open(path) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def run(tfds_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("post_hoc")
  c = tiny_config(tfds_dir)
  c.report.bootstrap = 200
  c.report.operating_point = "youden,covid19>=0.9"
  train.train_and_evaluate(c, str(workdir))
  return c, workdir


def test_fitted_on_val_saved_and_applied_to_test(run):
  _, workdir = run
  temp = _json(workdir / "calibration" / "temperature.json")
  points = _json(workdir / "calibration" / "operating_points.json")
  assert temp["fitted_on"] == "val" and temp["num_examples"] == 8
  assert temp["nll_after"] <= temp["nll_before"] + 1e-9  # The fit never worsens val NLL.
  assert points["fitted_on"] == "val" and points["scores"] == post_hoc.SCORES_SCALED
  assert points["classes"]["covid19"]["rule"] == "sensitivity>=0.9"
  assert post_hoc.load(str(workdir)).temperature.temperature == temp["temperature"]
  test = _json(workdir / "eval" / "test.json")
  scaled = test["calibration_scaled"]
  assert scaled["temperature"] == temp["temperature"] and scaled["fitted_on"] == "val"
  assert {"brier", "nll", "ece"} <= set(scaled) and {"brier", "nll"} <= set(test["calibration"])
  ops = test["operating_points"]
  assert ops["fitted_on"] == "val" and ops["bootstrap"]["n_resamples"] == 200
  for name, entry in ops["classes"].items():
    assert entry["threshold"] == points["classes"][name]["threshold"]
    assert {"sensitivity", "sensitivity_ci95", "specificity", "specificity_ci95"} <= set(entry)
  # The validation report says it was fitted there instead of scoring itself in-sample.
  val = _json(workdir / "eval" / "val.json")
  assert "operating_points" not in val and "fitted on this split" in val["post_hoc"]["reason"]


def test_shuffled_test_labels_leave_temperature_and_thresholds_unchanged(run, monkeypatch):
  c, workdir = run
  before = {
    n: (workdir / "calibration" / n).read_text() for n in os.listdir(workdir / "calibration")
  }
  test_before = _json(workdir / "eval" / "test.json")
  real = classification.predict_split

  def shuffled_test_labels(ctx, state, source, **kwargs):
    out = real(ctx, state, source, **kwargs)
    if source.name == "test":
      out["label"] = np.random.default_rng(1).permutation(out["label"])
      out["label"] = (out["label"] + 1) % 3  # Permuted and changed: no test label stays.
    return out

  monkeypatch.setattr(classification, "predict_split", shuffled_test_labels)
  # Restores the run and re-runs its final reports end to end (fit on val, apply to test).
  evaluate.evaluate(c, str(workdir))
  after = {
    n: (workdir / "calibration" / n).read_text() for n in os.listdir(workdir / "calibration")
  }
  assert after == before
  test_after = _json(workdir / "eval" / "test.json")
  # The test figures did see the new labels (so the test can tell a leak from a no-op).
  assert test_after["calibration_scaled"]["nll"] != test_before["calibration_scaled"]["nll"]
  for name, entry in test_after["operating_points"]["classes"].items():
    assert entry["threshold"] == test_before["operating_points"]["classes"][name]["threshold"]


def test_without_a_validation_split_nothing_is_fitted(run, tmp_path):
  c, workdir = run
  c = tiny_config(c.input.data_dir, val_split="", eval_splits=("test",))
  results = evaluate.evaluate(c, str(workdir))
  note = results["test"]["post_hoc"]
  assert note["applied"] is False and "val_split is empty" in note["reason"]
  assert "never on test" in note["reason"]
  assert "operating_points" not in results["test"]
  assert not os.listdir(workdir / "calibration")  # The stale files of the run with val are gone.


def test_an_unknown_class_in_the_operating_point_is_refused_before_training(tfds_dir, tmp_path):
  c = tiny_config(tfds_dir)
  c.report.operating_point = "covid>=0.95"
  with pytest.raises(ValueError, match=r"names \['covid'\]"):
    train.train_and_evaluate(c, str(tmp_path))


def test_validate_refuses_bad_report_keys():
  from jaxcxr import config_lib

  c = config_lib.base_config()
  c.total_steps = 1
  c.report.operating_point = "covid19=0.95"
  with pytest.raises(ValueError, match="operating_point"):
    config_lib.validate(c)
  c = config_lib.base_config()
  c.total_steps = 1
  with c.report.ignore_type():  # As a config rebuilt from JSON could hold it.
    c.report.html = 1
  with pytest.raises(ValueError, match=r"config.report.html=1: expected a bool"):
    config_lib.validate(c)
