r"""Leakage and shortcut audit: what would make test figures dishonest, checked before training.

    python -m jaxcxr.audit --data covid_chestxray/3class --data chest_xray_pneumonia/3class \
        --manual_dir chest_xray_pneumonia=PATH/TO/chest_xray --out audit/ --strict

Chest X-ray classifiers, the COVID-19 ones above all, have been reported with test figures that
do not survive contact with new hospitals. Roberts et al. ("Common pitfalls and recommendations
for using machine learning to detect and prognosticate for COVID-19 using chest radiographs and
CT scans", Nat. Mach. Intell. 3:199-217, 2021) found none of 62 published models fit for
clinical use, largely through duplicated images, patients shared between training and test sets
and "Frankenstein" datasets assembled from other datasets. DeGrave, Janizek and Lee ("AI for
radiographic COVID-19 detection selects shortcuts over signal", Nat. Mach. Intell. 3:610-619,
2021) showed that models trained on mixed sources learn the source (laterality markers, image
borders, patient position) rather than the disease; Maguolo and Nanni ("A critic evaluation of
methods for COVID-19 automatic detection from X-ray images", Information Fusion 76:1-7, 2021)
reached high accuracy on images whose lungs were blacked out, i.e. from dataset bias alone; and
Cohen et al. (COVID-19 image data collection, arXiv:2003.11597 and arXiv:2006.11988) warn that
their images come from many publications and sites, so source confounds finding. This module
reports, per dataset and split:

1. **Exact duplicates**: identical decoded pixels (sha256), including identical pixels under
   different file names or labels.
2. **Near duplicates**: perceptual hashes (`imagehash`; 256-bit pHash confirmed by a 256-bit
   wavelet hash) of each image and of its 8 dihedral transforms, so that resized, re-encoded,
   flipped and rotated copies match. Clusters are reported within a split, across splits (a
   LEAK), across datasets, with conflicting labels and under different patient ids.
3. **Patient overlap**: patient ids present in more than one split of a dataset.
4. **Shortcuts**: how strongly the class is tied to metadata (source dataset, `source` field,
   image width / height / aspect ratio, file format): Cramér's V, normalized mutual information
   and the cross-validated accuracy of a decision tree that sees the metadata alone, against
   always answering the majority class.

The near-duplicate thresholds were calibrated on real radiographs (Kermany pediatric, Cohen
COVID-19 and NIH ChestX-ray14 samples; `benchmarks/audit_real.py --calibrate`): see
`NEAR_THRESHOLD`. The core works on plain `Record`s (`audit(records)`), so it does not depend on
how data is loaded; the CLI reads prepared TFDS datasets (`records_from_tfds`).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import itertools
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import imagehash
import numpy as np
from PIL import Image

# Near-duplicate rule: pHash distance <= NEAR_THRESHOLD and wavelet-hash distance <=
# CONFIRM_THRESHOLD (bits of 256; each the minimum over the 8 dihedral transforms). Calibrated by
# `benchmarks/audit_real.py --calibrate` on 1,674 real radiographs (Kermany 739, Cohen X-ray 464,
# NIH 471; 1.39 M pairs of images of different patients): every copy that was resized (x0.5,
# x1.7), JPEG re-encoded (q50, q40 at half size), flipped, rotated or given +20% contrast stayed
# within 28 pHash bits (resize/JPEG/flip/rotation alone: <= 10) and 8 wavelet-hash bits; the
# closest pair of different patients that were not the same radiograph was 48 pHash bits apart;
# no such pair met the rule (false-match rate 0 of 1.39 M). Copies cropped by 2% per side match
# about half the time, 5% crops do not match: pHash is not crop-invariant.
NEAR_THRESHOLD = 32
CONFIRM_THRESHOLD = 24
# Default `--strict` limit on the shortcut score (accuracy gain of metadata over the majority
# class, as a fraction of the possible gain).
SHORTCUT_THRESHOLD = 0.5

HASH_SIZE = 16  # 16 x 16 = 256-bit hashes: 64-bit pHash puts different patients 2 bits apart.
_THUMB = 64  # pHash's own resize for hash_size 16 (x4); the 8 transforms are taken after it.
_DIHEDRAL = (
  None,
  Image.Transpose.FLIP_LEFT_RIGHT,
  Image.Transpose.FLIP_TOP_BOTTOM,
  Image.Transpose.ROTATE_90,
  Image.Transpose.ROTATE_180,
  Image.Transpose.ROTATE_270,
  Image.Transpose.TRANSPOSE,
  Image.Transpose.TRANSVERSE,
)
_FORMATS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".dcm": "dicom", ".dicom": "dicom"}
METADATA_FACTORS = ("dataset", "source", "width", "height", "aspect", "format")
_NUMERIC_FACTORS = ("width", "height", "aspect")


@dataclasses.dataclass
class Record:
  """One image with the fields the audit needs.

  Attributes:
    dataset: Dataset name (e.g. `chest_xray_pneumonia/3class`).
    split: Split name (`train`, `test`, ...).
    index: Position in the split (names the image when `filename` is empty).
    label: Class name (multi-label: names joined by `|`).
    patient_id: Patient id; empty when unknown.
    filename: File name as the dataset gives it; its suffix is the file format.
    source: Where the image came from (a builder's `source` field, or the dataset name).
    image: Decoded uint8 pixels ((H, W), (H, W, 1) or (H, W, 3)), encoded file bytes, or None
      when the image could not be decoded (then `error` says why).
    error: Why the image could not be read.
  """

  dataset: str
  split: str
  index: int
  label: str
  patient_id: str = ""
  filename: str = ""
  source: str = ""
  image: np.ndarray | bytes | None = None
  error: str = ""


@dataclasses.dataclass
class _Features:
  """What the audit keeps of a decodable image (pixels are dropped to keep memory low)."""

  sha256: str
  height: int
  width: int
  phash: np.ndarray  # (8, 4) uint64: the 8 dihedral transforms, identity first.
  whash: np.ndarray  # (8, 4) uint64.


def _hash_words(h: imagehash.ImageHash) -> np.ndarray:
  return np.packbits(h.hash.reshape(-1)).view(np.uint64)


def to_grey(image: np.ndarray | bytes) -> np.ndarray:
  """Decodes (if bytes) and converts to a uint8 (H, W) array.

  Raises:
    ValueError: the array has an unexpected shape.
    PIL.UnidentifiedImageError, OSError: the bytes are not a readable image.
  """
  if isinstance(image, bytes | bytearray):
    pil = Image.open(io.BytesIO(image))
    pil.load()
    if pil.mode in ("I", "I;16", "I;16B", "F"):
      image = np.asarray(pil, np.float64)
    else:
      return np.asarray(pil.convert("L"))
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  elif image.ndim == 3 and image.shape[-1] in (3, 4):
    image = np.asarray(Image.fromarray(image[..., :3].astype(np.uint8)).convert("L"))
  if image.ndim != 2 or min(image.shape) == 0:
    raise ValueError(f"expected an (H, W), (H, W, 1) or (H, W, 3) image, got shape {image.shape}")
  if image.dtype != np.uint8:
    # 16-bit or float pixels (DICOM, some PNGs): stretch to 8 bits like a default window.
    lo, hi = float(image.min()), float(image.max())
    image = np.round((image - lo) * (255.0 / max(hi - lo, 1e-12))).astype(np.uint8)
  return image


def image_features(image: np.ndarray | bytes) -> _Features:
  """sha256 of the pixels, size, and the pHash/wavelet hashes of the 8 dihedral transforms."""
  grey = np.ascontiguousarray(to_grey(image))
  digest = hashlib.sha256(f"{grey.shape}".encode() + grey.tobytes()).hexdigest()
  # One resize to pHash's working size, then the transforms of the thumbnail: the same hashes as
  # transforming first (resizing commutes with flips and quarter turns), 8x less resizing.
  thumb = Image.fromarray(grey).resize((_THUMB, _THUMB), Image.Resampling.LANCZOS)
  views = [thumb if t is None else thumb.transpose(t) for t in _DIHEDRAL]
  phash = np.stack([_hash_words(imagehash.phash(v, hash_size=HASH_SIZE)) for v in views])
  whash = np.stack(
    [_hash_words(imagehash.whash(v, hash_size=HASH_SIZE, image_scale=_THUMB)) for v in views]
  )
  return _Features(digest, grey.shape[0], grey.shape[1], phash, whash)


def hamming_min(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Min over transforms of the Hamming distance from `a`'s identity hash to `b`'s 8 hashes.

  Args:
    a: (..., 8, W) uint64 hashes.
    b: (..., 8, W) uint64 hashes, broadcastable with `a`.
  """
  return np.bitwise_count(a[..., :1, :] ^ b).sum(-1, dtype=np.int32).min(-1)


def near_pairs(
  hashes: np.ndarray, threshold: int, chunk: int = 256
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """All pairs i < j whose hash distance (identity of i vs 8 transforms of j) is <= threshold.

  Chunked over rows and vectorized over columns, one 64-bit word at a time: 20,000 images take
  about 20 s and (chunk x N) x 10 bytes of memory.

  Args:
    hashes: (N, 8, W) uint64.
    threshold: Largest distance in bits that is a match.
    chunk: Rows per block.

  Returns:
    `(i, j, distance)` int arrays.
  """
  n, _, words = hashes.shape
  ident = hashes[:, 0, :]
  # (8, W, N): one contiguous row of N words per transform and word.
  trans = np.ascontiguousarray(hashes.transpose(1, 2, 0))
  out_i, out_j, out_d = [], [], []
  for start in range(0, n, chunk):
    rows = ident[start : start + chunk]
    cols = trans[:, :, start:]  # Only j >= start; j > i is enforced below.
    shape = (len(rows), cols.shape[-1])
    best = np.full(shape, 64 * words + 1, np.uint16)
    xor, bits, dist = np.empty(shape, np.uint64), np.empty(shape, np.uint8), np.empty(shape, np.uint16)
    for t in range(len(_DIHEDRAL)):
      dist[:] = 0
      for w in range(words):
        np.bitwise_xor(rows[:, w, None], cols[t, w][None, :], out=xor)
        np.bitwise_count(xor, out=bits)
        dist += bits
      np.minimum(best, dist, out=best)
    i, j = np.nonzero(best <= threshold)
    keep = j > i  # Row i is image start + i and column j is image start + j.
    out_i.append(i[keep] + start)
    out_j.append(j[keep] + start)
    out_d.append(best[i[keep], j[keep]].astype(np.int32))
  cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64)
  return cat(out_i), cat(out_j), cat(out_d)
