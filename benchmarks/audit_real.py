r"""The leakage audit on the real chest X-ray sample: threshold calibration and a full audit run.

    python benchmarks/audit_real.py --calibrate [--out DIR]   # near-duplicate thresholds
    python benchmarks/audit_real.py [--out DIR]               # audit Cohen + Kermany

Reads the sample of `../shared/data` (or $JAXCXR_SHARED_DATA; see its SOURCES.md).

`--calibrate` reads the image files directly (Kermany `chest_xray/`, Cohen
`covid-chestxray-dataset/images` X-rays, NIH `nih-chestxray14/images`) and measures, with
`jaxcxr.audit`'s hashes, (a) the distance between every two images of different patients, and
(b) the distance between an image and its copy resized, re-encoded, flipped, rotated, contrast-
stretched or cropped, for `--num_copies` random images. It prints quantiles of both, the closest
pairs of different patients (to check by eye: some are the same radiograph under two patient
ids, see `SAME_RADIOGRAPH`), and, per threshold, the false matches and the share of copies found.

The default run builds `chest_xray_pneumonia/3class` and `covid_chestxray/3class` from the
sample (into `--data_dir`) and audits them together, as a Frankenstein mix of the two would be
trained (`--covid_only`: only Cohen's COVID-19 images, as `configs/kermany_cohen.py` mixes them);
when the `covid_chestxray` builder is missing (or with `--cohen_raw`), Cohen's files are read
directly.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import os
import pathlib
import re
import sys
import time
import urllib.parse

import numpy as np
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from jaxcxr import audit  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("JAXCXR_SHARED_DATA", REPO.parent / "shared" / "data"))

# Pairs of different patient ids whose images the calibration found identical or nearly so and
# that are the same radiograph when looked at (Cohen's collection took some cases from two
# publications or sites and gave them two patient ids): true duplicates, so not false matches.
SAME_RADIOGRAPH = {
  frozenset(p)
  for p in [
    ("cohen:97", "cohen:178"),  # covid-19-rapidly-progressive-ards-day-N.jpg = 16660_N_1.jpg
    ("cohen:78", "cohen:201"),  # 353889E0-...jpeg = case_72_RX-TORACE1.jpg
    ("cohen:137", "cohen:202"),  # A7E260CE-...jpeg = case_76_1-3.png (other crop and contrast)
  ]
}

_KERMANY_PATIENT = re.compile(r"^(person\d+)_|^((?:NORMAL2-)?IM-\d+)", re.IGNORECASE)


def kermany_files() -> list[tuple[pathlib.Path, str, str, str]]:
  """(path, patient, label, split) of the Kermany sample; 3class labels from the file name."""
  out = []
  for path in sorted((SHARED / "chest_xray").rglob("*.jpeg")):
    m = _KERMANY_PATIENT.match(path.stem)
    patient = next(g for g in m.groups() if g) if m else path.stem
    kind = "normal" if path.parent.name == "NORMAL" else path.stem.split("_")[1]
    label = {"bacteria": "bacterial", "virus": "viral"}.get(kind, kind)
    out.append((path, f"kermany:{patient}", label, path.parent.parent.name))
  return out


def cohen_rows() -> list[dict[str, str]]:
  """Metadata rows of Cohen's X-rays whose file is in the sample."""
  root = SHARED / "covid-chestxray-dataset"
  with open(root / "metadata.csv", newline="") as f:
    rows = [r for r in csv.DictReader(f) if r["modality"] == "X-ray"]
  rows = [r | {"path": root / "images" / r["filename"]} for r in rows]
  return [r for r in rows if r["path"].is_file()]


def nih_files() -> list[tuple[pathlib.Path, str]]:
  paths = sorted((SHARED / "nih-chestxray14" / "images").glob("*.png"))
  return [(p, f"nih:{p.stem.split('_')[0]}") for p in paths]  # `<patient>_<follow-up>.png`


# --- Calibration ------------------------------------------------------------------------------


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
  buf = io.BytesIO()
  im.save(buf, format="JPEG", quality=quality)
  return Image.open(io.BytesIO(buf.getvalue()))


def _crop(im: Image.Image, fraction: float) -> Image.Image:
  w, h = im.size
  dx, dy = round(w * fraction), round(h * fraction)
  return im.crop((dx, dy, w - dx, h - dy))


