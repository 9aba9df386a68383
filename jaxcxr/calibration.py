"""Calibration of predicted probabilities: ECE, Brier score, reliability diagrams, temperature.

* Expected calibration error (Naeini et al. 2015; Guo et al. 2017, "On Calibration of Modern
  Neural Networks"): images are binned by confidence into equal-width bins and ECE is the
  count-weighted mean |accuracy - mean confidence| over bins. The default is Guo et al.'s
  top-label ECE with 15 bins; the classwise form (Kull et al. 2019) bins every class's one-vs-rest
  probability and averages over classes, and is the only form for multi-label outputs. The binning
  is written into every result, since ECE depends on it.
* Brier score (Brier 1950): the mean over images of sum_c (p_c - 1[y = c])^2 (range [0, 2]), from
  `sklearn.metrics.brier_score_loss` with `scale_by_half=False`; for multi-label outputs the mean of
  the per-finding binary scores (range [0, 1]).
* Temperature scaling (Guo et al. 2017): one scalar T > 0 fitted by minimising the validation
  negative log-likelihood of softmax(z / T) (sigmoid(z / T) per finding for multi-label outputs),
  with `scipy.optimize.minimize_scalar` over log T. It changes no argmax, so accuracy is unchanged.
  When only probabilities are stored, z = log p works for softmax (softmax is invariant to the
  per-row constant log-sum-exp) and z = logit(p) for sigmoids, so refitting from saved
  probabilities is exact (except for stored 0s and 1s, clipped below).

Fitting (temperature, and thresholds in `jaxcxr.operating_points`) takes the split's name and
refuses test splits (`require_fitting_split`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
from scipy import optimize, special
from sklearn import metrics as skm

DEFAULT_BINS = 15
# Stored probabilities are clipped into (0, 1) before logs: float32 softmax/sigmoid outputs reach 0
# and 1 exactly, and nothing else is changed by the clip.
LOW, HIGH = 1e-300, np.nextafter(1.0, 0.0)
# Search range of the temperature (Guo et al. report fitted values between about 1 and 3).
T_BOUNDS = (0.05, 20.0)


def require_fitting_split(split: str, what: str) -> None:
  """Raises ValueError if `split` names a test split: nothing may be fitted or chosen on test."""
  if not isinstance(split, str) or not split:
    raise ValueError(f"{what} needs the name of the split it is fitted on; got {split!r}.")
  if "test" in split.lower():
    raise ValueError(
      f"{what} must be fitted on a validation split, not {split!r}: choosing on the test split "
      "makes its figures optimistic. Fit on `val` and apply the result to test."
    )


def _is_multilabel(labels: np.ndarray) -> bool:
  return np.ndim(labels) == 2


def _check(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  probs = np.asarray(probs, np.float64)
  labels = np.asarray(labels)
  if probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
    raise ValueError(f"probs must be (num_examples={labels.shape[0]}, C); got {probs.shape}.")
  if _is_multilabel(labels) and labels.shape != probs.shape:
    raise ValueError(f"multi-hot labels {labels.shape} and probs {probs.shape} must match.")
  if not _is_multilabel(labels) and probs.size:
    # float32 softmax rows sum to 1 only to ~1e-7 and sklearn checks at float64 precision:
    # such rows are renormalised in float64 (anything else, e.g. logits, is left as it is).
    sums = probs.sum(axis=1, keepdims=True)
    if np.all(probs >= 0) and np.allclose(sums, 1.0, atol=1e-4):
      probs = probs / sums
  return labels, probs


def _bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> dict[str, Any]:
  """Equal-width bins ((b-1)/n, b/n] (0 goes in the first) of `confidence` vs 0/1 `correct`."""
  idx = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
  count = np.bincount(idx, minlength=n_bins)
  conf_sum = np.bincount(idx, weights=confidence, minlength=n_bins)
  right = np.bincount(idx, weights=correct.astype(np.float64), minlength=n_bins)
  with np.errstate(invalid="ignore", divide="ignore"):
    acc, conf = right / count, conf_sum / count
  gaps = np.where(count > 0, np.abs(acc - conf), 0.0)
  return {
    "ece": float((count * gaps).sum() / count.sum()),
    "edges": np.linspace(0, 1, n_bins + 1).tolist(),
    "count": count.tolist(),
    "accuracy": [None if c == 0 else float(a) for c, a in zip(count, acc, strict=True)],
    "confidence": [None if c == 0 else float(v) for c, v in zip(count, conf, strict=True)],
  }


def expected_calibration_error(
  labels: np.ndarray, probs: np.ndarray, n_bins: int = DEFAULT_BINS, classwise: bool = False
) -> dict[str, Any]:
  """ECE of `probs` (N, C) against integer `labels` (N,) or multi-hot `labels` (N, C).

  Returns:
    `{"ece", "binning", "bins": {edges, count, accuracy, confidence}}`. Top-label by default:
    confidence = max_c p_c, correct = (argmax == label). With `classwise=True` (always for
    multi-label) `ece` is the mean over classes of the one-vs-rest ECE, `per_class` holds each
    class's value and `bins` is omitted.
  """
  labels, probs = _check(labels, probs)
  if n_bins < 1:
    raise ValueError(f"n_bins must be positive; got {n_bins}.")
  if _is_multilabel(labels) or classwise:
    y = (labels > 0.5) if _is_multilabel(labels) else np.eye(probs.shape[1])[labels.astype(int)]
    per = [_bins(probs[:, c], y[:, c], n_bins)["ece"] for c in range(probs.shape[1])]
    return {
      "ece": float(np.mean(per)),
      "binning": f"equal-width, {n_bins} bins, classwise (one-vs-rest, mean over classes)",
      "per_class": per,
    }
  b = _bins(probs.max(1), probs.argmax(1) == labels, n_bins)
  return {
    "ece": b.pop("ece"),
    "binning": f"equal-width, {n_bins} bins, top-label (max probability)",
    "bins": b,
  }


def brier_score(labels: np.ndarray, probs: np.ndarray) -> float:
  """Multi-class Brier score sum_c (p_c - y_c)^2 averaged over images (range [0, 2]).

  For multi-hot labels: the mean over findings of the binary Brier score (range [0, 1]).
  """
  labels, probs = _check(labels, probs)
  if _is_multilabel(labels):
    y = (labels > 0.5).astype(int)
    return float(np.mean([skm.brier_score_loss(y[:, c], probs[:, c]) for c in range(y.shape[1])]))
  return float(
    skm.brier_score_loss(
      labels.astype(int), probs, labels=list(range(probs.shape[1])), scale_by_half=False
    )
  )


def calibration_report(
  labels: np.ndarray, probs: np.ndarray, n_bins: int = DEFAULT_BINS
) -> dict[str, Any]:
  """ECE (top-label and classwise), Brier score and NLL: the `calibration` block of a report."""
  labels, probs = _check(labels, probs)
  multi = _is_multilabel(labels)
  out = {
    "brier": brier_score(labels, probs),
    "brier_definition": (
      "mean over findings of the binary Brier score (range [0, 1])"
      if multi
      else "mean over images of sum over classes (p_c - y_c)^2 (range [0, 2])"
    ),
    "nll": negative_log_likelihood(labels, probs),
    "ece_classwise": expected_calibration_error(labels, probs, n_bins, classwise=True),
  }
  if not multi:
    out["ece"] = expected_calibration_error(labels, probs, n_bins)
  return out


def reliability_diagram(
  labels: np.ndarray,
  probs: np.ndarray,
  path: str,
  title: str = "",
  n_bins: int = DEFAULT_BINS,
) -> str:
  """Writes a top-label reliability diagram (Guo et al. 2017, Fig. 1) to the PNG `path`.

  Top: accuracy per confidence bin (bars) against the diagonal of perfect calibration, with the gap
  to the bin's mean confidence shaded and the ECE in the title. Bottom: images per bin. For
  multi-label outputs the pooled one-vs-rest probabilities of all findings are binned.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  labels, probs = _check(labels, probs)
  if _is_multilabel(labels):
    b = _bins(probs.ravel(), (labels > 0.5).ravel(), n_bins)
    kind = "pooled one-vs-rest, all findings"
  else:
    b = _bins(probs.max(1), probs.argmax(1) == labels, n_bins)
    kind = "top-label"
  edges = np.asarray(b["edges"])
  centres, width = (edges[:-1] + edges[1:]) / 2, 1.0 / n_bins
  acc = np.array([np.nan if a is None else a for a in b["accuracy"]])
  conf = np.array([np.nan if c is None else c for c in b["confidence"]])
  fig, (ax, hist) = plt.subplots(
    2, 1, figsize=(4.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
  )
  ax.bar(centres, np.nan_to_num(acc), width, edgecolor="black", label="accuracy")
  ax.bar(
    centres,
    np.nan_to_num(conf - acc),
    width,
    bottom=np.nan_to_num(acc),
    color="tab:red",
    alpha=0.3,
    edgecolor="tab:red",
    label="gap to confidence",
  )
  ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
  ax.set(ylim=(0, 1), ylabel="accuracy")
  ax.set_title(
    f"{title + ': ' if title else ''}ECE {b['ece']:.3f}\n({n_bins} equal-width bins, {kind})",
    fontsize=9,
  )
  ax.legend(loc="upper left", fontsize=8)
  hist.bar(centres, b["count"], width, edgecolor="black", color="grey")
  hist.set(xlim=(0, 1), xlabel="confidence", ylabel="images")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def logits_from_probs(probs: np.ndarray, multilabel: bool) -> np.ndarray:
  """Logits that reproduce `probs`: log p (softmax; exact up to a per-row constant) or logit(p)."""
  p = np.clip(np.asarray(probs, np.float64), LOW, HIGH)
  return special.logit(p) if multilabel else np.log(p)


def probs_from_logits(logits: np.ndarray, multilabel: bool) -> np.ndarray:
  return special.expit(logits) if multilabel else special.softmax(logits, axis=1)


def _nll(labels: np.ndarray, logits: np.ndarray, multilabel: bool) -> float:
  if multilabel:
    y = labels > 0.5
    # -log sigmoid(z) = log(1 + e^-z); -log(1 - sigmoid(z)) = log(1 + e^z).
    return float(np.mean(np.where(y, np.logaddexp(0, -logits), np.logaddexp(0, logits))))
  logp = special.log_softmax(logits, axis=1)
  return float(-np.mean(logp[np.arange(len(labels)), labels.astype(int)]))


def negative_log_likelihood(labels: np.ndarray, probs: np.ndarray) -> float:
  """Mean NLL of the true class (multi-label: mean binary cross-entropy per finding)."""
  labels, probs = _check(labels, probs)
  multi = _is_multilabel(labels)
  return _nll(labels, logits_from_probs(probs, multi), multi)


@dataclasses.dataclass(frozen=True)
class Temperature:
  """A fitted temperature and how it was fitted (what is saved with a run)."""

  temperature: float
  fitted_on: str
  num_examples: int
  nll_before: float
  nll_after: float
  multilabel: bool

  def apply(self, probs: np.ndarray | None = None, logits: np.ndarray | None = None) -> np.ndarray:
    """Calibrated probabilities from stored `probs` or raw `logits` (exactly one)."""
    if (probs is None) == (logits is None):
      raise ValueError("Pass exactly one of probs or logits.")
    z = logits_from_probs(probs, self.multilabel) if logits is None else np.asarray(logits)
    return probs_from_logits(np.asarray(z, np.float64) / self.temperature, self.multilabel)

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self) | {
      "method": "temperature scaling (Guo et al. 2017): probs = softmax(logits / T)"
      + (" (sigmoid per finding)" if self.multilabel else "")
    }

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> Temperature:
    fields = [f.name for f in dataclasses.fields(cls)]
    missing = [f for f in fields if f not in d]
    if missing:
      raise ValueError(f"temperature JSON lacks {missing}; has {sorted(d)}.")
    return cls(**{f: d[f] for f in fields})


