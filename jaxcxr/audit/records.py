"""The audit's input: one `Record` per image, from plain data, a TFDS dataset or a run's config.

`collect` hashes each record once (`jaxcxr.data.duplicates.image_features`) and drops its pixels,
so memory stays low however many images are audited.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from jaxcxr.data.duplicates import ImageFeatures, image_features

_FORMATS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".dcm": "dicom", ".dicom": "dicom"}


@dataclasses.dataclass
class Record:
  """One image with the fields the audit needs.

  Attributes:
    dataset: Dataset name (e.g. `chest_xray_pneumonia/3class`).
    split: Split name (`train`, `test`, ...).
    index: Position in the split (names the image when `filename` is empty).
    label: Class name (multi-label: names joined by `|`).
    patient_id: Patient id; empty when unknown.
    filename: File name as the dataset gives it; its suffix is the file format.
    source: Where the image came from (a builder's `source` field, or the dataset name).
    image: Decoded uint8 pixels ((H, W), (H, W, 1) or (H, W, 3)), encoded file bytes, or None
      when the image could not be decoded (then `error` says why).
    error: Why the image could not be read.
  """

  dataset: str
  split: str
  index: int
  label: str
  patient_id: str = ""
  filename: str = ""
  source: str = ""
  image: np.ndarray | bytes | None = None
  error: str = ""


def format_of(filename: str) -> str:
  suffix = os.path.splitext(filename)[1].lower()
  return _FORMATS.get(suffix, suffix.lstrip(".") or "unknown")


def display_name(r: Record) -> str:
  return r.filename or f"#{r.index}"


def member(r: Record) -> dict[str, Any]:
  return {
    "dataset": r.dataset,
    "split": r.split,
    "filename": display_name(r),
    "label": r.label,
    "patient_id": r.patient_id,
  }


def collect(
  records: Iterable[Record], log_every: int
) -> tuple[list[Record], list[Record], list[ImageFeatures]]:
  """Hashes every record's image; returns (all records without pixels, decoded ones, features)."""
  everything, decoded, feats = [], [], []
  t0 = time.time()
  for n, r in enumerate(records, 1):
    if r.image is not None and not r.error:
      try:
        f = image_features(r.image)
      except Exception as e:  # pylint: disable=broad-except  # PIL raises many types on bad data.
        r = dataclasses.replace(r, error=f"{type(e).__name__}: {e}")
      else:
        decoded.append(dataclasses.replace(r, image=None))
        feats.append(f)
    elif not r.error:
      r = dataclasses.replace(r, error="no image")
    everything.append(dataclasses.replace(r, image=None))
    if log_every and n % log_every == 0:
      print(f"[audit] hashed {n} images ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
  return everything, decoded, feats


def parse_data_spec(spec: str) -> tuple[str, tuple[str, ...] | None]:
  """`NAME[:VERSION][:SPLIT[,SPLIT...]]` -> (name, splits or None for all).

  >>> parse_data_spec("chest_xray_pneumonia/3class:train,test")
  ('chest_xray_pneumonia/3class', ('train', 'test'))
  """
  m = re.fullmatch(r"(?P<name>[^:]+(?::\d+\.\d+\.\d+)?)(?::(?P<splits>[^:]+))?", spec.strip())
  if not m:
    raise ValueError(f"--data {spec!r}: expected NAME[:SPLIT[,SPLIT...]], e.g. 'name/config:test'")
  splits = m.group("splits")
  return m.group("name"), tuple(s.strip() for s in splits.split(",")) if splits else None


def manual_dir_for(name: str, entries: Sequence[str]) -> str | None:
  """The `--manual_dir` for dataset `name`: a `NAME=DIR` entry for it, else a bare `DIR`."""
  default = None
  for entry in entries:
    key, sep, path = entry.partition("=")
    if not sep:
      default = entry
    elif key in (name, name.split("/")[0], name.split(":")[0]):
      return path
  return default


def _text(value: Any) -> str:
  return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def label_name(value: Any, names: Sequence[str], multi: bool) -> str:
  """Class name of a `label` index, or of multi-label `labels` indices (`a|b`, or `no_finding`)."""
  if multi:
    return "|".join(sorted({names[int(k)] for k in np.atleast_1d(value)})) or "no_finding"
  return names[int(value)]


def records_from_tfds(
  name: str,
  splits: Sequence[str] | None = None,
  *,
  data_dir: str | None = None,
  manual_dir: str | None = None,
) -> Iterator[Record]:
  """Records of a TFDS dataset's splits (all by default), preparing it first if needed.

  Reads `image`, `label` (or multi-label `labels`: names joined by `|`, `no_finding` when empty),
  `patient_id`, `filename` and `source` (default: the dataset name) of every example.
  """
  # Imported here: `audit()` on plain records needs neither TFDS nor the builders.
  from jaxcxr.data import tfds_access  # pylint: disable=g-import-not-at-top

  builder = tfds_access.prepare(tfds_access.get_builder(name, data_dir), manual_dir)
  multi = tfds_access.label_kind(builder) == "multi"
  names = tfds_access.label_names(builder)
  default_source = name.split("/")[0]
  for split in splits or sorted(builder.info.splits.keys()):
    split_records = tfds_access.open_split(builder, split)
    for i in range(len(split_records)):
      try:
        ex = split_records[i]
      except Exception as e:  # pylint: disable=broad-except  # Decoding raises many types.
        yield Record(name, split, i, label="", error=f"{type(e).__name__}: {e}")
        continue
      yield Record(
        dataset=name,
        split=split,
        index=i,
        label=label_name(ex["labels"] if multi else ex["label"], names, multi),
        patient_id=_text(ex.get("patient_id", "")),
        filename=_text(ex.get("filename", "")),
        source=_text(ex["source"]) if "source" in ex else default_source,
        image=ex["image"],
      )


def _class_of(label: Any, class_names: Sequence[str]) -> str:
  """Class name of a view's label: a class id, or multi-hot (names joined, `no_finding`)."""
  if np.ndim(label) == 0:
    return class_names[int(label)]
  return "|".join(n for n, v in zip(class_names, label, strict=True) if v > 0.5) or "no_finding"


def records_from_config(config: Any, workdir: str | None = None) -> Iterator[Record]:
  """Records of the splits a training config makes (`jaxcxr.data.splits`), as training sees them.

  Every dataset of the config (its mixture, or `input.data`) is prepared if needed; each example
  of each split (`train`, `val`, `test`, or a kfold's) is yielded with `split` the config's split
  name, `dataset` the TFDS dataset it comes from and `label` the config's output class, so that
  duplicates and patients shared between the splits a run will really use are found, including
  patient-grouped re-splits and mixtures. Class balancing is not applied: oversampled copies
  would be reported as the duplicates they are. A lung-masked config
  (`config.input.lung_mask.run`) yields the masked images the classifier sees
  (`jaxcxr.lung_mask.load_splits`, masks cached under `workdir` or `lung_mask.cache_dir`).
  """
  # Imported here: `audit()` on plain records needs neither TFDS nor the builders.
  from jaxcxr.data import classes, splits, tfds_access  # pylint: disable=g-import-not-at-top

  cfg = config.input.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.balance = "none"
  for comp in classes.components(cfg):
    tfds_access.prepare(
      tfds_access.get_builder(comp.data, cfg.data_dir), comp.manual_dir or cfg.manual_dir
    )
  if config.input.get("lung_mask") and config.input.lung_mask.get("run"):
    from jaxcxr import lung_mask  # pylint: disable=g-import-not-at-top

    full = config.copy_and_resolve_references()
    with full.unlocked():
      full.input = cfg
    data = lung_mask.load_splits(full, workdir)
  else:
    data = splits.load(cfg)
  for split, view in data.splits.items():
    for i in range(len(view)):
      try:
        ex = view[i]
      except Exception as e:  # pylint: disable=broad-except  # Decoding raises many types.
        yield Record("?", split, i, label="", error=f"{type(e).__name__}: {e}")
        continue
      yield Record(
        dataset=ex["dataset"],
        split=split,
        index=i,
        label=_class_of(ex["label"], data.class_names),
        patient_id=_text(ex.get("patient_id", "")),
        filename=_text(ex.get("filename", "")),
        source=_text(ex["source"]),
        image=ex["image"],
      )
