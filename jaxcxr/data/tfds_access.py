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

import contextlib
import hashlib
import importlib
import io
import json
import os
from typing import Any

import tensorflow_datasets as tfds
from absl import logging

from jaxcxr import cli


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
  """Writes the dataset as array_record files unless that was done before, from the same data.

  A build records what it was made from (`record_source`); an existing build is reused only if
  `manual_dir` holds the same data (`check_source`), so a changed, moved-elsewhere or missing
  manual dir is never trained on silently through an old build.

  Args:
    builder: from `get_builder`.
    manual_dir: where a manually downloaded dataset lives (Kermany `chest_xray`, ...).

  Raises:
    FileNotFoundError: a build exists but `manual_dir` does not.
    ValueError: a build exists but was made from other data than `manual_dir` holds.
  """
  manual_dir = manual_dir if _uses_manual_dir(builder) else None
  if is_prepared(builder):
    check_source(builder, manual_dir)
    return builder
  # TFDS prints "Downloading and preparing dataset Unknown size ..." and "... Subsequent calls
  # will reuse this data." to stdout: sizes are unknown for generated and manual-dir data, and the
  # phase's two log lines say the same with the time it took. Its progress bars (stderr) stay.
  with cli.phase(f"preparing dataset {builder.info.full_name} into {builder.data_dir}"):
    with contextlib.redirect_stdout(io.StringIO()):
      builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir),
      )
  record_source(builder, manual_dir)
  return builder


# --- what a build was made from -------------------------------------------------------------------

SOURCE_RECORD = "jaxcxr_source.json"
# Files whose content, not only size, goes into the fingerprint: the label and split lists,
# where a change of labels usually lives. Images count by relative path and size.
_CONTENT_HASHED = (".csv", ".txt", ".tsv", ".json")


def _uses_manual_dir(builder: tfds.core.DatasetBuilder) -> bool:
  return bool(getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None))


def fingerprint(manual_dir: str) -> dict[str, Any]:
  """A fingerprint of the data in `manual_dir`: file count, bytes and a sha256 over the files.

  The hash covers every file's path relative to `manual_dir` and size, and the content of the
  label/split lists (`.csv`, `.txt`, `.tsv`, `.json`). Not mtimes: a copy (`cp -r`, `rsync`
  without `-t`) of the same data fingerprints the same; a renamed, added, removed or resized
  image, or an edited label list, does not.

  Raises:
    FileNotFoundError: `manual_dir` is not a folder.
  """
  if not os.path.isdir(manual_dir):
    raise FileNotFoundError(f"Manual directory {manual_dir} does not exist (or is no folder).")
  h = hashlib.sha256()
  files = size = 0
  for root, dirs, names in os.walk(manual_dir):
    dirs.sort()
    for name in sorted(names):
      path = os.path.join(root, name)
      rel = os.path.relpath(path, manual_dir)
      n = os.path.getsize(path)
      files, size = files + 1, size + n
      h.update(os.fsencode(rel) + b"\0" + str(n).encode() + b"\n")
      if name.lower().endswith(_CONTENT_HASHED):
        with open(path, "rb") as f:
          h.update(hashlib.file_digest(f, "sha256").digest())
  return {"files": files, "bytes": size, "sha256": h.hexdigest()}


def _record_path(builder: tfds.core.DatasetBuilder) -> str:
  return os.path.join(os.fspath(builder.data_dir), SOURCE_RECORD)


def record_source(builder: tfds.core.DatasetBuilder, manual_dir: str | None) -> None:
  """Writes `jaxcxr_source.json` beside the build: the manual dir and its `fingerprint`."""
  record: dict[str, Any] = {"manual_dir": None}
  if manual_dir is not None:
    record = {"manual_dir": os.path.abspath(manual_dir), **fingerprint(manual_dir)}
  tmp = _record_path(builder) + ".tmp"
  with open(tmp, "w") as f:
    json.dump(record, f, indent=2)
  os.replace(tmp, _record_path(builder))


