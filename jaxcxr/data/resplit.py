"""Patient-disjoint, class-stratified re-splits, class balancing and duplicate-aware groups.

* **Splits** (`input.splits.method`): `fractions` (train/val/test shares), `kfold` (k folds,
  `fold=i` is held out; validation carved from the rest, or with `val_from='held_out'` the held-out
  fold halved by patient into validation and test, Alotaibi 2020's protocol) and an exact number
  of test images per class (`test_per_class`, as one study held out 60 per class), all with
  scikit-learn's `StratifiedGroupKFold` grouped by patient.
* **Per-class caps and factors** (`input.class_caps`, `input.class_factors`): whole patients
  capped per class before a re-split (`cap_rows`); training rows repeated per class
  (`factor_rows`).
* **Duplicate-aware groups** (`input.splits.group_duplicates`): patients whose images are (near)
  duplicates of each other are kept on one side (`group_duplicates`).
* **Class balance** (`input.balance`): `oversample` (repeat minority-class images) or
  `undersample` (drop majority-class images), seeded (`balance_rows`).

References: Roberts et al., "Common pitfalls and recommendations for using machine learning to
detect and prognosticate for COVID-19 using chest radiographs and CT scans", Nat. Mach. Intell.
3, 2021 (patient overlap and composite-set pitfalls).
"""

from __future__ import annotations

import collections
import json
import os
from typing import Any

import numpy as np
from absl import logging
from sklearn import model_selection

from jaxcxr.data import duplicates
from jaxcxr.data.classes import Index

BALANCE = ("none", "oversample", "undersample")
VAL_FROM = ("rest", "held_out")


def group_fold(labels, groups, n_splits: int, seed: int, fold: int = 0):
  """(rest, held-out) row indices: fold `fold` of a patient-grouped stratified k-fold."""
  n_groups = len(set(groups))
  if n_splits < 2 or n_groups < n_splits:
    raise ValueError(
      f"Cannot make {n_splits} patient-grouped folds from {n_groups} patients; use fewer folds "
      "or smaller fractions."
    )
  sgkf = model_selection.StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
  try:
    for i, (rest, held) in enumerate(sgkf.split(np.zeros(len(labels)), labels, groups)):
      if i == fold:
        return rest, held
  except ValueError as e:
    counts = dict(zip(*(v.tolist() for v in np.unique(labels, return_counts=True)), strict=True))
    raise ValueError(
      f"Cannot make {n_splits} stratified folds: images per class (stratum) {counts}. Use fewer "
      f"folds or larger held-out fractions. ({e})"
    ) from e
  raise ValueError(f"fold={fold} is out of range for {n_splits} folds.")


def fraction_folds(fraction: float) -> int:
  """The k whose one fold is closest to `fraction` of the data."""
  if not 0.0 < fraction < 1.0:
    raise ValueError(f"A held-out fraction must be in (0, 1); got {fraction}.")
  return max(2, int(round(1.0 / fraction)))


def per_class_test(labels, groups, per_class: int, num_classes: int, seed: int) -> np.ndarray:
  """Rows of whole patients such that every class has exactly `per_class` images, if possible.

  Patients are visited in a seeded random order and taken when none of their classes would
  overflow; a class that cannot be filled exactly raises (with the counts).
  """
  totals = np.bincount(labels, minlength=num_classes)
  if (totals < per_class).any():
    short = {int(k): int(totals[k]) for k in np.flatnonzero(totals < per_class)}
    raise ValueError(f"test_per_class={per_class} but classes {short} have fewer images.")
  by_patient = collections.defaultdict(list)
  for row, g in enumerate(groups):
    by_patient[g].append(row)
  order = sorted(by_patient)
  np.random.default_rng(seed).shuffle(order)
  count = np.zeros(num_classes, np.int64)
  taken = []
  for g in order:
    rows = by_patient[g]
    add = np.bincount(labels[rows], minlength=num_classes)
    if (count + add <= per_class).all():
      count += add
      taken.extend(rows)
      if (count == per_class).all():
        break
  if not (count == per_class).all():
    raise ValueError(
      f"Could not pick exactly {per_class} test images per class from whole patients "
      f"(got {count.tolist()}); try another splits.seed or a smaller test_per_class."
    )
  return np.sort(np.asarray(taken, np.int64))