COPIES = {
  "resize x0.5": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.BILINEAR),
  "resize x1.7": lambda im: im.resize(
    (round(im.width * 1.7), round(im.height * 1.7)), Image.Resampling.BICUBIC
  ),
  "jpeg q50": lambda im: _jpeg(im, 50),
  "half size + jpeg q40": lambda im: _jpeg(im.resize((im.width // 2, im.height // 2)), 40),
  "flip left-right": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
  "rot90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
  "rot180": lambda im: im.transpose(Image.Transpose.ROTATE_180),
  "rot90 + jpeg q50": lambda im: _jpeg(im.transpose(Image.Transpose.ROTATE_90), 50),
  "contrast x1.2 + 10": lambda im: Image.fromarray(
    np.clip((np.asarray(im, np.float32) - 128) * 1.2 + 138, 0, 255).astype(np.uint8)
  ),
  "crop 2% per side": lambda im: _crop(im, 0.02),
  "crop 5% per side": lambda im: _crop(im, 0.05),
}


def distance_matrix(h: np.ndarray, chunk: int = 64) -> np.ndarray:
  """Symmetric (N, N) min-over-transforms Hamming distances of (N, 8, W) hashes."""
  d = np.concatenate(
    [audit.hamming_min(h[s : s + chunk, None], h[None]) for s in range(0, len(h), chunk)]
  )
  return np.minimum(d, d.T)


def pair_distance(a: np.ndarray, b: np.ndarray) -> int:
  return int(min(audit.hamming_min(a, b), audit.hamming_min(b, a)))


def calibrate(args: argparse.Namespace) -> dict:
  items = [(p, pid) for p, pid, _, _ in kermany_files()]
  items += [(r["path"], f"cohen:{r['patientid']}") for r in cohen_rows()]
  items += nih_files()
  t0 = time.time()
  grey = []
  feats = []
  for path, _ in items:
    g = audit.to_grey(path.read_bytes())
    grey.append(g)
    feats.append(audit.image_features(g))
  t_hash = time.time() - t0
  print(f"{len(items)} images hashed in {t_hash:.1f} s", file=sys.stderr)
  pids = np.array([pid for _, pid in items])
  ph = np.stack([f.phash for f in feats])
  wh = np.stack([f.whash for f in feats])
  dp, dw = distance_matrix(ph), distance_matrix(wh)
  iu = np.triu_indices(len(items), 1)
  diff = pids[iu[0]] != pids[iu[1]]
  same_radiograph = np.array(
    [frozenset((pids[a], pids[b])) in SAME_RADIOGRAPH for a, b in zip(*iu, strict=True)]
  )
  negatives = diff & ~same_radiograph
  neg_p, neg_w = dp[iu][negatives], dw[iu][negatives]

  rng = np.random.default_rng(args.seed)
  chosen = rng.choice(len(items), min(args.num_copies, len(items)), replace=False)
  copies = {name: [] for name in COPIES}
  for k in chosen:
    im = Image.fromarray(grey[k])
    for name, make in COPIES.items():
      f = audit.image_features(np.asarray(make(im).convert("L")))
      copies[name].append(
        (pair_distance(f.phash, feats[k].phash), pair_distance(f.whash, feats[k].whash))
      )

  q = (0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.5)
  quant = lambda x: {str(p): float(np.quantile(x, p)) for p in q}
  closest = np.argsort(dp[iu] + 1000 * ~diff, kind="stable")[: args.closest]
  report = {
    "images": len(items),
    "hash_seconds": round(t_hash, 1),
    "negative_pairs": int(negatives.sum()),
    "same_radiograph_pairs": int(same_radiograph.sum()),
    "negative_quantiles": {"phash": quant(neg_p), "whash": quant(neg_w)},
    "same_patient_quantiles": {
      "phash": quant(dp[iu][~diff]),
      "whash": quant(dw[iu][~diff]),
    },
    "copies": {
      name: {
        "phash_max": int(max(p for p, _ in v)),
        "phash_median": float(np.median([p for p, _ in v])),
        "whash_max": int(max(w for _, w in v)),
        "found_at_defaults": float(
          np.mean([p <= audit.NEAR_THRESHOLD and w <= audit.CONFIRM_THRESHOLD for p, w in v])
        ),
      }
      for name, v in copies.items()
    },
    "closest_different_patients": [
      {
        "phash": int(dp[iu][c]),
        "whash": int(dw[iu][c]),
        "a": str(items[iu[0][c]][0].relative_to(SHARED)),
        "b": str(items[iu[1][c]][0].relative_to(SHARED)),
        "patients": [str(pids[iu[0][c]]), str(pids[iu[1][c]])],
        "same_radiograph": bool(same_radiograph[c]),
      }
      for c in closest
    ],
    "sweep": [],
  }
  for tp in range(16, 65, 4):
    for tw in (16, 20, 24, 28, 32, 256):
      found = {
        name: float(np.mean([p <= tp and w <= tw for p, w in v])) for name, v in copies.items()
      }
      report["sweep"].append(
        {
          "phash_threshold": tp,
          "whash_threshold": tw,
          "false_matches": int(np.sum((neg_p <= tp) & (neg_w <= tw))),
          "found": found,
        }
      )
  return report


def print_calibration(r: dict) -> None:
  print(f"# Near-duplicate calibration: {r['images']} real radiographs\n")
  print(
    f"{r['negative_pairs']} pairs of images of different patients (plus "
    f"{r['same_radiograph_pairs']} pairs that are the same radiograph under two ids); hashing "
    f"{r['hash_seconds']} s.\n"
  )
  levels = r["negative_quantiles"]["phash"]
  print("| distance (bits of 256) | " + " | ".join(f"q{p}" for p in levels) + " |")
  print("|---|" + "---|" * len(r["negative_quantiles"]["phash"]))
  for kind in ("negative", "same_patient"):
    for h in ("phash", "whash"):
      qs = r[f"{kind}_quantiles"][h]
      print(f"| {kind.replace('_', ' ')} {h} | " + " | ".join(f"{v:g}" for v in qs.values()) + " |")
  print(
    "\n| copy | pHash max | pHash median | wavelet max | found at defaults |\n|---|---|---|---|---|"
  )
  for name, c in r["copies"].items():
    print(
      f"| {name} | {c['phash_max']} | {c['phash_median']:g} | {c['whash_max']} | "
      f"{c['found_at_defaults']:.0%} |"
    )
  print("\nClosest pairs of different patient ids:")
  for c in r["closest_different_patients"]:
    same = " (same radiograph)" if c["same_radiograph"] else ""
    print(f"- pHash {c['phash']}, wavelet {c['whash']}: {c['a']} / {c['b']}{same}")
  print("\n| pHash <= | wavelet <= | false matches | " + " | ".join(r["copies"]) + " |")
  print("|---|---|---|" + "---|" * len(r["copies"]))
  for s in r["sweep"]:
    print(
      f"| {s['phash_threshold']} | {s['whash_threshold']} | {s['false_matches']} | "
      + " | ".join(f"{v:.0%}" for v in s["found"].values())
      + " |"
    )


# --- Audit run --------------------------------------------------------------------------------


def _url_domain(url: str) -> str:
  host = urllib.parse.urlparse(url.strip()).netloc.lower()
  return host.removeprefix("www.") or "unknown"


def cohen_raw_records():
  """Cohen's frontal X-rays read from the files (when the covid_chestxray builder is missing)."""
  frontal = {"pa", "ap", "ap supine", "ap semi erect", "ap erect"}
  for i, r in enumerate(cohen_rows()):
    if r["view"].strip().lower() not in frontal:
      continue
    finding = r["finding"].lower()
    label = (
      "covid-19" if "covid-19" in finding
      else "no_finding" if "no finding" in finding
      else "todo" if finding == "todo"
      else "other_pneumonia"
    )  # fmt: skip
    yield audit.Record(
      dataset="covid_chestxray(raw)",
      split="train",
      index=i,
      label=label,
      patient_id=r["patientid"],
      filename=f"images/{r['filename']}",
      source=_url_domain(r["url"]),
      image=r["path"].read_bytes(),
    )


def audit_run(args: argparse.Namespace) -> dict:
  from jaxcxr.data import tfds_access  # pylint: disable=g-import-not-at-top

  names = ["chest_xray_pneumonia/3class"]
  cohen_builder = (REPO / "tfds_builders" / "covid_chestxray").is_dir() and not args.cohen_raw
  if cohen_builder:
    names.append("covid_chestxray/3class")
  t0 = time.time()
  for name in names:  # Builds each from the sample the first time; a no-op afterwards.
    tfds_access.prepare(tfds_access.get_builder(name, args.data_dir), str(SHARED))
  t_build = time.time() - t0
  inputs = [audit.records_from_tfds(name, data_dir=args.data_dir) for name in names]
  if not cohen_builder:
    inputs.append(cohen_raw_records())
  records = itertools.chain.from_iterable(inputs)
  if args.covid_only:
    records = (r for r in records if r.dataset.startswith("chest_xray") or r.label == "covid-19")
  report = audit.audit(records, log_every=500)
  report["seconds"]["build"] = round(t_build, 1)
  return report


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--calibrate", action="store_true", help="Measure hash distances.")
  parser.add_argument("--num_copies", type=int, default=300, help="Images copied (calibration).")
  parser.add_argument("--closest", type=int, default=12, help="Closest pairs listed.")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--data_dir", default="/tmp/jaxcxr_audit_tfds", help="TFDS data dir.")
  parser.add_argument("--cohen_raw", action="store_true", help="Read Cohen's files directly.")
  parser.add_argument(
    "--covid_only",
    action="store_true",
    help="Keep only Cohen's covid-19 images, the 4-class mix of configs/kermany_cohen.py.",
  )
  parser.add_argument("--out", help="Write the report (JSON and Markdown) here.")
  args = parser.parse_args()
  if not SHARED.is_dir():
    sys.exit(f"Real data not found at {SHARED} (set JAXCXR_SHARED_DATA).")
  if args.calibrate:
    report = calibrate(args)
    print_calibration(report)
    if args.out:
      os.makedirs(args.out, exist_ok=True)
      with open(os.path.join(args.out, "calibration.json"), "w") as f:
        json.dump(report, f, indent=1)
  else:
    report = audit_run(args)
    print(audit.format_report(report))
    if args.out:
      audit.write_report(report, args.out)


if __name__ == "__main__":
  main()
