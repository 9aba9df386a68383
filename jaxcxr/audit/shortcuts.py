"""Shortcuts: how well the class can be told from metadata alone (DeGrave et al. 2021).

Per factor (source dataset, `source` field, width, height, aspect ratio, file format, and the
fraction of black pixels, which tells lung-masked images (black outside the lungs, Zhang & Liu
2021's preprocessing) from unmasked ones, so masking applied to some classes only shows):
Cramér's V, normalized mutual information and the patient-grouped cross-validated accuracy of a
decision tree, against always answering the majority class, with one-vs-rest Matthews
correlations per class.
"""

from __future__ import annotations

import collections
import itertools
import warnings
from typing import Any

import numpy as np

from jaxcxr.audit.records import Record, display_name, format_of
from jaxcxr.data.duplicates import ImageFeatures

# Default `--strict` limit on the shortcut score: the larger of the accuracy gain of metadata
# over the majority class (as a fraction of the possible gain) and the best one-vs-rest Matthews
# correlation of a class predicted from metadata (one class from one source).
SHORTCUT_THRESHOLD = 0.5
METADATA_FACTORS = ("dataset", "source", "width", "height", "aspect", "format", "black")
_NUMERIC_FACTORS = ("width", "height", "aspect", "black")


def _factor_values(recs: list[Record], feats: list[ImageFeatures]) -> dict[str, np.ndarray]:
  return {
    "dataset": np.array([r.dataset for r in recs]),
    "source": np.array([r.source or r.dataset for r in recs]),
    "width": np.array([f.width for f in feats], np.float64),
    "height": np.array([f.height for f in feats], np.float64),
    "aspect": np.array([round(f.width / f.height, 2) for f in feats], np.float64),
    "format": np.array([format_of(r.filename) for r in recs]),
    "black": np.array([round(f.black, 2) for f in feats], np.float64),
  }


def _bin(values: np.ndarray, max_levels: int) -> np.ndarray:
  """Numeric values as at most `max_levels` category strings.

  Few distinct values stay themselves; otherwise values shared by many images (one dataset's
  fixed width, say) stay levels of their own and the rest fall in quantile bins `[lo, hi)`.
  """
  fmt = lambda v: f"{v:g}"
  if len(np.unique(values)) <= max_levels:
    return np.array([fmt(v) for v in values])
  counts = collections.Counter(values.tolist())
  common = [v for v, c in counts.most_common(max_levels - 2) if c >= len(values) / max_levels]
  names = np.array([fmt(v) for v in values], dtype=object)
  rest = ~np.isin(values, common)
  edges = np.unique(np.quantile(values[rest], np.linspace(0, 1, max_levels - len(common) + 1)))
  if len(edges) > 1:
    idx = np.clip(np.searchsorted(edges, values[rest], side="right") - 1, 0, len(edges) - 2)
    last = len(edges) - 2
    bins = [f"[{fmt(lo)}, {fmt(hi)}{']' if k == last else ')'}" for k, (lo, hi) in
            enumerate(itertools.pairwise(edges))]  # fmt: skip
    names[rest] = [bins[k] for k in idx]
  return names.astype(str)


def _cv_accuracy(
  x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, seed: int
) -> dict[str, Any]:
  """Patient-grouped, stratified cross-validated predictions of a decision tree from `x`.

  Folds are grouped by patient (StratifiedGroupKFold) because a patient's images share size and
  source: image-level folds would let the tree recognise patients rather than classes.

  Returns:
    `accuracy` (pooled over folds) and its spread over folds, `balanced_accuracy`,
    `majority_accuracy` (always answering the training folds' most common class), `score` (the
    share of the possible gain over the majority that the tree achieves: 0 = none, 1 = perfect),
    `per_class` one-vs-rest precision, recall and Matthews correlation (0 = chance, 1 = the
    class is picked out perfectly), and `shortcut_score`: the larger of `score` and the best
    per-class correlation, so that one class tied to one source counts even when the others
    are not.
  """
  from sklearn.metrics import (  # pylint: disable=g-import-not-at-top
    balanced_accuracy_score,
    matthews_corrcoef,
  )
  from sklearn.model_selection import StratifiedGroupKFold  # pylint: disable=g-import-not-at-top
  from sklearn.tree import DecisionTreeClassifier  # pylint: disable=g-import-not-at-top

  # StratifiedGroupKFold needs a class with at least n_splits members.
  n_splits = min(folds, len(np.unique(groups)), max(collections.Counter(y).values()))
  cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
  pred, base = np.empty_like(y), np.empty_like(y)
  fold_accuracy = []
  with warnings.catch_warnings():
    # Classes smaller than the number of folds only make sklearn warn; the estimate still holds.
    warnings.simplefilter("ignore")
    for train, test in cv.split(x, y, groups):
      tree = DecisionTreeClassifier(max_depth=10, min_samples_leaf=3, random_state=seed)
      pred[test] = tree.fit(x[train], y[train]).predict(x[test])
      base[test] = collections.Counter(y[train]).most_common(1)[0][0]
      fold_accuracy.append(float(np.mean(pred[test] == y[test])))
    balanced = float(balanced_accuracy_score(y, pred))
  acc, majority = float(np.mean(pred == y)), float(np.mean(base == y))
  per_class = {}
  for c in np.unique(y).tolist():
    truth, said = y == c, pred == c
    per_class[c] = {
      "precision": float(np.sum(truth & said) / max(np.sum(said), 1)),
      "recall": float(np.sum(truth & said) / np.sum(truth)),
      "mcc": float(matthews_corrcoef(truth, said)),
    }
  score = (acc - majority) / (1 - majority) if majority < 1 else 0.0
  return {
    "accuracy": acc,
    "accuracy_std": float(np.std(fold_accuracy)),
    "balanced_accuracy": balanced,
    "majority_accuracy": majority,
    "score": score,
    "per_class": per_class,
    "shortcut_score": max(score, *(v["mcc"] for v in per_class.values())),
    "folds": n_splits,
  }


