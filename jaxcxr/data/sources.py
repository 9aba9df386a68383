"""What training reads: config-driven views over TFDS data sources.

`load(config.input)` turns one dataset — or a mixture of several, each with a class map — into
named splits (`train`, `val`, `test`, ...) that grain reads by index. It gives users the splits
the published COVID-19 studies lacked:

* **Patient-disjoint, class-stratified splits** (`input.splits.method`): `fractions` (train/val/
  test shares), `kfold` (k folds, `fold=i` is the test fold, validation carved from the rest)
  and an exact number of test images per class (`test_per_class`, as one study held out 60 per
  class), all with scikit-learn's `StratifiedGroupKFold` grouped by patient. Splits can keep a
  dataset's official split (`keep=('test',)`) and re-split only the rest; patients of a kept
  split are then removed from the others (counted), so no patient is on both sides.
* **Mixtures** (`input.mixture`): the studies' composite sets — e.g. Cohen COVID-19 images with
  COVIDx normal/pneumonia — built from several builders with a `class_map` each. Classes not in a
  map are left out and counted; a map key that is not a class of its dataset is an error.
  Patients are namespaced by dataset (`covidx:123`), so equal ids in two datasets never merge.
* **Class balance** (`input.balance`): `oversample` (repeat minority-class images) or
  `undersample` (drop majority-class images) in the training split, seeded; and class frequency
  counts for a weighted loss (`class_weights`).

Records are read without decoding images to build the index (`tfds.decode.SkipDecoding`), once
per run. References: Roberts et al., "Common pitfalls and recommendations for using machine
learning to detect and prognosticate for COVID-19 using chest radiographs and CT scans", Nat.
Mach. Intell. 3, 2021 (patient overlap and composite-set pitfalls).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from sklearn import model_selection
from sklearn.utils import class_weight

from jaxcxr.data import datasets

SPLIT_METHODS = ("builder", "fractions", "kfold")
BALANCE = ("none", "oversample", "undersample")


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
  record: np.ndarray  # int: index in that split's data source
  label: np.ndarray  # int: output class id (multi-label: the rarest positive class, or C if none)
  patient: np.ndarray  # str: `dataset:patient_id`
  targets: np.ndarray | None = None  # multi-label only: (N, C) uint8 multi-hot

  def take(self, rows: np.ndarray) -> Index:
    return Index(
      *(None if (v := getattr(self, f.name)) is None else v[rows] for f in dataclasses.fields(self))
    )

  def __len__(self) -> int:
    return len(self.label)


class View:
  """A random-access split over one or more TFDS data sources (what grain reads).

  `view[i]` is the underlying record with `label` replaced by the output class id and two keys
  added: `dataset` (the component's TFDS name) and, when the builder has none, `source` (= the
  dataset name). Metadata arrays (`labels`, `patients`) are available without reading images.
  """

  def __init__(self, name: str, sources: list[dict[str, Any]], names: list[str], index: Index):
    self.name = name
    self._sources = sources  # per component: {dataset split: data source}
    self._names = names  # per component: TFDS name
    self.index = index

  def __len__(self) -> int:
    return len(self.index)

  def __getitem__(self, i: int) -> dict[str, Any]:
    c = int(self.index.component[i])
    record = dict(self._sources[c][self.index.split[i]][int(self.index.record[i])])
    if self.index.targets is None:
      record["label"] = int(self.index.label[i])
    else:
      record["label"] = self.index.targets[i].astype(np.float32)  # Multi-hot.
    record["dataset"] = self._names[c]
    record.setdefault("source", self._names[c])
    return record

  @property
  def labels(self) -> np.ndarray:
    return self.index.label

  @property
  def label_spec(self) -> tuple[tuple[int, ...], type]:
    """Shape and dtype of one example's `label`: a class id, or a multi-hot vector."""
    if self.index.targets is None:
      return (), np.int32
    return (self.index.targets.shape[1],), np.float32

  @property
  def patients(self) -> np.ndarray:
    return self.index.patient

  def __repr__(self) -> str:
    return f"View({self.name!r}, n={len(self)}, patients={len(set(self.patients))})"


