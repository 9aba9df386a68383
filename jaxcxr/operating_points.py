"""Operating points: per-class decision thresholds chosen on validation, scored on test.

A deployed screening model answers yes/no at a threshold; argmax accuracy says little about that.
Per class (one-vs-rest, or per finding for multi-label outputs) a threshold is chosen on the
*validation* split, by Youden's J (max sensitivity + specificity - 1; Youden 1950) or as the
highest threshold whose validation sensitivity reaches a target (e.g. 0.95 for COVID-19, where a
miss costs most), from `sklearn.metrics.roc_curve`. The thresholds are a frozen `OperatingPoints`
saved as JSON with the run; `evaluate_operating_points` then scores another split at those fixed
thresholds with patient-bootstrap intervals (`jaxcxr.intervals`).

Nothing is chosen on test: `choose_thresholds` takes the fitting split's name and refuses test
splits, and evaluation takes only the frozen thresholds, never a rule to re-fit.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

from jaxcxr import calibration, intervals

RULES = ("youden", "sensitivity")


@dataclasses.dataclass(frozen=True)
class OperatingPoints:
  """Per-class thresholds (predict class c when p_c >= threshold) and how they were chosen.

  `thresholds[i]` is None where class i had no positives or no negatives on the fitting split.
  """

  class_names: tuple[str, ...]
  thresholds: tuple[float | None, ...]
  rules: tuple[str, ...]  # Per class: "youden" or "sensitivity>=0.95".
  fitted_on: str
  num_examples: int
  fit_sensitivity: tuple[float | None, ...]
  fit_specificity: tuple[float | None, ...]

  def to_json(self) -> dict[str, Any]:
    return {
      "fitted_on": self.fitted_on,
      "num_examples": self.num_examples,
      "decision": "class c is predicted when p_c >= threshold (one-vs-rest)",
      "classes": {
        name: {
          "threshold": self.thresholds[i],
          "rule": self.rules[i],
          f"{self.fitted_on}_sensitivity": self.fit_sensitivity[i],
          f"{self.fitted_on}_specificity": self.fit_specificity[i],
        }
        for i, name in enumerate(self.class_names)
      },
    }

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> OperatingPoints:
    try:
      split, classes = d["fitted_on"], d["classes"]
      names = tuple(classes)
      return cls(
        class_names=names,
        thresholds=tuple(classes[n]["threshold"] for n in names),
        rules=tuple(classes[n]["rule"] for n in names),
        fitted_on=split,
        num_examples=int(d["num_examples"]),
        fit_sensitivity=tuple(classes[n][f"{split}_sensitivity"] for n in names),
        fit_specificity=tuple(classes[n][f"{split}_specificity"] for n in names),
      )
    except KeyError as e:
      raise ValueError(f"operating points JSON lacks key {e}; has {sorted(d)}.") from e

  def write(self, path: str) -> None:
    with open(path, "w") as f:
      json.dump(self.to_json(), f, indent=2)

  @classmethod
  def read(cls, path: str) -> OperatingPoints:
    with open(path) as f:
      return cls.from_json(json.load(f))


def _one_vs_rest(labels: np.ndarray, num_classes: int) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim == 2:
    return (labels > 0.5).astype(np.int64)
  return np.eye(num_classes, dtype=np.int64)[labels.astype(np.int64)]


def _choose(y: np.ndarray, p: np.ndarray, rule: str, target: float) -> tuple[float, float, float]:
  """(threshold, sensitivity, specificity) on (y, p) for one class."""
  fpr, tpr, thr = skm.roc_curve(y, p, drop_intermediate=False)
  # Index 0 is sklearn's threshold = inf (nothing positive): never an operating point.
  fpr, tpr, thr = fpr[1:], tpr[1:], thr[1:]
  if rule == "youden":
    i = int(np.argmax(tpr - fpr))  # First (highest threshold) maximiser.
  else:
    i = int(np.flatnonzero(tpr >= target)[0])  # Highest threshold reaching the target.
  return float(thr[i]), float(tpr[i]), float(1.0 - fpr[i])


def choose_thresholds(
  labels: np.ndarray,
  probs: np.ndarray,
  class_names: Sequence[str],
  *,
  split: str,
  rule: str = "youden",
  target_sensitivity: float = 0.95,
  per_class_target: Mapping[str, float] | None = None,
) -> OperatingPoints:
  """Per-class thresholds on a validation split.

  Args:
    labels: the fitting split's integer (N,) or multi-hot (N, C) labels.
    probs: its probabilities (N, C) (temperature-scaled or not: thresholds follow the scores).
    class_names: the C class names.
    split: the fitting split's name; test splits are refused.
    rule: "youden" (max J = sensitivity + specificity - 1) or "sensitivity" (the highest
      threshold with sensitivity >= `target_sensitivity`, hence the best specificity at it).
    target_sensitivity: the target for rule "sensitivity".
    per_class_target: classes chosen by a target sensitivity whatever `rule` says, e.g.
      `{"covid19": 0.95}` with rule "youden" for the others.
  """
  calibration.require_fitting_split(split, "Choosing operating points")
  if rule not in RULES:
    raise ValueError(f"rule must be one of {RULES}; got {rule!r}.")
  per_class_target = dict(per_class_target or {})
  unknown = sorted(set(per_class_target) - set(class_names))
  if unknown:
    raise ValueError(
      f"per_class_target names {unknown}, not among the classes {list(class_names)}."
    )
  for name, t in {"target_sensitivity": target_sensitivity, **per_class_target}.items():
    if not 0 < t <= 1:
      raise ValueError(f"target sensitivity for {name} must be in (0, 1]; got {t}.")
  probs = np.asarray(probs, np.float64)
  y = _one_vs_rest(labels, len(class_names))
  if probs.shape != y.shape:
    raise ValueError(f"probs must have shape {y.shape}; got {probs.shape}.")
  thresholds, rules, sens, spec = [], [], [], []
  for c, name in enumerate(class_names):
    if name in per_class_target or rule == "sensitivity":
      target = per_class_target.get(name, target_sensitivity)
      r = ("sensitivity", target)
      rules.append(f"sensitivity>={target:g}")
    else:
      r = ("youden", 0.0)
      rules.append("youden")
    if 0 < y[:, c].sum() < len(y):
      t, se, sp = _choose(y[:, c], probs[:, c], *r)
    else:
      t, se, sp = None, None, None
    thresholds.append(t)
    sens.append(se)
    spec.append(sp)
  return OperatingPoints(
    class_names=tuple(class_names),
    thresholds=tuple(thresholds),
    rules=tuple(rules),
    fitted_on=split,
    num_examples=int(len(y)),
    fit_sensitivity=tuple(sens),
    fit_specificity=tuple(spec),
  )


def evaluate_operating_points(
  points: OperatingPoints,
  labels: np.ndarray,
  probs: np.ndarray,
  patient_ids: Sequence[Any] | np.ndarray | None,
  class_names: Sequence[str],
  n_resamples: int = 2000,
  seed: int = 0,
  method: str = "bca",
  confidence: float = 0.95,
) -> dict[str, Any]:
  """Sensitivity, specificity, precision and F1 at `points`' fixed thresholds, with intervals.

  `n_resamples=0`: no intervals (the `*_ci95` values are None), as `report.bootstrap=0` asks.

  Returns:
    `{"fitted_on", "classes": {name: {threshold, rule, sensitivity, sensitivity_ci95, ...}},
    "bootstrap": {...}}`; classes without a threshold are reported with None values.
  """
  if tuple(class_names) != points.class_names:
    raise ValueError(
      f"operating points are for classes {list(points.class_names)}; this split has "
      f"{list(class_names)}."
    )
  probs = np.asarray(probs, np.float64)
  y = _one_vs_rest(labels, len(class_names))
  if probs.shape != y.shape:
    raise ValueError(f"probs must have shape {y.shape}; got {probs.shape}.")
  thr = np.array([np.inf if t is None else t for t in points.thresholds])
  pred = (probs >= thr[None, :]).astype(np.float64)
  stat = lambda w: intervals.binary_rates(y, pred, w)
  clusters = intervals.Clusters.from_ids(patient_ids, len(y))
  if n_resamples:
    res = intervals.bootstrap(stat, clusters, n_resamples, seed, method, confidence)
  else:  # `report.bootstrap=0`: the estimates alone, as every other metric of the report.
    full = stat(np.ones((1, len(y))))
    res = {
      k: {"estimate": None if np.isnan(v[0]) else float(v[0]), "ci": None, "n_undefined": 0}
      for k, v in full.items()
    }
  suffix = "_" + intervals.ci_key(confidence)
  classes = {}
  for c, name in enumerate(class_names):
    entry: dict[str, Any] = {"threshold": points.thresholds[c], "rule": points.rules[c]}
    for k in ("sensitivity", "specificity", "precision", "f1"):
      r = res[f"{c}.{k}"]
      defined = points.thresholds[c] is not None
      entry[k] = r["estimate"] if defined else None
      entry[k + suffix] = r["ci"] if defined else None
    entry["support"] = int(y[:, c].sum())
    classes[name] = entry
  return {
    "fitted_on": points.fitted_on,
    "classes": classes,
    "bootstrap": {
      "unit": "patient",
      "method": method,
      "n_resamples": n_resamples,
      "seed": seed,
      "n_images": int(len(y)),
      "n_clusters": clusters.num,
      "n_images_without_patient_id": clusters.num_without_id,
      "undefined_resamples": {k: r["n_undefined"] for k, r in res.items() if r["n_undefined"]},
    },
  }
