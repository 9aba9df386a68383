"""The prepared image cache: every image decoded and resized once, read back as uint8 pixels.

Why: the host work of one example is decoding a full-size radiograph (the real collections hold
1-4k px PNGs and JPEGs) and resizing it, ~20 ms of one core (BENCHMARKS.md, "Input pipeline":
~48 images/s per core from 2,000 px originals), which leaves an accelerator waiting. Reading the
same pixels back from an array_record file is a copy.

What is cached (`config.input.prepared_cache`; off by default): for each (dataset, builder split)
that a run's splits read, the output of `pipeline.Preprocess` for every record they use: grey uint8
S×S at the run's `image_size`, `resize` and `pad_value`, after lung masking where the run masks
(`jaxcxr.lung_mask`), plus the 0/1 mask of a segmentation record. Labels are not cached: they come
from the split's index as always, so class maps, re-splits and k-fold folds over the same records
share one cache. `PreparedView` returns records that `Preprocess` passes through unchanged, so
training and evaluation batches are bit-identical with and without the cache
(tests/test_prepared.py).

The key (`meta.json`; its sha256 names the folder) holds everything the pixels depend on: the
format version, the dataset's full name (name/config/version), its data_dir and its split's shard
files (path, size, mtime, record count: a rebuilt dataset changes them), the builder split, the
record numbers used, image_size, resize, pad_value, whether masks are stored, and the lung-mask
identity (the UNet's parameter digest, mode, margin). Change any and the run builds another folder:

    CACHE/<dataset>/<split>-<S>px-<resize>-<digest 16>/{images.array_record, records.npy, meta.json}

CACHE: `config.input.prepared_cache`, a directory, or 'auto' for `$JAXCXR_PREPARED_CACHE_DIR`,
else `$XDG_CACHE_HOME/jaxcxr/prepared` (`~/.cache/jaxcxr/prepared`). Old folders are not deleted
(other runs may use them); `rm -r` the cache directory to reclaim the space.

Building: process 0 writes into a temporary sibling folder and renames it into place, so a reader
never sees half a cache and an interrupted build leaves only a `.tmp-*` folder (two runs building
one key at once, e.g. folds side by side: the first sound copy is kept); the other processes
wait (`sharding.sync`) and build a copy of their own only where they cannot see process 0's (no
shared filesystem). On open, `meta.json` must equal the key, `records.npy` must list the records and
the array_record file must hold that many records; each read checks the record's length. A cache
that fails a check is damaged: a warning names the folder and what is wrong, and it is rebuilt
(on open) or the read raises `tfds_access.DamagedDataError` naming the file (mid-run).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any

import grain
import jax
import ml_collections
import numpy as np
from absl import logging

from jaxcxr import compile_cache, sharding
from jaxcxr.data import pipeline, tfds_access, views
from jaxcxr.data.tfds_access import DamagedDataError

FORMAT = 1
ENV_DIR = "JAXCXR_PREPARED_CACHE_DIR"
# The key a prepared record carries: (image_size, resize, pad_value) it was made at.
PREPARED = "prepared"
_IMAGES, _RECORDS, _META = "images.array_record", "records.npy", "meta.json"


def cache_root(setting: str) -> str:
  """The cache directory of `config.input.prepared_cache` ('auto' or a directory)."""
  if setting != "auto":
    return os.path.expanduser(setting)
  return compile_cache.user_cache_dir("prepared", ENV_DIR)


def split_fingerprint(source: Any) -> dict[str, Any]:
  """What identifies the stored records of a TFDS data source: its dataset's full name, data
  directory and shard files (path, size, mtime, records)."""
  info = source.dataset_info
  shards = []
  for fi in info.splits[source.split].file_instructions:
    path = os.fspath(fi.filename)
    st = os.stat(path)
    shards.append([path, st.st_size, st.st_mtime_ns, int(fi.examples_in_shard)])
  return {"dataset": info.full_name, "data_dir": os.path.abspath(info.data_dir), "shards": shards}


def _digest(obj: Any) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Layout:
  """What one cached record holds: an S×S image, and an S×S mask for segmentation data."""

  image_size: int
  resize: str
  pad_value: int
  with_mask: bool

  @property
  def record_bytes(self) -> int:
    return self.image_size**2 * (2 if self.with_mask else 1)

  @property
  def tag(self) -> tuple[int, str, int]:
    return (self.image_size, self.resize, self.pad_value)


class _Cache:
  """One built cache folder: the records it holds and random access to their pixels."""

  def __init__(self, folder: str, records: np.ndarray, layout: Layout):
    self.folder, self.layout = folder, layout
    self.row = {int(r): i for i, r in enumerate(records)}
    self._source = grain.sources.ArrayRecordDataSource([os.path.join(folder, _IMAGES)])

  def read(self, record: int) -> tuple[np.ndarray, np.ndarray | None]:
    buf = self._source[self.row[record]]
    lay = self.layout
    if len(buf) != lay.record_bytes:
      raise DamagedDataError(
        f"Prepared cache {self.folder} is damaged: record {record} holds {len(buf)} bytes where "
        f"{lay.record_bytes} were written. Delete the folder; the next run rebuilds it."
      )
    s = lay.image_size
    px = np.frombuffer(buf, np.uint8)
    image = px[: s * s].reshape(s, s, 1)
    return image, (px[s * s :].reshape(s, s, 1) if lay.with_mask else None)


class PreparedView(views.Wrapper):
  """A split whose records are read from prepared caches: {'image', 'label', 'dataset',
  PREPARED[, 'mask']}; labels, patients and index are the underlying view's."""

  def __init__(self, base: Any, caches: dict[tuple[str, str], _Cache], layout: Layout):
    super().__init__(base)
    self.layout = layout
    ds, sp, rec = views.record_keys(base)
    self._keys = list(zip(ds.tolist(), sp.tolist(), rec.tolist(), strict=True))
    self._caches = caches

  def __getitem__(self, i: int) -> dict[str, Any]:
    dataset, split, record = self._keys[i]
    image, mask = self._caches[(dataset, split)].read(record)
    out = {
      "image": image,
      "label": views.label_at(self.base.index, i),
      "dataset": dataset,
      PREPARED: self.layout.tag,
    }
    if mask is not None:
      out["mask"] = mask
    return out

  def __repr__(self) -> str:
    return f"PreparedView({self.base!r}, {self.layout.image_size} px, {self.layout.resize})"


