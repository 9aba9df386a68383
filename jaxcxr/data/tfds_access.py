"""Access to the TFDS datasets jaxcxr trains on.

Datasets are TFDS builders in `tfds_builders/<name>/` (the `tfds new` layout). They are prepared
once into `array_record` files (`tfds build ... --file_format=array_record`, or here on first use)
and read at training time through `tfds` data sources with random access, which grain turns into
a deterministic, checkpointable pipeline (docs/design.md). TensorFlow is needed to *prepare* a
dataset (the `[data]` extra), never to read one. This module is the only one that talks to TFDS
builders: finding them, preparing them, opening a split for random access and reading what their
label features are.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import tensorflow_datasets as tfds
from absl import logging


def _import_builder_module(name: str) -> None:
  """Imports `tfds_builders.<name>` so that its `Builder` class registers with TFDS."""
  base = name.split("/")[0].split(":")[0]
  module = f"tfds_builders.{base}.{base}_dataset_builder"
  try:
    importlib.import_module(module)
  except ModuleNotFoundError as e:
    if e.name and (e.name == module or module.startswith(e.name + ".")):
      # Not one of ours: maybe a TFDS catalogue dataset or one already prepared in data_dir.
      return
    raise


def get_builder(name: str, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
  """The TFDS builder for `name` (`dataset` or `dataset/config`), ours or from the catalogue."""
  _import_builder_module(name)
  return tfds.builder(name, data_dir=data_dir)


def is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
  return os.path.exists(os.path.join(os.fspath(builder.data_dir), "dataset_info.json"))


def prepare(
  builder: tfds.core.DatasetBuilder, manual_dir: str | None = None
) -> tfds.core.DatasetBuilder:
  """Writes the dataset as array_record files unless that was done before.

  Args:
    builder: from `get_builder`.
    manual_dir: where a manually downloaded dataset lives (Kermany `chest_xray`, ...).
  """
  if is_prepared(builder):
    return builder
  logging.info("Preparing %s into %s", builder.info.full_name, builder.data_dir)
  builder.download_and_prepare(
    file_format="array_record",
    download_config=tfds.download.DownloadConfig(manual_dir=manual_dir),
  )
  return builder


def open_split(builder: tfds.core.DatasetBuilder, split: str, **kwargs: Any) -> Any:
  """Random access to the records of `split` (decoded numpy dicts): TFDS's `as_data_source`.

  Args:
    builder: a prepared builder.
    split: one of its splits.
    **kwargs: passed to `as_data_source` (e.g. `decoders={"image": tfds.decode.SkipDecoding()}`).
  """
  if split not in builder.info.splits:
    raise ValueError(
      f"Split {split!r} is not in dataset {builder.info.full_name}; it has "
      f"{sorted(builder.info.splits.keys())}."
    )
  return builder.as_data_source(split=split, **kwargs)


def class_names(builder: tfds.core.DatasetBuilder, label_key: str = "label") -> list[str]:
  feature = builder.info.features[label_key]
  return list(feature.names)


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
    return class_names(builder)
  return list(builder.info.features["labels"].feature.names)
