"""`audit()`: every check on a set of records, the problems it finds, and the readable report."""

from __future__ import annotations

import collections
import itertools
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from jaxcxr.audit.duplicates import find_exact, find_near
from jaxcxr.audit.patients import find_patient_overlap
from jaxcxr.audit.records import Record, collect, member
from jaxcxr.audit.shortcuts import SHORTCUT_THRESHOLD, find_shortcuts
from jaxcxr.data.duplicates import CONFIRM_THRESHOLD, HASH_SIZE, NEAR_THRESHOLD


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
  everything, recs, feats = collect(records, log_every)
  t_hash = time.time()
  exact = find_exact(recs, feats, max_examples)
  near = find_near(recs, feats, near_threshold, confirm_threshold, max_examples)
  t_near = time.time()
  patients = find_patient_overlap(everything, max_examples)
  shortcuts = find_shortcuts(
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
        member(r) | {"index": r.index, "error": r.error} for r in bad[:max_examples]
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
