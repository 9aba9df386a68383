"""Image hashing and duplicate pairing: what the leakage audit and duplicate-aware splits share.

Exact duplicates are images with identical decoded pixels (sha256 of the grey levels). Near
duplicates are found with perceptual hashes (`imagehash`): a 256-bit pHash (Zauner, "Implementation
and Benchmarking of Perceptual Image Hash Functions", 2010) of each image and of its 8 dihedral
transforms, confirmed by a 256-bit wavelet hash, so that resized, re-encoded, flipped and rotated
copies match. `duplicate_pairs` gives the confirmed pairs; `clusters` and `component_labels` turn
pairs into groups (scipy's connected components).

Used by `jaxcxr.audit` (duplicate reports) and by `jaxcxr.data.splitting` (re-splits that keep
copies of one radiograph filed under several patient ids on one side).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
from collections.abc import Sequence

import imagehash
import numpy as np
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from jaxcxr.data.images import to_grey

# Near-duplicate rule: pHash distance <= NEAR_THRESHOLD and wavelet-hash distance <=
# CONFIRM_THRESHOLD (bits of 256; each the minimum over the 8 dihedral transforms). Calibrated by
# `benchmarks/audit_real.py --calibrate` on 1,674 real radiographs (Kermany 739, Cohen X-rays 464,
# NIH 471; 1,399,428 pairs of images of different patients). Pairs of different patients: pHash
# distance >= 48 (quantiles 1e-5: 58, 1e-3: 78, median: 112), none meets the rule (0 false
# matches). Copies of 300 images resized (x0.5, x1.7), JPEG re-encoded (q50; q40 at half size),
# flipped or rotated: pHash <= 10, all found; contrast x1.2 + 10: pHash <= 28, all found; cropped
# 2% per side: 25% found, 5%: none (pHash is not crop-invariant). The calibration also found
# Cohen radiographs filed under two patient ids (pHash 0 to 22): real duplicates.
NEAR_THRESHOLD = 32
CONFIRM_THRESHOLD = 24

HASH_SIZE = 16  # 256-bit hashes: 64-bit pHashes of different patients came as close as 2 bits.
_THUMB = 64  # pHash's own resize for hash_size 16 (x4); the 8 transforms are taken after it.
DIHEDRAL = (
  None,
  Image.Transpose.FLIP_LEFT_RIGHT,
  Image.Transpose.FLIP_TOP_BOTTOM,
  Image.Transpose.ROTATE_90,
  Image.Transpose.ROTATE_180,
  Image.Transpose.ROTATE_270,
  Image.Transpose.TRANSPOSE,
  Image.Transpose.TRANSVERSE,
)


@dataclasses.dataclass
class ImageFeatures:
  """What is kept of a decodable image for duplicate search (its pixels are dropped)."""

  sha256: str
  height: int
  width: int
  phash: np.ndarray  # (8, 4) uint64: the 8 dihedral transforms, identity first.
  whash: np.ndarray  # (8, 4) uint64.
  # Fraction of pixels at grey level 0: large where an image was lung-masked (black outside the
  # lungs), so the audit can see masking that differs by class.
  black: float = 0.0


def _hash_words(h: imagehash.ImageHash) -> np.ndarray:
  return np.packbits(h.hash.reshape(-1)).view(np.uint64)


def image_features(image: np.ndarray | bytes) -> ImageFeatures:
  """sha256 of the pixels, size, and the pHash/wavelet hashes of the 8 dihedral transforms."""
  grey = np.ascontiguousarray(to_grey(image))
  digest = hashlib.sha256(f"{grey.shape}".encode() + grey.tobytes()).hexdigest()
  # One resize to pHash's working size, then the transforms of the thumbnail: (nearly) the same
  # hashes as transforming first, since resizing commutes with flips and quarter turns, and 8x
  # less resizing.
  thumb = Image.fromarray(grey).resize((_THUMB, _THUMB), Image.Resampling.LANCZOS)
  views = [thumb if t is None else thumb.transpose(t) for t in DIHEDRAL]
  phash = np.stack([_hash_words(imagehash.phash(v, hash_size=HASH_SIZE)) for v in views])
  whash = np.stack(
    [_hash_words(imagehash.whash(v, hash_size=HASH_SIZE, image_scale=_THUMB)) for v in views]
  )
  return ImageFeatures(
    digest, grey.shape[0], grey.shape[1], phash, whash, float((grey == 0).mean())
  )


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

  Chunked over rows and vectorized over columns, one 64-bit word at a time: 20,000 images took
  9 s on one CPU core here, in (chunk x N) x 13 bytes of memory.

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
    xor, bits, dist = (
      np.empty(shape, np.uint64),
      np.empty(shape, np.uint8),
      np.empty(shape, np.uint16),
    )
    for t in range(len(DIHEDRAL)):
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


def duplicate_pairs(
  feats: Sequence[ImageFeatures],
  near_threshold: int = NEAR_THRESHOLD,
  confirm_threshold: int = CONFIRM_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
  """Pairs of near-duplicate images: pHash candidates confirmed by both hashes, both directions.

  Returns:
    `(i, j, phash distance, number of pHash candidates)`, i < j indexing `feats`.
  """
  if len(feats) < 2:
    empty = np.zeros(0, np.int64)
    return empty, empty, empty, 0
  ph = np.stack([f.phash for f in feats])
  wh = np.stack([f.whash for f in feats])
  i, j, _ = near_pairs(ph, near_threshold)
  # Both directions (identity of i vs transforms of j, and of j vs i): a symmetric distance.
  dp = np.minimum(hamming_min(ph[i], ph[j]), hamming_min(ph[j], ph[i]))
  dw = np.minimum(hamming_min(wh[i], wh[j]), hamming_min(wh[j], wh[i]))
  keep = (dp <= near_threshold) & (dw <= confirm_threshold)
  return i[keep], j[keep], dp[keep], int(len(i))


def component_labels(n: int, i: np.ndarray, j: np.ndarray) -> tuple[int, np.ndarray]:
  """Connected components of the undirected graph on `n` nodes with edges `(i[k], j[k])`.

  Returns:
    `(number of components, component label of each node)`.
  """
  graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
  return connected_components(graph, directed=False)


def clusters(n: int, i: np.ndarray, j: np.ndarray) -> list[np.ndarray]:
  """The components of the pair graph with two or more members, largest first."""
  if n == 0 or len(i) == 0:
    return []
  _, labels = component_labels(n, i, j)
  groups = collections.defaultdict(list)
  for node in np.unique(np.concatenate([i, j])).tolist():
    groups[labels[node]].append(node)
  return sorted((np.array(g) for g in groups.values()), key=lambda g: (-len(g), g[0]))
