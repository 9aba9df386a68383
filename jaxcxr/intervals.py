"""Confidence intervals for evaluation metrics: a patient-level bootstrap and DeLong's AUROC test.

Chest X-ray test sets hold several images per patient, and images of one patient are not
independent, so resampling images understates the uncertainty. The bootstrap here resamples
*patients* (the cluster bootstrap, Field & Welsh 2007) and gives percentile or BCa intervals
(Efron 1987; Efron & Tibshirani 1993, ch. 14, with the jackknife over patients for the
acceleration). Images without a patient id are their own cluster, and the report counts them.

Speed: a resample is a vector of integer weights over images (how often each image's patient was
drawn), so every metric is computed for a whole batch of resamples with numpy: weighted confusion
counts by matrix products, and weighted Mann-Whitney AUROC / step-wise average precision by one
sort per class and cumulative sums. These weighted forms equal scikit-learn's `roc_auc_score` /
`average_precision_score` with `sample_weight` (tests/test_intervals.py checks them); the point
estimates in the report are `jaxcxr.metrics.classification_metrics`'s own sklearn values.

DeLong et al. (1988), in the fast O(n log n) form of Sun & Xu (2014), gives an image-level
AUROC variance as a cross-check: it assumes independent images, so with many images per patient it
is narrower than the patient bootstrap, which is the figure to report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from scipy import special, stats

from jaxcxr import metrics

# A statistic maps image weights (B, N) to named metric values (B,) (NaN where undefined).
StatFn = Callable[[np.ndarray], dict[str, np.ndarray]]

# Resamples evaluated per numpy batch: bounds memory at about 8 * CHUNK * N bytes per array.
CHUNK = 256


@dataclasses.dataclass(frozen=True)
class Clusters:
  """Images grouped into resampling units (patients).

  Attributes:
    of_image: (N,) int cluster index of every image.
    num: number of clusters.
    num_without_id: images whose patient id was missing (None or ""), each its own cluster.
  """

  of_image: np.ndarray
  num: int
  num_without_id: int

  @classmethod
  def from_ids(cls, patient_ids: Sequence[Any] | np.ndarray | None, n: int) -> Clusters:
    """Clusters from per-image patient ids; `None` (or missing ids) makes images their own."""
    if patient_ids is None:
      return cls(np.arange(n), n, n)
    decode = lambda p: p.decode() if isinstance(p, bytes) else p
    ids = [None if p is None else str(decode(p)) for p in patient_ids]
    if len(ids) != n:
      raise ValueError(f"patient_ids has {len(ids)} entries; expected one per image ({n}).")
    missing = [i for i, p in enumerate(ids) if p is None or p == ""]
    for k, i in enumerate(missing):
      ids[i] = f"\0no-id:{k}"  # Unique per image, cannot collide with a real id.
    _, of_image = np.unique(np.asarray(ids, dtype=object).astype(str), return_inverse=True)
    return cls(of_image.ravel(), int(of_image.max()) + 1 if n else 0, len(missing))


def resample_weights(
  clusters: Clusters, n_resamples: int, seed: int, chunk: int = CHUNK
) -> Iterator[np.ndarray]:
  """Yields (b, N) image weights of `n_resamples` cluster resamples, `chunk` at a time.

  Each resample draws `clusters.num` clusters with replacement; an image's weight is the number of
  times its cluster was drawn. Seeded with `np.random.default_rng(seed)`.
  """
  rng = np.random.default_rng(seed)
  p = clusters.num
  for start in range(0, n_resamples, chunk):
    b = min(chunk, n_resamples - start)
    draws = rng.integers(0, p, size=(b, p)) + (np.arange(b) * p)[:, None]
    counts = np.bincount(draws.ravel(), minlength=b * p).reshape(b, p)
    yield counts[:, clusters.of_image].astype(np.float64)


def jackknife_weights(clusters: Clusters, chunk: int = CHUNK) -> Iterator[np.ndarray]:
  """Yields (b, N) weights of the leave-one-cluster-out samples, cluster 0 first."""
  for start in range(0, clusters.num, chunk):
    left_out = np.arange(start, min(start + chunk, clusters.num))
    yield (clusters.of_image[None, :] != left_out[:, None]).astype(np.float64)


def _tie_groups(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Ascending sort order of `scores` and the start of each run of equal scores in it."""
  order = np.argsort(scores, kind="stable")
  s = scores[order]
  return order, np.flatnonzero(np.r_[True, s[1:] != s[:-1]])


