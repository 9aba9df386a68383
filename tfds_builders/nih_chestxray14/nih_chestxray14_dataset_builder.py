"""TFDS builder for NIH ChestX-ray14 (Wang et al., CVPR 2017): 14 findings, multi-label.

Dataset: X. Wang, Y. Peng, L. Lu, Z. Lu, M. Bagheri, R. M. Summers, "ChestX-ray8: Hospital-scale
Chest X-ray Database and Benchmarks on Weakly-Supervised Classification and Localization of Common
Thorax Diseases", CVPR 2017, pp. 2097-2106, doi:10.1109/CVPR.2017.369 (arXiv:1705.02315).
Data: NIH Clinical Center, https://nihcc.app.box.com/v/ChestXray-NIHCC (112,120 frontal PNGs,
1024x1024, of 30,805 patients); mirrored on Kaggle as `nih-chest-xrays/data`.

The data must be downloaded by hand (see `MANUAL_DOWNLOAD_INSTRUCTIONS`). Build with:

    tfds build tfds_builders/nih_chestxray14 --manual_dir=PATH/TO/NIH \
        --file_format=array_record

Upstream layouts read (both from the Box folder's README_CHESTXRAY.pdf and the Kaggle page):
  * Box: `Data_Entry_2017_v2020.csv` (or `Data_Entry_2017.csv`), `train_val_list.txt`,
    `test_list.txt`, `BBox_List_2017.csv` and `images/*.png` (the 12 `images_NNN.tar.gz` all
    extract into `images/`);
  * Kaggle: the same files beside `images_001/images/*.png` ... `images_012/images/*.png`.

Labels come from the `Finding Labels` column (`Cardiomegaly|Effusion`, or `No Finding`) and are
stored as a sequence of class names in lower snake case, in the upstream order. The official,
patient-disjoint `train_val_list.txt` / `test_list.txt` give the `train` and `test` splits; without
them one `train` split is built (jaxcxr makes patient-disjoint splits at training time). The 984
hand-drawn boxes of `BBox_List_2017.csv` (880 images, 8 findings) are stored when the file is
there, normalised by the 1024-px frame the boxes were drawn on.

Images are stored single-channel PNG: the 8-bit grey PNGs byte for byte, the few RGBA ones
composited on black and converted to grey, so every image decodes to (H, W, 1) with PIL alone.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import functools
import io
import re
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from jaxcxr import constants
from tfds_builders import common

DATASET = "nih_chestxray14"
# Upstream spellings, in the order of the `Finding Labels` legend of README_CHESTXRAY.pdf.
UPSTREAM_FINDINGS = (*constants.CHESTXRAY14_FINDINGS, "No Finding")


def label_name(finding: str) -> str:
  """`Pleural_Thickening` / `No Finding` -> `pleural_thickening` / `no_finding`."""
  return re.sub(r"[\s_]+", "_", finding.strip().lower())


LABEL_NAMES = tuple(label_name(f) for f in UPSTREAM_FINDINGS)
NO_FINDING = "no_finding"
# `BBox_List_2017.csv` says `Infiltrate` where `Data_Entry_2017.csv` says `Infiltration`.
_BBOX_ALIASES = {"infiltrate": "infiltration"}
# Boxes are in pixels of the released 1024x1024 PNGs (README_CHESTXRAY.pdf).
BBOX_FRAME = 1024.0

# Preferred first: NIH's 2020 revision of the metadata (ages recomputed).
CSV_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
TRAIN_LIST, TEST_LIST = "train_val_list.txt", "test_list.txt"
BBOX_CSV = "BBox_List_2017.csv"
# Header names of the first 7 columns; the last 4 are split by the unquoted commas of
# `OriginalImage[Width,Height]` and `OriginalImagePixelSpacing[x,y]` (or spelled
# `OriginalImageWidth`, ... in some copies) and are read by position. Data_Entry_2017.csv ends each
# line with an extra comma (an empty 12th column).
_HEADER = (
  "image index",
  "finding labels",
  "follow-up #",
  "patient id",
  "patient age",
  "patient gender",
  "view position",
)
_NUM_COLUMNS = 11
# `58`, `058`, or DICOM age strings `058Y`, `011M`, `003W`, `005D` (some copies of the CSV).
_AGE_RE = re.compile(r"^(\d+)\s*([YMWD])?$", re.IGNORECASE)
_AGE_UNIT_YEARS = {"Y": 1, "M": 12, "W": 52, "D": 365}
_MAX_PLAUSIBLE_AGE = 120

_BOX_URL = "https://nihcc.app.box.com/v/ChestXray-NIHCC"
_KAGGLE_URL = "https://www.kaggle.com/datasets/nih-chest-xrays/data"

_EXPECTED_LAYOUT = """\
  <manual_dir>/                 (or one sub-folder of it, e.g. <manual_dir>/ChestXray-NIHCC/)
      Data_Entry_2017_v2020.csv   (or Data_Entry_2017.csv)
      train_val_list.txt test_list.txt   (optional: without them one `train` split is built)
      BBox_List_2017.csv          (optional)
      images/*.png                (NIH Box: every images_NNN.tar.gz extracts into images/)
   or images_001/images/*.png ... images_012/images/*.png   (Kaggle)"""

_DOWNLOAD_HELP = f"""\
Download NIH ChestX-ray14 from either
  * the NIH Clinical Center Box folder: {_BOX_URL}
    (Data_Entry_2017_v2020.csv, train_val_list.txt, test_list.txt, BBox_List_2017.csv and
    images/images_001.tar.gz ... images_012.tar.gz; NIH's batch_download_zips.py fetches the
    tarballs), extract every tarball in the same folder; or
  * Kaggle: {_KAGGLE_URL}  (`kaggle datasets download nih-chest-xrays/data`, then unzip),
and pass that folder as `--manual_dir`."""


@dataclasses.dataclass(frozen=True)
class Entry:
  """One parsed row of `Data_Entry_2017*.csv`.

  Attributes:
    name: `Image Index`, e.g. `00000001_000.png`.
    labels: label names (`LABEL_NAMES`), in label-index order.
    follow_up: `Follow-up #`.
    patient_id: `Patient ID`, zero-padded to 8 digits as in the file names.
    age: `Patient Age` in years; -1 when missing.
    sex: `Patient Gender` (`M` / `F`).
    view: `View Position` (`PA` / `AP`).
    width: original DICOM width in pixels.
    height: original DICOM height in pixels.
    spacing: original pixel spacing (x, y) in mm.
    flags: reasons to keep the row with a doubt.
  """

  name: str
  labels: tuple[str, ...]
  follow_up: int
  patient_id: str
  age: int
  sex: str
  view: str
  width: int
  height: int
  spacing: tuple[float, float]
  flags: tuple[str, ...] = ()


@dataclasses.dataclass
class Box:
  """One row of `BBox_List_2017.csv`, normalised to [0, 1]."""

  label: str
  bbox: tfds.features.BBox


def parse_finding_labels(text: str) -> tuple[str, ...]:
  """`Effusion|Atelectasis` -> `('atelectasis', 'effusion')` (label-index order).

  Raises:
    ValueError: empty field, a name not in `UPSTREAM_FINDINGS`, or `No Finding` together with a
      finding; the message is the skip reason.
  """
  names = [label_name(f) for f in text.split("|") if f.strip()]
  if not names:
    raise ValueError("empty Finding Labels")
  unknown = sorted(set(names) - set(LABEL_NAMES))
  if unknown:
    raise ValueError(f"unknown finding name ({', '.join(unknown)})")
  if NO_FINDING in names and len(set(names)) > 1:
    raise ValueError("'No Finding' together with findings")
  return tuple(sorted(set(names), key=LABEL_NAMES.index))


def parse_age(text: str) -> tuple[int, str | None]:
  """`58`, `058Y`, `011M` -> `(age in whole years, flag reason or None)`; `(-1, reason)` if empty.

  Raises:
    ValueError: if `text` is neither a number nor a DICOM age string.
  """
  text = text.strip()
  if not text:
    return -1, "age missing (stored as -1)"
  m = _AGE_RE.match(text)
  if not m:
    raise ValueError(f"malformed Patient Age {text!r}")
  unit = (m.group(2) or "Y").upper()
  age = int(m.group(1)) // _AGE_UNIT_YEARS[unit]
  if unit != "Y":
    return age, "age given in months/weeks/days (converted to whole years)"
  if age > _MAX_PLAUSIBLE_AGE:
    return age, f"implausible age > {_MAX_PLAUSIBLE_AGE} (kept as in the CSV)"
  return age, None


def parse_row(row: list[str]) -> Entry:
  """Parses one CSV row (cells as `csv.reader` gives them).

  Raises:
    ValueError: the row is malformed or its labels are unusable; the message is the skip reason.
  """
  cells = [c.strip() for c in row]
  while cells and not cells[-1]:
    cells.pop()  # Data_Entry_2017.csv's trailing comma.
  if len(cells) != _NUM_COLUMNS:
    raise ValueError(f"malformed CSV row ({len(cells)} columns, expected {_NUM_COLUMNS})")
  name, findings, follow_up, patient, age_text, sex, view, width, height, sx, sy = cells
  labels = parse_finding_labels(findings)
  try:
    patient_id = f"{int(patient):08d}"
    numbers = int(follow_up), int(width), int(height), float(sx), float(sy)
  except ValueError:
    raise ValueError("malformed number in CSV row") from None
  age, age_flag = parse_age(age_text)
  flags = [age_flag] if age_flag else []
  if not name.startswith(patient_id + "_"):
    flags.append("Patient ID differs from the file name (kept the CSV's)")
  if sex.upper() not in ("M", "F"):
    flags.append("Patient Gender not M/F")
  if view.upper() not in ("PA", "AP"):
    flags.append("View Position not PA/AP")
  return Entry(
    name=name,
    labels=labels,
    follow_up=numbers[0],
    patient_id=patient_id,
    age=age,
    sex=sex.upper(),
    view=view.upper(),
    width=numbers[1],
    height=numbers[2],
    spacing=(numbers[3], numbers[4]),
    flags=tuple(flags),
  )


def read_data_entry(
  path: epath.Path,
) -> tuple[dict[str, Entry], dict[str, str], list[tuple[str, str]]]:
  """Reads `Data_Entry_2017*.csv`.

  Returns:
    `(entries, problems, duplicates)`: parsed rows by image name; the skip reason of every row that
    could not be used, by image name; `(image name, line)` of repeated rows (the first is kept).

  Raises:
    ValueError: the header is not the upstream one (names the file and both headers).
  """
  rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
  header = (
    [c.strip().lower().replace("patient sex", "patient gender") for c in rows[0]] if rows else []
  )
  while header and not header[-1]:
    header.pop()
  if tuple(header[: len(_HEADER)]) != _HEADER or len(header) != _NUM_COLUMNS:
    raise ValueError(
      f"{path}: unexpected header {rows[0] if rows else '(empty file)'}; expected the NIH one: "
      "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
      "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
    )
  entries: dict[str, Entry] = {}
  problems: dict[str, str] = {}
  duplicates: list[tuple[str, str]] = []
  for line_no, row in enumerate(rows[1:], start=2):
    if not any(c.strip() for c in row):
      continue  # Blank line (e.g. at the end of the file).
    name = row[0].strip()
    if name in entries or name in problems:
      duplicates.append((name, f"{path.name} line {line_no}"))
      continue
    try:
      entries[name] = parse_row(row)
    except ValueError as e:
      problems[name] = str(e)
  return entries, problems, duplicates


def read_bboxes(path: epath.Path) -> tuple[dict[str, list[Box]], list[tuple[str, str, bool]]]:
  """Reads `BBox_List_2017.csv` (`Image Index,Finding Label,Bbox [x,y,w,h],,,`).

  Returns:
    `(boxes, problems)`: boxes by image name, and `(image name, reason, skipped)` for rows
    skipped (`skipped=True`) or kept with a doubt (box clipped to the frame).
  """
  boxes: dict[str, list[Box]] = collections.defaultdict(list)
  problems: list[tuple[str, str, bool]] = []
  rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
  for row in rows[1:]:
    cells = [c.strip() for c in row]
    while cells and not cells[-1]:
      cells.pop()
    if not cells:
      continue
    name = cells[0]
    if len(cells) != 6:
      problems.append((name, f"malformed {BBOX_CSV} row", True))
      continue
    label = label_name(cells[1])
    label = _BBOX_ALIASES.get(label, label)
    if label not in LABEL_NAMES or label == NO_FINDING:
      problems.append((name, f"{BBOX_CSV}: unknown finding {cells[1]!r} (box skipped)", True))
      continue
    try:
      x, y, w, h = (float(c) for c in cells[2:])
    except ValueError:
      problems.append((name, f"malformed {BBOX_CSV} row", True))
      continue
    corners = np.array([y, x, y + h, x + w]) / BBOX_FRAME
    clipped = np.clip(corners, 0.0, 1.0)
    if w <= 0 or h <= 0 or clipped[0] >= clipped[2] or clipped[1] >= clipped[3]:
      problems.append((name, f"{BBOX_CSV}: empty box (skipped)", True))
      continue
    if not np.array_equal(corners, clipped):
      problems.append((name, f"{BBOX_CSV}: box clipped to the 1024x1024 frame", False))
    boxes[name].append(Box(label, tfds.features.BBox(*clipped.astype(np.float32))))
  return boxes, problems


def read_list(path: epath.Path) -> list[str]:
  """One file name per line; blank lines ignored."""
  return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def find_data_root(manual_dir: epath.PathLike) -> epath.Path:
  """Returns the folder holding `Data_Entry_2017*.csv`: `manual_dir` or one of its sub-folders.

  Raises:
    FileNotFoundError: `manual_dir` is missing, no (or more than one) folder holds the CSV, or the
      folder has neither `images/` nor `images_NNN/images/`; the message names the path, the
      expected layout and where to download the data.
  """
  help_text = f"Expected layout:\n{_EXPECTED_LAYOUT}\n{_DOWNLOAD_HELP}"
  manual_dir = common.require_dir(manual_dir, help_text)
  has_csv = lambda d: any((d / n).is_file() for n in CSV_NAMES)
  if has_csv(manual_dir):
    roots = [manual_dir]
  else:
    roots = [d for d in sorted(manual_dir.iterdir()) if d.is_dir() and has_csv(d)]
  if len(roots) != 1:
    what = "no" if not roots else f"{len(roots)} folders with a"
    raise FileNotFoundError(
      f"{manual_dir}: {what} {' or '.join(CSV_NAMES)} in it or in one sub-folder "
      f"(found: {common.listing(manual_dir)}). {help_text}"
    )
  root = roots[0]
  if not image_dirs(root):
    raise FileNotFoundError(
      f"{root} has {' / '.join(n for n in CSV_NAMES if (root / n).is_file())} but no images/ "
      f"or images_NNN/images/ folder. {help_text}"
    )
  return root


def image_dirs(root: epath.Path) -> list[str]:
  """Image folders of `root`, relative to it: `images` (Box) and `images_NNN/images` (Kaggle)."""
  dirs = ["images"] if (root / "images").is_dir() else []
  for d in sorted(root.glob("images_*")):
    if (d / "images").is_dir():
      dirs.append(f"{d.name}/images")
  return dirs


@dataclasses.dataclass
class Plan:
  """What each split will hold, decided before any image is read.

  Attributes:
    examples: per split, `(relative path, entry)` sorted by image name.
    logs: per split, the files skipped or flagged so far (image decoding adds to them).
    boxes: bounding boxes by image name.
  """

  examples: dict[str, list[tuple[str, Entry]]]
  logs: dict[str, common.SkipLog]
  boxes: dict[str, list[Box]]


def plan_splits(
  root: epath.Path,
  new_log: Callable[[str], common.SkipLog] | None = None,
) -> Plan:
  """Matches CSV rows, image files and the split lists of `root`; records every mismatch.

  Each image name is reported once, under the first reason that applies, in the log of the split
  its list puts it in (of both splits if both lists name it; of `train` if none does).

  Args:
    root: the folder holding the CSV (`find_data_root`).
    new_log: makes the SkipLog of a split (the builder's `skip_log`); by default a plain one.

  Raises:
    FileNotFoundError: only one of the two split lists exists.
    ValueError: the CSV header is not the upstream one.
  """
  csv_names = [n for n in CSV_NAMES if (root / n).is_file()]
  if len(csv_names) > 1:
    logging.info("%s: both %s present; reading %s.", root, " and ".join(csv_names), csv_names[0])
  csv_path = root / csv_names[0]
  entries, row_problems, duplicates = read_data_entry(csv_path)

  have_lists = [(root / n).is_file() for n in (TRAIN_LIST, TEST_LIST)]
  if any(have_lists) and not all(have_lists):
    present, missing = (TRAIN_LIST, TEST_LIST) if have_lists[0] else (TEST_LIST, TRAIN_LIST)
    raise FileNotFoundError(
      f"{root} has {present} but not {missing}: provide both official split lists (from "
      f"{_BOX_URL} or {_KAGGLE_URL}) or neither (one `train` split is then built)."
    )
  with_lists = all(have_lists)
  splits = ("train", "test") if with_lists else ("train",)
  new_log = new_log or functools.partial(common.SkipLog, DATASET)
  logs = {s: new_log(s) for s in splits}
  listed: dict[str, set[str]] = collections.defaultdict(set)  # image name -> splits listing it
  if with_lists:
    for split, list_name in (("train", TRAIN_LIST), ("test", TEST_LIST)):
      for name, n in collections.Counter(read_list(root / list_name)).items():
        listed[name].add(split)
        if n > 1:
          logs[split].flag(f"listed {n} times in {list_name}", name)
  else:
    logging.warning(
      "%s: no %s / %s; building one `train` split (make patient-disjoint splits from "
      "`patient_id`, e.g. with StratifiedGroupKFold).",
      root,
      TRAIN_LIST,
      TEST_LIST,
    )

  def splits_of(name: str) -> list[str]:
    """Splits whose list names `name`: empty if none does; `train` when there are no lists."""
    return sorted(listed.get(name, ())) if with_lists else ["train"]

  def logs_of(name: str) -> list[common.SkipLog]:
    return [logs[s] for s in splits_of(name) or ["train"]]

  for name, where in duplicates:
    for log in logs_of(name):
      log.skip("duplicate CSV row (first one kept)", f"{name} ({where})")

  files: dict[str, str] = {}  # image name -> path relative to root
  for d in image_dirs(root):
    for path in sorted((root / d).iterdir()):
      rel, name = f"{d}/{path.name}", path.name
      if name.startswith(".") or path.suffix.lower() != ".png" or not path.is_file():
        reason = "non-image file (ignored)"
      elif name in files:
        reason = "duplicate image file (first copy kept)"
      else:
        files[name] = rel
        continue
      for log in logs_of(name):
        log.skip(reason, rel)

  examples: dict[str, list[tuple[str, Entry]]] = {s: [] for s in splits}
  for name in sorted(set(entries) | set(row_problems) | set(files) | set(listed)):
    has_row = name in entries or name in row_problems
    if name not in files:
      reason = "CSV row without image file" if has_row else "listed, but no CSV row nor image"
    elif not has_row:
      reason = "image without CSV row"
    elif name in row_problems:
      reason = row_problems[name]
    elif len(splits_of(name)) > 1:
      reason = f"in both {TRAIN_LIST} and {TEST_LIST}"
    elif not splits_of(name):
      reason = f"in neither {TRAIN_LIST} nor {TEST_LIST}"
    else:
      reason = None
    rel = files.get(name, name)
    if reason:
      for log in logs_of(name):
        log.skip(reason, rel)
      continue
    split = splits_of(name)[0]
    examples[split].append((rel, entries[name]))
    for flag in entries[name].flags:
      logs[split].flag(flag, rel)

  boxes: dict[str, list[Box]] = {}
  if (root / BBOX_CSV).is_file():
    boxes, box_problems = read_bboxes(root / BBOX_CSV)
    built = {entry.name: (split, entry) for split, exs in examples.items() for _, entry in exs}
    for name, reason, skipped in box_problems:
      log = logs[built[name][0]] if name in built else logs_of(name)[0]
      (log.skip if skipped else log.flag)(reason, files.get(name, name))
    for name, image_boxes in sorted(boxes.items()):
      rel = files.get(name, name)
      if name not in built:
        logs_of(name)[0].skip(f"{BBOX_CSV}: box for an image not in the dataset", rel)
      elif any(b.label not in built[name][1].labels for b in image_boxes):
        logs[built[name][0]].flag(f"{BBOX_CSV}: box finding not in the image's labels", rel)
  return Plan(examples=examples, logs=logs, boxes=boxes)


class Builder(common.SkipReportMixin, tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for NIH ChestX-ray14 (Wang et al., 2017)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"{_DOWNLOAD_HELP}\nExpected layout:\n{_EXPECTED_LAYOUT}\n"

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
          "labels": tfds.features.Sequence(tfds.features.ClassLabel(names=list(LABEL_NAMES))),
          "patient_id": tfds.features.Text(),
          "follow_up": tfds.features.Scalar(dtype=np.int32),
          "age": tfds.features.Scalar(dtype=np.int32),
          "sex": tfds.features.Text(),
          "view": tfds.features.Text(),
          "original_width": tfds.features.Scalar(dtype=np.int32),
          "original_height": tfds.features.Scalar(dtype=np.int32),
          "pixel_spacing": tfds.features.Tensor(shape=(2,), dtype=np.float32),
          "bboxes": tfds.features.Sequence(
            {
              "bbox": tfds.features.BBoxFeature(),
              "label": tfds.features.ClassLabel(names=list(LABEL_NAMES)),
            }
          ),
          "filename": tfds.features.Text(),
          "source": tfds.features.Text(),
        }
      ),
      supervised_keys=("image", "labels"),
      homepage=_BOX_URL,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = find_data_root(common.manual_dir(dl_manager, self.MANUAL_DOWNLOAD_INSTRUCTIONS))
    plan = plan_splits(root, new_log=self.skip_log)
    return {
      split: self._generate_examples(root, examples, plan.logs[split], plan.boxes)
      for split, examples in plan.examples.items()
    }

  def _generate_examples(
    self,
    root: epath.Path,
    examples: list[tuple[str, Entry]],
    log: common.SkipLog,
    boxes: dict[str, list[Box]],
  ) -> Iterator[tuple[str, dict]]:
    """Yields `(relative path, example)` for one split's planned images, skipping bad files."""
    for rel, entry in examples:
      data = (root / rel).read_bytes()
      image = common.image_or_skip(log, rel, data, encoding="png")
      if image is None:
        continue
      if image is not data:
        log.flag("not an 8-bit grey PNG (converted to grey)", rel)
      image_boxes = boxes.get(entry.name, [])
      yield (
        rel,
        {
          "image": image,
          "labels": list(entry.labels),
          "patient_id": entry.patient_id,
          "follow_up": entry.follow_up,
          "age": entry.age,
          "sex": entry.sex,
          "view": entry.view,
          "original_width": entry.width,
          "original_height": entry.height,
          "pixel_spacing": np.asarray(entry.spacing, dtype=np.float32),
          "bboxes": {
            "bbox": [b.bbox for b in image_boxes],
            "label": [b.label for b in image_boxes],
          },
          "filename": rel,
          "source": DATASET,
        },
      )
    log.log()
