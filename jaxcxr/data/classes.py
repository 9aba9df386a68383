"""Mixtures and class maps: which records of which datasets a run reads, under which class.

A run reads one dataset or a mixture of several (`config.input.mixture`), each a `Component`
with a `class_map` (dataset class name → output class name). Classes not in a map are left out
and counted; a map key that is not a class of its dataset is an error. Patients are namespaced by
dataset (`covidx:123`), so equal ids in two datasets never merge. `read_index` reads every
record's label and patient once, without decoding images (`tfds.decode.SkipDecoding`), into an
`Index` of flat arrays that the splitting works on.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from jaxcxr.data import tfds_access
from jaxcxr.data.tfds_access import label_kind, label_names


@dataclasses.dataclass(frozen=True)
class Component:
  """One dataset of a (possibly one-element) mixture.

  Attributes:
    data: TFDS name, `dataset` or `dataset/config`.
    splits: the dataset's splits to use; empty: all of them.
    class_map: dataset class name → output class name; empty: identity. Classes missing from a
      non-empty map are left out (and counted).
    manual_dir: where its manually downloaded files are (default: config.input.manual_dir).
  """

  data: str
  splits: tuple[str, ...] = ()
  class_map: dict[str, str] = dataclasses.field(default_factory=dict)
  manual_dir: str | None = None


@dataclasses.dataclass
class Index:
  """One row per usable record of every component, as flat arrays."""

  component: np.ndarray  # int: position in the component list
  split: np.ndarray  # str: the dataset's own split
  record: np.ndarray  # int: index in that split's records
  label: np.ndarray  # int: output class id (multi-label: the rarest positive class, or C if none)
  patient: np.ndarray  # str: `dataset:patient_id`
  targets: np.ndarray | None = None  # multi-label only: (N, C) uint8 multi-hot

  def take(self, rows: np.ndarray) -> Index:
    return Index(
      *(None if (v := getattr(self, f.name)) is None else v[rows] for f in dataclasses.fields(self))
    )

  def __len__(self) -> int:
    return len(self.label)


def components(cfg: ml_collections.ConfigDict) -> list[Component]:
  """The mixture of `cfg` (= config.input), or `cfg.data` alone."""
  if not cfg.get("mixture"):
    return [Component(cfg.data)]
  out = []
  for i, m in enumerate(cfg.mixture):
    m = dict(m)
    unknown = set(m) - {"data", "splits", "class_map", "manual_dir"}
    if "data" not in m or unknown:
      raise ValueError(
        f"config.input.mixture[{i}] = {m}: expected keys data (required), splits, class_map, "
        "manual_dir; "
        f"got unknown {sorted(unknown)}"
        if unknown
        else f"config.input.mixture[{i}] has no 'data'."
      )
    out.append(
      Component(
        m["data"],
        tuple(m.get("splits", ())),
        dict(m.get("class_map", {})),
        m.get("manual_dir"),
      )
    )
  return out


def read_index(
  comps: list[Component], builders: list[tfds.core.DatasetBuilder], class_names: Sequence[str]
) -> tuple[Index, list[dict[str, Any]], dict[str, Any]]:
  """Reads labels and patient of every record (images not decoded) and applies the class maps.

  Single-label: a record whose class a map leaves out is left out (counted). Multi-label: the
  findings a map leaves out are removed from the record's label set, and the record is kept (an
  image with none of the mapped findings is a negative for all of them); counted per finding.
  """
  out_id = {n: i for i, n in enumerate(class_names)}
  multi = label_kind(builders[0]) == "multi"
  kinds = [label_kind(b) for b in builders]
  cols = collections.defaultdict(list)
  readers, dropped = [], {}
  for c, (comp, builder) in enumerate(zip(comps, builders, strict=True)):
    names = label_names(builder)
    splits = comp.splits or tuple(builder.info.splits.keys())
    cmap = comp.class_map or {n: n for n in names}
    split_readers = {}
    for split in splits:
      split_readers[split] = tfds_access.open_split(builder, split)
      skip = {
        k: tfds.decode.SkipDecoding() for k in ("image", "mask") if k in builder.info.features
      }
      meta = tfds_access.open_split(builder, split, decoders=skip)
      for i in range(len(meta)):
        r = meta[i]
        if multi:
          row = np.zeros(len(class_names), np.uint8)
          for k in np.atleast_1d(r["labels"]):
            target = cmap.get(names[int(k)])
            if target is None:
              key = f"{comp.data}:{split}:{names[int(k)]}"
              dropped[key] = dropped.get(key, 0) + 1
            else:
              row[out_id[target]] = 1
          cols["targets"].append(row)
          cols["label"].append(0)  # Stratum, set below.
        else:
          # Segmentation data: every record is of the one class (the mask's foreground).
          lab = 0 if kinds[c] == "mask" else r["label"]
          target = cmap.get(names[lab])
          if target is None:
            key = f"{comp.data}:{split}:{names[lab]}"
            dropped[key] = dropped.get(key, 0) + 1
            continue
          cols["label"].append(out_id[target])
        pid = r["patient_id"]
        pid = pid.decode() if isinstance(pid, bytes) else str(pid)
        cols["component"].append(c)
        cols["split"].append(split)
        cols["record"].append(i)
        cols["patient"].append(f"{comp.data.split('/')[0]}:{pid}")
    readers.append(split_readers)
  targets = None
  label = np.asarray(cols["label"], np.int32)
  if multi:
    targets = np.asarray(cols["targets"], np.uint8).reshape(-1, len(class_names))
    label = multilabel_strata(targets)
  index = Index(
    component=np.asarray(cols["component"], np.int32),
    split=np.asarray(cols["split"], dtype=object),
    record=np.asarray(cols["record"], np.int64),
    label=label,
    patient=np.asarray(cols["patient"], dtype=object),
    targets=targets,
  )
  key = "left_out_findings_by_class_map" if multi else "left_out_by_class_map"
  return index, readers, {key: dropped}


def multilabel_strata(targets: np.ndarray) -> np.ndarray:
  """One stratum per multi-label row for stratified splitting: its rarest positive class (by
  frequency over all rows), or C for rows with no positive. Rare findings are then spread over
  the splits instead of landing in one by chance."""
  freq = targets.sum(0).astype(np.float64)
  masked = np.where(targets > 0, freq[None, :], np.inf)
  return np.where(targets.any(1), masked.argmin(1), targets.shape[1]).astype(np.int32)


def output_classes(comps: list[Component], builders, cfg) -> list[str]:
  """Output class names: `cfg.class_names`, else the mapped names in order of appearance."""
  seen: list[str] = []
  kinds = {comp.data: label_kind(builder) for comp, builder in zip(comps, builders, strict=True)}
  if len(set(kinds.values())) > 1:
    raise ValueError(
      f"A mixture cannot mix single-label, multi-label and segmentation datasets: {kinds}."
    )
  for comp, builder in zip(comps, builders, strict=True):
    names = label_names(builder)
    bad = sorted(set(comp.class_map) - set(names))
    if bad:
      raise ValueError(
        f"class_map of {comp.data} names {bad}, which are not classes of that dataset; its "
        f"classes are {names}."
      )
    missing_splits = sorted(set(comp.splits) - set(builder.info.splits.keys()))
    if missing_splits:
      raise ValueError(
        f"Mixture component {comp.data} asks for splits {missing_splits}; the dataset has "
        f"{sorted(builder.info.splits.keys())}."
      )
    for n in names:
      target = comp.class_map.get(n) if comp.class_map else n
      if target is not None and target not in seen:
        seen.append(target)
  if cfg.get("class_names"):
    wanted = list(cfg.class_names)
    extra = sorted(set(seen) - set(wanted))
    if extra:
      raise ValueError(
        f"config.input.class_names={wanted} lacks {extra}, which the class maps produce."
      )
    return wanted
  return seen


def resolve_class_map(
  dataset: str, names: Sequence[str], run_classes: Sequence[str], explicit: dict[str, str]
) -> tuple[dict[str, str], list[str]]:
  """The class map of another dataset onto a trained run's classes (`jaxcxr.evaluate --data`).

  Args:
    dataset: the dataset's name (for messages).
    names: its class names.
    run_classes: the run's output classes.
    explicit: `{dataset class: run class, or '-' to leave it out}` from `--class_map`.

  Returns:
    `(class_map, dropped)`: a map for `Component.class_map` (names equal to a run class map onto
    it unless `explicit` says otherwise) and the dataset classes left out by '-'.

  Raises:
    ValueError: a map key that is not a class of the dataset, a target that is not a run class,
      or dataset classes the run does not know and no map names (listed, with the fix).
  """
  bad_keys = sorted(set(explicit) - set(names))
  if bad_keys:
    raise ValueError(
      f"--class_map names {bad_keys}, which are not classes of {dataset}; its classes are "
      f"{list(names)}."
    )
  bad_targets = sorted({v for v in explicit.values() if v != "-" and v not in run_classes})
  if bad_targets:
    raise ValueError(
      f"--class_map maps onto {bad_targets}, which are not classes of the run; its classes are "
      f"{list(run_classes)} ('-' leaves a class out)."
    )
  cmap, dropped, unknown = {}, [], []
  for n in names:
    target = explicit.get(n, n)
    if target == "-":
      dropped.append(n)
    elif target in run_classes:
      cmap[n] = target
    else:
      unknown.append(n)
  if unknown:
    raise ValueError(
      f"{dataset} has classes {unknown} that the run (classes {list(run_classes)}) does not know: "
      "map each onto a run class or leave it out explicitly, e.g. --class_map "
      + ",".join(f"{n}=-" for n in unknown)
      + "."
    )
  if not cmap:
    raise ValueError(f"--class_map leaves no class of {dataset} to evaluate.")
  return cmap, dropped