def weighted_auroc_and_ap(
  y: np.ndarray, scores: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """AUROC and average precision of binary `y` (N,) by `scores` (N,) under each row of `w` (B, N).

  One sort of the scores serves both: per run of tied scores, the weighted positives and negatives
  in it. AUROC is the weighted Mann-Whitney statistic (ties count one half), equal to sklearn's
  `roc_auc_score(y, scores, sample_weight=row)`; NaN where a row has no positive or no negative.
  Average precision is sklearn's step-wise sum over thresholds of (recall increase) x precision,
  equal to `average_precision_score(y, scores, sample_weight=row)`; NaN where a row has no
  positive.
  """
  order, starts = _tie_groups(np.asarray(scores, np.float64))
  wo, yo = w[:, order], np.asarray(y, np.float64)[order]
  pos = np.add.reduceat(wo * yo, starts, axis=1)  # (B, distinct scores), ascending.
  neg = np.add.reduceat(wo * (1.0 - yo), starts, axis=1)
  n_pos, n_neg = pos.sum(1), neg.sum(1)
  below = np.cumsum(neg, axis=1) - neg
  # Images scored >= each distinct score: cumulative sums from the top.
  tp_at = np.cumsum(pos[:, ::-1], axis=1)[:, ::-1]
  fp_at = np.cumsum(neg[:, ::-1], axis=1)[:, ::-1]
  with np.errstate(invalid="ignore", divide="ignore"):
    auc = (pos * (below + 0.5 * neg)).sum(1) / (n_pos * n_neg)
    precision = np.where(tp_at + fp_at > 0, tp_at / (tp_at + fp_at), 0.0)
    ap = (pos * precision).sum(1) / n_pos
  auc = np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)
  return auc, np.where(n_pos > 0, ap, np.nan)


def weighted_auroc(y: np.ndarray, scores: np.ndarray, w: np.ndarray) -> np.ndarray:
  """The AUROC of `weighted_auroc_and_ap`."""
  return weighted_auroc_and_ap(y, scores, w)[0]


def weighted_average_precision(y: np.ndarray, scores: np.ndarray, w: np.ndarray) -> np.ndarray:
  """The average precision of `weighted_auroc_and_ap`."""
  return weighted_auroc_and_ap(y, scores, w)[1]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(den > 0, num / den, np.nan)


def binary_rates(
  y: np.ndarray, pred: np.ndarray, w: np.ndarray, prefix: str = ""
) -> dict[str, np.ndarray]:
  """Weighted sensitivity/specificity/precision/recall/F1 of binary `pred` vs `y`, per row of `w`.

  `y` and `pred` are (N, C) 0/1 arrays (one column per class, one-vs-rest); the result maps
  `f"{prefix}{c}.{name}"` to (B,) values, NaN where the ratio is 0/0 (e.g. no positives).
  """
  y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
  tp, pos, ppos = w @ (y * pred), w @ y, w @ pred
  total = w.sum(1, keepdims=True)
  tn = total - pos - ppos + tp
  out = {}
  for c in range(y.shape[1]):
    out[f"{prefix}{c}.sensitivity"] = _ratio(tp[:, c], pos[:, c])
    out[f"{prefix}{c}.specificity"] = _ratio(tn[:, c], total[:, 0] - pos[:, c])
    out[f"{prefix}{c}.precision"] = _ratio(tp[:, c], ppos[:, c])
    out[f"{prefix}{c}.f1"] = _ratio(2 * tp[:, c], pos[:, c] + ppos[:, c])
  return out


