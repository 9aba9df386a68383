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
    arrays, DICOM without a VOI transform) are scaled linearly so that 0 stays black and the
    brightest pixel becomes 255 (`to_uint8`). Such files often use 10 to 12 of their 16 bits, so
    dividing by the type's range would leave them nearly black; stretching from the darkest pixel
    instead would change the contrast of each image by its own minimum. Negative values (signed
    or float pixels) are shifted so that the lowest one is black.
  * DICOM (pydicom, PS3.3 C.11 and C.7.6.3.1.2) follows the display pipeline the file asks for:
    the stored values go through the modality transform (Modality LUT, or Rescale Slope and
    Intercept), then the VOI transform (a VOI LUT, else Window Center/Width with the file's VOI
    LUT Function) whose output range (the LUT's values, or pydicom's window output range) is
    mapped linearly onto 0-255; without a VOI transform the deep-pixel rule above applies.
    MONOCHROME1 (minimum = white) is inverted last, so bone is bright as in MONOCHROME2. Compressed
    transfer syntaxes decode where an installed pydicom plugin can (pylibjpeg, Pillow); anything
    else is a `ValueError` naming the file and its transfer syntax. Multi-frame files are
    refused: a radiograph is one frame.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

_DEEP_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")


def is_dicom(data: bytes, name: str | None = None) -> bool:
  """Whether `data` is a DICOM file: the `DICM` marker after the 128-byte preamble (PS3.10), or
  a `.dcm`/`.dicom` name (files written without the preamble)."""
  if len(data) >= 132 and data[128:132] == b"DICM":
    return True
  return bool(name) and str(name).lower().endswith(DICOM_SUFFIXES)


def _window_range(ds) -> tuple[float, float]:
  """The output range of pydicom's `apply_windowing` (PS3.3 C.11.2.1.2): the stored-value range
  of `BitsStored` (or of the Modality LUT), through Rescale Slope/Intercept when present."""
  if ds.get("ModalityLUTSequence"):
    lo, hi = 0.0, 2.0 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
  elif int(ds.get("PixelRepresentation", 0)) == 0:
    lo, hi = 0.0, 2.0 ** int(ds.BitsStored) - 1
  else:
    lo, hi = -(2.0 ** (int(ds.BitsStored) - 1)), 2.0 ** (int(ds.BitsStored) - 1) - 1
  slope, intercept = ds.get("RescaleSlope", None), ds.get("RescaleIntercept", None)
  if slope is not None and intercept is not None:
    lo, hi = lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)
  return min(lo, hi), max(lo, hi)