def find_shortcuts(
  recs: list[Record],
  feats: list[ImageFeatures],
  *,
  folds: int,
  seed: int,
  max_levels: int,
  shortcut_threshold: float | None,
) -> dict[str, Any]:
  """Cramér's V, NMI and tree accuracy from each metadata factor and from all of them."""
  from scipy.stats.contingency import association  # pylint: disable=g-import-not-at-top
  from sklearn.metrics import normalized_mutual_info_score  # pylint: disable=g-import-not-at-top

  y = np.array([r.label for r in recs])
  classes, class_counts = np.unique(y, return_counts=True)
  if len(classes) < 2:
    return {"skipped": f"needs two or more classes; found {classes.tolist()}"}
  groups = np.array([f"{r.dataset}/{r.patient_id or display_name(r)}" for r in recs])
  if min(len(np.unique(groups)), class_counts.max()) < 2:
    return {"skipped": "needs two or more patients and a class with two or more images"}
  values = _factor_values(recs, feats)
  columns, factors = [], {}
  for name in METADATA_FACTORS:
    v = values[name]
    # Trees split numbers directly; categories get their index (a tree can isolate any level).
    col = v if name in _NUMERIC_FACTORS else np.unique(v, return_inverse=True)[1].astype(float)
    columns.append(col)
    binned = _bin(v, max_levels) if name in _NUMERIC_FACTORS else v
    levels, level_counts = np.unique(binned, return_counts=True)
    table = np.array([[np.sum((binned == lv) & (y == c)) for c in classes] for lv in levels])
    cramers_v = float(association(table, method="cramer")) if len(levels) > 1 else 0.0
    # The largest levels in full; the rest summed, so a factor with 300 sources stays readable.
    top = np.argsort(-level_counts, kind="stable")[:max_levels]
    rows = {
      str(levels[k]): dict(zip(classes.tolist(), table[k].tolist(), strict=True)) for k in top
    }
    if len(levels) > len(top):
      rest = np.delete(table, top, axis=0).sum(0)
      rows[f"({len(levels) - len(top)} more levels)"] = dict(
        zip(classes.tolist(), rest.tolist(), strict=True)
      )
    factors[name] = {
      "levels": len(levels),
      "cramers_v": cramers_v,
      "nmi": float(normalized_mutual_info_score(y, binned)),
      "table": rows,
      "tree": _cv_accuracy(col[:, None], y, groups, folds, seed),
    }
  combined = _cv_accuracy(np.stack(columns, 1), y, groups, folds, seed)
  # A deeper tree on every factor can do worse than one on the telling factor: report the best.
  candidates = {"all factors": combined} | {f"{k} alone": f["tree"] for k, f in factors.items()}
  best_name = max(candidates, key=lambda k: candidates[k]["shortcut_score"])
  best = candidates[best_name]
  majority = str(classes[np.argmax(class_counts)])
  said = (
    f"{best_name}: {best['accuracy']:.1%} accuracy ({best['balanced_accuracy']:.1%} balanced) vs "
    f"{best['majority_accuracy']:.1%} for always answering '{majority}'"
  )
  high = SHORTCUT_THRESHOLD if shortcut_threshold is None else shortcut_threshold
  picked = [
    f"'{c}' (precision {v['precision']:.2f}, recall {v['recall']:.2f})"
    for c, v in best["per_class"].items()
    if v["mcc"] > high
  ]
  if picked:
    said += "; it picks out class " + ", ".join(picked)
  if best["shortcut_score"] > high:
    verdict = (
      f"Metadata alone predicts the class well ({said}). A model can score well on these data "
      "from how the images were made and collected, without reading the lungs."
    )
  elif best["shortcut_score"] > 0.2:
    verdict = f"Metadata carries some class information ({said})."
  else:
    verdict = f"Metadata alone predicts the class little better than the majority ({said})."
  return {
    "classes": dict(zip(classes.tolist(), class_counts.tolist(), strict=True)),
    "factors": factors,
    "combined": combined,
    "strongest_factor": max(factors, key=lambda k: factors[k]["cramers_v"]),
    "best_predictor": best_name,
    "shortcut_score": best["shortcut_score"],
    "verdict": verdict,
  }
