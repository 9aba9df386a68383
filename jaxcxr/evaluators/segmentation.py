"""The segmentation evaluator: one pass over a split → per-image Dice and IoU, loss, fallbacks.

Runs the jitted eval step (sigmoid probabilities and the training loss, `bce_dice`, against each
image's mask) over every example of the split once, thresholds the probabilities at
`threshold` (0.5), and scores each image's mask with `jaxcxr.masks.dice_iou` at the training
resolution, against the stored mask resized as the images are. With `postprocess` (default on)
the masks are first cleaned by `jaxcxr.masks.postprocess` (two largest components, holes
filled, whole-image fallback on an implausible area); the headline `dice` / `iou` are then those
of the cleaned masks, `dice_raw` / `iou_raw` those before, and `fallbacks` counts the images that
fell back. The final reports also write the masks and an overlay PNG (`write_predictions`).
Monitors: `<name>_dice`, `<name>_iou`, `<name>_loss` (best checkpoint by
`val_dice`).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import ml_collections
import numpy as np
from PIL import Image

from jaxcxr import masks as masks_lib
from jaxcxr import sharding
from jaxcxr.data import pipeline
from jaxcxr.evaluators.base import EvalContext, register


def predict_masks(ctx: EvalContext, state: Any, source: Any) -> dict[str, np.ndarray]:
  """Per-example `probs` (N, S, S), `target` masks, `image`s (uint8), `loss`, `index` (into the
  split) and `patient` of a split at the run's resolution."""
  config, mesh = ctx.config, ctx.mesh
  global_bs = config.input.eval_batch_size or config.input.batch_size
  local_bs = sharding.local_batch_size(global_bs, mesh)
  per_process = math.ceil(len(source) / jax.process_count())
  out: dict[str, list[np.ndarray]] = {
    "probs": [], "target": [], "image": [], "loss": [], "index": []
  }  # fmt: skip
  pad = []
  for b, batch in enumerate(
    pipeline.eval_batches(
      source,
      local_batch_size=local_bs,
      image_size=config.input.image_size,
      **pipeline.resize_args(config.input),
      num_threads=config.input.num_threads,
      with_masks=True,
    )
  ):
    sharded = sharding.shard_batch(batch, mesh)
    o = ctx.eval_step(state, {"image": sharded["image"], "label": sharded["seg"]})
    gathered = sharding.process_allgather(
      {
        "probs": o["probs"],
        "loss": o["loss"],
        "target": sharded["seg"],
        "image": sharded["image"],
        "mask": sharded["mask"],
      }
    )
    rows = np.concatenate(
      [p * per_process + b * local_bs + np.arange(local_bs) for p in range(jax.process_count())]
    )
    out["probs"].append(np.asarray(gathered["probs"])[..., 0])
    out["target"].append(np.asarray(gathered["target"])[..., 0])
    out["image"].append(np.asarray(gathered["image"])[..., 0])
    out["loss"].append(np.asarray(gathered["loss"]))
    out["index"].append(rows)
    pad.append(np.asarray(gathered["mask"]))
  keep = np.concatenate(pad) > 0
  res = {k: np.concatenate(v)[keep] for k, v in out.items()}
  patients = getattr(source, "patients", None)
  if patients is not None:
    res["patient"] = np.asarray(patients)[res["index"]].astype(str)
  return res


def summary(values: np.ndarray, prefix: str) -> dict[str, float]:
  """Mean, min, median and max of per-image values, as `<prefix>`, `<prefix>_min`..."""
  return {
    prefix: float(np.mean(values)),
    f"{prefix}_min": float(np.min(values)),
    f"{prefix}_median": float(np.median(values)),
    f"{prefix}_max": float(np.max(values)),
  }


@register("segmentation")
class Segmentation:
  """Dice and IoU (per image: mean, min, median, max) and the mean loss on `cfg.split`.

  Optional `cfg` keys: `threshold` (0.5), `postprocess` (True), `components` (2),
  `fill_holes` (True), `min_area` (0.05), `max_area` (0.8): see `jaxcxr.masks`. Keys of the
  classification reports (`bootstrap`, `calibration_bins`...) are ignored.
  """

  def __init__(self, name: str, cfg: ml_collections.ConfigDict, ctx: EvalContext):
    self.name, self.cfg, self.ctx = name, cfg, ctx
    self.split = cfg.get("split", "val")
    self.every_steps = int(cfg.get("every_steps", 0))
    self.threshold = float(cfg.get("threshold", 0.5))
    self.post = (
      masks_lib.PostprocessConfig(
        components=int(cfg.get("components", 2)),
        fill_holes=bool(cfg.get("fill_holes", True)),
        min_area=float(cfg.get("min_area", 0.05)),
        max_area=float(cfg.get("max_area", 0.8)),
      )
      if cfg.get("postprocess", True)
      else None
    )
    self.last: dict[str, np.ndarray] | None = None  # Per-image outputs of the last run.

  def run(self, state: Any, split: str | None = None) -> dict[str, Any]:
    split = split or self.split
    source = self.ctx.data.split(split)
    pred = predict_masks(self.ctx, state, source)
    if len(pred["index"]) != len(source):
      raise RuntimeError(
        f"Evaluated {len(pred['index'])} examples but the split {split!r} has {len(source)}."
      )
    raw = (pred.pop("probs") >= self.threshold).astype(np.uint8)
    dice_raw, iou_raw = masks_lib.dice_iou(raw, pred["target"])
    result: dict[str, Any] = {"num_examples": len(source), "threshold": self.threshold}
    if self.post is not None:
      cleaned, fell = masks_lib.postprocess_batch(raw, self.post)
      dice, iou = masks_lib.dice_iou(cleaned, pred["target"])
      result["postprocess"] = dict(vars(self.post))
      result["fallbacks"] = int(fell.sum())
    else:
      cleaned, fell, dice, iou = raw, np.zeros(len(raw), bool), dice_raw, iou_raw
    result.update(summary(dice, "dice"))
    result.update(summary(iou, "iou"))
    result.update(dice_raw=float(dice_raw.mean()), iou_raw=float(iou_raw.mean()))
    result["loss"] = float(np.mean(pred["loss"]))
    self.last = {
      **pred,
      "pred": cleaned,
      "dice": dice,
      "iou": iou,
      "dice_raw": dice_raw,
      "fallback": fell,
    }
    return result

  @staticmethod
  def scalars(result: dict[str, Any]) -> dict[str, float]:
    keys = ("dice", "iou", "dice_min", "dice_raw", "loss", "fallbacks")
    return {k: float(result[k]) for k in keys if k in result}

  def write_predictions(self, path: str, num_overlays: int = 16) -> None:
    """The last run's per-image outputs as an `.npz`: Dice, IoU, fallback flags, index, patient,
    the images and the predicted and reference masks (uint8 0/1) at the run's resolution; and
    beside it `<path without .npz>_overlays.png`: the `num_overlays` images of lowest Dice with
    both outlines (`jaxcxr.masks.overlay_grid`; worst first, where a reader should look)."""
    if self.last is None:
      raise RuntimeError(f"Evaluator {self.name!r} has not run yet.")
    np.savez_compressed(path, **self.last)
    worst = np.argsort(self.last["dice"], kind="stable")[:num_overlays]
    grid = masks_lib.overlay_grid(
      self.last["image"][worst], self.last["pred"][worst], self.last["target"][worst]
    )
    Image.fromarray(grid).save(path.removesuffix(".npz") + "_overlays.png")