def _check(folder: str, meta: dict[str, Any], n: int) -> str | None:
  """Why the cache in `folder` cannot be used (None: it can)."""
  try:
    with open(os.path.join(folder, _META)) as f:
      if json.load(f) != meta:
        return f"{_META} does not match this run's key"
    records = np.load(os.path.join(folder, _RECORDS))
    if len(records) != n:
      return f"{_RECORDS} lists {len(records)} records where the key has {n}"
    held = tfds_access.array_record_count(os.path.join(folder, _IMAGES))
    if held != n:
      return f"{_IMAGES} holds {held} records where {n} were written"
  except (OSError, ValueError, RuntimeError) as e:  # array_record raises RuntimeError
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
  return None


class _Rows:
  """The rows of a run's splits that read given records, in record order (what a build reads)."""

  def __init__(self, reads: list[tuple[Any, int]]):
    self.reads = reads

  def __len__(self) -> int:
    return len(self.reads)

  def __getitem__(self, i: int) -> dict[str, Any]:
    view, row = self.reads[i]
    return view[row]


def _build(folder: str, meta: dict[str, Any], records: list[int], rows: _Rows, layout: Layout,
           num_threads: int) -> None:  # fmt: skip
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top

  parent = os.path.dirname(folder)
  os.makedirs(parent, exist_ok=True)
  for old in os.listdir(parent):  # Left by an interrupted build of this key.
    if old.startswith(f".tmp-{os.path.basename(folder)}-"):
      shutil.rmtree(os.path.join(parent, old), ignore_errors=True)
  tmp = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(folder)}-", dir=parent)
  pre = pipeline.Preprocess(
    layout.image_size, with_mask=layout.with_mask, resize=layout.resize,
    pad_value=layout.pad_value,
  )  # fmt: skip
  ds = (
    grain.MapDataset.source(rows)
    .map(pre)
    .to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=64))
  )
  # group_size:1: every record its own chunk, so a random read decodes only itself.
  writer = array_record_module.ArrayRecordWriter(os.path.join(tmp, _IMAGES), "group_size:1")
  n = 0
  for ex in ds:
    parts = [ex["image"]] + ([ex["mask"]] if layout.with_mask else [])
    writer.write(b"".join(np.ascontiguousarray(p, np.uint8).tobytes() for p in parts))
    n += 1
  writer.close()
  if n != len(records):
    raise RuntimeError(f"Prepared cache build wrote {n} of {len(records)} records into {tmp}.")
  np.save(os.path.join(tmp, _RECORDS), np.asarray(records, np.int64))
  with open(os.path.join(tmp, _META), "w") as f:
    json.dump(meta, f, indent=1, sort_keys=True)
  if os.path.isdir(folder):
    if _check(folder, meta, n) is None:  # Another run (e.g. a fold beside us) finished first.
      shutil.rmtree(tmp, ignore_errors=True)
      return
    shutil.rmtree(folder, ignore_errors=True)  # Damaged.
  try:
    os.rename(tmp, folder)  # A reader never sees half a cache.
  except OSError:  # Another run renamed its copy in between: keep that one if it is sound.
    shutil.rmtree(tmp, ignore_errors=True)
    problem = _check(folder, meta, n)
    if problem:
      raise RuntimeError(f"Prepared cache {folder}: {problem} after a concurrent build.") from None