def classification_stat(
  labels: np.ndarray, probs: np.ndarray, class_names: Sequence[str], threshold: float = 0.5
) -> StatFn:
  """The metrics of `jaxcxr.metrics.classification_metrics` as a vectorised weighted statistic.

  Keys: `accuracy`, `top2_accuracy` (more than two classes), `auroc_macro`, `map` and, per class
  name, `per_class.<name>.{auroc, average_precision, sensitivity, recall, specificity, precision,
  f1}`. Integer `labels` (N,) with softmax `probs` (N, C), or multi-hot `labels` (N, C) with
  sigmoid `probs` thresholded at `threshold` (then `accuracy` is the exact-match accuracy, as in
  `multilabel_metrics`). Macro means are over the classes defined on the full set and are NaN in a
  resample where any of those is undefined (same estimand in every resample).
  """
  probs = np.asarray(probs, np.float64)
  num_classes = len(class_names)
  multi = np.ndim(labels) == 2
  if multi:
    y = (np.asarray(labels) > 0.5).astype(np.float64)
    pred = (probs >= threshold).astype(np.float64)
    correct = (y == pred).all(1).astype(np.float64)
  else:
    labels = np.asarray(labels).astype(np.int64)
    y = np.eye(num_classes)[labels]
    pred = np.eye(num_classes)[probs.argmax(1)]
    correct = (labels == probs.argmax(1)).astype(np.float64)
    # Same rule as sklearn's top_k_accuracy_score: the true class is among the 2 highest scores.
    top2 = np.argsort(-probs, axis=1, kind="stable")[:, :2]
    in_top2 = (top2 == labels[:, None]).any(1).astype(np.float64)
  if probs.shape != y.shape:
    raise ValueError(f"probs must have shape {y.shape}; got {probs.shape}.")
  defined = [c for c in range(num_classes) if 0 < y[:, c].sum() < len(y)]
  if not multi and len(defined) < num_classes:
    defined = []  # Multi-class AUROC is undefined when a class is absent (as in metrics.py).

  def stat(w: np.ndarray) -> dict[str, np.ndarray]:
    total = w.sum(1)
    out = {"accuracy": _ratio(w @ correct, total)}
    if not multi and num_classes > 2:
      out["top2_accuracy"] = _ratio(w @ in_top2, total)
    ranked = [weighted_auroc_and_ap(y[:, c], probs[:, c], w) for c in range(num_classes)]
    auroc = np.stack([r[0] for r in ranked], 1)
    ap = np.stack([r[1] for r in ranked], 1)
    nan = np.full(len(w), np.nan)
    # Mean over defined classes; NaN propagates from any class undefined in this resample.
    out["auroc_macro"] = auroc[:, defined].mean(1) if defined else nan
    if not multi and num_classes == 2 and defined:
      # As metrics.py: the positive column's AUROC (not the mean, if rows do not sum to one).
      out["auroc_macro"] = auroc[:, 1]
    out["map"] = ap[:, defined].mean(1) if defined else nan
    rates = binary_rates(y, pred, w)
    for c, name in enumerate(class_names):
      pre = f"per_class.{name}."
      out[pre + "auroc"] = auroc[:, c] if (defined or multi) else nan
      out[pre + "average_precision"] = ap[:, c]
      for k in ("sensitivity", "specificity", "precision", "f1"):
        out[pre + k] = rates[f"{c}.{k}"]
      out[pre + "recall"] = out[pre + "sensitivity"]
    return out

  return stat


def percentile_interval(boot: np.ndarray, confidence: float) -> tuple[float, float]:
  """Equal-tailed percentile interval of the finite bootstrap values `boot`."""
  alpha = (1.0 - confidence) / 2
  lo, hi = np.quantile(boot, [alpha, 1 - alpha])
  return float(lo), float(hi)


