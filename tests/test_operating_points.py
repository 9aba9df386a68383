import numpy as np
import pytest
from scipy import special

from jaxcxr import operating_points as op

NAMES = ["normal", "pneumonia", "covid19"]


def split(n, seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 3, n)
  probs = special.softmax(rng.normal(size=(n, 3)) * 1.3 + 1.5 * np.eye(3)[labels], axis=1)
  return labels, probs, (np.arange(n) // 2).astype(str)


def test_target_sensitivity_is_reached_on_validation_at_the_highest_such_threshold():
  labels, probs, _ = split(800, 0)
  for target in (0.8, 0.95, 0.99):
    pts = op.choose_thresholds(labels, probs, NAMES, split="val", rule="sensitivity",
                               target_sensitivity=target)  # fmt: skip
    for c in range(3):
      pos = probs[labels == c, c]
      t = pts.thresholds[c]
      assert np.mean(pos >= t) >= target
      assert pts.fit_sensitivity[c] == pytest.approx(np.mean(pos >= t))
      # Any higher score as threshold falls short of the target.
      higher = np.unique(probs[:, c][probs[:, c] > t])
      assert not higher.size or np.mean(pos >= higher[0]) < target


def test_youden_threshold_maximises_j_over_all_thresholds():
  labels, probs, _ = split(500, 1)
  pts = op.choose_thresholds(labels, probs, NAMES, split="val")
  for c in range(3):
    y, p = labels == c, probs[:, c]
    j = lambda t, p=p, y=y: np.mean(p[y] >= t) + np.mean(p[~y] < t) - 1
    best = max(j(t) for t in np.unique(p))
    assert j(pts.thresholds[c]) == pytest.approx(best)
    assert pts.fit_sensitivity[c] + pts.fit_specificity[c] - 1 == pytest.approx(best)


def test_per_class_target_mixes_rules():
  labels, probs, _ = split(500, 2)
  pts = op.choose_thresholds(labels, probs, NAMES, split="val", per_class_target={"covid19": 0.97})
  assert pts.rules == ("youden", "youden", "sensitivity>=0.97")
  assert pts.fit_sensitivity[2] >= 0.97
  with pytest.raises(ValueError, match="covid"):
    op.choose_thresholds(labels, probs, NAMES, split="val", per_class_target={"covid": 0.9})


def test_thresholds_never_read_test_labels():
  val_labels, val_probs, _ = split(600, 3)
  test_labels, test_probs, test_ids = split(600, 4)
  pts = op.choose_thresholds(
    val_labels, val_probs, NAMES, split="val", per_class_target={"covid19": 0.95}
  )
  real = op.evaluate_operating_points(
    pts, test_labels, test_probs, test_ids, NAMES, n_resamples=200
  )
  shuffled = np.random.default_rng(0).permutation(test_labels)
  fake = op.evaluate_operating_points(pts, shuffled, test_probs, test_ids, NAMES, n_resamples=200)
  for name in NAMES:
    assert real["classes"][name]["threshold"] == fake["classes"][name]["threshold"]
    # The test figures do depend on the test labels (shuffled ones give chance-level sensitivity).
    assert real["classes"][name]["sensitivity"] > fake["classes"][name]["sensitivity"] + 0.2
  # The chooser itself refuses to be fitted on a test split.
  with pytest.raises(ValueError, match="validation split"):
    op.choose_thresholds(test_labels, test_probs, NAMES, split="test")


def test_evaluation_counts_at_the_fixed_threshold_with_intervals(tmp_path):
  val_labels, val_probs, _ = split(600, 5)
  test_labels, test_probs, test_ids = split(900, 6)
  pts = op.choose_thresholds(val_labels, val_probs, NAMES, split="val", rule="sensitivity")
  pts.write(str(tmp_path / "op.json"))
  again = op.OperatingPoints.read(str(tmp_path / "op.json"))
  assert again == pts
  r = op.evaluate_operating_points(again, test_labels, test_probs, test_ids, NAMES, n_resamples=500)
  for c, name in enumerate(NAMES):
    e = r["classes"][name]
    y, pred = test_labels == c, test_probs[:, c] >= pts.thresholds[c]
    assert e["sensitivity"] == pytest.approx(np.mean(pred[y]))
    assert e["specificity"] == pytest.approx(np.mean(~pred[~y]))
    lo, hi = e["sensitivity_ci95"]
    assert lo < e["sensitivity"] < hi and hi - lo < 0.15
  assert r["fitted_on"] == "val" and r["bootstrap"]["n_clusters"] == 450


def test_zero_resamples_gives_the_same_estimates_without_intervals():
  val_labels, val_probs, _ = split(300, 7)
  test_labels, test_probs, test_ids = split(300, 8)
  pts = op.choose_thresholds(val_labels, val_probs, NAMES, split="val", rule="youden")
  boot = op.evaluate_operating_points(
    pts, test_labels, test_probs, test_ids, NAMES, n_resamples=200
  )
  none = op.evaluate_operating_points(pts, test_labels, test_probs, test_ids, NAMES, n_resamples=0)
  for name in NAMES:
    for k in ("sensitivity", "specificity", "precision", "f1"):
      assert none["classes"][name][k] == pytest.approx(boot["classes"][name][k])
      assert none["classes"][name][k + "_ci95"] is None
      assert boot["classes"][name][k + "_ci95"] is not None
  assert none["bootstrap"]["n_resamples"] == 0


def test_multilabel_and_undefined_classes():
  rng = np.random.default_rng(7)
  y = (rng.random((400, 3)) < [0.3, 0.5, 0.0]).astype(int)  # Finding 2 never positive.
  p = special.expit(rng.normal(size=(400, 3)) + 2 * y - 1)
  pts = op.choose_thresholds(y, p, list("abc"), split="val")
  assert pts.thresholds[2] is None and pts.thresholds[0] is not None
  r = op.evaluate_operating_points(pts, y, p, None, list("abc"), n_resamples=100)
  assert r["classes"]["c"]["sensitivity"] is None
  with pytest.raises(ValueError, match="classes"):
    op.evaluate_operating_points(pts, y, p, None, list("abd"), n_resamples=100)
