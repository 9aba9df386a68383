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

import ml_collections
import numpy as np
from absl import logging

from jaxcxr.data import classes, resplit, tfds_access
from jaxcxr.data.views import Data, View, _PlainView, describe

SPLIT_METHODS = ("builder", "fractions", "kfold")


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
  if plain and scfg.method == "builder" and cfg.get("balance", "none") == "none":
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
    parts = {
      k: pool[v]
      for k, v in resplit.split_rows(
        index.label[pool], groups[pool], scfg, len(class_names)
      ).items()
    }
    parts.update(kept)
  how = cfg.get("balance", "none")
  if how != "none":
    train = parts[cfg.train_split]
    before = np.bincount(index.label[train], minlength=len(class_names))
    parts[cfg.train_split] = train[resplit.balance_rows(index.label[train], how, int(scfg.seed))]
    after = np.bincount(index.label[parts[cfg.train_split]], minlength=len(class_names))
    report["balance"] = {"how": how, "before": before.tolist(), "after": after.tolist()}
  splits = {s: View(s, readers, names, index.take(rows)) for s, rows in parts.items()}
  report.update(method=scfg.method, splits=describe(splits, class_names))
  if scfg.method != "builder":
    resplit.check_disjoint(splits)
  logging.info("Data splits: %s", report)
  return Data(splits, class_names, report, multi_label=multi, segmentation=kind == "mask")
