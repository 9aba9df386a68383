"""jaxcxr.data.images: one grey-level decoder for the builders, the pipeline and the audit."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from jaxcxr import audit
from jaxcxr.data import images, pipeline
from tfds_builders import common


def _png(pixels: np.ndarray, mode: str | None = None) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(pixels, mode).save(buf, format="PNG")
  return buf.getvalue()


def _sixteen_bit() -> np.ndarray:
  """A 12-bit radiograph in a 16-bit container, darkest pixel 1000 (not 0)."""
  x = np.linspace(1000, 4000, 64 * 48).reshape(48, 64)
  return np.round(x).astype(np.uint16)


def test_16_bit_scales_by_the_maximum_so_black_stays_black():
  pixels = _sixteen_bit()
  grey = images.to_grey(pixels)
  assert grey.dtype == np.uint8 and grey.shape == (48, 64)
  assert grey.max() == 255  # The brightest pixel (4000) is white.
  # 1000 / 4000 of full scale: a min-max stretch would have made it 0.
  assert grey.min() == round(1000 * 255 / 4000)
  np.testing.assert_array_equal(grey, np.round(pixels * (255.0 / 4000)).astype(np.uint8))


def test_every_path_decodes_a_16_bit_png_alike():
  pixels = _sixteen_bit()
  data = _png(pixels)
  with Image.open(io.BytesIO(data)) as img:
    assert img.mode.startswith("I")  # PIL reads it as a 16-bit image.
  expected = images.to_grey(pixels)
  np.testing.assert_array_equal(images.to_grey(data), expected)  # Bytes, as the audit reads.
  stored = common.grayscale_image_bytes(data, "png")  # What a builder stores.
  with Image.open(io.BytesIO(stored)) as img:
    assert img.mode == "L"
    np.testing.assert_array_equal(np.asarray(img), expected)
  np.testing.assert_array_equal(audit.to_grey(data), expected)
  out = pipeline.Preprocess(64).map({"image": pixels, "label": 0})["image"]
  resized = Image.fromarray(expected).resize((64, 64), Image.BILINEAR, reducing_gap=None)
  np.testing.assert_array_equal(out[..., 0], np.asarray(resized))  # What the pipeline feeds.


def test_8_bit_grey_is_kept_and_rgb_uses_luma():
  grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
  np.testing.assert_array_equal(images.to_grey(grey), grey)
  np.testing.assert_array_equal(images.to_grey(grey[..., None]), grey)
  data = _png(grey)
  assert common.grayscale_image_bytes(data, "png") == data  # Grey PNG kept byte for byte.
  rgb = np.stack([grey, np.zeros_like(grey), np.zeros_like(grey)], -1)
  np.testing.assert_array_equal(
    images.to_grey(rgb), np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
  )


def test_transparent_pixels_are_black():
  rgba = np.full((4, 4, 4), 255, np.uint8)
  rgba[:2, :, 3] = 0  # Top half transparent.
  grey = images.to_grey(_png(rgba, "RGBA"))
  assert (grey[:2] == 0).all() and (grey[2:] == 255).all()
  np.testing.assert_array_equal(images.to_grey(rgba), grey)


def test_bad_input_is_named():
  with pytest.raises(ValueError, match=r"got shape \(2, 3, 5\)"):
    images.to_grey(np.zeros((2, 3, 5), np.uint8))
  with pytest.raises(OSError):
    images.to_grey(b"not an image")