def split_rows(labels: np.ndarray, groups: np.ndarray, cfg, num_classes: int) -> dict[str, Any]:
  """Patient-disjoint, class-stratified rows for train/val/test from `cfg` (input.splits).

  Args:
    labels: class id per row.
    groups: patient per row.
    cfg: `method` ('fractions' | 'kfold'), `fractions` (train, val, test), `num_folds`, `fold`,
      `val_fraction`, `test_per_class`, `seed`.
    num_classes: number of classes.

  Returns:
    `{split name: row indices}`; splits with no rows are omitted.
  """
  labels, groups = np.asarray(labels), np.asarray(groups)
  rows = np.arange(len(labels))
  seed = int(cfg.seed)
  if cfg.method == "kfold" and cfg.test_per_class:
    raise ValueError("config.input.splits: kfold makes its own test folds; unset test_per_class.")
  val_from = cfg.get("val_from", "rest")
  if val_from not in VAL_FROM:
    raise ValueError(f"config.input.splits.val_from={val_from!r} is not one of {VAL_FROM}.")
  if val_from == "held_out" and cfg.method != "kfold":
    raise ValueError("config.input.splits.val_from='held_out' needs method='kfold'.")
  if cfg.method == "kfold" and val_from == "held_out":
    # Alotaibi 2020: validation and test are the two patient-grouped, stratified halves of the
    # held-out fold, so every image is tested in exactly one fold and validated in exactly one.
    train, held = group_fold(labels, groups, int(cfg.num_folds), seed, int(cfg.fold))
    r_val, r_test = group_fold(labels[held], groups[held], 2, seed + 1)
    out = {"train": train, "val": held[r_val], "test": held[r_test]}
    return {k: np.sort(v) for k, v in out.items() if len(v)}
  if cfg.method == "kfold":
    rest, test = group_fold(labels, groups, int(cfg.num_folds), seed, int(cfg.fold))
    val_share = (
      float(cfg.val_fraction) / (1.0 - 1.0 / int(cfg.num_folds)) if cfg.val_fraction else 0
    )
  elif cfg.test_per_class:
    test = per_class_test(labels, groups, int(cfg.test_per_class), num_classes, seed)
    rest = np.setdiff1d(rows, test)
    _, val_f, _ = cfg.fractions
    val_share = float(val_f) / max(1e-9, 1.0 - len(test) / len(rows)) if val_f else 0.0
  else:
    train_f, val_f, test_f = (float(f) for f in cfg.fractions)
    if abs(train_f + val_f + test_f - 1.0) > 1e-6:
      raise ValueError(f"config.input.splits.fractions={cfg.fractions} must sum to 1.")
    if test_f:
      rest, test = group_fold(labels, groups, fraction_folds(test_f), seed)
    else:
      rest, test = rows, rows[:0]
    val_share = val_f / (train_f + val_f) if val_f else 0.0
  out = {"test": test}
  if val_share:
    r_train, r_val = group_fold(labels[rest], groups[rest], fraction_folds(val_share), seed + 1)
    out["train"], out["val"] = rest[r_train], rest[r_val]
  else:
    out["train"] = rest
  return {k: np.sort(v) for k, v in out.items() if len(v)}


def balance_rows(labels: np.ndarray, how: str, seed: int) -> np.ndarray:
  """Row indices that equalise class counts: `oversample` up to the largest, `undersample` down
  to the smallest class (random, seeded; every original row is kept when oversampling)."""
  if how not in BALANCE:
    raise ValueError(f"config.input.balance={how!r} is not one of {BALANCE}.")
  rows = np.arange(len(labels))
  if how == "none":
    return rows
  rng = np.random.default_rng(seed)
  per_class = {k: rows[labels == k] for k in np.unique(labels)}
  sizes = [len(v) for v in per_class.values()]
  out = []
  for r in per_class.values():
    if how == "oversample":
      extra = rng.choice(r, max(sizes) - len(r), replace=True)
      out.append(np.concatenate([r, extra]))
    else:
      out.append(rng.choice(r, min(sizes), replace=False))
  return np.sort(np.concatenate(out))


def cap_rows(labels: np.ndarray, groups: np.ndarray, caps: dict[int, int], seed: int) -> np.ndarray:
  """Rows kept under per-class caps `{class id: max images}` (Rachha 2020: 704 no-finding, 500
  pneumonia): whole patients in a seeded random order, taken while their class stays under its
  cap, so a capped class keeps at most `cap` images and no patient is cut in two."""
  rows = np.arange(len(labels))
  keep = np.ones(len(labels), bool)
  rng = np.random.default_rng(seed)
  for k, cap in caps.items():
    in_class = rows[labels == k]
    patients = list(dict.fromkeys(groups[in_class]))
    rng.shuffle(patients)
    count, kept = 0, set()
    by_patient = collections.Counter(groups[in_class])
    for g in patients:
      if count + by_patient[g] <= cap:
        kept.add(g)
        count += by_patient[g]
    keep[in_class] = np.isin(groups[in_class], list(kept))
  return rows[keep]


def factor_rows(labels: np.ndarray, factors: dict[int, float], seed: int) -> np.ndarray:
  """Training rows with class k repeated `factors[k]` times (Bassi & Attux 2021: x8 / x8 / x72):
  every row floor(f) times, plus a seeded random share for the fraction. Repetition in the index
  keeps the sampler exactly resumable (grain's position covers it); the augmentation differs per
  copy because its key comes from the step and the example."""
  rng = np.random.default_rng(seed)
  rows = np.arange(len(labels))
  out = []
  for k in np.unique(labels):
    r = rows[labels == k]
    f = float(factors.get(int(k), 1.0))
    whole, frac = int(f), f - int(f)
    out.extend([r] * whole)
    if frac:
      out.append(rng.choice(r, int(round(frac * len(r))), replace=False))
  return np.sort(np.concatenate(out)) if out else rows


