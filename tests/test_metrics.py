import numpy as np
import pytest
from sklearn import metrics as skm

from jaxcxr import metrics


def test_three_class_report_keys_and_values():
  labels = np.array([0, 0, 1, 1, 2, 2, 2])
  probs = np.array(
    [
      [0.8, 0.1, 0.1],
      [0.3, 0.6, 0.1],
      [0.2, 0.7, 0.1],
      [0.1, 0.2, 0.7],
      [0.1, 0.1, 0.8],
      [0.2, 0.2, 0.6],
      [0.5, 0.4, 0.1],
    ]
  )
  m = metrics.classification_metrics(labels, probs, ["normal", "pneumonia", "covid19"])
  assert set(m) >= {
    "accuracy",
    "auroc_macro",
    "top2_accuracy",
    "per_class",
    "confusion_matrix",
    "class_names",
    "num_examples",
  }
  preds = probs.argmax(1)
  assert m["accuracy"] == pytest.approx(np.mean(preds == labels))
  assert m["num_examples"] == 7
  assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 1], [1, 0, 2]]
  # top-2: example 6 (true 2, scores .5/.4/.1) is the only miss.
  assert m["top2_accuracy"] == pytest.approx(6 / 7)
  assert m["auroc_macro"] == pytest.approx(
    skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro")
  )
  assert m["per_class"]["covid19"]["support"] == 3
  assert m["per_class"]["covid19"]["recall"] == pytest.approx(2 / 3)
  assert m["per_class"]["normal"]["precision"] == pytest.approx(1 / 2)


def test_binary_auroc_uses_positive_column():
  labels = np.array([0, 0, 1, 1])
  probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.35, 0.65], [0.2, 0.8]])
  m = metrics.classification_metrics(labels, probs, ["normal", "pneumonia"])
  assert m["auroc_macro"] == pytest.approx(0.75)
  assert m["top2_accuracy"] is None and "2 classes" in m["top2_note"]


def test_missing_class_gives_undefined_auroc_not_a_crash():
  labels = np.array([0, 0, 1])
  probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.5, 0.1], [0.1, 0.8, 0.1]])
  m = metrics.classification_metrics(labels, probs, ["a", "b", "c"])
  assert m["auroc_macro"] is None and "c" in m["auroc_note"]
  assert m["per_class"]["c"]["support"] == 0
  # The present classes keep their one-vs-rest AUROC: a vs rest ranks 0.9, 0.4 above 0.1.
  assert m["per_class"]["a"]["auroc"] == pytest.approx(1.0)
  assert m["per_class"]["b"]["auroc"] == pytest.approx(1.0)
  assert m["per_class"]["c"]["auroc"] is None


def test_present_class_auroc_matches_sklearn_on_a_two_class_subset():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 50) * 2  # Classes 0 and 2 only, of three.
  probs = rng.dirichlet(np.ones(3), 50)
  m = metrics.classification_metrics(labels, probs, ["a", "b", "c"])
  expected = skm.roc_auc_score(labels == 2, probs[:, 2])
  assert m["per_class"]["c"]["auroc"] == pytest.approx(expected)
  assert m["per_class"]["b"]["auroc"] is None and m["auroc_macro"] is None


def test_shape_mismatch_is_a_clear_error():
  with pytest.raises(ValueError, match="num_classes=3"):
    metrics.classification_metrics(np.zeros(4), np.zeros((4, 2)), ["a", "b", "c"])


def test_macro_precision_recall_f1_and_one_vs_rest_accuracy_match_sklearn():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 50)
  probs = rng.dirichlet(np.ones(3), 50)
  preds = probs.argmax(1)
  m = metrics.classification_metrics(labels, probs, ["a", "b", "c"])
  for key in ("precision", "recall", "f1"):
    fn = getattr(skm, f"{key}_score")
    assert m[f"{key}_macro"] == pytest.approx(fn(labels, preds, average="macro", zero_division=0))
    assert metrics.scalar_summary(m)[f"{key}_macro"] == m[f"{key}_macro"]
  cm = np.asarray(m["confusion_matrix"])
  for i, name in enumerate("abc"):
    # TP + TN over all, from the confusion matrix.
    tn = cm.sum() - cm[i].sum() - cm[:, i].sum() + cm[i, i]
    assert m["per_class"][name]["accuracy"] == pytest.approx((cm[i, i] + tn) / 50)