def prepare(data: views.Data, config: ml_collections.ConfigDict) -> views.Data:
  """`data` with every split read from prepared caches (built where missing or damaged).

  `data.report['prepared_cache']` says where each cache is and how many records were cached
  and built.
  """
  inp = config.input
  root = cache_root(inp.prepared_cache)
  # Prepared again (e.g. at another size): from the records under the old caches.
  data = dataclasses.replace(
    data,
    splits={s: v.base if isinstance(v, PreparedView) else v for s, v in data.splits.items()},
  )
  resize = pipeline.resize_args(inp)
  layout = Layout(
    int(inp.image_size), resize["resize"], int(resize["pad_value"]), with_mask=data.segmentation
  )
  lung = data.report.get("lung_mask")
  lung_key = (
    {"unet_digest": lung["unet_digest"], "mode": lung["mode"], "margin": lung["margin"]}
    if lung
    else None
  )
  # Per (dataset, builder split): the records the splits use and one row that reads each.
  needed: dict[tuple[str, str], dict[int, tuple[Any, int]]] = {}
  for view in data.splits.values():
    ds, sp, rec = views.record_keys(view)
    for i, key in enumerate(zip(ds.tolist(), sp.tolist(), strict=True)):
      needed.setdefault(key, {}).setdefault(int(rec[i]), (view, i))
  caches: dict[tuple[str, str], _Cache] = {}
  report: dict[str, Any] = {"root": os.path.abspath(root), "caches": {}}
  plans = []
  for (dataset, split), reads in sorted(needed.items()):
    records = sorted(reads)
    view = reads[records[0]][0]
    meta = {
      "format": FORMAT,
      "data": split_fingerprint(views.data_source(view, dataset, split)),
      "split": split,
      "records_sha256": hashlib.sha256(np.asarray(records, np.int64).tobytes()).hexdigest(),
      "num_records": len(records),
      **dataclasses.asdict(layout),
      "lung_mask": lung_key,
    }
    name = f"{split}-{layout.image_size}px-{layout.resize}-{_digest(meta)[:16]}"
    folder = os.path.join(root, dataset.replace("/", "__").replace(":", "_"), name)
    plans.append(((dataset, split), folder, meta, records, _Rows([reads[r] for r in records])))

  def ensure(folder, meta, records, rows) -> bool:
    problem = _check(folder, meta, len(records)) if os.path.isdir(folder) else "missing"
    if problem is None:
      return False
    if problem != "missing":
      logging.warning("Prepared cache %s is damaged (%s): rebuilding it.", folder, problem)
    logging.info("Preparing %d images into %s ...", len(records), folder)
    _build(folder, meta, records, rows, layout, int(inp.num_threads))
    return True

  built = {}
  if jax.process_index() == 0:
    for key, folder, meta, records, rows in plans:
      built[key] = ensure(folder, meta, records, rows)
  sharding.sync("prepared_cache")
  for key, folder, meta, records, rows in plans:
    if jax.process_index() != 0:  # Process 0's copy, or, without a shared filesystem, our own.
      built[key] = ensure(folder, meta, records, rows)
    caches[key] = _Cache(folder, np.asarray(records), layout)
    report["caches"]["/".join(key)] = {
      "folder": folder, "records": len(records), "built": bool(built[key]),
    }  # fmt: skip
  logging.info(
    "Prepared cache: %d of %d (dataset, split) caches built, the rest read from %s.",
    sum(built.values()), len(plans), root,
  )  # fmt: skip
  splits = {s: PreparedView(v, caches, layout) for s, v in data.splits.items()}
  return dataclasses.replace(data, splits=splits, report={**data.report, "prepared_cache": report})
