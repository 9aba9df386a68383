"""The classification evaluator: one pass over a split → metrics, loss and per-example outputs.

Runs the jitted eval step over every example of the split exactly once (padding removed, one gather
per split: `base.predict_split`), computes `jaxcxr.metrics.classification_metrics` (the keys of
`eval/<split>.json`) and the mean per-example loss (the training objective: `loss`, monitored as
`<name>_loss`), and keeps the probabilities, labels, patient ids and split indices so that
calibration, bootstrap intervals and reports can reuse them (`write_predictions`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxcxr import calibration, intervals, metrics
from jaxcxr.evaluators.base import EvalContext, predict_split, register


def eval_augment_key(config: ml_collections.ConfigDict, split: str) -> jax.Array | None:
  """The fixed augmentation key of an evaluation split in `config.augment_eval` (else None):
  from the run's seed and the split's name, so every evaluation draws the same images."""
  if split not in tuple(config.get("augment_eval", ()) or ()):
    return None
  name = int.from_bytes(hashlib.sha256(split.encode()).digest()[:4], "little")
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), 0xE7A1), name)


@register("classification")
class Classification:
  """Metrics of `jaxcxr.metrics.classification_metrics` plus the mean loss on `cfg.split`.

  Optional `cfg` keys: `bootstrap` (patient-bootstrap resamples for 95% intervals beside every
  metric, `jaxcxr.intervals`; 0: none), `bootstrap_method`, `bootstrap_seed`, and
  `calibration_bins` (a `calibration` block: ECE, Brier, NLL; 0: none). The final reports take
  them from `config.report`; periodic evaluations during training skip them unless set.
  """

  def __init__(self, name: str, cfg: ml_collections.ConfigDict, ctx: EvalContext):
    self.name, self.cfg, self.ctx = name, cfg, ctx
    self.split = cfg.get("split", "val")
    self.every_steps = int(cfg.get("every_steps", 0))
    self.last: dict[str, np.ndarray] | None = None  # Per-example outputs of the last run.

  def run(self, state: Any, split: str | None = None) -> dict[str, Any]:
    split = split or self.split
    source = self.ctx.data.split(split)
    self.last = predict_split(self.ctx, state, source, augment_key=eval_augment_key(
      self.ctx.config, split))  # fmt: skip
    labels, probs = self.last["label"], self.last["probs"]
    bad = int(np.sum(~np.isfinite(probs).all(axis=-1)))
    if bad:  # A diverged model (finite but huge weights overflow); the training loop's guard
      # turns this into its non-finite error, naming the step and the last checkpoint.
      raise FloatingPointError(
        f"The model's outputs on split {split!r} are not finite for {bad} of {len(probs)} examples."
      )
    n_boot = int(self.cfg.get("bootstrap", 0))
    if n_boot:
      # Patient-level intervals beside every metric; same point values as below.
      result = intervals.metrics_with_intervals(
        labels,
        probs,
        self.last.get("patient"),
        self.ctx.class_names,
        n_resamples=n_boot,
        seed=int(self.cfg.get("bootstrap_seed", 0)),
        method=self.cfg.get("bootstrap_method", "bca"),
      )
    else:
      result = metrics.classification_metrics(labels, probs, self.ctx.class_names)
    bins = int(self.cfg.get("calibration_bins", 0))
    if bins:
      result["calibration"] = calibration.calibration_report(labels, probs, n_bins=bins)
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
