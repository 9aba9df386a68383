"""Classification metrics for chest X-ray evaluation, computed with scikit-learn.

The reported set follows the studies jaxcxr reproduces (accuracy, macro one-vs-rest AUROC, top-2
accuracy, per-class precision/recall/F1 and the confusion matrix). Nothing is re-derived by hand:
every number comes from `sklearn.metrics`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm


def classification_metrics(
  labels: np.ndarray, probs: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
  """All evaluation metrics for integer `labels` (N,) and class probabilities `probs` (N, C).

  Returns a JSON-serialisable dict with keys `accuracy`, `auroc_macro`, `top2_accuracy`,
  `precision_macro` / `recall_macro` / `f1_macro` (unweighted means over classes, the studies'
  "macro P/R/F1"), `per_class` (precision/recall/f1/support/auroc and one-vs-rest `accuracy`, the
  share of all examples whose "is it this class?" answer is right, per class name),
  `confusion_matrix` (rows: true class, columns: predicted), `class_names` and `num_examples`.
  The macro AUROC is `None` (with a reason in `auroc_note`) when the split lacks a class, since
  it is undefined then; the per-class one-vs-rest AUROC of each present class is still given
  (where at least two classes are present); `top2_accuracy` is `None` (with `top2_note`) for two
  classes, where it would always be 1.0.
  """
  if np.ndim(labels) == 2:
    return multilabel_metrics(labels, probs, class_names)
  labels = np.asarray(labels).astype(np.int64)
  probs = np.asarray(probs, np.float64)
  num_classes = len(class_names)
  if probs.ndim != 2 or probs.shape[1] != num_classes or probs.shape[0] != labels.shape[0]:
    raise ValueError(
      f"probs must have shape (num_examples={labels.shape[0]}, num_classes={num_classes}); "
      f"got {probs.shape}."
    )
  class_ids = list(range(num_classes))
  preds = probs.argmax(-1)
  out: dict[str, Any] = {
    "num_examples": int(labels.shape[0]),
    "class_names": list(class_names),
    "accuracy": float(skm.accuracy_score(labels, preds)),
    "confusion_matrix": skm.confusion_matrix(labels, preds, labels=class_ids).tolist(),
  }
  if num_classes > 2:
    out["top2_accuracy"] = float(skm.top_k_accuracy_score(labels, probs, k=2, labels=class_ids))
  else:
    # With two classes the true class is always in the top 2: a constant 1.0 would mislead.
    out["top2_accuracy"] = None
    out["top2_note"] = "undefined: top-2 of 2 classes is always 1.0"
  present = np.unique(labels)
  per_class_auc: list[float | None] = [None] * num_classes
  if len(present) < num_classes:
    missing = [class_names[i] for i in class_ids if i not in present]
    out["auroc_macro"] = None
    out["auroc_note"] = (
      f"macro and per-class AUROC of {missing} undefined: no examples of them in this split"
    )
    if len(present) > 1:
      # A present class still has positives and negatives (the other present classes): its
      # one-vs-rest AUROC is defined, e.g. COVID-19 vs the rest on a COVID + Normal site.
      onehot = np.eye(num_classes)[labels][:, present]
      defined = skm.roc_auc_score(onehot, probs[:, present], average=None)
      for k, c in enumerate(present):
        per_class_auc[int(c)] = float(np.atleast_1d(defined)[k])
  else:
    if num_classes == 2:
      out["auroc_macro"] = float(skm.roc_auc_score(labels, probs[:, 1]))
    else:
      # One-vs-rest macro AUROC via the one-hot (multilabel) form: identical to
      # multi_class="ovr", and also valid for sigmoid scores that do not sum to one.
      out["auroc_macro"] = float(
        skm.roc_auc_score(np.eye(num_classes)[labels], probs, average="macro")
      )
    # One-vs-rest AUROC of every class in one call (the macro value above is their mean).
    per_class_auc = skm.roc_auc_score(np.eye(num_classes)[labels], probs, average=None).tolist()
  report = skm.classification_report(
    labels,
    preds,
    labels=class_ids,
    target_names=list(class_names),
    output_dict=True,
    zero_division=0,
  )
  for key, name in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
    out[f"{key}_macro"] = float(report["macro avg"][name])
  out["per_class"] = {
    name: {
      "precision": float(report[name]["precision"]),
      "recall": float(report[name]["recall"]),
      "f1": float(report[name]["f1-score"]),
      "support": int(report[name]["support"]),
      "auroc": per_class_auc[i],
      # One-vs-rest accuracy: the binary "class i or not" question scored on every example.
      "accuracy": float(skm.accuracy_score(labels == i, preds == i)),
    }
    for i, name in enumerate(class_names)
  }
  return out


def multilabel_metrics(
  labels: np.ndarray, probs: np.ndarray, class_names: Sequence[str], threshold: float = 0.5
) -> dict[str, Any]:
  """Metrics for multi-hot `labels` (N, C) and per-class sigmoid `probs` (N, C) (ChestX-ray14).

  CheXNet (Rajpurkar et al. 2017) and Wang et al. (2017) report the AUROC of each finding;
  `auroc_macro` is their mean over the findings for which it is defined (positives and
  negatives present; the others are listed in `auroc_note`). Also per class: average precision
  and precision/recall/F1 at `threshold`, and the 2x2 confusion matrix ([[TN, FP], [FN, TP]],
  `confusion_matrix`, one per class); `accuracy` is the exact-match (subset) accuracy at
  `threshold` and `map` the mean average precision. `top2_accuracy` is undefined (None).
  """
  labels = (np.asarray(labels) > 0.5).astype(np.int64)
  probs = np.asarray(probs, np.float64)
  if probs.shape != labels.shape or probs.shape[1] != len(class_names):
    raise ValueError(
      f"labels and probs must both have shape (num_examples, {len(class_names)}); got "
      f"{labels.shape} and {probs.shape}."
    )
  preds = (probs >= threshold).astype(np.int64)
  defined = [c for c in range(len(class_names)) if 0 < labels[:, c].sum() < len(labels)]
  auroc: list[float | None] = [None] * len(class_names)
  ap: list[float | None] = [None] * len(class_names)
  if defined:
    auroc_d = skm.roc_auc_score(labels[:, defined], probs[:, defined], average=None)
    ap_d = skm.average_precision_score(labels[:, defined], probs[:, defined], average=None)
    for k, c in enumerate(defined):
      auroc[c], ap[c] = float(np.atleast_1d(auroc_d)[k]), float(np.atleast_1d(ap_d)[k])
  report = skm.classification_report(
    labels, preds, target_names=list(class_names), output_dict=True, zero_division=0
  )
  out: dict[str, Any] = {
    "num_examples": int(labels.shape[0]),
    "class_names": list(class_names),
    "multi_label": True,
    "accuracy": float(skm.accuracy_score(labels, preds)),
    "auroc_macro": float(np.mean([auroc[c] for c in defined])) if defined else None,
    "map": float(np.mean([ap[c] for c in defined])) if defined else None,
    "top2_accuracy": None,
    "top2_note": "undefined for multi-label data",
    "confusion_matrix": skm.multilabel_confusion_matrix(labels, preds).tolist(),
    "per_class": {
      name: {
        "precision": float(report[name]["precision"]),
        "recall": float(report[name]["recall"]),
        "f1": float(report[name]["f1-score"]),
        "support": int(report[name]["support"]),
        "auroc": auroc[i],
        "average_precision": ap[i],
      }
      for i, name in enumerate(class_names)
    },
  }
  for key, name in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
    out[f"{key}_macro"] = float(report["macro avg"][name])
  if len(defined) < len(class_names):
    missing = [class_names[c] for c in range(len(class_names)) if c not in defined]
    out["auroc_note"] = f"undefined (only one label value in this split) for {missing}"
  return out


def scalar_summary(m: dict[str, Any]) -> dict[str, float]:
  """The scalar metrics of `classification_metrics` (for logging), without undefined ones."""
  keys = (
    "accuracy",
    "auroc_macro",
    "top2_accuracy",
    "map",
    "precision_macro",
    "recall_macro",
    "f1_macro",
  )
  return {k: m[k] for k in keys if m.get(k) is not None and not math.isnan(m[k])}


def write_json(path: str, obj: Any) -> None:
  with open(path, "w") as f:
    json.dump(obj, f, indent=2)
