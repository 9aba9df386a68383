"""The run report's heat-map gallery: Grad-CAM of correct and wrong test predictions per class.

Grad-CAM (Selvaraju et al. 2017, `jaxcxr.explain.gradcam`, the model's default layer: its last
feature map) shows where the network looked; a gallery of its right and wrong calls per class is
how the COVID-19 studies checked that a model reads the lungs and not text markers or borders
(Zhang & Liu 2021; Bassi & Attux 2021, with LRP).

Which images, deterministically, from the split's per-example outputs training wrote
(`eval/<split>_predictions.npz`: `probs`, `label`, `index` into the split):

  * single-label: per true class c, the K *most confidently correct* images (argmax = c, highest
    p_c first) and the K *most confidently wrong* ones (argmax != c, highest probability of the
    wrongly predicted class first); "predicted" is the argmax, as in the confusion matrix;
  * multi-label: per class c, the K true positives with the highest p_c (decision p_c >= 0.5) and
    the K most confident errors on c (missed positives and false alarms, largest |p_c - 0.5|);

ties broken by the split index. The map explains the predicted class (multi-label: class c).

The run is restored with `jaxcxr.inference.restore` at the state the report evaluated
(`eval/<split>.json`'s `selected`); the images are read again from the run's data
(`jaxcxr.lung_mask.load_splits`: `splits.load(config.input)`, lung-masked from the run's mask
cache where it trained so; by their split index) and preprocessed exactly as
evaluation does (`pipeline.Preprocess`, then `predict.explain_maps`: `training.steps.model_inputs`
and the batched Grad-CAM). Their probabilities are recomputed (`predict.Predictor`) and compared
with the npz, so a dataset changed since the run shows as a difference instead of passing
silently. Overlays (`jaxcxr.explain.overlay`) are written to `WORKDIR/report/gallery/` with
`index.json`, which lists every tile.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

import numpy as np

GALLERY_DIR = os.path.join("report", "gallery")
KINDS = ("correct", "wrong")


def select(labels: np.ndarray, probs: np.ndarray, k: int) -> list[dict[str, Any]]:
  """The tiles of the module docstring: `[{class, kind, rank, row, target}]`, `row` into the
  arrays (not the split index), `target` the class whose map is shown; per class correct first."""
  n, num_classes = probs.shape
  rows = np.arange(n)
  tiles = []
  multi = labels.ndim == 2
  pred = probs.argmax(-1)
  for c in range(num_classes):
    if multi:
      pos, called = labels[:, c] > 0.5, probs[:, c] >= 0.5
      groups = {
        "correct": (pos & called, probs[:, c]),
        "wrong": (pos != called, np.abs(probs[:, c] - 0.5)),
      }
    else:
      true_c = labels.astype(int) == c
      conf = probs[rows, pred]
      groups = {"correct": (true_c & (pred == c), conf), "wrong": (true_c & (pred != c), conf)}
    for kind in KINDS:
      mask, score = groups[kind]
      chosen = rows[mask]
      # Most confident first; the stable sort keeps the split order among ties.
      chosen = chosen[np.argsort(-score[chosen], kind="stable")][:k]
      for rank, r in enumerate(chosen):
        tiles.append(
          {"class": c, "kind": kind, "rank": rank, "row": int(r),
           "target": c if multi else int(pred[r])}
        )  # fmt: skip
  return tiles


def _state_of(workdir: str, split: str) -> str | int:
  """The state `eval/<split>.json` reports: 'best' or its step."""
  with open(os.path.join(workdir, "eval", f"{split}.json")) as f:
    selected = json.load(f).get("selected", {})
  if selected.get("select") == "best":
    return "best"
  if "step" not in selected:
    raise ValueError(f"{workdir}/eval/{split}.json does not say which state it evaluated.")
  return int(selected["step"])


def build(workdir: str, k: int, split: str = "test", batch_size: int = 32) -> dict[str, Any]:
  """Writes the gallery of `split` under `WORKDIR/report/gallery/`; returns what `index.json`
  holds: `{split, state, class_names, multi_label, k, max_prob_diff, tiles: [...]}`, each tile
  with its `file` (relative to the workdir), split `index`, `true`, `predicted`, `prob`.

  Raises:
    FileNotFoundError: no `eval/<split>_predictions.npz`, no checkpoint, or the data is not
      prepared any more (`splits.load`'s message).
    ValueError: the split no longer matches the predictions (its size or an image's label).
  """
  from jaxcxr import inference, lung_mask, predict  # pylint: disable=g-import-not-at-top
  from jaxcxr.data import pipeline  # pylint: disable=g-import-not-at-top
  from jaxcxr.explain import save_overlay  # pylint: disable=g-import-not-at-top

  if k < 1:
    raise ValueError(f"gallery size {k} must be at least 1 (0 turns the gallery off).")
  workdir = os.path.abspath(workdir)
  path = os.path.join(workdir, "eval", f"{split}_predictions.npz")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: the run did not report split {split!r}.")
  with np.load(path, allow_pickle=False) as z:
    probs, labels, index = z["probs"], z["label"], z["index"]
  restored = inference.restore(workdir, _state_of(workdir, split))
  names, config = restored.class_names, restored.config
  source = lung_mask.load_splits(config, workdir).split(split)  # The images the run saw.
  if len(source) != len(index):
    raise ValueError(
      f"split {split!r} of the run's data has {len(source)} images, {path} {len(index)}: the data "
      "changed since the run."
    )
  tiles = select(labels, probs, k)
  pre = pipeline.Preprocess.of(config.input)
  pixels = []
  for t in tiles:
    record = source[int(index[t["row"]])]
    if not np.array_equal(np.asarray(record["label"]), labels[t["row"]]):
      raise ValueError(
        f"image {int(index[t['row']])} of split {split!r} has label {record['label']}, {path} "
        f"{labels[t['row']]}: the data changed since the run."
      )
    pixels.append(pre.map({"image": record["image"], "label": 0})["image"])
  out_dir = os.path.join(workdir, GALLERY_DIR)
  os.makedirs(out_dir, exist_ok=True)
  for old in glob.glob(os.path.join(out_dir, "*.png")):
    os.remove(old)  # A rebuild with a smaller K or another state leaves no stale tile.
  max_diff = None
  if tiles:
    pixels = np.stack(pixels)
    target = np.array([t["target"] for t in tiles])
    bs = min(batch_size, len(tiles))
    predictor = predict.Predictor(restored, bs)
    again = predictor.probabilities(predictor.logits(pixels))
    max_diff = float(np.abs(again - probs[[t["row"] for t in tiles]]).max())
    maps = predict.explain_maps(restored, pixels, target, "gradcam", bs)
    for i, t in enumerate(tiles):
      rel = os.path.join(GALLERY_DIR, f"c{t['class']}_{t['kind']}_{t['rank']}.png")
      save_overlay(os.path.join(workdir, rel), pixels[i, ..., 0], maps[i])
      row = t["row"]
      t.update(
        file=rel,
        index=int(index[row]),
        true=labels[row].tolist(),
        predicted=int(probs[row].argmax()),
        prob=float(probs[row, t["target"]]),
      )
  result = {
    "split": split,
    "state": {"select": restored.select, "step": restored.step},
    "class_names": names,
    "multi_label": bool(labels.ndim == 2),
    "k": k,
    "method": "gradcam (default layer: the last feature map)",
    "max_prob_diff": max_diff,  # Recomputed probabilities of the tiles vs the npz.
    "tiles": tiles,
  }
  with open(os.path.join(out_dir, "index.json"), "w") as f:
    json.dump(result, f, indent=2)
  return result
