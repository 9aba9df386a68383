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
Cohen et al.'s COVID-19 image data collection (arXiv:2003.11597, arXiv:2006.11988) gathers its
images from many publications and sites, so that source goes with finding, and it is usually
mixed with other datasets for the other classes. This module reports, per dataset and split:

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
   always answering the majority class, with how well it picks out each class (one class from
   one source is the typical COVID-19 shortcut).

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
# `benchmarks/audit_real.py --calibrate` on 1,674 real radiographs (Kermany 739, Cohen X-rays 464,
# NIH 471; 1,399,428 pairs of images of different patients). Pairs of different patients: pHash
# distance >= 48 (quantiles 1e-5: 58, 1e-3: 78, median: 112), none meets the rule (0 false
# matches). Copies of 300 images resized (x0.5, x1.7), JPEG re-encoded (q50; q40 at half size),
# flipped or rotated: pHash <= 10, all found; contrast x1.2 + 10: pHash <= 28, all found; cropped
# 2% per side: 25% found, 5%: none (pHash is not crop-invariant). The calibration also found
# Cohen radiographs filed under two patient ids (pHash 0 to 22): real duplicates.
NEAR_THRESHOLD = 32
CONFIRM_THRESHOLD = 24
# Default `--strict` limit on the shortcut score: the larger of the accuracy gain of metadata
# over the majority class (as a fraction of the possible gain) and the best one-vs-rest Matthews
# correlation of a class predicted from metadata (one class from one source).
SHORTCUT_THRESHOLD = 0.5

HASH_SIZE = 16  # 256-bit hashes: 64-bit pHashes of different patients came as close as 2 bits.
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
  # One resize to pHash's working size, then the transforms of the thumbnail: (nearly) the same
  # hashes as transforming first, since resizing commutes with flips and quarter turns, and 8x
  # less resizing.
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


# --- Collecting features ----------------------------------------------------------------------


def _format_of(filename: str) -> str:
  suffix = os.path.splitext(filename)[1].lower()
  return _FORMATS.get(suffix, suffix.lstrip(".") or "unknown")


def _name(r: Record) -> str:
  return r.filename or f"#{r.index}"


def _member(r: Record) -> dict[str, Any]:
  return {
    "dataset": r.dataset,
    "split": r.split,
    "filename": _name(r),
    "label": r.label,
    "patient_id": r.patient_id,
  }