def fit_temperature(
  labels: np.ndarray,
  *,
  split: str,
  probs: np.ndarray | None = None,
  logits: np.ndarray | None = None,
) -> Temperature:
  """Fits T on a validation split by minimising the NLL of softmax(z / T) (sigmoid if multi-hot).

  Args:
    labels: integer (N,) or multi-hot (N, C) labels of the validation split.
    split: that split's name; a test split is refused.
    probs: stored probabilities (N, C), or
    logits: raw logits (N, C) (exactly one of the two).
  """
  require_fitting_split(split, "Temperature scaling")
  if (probs is None) == (logits is None):
    raise ValueError("Pass exactly one of probs or logits.")
  multi = _is_multilabel(labels)
  z = logits_from_probs(probs, multi) if logits is None else np.asarray(logits, np.float64)
  labels, z = _check(labels, z)
  objective = lambda log_t: _nll(labels, z / np.exp(log_t), multi)
  res = optimize.minimize_scalar(
    objective, bounds=tuple(np.log(T_BOUNDS)), method="bounded", options={"xatol": 1e-6}
  )
  if not res.success:
    raise RuntimeError(f"Temperature fit on {split!r} did not converge: {res.message}")
  return Temperature(
    temperature=float(np.exp(res.x)),
    fitted_on=split,
    num_examples=int(len(labels)),
    nll_before=_nll(labels, z, multi),
    nll_after=float(res.fun),
    multilabel=multi,
  )
