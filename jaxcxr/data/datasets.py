"""Access to the TFDS datasets jaxcxr trains on.

Datasets are TFDS builders in `tfds_builders/<name>/` (the `tfds new` layout). They are prepared
once into `array_record` files (`tfds build ... --file_format=array_record`, or here on first use)
and read at training time through `tfds` data sources with random access, which grain turns into
a deterministic, checkpointable pipeline (DESIGN.md). TensorFlow is needed to *prepare* a dataset
(the `[data]` extra), never to read one.
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


def data_source(builder: tfds.core.DatasetBuilder, split: str) -> Any:
  """A random-access source over `split` (records are decoded numpy dicts)."""
  if split not in builder.info.splits:
    raise ValueError(
      f"Split {split!r} is not in dataset {builder.info.full_name}; it has "
      f"{sorted(builder.info.splits.keys())}."
    )
  return builder.as_data_source(split=split)


def class_names(builder: tfds.core.DatasetBuilder, label_key: str = "label") -> list[str]:
  feature = builder.info.features[label_key]
  return list(feature.names)