def _collect(
  records: Iterable[Record], log_every: int
) -> tuple[list[Record], list[Record], list[_Features]]:
  """Hashes every record's image; returns (all records without pixels, decoded ones, features)."""
  everything, decoded, feats = [], [], []
  t0 = time.time()
  for n, r in enumerate(records, 1):
    if r.image is not None and not r.error:
      try:
        f = image_features(r.image)
      except Exception as e:  # pylint: disable=broad-except  # PIL raises many types on bad data.
        r = dataclasses.replace(r, error=f"{type(e).__name__}: {e}")
      else:
        decoded.append(dataclasses.replace(r, image=None))
        feats.append(f)
    elif not r.error:
      r = dataclasses.replace(r, error="no image")
    everything.append(dataclasses.replace(r, image=None))
    if log_every and n % log_every == 0:
      print(f"[audit] hashed {n} images ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
  return everything, decoded, feats


# --- Duplicates -------------------------------------------------------------------------------


def _components(n: int, i: np.ndarray, j: np.ndarray) -> list[np.ndarray]:
  """Connected components of the pair graph with two or more members, largest first."""
  from scipy.sparse import coo_matrix  # pylint: disable=g-import-not-at-top
  from scipy.sparse.csgraph import connected_components  # pylint: disable=g-import-not-at-top

  if n == 0 or len(i) == 0:
    return []
  graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
  _, labels = connected_components(graph, directed=False)
  groups = collections.defaultdict(list)
  for node in np.unique(np.concatenate([i, j])).tolist():
    groups[labels[node]].append(node)
  return sorted((np.array(g) for g in groups.values()), key=lambda g: (-len(g), g[0]))


def _describe_clusters(
  clusters: list[np.ndarray],
  recs: list[Record],
  max_examples: int,
  max_distance: dict[int, int] | None = None,
) -> dict[str, Any]:
  """Counts and examples of duplicate clusters, by kind and by dataset/split pair.

  Kinds: `within_split` (one dataset and split), `cross_split` (members in different splits: a
  LEAK between training and evaluation data), `cross_dataset`, `label_conflict` (members with
  different labels), `patient_conflict` (one dataset, different patient ids: a patient-grouped
  split cannot keep these together).
  """
  kinds = ("cross_split", "cross_dataset", "label_conflict", "patient_conflict", "within_split")
  counts = {k: 0 for k in kinds}
  images = {k: 0 for k in kinds}
  examples: dict[str, list] = {k: [] for k in kinds}
  pairs: collections.Counter = collections.Counter()
  for c, members in enumerate(clusters):
    rs = [recs[m] for m in members]
    by_dataset = collections.defaultdict(set)
    for r in rs:
      if r.patient_id:
        by_dataset[r.dataset].add(r.patient_id)
    flags_ = {
      "cross_split": len({r.split for r in rs}) > 1,
      "cross_dataset": len({r.dataset for r in rs}) > 1,
      "label_conflict": len({r.label for r in rs}) > 1,
      "patient_conflict": any(len(ids) > 1 for ids in by_dataset.values()),
      "within_split": len({(r.dataset, r.split) for r in rs}) == 1,
    }
    keys = [f"{r.dataset}:{r.split}" for r in rs]
    pairs.update({tuple(sorted(p)) for p in itertools.combinations(keys, 2)})
    example = {
      "size": len(rs),
      "kinds": [k for k in kinds if flags_[k]],
      "members": [_member(r) for r in rs[:10]],
    }
    if max_distance is not None:
      example["max_edge_distance"] = int(max_distance.get(c, 0))
    for k in kinds:
      if flags_[k]:
        counts[k] += 1
        images[k] += len(rs)
        if len(examples[k]) < max_examples:
          examples[k].append(example)
  return {
    "clusters": len(clusters),
    "images": int(sum(len(c) for c in clusters)),
    "counts": counts,
    "images_by_kind": images,
    "split_pairs": [
      {"a": a, "b": b, "clusters": n} for (a, b), n in sorted(pairs.items(), key=lambda x: -x[1])
    ],
    "examples": examples,
  }


def _exact_duplicates(recs: list[Record], feats: list[_Features], max_examples: int) -> dict:
  by_digest = collections.defaultdict(list)
  for k, f in enumerate(feats):
    by_digest[f.sha256].append(k)
  clusters = sorted(
    (np.array(v) for v in by_digest.values() if len(v) > 1), key=lambda g: (-len(g), g[0])
  )
  out = _describe_clusters(clusters, recs, max_examples)
  out["different_filenames"] = sum(len({recs[m].filename for m in c}) > 1 for c in clusters)
  return out


def duplicate_pairs(
  feats: Sequence[_Features],
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


def _near_duplicates(
  recs: list[Record],
  feats: list[_Features],
  near_threshold: int,
  confirm_threshold: int,
  max_examples: int,
) -> dict:
  """pHash candidates over all pairs, confirmed by both hashes in both directions."""
  n = len(feats)
  if n < 2:
    return _describe_clusters([], recs, max_examples, {}) | {"candidate_pairs": 0, "pairs": 0}
  ki, kj, kd, num_candidates = duplicate_pairs(feats, near_threshold, confirm_threshold)
  clusters = _components(n, ki, kj)
  where = np.full(n, -1)
  for c, members in enumerate(clusters):
    where[members] = c
  max_distance: dict[int, int] = {}
  for a, d in zip(ki, kd, strict=True):
    c = int(where[a])
    max_distance[c] = max(max_distance.get(c, 0), int(d))
  out = _describe_clusters(clusters, recs, max_examples, max_distance)
  out["candidate_pairs"] = num_candidates
  out["pairs"] = int(len(ki))
  out["pair_distance_histogram"] = {
    str(int(d)): int(c) for d, c in zip(*np.unique(kd, return_counts=True), strict=True)
  }
  return out


# --- Patients ---------------------------------------------------------------------------------


def _patient_overlap(recs: list[Record], max_examples: int) -> dict[str, Any]:
  """Per dataset: patient ids found in more than one split."""
  out = {}
  for dataset in sorted({r.dataset for r in recs}):
    splits_of = collections.defaultdict(collections.Counter)
    missing = 0
    for r in recs:
      if r.dataset != dataset:
        continue
      if r.patient_id:
        splits_of[r.patient_id][r.split] += 1
      else:
        missing += 1
    shared = {p: c for p, c in splits_of.items() if len(c) > 1}
    pairs = collections.Counter()
    for c in shared.values():
      pairs.update(itertools.combinations(sorted(c), 2))
    out[dataset] = {
      "patients": len(splits_of),
      "images_without_patient_id": missing,
      "overlapping_patients": len(shared),
      "split_pairs": [{"a": a, "b": b, "patients": n} for (a, b), n in sorted(pairs.items())],
      "examples": [
        {"patient_id": p, "splits": dict(sorted(c.items()))}
        for p, c in sorted(shared.items())[:max_examples]
      ],
    }
  return out


# --- Shortcuts --------------------------------------------------------------------------------


def _factor_values(recs: list[Record], feats: list[_Features]) -> dict[str, np.ndarray]:
  return {
    "dataset": np.array([r.dataset for r in recs]),
    "source": np.array([r.source or r.dataset for r in recs]),
    "width": np.array([f.width for f in feats], np.float64),
    "height": np.array([f.height for f in feats], np.float64),
    "aspect": np.array([round(f.width / f.height, 2) for f in feats], np.float64),
    "format": np.array([_format_of(r.filename) for r in recs]),
  }


def _bin(values: np.ndarray, max_levels: int) -> np.ndarray:
  """Numeric values as at most `max_levels` category strings.

  Few distinct values stay themselves; otherwise values shared by many images (one dataset's
  fixed width, say) stay levels of their own and the rest fall in quantile bins `[lo, hi)`.
  """
  fmt = lambda v: f"{v:g}"
  if len(np.unique(values)) <= max_levels:
    return np.array([fmt(v) for v in values])
  counts = collections.Counter(values.tolist())
  common = [v for v, c in counts.most_common(max_levels - 2) if c >= len(values) / max_levels]
  names = np.array([fmt(v) for v in values], dtype=object)
  rest = ~np.isin(values, common)
  edges = np.unique(np.quantile(values[rest], np.linspace(0, 1, max_levels - len(common) + 1)))
  if len(edges) > 1:
    idx = np.clip(np.searchsorted(edges, values[rest], side="right") - 1, 0, len(edges) - 2)
    last = len(edges) - 2
    bins = [f"[{fmt(lo)}, {fmt(hi)}{']' if k == last else ')'}" for k, (lo, hi) in
            enumerate(itertools.pairwise(edges))]  # fmt: skip
    names[rest] = [bins[k] for k in idx]
  return names.astype(str)


def _cv_accuracy(
  x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, seed: int
) -> dict[str, Any]:
  """Patient-grouped, stratified cross-validated predictions of a decision tree from `x`.

  Folds are grouped by patient (StratifiedGroupKFold) because a patient's images share size and
  source: image-level folds would let the tree recognise patients rather than classes.

  Returns:
    `accuracy` (pooled over folds) and its spread over folds, `balanced_accuracy`,
    `majority_accuracy` (always answering the training folds' most common class), `score` (the
    share of the possible gain over the majority that the tree achieves: 0 = none, 1 = perfect),
    `per_class` one-vs-rest precision, recall and Matthews correlation (0 = chance, 1 = the
    class is picked out perfectly), and `shortcut_score`: the larger of `score` and the best
    per-class correlation, so that one class tied to one source counts even when the others
    are not.
  """
  from sklearn.metrics import (  # pylint: disable=g-import-not-at-top
    balanced_accuracy_score,
    matthews_corrcoef,
  )
  from sklearn.model_selection import StratifiedGroupKFold  # pylint: disable=g-import-not-at-top
  from sklearn.tree import DecisionTreeClassifier  # pylint: disable=g-import-not-at-top

  # StratifiedGroupKFold needs a class with at least n_splits members.
  n_splits = min(folds, len(np.unique(groups)), max(collections.Counter(y).values()))
  cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
  pred, base = np.empty_like(y), np.empty_like(y)
  fold_accuracy = []
  with warnings.catch_warnings():
    # Classes smaller than the number of folds only make sklearn warn; the estimate still holds.
    warnings.simplefilter("ignore")
    for train, test in cv.split(x, y, groups):
      tree = DecisionTreeClassifier(max_depth=10, min_samples_leaf=3, random_state=seed)
      pred[test] = tree.fit(x[train], y[train]).predict(x[test])
      base[test] = collections.Counter(y[train]).most_common(1)[0][0]
      fold_accuracy.append(float(np.mean(pred[test] == y[test])))
    balanced = float(balanced_accuracy_score(y, pred))
  acc, majority = float(np.mean(pred == y)), float(np.mean(base == y))
  per_class = {}
  for c in np.unique(y).tolist():
    truth, said = y == c, pred == c
    per_class[c] = {
      "precision": float(np.sum(truth & said) / max(np.sum(said), 1)),
      "recall": float(np.sum(truth & said) / np.sum(truth)),
      "mcc": float(matthews_corrcoef(truth, said)),
    }
  score = (acc - majority) / (1 - majority) if majority < 1 else 0.0
  return {
    "accuracy": acc,
    "accuracy_std": float(np.std(fold_accuracy)),
    "balanced_accuracy": balanced,
    "majority_accuracy": majority,
    "score": score,
    "per_class": per_class,
    "shortcut_score": max(score, *(v["mcc"] for v in per_class.values())),
    "folds": n_splits,
  }


def _shortcuts(
  recs: list[Record],
  feats: list[_Features],
  *,
  folds: int,
  seed: int,
  max_levels: int,
  shortcut_threshold: float | None,
) -> dict[str, Any]:
  """Cramér's V, NMI and tree accuracy from each metadata factor and from all of them."""
  from scipy.stats.contingency import association  # pylint: disable=g-import-not-at-top
  from sklearn.metrics import normalized_mutual_info_score  # pylint: disable=g-import-not-at-top

  y = np.array([r.label for r in recs])
  classes, class_counts = np.unique(y, return_counts=True)
  if len(classes) < 2:
    return {"skipped": f"needs two or more classes; found {classes.tolist()}"}
  groups = np.array([f"{r.dataset}/{r.patient_id or _name(r)}" for r in recs])
  if min(len(np.unique(groups)), class_counts.max()) < 2:
    return {"skipped": "needs two or more patients and a class with two or more images"}
  values = _factor_values(recs, feats)
  columns, factors = [], {}
  for name in METADATA_FACTORS:
    v = values[name]
    # Trees split numbers directly; categories get their index (a tree can isolate any level).
    col = v if name in _NUMERIC_FACTORS else np.unique(v, return_inverse=True)[1].astype(float)
    columns.append(col)
    binned = _bin(v, max_levels) if name in _NUMERIC_FACTORS else v
    levels, level_counts = np.unique(binned, return_counts=True)
    table = np.array([[np.sum((binned == lv) & (y == c)) for c in classes] for lv in levels])
    cramers_v = float(association(table, method="cramer")) if len(levels) > 1 else 0.0
    # The largest levels in full; the rest summed, so a factor with 300 sources stays readable.
    top = np.argsort(-level_counts, kind="stable")[:max_levels]
    rows = {
      str(levels[k]): dict(zip(classes.tolist(), table[k].tolist(), strict=True)) for k in top
    }
    if len(levels) > len(top):
      rest = np.delete(table, top, axis=0).sum(0)
      rows[f"({len(levels) - len(top)} more levels)"] = dict(
        zip(classes.tolist(), rest.tolist(), strict=True)
      )
    factors[name] = {
      "levels": len(levels),
      "cramers_v": cramers_v,
      "nmi": float(normalized_mutual_info_score(y, binned)),
      "table": rows,
      "tree": _cv_accuracy(col[:, None], y, groups, folds, seed),
    }
  combined = _cv_accuracy(np.stack(columns, 1), y, groups, folds, seed)
  # A deeper tree on every factor can do worse than one on the telling factor: report the best.
  candidates = {"all factors": combined} | {f"{k} alone": f["tree"] for k, f in factors.items()}
  best_name = max(candidates, key=lambda k: candidates[k]["shortcut_score"])
  best = candidates[best_name]
  majority = str(classes[np.argmax(class_counts)])
  said = (
    f"{best_name}: {best['accuracy']:.1%} accuracy ({best['balanced_accuracy']:.1%} balanced) vs "
    f"{best['majority_accuracy']:.1%} for always answering '{majority}'"
  )
  high = SHORTCUT_THRESHOLD if shortcut_threshold is None else shortcut_threshold
  picked = [
    f"'{c}' (precision {v['precision']:.2f}, recall {v['recall']:.2f})"
    for c, v in best["per_class"].items()
    if v["mcc"] > high
  ]
  if picked:
    said += "; it picks out class " + ", ".join(picked)
  if best["shortcut_score"] > high:
    verdict = (
      f"Metadata alone predicts the class well ({said}). A model can score well on these data "
      "from how the images were made and collected, without reading the lungs."
    )
  elif best["shortcut_score"] > 0.2:
    verdict = f"Metadata carries some class information ({said})."
  else:
    verdict = f"Metadata alone predicts the class little better than the majority ({said})."
  return {
    "classes": dict(zip(classes.tolist(), class_counts.tolist(), strict=True)),
    "factors": factors,
    "combined": combined,
    "strongest_factor": max(factors, key=lambda k: factors[k]["cramers_v"]),
    "best_predictor": best_name,
    "shortcut_score": best["shortcut_score"],
    "verdict": verdict,
  }


# --- The audit --------------------------------------------------------------------------------


def audit(
  records: Iterable[Record],
  *,
  near_threshold: int = NEAR_THRESHOLD,
  confirm_threshold: int = CONFIRM_THRESHOLD,
  shortcut_threshold: float | None = SHORTCUT_THRESHOLD,
  max_examples: int = 10,
  folds: int = 5,
  max_levels: int = 8,
  seed: int = 0,
  log_every: int = 0,
) -> dict[str, Any]:
  """Runs every check; returns the JSON-able report.

  Args:
    records: The images; their pixels are hashed one at a time and dropped.
    near_threshold: Largest pHash distance (bits of 256) of near duplicates.
    confirm_threshold: Largest wavelet-hash distance (bits of 256) confirming a pHash match.
    shortcut_threshold: Shortcut score (0 = metadata no better than the majority class or
      chance, 1 = metadata gives the class, or picks out one class, perfectly) above which the
      shortcut is a problem that fails `--strict`; None: never.
    max_examples: Examples kept per finding.
    folds: Cross-validation folds for the shortcut accuracy.
    max_levels: Bins for numeric factors and rows per contingency table.
    seed: For the cross-validation folds and trees.
    log_every: Print progress to stderr every this many images (0: never).

  Returns:
    A dict with `summary`, `exact_duplicates`, `near_duplicates`, `patient_overlap`,
    `shortcuts`, `problems` (each `{"check", "message", "strict"}`), `settings` and `seconds`.
  """
  t0 = time.time()
  everything, recs, feats = _collect(records, log_every)
  t_hash = time.time()
  exact = _exact_duplicates(recs, feats, max_examples)
  near = _near_duplicates(recs, feats, near_threshold, confirm_threshold, max_examples)
  t_near = time.time()
  patients = _patient_overlap(everything, max_examples)
  shortcuts = _shortcuts(
    recs,
    feats,
    folds=folds,
    seed=seed,
    max_levels=max_levels,
    shortcut_threshold=shortcut_threshold,
  )
  t_end = time.time()

  summary = collections.defaultdict(dict)
  for (dataset, split), rs in itertools.groupby(
    sorted(everything, key=lambda r: (r.dataset, r.split)), key=lambda r: (r.dataset, r.split)
  ):
    rs = list(rs)
    good = [r for r in rs if not r.error]
    summary[dataset][split] = {
      "images": len(rs),
      "undecodable": len(rs) - len(good),
      "patients": len({r.patient_id for r in rs if r.patient_id}),
      "classes": dict(sorted(collections.Counter(r.label for r in good).items())),
    }
  bad = [r for r in everything if r.error]

  problems = []
  add = lambda check, message, strict: problems.append(
    {"check": check, "message": message, "strict": strict}
  )
  if bad:
    add("decoding", f"{len(bad)} of {len(everything)} images could not be decoded.", False)
  for name, d in (("exact duplicates", exact), ("near duplicates", near)):
    c, im = d["counts"], d["images_by_kind"]
    if c["cross_split"]:
      add(
        name, f"LEAK: {c['cross_split']} clusters ({im['cross_split']} images) span splits.", True
      )
    if c["cross_dataset"]:
      add(name, f"{c['cross_dataset']} clusters span datasets.", False)
    if c["label_conflict"]:
      add(name, f"{c['label_conflict']} clusters have members with different labels.", False)
    if c["patient_conflict"]:
      add(name, f"{c['patient_conflict']} clusters carry different patient ids.", False)
    if c["within_split"]:
      add(name, f"{c['within_split']} clusters lie within one split.", False)
  for dataset, p in patients.items():
    if p["overlapping_patients"]:
      add(
        "patient overlap",
        f"LEAK: {p['overlapping_patients']} patients of {dataset} are in more than one split.",
        True,
      )
    if p["images_without_patient_id"]:
      add(
        "patient overlap",
        f"{p['images_without_patient_id']} images of {dataset} have no patient id (unchecked).",
        False,
      )
  for name, f in shortcuts.get("factors", {}).items():
    if f["cramers_v"] >= 0.5:
      add(
        "shortcuts",
        f"Class is strongly tied to {name}: Cramér's V {f['cramers_v']:.2f}, NMI {f['nmi']:.2f}.",
        False,
      )
  if "shortcut_score" in shortcuts:
    score = shortcuts["shortcut_score"]
    strict = shortcut_threshold is not None and score > shortcut_threshold
    if strict or score > 0.2:
      add("shortcuts", f"Shortcut score {score:.2f}. {shortcuts['verdict']}", strict)

  return {
    "summary": {
      "images": len(everything),
      "decoded": len(recs),
      "undecodable": len(bad),
      "undecodable_examples": [
        _member(r) | {"index": r.index, "error": r.error} for r in bad[:max_examples]
      ],
      "datasets": dict(summary),
    },
    "exact_duplicates": exact,
    "near_duplicates": near,
    "patient_overlap": patients,
    "shortcuts": shortcuts,
    "problems": problems,
    "strict_failures": [f"{p['check']}: {p['message']}" for p in problems if p["strict"]],
    "settings": {
      "hash": f"pHash {HASH_SIZE}x{HASH_SIZE} confirmed by wavelet hash {HASH_SIZE}x{HASH_SIZE}, "
      "min over 8 dihedral transforms",
      "near_threshold": near_threshold,
      "confirm_threshold": confirm_threshold,
      "shortcut_threshold": shortcut_threshold,
      "folds": folds,
      "seed": seed,
    },
    "seconds": {
      "hashing": round(t_hash - t0, 2),
      "duplicates": round(t_near - t_hash, 2),
      "shortcuts": round(t_end - t_near, 2),
      "total": round(t_end - t0, 2),
    },
  }


# --- The readable report ----------------------------------------------------------------------


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return lines


def _member_text(m: dict[str, Any]) -> str:
  patient = f", patient {m['patient_id']}" if m["patient_id"] else ""
  return f"`{m['dataset']}:{m['split']}:{m['filename']}` ({m['label']}{patient})"


def _duplicates_text(d: dict[str, Any]) -> list[str]:
  c = d["counts"]
  lines = [
    f"{d['clusters']} clusters ({d['images']} images): {c['cross_split']} across splits"
    f"{' (**LEAK**)' if c['cross_split'] else ''}, {c['cross_dataset']} across datasets, "
    f"{c['label_conflict']} with conflicting labels, {c['patient_conflict']} under different "
    f"patient ids of one dataset, {c['within_split']} within one split.",
    "",
  ]
  if d["split_pairs"]:
    lines += _table(
      ("dataset:split", "dataset:split", "clusters"),
      ((p["a"], p["b"], p["clusters"]) for p in d["split_pairs"]),
    )
    lines.append("")
  shown = set()  # A cluster of several kinds is listed once, under its first kind.
  key = lambda e: tuple((m["dataset"], m["split"], m["filename"]) for m in e["members"])
  for kind, examples in d["examples"].items():
    new = [e for e in examples if key(e) not in shown]
    if not new:
      continue
    lines.append(f"Examples, {kind.replace('_', ' ')}:")
    for e in new:
      shown.add(key(e))
      dist = f", max distance {e['max_edge_distance']}" if "max_edge_distance" in e else ""
      more = f" + {e['size'] - len(e['members'])} more" if e["size"] > len(e["members"]) else ""
      members = " = ".join(_member_text(m) for m in e["members"])
      lines.append(f"- [{', '.join(e['kinds'])}{dist}] {members}{more}")
    lines.append("")
  return lines


def format_report(report: dict[str, Any]) -> str:
  """The report as Markdown."""
  s, settings = report["summary"], report["settings"]
  lines = [
    "# Leakage and shortcut audit",
    "",
    f"{s['images']} images ({s['decoded']} decoded, {s['undecodable']} undecodable) from "
    f"{len(s['datasets'])} dataset(s); {report['seconds']['total']:.1f} s.",
    "",
    "## Verdict",
    "",
  ]
  problems = sorted(report["problems"], key=lambda p: not p["strict"])
  for p in problems:
    mark = "**FAILS --strict**" if p["strict"] else "note"
    lines.append(f"- {mark} ({p['check']}): {p['message']}")
  if not report["strict_failures"]:
    lines.append("- No duplicate across splits, no patient in two splits, no strong shortcut.")
  lines += ["", "## Data", ""]
  lines += _table(
    ("dataset", "split", "images", "undecodable", "patients", "classes"),
    (
      (ds, split, v["images"], v["undecodable"], v["patients"],
       ", ".join(f"{k}: {n}" for k, n in v["classes"].items()))
      for ds, splits in s["datasets"].items() for split, v in splits.items()
    ),
  )  # fmt: skip
  if s["undecodable_examples"]:
    lines += ["", "Undecodable images:"]
    lines += [f"- {_member_text(m)}: {m['error']}" for m in s["undecodable_examples"]]

  lines += ["", "## 1. Exact duplicates (identical decoded pixels)", ""]
  lines += _duplicates_text(report["exact_duplicates"])
  near = report["near_duplicates"]
  lines += [
    "## 2. Near duplicates",
    "",
    f"{settings['hash']}: pHash distance <= {settings['near_threshold']} and wavelet distance <= "
    f"{settings['confirm_threshold']} bits of 256 (resized, re-encoded, flipped and rotated copies "
    f"match; crops of more than ~2% per side do not). {near.get('pairs', 0)} matching pairs "
    f"({near.get('candidate_pairs', 0)} pHash candidates). Includes the exact duplicates.",
    "",
  ]
  lines += _duplicates_text(near)

  lines += ["## 3. Patient overlap across splits", ""]
  lines += _table(
    ("dataset", "patients", "in 2+ splits", "images without id", "split pairs"),
    (
      (ds, p["patients"], p["overlapping_patients"], p["images_without_patient_id"],
       ", ".join(f"{q['a']}/{q['b']}: {q['patients']}" for q in p["split_pairs"]) or "-")
      for ds, p in report["patient_overlap"].items()
    ),
  )  # fmt: skip
  for ds, p in report["patient_overlap"].items():
    if p["examples"]:
      lines += ["", f"Examples, {ds}:"]
      lines += [
        f"- patient `{e['patient_id']}`: "
        + ", ".join(f"{k} {n} image(s)" for k, n in e["splits"].items())
        for e in p["examples"]
      ]

  sc = report["shortcuts"]
  lines += ["", "## 4. Shortcuts: class from metadata alone", ""]
  if "skipped" in sc:
    lines.append(f"Not computed: {sc['skipped']}.")
  else:
    comb = sc["combined"]
    lines += [
      sc["verdict"],
      "",
      f"All factors together ({comb['folds']}-fold patient-grouped CV of a decision tree): "
      f"accuracy {comb['accuracy']:.3f} (± {comb['accuracy_std']:.3f} over folds), balanced "
      f"{comb['balanced_accuracy']:.3f}, majority baseline {comb['majority_accuracy']:.3f}; gain "
      f"over the majority {comb['score']:.2f} (0 = none, 1 = perfect); shortcut score "
      f"{comb['shortcut_score']:.2f} (the larger of that gain and the best one-vs-rest Matthews "
      f"correlation of a class). Highest shortcut score: {sc['shortcut_score']:.2f}, "
      f"{sc['best_predictor']}.",
      "",
    ]
    lines += _table(
      ("class", "images", "precision", "recall", "MCC"),
      (
        (c, sc["classes"][c], f"{v['precision']:.2f}", f"{v['recall']:.2f}", f"{v['mcc']:.2f}")
        for c, v in comb["per_class"].items()
      ),
    )
    lines.append("")
    lines += _table(
      ("factor", "levels", "Cramér's V", "NMI", "tree accuracy", "gain", "shortcut score"),
      (
        (k, f["levels"], f"{f['cramers_v']:.3f}", f"{f['nmi']:.3f}", f"{f['tree']['accuracy']:.3f}",
         f"{f['tree']['score']:.2f}", f"{f['tree']['shortcut_score']:.2f}")
        for k, f in sc["factors"].items()
      ),
    )  # fmt: skip
    classes = list(sc["classes"])
    for k, f in sc["factors"].items():
      if f["levels"] < 2:
        continue
      lines += ["", f"{k} (largest levels):", ""]
      lines += _table((k, *classes), ((lv, *row.values()) for lv, row in f["table"].items()))
  lines += ["", "## Settings", ""]
  lines += [f"- {k}: {v}" for k, v in settings.items()]
  lines.append(f"- seconds: {report['seconds']}")
  return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out_dir: str) -> tuple[str, str]:
  """Writes `audit.md` and `audit.json` into `out_dir`; returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  md, js = os.path.join(out_dir, "audit.md"), os.path.join(out_dir, "audit.json")
  with open(md, "w") as f:
    f.write(format_report(report))
  with open(js, "w") as f:
    json.dump(report, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
  return md, js


def run(records: Iterable[Record], *, out: str | None = None, strict: bool = False, **kw) -> int:
  """Audits, prints the report, writes it to `out`; returns the exit status for `--strict`."""
  report = audit(records, **kw)
  print(format_report(report), flush=True)
  if out:
    for path in write_report(report, out):
      print(f"Wrote {path}", file=sys.stderr)
  return 1 if strict and report["strict_failures"] else 0


# --- Loading ----------------------------------------------------------------------------------


def parse_data_spec(spec: str) -> tuple[str, tuple[str, ...] | None]:
  """`NAME[:VERSION][:SPLIT[,SPLIT...]]` -> (name, splits or None for all).

  >>> parse_data_spec("chest_xray_pneumonia/3class:train,test")
  ('chest_xray_pneumonia/3class', ('train', 'test'))
  """
  m = re.fullmatch(r"(?P<name>[^:]+(?::\d+\.\d+\.\d+)?)(?::(?P<splits>[^:]+))?", spec.strip())
  if not m:
    raise ValueError(f"--data {spec!r}: expected NAME[:SPLIT[,SPLIT...]], e.g. 'name/config:test'")
  splits = m.group("splits")
  return m.group("name"), tuple(s.strip() for s in splits.split(",")) if splits else None


def manual_dir_for(name: str, entries: Sequence[str]) -> str | None:
  """The `--manual_dir` for dataset `name`: a `NAME=DIR` entry for it, else a bare `DIR`."""
  default = None
  for entry in entries:
    key, sep, path = entry.partition("=")
    if not sep:
      default = entry
    elif key in (name, name.split("/")[0], name.split(":")[0]):
      return path
  return default


def _text(value: Any) -> str:
  return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def label_name(value: Any, names: Sequence[str], multi: bool) -> str:
  """Class name of a `label` index, or of multi-label `labels` indices (`a|b`, or `no_finding`)."""
  if multi:
    return "|".join(sorted({names[int(k)] for k in np.atleast_1d(value)})) or "no_finding"
  return names[int(value)]


def records_from_tfds(
  name: str,
  splits: Sequence[str] | None = None,
  *,
  data_dir: str | None = None,
  manual_dir: str | None = None,
) -> Iterator[Record]:
  """Records of a TFDS dataset's splits (all by default), preparing it first if needed.

  Reads `image`, `label` (or multi-label `labels`: names joined by `|`, `no_finding` when empty),
  `patient_id`, `filename` and `source` (default: the dataset name) of every example.
  """
  # Imported here: `audit()` on plain records needs neither TFDS nor the builders.
  from jaxcxr.data import datasets, sources  # pylint: disable=g-import-not-at-top

  builder = datasets.prepare(datasets.get_builder(name, data_dir), manual_dir)
  multi = sources.label_kind(builder) == "multi"
  names = sources.label_names(builder)
  default_source = name.split("/")[0]
  for split in splits or sorted(builder.info.splits.keys()):
    source = datasets.data_source(builder, split)
    for i in range(len(source)):
      try:
        ex = source[i]
      except Exception as e:  # pylint: disable=broad-except  # Decoding raises many types.
        yield Record(name, split, i, label="", error=f"{type(e).__name__}: {e}")
        continue
      yield Record(
        dataset=name,
        split=split,
        index=i,
        label=label_name(ex["labels"] if multi else ex["label"], names, multi),
        patient_id=_text(ex.get("patient_id", "")),
        filename=_text(ex.get("filename", "")),
        source=_text(ex["source"]) if "source" in ex else default_source,
        image=ex["image"],
      )


def _class_of(label: Any, class_names: Sequence[str]) -> str:
  """Class name of a view's label: a class id, or multi-hot (names joined, `no_finding`)."""
  if np.ndim(label) == 0:
    return class_names[int(label)]
  return "|".join(n for n, v in zip(class_names, label, strict=True) if v > 0.5) or "no_finding"


def records_from_config(config: Any) -> Iterator[Record]:
  """Records of the splits a training config makes (`jaxcxr.data.sources`), as training sees them.

  Every dataset of the config (its mixture, or `input.data`) is prepared if needed; each example
  of each split (`train`, `val`, `test`, or a kfold's) is yielded with `split` the config's split
  name, `dataset` the TFDS dataset it comes from and `label` the config's output class, so that
  duplicates and patients shared between the splits a run will really use are found, including
  patient-grouped re-splits and mixtures. Class balancing is not applied: oversampled copies
  would be reported as the duplicates they are.
  """
  # Imported here: `audit()` on plain records needs neither TFDS nor the builders.
  from jaxcxr.data import datasets, sources  # pylint: disable=g-import-not-at-top

  cfg = config.input.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.balance = "none"
  for comp in sources.components(cfg):
    datasets.prepare(
      datasets.get_builder(comp.data, cfg.data_dir), comp.manual_dir or cfg.manual_dir
    )
  data = sources.load(cfg)
  for split, view in data.splits.items():
    for i in range(len(view)):
      try:
        ex = view[i]
      except Exception as e:  # pylint: disable=broad-except  # Decoding raises many types.
        yield Record("?", split, i, label="", error=f"{type(e).__name__}: {e}")
        continue
      yield Record(
        dataset=ex["dataset"],
        split=split,
        index=i,
        label=_class_of(ex["label"], data.class_names),
        patient_id=_text(ex.get("patient_id", "")),
        filename=_text(ex.get("filename", "")),
        source=_text(ex["source"]),
        image=ex["image"],
      )


# --- Command line -----------------------------------------------------------------------------


def define_flags() -> None:
  """Command-line flags, defined only when run as a program (so the module imports freely)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  flags.DEFINE_multi_string(
    "data",
    [],
    "NAME[:SPLIT[,SPLIT...]] of a TFDS dataset (repeatable), e.g. chest_xray_pneumonia/3class or "
    "covid_chestxray/3class:train. All splits by default.",
  )
  config_flags.DEFINE_config_file("config", None, "Audit the splits of this training config.")
  flags.DEFINE_string("data_dir", None, "TFDS data dir.")
  flags.DEFINE_multi_string(
    "manual_dir", [], "Manual download dir, for every dataset (DIR) or one (NAME=DIR); repeatable."
  )
  flags.DEFINE_string("out", None, "Write audit.md and audit.json here.")
  flags.DEFINE_bool(
    "strict",
    False,
    "Exit with status 1 on any duplicate across splits, any patient in two splits of a dataset "
    "or a shortcut score above --shortcut_threshold.",
  )
  flags.DEFINE_integer("near_threshold", NEAR_THRESHOLD, "Max pHash distance (bits of 256).")
  flags.DEFINE_integer("confirm_threshold", CONFIRM_THRESHOLD, "Max wavelet-hash distance.")
  flags.DEFINE_float(
    "shortcut_threshold",
    SHORTCUT_THRESHOLD,
    "Shortcut score above which --strict fails (0 = metadata no better than the majority class "
    "or chance, 1 = metadata gives the class, or picks out one class, perfectly); 1: never.",
  )
  flags.DEFINE_integer("max_examples", 10, "Examples listed per finding.")
  flags.DEFINE_integer("folds", 5, "Cross-validation folds of the shortcut accuracy.")


def main(argv: Sequence[str]) -> int:
  from absl import app, flags  # pylint: disable=g-import-not-at-top

  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  FLAGS = flags.FLAGS  # noqa: N806
  sources: list[Iterable[Record]] = []
  if FLAGS.config is not None:
    sources.append(records_from_config(FLAGS.config))
  for spec in FLAGS.data:
    name, splits = parse_data_spec(spec)
    sources.append(
      records_from_tfds(
        name,
        splits,
        data_dir=FLAGS.data_dir,
        manual_dir=manual_dir_for(name, FLAGS.manual_dir),
      )
    )
  if not sources:
    raise app.UsageError("Give --data NAME[:SPLIT,...] (repeatable) or --config.")
  return run(
    itertools.chain.from_iterable(sources),
    out=FLAGS.out,
    strict=FLAGS.strict,
    near_threshold=FLAGS.near_threshold,
    confirm_threshold=FLAGS.confirm_threshold,
    shortcut_threshold=FLAGS.shortcut_threshold,
    max_examples=FLAGS.max_examples,
    folds=FLAGS.folds,
    log_every=1000,
  )


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top

  define_flags()
  app.run(main)