def bca_interval(
  boot: np.ndarray, estimate: float, jack: np.ndarray, confidence: float
) -> tuple[float, float] | None:
  """Bias-corrected and accelerated interval (Efron & Tibshirani 1993, eq. 14.9-14.15).

  Args:
    boot: finite bootstrap values.
    estimate: the statistic on the full sample.
    jack: the statistic on each leave-one-cluster-out sample (all finite).
    confidence: e.g. 0.95.

  Returns:
    (lo, hi), or None where the correction breaks down (|a (z0 + z)| >= 1).
  """
  # Bias correction from the share of resamples below the estimate (ties count half: accuracy-like
  # statistics take few distinct values).
  share = (np.sum(boot < estimate) + 0.5 * np.sum(boot == estimate)) / len(boot)
  z0 = special.ndtri(np.clip(share, 0.5 / len(boot), 1 - 0.5 / len(boot)))
  d = jack.mean() - jack
  den = 6.0 * np.sum(d**2) ** 1.5
  a = np.sum(d**3) / den if den > 0 else 0.0
  alpha = (1.0 - confidence) / 2
  z = special.ndtri(np.array([alpha, 1 - alpha]))
  with np.errstate(divide="ignore", invalid="ignore"):
    levels = special.ndtr(z0 + (z0 + z) / (1 - a * (z0 + z)))
  if not np.isfinite(levels).all() or levels[0] > levels[1]:
    # |a (z0 + z)| >= 1: the correction breaks down (tiny, extreme jackknife); no BCa interval.
    return None
  lo, hi = np.quantile(boot, levels)
  return float(lo), float(hi)


def bootstrap(
  stat: StatFn,
  clusters: Clusters,
  n_resamples: int = 2000,
  seed: int = 0,
  method: str = "bca",
  confidence: float = 0.95,
) -> dict[str, dict[str, Any]]:
  """Cluster-bootstrap intervals of every value of `stat`.

  Returns:
    `{name: {"estimate", "ci": [lo, hi] or None, "method", "n_undefined"}}`. `n_undefined` counts
    the resamples in which the value was undefined (NaN, e.g. a class drawn without positives);
    they are left out of that interval. `method` is "percentile" where BCa was asked for but a
    leave-one-patient-out value was undefined (no acceleration estimate) or the BCa correction
    broke down, and the interval is
    None when the estimate itself is undefined or fewer than 100 resamples are defined.
  """
  if method not in ("bca", "percentile"):
    raise ValueError(f"method must be 'bca' or 'percentile'; got {method!r}.")
  if n_resamples < 1:
    raise ValueError(f"n_resamples must be positive; got {n_resamples}.")
  full = stat(np.ones((1, len(clusters.of_image))))
  chunks = [stat(w) for w in resample_weights(clusters, n_resamples, seed)]
  boot = {k: np.concatenate([c[k] for c in chunks]) for k in full}
  jack = None
  if method == "bca":
    jchunks = [stat(w) for w in jackknife_weights(clusters)]
    jack = {k: np.concatenate([c[k] for c in jchunks]) for k in full}
  out = {}
  for k, v in full.items():
    est = float(v[0])
    finite = boot[k][np.isfinite(boot[k])]
    r: dict[str, Any] = {
      "estimate": None if np.isnan(est) else est,
      "ci": None,
      "method": method,
      "n_undefined": int(n_resamples - len(finite)),
    }
    if not np.isnan(est) and len(finite) >= min(100, n_resamples):
      bca = None
      if method == "bca" and np.isfinite(jack[k]).all():
        bca = bca_interval(finite, est, jack[k], confidence)
      if bca is not None:
        r["ci"] = list(bca)
      else:
        r["method"] = "percentile"
        r["ci"] = list(percentile_interval(finite, confidence))
    out[k] = r
  return out


