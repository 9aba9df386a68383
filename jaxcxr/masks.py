"""Binary lung masks: per-image Dice and IoU, and the post-processing of a predicted mask.

Dice `2|A n B| / (|A| + |B|)` (Dice 1945) and IoU `|A n B| / |A u B|` (Jaccard) per image, on
hard 0/1 masks; two empty masks agree perfectly (1.0), as in most segmentation toolkits
(MONAI's `ignore_empty=False` gives 1 there too).

Post-processing (Zhang & Liu 2021's pipeline and the usual lung-segmentation practice): keep the
two largest 8-connected components (the two lungs; specks elsewhere are dropped), then fill holes
(`scipy.ndimage.binary_fill_holes`). When the predicted lung area is implausible (a fraction of
the image below `min_area` or above `max_area`, e.g. a failed prediction on an unusual image),
the mask falls back to the whole image, so a downstream masked classifier sees the unmasked
radiograph rather than a wrong cut-out; the fallbacks are counted and reported.

`overlay_grid` draws masks over their radiographs for the run report: the reference outline in
red, the prediction's in green, where they coincide yellow.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

__all__ = [
  "PostprocessConfig",
  "dice_iou",
  "overlay_grid",
  "postprocess",
  "postprocess_batch",
]

_EIGHT = np.ones((3, 3), bool)  # 8-connectivity


def dice_iou(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-image Dice and IoU of hard masks `(N, H, W[, 1])` (nonzero = foreground)."""
  p = np.asarray(pred).reshape(len(pred), -1) > 0
  t = np.asarray(target).reshape(len(target), -1) > 0
  inter = (p & t).sum(1).astype(np.float64)
  total = p.sum(1) + t.sum(1)
  union = (p | t).sum(1)
  dice = np.where(total > 0, 2.0 * inter / np.maximum(total, 1), 1.0)
  iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
  return dice, iou


@dataclasses.dataclass(frozen=True)
class PostprocessConfig:
  """`components`: how many of the largest components to keep (0: all); `fill_holes`;
  `min_area` / `max_area`: the plausible lung area, as fractions of the image."""

  components: int = 2
  fill_holes: bool = True
  min_area: float = 0.05
  max_area: float = 0.8


def postprocess(mask: np.ndarray, cfg: PostprocessConfig = PostprocessConfig()) -> tuple[
  np.ndarray, bool
]:  # fmt: skip
  """One predicted mask `(H, W)` → `(cleaned uint8 0/1 mask, fell_back)`.

  `fell_back`: the area after cleaning was implausible, and the mask is the whole image.
  """
  m = np.asarray(mask) > 0
  if cfg.components:
    labels, n = ndimage.label(m, structure=_EIGHT)
    if n > cfg.components:
      sizes = np.bincount(labels.ravel())[1:]
      keep = np.argsort(sizes)[::-1][: cfg.components] + 1
      m = np.isin(labels, keep)
  if cfg.fill_holes:
    m = ndimage.binary_fill_holes(m)
  area = m.mean()
  if not cfg.min_area <= area <= cfg.max_area:
    return np.ones(m.shape, np.uint8), True
  return m.astype(np.uint8), False


def postprocess_batch(
  masks: np.ndarray, cfg: PostprocessConfig = PostprocessConfig()
) -> tuple[np.ndarray, np.ndarray]:
  """`postprocess` over `(N, H, W[, 1])`; returns the masks (same shape) and the fallback flags."""
  masks = np.asarray(masks)
  flat = masks.reshape(masks.shape[:3])
  out = np.empty(flat.shape, np.uint8)
  fell = np.zeros(len(flat), bool)
  for i, m in enumerate(flat):
    out[i], fell[i] = postprocess(m, cfg)
  return out.reshape(masks.shape), fell


def _outline(m: np.ndarray) -> np.ndarray:
  m = np.asarray(m) > 0
  return m & ~ndimage.binary_erosion(m, structure=_EIGHT)


def overlay_grid(
  images: np.ndarray, pred: np.ndarray, target: np.ndarray, columns: int = 4
) -> np.ndarray:
  """uint8 RGB tiles of grey `images` (N, H, W) with the outlines of `target` (red) and `pred`
  (green; yellow where both), `columns` per row, 2 px gaps."""
  n, h, w = images.shape[:3]
  rows = -(-n // columns)
  grid = np.zeros((rows * (h + 2), columns * (w + 2), 3), np.uint8)
  for i in range(n):
    tile = np.repeat(np.asarray(images[i]).reshape(h, w, 1), 3, -1).astype(np.uint8)
    ref, got = _outline(target[i].reshape(h, w)), _outline(pred[i].reshape(h, w))
    tile[ref] = (255, 0, 0)
    tile[got] = (0, 255, 0)
    tile[ref & got] = (255, 255, 0)
    r, c = divmod(i, columns)
    grid[r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = tile
  return grid
