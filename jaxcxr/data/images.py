"""One image decoder: file bytes or pixel arrays → uint8 grey levels, the same way everywhere.

The TFDS builders (`tfds_builders/common.py`) store what this returns, the input pipeline
(`jaxcxr.data.pipeline`) and the leakage audit (`jaxcxr.audit`) read through it, so an image
looks the same to the builder that wrote it, the model that trains on it and the audit that
hashes it. A leaf module: numpy and PIL only.

Grey levels:
  * 8-bit grey is kept as is; RGB is converted with PIL's ITU-R 601 luma weights (radiographs
    copied from publications are often RGB); transparent pixels are composited onto black (the
    film background) before conversion.
  * Deeper pixels (16-bit PNGs of NIH ChestX-ray14 and Montgomery, 32-bit integer or float
    arrays, later DICOM) are scaled linearly so that 0 stays black and the brightest pixel becomes
    255 (`to_uint8`). Such files often use 10 to 12 of their 16 bits, so dividing by the type's
    range would leave them nearly black; stretching from the darkest pixel instead would change
    the contrast of each image by its own minimum. Negative values (signed or float pixels) are
    shifted so that the lowest one is black.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

_DEEP_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def to_uint8(pixels: np.ndarray) -> np.ndarray:
  """Scales non-uint8 pixels to uint8: 0 (or the lowest negative value) black, the maximum 255."""
  pixels = np.asarray(pixels)
  if pixels.dtype == np.uint8:
    return pixels
  if pixels.dtype == np.bool_:
    return pixels.astype(np.uint8) * 255
  values = pixels.astype(np.float64)
  lo = min(0.0, float(values.min())) if values.size else 0.0
  hi = float(values.max()) if values.size else 0.0
  scale = 255.0 / (hi - lo) if hi > lo else 0.0
  return np.round((values - lo) * scale).astype(np.uint8)


def open_image(data: bytes) -> Image.Image:
  """A fully decoded PIL image; raises on unreadable or truncated bytes.

  A full decode, not `Image.verify()`: verify misses truncated JPEGs, common in downloads.

  Raises:
    PIL.UnidentifiedImageError, OSError: the bytes are not a readable image.
  """
  img = Image.open(io.BytesIO(data))
  img.load()
  return img


def grey_pil(img: Image.Image) -> Image.Image:
  """A PIL image of any mode as 8-bit grey (`L`), by the rules of the module docstring."""
  if img.mode == "L":
    return img
  if img.mode in _DEEP_MODES:
    return Image.fromarray(to_uint8(np.asarray(img)), "L")
  if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, rgba).convert("L")
  return img.convert("L")


def to_grey(image: np.ndarray | bytes) -> np.ndarray:
  """Decodes (if bytes) and converts to a uint8 (H, W) array.

  Args:
    image: encoded file bytes (PNG, JPEG, ... any PIL mode), or pixels (H, W), (H, W, 1),
      (H, W, 3) or (H, W, 4) of any numeric dtype.

  Raises:
    ValueError: the array has an unexpected shape.
    PIL.UnidentifiedImageError, OSError: the bytes are not a readable image.
  """
  if isinstance(image, bytes | bytearray):
    with open_image(bytes(image)) as img:
      return np.asarray(grey_pil(img))
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim == 3 and image.shape[-1] in (3, 4) and min(image.shape[:2]) > 0:
    mode = "RGB" if image.shape[-1] == 3 else "RGBA"
    return np.asarray(grey_pil(Image.fromarray(to_uint8(image), mode)))
  if image.ndim != 2 or min(image.shape) == 0:
    raise ValueError(
      f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, got shape {image.shape}"
    )
  return to_uint8(image)


def grey_image_bytes(data: bytes, encoding: str = "jpeg", max_side: int | None = None) -> bytes:
  """Single-channel image bytes in `encoding`; raises if PIL cannot fully decode `data`.

  Args:
    data: the file's bytes (JPEG, PNG, ...; any PIL mode).
    encoding: `jpeg` (quality 95) or `png`. Files that are already grey, in that format and
      within `max_side` are returned unchanged, byte for byte.
    max_side: if set, an image with a longer side is downscaled (Lanczos, aspect kept) to fit in
      `max_side` x `max_side`.
  """
  fmt = {"jpeg": "JPEG", "png": "PNG"}[encoding]
  with open_image(data) as img:
    too_big = max_side is not None and max(img.size) > max_side
    if img.mode == "L" and img.format == fmt and not too_big:
      return data
    grey = grey_pil(img)
    if grey is img:
      grey = img.copy()  # `img` closes with the `with`; thumbnail works in place.
  if too_big:
    grey.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
  buf = io.BytesIO()
  if fmt == "JPEG":
    grey.save(buf, format="JPEG", quality=95)
  else:
    grey.save(buf, format="PNG")
  return buf.getvalue()
