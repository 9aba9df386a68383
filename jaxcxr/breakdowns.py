"""Per-group and per-patient views of a split's predictions.

A pooled figure can hide a model that only works at one hospital: in the COVID-19 mixtures every
COVID-19 image comes from other sources than the normal ones, so "accuracy" may be source
recognition (DeGrave et al. 2021, "AI for radiographic COVID-19 detection selects shortcuts over
signal"). `by_group` reports the metrics (with patient-bootstrap intervals) of each value of a key
array: the `source` feature, or the dataset of each image in a mixture. `aggregate_by_patient`
turns image predictions into one prediction per patient (mean or max over the patient's images),
the unit a clinician decides on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxcxr import intervals, metrics

MISSING = "<missing>"


def _as_str(values: Sequence[Any] | np.ndarray) -> np.ndarray:
  decode = lambda v: v.decode() if isinstance(v, bytes) else v
  return np.asarray([MISSING if v is None or v == "" else str(decode(v)) for v in values], object)


def by_group(
  keys: Sequence[Any] | np.ndarray,
  labels: np.ndarray,
  probs: np.ndarray,
  class_names: Sequence[str],
  patient_ids: Sequence[Any] | np.ndarray | None = None,
  with_intervals: bool = True,
  key_name: str = "source",
  **bootstrap_kw: Any,
) -> dict[str, Any]:
  """Metrics of each group of images sharing a key value (e.g. `source`, or dataset).

  Args:
    keys: (N,) the group of every image; None or "" is the group "<missing>" (kept, not dropped).
    labels, probs, class_names: as `metrics.classification_metrics`.
    patient_ids: (N,) for the patient bootstrap (None: images are their own clusters).
    with_intervals: `intervals.metrics_with_intervals` per group (else the plain metrics).
    key_name: what the keys are, written into the result.
    **bootstrap_kw: n_resamples, seed, method, confidence for the intervals.

  Returns:
    `{"key": key_name, "counts": {group: images}, "groups": {group: metrics}}`, groups sorted.
    A patient in several groups is resampled within each group separately.
  """
  keys = _as_str(keys)
  labels, probs = np.asarray(labels), np.asarray(probs)
  if len(keys) != len(labels) or len(probs) != len(labels):
    raise ValueError(
      f"keys ({len(keys)}), labels ({len(labels)}) and probs ({len(probs)}) must have one entry "
      "per image."
    )
  pids = None if patient_ids is None else np.asarray(patient_ids, object)
  if pids is not None and len(pids) != len(labels):
    raise ValueError(f"patient_ids has {len(pids)} entries; expected {len(labels)}.")
  groups, counts = {}, {}
  for g in sorted(set(keys)):
    m = keys == g
    counts[g] = int(m.sum())
    if with_intervals:
      groups[g] = intervals.metrics_with_intervals(
        labels[m], probs[m], None if pids is None else pids[m], class_names, **bootstrap_kw
      )
    else:
      groups[g] = metrics.classification_metrics(labels[m], probs[m], class_names)
  return {"key": key_name, "counts": counts, "groups": groups}


def aggregate_by_patient(
  labels: np.ndarray,
  probs: np.ndarray,
  patient_ids: Sequence[Any] | np.ndarray | None,
  how: str = "mean",
) -> dict[str, Any]:
  """One prediction per patient from the patient's images.

  Args:
    labels: integer (N,) (a patient's images must agree; a conflict is an error naming the
      patient) or multi-hot (N, C) (a patient has a finding if any image has it).
    probs: (N, C).
    patient_ids: (N,); images without an id (None/"") are their own patient.
    how: "mean" of the images' probabilities, or "max" per class (for softmax outputs the maxima
      are renormalised to sum to one, so the argmax is the class most strongly seen in any image).

  Returns:
    `{"labels", "probs", "patient_ids", "num_images" (per patient), "num_images_without_patient_id",
    "how"}`; patients in order of first appearance.
  """
  if how not in ("mean", "max"):
    raise ValueError(f"how must be 'mean' or 'max'; got {how!r}.")
  labels, probs = np.asarray(labels), np.asarray(probs, np.float64)
  n = len(labels)
  if probs.shape[0] != n:
    raise ValueError(f"probs has {probs.shape[0]} rows; labels has {n}.")
  clusters = intervals.Clusters.from_ids(patient_ids, n)
  # Order patients by first appearance (np.unique sorts them).
  _, first = np.unique(clusters.of_image, return_index=True)
  order = np.argsort(first)
  rank = np.empty_like(order)
  rank[order] = np.arange(len(order))
  pat = rank[clusters.of_image]
  num = np.bincount(pat, minlength=len(order))
  multi = labels.ndim == 2
  if multi:
    out_labels = np.zeros((len(order), labels.shape[1]), labels.dtype)
    np.maximum.at(out_labels, pat, labels)
  else:
    out_labels = np.full(len(order), -1, np.int64)
    out_labels[pat] = labels
    conflict = np.flatnonzero(out_labels[pat] != labels)
    if conflict.size:
      i = conflict[0]
      raise ValueError(
        f"patient {str(patient_ids[i])!r} has images labelled "
        f"{sorted({int(v) for v in labels[pat == pat[i]]})}; "
        "patient-level aggregation needs one label per patient."
      )
  if how == "mean":
    out_probs = np.zeros((len(order), probs.shape[1]))
    np.add.at(out_probs, pat, probs)
    out_probs /= num[:, None]
  else:
    out_probs = np.full((len(order), probs.shape[1]), -np.inf)
    np.maximum.at(out_probs, pat, probs)
    if not multi:
      out_probs /= out_probs.sum(1, keepdims=True)
  ids = np.empty(len(order), object)
  ids[pat] = (
    [None] * n
    if patient_ids is None
    else [None if p is None or p == "" else p for p in np.asarray(patient_ids, object)]
  )
  return {
    "labels": out_labels,
    "probs": out_probs,
    "patient_ids": ids,
    "num_images": num,
    "num_images_without_patient_id": clusters.num_without_id,
    "how": how,
  }