def _scale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """`values` in [lo, hi] mapped linearly onto uint8 0-255."""
  if hi <= lo:
    return np.zeros(values.shape, np.uint8)
  return np.round(np.clip((values - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)


def dicom_to_grey(data: bytes, name: str | None = None) -> np.ndarray:
  """A DICOM file's bytes → uint8 (H, W) grey levels by the display pipeline of the module
  docstring (modality LUT/rescale, VOI LUT or window, MONOCHROME1 inverted).

  Raises:
    ValueError: not readable DICOM, no pixel data, a transfer syntax no installed plugin
      decodes, several frames, or a photometric interpretation that is not grey or colour; the
      message names the file.
  """
  import pydicom  # pylint: disable=g-import-not-at-top  # only DICOM readers pay the import
  from pydicom import pixels  # pylint: disable=g-import-not-at-top

  where = name or "DICOM bytes"
  try:
    ds = pydicom.dcmread(io.BytesIO(data), force=not is_dicom(data))
  except Exception as e:  # noqa: BLE001  # pydicom raises several types for a damaged file
    raise ValueError(f"{where}: not a readable DICOM file ({type(e).__name__}: {e}).") from e
  if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
    raise ValueError(f"{where}: the DICOM file has no pixel data.")
  meta = getattr(ds, "file_meta", None)
  syntax = meta.get("TransferSyntaxUID", None) if meta is not None else None
  syntax_name = f"{syntax.name} ({syntax})" if syntax is not None else "unknown transfer syntax"
  frames = int(ds.get("NumberOfFrames", 1) or 1)
  if frames > 1:
    raise ValueError(f"{where}: the DICOM file has {frames} frames; expected one radiograph.")
  try:
    arr = ds.pixel_array
  except Exception as e:  # noqa: BLE001  # missing plugin: RuntimeError/NotImplementedError
    raise ValueError(
      f"{where}: cannot decode its pixel data, transfer syntax {syntax_name} "
      f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Compressed syntaxes "
      "need a pydicom plugin such as pylibjpeg-libjpeg (JPEG), pylibjpeg-openjpeg (JPEG 2000) "
      "or pillow."
    ) from e
  photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
  if not photometric.startswith("MONOCHROME"):
    if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR"):
      # pydicom returns RGB for YBR by default; a palette is looked up to RGB.
      rgb = pixels.apply_color_lut(arr, ds) if photometric == "PALETTE COLOR" else arr
      return to_grey(np.asarray(rgb))
    raise ValueError(f"{where}: unsupported photometric interpretation {photometric!r}.")
  values = pixels.apply_modality_lut(arr, ds)
  voi_lut = ds.get("VOILUTSequence")
  if voi_lut or ("WindowCenter" in ds and "WindowWidth" in ds):
    windowed = pixels.apply_voi_lut(values, ds, prefer_lut=True)
    if voi_lut:  # The LUT's own output values bound its range (descriptors often overstate bits).
      n, first = (int(v) for v in voi_lut[0].LUTDescriptor[:2])
      lut = pixels.apply_voi(np.arange(first, first + (n or 65536)), ds)
      lo, hi = float(np.min(lut)), float(np.max(lut))
    else:
      lo, hi = _window_range(ds)
    grey = _scale(np.asarray(windowed, np.float64), lo, hi)
  else:
    grey = to_uint8(np.asarray(values))
  if photometric == "MONOCHROME1":
    grey = 255 - grey
  return np.ascontiguousarray(grey)


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


def to_grey(image: np.ndarray | bytes, name: str | None = None) -> np.ndarray:
  """Decodes (if bytes) and converts to a uint8 (H, W) array.

  Args:
    image: encoded file bytes (PNG, JPEG, DICOM, ... any PIL mode), or pixels (H, W), (H, W, 1),
      (H, W, 3) or (H, W, 4) of any numeric dtype.
    name: the file's name, for DICOM detection without a preamble and for error messages.

  Raises:
    ValueError: the array has an unexpected shape; unreadable DICOM.
    PIL.UnidentifiedImageError, OSError: the bytes are not a readable image.
  """
  if isinstance(image, bytes | bytearray):
    if is_dicom(bytes(image), name):
      return dicom_to_grey(bytes(image), name)
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


def read_grey(path: str | os.PathLike) -> np.ndarray:
  """A PNG, JPEG, DICOM ... file → uint8 (H, W) grey levels; errors name the file.

  Raises:
    ValueError: the file cannot be read or decoded (the message names it and why).
  """
  path = os.fspath(path)
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise ValueError(f"{path}: cannot read the file ({e.strerror or e}).") from e
  try:
    return to_grey(data, path)
  except ValueError:
    raise
  except Exception as e:  # noqa: BLE001  # PIL raises UnidentifiedImageError, OSError, ...
    raise ValueError(f"{path}: not a readable image ({type(e).__name__}: {e}).") from e


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
  if is_dicom(data):  # Through the DICOM display pipeline, then encoded like any grey image.
    data = _encode(Image.fromarray(dicom_to_grey(data)), "PNG")
  with open_image(data) as img:
    too_big = max_side is not None and max(img.size) > max_side
    if img.mode == "L" and img.format == fmt and not too_big:
      return data
    grey = grey_pil(img)
    if grey is img:
      grey = img.copy()  # `img` closes with the `with`; thumbnail works in place.
  if too_big:
    grey.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
  return _encode(grey, fmt)


def _encode(img: Image.Image, fmt: str) -> bytes:
  buf = io.BytesIO()
  if fmt == "JPEG":
    img.save(buf, format="JPEG", quality=95)
  else:
    img.save(buf, format="PNG")
  return buf.getvalue()
