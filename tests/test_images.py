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


def _content_box(out: np.ndarray, pad: int) -> tuple[slice, slice]:
  rows, cols = np.nonzero(out != pad)
  return slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)


@pytest.mark.parametrize("shape", [(20, 40), (40, 20), (30, 37)])
def test_letterbox_keeps_aspect_ratio_centres_and_pads_with_grey(shape):
  # A planted image whose every pixel differs from the pad grey: the content is exactly the
  # non-grey box, which must have the image's aspect ratio, be centred, and equal a PIL resize.
  h, w = shape
  pixels = (np.arange(h * w).reshape(h, w) % 100 + 10).astype(np.uint8)  # 10..109, never 128
  out = pipeline.Preprocess(32, resize="letterbox", pad_value=128).map(
    {"image": pixels, "label": 0}
  )["image"][..., 0]
  assert out.shape == (32, 32)
  rows, cols = _content_box(out, 128)
  ch, cw = rows.stop - rows.start, cols.stop - cols.start
  assert max(ch, cw) == 32  # The longer side fills the square.
  assert abs(cw / ch - w / h) <= 1 / min(ch, cw)  # Aspect ratio up to rounding of one side.
  # Centred: the margins on either side differ by at most the odd pixel.
  assert abs(rows.start - (32 - rows.stop)) <= 1 and abs(cols.start - (32 - cols.stop)) <= 1
  expected = Image.fromarray(pixels).resize((cw, ch), Image.BILINEAR, reducing_gap=None)
  np.testing.assert_array_equal(out[rows, cols], np.asarray(expected))
  pad = np.ones_like(out, bool)
  pad[rows, cols] = False
  assert (out[pad] == 128).all() and pad.sum() == 32 * 32 - ch * cw


def test_letterbox_masks_pad_with_background_and_stretch_is_the_default():
  image = np.full((16, 32), 200, np.uint8)
  mask = np.full((16, 32), 255, np.uint8)
  pre = pipeline.Preprocess(32, with_mask=True, resize="letterbox", pad_value=100)
  out = pre.map({"image": image, "mask": mask, "label": 0})
  assert (out["image"][8:24] == 200).all() and (out["image"][:8] == 100).all()
  np.testing.assert_array_equal(out["mask"][..., 0], out["image"][..., 0] == 200)
  stretched = pipeline.Preprocess(32).map({"image": image, "label": 0})["image"]
  assert (stretched == 200).all()  # 'stretch': no padding, the old behaviour.
  with pytest.raises(ValueError, match=r"config.input.resize='crop'.*letterbox"):
    pipeline.Preprocess(32, resize="crop")


def test_letterbox_reaches_every_path_through_the_config():
  # Evaluation batches and Preprocess.of read config.input.resize / pad_value, the one home.
  from jaxcxr import config_lib  # pylint: disable=g-import-not-at-top

  c = config_lib.base_config()
  c.input.image_size, c.input.resize, c.input.pad_value = 16, "letterbox", 50
  records = [{"image": np.full((8, 16), 255, np.uint8), "label": 0}]
  batch = next(
    pipeline.eval_batches(
      records, local_batch_size=1, image_size=16, num_threads=1,
      **pipeline.resize_args(c.input),
    )
  )  # fmt: skip
  np.testing.assert_array_equal(
    batch["image"][0], pipeline.Preprocess.of(c.input).map(records[0])["image"]
  )
  assert (batch["image"][0, :4] == 50).all() and (batch["image"][0, 4:12] == 255).all()
