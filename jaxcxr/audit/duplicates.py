"""Exact and near-duplicate clusters of the audited images, by kind and by split pair.

Pairs come from `jaxcxr.data.duplicates` (sha256 for exact copies; pHash confirmed by wavelet hash
for near ones); a cluster is a connected component of the pair graph.
"""

from __future__ import annotations

import collections
import itertools
from typing import Any

import numpy as np

from jaxcxr.audit.records import Record, member
from jaxcxr.data import duplicates as image_duplicates
from jaxcxr.data.duplicates import ImageFeatures, duplicate_pairs


def describe_clusters(
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
      "members": [member(r) for r in rs[:10]],
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


def find_exact(recs: list[Record], feats: list[ImageFeatures], max_examples: int) -> dict:
  by_digest = collections.defaultdict(list)
  for k, f in enumerate(feats):
    by_digest[f.sha256].append(k)
  clusters = sorted(
    (np.array(v) for v in by_digest.values() if len(v) > 1), key=lambda g: (-len(g), g[0])
  )
  out = describe_clusters(clusters, recs, max_examples)
  out["different_filenames"] = sum(len({recs[m].filename for m in c}) > 1 for c in clusters)
  return out


def find_near(
  recs: list[Record],
  feats: list[ImageFeatures],
  near_threshold: int,
  confirm_threshold: int,
  max_examples: int,
) -> dict:
  """pHash candidates over all pairs, confirmed by both hashes in both directions."""
  n = len(feats)
  if n < 2:
    return describe_clusters([], recs, max_examples, {}) | {"candidate_pairs": 0, "pairs": 0}
  ki, kj, kd, num_candidates = duplicate_pairs(feats, near_threshold, confirm_threshold)
  found = image_duplicates.clusters(n, ki, kj)
  where = np.full(n, -1)
  for c, members in enumerate(found):
    where[members] = c
  max_distance: dict[int, int] = {}
  for a, d in zip(ki, kd, strict=True):
    c = int(where[a])
    max_distance[c] = max(max_distance.get(c, 0), int(d))
  out = describe_clusters(found, recs, max_examples, max_distance)
  out["candidate_pairs"] = num_candidates
  out["pairs"] = int(len(ki))
  out["pair_distance_histogram"] = {
    str(int(d)): int(c) for d, c in zip(*np.unique(kd, return_counts=True), strict=True)
  }
  return out
