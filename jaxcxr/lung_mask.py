"""Lung masking as preprocessing for classification: a trained UNet's masks, applied to every image.

Zhang & Liu (2021) segment the lungs with a UNet and black out everything else before
classifying, so the classifier cannot read text, devices, borders or collimation. With
`config.input.lung_mask.run` set to a segmentation run's workdir (`configs/lung_unet.py`), every
image of every split, and every file `jaxcxr.predict` reads, goes through the same steps:

1. the UNet run's eval forward pass (`inference.Predictor`) on the image as that run was trained
   on it (`pipeline.Preprocess` at its `input.image_size`, the mask resolution, stretched or
   letterboxed by its `input.resize`), thresholded at probability 0.5;
2. `masks.postprocess` (two largest components, holes filled; a lung area outside
   [`min_area`, `max_area`] of the image is implausible and falls back to the whole image, so
   such an image is passed on unmasked; the fallbacks are counted per split in the run's
   `data_splits.json` under `lung_mask` and logged);
3. the mask, resized to the stored image (a letterboxed UNet's: its padding cut off first,
   `pipeline.letterbox_box`), applied by `mode`: 'black' (everything outside the mask
   set to 0, the study's method), 'crop' (cropped to the mask's bounding box widened by `margin`
   of its size on each side; the pipeline then resizes the crop to the training resolution) or
   'both' (black, then crop).

Masks never come from a dataset's own `mask` feature: Cohen's V7 lung masks exist for COVID-19
images only, so using them would make the input differ by class (a shortcut). The same UNet masks
every class, and a mixture entry cannot carry masking of its own (`classes.components` refuses
unknown keys; `config_lib.check_lung_mask` names this one).

Masks are computed once per image and cached as packed bits in
`CACHE/<unet key>/<dataset>/<builder split>.npz` (CACHE: `lung_mask.cache_dir`, default
`WORKDIR/lung_masks` of the classification run; the prepared datasets may be read-only, e.g. a
shared data folder). The unet key is a digest of the UNet run's workdir, its checkpoint (select
and step) and the sha256 of its restored parameters, and of the mask resolution (and of its
resize mode when it is not 'stretch'); each file also
records its dataset, data dir, split size and the key in full, and a file whose record differs
is recomputed. A retrained UNet (other parameters, even at the same step), another step or
another run therefore never reads stale masks; a second training, the report's gallery and the
markers test read the cache and never run the UNet on a cached image. `predict` masks its files
and `evaluate.evaluate_external` its dataset (cached under its `--out`) with the UNet the run
recorded, and both refuse a UNet whose parameters changed since training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from PIL import Image

from jaxcxr import config_lib, inference
from jaxcxr import masks as masks_lib
from jaxcxr.constants import LUNG_MASK_MODES
from jaxcxr.data import pipeline, views
from jaxcxr.data.images import to_grey
from jaxcxr.data.views import Data

MODES = LUNG_MASK_MODES
CACHE_DIR = "lung_masks"
_THRESHOLD = 0.5  # On the sigmoid probability, as the segmentation evaluator's default.


def enabled(config: ml_collections.ConfigDict) -> bool:
  """Whether the run masks its inputs (`config.input.lung_mask.run` is set)."""
  lm = config.input.get("lung_mask")
  return bool(lm and lm.get("run"))


def apply(
  grey: np.ndarray, mask: np.ndarray, mode: str, margin: float = 0.0, resize: str = "stretch"
) -> np.ndarray:
  """`grey` (H, W) uint8 with the 0/1 `mask` (any resolution; resized to (H, W) bilinearly and
  thresholded at half, as `pipeline.resize_mask`) applied by `mode` ('black', 'crop', 'both').
  `resize`: how the UNet's input was made from `grey` ('letterbox': the mask's padding is cut
  off first, so it lands where the image was)."""
  if mode not in MODES:
    raise ValueError(f"lung mask mode {mode!r}: expected one of {MODES}.")
  grey = np.asarray(grey)
  h, w = grey.shape[:2]
  mask = np.asarray(mask).reshape(mask.shape[:2])
  if resize == "letterbox":
    x0, y0, nw, nh = pipeline.letterbox_box(w, h, mask.shape[0])
    mask = mask[y0 : y0 + nh, x0 : x0 + nw]
  m = Image.fromarray((mask > 0).astype(np.uint8) * 255)
  if m.size != (w, h):
    m = m.resize((w, h), Image.BILINEAR, reducing_gap=None)
  m = np.asarray(m) >= 128
  if not m.any():  # Only with post-processing off: nothing to keep, the image stays as it is.
    return grey
  out = np.where(m, grey, 0).astype(np.uint8) if mode in ("black", "both") else grey
  if mode in ("crop", "both"):
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    dr, dc = round(margin * (r1 - r0)), round(margin * (c1 - c0))
    out = out[max(0, r0 - dr) : min(h, r1 + dr), max(0, c0 - dc) : min(w, c1 + dc)]
  return np.ascontiguousarray(out)


def _params_digest(state: inference.ModelState) -> str:
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(state.params):
    a = np.asarray(leaf)
    h.update(f"{a.shape}{a.dtype}".encode())
    h.update(a.tobytes())
  return h.hexdigest()[:16]


class Masker:
  """A restored UNet run that predicts post-processed lung masks for grey images.

  Raises:
    FileNotFoundError: `run` is not a jaxcxr training workdir, or has no such checkpoint.
    ValueError: `run` is not a segmentation run.
  """

  def __init__(
    self,
    run: str,
    step: str | int = "best",
    batch_size: int = 16,
    post: masks_lib.PostprocessConfig | None = None,
  ):
    where = "config.input.lung_mask.run"
    if not run or not os.path.isdir(run):
      raise FileNotFoundError(f"{where}={run!r}: no such folder (a lung_unet training workdir).")
    try:
      config = inference.load_run_config(run)
    except FileNotFoundError as e:
      raise FileNotFoundError(f"{where}={run!r} is not a jaxcxr training workdir: {e}") from e
    if config.get("task") != "segmentation":
      raise ValueError(
        f"{where}={run!r} is a {config.get('task', 'classification')!r} run (model "
        f"{config.model_name}); lung masks come from a segmentation run (configs/lung_unet.py)."
      )
    self.restored = inference.restore(run, step, config)
    self.resolution = int(config.input.image_size)
    # The UNet sees images made as its training made them (stretched or letterboxed); `apply`
    # maps its masks back through the same geometry.
    self.resize_args = pipeline.resize_args(config.input)
    self.post = post or masks_lib.PostprocessConfig()
    self.key = {
      "run": os.path.abspath(run),
      "select": self.restored.select,
      "step": int(self.restored.step),
      "params_sha256": _params_digest(self.restored.state),
      "resolution": self.resolution,
      "threshold": _THRESHOLD,
      "postprocess": dataclasses.asdict(self.post),
      **({"resize": self.resize_args} if self.resize != "stretch" else {}),
    }
    self.digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:16]
    self._predictor = inference.Predictor(self.restored, batch_size)
    self._pre = pipeline.Preprocess(self.resolution, **self.resize_args)
    self.images_predicted = 0  # How many images went through the UNet (tests read it).

  @property
  def resize(self) -> str:
    """'stretch' or 'letterbox': how the UNet's inputs are made (and its masks mapped back)."""
    return self.resize_args["resize"]

  def predict(self, greys: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Post-processed masks uint8 0/1 `(N, R, R)` at the UNet's resolution and fallback flags."""
    if not len(greys):
      r = self.resolution
      return np.zeros((0, r, r), np.uint8), np.zeros((0,), bool)
    x = np.stack([self._pre.map({"image": g, "label": 0})["image"] for g in greys])
    logits = self._predictor.logits(x)[..., 0]
    self.images_predicted += len(greys)
    # sigmoid(z) >= 0.5 exactly when z >= 0.
    return masks_lib.postprocess_batch((logits >= 0).astype(np.uint8), self.post)


def masker_for(config: ml_collections.ConfigDict, batch_size: int = 16) -> Masker:
  """The `Masker` of `config.input.lung_mask` (enabled)."""
  lm = config.input.lung_mask
  post = masks_lib.PostprocessConfig(min_area=float(lm.min_area), max_area=float(lm.max_area))
  return Masker(lm.run, lm.step, batch_size, post)


class MaskedView(views.Wrapper):
  """A split whose records' `image` is lung-masked (`apply`), with its masks packed in memory."""

  def __init__(
    self, base: Any, packed: np.ndarray, resolution: int, mode: str, margin: float,
    resize: str = "stretch",
  ):  # fmt: skip
    super().__init__(base)
    self.packed, self.resolution = packed, resolution
    self.mode, self.margin, self.resize = mode, margin, resize

  def mask(self, i: int) -> np.ndarray:
    r = self.resolution
    return np.unpackbits(self.packed[i], count=r * r).reshape(r, r)

  def __getitem__(self, i: int) -> dict[str, Any]:
    record = dict(self.base[i])
    grey = to_grey(record["image"])
    record["image"] = apply(grey, self.mask(i), self.mode, self.margin, self.resize)
    return record

  def __repr__(self) -> str:
    return f"MaskedView({self.base!r}, mode={self.mode!r})"


def _cache_path(root: str, digest: str, dataset: str, split: str) -> str:
  return os.path.join(root, digest, dataset.replace("/", "__"), f"{split}.npz")


def _read_cache(path: str, meta: dict[str, Any]) -> tuple[dict[int, np.ndarray], dict[int, bool]]:
  if not os.path.isfile(path):
    return {}, {}
  with np.load(path) as z:
    if json.loads(str(z["meta"])) != meta:
      logging.warning("Lung-mask cache %s was made for another UNet or data: recomputed.", path)
      return {}, {}
    rec = z["records"].tolist()
    return dict(zip(rec, z["packed"], strict=True)), dict(
      zip(rec, z["fallback"].tolist(), strict=True)
    )


def _write_cache(
  path: str, meta: dict[str, Any], packed: dict[int, np.ndarray], fell: dict
) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rec = np.array(sorted(packed), np.int64)
  tmp = path + ".tmp.npz"
  np.savez_compressed(
    tmp, meta=json.dumps(meta), records=rec, packed=np.stack([packed[r] for r in rec]),
    fallback=np.array([fell[r] for r in rec], bool),
  )  # fmt: skip
  os.replace(tmp, path)  # A reader never sees half a file.


def mask_data(
  data: Data,
  config: ml_collections.ConfigDict,
  cache_dir: str,
  masker: Masker | None = None,
  data_dir: str | None = None,
) -> Data:
  """`data` with every split lung-masked by `config.input.lung_mask`, masks cached in `cache_dir`.

  Every process computes what the cache lacks (the same masks: the UNet's eval pass is
  deterministic); process 0 writes the files. `data.report['lung_mask']` says which UNet, how
  many masks were cached or computed and the fallbacks per split. `data_dir`: where the data
  were prepared, recorded in the cache (default `config.input.data_dir`).
  """
  lm = config.input.lung_mask
  data_dir = data_dir or config.input.data_dir
  masker = masker or masker_for(config, config.input.eval_batch_size or config.input.batch_size)
  r = masker.resolution
  keys = {s: views.record_keys(v) for s, v in data.splits.items()}
  # Per (dataset, builder split): the records any split of the run needs, and one view to read them.
  needed: dict[tuple[str, str], dict[int, tuple[str, int]]] = {}
  for s, (ds, sp, rec) in keys.items():
    for i, key in enumerate(zip(ds.tolist(), sp.tolist(), strict=True)):
      needed.setdefault(key, {}).setdefault(int(rec[i]), (s, i))
  packed: dict[tuple[str, str], dict[int, np.ndarray]] = {}
  fell: dict[tuple[str, str], dict[int, bool]] = {}
  cached = computed = 0
  for (dataset, split), rows in needed.items():
    meta = {
      "unet": masker.key,
      "dataset": dataset,
      "split": split,
      "data_dir": os.path.abspath(data_dir) if data_dir else "",
    }
    path = _cache_path(cache_dir, masker.digest, dataset, split)
    p, f = _read_cache(path, meta)
    missing = [rec for rec in rows if rec not in p]
    cached += len(rows) - len(missing)
    batch = max(64, masker._predictor.batch_size)  # pylint: disable=protected-access
    for start in range(0, len(missing), batch):
      chunk = missing[start : start + batch]
      greys = [
        to_grey(data.splits[rows[rec][0]].__getitem__(rows[rec][1])["image"]) for rec in chunk
      ]
      m, fb = masker.predict(greys)
      for rec, mi, fi in zip(chunk, m, fb, strict=True):
        p[rec], f[rec] = np.packbits(mi.reshape(-1)), bool(fi)
    computed += len(missing)
    if missing and jax.process_index() == 0:
      _write_cache(path, meta, p, f)
    packed[(dataset, split)], fell[(dataset, split)] = p, f

  splits, fallbacks = {}, {}
  for s, (ds, sp, rec) in keys.items():
    pairs = list(zip(ds.tolist(), sp.tolist(), rec.tolist(), strict=True))
    bits = (
      np.stack([packed[(d, b)][n] for d, b, n in pairs])
      if pairs
      else np.zeros((0, -(-r * r // 8)), np.uint8)
    )
    fallbacks[s] = int(sum(fell[(d, b)][n] for d, b, n in pairs))
    splits[s] = MaskedView(data.splits[s], bits, r, lm.mode, float(lm.margin), masker.resize)
  report = {
    "unet": masker.key,
    "unet_digest": masker.digest,
    "mode": lm.mode,
    "margin": float(lm.margin),
    "cache_dir": os.path.abspath(cache_dir),
    "masks_from_cache": cached,
    "masks_computed": computed,
    "fallbacks": fallbacks,
  }
  if any(fallbacks.values()):
    logging.warning(
      "Lung masks: implausible predicted lung area, whole image kept (unmasked) for %s images.",
      fallbacks,
    )
  logging.info("Lung masks (%s): %d from the cache, %d computed.", lm.mode, cached, computed)
  return dataclasses.replace(data, splits=splits, report={**data.report, "lung_mask": report})


def cache_dir_for(config: ml_collections.ConfigDict, workdir: str | None) -> str:
  """`config.input.lung_mask.cache_dir`, else `WORKDIR/lung_masks`."""
  if config.input.lung_mask.cache_dir:
    return config.input.lung_mask.cache_dir
  if not workdir:
    raise ValueError(
      "config.input.lung_mask is set but there is no workdir to cache the masks in: set "
      "config.input.lung_mask.cache_dir."
    )
  return os.path.join(workdir, CACHE_DIR)


def load_splits(config: ml_collections.ConfigDict, workdir: str | None) -> Data:
  """`splits.load(config.input)`, lung-masked when `config.input.lung_mask.run` is set: the one
  entry for training, evaluation, the report's gallery and the markers test."""
  from jaxcxr.data import splits  # pylint: disable=g-import-not-at-top

  config_lib.check_lung_mask(config)
  data = splits.load(config.input)
  if not enabled(config):
    return data
  return mask_data(data, config, cache_dir_for(config, workdir))


def run_masker(workdir: str, config: ml_collections.ConfigDict, batch_size: int) -> Masker | None:
  """For `predict`: the UNet a lung-masked run trained with (None when it masks nothing), checked
  against the identity `WORKDIR/data_splits.json` recorded.

  Raises:
    ValueError: the UNet's parameters (or step, or run) differ from those training used.
  """
  if not enabled(config):
    return None
  masker = masker_for(config, batch_size)
  path = os.path.join(workdir, inference.RUN_SPLITS)
  with open(path) as f:
    saved = json.load(f).get("lung_mask", {}).get("unet")
  if saved is not None and saved != masker.key:
    raise ValueError(
      f"{path}: the run was trained on lung masks of UNet {saved}, but "
      f"config.input.lung_mask now restores {masker.key}: predictions would be masked "
      "differently from training."
    )
  return masker
