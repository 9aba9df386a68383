"""Heat maps drawn over their images, as PNG files people can look at.

Grad-CAM maps (in [0, 1]) use a sequential colour map (``jet``, as Selvaraju et al. and the
``grad-cam`` package show them); LRP relevance is signed and uses a diverging one (``bwr``: red
for the class, blue against, white for nothing), scaled symmetrically by its largest magnitude
so that zero stays white. Colour maps come from matplotlib, the image files from Pillow.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

__all__ = ["overlay", "save_overlay"]


def _colormap(name: str):
  try:
    from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
  except ImportError as e:  # pragma: no cover - matplotlib is a dependency
    raise ImportError("jaxcxr.explain.overlay needs matplotlib for its colour maps.") from e
  return colormaps[name]


def _to_rgb_uint8(image: np.ndarray) -> np.ndarray:
  """An ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` image of any range as uint8 RGB (min-max)."""
  image = np.asarray(image, np.float32)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"overlay: image must be (H, W), (H, W, 1) or (H, W, 3), got {image.shape}.")
  lo, hi = float(image.min()), float(image.max())
  return np.uint8(np.round(255 * (image - lo) / (hi - lo if hi > lo else 1.0)))


def overlay(
  image: np.ndarray,
  heatmap: np.ndarray,
  *,
  signed: bool = False,
  alpha: float = 0.5,
  cmap: str | None = None,
) -> np.ndarray:
  """Blends a colour-mapped ``heatmap`` over ``image``.

  Args:
      image: the image the map explains, ``(H, W[, C])``, any value range (shown min-max
          scaled, so a normalised model input works as well as raw pixels).
      heatmap: ``(H, W)``: a Grad-CAM map in [0, 1], or signed LRP relevance with ``signed``.
      signed: scale ``heatmap`` to [-1, 1] by its largest magnitude and use a diverging map.
      alpha: opacity of the heat map.
      cmap: a matplotlib colour map name (default ``jet``, or ``bwr`` when ``signed``).

  Returns:
      uint8 RGB ``(H, W, 3)``.
  """
  rgb = _to_rgb_uint8(image)
  heat = np.asarray(heatmap, np.float32)
  if heat.shape != rgb.shape[:2]:
    raise ValueError(f"overlay: heat map {heat.shape} does not match image {rgb.shape[:2]}.")
  if signed:
    scale = float(np.abs(heat).max()) or 1.0
    values = 0.5 + 0.5 * heat / scale
  else:
    values = np.clip(heat, 0.0, 1.0)
  colours = _colormap(cmap or ("bwr" if signed else "jet"))(values)[..., :3] * 255
  return np.uint8(np.round((1 - alpha) * rgb + alpha * colours))


def save_overlay(path: str | os.PathLike, image: np.ndarray, heatmap: np.ndarray, **kw) -> None:
  """Writes :func:`overlay` ``(image, heatmap, **kw)`` as a PNG (the extension decides)."""
  Image.fromarray(overlay(image, heatmap, **kw)).save(path)
