"""Views: the random-access splits that grain reads, and `Data`, the named splits of a run.

`view[i]` is the underlying TFDS record with `label` replaced by the output class id (or a
multi-hot vector) and `dataset` added; metadata arrays (`labels`, `patients`) are read without
decoding images.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from jaxcxr.data import tfds_access
from jaxcxr.data.classes import Component, Index, read_index
from jaxcxr.data.tfds_access import label_names


def label_at(index: Index, i: int) -> int | np.ndarray:
  """Row i's output label: a class id, or a multi-hot float vector for multi-label data."""
  if index.targets is None:
    return int(index.label[i])
  return index.targets[i].astype(np.float32)


class View:
  """A random-access split over the records of one or more TFDS datasets (what grain reads).

  `view[i]` is the underlying record with `label` replaced by the output class id and two keys
  added: `dataset` (the component's TFDS name) and, when the builder has none, `source` (= the
  dataset name). Metadata arrays (`labels`, `patients`) are available without reading images.
  """

  def __init__(self, name: str, readers: list[dict[str, Any]], names: list[str], index: Index):
    self.name = name
    self._readers = readers  # per component: {dataset split: random-access records}
    self._names = names  # per component: TFDS name
    self.index = index

  def __len__(self) -> int:
    return len(self.index)

  def __getitem__(self, i: int) -> dict[str, Any]:
    c = int(self.index.component[i])
    record = dict(self._readers[c][self.index.split[i]][int(self.index.record[i])])
    record["label"] = label_at(self.index, i)
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
  segmentation: bool = False  # Records hold a `mask` (one class: its foreground).

  def split(self, split: str) -> View:
    """The view of `split`; a clear error if this run has no such split."""
    if split not in self.splits:
      raise ValueError(
        f"Split {split!r} is not one of this run's splits {sorted(self.splits)} "
        "(see config.input.splits)."
      )
    return self.splits[split]

  # Old name, kept until jaxcxr.train/evaluate (rewritten for issue 8) call `split`: "source"
  # now means an image's provenance only.
  source = split

  def describe(self) -> dict[str, Any]:
    """The report plus, per split, image/patient/class counts and the sorted patient ids."""
    return {
      **self.report,
      "class_names": self.class_names,
      "splits": describe(self.splits, self.class_names),
      "patients": {s: sorted(set(v.patients)) for s, v in self.splits.items()},
    }

  def class_counts(self, split: str = "train") -> np.ndarray:
    return np.bincount(self.split(split).labels, minlength=len(self.class_names))


class _PlainView(View):
  """A builder split read as is (no class map, no re-split); its index is read on first use."""

  def __init__(self, name: str, builder: tfds.core.DatasetBuilder, dataset: str):
    self.name, self._builder, self._dataset = name, builder, dataset
    self._records = tfds_access.open_split(builder, name)
    self._index: Index | None = None

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, i: int) -> dict[str, Any]:
    record = dict(self._records[i])
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
      self._index, _, _ = read_index([comp], [self._builder], label_names(self._builder))
    return self._index


class Wrapper:
  """A split over another (`base`) whose records it changes, not which they are: length, name,
  index, labels, patients and label spec are the base's (`lung_mask.MaskedView`,
  `prepared.PreparedView`)."""

  def __init__(self, base: Any):
    self.base, self.name = base, base.name

  def __len__(self) -> int:
    return len(self.base)

  def __getitem__(self, i: int) -> dict[str, Any]:
    raise NotImplementedError

  @property
  def index(self) -> Index:
    return self.base.index

  @property
  def labels(self) -> np.ndarray:
    return self.base.labels

  @property
  def patients(self) -> np.ndarray:
    return self.base.patients

  @property
  def label_spec(self) -> tuple[tuple[int, ...], type]:
    return self.base.label_spec


def unwrap(view: Any) -> View:
  """The `View` under any `Wrapper`s."""
  while not isinstance(view, View):
    view = view.base
  return view


def record_keys(view: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per row of a view (wrappers included): its dataset (TFDS name), builder split and record
  number, the address of the stored record it reads."""
  view = unwrap(view)
  if isinstance(view, _PlainView):
    n = len(view)
    return np.full(n, view._dataset), np.full(n, view.name), np.arange(n)  # pylint: disable=protected-access
  idx = view.index
  names = np.asarray(view._names)  # pylint: disable=protected-access
  return names[idx.component], np.asarray(idx.split), np.asarray(idx.record, np.int64)


def data_source(view: Any, dataset: str, split: str) -> Any:
  """The TFDS data source a view reads `split` of `dataset` from (its `dataset_info` says which
  files)."""
  view = unwrap(view)
  if isinstance(view, _PlainView):
    return view._records  # pylint: disable=protected-access
  for name, readers in zip(view._names, view._readers, strict=True):  # pylint: disable=protected-access
    if name == dataset and split in readers:
      return readers[split]
  raise KeyError(f"View {view.name!r} reads no split {split!r} of {dataset!r}.")


def describe(splits: dict[str, View], class_names: list[str]) -> dict[str, Any]:
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
