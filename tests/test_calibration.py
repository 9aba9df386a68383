import json

import numpy as np
import pytest
from PIL import Image
from scipy import special

from jaxcxr import calibration

# Four images, three classes, worked by hand below.
LABELS = np.array([0, 1, 1, 2])
PROBS = np.array(
  [
    [0.90, 0.05, 0.05],  # right, confidence 0.90: bin 14 of 15, (13/15, 14/15]
    [0.92, 0.04, 0.04],  # wrong, confidence 0.92: bin 14
    [0.20, 0.50, 0.30],  # right, confidence 0.50: bin 8, (7/15, 8/15]
    [0.45, 0.30, 0.25],  # wrong, confidence 0.45: bin 7, (6/15, 7/15]
  ]
)


def test_ece_equals_the_hand_computed_value():
  r = calibration.expected_calibration_error(LABELS, PROBS)
  # Bin 14: accuracy 1/2, confidence 0.91 -> gap 0.41 (2 images); bin 8: 1 - 0.5; bin 7: 0.45.
  assert r["ece"] == pytest.approx((2 * 0.41 + 0.5 + 0.45) / 4)
  assert r["binning"] == "equal-width, 15 bins, top-label (max probability)"
  assert r["bins"]["count"][13] == 2 and r["bins"]["count"][7] == 1 and r["bins"]["count"][6] == 1
  assert sum(r["bins"]["count"]) == 4 and r["bins"]["accuracy"][0] is None


def test_classwise_ece_equals_the_hand_computed_value():
  # Class 0 probabilities .9, .92, .2, .45 vs 1, 0, 0, 0: bin 14 gap |0.5 - 0.91|, bin 3 (0.2) gap
  # 0.2, bin 7 (0.45) gap 0.45.
  c0 = (2 * 0.41 + 0.2 + 0.45) / 4
  # Class 1: .05, .04, .5, .3 vs 0, 1, 1, 0: bin 1 holds .05 and .04 (accuracy 1/2, conf .045).
  c1 = (2 * abs(0.5 - 0.045) + 0.5 + 0.3) / 4
  # Class 2: .05, .04, .3, .25 vs 0, 0, 0, 1: bin 1 (acc 0, conf .045), bin 5 (.3) and bin 4 (.25).
  c2 = (2 * 0.045 + 0.3 + 0.75) / 4
  r = calibration.expected_calibration_error(LABELS, PROBS, classwise=True)
  assert r["per_class"] == pytest.approx([c0, c1, c2])
  assert r["ece"] == pytest.approx((c0 + c1 + c2) / 3)
  assert "classwise" in r["binning"]


def test_brier_equals_the_hand_computed_value():
  rows = [
    0.1**2 + 0.05**2 + 0.05**2,
    0.92**2 + 0.96**2 + 0.04**2,
    0.2**2 + 0.5**2 + 0.3**2,
    0.45**2 + 0.3**2 + 0.75**2,
  ]
  assert calibration.brier_score(LABELS, PROBS) == pytest.approx(np.mean(rows))
  # Multi-label: mean over findings of the binary (p - y)^2.
  y = np.array([[1, 0], [0, 0]])
  p = np.array([[0.8, 0.3], [0.4, 0.1]])
  want = np.mean([(0.2**2 + 0.4**2) / 2, (0.3**2 + 0.1**2) / 2])
  assert calibration.brier_score(y, p) == pytest.approx(want)


def test_calibration_report_is_json_and_states_binning():
  r = calibration.calibration_report(LABELS, PROBS)
  json.dumps(r)
  assert r["nll"] == pytest.approx(-np.mean(np.log([0.9, 0.04, 0.5, 0.25])))
  assert "15 bins" in r["ece"]["binning"] and "range [0, 2]" in r["brier_definition"]


def test_reliability_diagram_writes_a_png(tmp_path):
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 300)
  probs = special.softmax(rng.normal(size=(300, 3)) * 2, axis=1)
  path = calibration.reliability_diagram(labels, probs, str(tmp_path / "r" / "val.png"), "val")
  with Image.open(path) as im:
    assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 300
  y = (rng.random((300, 4)) < 0.3).astype(int)
  calibration.reliability_diagram(
    y, special.expit(rng.normal(size=(300, 4))), str(tmp_path / "m.png")
  )
  assert (tmp_path / "m.png").stat().st_size > 1000


def planted(n, t_true, seed, num_classes=4):
  """Labels drawn from softmax(z); the model outputs z * t_true (over-confident if t_true > 1)."""
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(n, num_classes)) * 1.5
  p = special.softmax(z, axis=1)
  labels = (rng.random((n, 1)) > p.cumsum(1)).sum(1)
  return labels, z * t_true


def test_temperature_recovers_a_planted_temperature_and_lowers_nll():
  labels, logits = planted(6000, 2.5, seed=1)
  fit = calibration.fit_temperature(labels, logits=logits, split="val")
  assert fit.temperature == pytest.approx(2.5, rel=0.06)
  assert fit.nll_after < fit.nll_before - 0.1
  # From stored probabilities (log p) the fit is the same.
  probs = special.softmax(logits, axis=1)
  fit_p = calibration.fit_temperature(labels, probs=probs, split="val")
  assert fit_p.temperature == pytest.approx(fit.temperature, rel=1e-3)
  # Applied to another split of the same model: lower NLL and ECE, same argmax.
  test_labels, test_logits = planted(3000, 2.5, seed=2)
  test_probs = special.softmax(test_logits, axis=1)
  scaled = fit.apply(probs=test_probs)
  np.testing.assert_allclose(scaled, fit.apply(logits=test_logits), atol=1e-6)
  assert (scaled.argmax(1) == test_probs.argmax(1)).all()
  nll = calibration.negative_log_likelihood
  assert nll(test_labels, scaled) < nll(test_labels, test_probs)
  ece = lambda p: calibration.expected_calibration_error(test_labels, p)["ece"]
  assert ece(scaled) < 0.5 * ece(test_probs)


def test_a_calibrated_model_keeps_temperature_near_one():
  labels, logits = planted(6000, 1.0, seed=3)
  fit = calibration.fit_temperature(labels, logits=logits, split="validation")
  assert fit.temperature == pytest.approx(1.0, abs=0.06)


def test_multilabel_temperature_recovers_a_planted_temperature():
  rng = np.random.default_rng(4)
  z = rng.normal(size=(5000, 3)) * 1.5 - 1
  y = (rng.random(z.shape) < special.expit(z)).astype(int)
  fit = calibration.fit_temperature(y, probs=special.expit(z * 0.5), split="val")
  assert fit.multilabel and fit.temperature == pytest.approx(0.5, rel=0.06)


def test_temperature_refuses_test_splits_and_round_trips_json():
  labels, logits = planted(200, 2.0, seed=5)
  for split in ("test", "covidx:test", "TEST[:50%]"):
    with pytest.raises(ValueError, match="validation split"):
      calibration.fit_temperature(labels, logits=logits, split=split)
  fit = calibration.fit_temperature(labels, logits=logits, split="val")
  again = calibration.Temperature.from_json(json.loads(json.dumps(fit.to_json())))
  assert again == fit
  with pytest.raises(ValueError, match="lacks"):
    calibration.Temperature.from_json({"temperature": 2.0})
  with pytest.raises(ValueError, match="exactly one"):
    calibration.fit_temperature(labels, split="val")