def group_duplicates(index: Index, readers: list[dict[str, Any]]) -> tuple[np.ndarray, dict]:
  """Split groups that join patients whose images are (near) duplicates of each other.

  Patient ids are not always trustworthy: Cohen's collection files some radiographs under two
  patient ids, composite sets re-use images of other sets. Grouping by patient alone would put
  such copies on both sides of a split. Images are matched with the leakage audit's perceptual
  hashes (`jaxcxr.data.duplicates.duplicate_pairs`: resized, re-encoded, flipped and rotated
  copies), and a group is a connected component of "same patient" ∪ "duplicate image".
  """
  n = len(index)
  feats = [
    duplicates.image_features(readers[c][sp][int(r)]["image"])
    for c, sp, r in zip(index.component, index.split, index.record, strict=True)
  ]
  i, j, _, _ = duplicates.duplicate_pairs(feats)
  _, first = np.unique(index.patient, return_index=True)
  patient_root = first[np.unique(index.patient, return_inverse=True)[1]]
  rows = np.concatenate([i, np.arange(n)])
  cols = np.concatenate([j, patient_root])
  num_groups, component = duplicates.component_labels(n, rows, cols)
  num_patients = len(first)
  report = {
    "duplicate_pairs": int(len(i)),
    "cross_patient_pairs": int((index.patient[i] != index.patient[j]).sum()),
    "patients_merged": int(num_patients - num_groups),
  }
  if report["patients_merged"]:
    logging.warning(
      "%d pairs of duplicate images join %d patients into shared split groups: %s",
      report["cross_patient_pairs"], report["patients_merged"],
      sorted({(index.patient[a], index.patient[b]) for a, b in zip(i, j, strict=True)
              if index.patient[a] != index.patient[b]})[:20],
    )  # fmt: skip
  return np.asarray([f"group{k}" for k in component], dtype=object), report


def run_patients(run: str, key: str) -> dict[str, list[str]]:
  """Split -> patient ids of a run's `data_splits.json` (`key`: the config key that named it)."""
  path = os.path.join(run, "data_splits.json")
  try:
    with open(path) as f:
      return json.load(f)["patients"]
  except FileNotFoundError:
    raise FileNotFoundError(
      f"{key}={run!r}: no {path} (a jaxcxr run's workdir writes one)."
    ) from None
  except (KeyError, TypeError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: expected a JSON object with 'patients' per split ({e}).") from None


def source_overlap(splits: dict[str, Any], train_split: str, run: str) -> dict[str, list[str]]:
  """Per evaluation split (every split but `train_split`): its patients that the run `run` (the
  source of `model_init`) trained on, and for splits other than 'val' also those it selected its
  model by (its val split); `pin_rows`' rule, so a pinned re-split has none."""
  saved = run_patients(run, "config.model_init")
  trained = set(saved.get("train", ()))
  seen = trained | set(saved.get("val", ()))
  return {
    s: sorted(set(map(str, v.patients)) & (trained if s == "val" else seen))
    for s, v in splits.items()
    if s != train_split
  }


def pin_rows(
  pool: np.ndarray, patients: np.ndarray, groups: np.ndarray, run: str
) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """Rows of `pool` whose patient `run` had, in that run's split; and the rest of the pool.

  `run`: a workdir with the `data_splits.json` training wrote (its `patients`: split -> patient
  ids, namespaced by dataset as here). A duplicate group (`groups`) with a pinned patient goes
  whole to that patient's split; a group pinned to two splits takes the later of test, val,
  train, so no image of a patient that run tested is trained on here.
  """
  saved = run_patients(run, "config.input.splits.pin_run")
  order = {s: i for i, s in enumerate(("train", "val", "test"))}
  rank = lambda s: order.get(s, len(order))  # Other split names (a fold's) rank as test.
  where = {}
  for split, ids in saved.items():
    for p in ids:
      where[p] = max(where.get(p, split), split, key=rank)
  group_split: dict[Any, str] = {}
  for r in pool:
    s = where.get(str(patients[r]))
    if s is not None:
      g = groups[r]
      group_split[g] = max(group_split.get(g, s), s, key=rank)
  split_of = np.array([group_split.get(groups[r], "") for r in pool], dtype=object)
  pinned = {s: pool[split_of == s] for s in sorted(set(split_of) - {""}, key=rank)}
  return pinned, pool[split_of == ""]


def check_disjoint(splits: dict[str, Any]) -> None:
  """Raises if a patient is in two splits: the guarantee every re-split method makes."""
  seen: dict[str, str] = {}
  for s, v in splits.items():
    for p in set(v.patients):
      if p in seen and seen[p] != s:
        raise AssertionError(f"patient {p} is in splits {seen[p]} and {s}")
      seen[p] = s