@dataclasses.dataclass
class Data:
  """The named splits of a run, their class names and how they were made."""

  splits: dict[str, View]
  class_names: list[str]
  report: dict[str, Any]
  multi_label: bool = False

  def source(self, split: str) -> View:
    if split not in self.splits:
      raise ValueError(
        f"Split {split!r} is not one of this run's splits {sorted(self.splits)} "
        "(see config.input.splits)."
      )
    return self.splits[split]

  def describe(self) -> dict[str, Any]:
    """The report plus, per split, image/patient/class counts and the sorted patient ids."""
    return {
      **self.report,
      "class_names": self.class_names,
      "splits": _describe(self.splits, self.class_names),
      "patients": {s: sorted(set(v.patients)) for s, v in self.splits.items()},
    }

  def class_counts(self, split: str = "train") -> np.ndarray:
    return np.bincount(self.source(split).labels, minlength=len(self.class_names))


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


def label_kind(builder: tfds.core.DatasetBuilder) -> str:
  """`single` (a `label` ClassLabel) or `multi` (a `labels` Sequence of ClassLabel)."""
  features = builder.info.features
  if "label" in features and hasattr(features["label"], "names"):
    return "single"
  if "labels" in features and hasattr(getattr(features["labels"], "feature", None), "names"):
    return "multi"
  raise ValueError(
    f"Dataset {builder.info.full_name} has neither a `label` ClassLabel nor a multi-label "
    f"`labels` Sequence(ClassLabel) feature (features: {sorted(features.keys())}); it cannot "
    "be trained on as a classifier."
  )


def label_names(builder: tfds.core.DatasetBuilder) -> list[str]:
  """Class names of `label`, or finding names of multi-label `labels`."""
  if label_kind(builder) == "single":
    return datasets.class_names(builder)
  return list(builder.info.features["labels"].feature.names)


def _read_index(
  comps: list[Component], builders: list[tfds.core.DatasetBuilder], class_names: Sequence[str]
) -> tuple[Index, list[dict[str, Any]], dict[str, Any]]:
  """Reads labels and patient of every record (images not decoded) and applies the class maps.

  Single-label: a record whose class a map leaves out is left out (counted). Multi-label: the
  findings a map leaves out are removed from the record's label set, and the record is kept (an
  image with none of the mapped findings is a negative for all of them); counted per finding.
  """
  out_id = {n: i for i, n in enumerate(class_names)}
  multi = label_kind(builders[0]) == "multi"
  cols = collections.defaultdict(list)
  sources, dropped = [], {}
  for c, (comp, builder) in enumerate(zip(comps, builders, strict=True)):
    names = label_names(builder)
    splits = comp.splits or tuple(builder.info.splits.keys())
    cmap = comp.class_map or {n: n for n in names}
    srcs = {}
    for split in splits:
      srcs[split] = datasets.data_source(builder, split)
      meta = builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
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
          target = cmap.get(names[r["label"]])
          if target is None:
            key = f"{comp.data}:{split}:{names[r['label']]}"
            dropped[key] = dropped.get(key, 0) + 1
            continue
          cols["label"].append(out_id[target])
        pid = r["patient_id"]
        pid = pid.decode() if isinstance(pid, bytes) else str(pid)
        cols["component"].append(c)
        cols["split"].append(split)
        cols["record"].append(i)
        cols["patient"].append(f"{comp.data.split('/')[0]}:{pid}")
    sources.append(srcs)
  targets = None
  label = np.asarray(cols["label"], np.int32)
  if multi:
    targets = np.asarray(cols["targets"], np.uint8).reshape(-1, len(class_names))
    label = _multilabel_strata(targets)
  index = Index(
    component=np.asarray(cols["component"], np.int32),
    split=np.asarray(cols["split"], dtype=object),
    record=np.asarray(cols["record"], np.int64),
    label=label,
    patient=np.asarray(cols["patient"], dtype=object),
    targets=targets,
  )
  key = "left_out_findings_by_class_map" if multi else "left_out_by_class_map"
  return index, sources, {key: dropped}


def _multilabel_strata(targets: np.ndarray) -> np.ndarray:
  """One stratum per multi-label row for stratified splitting: its rarest positive class (by
  frequency over all rows), or C for rows with no positive. Rare findings are then spread over
  the splits instead of landing in one by chance."""
  freq = targets.sum(0).astype(np.float64)
  masked = np.where(targets > 0, freq[None, :], np.inf)
  return np.where(targets.any(1), masked.argmin(1), targets.shape[1]).astype(np.int32)