def check_source(builder: tfds.core.DatasetBuilder, manual_dir: str | None) -> None:
  """Refuses to reuse a build made from other data than `manual_dir` holds.

  No `manual_dir`: the build is used as it is. A build without a record (made by `tfds build`
  or an earlier jaxcxr) cannot be checked: a warning says so.

  Raises:
    FileNotFoundError: `manual_dir` does not exist.
    ValueError: the build's recorded fingerprint differs from `manual_dir`'s.
  """
  if manual_dir is None:
    return
  build = os.fspath(builder.data_dir)
  if not os.path.isdir(manual_dir):
    raise FileNotFoundError(
      f"Manual directory {manual_dir} (config.input.manual_dir) does not exist; a build of "
      f"{builder.info.full_name} is in {build}. Fix the path, or leave manual_dir unset to use "
      "that build as it is."
    )
  try:
    with open(_record_path(builder)) as f:
      recorded = json.load(f)
  except FileNotFoundError:
    logging.warning(
      "%s has no %s (built by `tfds build` or an older jaxcxr): cannot check that it was made "
      "from %s. Delete that folder to rebuild from it.",
      build,
      SOURCE_RECORD,
      manual_dir,
    )
    return
  now = {"manual_dir": os.path.abspath(manual_dir), **fingerprint(manual_dir)}
  if recorded.get("sha256") == now["sha256"]:
    if recorded.get("manual_dir") != now["manual_dir"]:
      logging.info("%s holds the same data as its build's %s", manual_dir, recorded["manual_dir"])
    return
  described = lambda r: (
    f"{r.get('manual_dir')} ({r.get('files')} files, {r.get('bytes')} bytes, "
    f"sha256 {str(r.get('sha256'))[:12]})"
  )
  raise ValueError(
    f"The build of {builder.info.full_name} in {build} was made from {described(recorded)}, but "
    f"manual_dir is {described(now)}: the data differ. Delete {build} to rebuild from "
    f"{manual_dir}, or point manual_dir at the data it was built from."
  )


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
  check_shards(builder, split)
  return builder.as_data_source(split=split, **kwargs)


class DamagedDataError(ValueError):
  """A prepared dataset's file is missing, truncated or not the one its build wrote."""


# Shards found sound, by (path, size, mtime): a split is opened several times per run (its index,
# its records, evaluation) and each check opens a reader.
_SOUND_SHARDS: set[tuple[str, int, int]] = set()


def array_record_count(path: str) -> int:
  """The records an array_record file holds, from its footer and index (read at its end, so a
  truncated file raises: RuntimeError from array_record, OSError when missing)."""
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top

  reader = array_record_module.ArrayRecordReader(path)
  try:
    return reader.num_records()
  finally:
    reader.close()


def check_shards(builder: tfds.core.DatasetBuilder, split: str) -> None:
  """Refuses a split whose array_record shards are missing, truncated or of the wrong length.

  Opening an ArrayRecord reader reads the shard's footer and record index (at its end, so any
  truncation loses them); its record count must be the shard length `dataset_info.json` recorded.
  The array_record and TFDS readers open shards lazily, on the first record read, and then fail
  with a Riegeli message that names no file (in the index read or, for a split used only at the
  end, after training); this check runs when the split is opened, before anything is read.

  Raises:
    DamagedDataError: naming the shard, what is wrong, and how to rebuild.
  """
  if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
    return
  for fi in builder.info.splits[split].file_instructions:
    path = os.fspath(fi.filename)
    try:
      st = os.stat(path)
      key = (path, st.st_size, st.st_mtime_ns)
      if key in _SOUND_SHARDS:
        continue
      n = array_record_count(path)
      problem = (
        None
        if n == fi.examples_in_shard
        else (f"holds {n} records where its build wrote {fi.examples_in_shard}")
      )
    except (OSError, RuntimeError, ValueError) as e:  # array_record raises RuntimeError
      first_line = (str(e).splitlines() or [""])[0][:200]
      problem = f"cannot be read ({type(e).__name__}: {first_line or 'no message'})"
    if problem:
      raise DamagedDataError(
        f"The prepared dataset {builder.info.full_name} is damaged: shard {path} of split "
        f"{split!r} {problem} (truncated or overwritten, e.g. by a full disk or a partial copy). "
        f"Delete {os.fspath(builder.data_dir)} and prepare it again (config.input.prepare=True, "
        "or `tfds build`)."
      )
    _SOUND_SHARDS.add(key)


def class_names(builder: tfds.core.DatasetBuilder, label_key: str = "label") -> list[str]:
  feature = builder.info.features[label_key]
  return list(feature.names)


# The one "class" of a segmentation dataset (a `mask` image and no label): its foreground.
MASK_CLASS = "mask"


def label_kind(builder: tfds.core.DatasetBuilder) -> str:
  """`single` (a `label` ClassLabel), `multi` (a `labels` Sequence of ClassLabel) or `mask`
  (segmentation: a `mask` image feature and no label)."""
  features = builder.info.features
  if "label" in features and hasattr(features["label"], "names"):
    return "single"
  if "labels" in features and hasattr(getattr(features["labels"], "feature", None), "names"):
    return "multi"
  if "mask" in features and isinstance(features["mask"], tfds.features.Image):
    return "mask"
  raise ValueError(
    f"Dataset {builder.info.full_name} has neither a `label` ClassLabel nor a multi-label "
    f"`labels` Sequence(ClassLabel) feature nor a `mask` image (features: "
    f"{sorted(features.keys())}); it cannot be trained on."
  )


def label_names(builder: tfds.core.DatasetBuilder) -> list[str]:
  """Class names of `label`, finding names of multi-label `labels`, or [MASK_CLASS]."""
  kind = label_kind(builder)
  if kind == "single":
    return class_names(builder)
  if kind == "mask":
    return [MASK_CLASS]
  return list(builder.info.features["labels"].feature.names)
