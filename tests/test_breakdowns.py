import numpy as np
import pytest

from jaxcxr import breakdowns, metrics


def test_by_group_reports_each_source_and_keeps_missing_keys():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 300)
  # Source "a" is predicted perfectly, "b" at chance: the pooled figure hides the difference.
  right = np.r_[np.ones(150, bool), rng.random(140) < 0.5, np.ones(10, bool)]
  probs = np.eye(2)[np.where(right, labels, 1 - labels)] * 0.8 + 0.1
  keys = np.array(["a"] * 150 + ["b"] * 140 + [""] * 10, object)
  pids = np.arange(300) // 2
  r = breakdowns.by_group(keys, labels, probs, ["n", "p"], pids, n_resamples=200)
  assert r["key"] == "source"
  assert r["counts"] == {"<missing>": 10, "a": 150, "b": 140}
  a, b = r["groups"]["a"], r["groups"]["b"]
  assert a["accuracy"] == 1.0 and b["accuracy"] < 0.65
  assert (
    b["accuracy"]
    == metrics.classification_metrics(labels[150:290], probs[150:290], ["n", "p"])["accuracy"]
  )
  assert a["bootstrap"]["n_clusters"] == 75 and b["accuracy_ci95"][1] < 0.75
  plain = breakdowns.by_group(
    keys, labels, probs, ["n", "p"], with_intervals=False, key_name="dataset"
  )
  assert "bootstrap" not in plain["groups"]["a"] and plain["key"] == "dataset"
  with pytest.raises(ValueError, match="one entry per image"):
    breakdowns.by_group(keys[:5], labels, probs, ["n", "p"])


def test_patient_mean_and_max_by_hand():
  labels = np.array([1, 1, 0, 2])
  probs = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
  pids = ["p1", "p1", "p2", ""]
  mean = breakdowns.aggregate_by_patient(labels, probs, pids)
  np.testing.assert_allclose(mean["probs"], [[0.4, 0.5, 0.1], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
  assert mean["labels"].tolist() == [1, 0, 2] and mean["num_images"].tolist() == [2, 1, 1]
  assert mean["num_images_without_patient_id"] == 1 and list(mean["patient_ids"]) == [
    "p1",
    "p2",
    None,
  ]
  mx = breakdowns.aggregate_by_patient(labels, probs, pids, how="max")
  np.testing.assert_allclose(mx["probs"][0], np.array([0.6, 0.7, 0.1]) / 1.4)


def test_patient_aggregation_refuses_conflicting_labels_and_unions_findings():
  with pytest.raises(ValueError, match="'p1'.*one label per patient"):
    breakdowns.aggregate_by_patient(np.array([0, 1]), np.full((2, 2), 0.5), ["p1", "p1"])
  y = np.array([[1, 0], [0, 1], [0, 0]])
  p = np.array([[0.9, 0.2], [0.3, 0.6], [0.1, 0.1]])
  r = breakdowns.aggregate_by_patient(y, p, ["a", "a", "b"], how="max")
  assert r["labels"].tolist() == [[1, 1], [0, 0]]
  np.testing.assert_allclose(r["probs"], [[0.9, 0.6], [0.1, 0.1]])