def _output_classes(comps: list[Component], builders, cfg) -> list[str]:
  """Output class names: `cfg.class_names`, else the mapped names in order of appearance."""
  seen: list[str] = []
  kinds = {comp.data: label_kind(builder) for comp, builder in zip(comps, builders, strict=True)}
  if len(set(kinds.values())) > 1:
    raise ValueError(f"A mixture cannot mix single- and multi-label datasets: {kinds}.")
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


# --- splitting -----------------------------------------------------------------------------------


def _group_fold(labels, groups, n_splits: int, seed: int, fold: int = 0):
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


def _fraction_folds(fraction: float) -> int:
  """The k whose one fold is closest to `fraction` of the data."""
  if not 0.0 < fraction < 1.0:
    raise ValueError(f"A held-out fraction must be in (0, 1); got {fraction}.")
  return max(2, int(round(1.0 / fraction)))


def _per_class_test(labels, groups, per_class: int, num_classes: int, seed: int) -> np.ndarray:
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
  if cfg.method == "kfold":
    rest, test = _group_fold(labels, groups, int(cfg.num_folds), seed, int(cfg.fold))
    val_share = (
      float(cfg.val_fraction) / (1.0 - 1.0 / int(cfg.num_folds)) if cfg.val_fraction else 0
    )
  elif cfg.test_per_class:
    test = _per_class_test(labels, groups, int(cfg.test_per_class), num_classes, seed)
    rest = np.setdiff1d(rows, test)
    _, val_f, _ = cfg.fractions
    val_share = float(val_f) / max(1e-9, 1.0 - len(test) / len(rows)) if val_f else 0.0
  else:
    train_f, val_f, test_f = (float(f) for f in cfg.fractions)
    if abs(train_f + val_f + test_f - 1.0) > 1e-6:
      raise ValueError(f"config.input.splits.fractions={cfg.fractions} must sum to 1.")
    if test_f:
      rest, test = _group_fold(labels, groups, _fraction_folds(test_f), seed)
    else:
      rest, test = rows, rows[:0]
    val_share = val_f / (train_f + val_f) if val_f else 0.0
  out = {"test": test}
  if val_share:
    r_train, r_val = _group_fold(labels[rest], groups[rest], _fraction_folds(val_share), seed + 1)
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


def class_weights(counts: np.ndarray) -> np.ndarray:
  """Per-class loss weights n / (k · n_c) (scikit-learn's 'balanced'); mean weight over images 1."""
  labels = np.repeat(np.arange(len(counts)), counts)
  present = np.unique(labels)
  w = np.ones(len(counts), np.float32)
  w[present] = class_weight.compute_class_weight("balanced", classes=present, y=labels)
  return w


# --- putting it together -------------------------------------------------------------------------


def load(cfg: ml_collections.ConfigDict) -> Data:
  """The splits of `cfg` (= config.input) over prepared datasets (see `datasets.prepare`)."""
  comps = components(cfg)
  builders = [datasets.get_builder(c.data, cfg.data_dir) for c in comps]
  for comp, b in zip(comps, builders, strict=True):
    if not datasets.is_prepared(b):
      raise FileNotFoundError(
        f"Dataset {comp.data} is not prepared in {b.data_dir}. Run `tfds build` for it (see "
        "tfds_builders/<name>/README.md) or set config.input.prepare=True."
      )
  scfg = cfg.splits
  if scfg.method not in SPLIT_METHODS:
    raise ValueError(f"config.input.splits.method={scfg.method!r} is not one of {SPLIT_METHODS}.")
  class_names = _output_classes(comps, builders, cfg)
  multi = label_kind(builders[0]) == "multi"
  if multi and cfg.get("balance", "none") != "none":
    raise ValueError(
      "config.input.balance resamples by class; it is undefined for multi-label data."
    )
  if multi and scfg.test_per_class:
    raise ValueError("config.input.splits.test_per_class is undefined for multi-label data.")
  plain = len(comps) == 1 and not comps[0].class_map and not comps[0].splits and not multi
  if plain and scfg.method == "builder" and cfg.get("balance", "none") == "none":
    # The common case needs no index: one view per builder split, read as is.
    builder = builders[0]
    splits = {s: _PlainView(s, builder, comps[0].data) for s in builder.info.splits.keys()}
    return Data(splits, class_names, {"method": "builder"})

  index, sources, report = _read_index(comps, builders, class_names)
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
      groups, report["duplicates_grouped"] = _group_duplicates(index, sources)
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
      for k, v in split_rows(index.label[pool], groups[pool], scfg, len(class_names)).items()
    }
    parts.update(kept)
  how = cfg.get("balance", "none")
  if how != "none":
    train = parts[cfg.train_split]
    before = np.bincount(index.label[train], minlength=len(class_names))
    parts[cfg.train_split] = train[balance_rows(index.label[train], how, int(scfg.seed))]
    after = np.bincount(index.label[parts[cfg.train_split]], minlength=len(class_names))
    report["balance"] = {"how": how, "before": before.tolist(), "after": after.tolist()}
  splits = {s: View(s, sources, names, index.take(rows)) for s, rows in parts.items()}
  report.update(method=scfg.method, splits=_describe(splits, class_names))
  if scfg.method != "builder":
    _check_disjoint(splits)
  logging.info("Data splits: %s", report)
  return Data(splits, class_names, report, multi_label=multi)


