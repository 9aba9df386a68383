"""Patient overlap: patient ids found in more than one split of a dataset (a leak)."""

from __future__ import annotations

import collections
import itertools
from typing import Any

from jaxcxr.audit.records import Record


def find_patient_overlap(recs: list[Record], max_examples: int) -> dict[str, Any]:
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
