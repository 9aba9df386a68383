r"""Host input-pipeline throughput (issue 13): images/s on one core, full-size originals vs the
prepared image cache (`jaxcxr.data.prepared`).

    nice -n 15 python benchmarks/input_pipeline.py [--images 48 --side 2000 --size 224] \
        [--data_dir D --cache_dir C]

Full-size: the shared Kermany sample ($JAXCXR_SHARED_DATA/chest_xray, see its SOURCES.md) is
upscaled so its longer side is `--side` px (standing in for real ~2,000 px radiographs) and saved
as JPEG (quality 95, as the originals are JPEG) in a temp folder; each image is then decoded (PIL,
as TFDS's image feature does) and passed through `jaxcxr.data.pipeline.Preprocess` — the host work
of every training step today. Pre-resized: the same images' `Preprocess` outputs (uint8 S×S) are
written to one array_record file and read back through `grain.sources.ArrayRecordDataSource`
(`np.frombuffer`, no decode, no resize): the ceiling of any cache's reads. Prepared cache: the
shared Kermany sample prepared as TFDS `chest_xray` (in `--data_dir`, default a temp folder),
loaded as a training run loads it (`train.load_datasets`) with `config.input.prepared_cache`
(`--cache_dir`, default a temp folder; the time `prepared.prepare` took is printed: the build of
every split's cache, or opening existing ones), then every training record
read through the real path: `PreparedView[i]` and `Preprocess` (which passes it on). All loops
run in this one thread, so the figures are per core. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import tempfile
import time

import grain
import numpy as np
from array_record.python import array_record_module
from PIL import Image

from jaxcxr.data import prepared
from jaxcxr.data.pipeline import Preprocess

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("JAXCXR_SHARED_DATA", REPO.parent / "shared" / "data"))


def _upscaled(n: int, side: int, folder: pathlib.Path) -> list[pathlib.Path]:
  paths = sorted((SHARED / "chest_xray").rglob("*.jpeg"))[:n]
  if len(paths) < n:
    raise SystemExit(f"{SHARED / 'chest_xray'}: {len(paths)} JPEGs, fewer than --images {n}.")
  out = []
  for i, p in enumerate(paths):
    im = Image.open(p).convert("L")
    scale = side / max(im.size)
    im = im.resize((round(im.width * scale), round(im.height * scale)), Image.BILINEAR)
    out.append(folder / f"{i:04d}.jpeg")
    im.save(out[-1], quality=95)
  return out


def _rate(fn, items, min_seconds: float = 3.0) -> float:
  """Images/s of `fn` over `items`, repeated until `min_seconds` have passed (after a warm-up)."""
  fn(items[0])
  done, start = 0, time.perf_counter()
  while time.perf_counter() - start < min_seconds:
    for x in items:
      fn(x)
    done += len(items)
  return done / (time.perf_counter() - start)


def _prepared_rate(size: int, data_dir: str, cache_dir: str) -> tuple[float, float, int]:
  """Images/s per core reading the training split of the Kermany sample from a prepared cache;
  the time `prepared.prepare` took (building every split's cache, or ~0 s opening existing ones)
  and the number of training images."""
  from configs import chest_xray  # pylint: disable=g-import-not-at-top
  from jaxcxr import train  # pylint: disable=g-import-not-at-top

  c = chest_xray.get_config()
  c.input.manual_dir, c.input.data_dir = str(SHARED / "chest_xray"), data_dir
  c.input.image_size, c.input.prepared_cache = size, cache_dir
  off = c.copy_and_resolve_references()
  off.input.prepared_cache = ""
  raw = train.load_datasets(off)  # Prepares the TFDS dataset if needed (not timed).
  start = time.perf_counter()
  data = prepared.prepare(raw, c)
  build_s = time.perf_counter() - start
  view = data.split("train")
  prep = Preprocess(size)
  return _rate(lambda i: prep.map(view[i]), list(range(len(view)))), build_s, len(view)


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--images", type=int, default=48)
  ap.add_argument("--side", type=int, default=2000)
  ap.add_argument("--size", type=int, default=224)
  ap.add_argument("--data_dir", default="", help="TFDS data dir for chest_xray (default: temp)")
  ap.add_argument("--cache_dir", default="", help="prepared cache dir (default: temp)")
  args = ap.parse_args()
  prep = Preprocess(args.size)
  with tempfile.TemporaryDirectory() as tmp:
    folder = pathlib.Path(tmp)
    files = [p.read_bytes() for p in _upscaled(args.images, args.side, folder)]

    def full(data: bytes):
      return prep.map({"image": np.asarray(Image.open(io.BytesIO(data))), "label": 0})

    full_rate = _rate(full, files)
    record = str(folder / "prepared.array_record")
    writer = array_record_module.ArrayRecordWriter(record, "group_size:1")
    for data in files:
      writer.write(full(data)["image"].tobytes())
    writer.close()
    source = grain.sources.ArrayRecordDataSource([record])
    shape = (args.size, args.size, 1)

    def cached(i: int):
      return {"image": np.frombuffer(source[i], np.uint8).reshape(shape), "label": np.int32(0)}

    cache_rate = _rate(cached, list(range(len(source))))
    prepared_rate, build_s, n = _prepared_rate(
      args.size, args.data_dir or str(folder / "tfds"), args.cache_dir or str(folder / "cache")
    )
  print(
    json.dumps({
      "images": args.images, "side": args.side, "size": args.size,
      "full_size_images_per_s_per_core": round(full_rate, 1),
      "pre_resized_images_per_s_per_core": round(cache_rate, 1),
      "prepared_cache_images_per_s_per_core": round(prepared_rate, 1),
      "prepared_cache_images": n, "prepared_cache_build_s": round(build_s, 1),
    })
  )  # fmt: skip


if __name__ == "__main__":
  main()
