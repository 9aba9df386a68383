"""What training reads: `load(config.input)` turns datasets into a run's named splits.

One orchestrating function over the data modules:

    config.input ─ classes.components ─▶ tfds_access (builders) ─▶ classes.read_index
      (labels, patients, class maps; no image decoded) ─▶ resplit (patient-disjoint, stratified,
      duplicate-aware; balancing) ─▶ views.View per split ─▶ views.Data

It gives users the splits the published COVID-19 studies lacked: patient-disjoint, class-
stratified re-splits (`input.splits`), which can keep a dataset's official split (`keep=('test',)`)
and re-split only the rest (patients of a kept split are then removed from the others, counted, so
no patient is on both sides); mixtures with class maps (`input.mixture`, `jaxcxr.data.classes`);
class balance (`input.balance`). The common case (one dataset, its own splits) reads the builder's
splits as they are.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np
from absl import logging

from jaxcxr.data import classes, resplit, tfds_access
from jaxcxr.data.views import Data, View, _PlainView, describe

SPLIT_METHODS = ("builder", "fractions", "kfold")


def class_ids(pairs, class_names, key: str) -> dict[int, float]:
  """`((class name, value), ...)` of `config.input.<key>` as `{class id: value}`."""
  out = {}
  for item in pairs:
    name, value = item
    if name not in class_names:
      raise ValueError(f"config.input.{key} names class {name!r}; the classes are {class_names}.")
    if not value > 0:
      raise ValueError(f"config.input.{key}: {name!r}={value!r} must be positive.")
    out[list(class_names).index(name)] = value
  return out


def load(cfg: ml_collections.ConfigDict) -> Data:
  """The splits of `cfg` (= config.input) over prepared datasets (see `tfds_access.prepare`)."""
  comps = classes.components(cfg)
  builders = [tfds_access.get_builder(c.data, cfg.data_dir) for c in comps]
  for comp, b in zip(comps, builders, strict=True):
    if not tfds_access.is_prepared(b):
      raise FileNotFoundError(
        f"Dataset {comp.data} is not prepared in {b.data_dir}. Run `tfds build` for it (see "
        "tfds_builders/<name>/README.md) or set config.input.prepare=True."
      )
  scfg = cfg.splits
  if scfg.method not in SPLIT_METHODS:
    raise ValueError(f"config.input.splits.method={scfg.method!r} is not one of {SPLIT_METHODS}.")
  class_names = classes.output_classes(comps, builders, cfg)
  kind = tfds_access.label_kind(builders[0])
  multi = kind == "multi"
  if multi and cfg.get("balance", "none") != "none":
    raise ValueError(
      "config.input.balance resamples by class; it is undefined for multi-label data."
    )
  if multi and scfg.test_per_class:
    raise ValueError("config.input.splits.test_per_class is undefined for multi-label data.")
  plain = (
    len(comps) == 1
    and not comps[0].class_map
    and not comps[0].splits
    and kind == "single"  # Multi-label and segmentation records need the index's labels.
  )
  if scfg.get("balance", "none") != "none" and scfg.method == "builder":
    raise ValueError(
      "config.input.splits.balance resamples the pool a re-split draws from; set "
      "input.splits.method to 'fractions' or 'kfold' (or use input.balance for the training split)."
    )
  if cfg.get("class_caps", ()) and scfg.method == "builder":
    raise ValueError(
      "config.input.class_caps caps the pool a re-split draws from; set input.splits.method to "
      "'fractions' or 'kfold' (capping a dataset's own splits would shrink its test split)."
    )
  resampled = cfg.get("balance", "none") != "none" or cfg.get("class_factors", ())
  if plain and scfg.method == "builder" and not resampled:
    # The common case needs no index: one view per builder split, read as is.
    builder = builders[0]
    splits = {s: _PlainView(s, builder, comps[0].data) for s in builder.info.splits.keys()}
    return Data(splits, class_names, {"method": "builder"})

  index, readers, report = classes.read_index(comps, builders, class_names)
  names = [c.data for c in comps]
  if scfg.method == "builder":
    parts = {s: np.flatnonzero(index.split == s) for s in dict.fromkeys(index.split)}
  else:
    keep = tuple(scfg.keep)
    kept = {s: np.flatnonzero(index.split == s) for s in keep}
    for s, rows in kept.items():
      if not len(rows):
        raise ValueError(f"config.input.splits.keep names {s!r}, which no dataset provides.")
    groups = index.patient
    if scfg.group_duplicates:
      groups, report["duplicates_grouped"] = resplit.group_duplicates(index, readers)
    pool = np.flatnonzero(~np.isin(index.split, list(keep)))
    caps = class_ids(cfg.get("class_caps", ()), class_names, "class_caps")
    if caps:
      before = np.bincount(index.label[pool], minlength=len(class_names))
      pool = pool[resplit.cap_rows(index.label[pool], groups[pool], caps, int(scfg.seed))]
      report["class_caps"] = {
        "before": before.tolist(),
        "after": np.bincount(index.label[pool], minlength=len(class_names)).tolist(),
      }
    if scfg.get("balance", "none") != "none":
      # Balancing the whole pool before the split (Naik et al. 2021 undersampled to the smallest
      # class first): val and test then have the training split's class mix too.
      pool = pool[resplit.balance_rows(index.label[pool], scfg.balance, int(scfg.seed))]
      report["pool_balance"] = {
        "how": scfg.balance,
        "after": np.bincount(index.label[pool], minlength=len(class_names)).tolist(),
      }
    kept_groups = set(groups[np.concatenate(list(kept.values()))]) if kept else set()
    overlap = np.isin(groups[pool], list(kept_groups))
    if overlap.any():
      report["removed_patient_overlap_with_kept"] = {
        "images": int(overlap.sum()),
        "patients": len(set(index.patient[pool][overlap])),
      }
      logging.warning(
        "%d images of %d patients in the re-split pool also appear (or have duplicate images) in "
        "the kept split(s) %s; they are left out so that splits stay patient-disjoint.",
        int(overlap.sum()), len(set(index.patient[pool][overlap])), keep,
      )  # fmt: skip
      pool = pool[~overlap]
    if "test" in kept:
      if scfg.method == "fractions" and float(scfg.fractions[2]) or scfg.test_per_class:
        raise ValueError(
          "config.input.splits keeps 'test': set fractions[2]=0 and test_per_class=0."
        )
      if scfg.method == "kfold":
        raise ValueError("config.input.splits: kfold makes its own test fold; do not keep 'test'.")
    pinned = {}
    if scfg.get("pin_run"):
      if kept:
        raise ValueError("config.input.splits: pin_run and keep cannot be combined.")
      pinned, pool = resplit.pin_rows(pool, index.patient, groups, scfg.pin_run)
      report["pinned_by_run"] = {
        "run": scfg.pin_run,
        **{k: int(len(v)) for k, v in pinned.items()},
        "new": int(len(pool)),
      }
    parts = {
      k: pool[v]
      for k, v in resplit.split_rows(
        index.label[pool], groups[pool], scfg, len(class_names)
      ).items()
    } if len(pool) else {}  # fmt: skip
    for k, v in pinned.items():  # A pinned split the re-split of the new patients lacks: kept.
      parts[k] = np.sort(np.concatenate([parts.get(k, v[:0]), v]))
    parts.update(kept)
  how = cfg.get("balance", "none")
  if how != "none":
    train = parts[cfg.train_split]
    before = np.bincount(index.label[train], minlength=len(class_names))
    parts[cfg.train_split] = train[resplit.balance_rows(index.label[train], how, int(scfg.seed))]
    after = np.bincount(index.label[parts[cfg.train_split]], minlength=len(class_names))
    report["balance"] = {"how": how, "before": before.tolist(), "after": after.tolist()}
  factors = class_ids(cfg.get("class_factors", ()), class_names, "class_factors")
  if factors:
    train = parts[cfg.train_split]
    parts[cfg.train_split] = train[resplit.factor_rows(index.label[train], factors, int(scfg.seed))]
    report["class_factors"] = {
      "after": np.bincount(index.label[parts[cfg.train_split]], minlength=len(class_names)).tolist()
    }
  splits = {s: View(s, readers, names, index.take(rows)) for s, rows in parts.items()}
  report.update(method=scfg.method, splits=describe(splits, class_names))
  if scfg.method != "builder":
    resplit.check_disjoint(splits)
  logging.info("Data splits: %s", report)
  return Data(splits, class_names, report, multi_label=multi, segmentation=kind == "mask")


def check_source_overlap(config: ml_collections.ConfigDict, data: Data) -> None:
  """With `model_init` a jaxcxr run: refuses (or, `input.splits.allow_source_overlap`, warns
  about) evaluation patients that run trained on or selected by. `input.splits.pin_run` set to
  that run keeps them apart (homologous transfer, Zhang & Liu 2021)."""
  run = config.get("model_init") or ""
  if not (os.path.isdir(os.path.join(run, "checkpoints")) and os.path.isfile(
      os.path.join(run, "data_splits.json"))):  # fmt: skip
    return
  overlap = {
    s: ids for s, ids in resplit.source_overlap(data.splits, config.input.train_split, run).items()
    if ids
  }  # fmt: skip
  if not overlap:
    return
  what = "; ".join(f"{s}: {len(ids)} (e.g. {ids[:3]})" for s, ids in overlap.items())
  msg = (
    f"config.model_init={run!r} trained on or selected by patients that this run evaluates on "
    f"({what}): its figures would be partly measured on the source's training data. Set "
    f"config.input.splits.pin_run={run!r} (every patient keeps the source run's split), or "
    "config.input.splits.allow_source_overlap=True to accept it."
  )
  if not config.input.splits.get("allow_source_overlap", False):
    raise ValueError(msg)
  logging.warning("%s", msg)