def _group_duplicates(index: Index, srcs: list[dict[str, Any]]) -> tuple[np.ndarray, dict]:
  """Split groups that join patients whose images are (near) duplicates of each other.

  Patient ids are not always trustworthy: Cohen's collection files some radiographs under two
  patient ids, composite sets re-use images of other sets. Grouping by patient alone would put
  such copies on both sides of a split. Images are matched with the leakage audit's perceptual
  hashes (`jaxcxr.audit.duplicate_pairs`: resized, re-encoded, flipped and rotated copies), and a
  group is a connected component of "same patient" ∪ "duplicate image".
  """
  from scipy.sparse import coo_matrix  # pylint: disable=g-import-not-at-top
  from scipy.sparse.csgraph import connected_components  # pylint: disable=g-import-not-at-top

  from jaxcxr import audit  # pylint: disable=g-import-not-at-top

  n = len(index)
  feats = [
    audit.image_features(srcs[c][sp][int(r)]["image"])
    for c, sp, r in zip(index.component, index.split, index.record, strict=True)
  ]
  i, j, _, _ = audit.duplicate_pairs(feats)
  _, first = np.unique(index.patient, return_index=True)
  patient_root = first[np.unique(index.patient, return_inverse=True)[1]]
  rows = np.concatenate([i, np.arange(n)])
  cols = np.concatenate([j, patient_root])
  graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n, n))
  num_groups, component = connected_components(graph, directed=False)
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


class _PlainView(View):
  """A builder split read as is (no class map, no re-split); its index is read on first use."""

  def __init__(self, name: str, builder: tfds.core.DatasetBuilder, dataset: str):
    self.name, self._builder, self._dataset = name, builder, dataset
    self._source = datasets.data_source(builder, name)
    self._index: Index | None = None

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, i: int) -> dict[str, Any]:
    record = dict(self._source[i])
    record["dataset"] = self._dataset
    record.setdefault("source", self._dataset)
    return record

  @property
  def label_spec(self) -> tuple[tuple[int, ...], type]:
    return (), np.int32  # Plain views are single-label.

  @property
  def index(self) -> Index:
    if self._index is None:
      comp = Component(self._dataset, (self.name,))
      self._index, _, _ = _read_index([comp], [self._builder], label_names(self._builder))
    return self._index


def _describe(splits: dict[str, View], class_names: list[str]) -> dict[str, Any]:
  """Images, patients and per-class counts (multi-label: positives) of every split."""

  def per_class(v: View) -> list[int]:
    if v.index.targets is not None:
      return v.index.targets.sum(0).tolist()
    return np.bincount(v.labels, minlength=len(class_names)).tolist()

  return {
    s: {
      "images": len(v),
      "patients": len(set(v.patients)),
      "per_class": dict(zip(class_names, per_class(v), strict=True)),
    }
    for s, v in splits.items()
  }


def _check_disjoint(splits: dict[str, View]) -> None:
  """Raises if a patient is in two splits: the guarantee every re-split method makes."""
  seen: dict[str, str] = {}
  for s, v in splits.items():
    for p in set(v.patients):
      if p in seen and seen[p] != s:
        raise AssertionError(f"patient {p} is in splits {seen[p]} and {s}")
      seen[p] = s