def delong_auroc(y: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
  """AUROC and its DeLong variance for binary `y`, via midranks (Sun & Xu 2014, Alg. 1).

  Image-level: assumes independent images. Raises ValueError without both positives and negatives.
  """
  y = np.asarray(y).astype(bool)
  scores = np.asarray(scores, np.float64)
  pos, neg = scores[y], scores[~y]
  m, n = len(pos), len(neg)
  if m < 2 or n < 2:
    raise ValueError(f"DeLong needs at least 2 positives and 2 negatives; got {m} and {n}.")
  tz = stats.rankdata(np.concatenate([pos, neg]))
  v10 = (tz[:m] - stats.rankdata(pos)) / n  # Per positive: share of negatives below it.
  v01 = 1.0 - (tz[m:] - stats.rankdata(neg)) / m  # Per negative: share of positives above it.
  auc = float(v10.mean())
  return auc, float(v10.var(ddof=1) / m + v01.var(ddof=1) / n)


def delong_interval(y: np.ndarray, scores: np.ndarray, confidence: float = 0.95) -> list[float]:
  """Wald interval AUROC +- z * DeLong standard error, clipped to [0, 1]."""
  auc, var = delong_auroc(y, scores)
  half = special.ndtri(0.5 + confidence / 2) * np.sqrt(var)
  return [float(max(0.0, auc - half)), float(min(1.0, auc + half))]


def ci_key(confidence: float) -> str:
  """`ci95` for 0.95: the suffix of the interval keys."""
  return f"ci{round(confidence * 100):d}"


def metrics_with_intervals(
  labels: np.ndarray,
  probs: np.ndarray,
  patient_ids: Sequence[Any] | np.ndarray | None,
  class_names: Sequence[str],
  n_resamples: int = 2000,
  seed: int = 0,
  method: str = "bca",
  confidence: float = 0.95,
  threshold: float = 0.5,
) -> dict[str, Any]:
  """`metrics.classification_metrics` with patient-bootstrap intervals beside every metric.

  Every existing key keeps its value. Added beside each metric `m` is `m_ci95` ([lo, hi], or None
  where undefined), at the top level (`accuracy_ci95`, `auroc_macro_ci95`, `top2_accuracy_ci95`,
  `map_ci95`) and in each `per_class` entry (`auroc_ci95`, `average_precision_ci95`,
  `precision_ci95`, `recall_ci95`, `f1_ci95`, `sensitivity_ci95`, `specificity_ci95`, plus
  `auroc_delong_ci95`). Values the plain report lacks are added with their interval: `map`, and
  per class `average_precision`, `sensitivity` (= recall) and `specificity`. A `bootstrap` block
  states the method, resamples, seed, clusters, images without patient id and, per metric, the
  resamples in which it was undefined.
  """
  out = metrics.classification_metrics(labels, probs, class_names)
  clusters = Clusters.from_ids(patient_ids, len(labels))
  stat = classification_stat(labels, probs, class_names, threshold=threshold)
  res = bootstrap(stat, clusters, n_resamples, seed, method, confidence)
  suffix = "_" + ci_key(confidence)
  for name, r in res.items():
    parts = name.split(".")
    target = out if len(parts) == 1 else out["per_class"][parts[1]]
    key = parts[-1]
    if key not in target:
      target[key] = r["estimate"]
    target[key + suffix] = r["ci"]
  multi = np.ndim(labels) == 2
  y = (np.asarray(labels) > 0.5) if multi else np.eye(len(class_names))[np.asarray(labels, int)]
  for c, name in enumerate(class_names):
    try:
      ci = delong_interval(y[:, c], np.asarray(probs)[:, c], confidence)
    except ValueError:
      ci = None
    out["per_class"][name]["auroc_delong" + suffix] = ci
  fallback = sorted(k for k, r in res.items() if r["method"] != method and r["ci"] is not None)
  out["bootstrap"] = {
    "unit": "patient",
    "method": method,
    "confidence": confidence,
    "n_resamples": n_resamples,
    "seed": seed,
    "n_images": int(len(labels)),
    "n_clusters": clusters.num,
    "n_images_without_patient_id": clusters.num_without_id,
    "note": (
      "Patients are resampled with replacement; images without a patient id count as their own "
      "patient. A resample in which a metric is undefined (0/0, or a class without positives or "
      "negatives) is left out of that metric's interval and counted in undefined_resamples. "
      "auroc_delong is an image-level cross-check (assumes independent images)."
    ),
    "undefined_resamples": {k: r["n_undefined"] for k, r in res.items() if r["n_undefined"]},
    "percentile_fallback": fallback,
  }
  return out
