"""Tests for jaxcxr.explain.overlay: colours, blending, shapes and the PNG written."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jaxcxr.explain.overlay import overlay, save_overlay


def test_gradcam_overlay_colours_and_blend():
  image = np.zeros((4, 6), np.float32)
  image[:, 3:] = 10.0  # Shown min-max scaled: black left, white right.
  heat = np.zeros((4, 6), np.float32)
  heat[0, 0] = 1.0
  out = overlay(image, heat, alpha=1.0)
  assert out.shape == (4, 6, 3) and out.dtype == np.uint8
  assert out[0, 0, 0] > 100 and out[0, 0, 2] < 50  # jet(1) is red
  assert out[1, 1, 2] > 100 and out[1, 1, 0] < 50  # jet(0) is blue
  none = overlay(image, heat, alpha=0.0)
  np.testing.assert_array_equal(none[:, :3], 0)
  np.testing.assert_array_equal(none[:, 3:], 255)


def test_signed_overlay_keeps_zero_white():
  heat = np.array([[-2.0, 0.0, 1.0]], np.float32)
  out = overlay(np.ones((1, 3, 3)), heat, signed=True, alpha=1.0).astype(int)
  assert out[0, 0, 2] > 200 and out[0, 0, 0] < 50  # most negative: blue
  assert (out[0, 1] > 240).all()  # zero: white
  assert out[0, 2, 0] > 200 and out[0, 2, 2] < 200  # positive, half the scale: light red


def test_shape_errors_and_png(tmp_path):
  with pytest.raises(ValueError, match="does not match"):
    overlay(np.zeros((4, 4)), np.zeros((2, 2)))
  with pytest.raises(ValueError, match=r"\(H, W\)"):
    overlay(np.zeros((4, 4, 2)), np.zeros((4, 4)))
  path = tmp_path / "x.png"
  save_overlay(path, np.random.default_rng(0).random((8, 8, 1)), np.random.rand(8, 8))
  with Image.open(path) as im:
    assert im.format == "PNG" and im.size == (8, 8) and im.mode == "RGB"
