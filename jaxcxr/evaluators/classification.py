"""The classification evaluator: one pass over a split → metrics, loss and per-example outputs.

Runs the jitted eval step over every example of the split exactly once (padding removed),
computes `jaxcxr.metrics.classification_metrics` (the keys of `eval/<split>.json`) and the mean
per-example loss (the training objective: `loss`, monitored as `<name>_loss`), and keeps the
probabilities, labels, patient ids and split indices so that calibration, bootstrap intervals
and reports can reuse them (`write_predictions`).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxcxr import metrics, sharding
from jaxcxr.data import pipeline
from jaxcxr.evaluators.base import EvalContext, register


def predict_split(ctx: EvalContext, state: Any, source: Any) -> dict[str, np.ndarray]:
  """Per-example `probs`, `label`, `loss`, `index` (into the split) and `patient` of a split."""
  config, mesh = ctx.config, ctx.mesh
  global_bs = config.input.eval_batch_size or config.input.batch_size
  local_bs = sharding.local_batch_size(global_bs, mesh)
  n = len(source)
  # eval_batches' rule: process p reads rows [p * per, (p + 1) * per) in order.
  per_process = math.ceil(n / jax.process_count())
  out: dict[str, list[np.ndarray]] = {"probs": [], "label": [], "loss": [], "index": []}
  masks = []
  for b, batch in enumerate(
    pipeline.eval_batches(
      source,
      local_batch_size=local_bs,
      image_size=config.input.image_size,
      num_threads=config.input.num_threads,
    )
  ):
    sharded = sharding.shard_batch(batch, mesh)
    o = ctx.eval_step(state, {"image": sharded["image"], "label": sharded["label"]})
    gathered = sharding.process_allgather(
      {"probs": o["probs"], "loss": o["loss"], "label": sharded["label"], "mask": sharded["mask"]}
    )
    rows = np.concatenate(
      [p * per_process + b * local_bs + np.arange(local_bs) for p in range(jax.process_count())]
    )
    for k in ("probs", "label", "loss"):
      out[k].append(np.asarray(gathered[k]))
    out["index"].append(rows)
    masks.append(np.asarray(gathered["mask"]))
  keep = np.concatenate(masks) > 0
  res = {k: np.concatenate(v)[keep] for k, v in out.items()}
  patients = getattr(source, "patients", None)
  if patients is not None:
    res["patient"] = np.asarray(patients)[res["index"]].astype(str)
  return res


@register("classification")
class Classification:
  """Metrics of `jaxcxr.metrics.classification_metrics` plus the mean loss on `cfg.split`."""

  def __init__(self, name: str, cfg: ml_collections.ConfigDict, ctx: EvalContext):
    self.name, self.cfg, self.ctx = name, cfg, ctx
    self.split = cfg.get("split", "val")
    self.every_steps = int(cfg.get("every_steps", 0))
    self.last: dict[str, np.ndarray] | None = None  # Per-example outputs of the last run.

  def run(self, state: Any, split: str | None = None) -> dict[str, Any]:
    split = split or self.split
    source = self.ctx.data.split(split)
    self.last = predict_split(self.ctx, state, source)
    result = metrics.classification_metrics(
      self.last["label"], self.last["probs"], self.ctx.class_names
    )
    if result["num_examples"] != len(source):
      raise RuntimeError(
        f"Evaluated {result['num_examples']} examples but the split {split!r} has {len(source)}."
      )
    result["loss"] = float(np.mean(self.last["loss"]))
    return result

  @staticmethod
  def scalars(result: dict[str, Any]) -> dict[str, float]:
    return {**metrics.scalar_summary(result), "loss": result["loss"]}

  def write_predictions(self, path: str) -> None:
    """The last run's per-example outputs as an `.npz` (probs, label, loss, index, patient)."""
    if self.last is None:
      raise RuntimeError(f"Evaluator {self.name!r} has not run yet.")
    np.savez(path, class_names=np.asarray(self.ctx.class_names), **self.last)
