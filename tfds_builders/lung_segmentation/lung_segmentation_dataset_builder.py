"""TFDS builder: chest X-rays paired with binary lung masks, to train a lung segmenter (UNet).

Sources, one config each (and `all`, their union):

* `cohen_v7`: the V7 Labs lung annotations of Cohen's COVID-19 image data collection.
  J. P. Cohen, P. Morrison, L. Dao, K. Roth, T. Q. Duong, M. Ghassemi, "COVID-19 Image Data
  Collection: Prospective Predictions Are the Future", MELBA 2020 (arXiv:2006.11988); images and
  `metadata.csv` from https://github.com/ieee8023/covid-chestxray-dataset; masks as shipped in
  torchxrayvision (`torchxrayvision/data/semantic_masks_v7labs_lungs.zip`,
  https://github.com/mlmed/torchxrayvision), made by V7 Labs
  (https://github.com/v7labs/covid-19-xray-dataset).
* `montgomery`: Montgomery County X-ray set with manual left/right lung masks. S. Jaeger, S.
  Candemir, S. Antani, Y.-X. J. Wang, P.-X. Lu, G. Thoma, "Two public chest X-ray datasets for
  computer-aided screening of pulmonary diseases", Quant. Imaging Med. Surg. 4(6):475-477, 2014;
  S. Candemir et al., "Lung segmentation in chest radiographs using anatomical atlases with
  nonrigid registration", IEEE TMI 33(2):577-590, 2014. Data: U.S. National Library of Medicine,
  https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html#tuberculosis-image-data-sets
* `shenzhen`: Shenzhen Hospital X-ray set (same Jaeger et al. paper, same NLM page) with the lung
  masks of S. Stirenko et al., "Chest X-ray analysis of tuberculosis by deep learning with
  segmentation and augmentation", IEEE ELNANO 2018 (arXiv:1803.01199), published on Kaggle as
  `yoctoman/shcxr-lung-mask` (566 masks for the 662 images) and repackaged with the images in
  `nikhilpandey360/chest-xray-masks-and-labels` (`Lung Segmentation/`).

Every example is an image (grey, PNG, (H, W, 1)) and a mask (PNG, (H, W, 1), 0 background / 255
lung, the image's size). Masks are binarised at 75% of their full scale (192 for 8-bit masks):
the real V7 masks hold 255 for lung, 127 for other annotated objects (side markers, tubes,
electrodes: not lung) and 1/254 JPEG ringing, so the usual `> 127` threshold would be wrong.
Colour masks use the maximum over R, G, B (pixels with alpha 0 are background). A mask of another
size than its image is resized with nearest neighbour (flagged) when the aspect ratios agree, and
skipped otherwise. No upstream has an official split: one `train` split per config (jaxcxr makes
patient-disjoint splits at training time with StratifiedGroupKFold on `patient_id`).

Build with:

    tfds build tfds_builders/lung_segmentation --manual_dir=PATH --config=montgomery \
        --file_format=array_record

`cohen_v7` downloads the two GitHub archives when no manual dir is given.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath
from PIL import Image

from tfds_builders import common

COHEN, MONTGOMERY, SHENZHEN = "cohen_v7", "montgomery", "shenzhen"
SOURCES = (COHEN, MONTGOMERY, SHENZHEN)

# A mask pixel is lung when >= this fraction of the mask's full scale (192 of 255): above the V7
# masks' 127 "other object" value and their JPEG ringing (1, 254, 126-128).
MASK_THRESHOLD = 0.75
# Lung fields cover about 20-60% of a chest film (measured: 17-61% on the real V7 sample); masks
# outside this range are kept but flagged for a look.
PLAUSIBLE_COVERAGE = (0.05, 0.85)
# A mask whose width/height ratio differs from its image's by more than this annotates another
# crop: resizing it would misplace the lungs.
MAX_ASPECT_MISMATCH = 0.02
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})

_V7_DIR = "semantic_masks_v7labs_lungs"
_COHEN_REPO_URL = "https://github.com/ieee8023/covid-chestxray-dataset"
_COHEN_ARCHIVE_URL = f"{_COHEN_REPO_URL}/archive/refs/heads/master.zip"
_V7_MASKS_URL = (
  "https://github.com/mlmed/torchxrayvision/raw/master/torchxrayvision/data/"
  "semantic_masks_v7labs_lungs.zip"
)
_NLM_URL = "https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html#tuberculosis-image-data-sets"
_STIRENKO_URL = "https://www.kaggle.com/datasets/yoctoman/shcxr-lung-mask"
_PANDEY_URL = "https://www.kaggle.com/datasets/nikhilpandey360/chest-xray-masks-and-labels"

_LAYOUTS = {
  COHEN: f"""\
  <manual_dir>/covid-chestxray-dataset/     (or these directly in <manual_dir>)
      metadata.csv                          (optional: patient ids; without it, flagged)
      images/<file>
      {_V7_DIR}/<same file name as the image>""",
  MONTGOMERY: """\
  <manual_dir>/MontgomerySet/               (or these directly in <manual_dir>)
      CXR_png/MCUCXR_0001_0.png             (_0 normal, _1 tuberculosis)
      ManualMask/leftMask/MCUCXR_0001_0.png
      ManualMask/rightMask/MCUCXR_0001_0.png
      ClinicalReadings/MCUCXR_0001_0.txt    (optional: sex, age, reading)
  or Kaggle's combined copy: <manual_dir>/Lung Segmentation/{CXR_png,masks,ClinicalReadings}/
      (masks/MCUCXR_0001_0.png = left + right)""",
  SHENZHEN: """\
  <manual_dir>/ChinaSet_AllFiles/           (or these directly in <manual_dir>)
      CXR_png/CHNCXR_0001_0.png             (_0 normal, _1 tuberculosis)
      ClinicalReadings/CHNCXR_0001_0.txt    (optional: sex, age, reading)
  <manual_dir>/mask/CHNCXR_0001_0_mask.png  (Stirenko's masks; also accepted: mask/mask/, or
                                             mask/ inside ChinaSet_AllFiles/)
  or Kaggle's combined copy: <manual_dir>/Lung Segmentation/{CXR_png,masks,ClinicalReadings}/
      (masks/CHNCXR_0001_0_mask.png)""",
}
_DOWNLOADS = {
  COHEN: f"""\
Cohen's images and metadata.csv: {_COHEN_REPO_URL} (git clone, or {_COHEN_ARCHIVE_URL}).
The V7 Labs lung masks: {_V7_MASKS_URL} (also inside the torchxrayvision wheel on PyPI, at
torchxrayvision/data/); unzip it into the covid-chestxray-dataset folder. Without --manual_dir,
the cohen_v7 config downloads both.""",
  MONTGOMERY: f"""\
Montgomery County set: NLM, {_NLM_URL} (NLM-MontgomeryCXRSet.zip), or Kaggle {_PANDEY_URL}.""",
  SHENZHEN: f"""\
Shenzhen set: NLM, {_NLM_URL} (ChinaSet_AllFiles.zip); its lung masks: Kaggle {_STIRENKO_URL}
(unzip as mask/ beside ChinaSet_AllFiles/). Or both from Kaggle {_PANDEY_URL}.""",
}


def _instructions(sources: tuple[str, ...]) -> str:
  return "\n".join(f"[{s}] expected layout:\n{_LAYOUTS[s]}\n{_DOWNLOADS[s]}" for s in sources)


# ---------------------------------------------------------------------------------------------
# Masks.


def binarize_mask(data: bytes) -> tuple[np.ndarray, bool]:
  """Decodes a mask file into a boolean lung array.

  Args:
    data: the mask file's bytes (PNG/JPEG; grey, 0/1, bilevel, 16-bit, RGB(A), palette).

  Returns:
    `(lung, converted)`: `lung` is (H, W) bool, True where the mask is >= MASK_THRESHOLD of its
    full scale (255, or 65535 for 16-bit masks, or 1 for 0/1 masks stored losslessly);
    `converted` says the mask was not single-channel (the colour maximum was used).

  Raises:
    Exception: whatever PIL raises on a corrupt file.
  """
  with Image.open(io.BytesIO(data)) as img:
    img.load()  # A full decode: truncated files fail here, not later.
    fmt, mode = img.format, img.mode
    arr = np.asarray(img.convert("RGBA") if mode == "P" else img)
  converted = arr.ndim == 3
  if converted:
    channels = arr.shape[-1]
    value = arr[..., :3].max(axis=-1) if channels >= 3 else arr[..., 0]
    if channels in (2, 4):  # LA / RGBA: transparent pixels are background.
      value = np.where(arr[..., -1] > 0, value, 0)
  else:
    value = arr
  value = value.astype(np.float64)
  peak = value.max() if value.size else 0.0
  if peak > 255:
    full_scale = 65535.0
  elif peak == 1 and fmt != "JPEG":
    full_scale = 1.0  # 0/1 masks (or mode "1"); in a JPEG a lone 1 is compression noise.
  else:
    full_scale = 255.0
  return value >= MASK_THRESHOLD * full_scale, converted


def mask_png(lung: np.ndarray) -> bytes:
  """PNG bytes of a (H, W) bool mask as 0/255 grey."""
  buf = io.BytesIO()
  Image.fromarray(np.where(lung, 255, 0).astype(np.uint8), "L").save(buf, format="PNG")
  return buf.getvalue()


def resize_nearest(lung: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Resizes a (H, W) bool mask to `size` = (width, height) with nearest neighbour."""
  img = Image.fromarray(np.where(lung, 255, 0).astype(np.uint8), "L")
  return np.asarray(img.resize(size, Image.NEAREST)) > 127


# ---------------------------------------------------------------------------------------------
# Clinical readings (Montgomery and Shenzhen `ClinicalReadings/*.txt`).

# Montgomery: "Patient's Sex: M", "Patient's Age: 049Y" (DICOM age strings: nnnY/M/W/D).
_MC_SEX = re.compile(r"^\s*patient'?s\s+sex\s*:\s*(\S*)", re.IGNORECASE)
_MC_AGE = re.compile(r"^\s*patient'?s\s+age\s*:\s*(\d+)\s*([ymwd]?)", re.IGNORECASE)
# Shenzhen first line: "male 45yrs", "female24yrs", "male , 29yrs", "Female, 28yrs", "femal 32yrs",
# "male 16month", "female 64days", "male 42".
_SZ_SEX = re.compile(r"^\s*(female|femal|male)", re.IGNORECASE)
_SZ_AGE = re.compile(r"(\d+)\s*(yrs?|years?|y|months?|mon|m|weeks?|w|days?|d)?\b", re.IGNORECASE)
# "NO REPORT (same pt as MCUCXR_0162_1)": two images of one patient.
_SAME_PATIENT = re.compile(r"same\s+(?:pt|patient)\s+as\s+((?:MCUCXR|CHNCXR)_\d+)", re.IGNORECASE)
# MCUCXR_0001_0.png: set, image number, 0 normal / 1 tuberculosis.
_NLM_NAME = re.compile(r"^(MCUCXR|CHNCXR)_(\d+)_([01])$")
_NLM_PREFIX = {MONTGOMERY: "MCUCXR", SHENZHEN: "CHNCXR"}


def _years(value: str, unit: str) -> int:
  """Age in whole years from a number and a unit (years when no unit)."""
  unit = unit.lower()
  n = int(value)
  if unit.startswith("m"):
    return n // 12
  if unit.startswith(("w", "d")):
    return 0
  return n


@dataclasses.dataclass(frozen=True)
class Reading:
  """What a clinical reading file says: sex `M`/`F`/'' (unknown), age in years (-1 unknown)."""

  sex: str = ""
  age: int = -1
  text: str = ""
  same_patient_as: str | None = None  # e.g. `MCUCXR_0162`.


def parse_reading(text: str) -> Reading:
  """Parses a Montgomery or a Shenzhen `ClinicalReadings/*.txt` file (the format is detected)."""
  lines = [" ".join(line.split()) for line in text.splitlines()]
  lines = [line for line in lines if line]
  sex, age, rest = "", -1, []
  if any(_MC_SEX.match(line) or _MC_AGE.match(line) for line in lines):
    for line in lines:
      if m := _MC_SEX.match(line):
        sex = {"M": "M", "F": "F"}.get(m.group(1).upper()[:1], "")  # "O" (other): unknown.
      elif m := _MC_AGE.match(line):
        age = _years(m.group(1), m.group(2))
      else:
        rest.append(line)
  elif lines:
    first = lines[0]
    # The first line is demographics if it starts with the sex or is an age alone ("45yrs"): a
    # reading such as "PTB, 2 cavities" must not give an age.
    sex_m = _SZ_SEX.match(first)
    after_sex = first[sex_m.end() :] if sex_m else first
    age_m = _SZ_AGE.search(after_sex) if sex_m else _SZ_AGE.fullmatch(first.strip())
    if sex_m or age_m:
      if sex_m:
        sex = "F" if sex_m.group(1).lower().startswith("fem") else "M"
      if age_m:
        age = _years(age_m.group(1), age_m.group(2) or "")
      rest = lines[1:]
    else:
      rest = lines
  reading = " ".join(rest)
  same = _SAME_PATIENT.search(reading)
  return Reading(sex, age, reading, same.group(1).upper() if same else None)


# ---------------------------------------------------------------------------------------------
# Finding the data on disk.


@dataclasses.dataclass(frozen=True)
class Pair:
  """An image and its mask file(s) (the mask is their union: Montgomery's left + right)."""

  filename: str  # The image path relative to the source root; also the example key.
  image: epath.Path
  masks: tuple[epath.Path, ...]
  patient_id: str
  sex: str = ""
  age: int = -1
  tb: int = -1
  view: str = ""
  reading: str = ""
  # Doubts to flag if the pair makes an example (not when it is skipped later).
  flags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class CohenLayout:
  root: epath.Path  # Holds images/ and metadata.csv.
  mask_dir: epath.Path


@dataclasses.dataclass(frozen=True)
class NlmLayout:
  """Where a Montgomery or Shenzhen copy keeps its files."""

  base: epath.Path  # Log names are relative to it (the manual dir).
  root: epath.Path  # Holds CXR_png/ and ClinicalReadings/; `filename`s are relative to it.
  # An image's mask is the union of its file in each: `<stem>.png` or `<stem>_mask.png`.
  mask_dirs: tuple[epath.Path, ...]


def _not_found(source: str, manual_dir: epath.Path, what: str) -> FileNotFoundError:
  return FileNotFoundError(
    f"{manual_dir} does not hold the {source} layout: {what} "
    f"(found: {common.listing(manual_dir)}).\n{_instructions((source,))}"
  )


def _check_dir(source: str, manual_dir: epath.Path) -> None:
  if not manual_dir.is_dir():
    raise FileNotFoundError(
      f"Manual directory {manual_dir} does not exist.\n{_instructions((source,))}"
    )


def find_cohen(manual_dir: epath.PathLike, extra_mask_parents=()) -> CohenLayout:
  """Finds Cohen's `images/` and the V7 `semantic_masks_v7labs_lungs/` in `manual_dir`.

  Accepts the covid-chestxray-dataset folder itself, its parent, or the parent of the GitHub
  archive's `covid-chestxray-dataset-master/`; the masks folder inside the dataset folder, beside
  it, or in one of `extra_mask_parents`.

  Raises:
    FileNotFoundError: naming the path, the expected layout and where to download.
  """
  manual_dir = epath.Path(manual_dir)
  _check_dir(COHEN, manual_dir)
  roots = [manual_dir / "covid-chestxray-dataset", manual_dir / "covid-chestxray-dataset-master"]
  for root in [*roots, manual_dir]:
    if not (root / "images").is_dir():
      continue
    parents = [root, manual_dir, *map(epath.Path, extra_mask_parents)]
    for mask_dir in (p / _V7_DIR for p in parents):
      if mask_dir.is_dir():
        return CohenLayout(root, mask_dir)
    raise _not_found(COHEN, manual_dir, f"{root / 'images'} found but no {_V7_DIR}/ for it")
  raise _not_found(COHEN, manual_dir, "no images/ folder")


def _kaggle_roots(manual_dir: epath.Path) -> list[epath.Path]:
  """Where Kaggle's chest-xray-masks-and-labels copy may sit."""
  return [
    manual_dir / "Lung Segmentation",
    manual_dir / "data" / "Lung Segmentation",
    manual_dir,
  ]


def find_montgomery(manual_dir: epath.PathLike) -> NlmLayout:
  """Finds the Montgomery set (NLM layout, else Kaggle's combined copy) in `manual_dir`."""
  manual_dir = epath.Path(manual_dir)
  _check_dir(MONTGOMERY, manual_dir)
  for root in (manual_dir / "MontgomerySet", manual_dir):
    sides = (root / "ManualMask" / "leftMask", root / "ManualMask" / "rightMask")
    if (root / "CXR_png").is_dir() and all(d.is_dir() for d in sides):
      return NlmLayout(manual_dir, root, sides)
  for root in _kaggle_roots(manual_dir):
    if (root / "CXR_png").is_dir() and (root / "masks").is_dir():
      return NlmLayout(manual_dir, root, (root / "masks",))
  raise _not_found(MONTGOMERY, manual_dir, "no CXR_png/ with ManualMask/leftMask, rightMask")


def find_shenzhen(manual_dir: epath.PathLike) -> NlmLayout:
  """Finds the Shenzhen images and Stirenko's masks (NLM + Kaggle, or Kaggle's combined copy)."""
  manual_dir = epath.Path(manual_dir)
  _check_dir(SHENZHEN, manual_dir)
  nested = manual_dir / "ChinaSet_AllFiles"
  image_roots = [nested / "ChinaSet_AllFiles", nested, *_kaggle_roots(manual_dir)]
  for root in image_roots:
    if not (root / "CXR_png").is_dir():
      continue
    for parent in dict.fromkeys([root, root.parent, manual_dir]):  # Ordered, deduplicated.
      for sub in ("mask/mask", "mask", "masks"):
        if (parent / sub).is_dir():
          return NlmLayout(manual_dir, root, (parent / sub,))
  raise _not_found(SHENZHEN, manual_dir, "no CXR_png/ with a mask/ (or masks/) folder")


def _rel(path: epath.Path, *bases: epath.Path) -> str:
  """`path` relative to the first of `bases` that holds it."""
  for base in bases:
    try:
      return str(path.relative_to(base))
    except ValueError:
      pass
  return str(path)


def _is_image_file(path: epath.Path) -> bool:
  # `.DS_Store`, macOS `._*` forks, `Thumbs.db`, sub-folders: not data.
  return not path.name.startswith(".") and path.suffix.lower() in _IMAGE_SUFFIXES and path.is_file()


class _Log:
  """A SkipLog view that prefixes names (with the source, in the `all` config)."""

  def __init__(self, log: common.SkipLog, prefix: str = ""):
    self._log, self._prefix = log, prefix

  def skip(self, reason: str, name: str) -> None:
    self._log.skip(reason, self._prefix + name)

  def flag(self, reason: str, name: str) -> None:
    self._log.flag(reason, self._prefix + name)


def _read_cohen_metadata(path: epath.Path) -> dict[str, list[dict[str, str]]] | None:
  """`metadata.csv` rows by `filename`, or None when there is no metadata.csv."""
  if not path.is_file():
    return None
  rows: dict[str, list[dict[str, str]]] = {}
  # The csv module, not line splitting: clinical_notes hold quoted commas and newlines.
  reader = csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8", errors="replace")))
  missing = {"patientid", "filename"} - set(reader.fieldnames or ())
  if missing:
    raise ValueError(f"{path}: columns {sorted(missing)} missing (header: {reader.fieldnames})")
  duplicated = sorted({c for c in reader.fieldnames if reader.fieldnames.count(c) > 1})
  if duplicated:  # the last copy would silently replace the first in every row
    raise ValueError(f"{path}: column(s) {duplicated} appear more than once in the header.")
  shifted = 0
  for row in reader:
    if None in row or None in row.values():
      # More or fewer cells than the header: shifted columns, no cell can be trusted. The
      # image is then flagged as having no metadata row.
      shifted += 1
      continue
    rows.setdefault((row["filename"] or "").strip(), []).append(row)
  if shifted:
    logging.warning(
      "%s: %d row(s) with another number of cells than the header ignored.", path, shifted
    )
  return rows


def _age(value: str | None) -> int:
  try:
    return int(float(value)) if value and value.strip() else -1
  except ValueError:
    return -1


def cohen_pairs(layout: CohenLayout, log: _Log, counts: dict[str, int]) -> Iterator[Pair]:
  """Pairs each V7 mask with its Cohen image; patient ids etc. from metadata.csv."""
  metadata = _read_cohen_metadata(layout.root / "metadata.csv")
  if metadata is None:
    logging.warning(
      "%s has no metadata.csv: every patient id is the file stem (flagged).", layout.root
    )
  images = {p.name: p for p in (layout.root / "images").iterdir() if _is_image_file(p)}
  counts.update(masks=0, matched=0)
  for mask in common.list_dir(layout.mask_dir, log, _V7_DIR):
    mask_rel = f"{_V7_DIR}/{mask.name}"
    if not _is_image_file(mask):
      log.skip("non-image file (ignored)", mask_rel)
      continue
    counts["masks"] += 1
    image = images.get(mask.name)
    if image is None:
      log.skip("mask without image", mask_rel)
      continue
    counts["matched"] += 1
    rel = f"images/{mask.name}"
    rows = (metadata or {}).get(mask.name, [])
    row = rows[0] if rows else {}
    flags = []
    if len({r.get("patientid") for r in rows}) > 1:
      flags.append("several metadata.csv rows with different patient ids (first used)")
    modality = (row.get("modality") or "").strip()
    if modality and modality.lower() != "x-ray":
      # V7 left CT slices unannotated (all-zero masks) except one coronal slice; not a radiograph.
      log.skip("not an X-ray (metadata.csv modality, e.g. CT)", rel)
      continue
    patient_id = (row.get("patientid") or "").strip()
    if not patient_id:
      flags.append("no metadata.csv row or patient id (patient id = file stem)")
      patient_id = image.stem
    sex = (row.get("sex") or "").strip().upper()
    yield Pair(
      filename=rel,
      image=image,
      masks=(mask,),
      patient_id=patient_id,
      sex=sex if sex in ("M", "F") else "",
      age=_age(row.get("age")),
      view=(row.get("view") or "").strip(),
      reading=(row.get("finding") or "").strip(),
      flags=tuple(flags),
    )
  counts["images_without_mask"] = len(images) - counts["matched"]


def _mask_stem(name: str) -> str:
  stem = name.rsplit(".", 1)[0]
  return stem[: -len("_mask")] if stem.endswith("_mask") else stem


def group_same_patient(refs: dict[str, str]) -> dict[str, str]:
  """Groups image numbers linked by "same pt as" readings; maps each to its group's lowest number.

  Args:
    refs: image number -> the image number its reading names, e.g. `MCUCXR_0004 -> MCUCXR_0003`.

  Returns:
    image number -> patient id, for every number in `refs` (keys or values); chains and cycles
    end up in one group.
  """
  parent: dict[str, str] = {}

  def root(x: str) -> str:
    while parent.get(x, x) != x:
      x = parent[x]
    return x

  for a, b in refs.items():
    ra, rb = root(a), root(b)
    if ra != rb:
      parent[max(ra, rb)] = min(ra, rb)
  return {x: root(x) for x in {*refs, *refs.values()}}


def nlm_pairs(source: str, layout: NlmLayout, log: _Log, counts: dict[str, int]) -> Iterator[Pair]:
  """Pairs Montgomery or Shenzhen images with their masks; sex, age, reading from the readings."""
  prefix = _NLM_PREFIX[source]
  other = f"other NLM set's file ({'/'.join(p for p in _NLM_PREFIX.values() if p != prefix)}_*)"
  # Mask files by image stem, per mask dir.
  masks: list[dict[str, epath.Path]] = []
  counts.update(masks=0, matched=0, images_without_mask=0)
  for mask_dir in layout.mask_dirs:
    found = {}
    for p in common.list_dir(mask_dir, log, _rel(mask_dir, layout.root, layout.base)):
      if not _is_image_file(p):
        log.skip("non-image file (ignored)", _rel(p, layout.root, layout.base))
      elif not p.name.startswith(prefix):
        log.skip(other, _rel(p, layout.root, layout.base))
      else:
        found[_mask_stem(p.name)] = p
    masks.append(found)
  counts["masks"] = len(set().union(*masks))  # Images with a mask file (left or right) on disk.

  images = {}
  for p in common.list_dir(layout.root / "CXR_png", log, "CXR_png"):
    rel = f"CXR_png/{p.name}"
    if not _is_image_file(p):
      log.skip("non-image file (ignored)", rel)
    elif not p.name.startswith(prefix):
      log.skip(other, rel)
    else:
      images[p.stem] = p

  for stem in sorted(set().union(*masks) - set(images)):
    for found in masks:
      if stem in found:
        log.skip("mask without image", _rel(found[stem], layout.root, layout.base))

  readings: dict[str, Reading] = {}
  readings_dir = layout.root / "ClinicalReadings"
  for stem in images:
    path = readings_dir / f"{stem}.txt"
    if path.is_file():
      # Not all readings are UTF-8; a stray byte must not lose the file.
      readings[stem] = parse_reading(path.read_bytes().decode("utf-8", errors="replace"))

  def number(stem: str) -> str:  # MCUCXR_0001_0 -> MCUCXR_0001: the image number.
    m = _NLM_NAME.match(stem)
    return f"{m.group(1)}_{m.group(2)}" if m else stem

  same = group_same_patient(
    {number(s): r.same_patient_as for s, r in readings.items() if r.same_patient_as}
  )

  for stem, image in images.items():
    rel = f"CXR_png/{image.name}"
    files = tuple(found.get(stem) for found in masks)
    if not any(files):
      log.skip("image without mask", rel)
      counts["images_without_mask"] += 1
      continue
    if not all(files):
      log.skip("incomplete mask (left or right lung mask missing)", rel)
      continue
    counts["matched"] += 1
    # Upstream publishes no patient ids, only one number per radiograph.
    flags = ["patient id = image number (upstream has no patient ids)"]
    m = _NLM_NAME.match(stem)
    if not m:
      flags.append(f"file name not {prefix}_NNNN_0/1 (tb unknown)")
    reading = readings.get(stem)
    if reading is None:
      flags.append("no clinical reading (sex, age unknown)")
      reading = Reading()
    patient_id = same.get(number(stem), number(stem))
    if number(stem) in same:
      flags.append("same patient as another image (a reading says 'same pt as')")
    yield Pair(
      filename=rel,
      image=image,
      masks=files,
      patient_id=patient_id,
      sex=reading.sex,
      age=reading.age,
      tb=int(m.group(3)) if m else -1,
      view="PA",  # Jaeger et al. 2014: both sets are postero-anterior radiographs.
      reading=reading.text,
      flags=tuple(flags),
    )


_FINDERS: dict[str, Callable[[epath.Path], CohenLayout | NlmLayout]] = {
  COHEN: find_cohen,
  MONTGOMERY: find_montgomery,
  SHENZHEN: find_shenzhen,
}


# ---------------------------------------------------------------------------------------------
# The builder.


def load_pair(pair: Pair, log: _Log, name: str) -> tuple[bytes, bytes, float] | None:
  """Reads `pair`: `(image PNG, mask PNG, lung fraction)`, or None (skipped, logged)."""
  image = common.image_or_skip(log, name, pair.image, "png")
  if image is None:
    return None
  with Image.open(io.BytesIO(image)) as img:
    size = img.size  # (width, height)
  lungs, flags = [], []  # Flags are logged only if the pair makes an example.
  for path in pair.masks:
    try:
      lung, converted = binarize_mask(path.read_bytes())
    except Exception:  # pylint: disable=broad-except
      log.skip("unreadable/corrupt mask", name)
      return None
    if converted:
      flags.append("mask not single-channel (RGB/alpha/palette: colour maximum used)")
    lungs.append(lung)
  if len({lung.shape for lung in lungs}) > 1:
    log.skip("left and right lung masks differ in size", name)
    return None
  lung = np.logical_or.reduce(lungs)
  height, width = lung.shape
  if (width, height) != size:
    aspect, mask_aspect = size[0] / size[1], width / height
    if abs(mask_aspect - aspect) > MAX_ASPECT_MISMATCH * aspect:
      log.skip("mask aspect ratio differs from the image's", name)
      return None
    flags.append("mask resized to the image size (nearest neighbour)")
    lung = resize_nearest(lung, size)
  coverage = float(lung.mean())
  if coverage == 0:
    log.skip("empty mask (no lung annotated)", name)
    return None
  if not PLAUSIBLE_COVERAGE[0] <= coverage <= PLAUSIBLE_COVERAGE[1]:
    flags.append("implausible lung fraction (< 5% or > 85% of the image)")
  for reason in dict.fromkeys(flags):  # Montgomery: once, not per lung.
    log.flag(reason, name)
  return image, mask_png(lung), coverage


@dataclasses.dataclass
class LungSegmentationConfig(tfds.core.BuilderConfig):
  """Builder config naming the upstream sets it builds from.

  Attributes:
    sources: a subset of SOURCES, in build order.
  """

  sources: tuple[str, ...] = (COHEN,)


def _manual_dir_given(dl_manager: tfds.download.DownloadManager) -> bool:
  """Whether the user gave a manual dir (tfds substitutes `<download_dir>/manual` otherwise)."""
  # DownloadManager keeps the path only privately; `manual_dir` raises when it is missing.
  path = getattr(dl_manager, "_manual_dir", None)
  return path is not None and epath.Path(path) != epath.Path(dl_manager.download_dir) / "manual"


class Builder(common.SkipReportMixin, tfds.core.GeneratorBasedBuilder):
  """Chest X-rays with binary lung masks (Cohen/V7, Montgomery, Shenzhen), for lung segmentation."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "Pass the folder holding the dataset(s) (or the dataset folder itself) as --manual_dir.\n"
    + _instructions(SOURCES)
    + "\n[all] needs the three above in the same --manual_dir.\n"
  )
  BUILDER_CONFIGS = [
    LungSegmentationConfig(
      name=COHEN,
      description="Cohen's COVID-19 image collection with V7 Labs lung masks.",
      sources=(COHEN,),
    ),
    LungSegmentationConfig(
      name=MONTGOMERY,
      description="Montgomery County set, manual masks (left + right lungs).",
      sources=(MONTGOMERY,),
    ),
    LungSegmentationConfig(
      name=SHENZHEN,
      description="Shenzhen Hospital set with Stirenko et al.'s masks (images with a mask).",
      sources=(SHENZHEN,),
    ),
    LungSegmentationConfig(
      name="all",
      description="Union of cohen_v7, montgomery and shenzhen; keys are `<source>/<filename>`.",
      sources=SOURCES,
    ),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = MONTGOMERY

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    # {source: {masks, matched, images_without_mask, examples, mean_coverage}}.
    self.summary: dict[str, dict[str, float]] = {}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(
            shape=(None, None, 1), encoding_format="png", doc="Radiograph, grey."
          ),
          "mask": tfds.features.Image(
            shape=(None, None, 1),
            encoding_format="png",
            doc="Lung mask, 0 background / 255 lung, same size as the image.",
          ),
          "patient_id": tfds.features.Text(doc="Upstream patient id, or the image number."),
          "filename": tfds.features.Text(doc="Image path relative to the upstream root."),
          "source": tfds.features.Text(doc="cohen_v7, montgomery or shenzhen."),
          "sex": tfds.features.Text(doc="M, F, or empty when unknown."),
          "age": tfds.features.Scalar(np.int32, doc="Age in years; -1 when unknown."),
          "tb": tfds.features.Scalar(
            np.int32, doc="1 tuberculosis, 0 normal (NLM file name _1/_0); -1 unknown (Cohen)."
          ),
          "view": tfds.features.Text(doc="Projection (Cohen metadata.csv view; NLM sets: PA)."),
          "reading": tfds.features.Text(
            doc="NLM clinical reading text; Cohen: the metadata.csv finding."
          ),
        }
      ),
      supervised_keys=("image", "mask"),
      homepage=_NLM_URL,
    )

  def _layouts(
    self, dl_manager: tfds.download.DownloadManager
  ) -> dict[str, CohenLayout | NlmLayout]:
    sources = self.builder_config.sources
    instructions = _instructions(sources)
    try:
      manual = common.manual_dir(dl_manager, instructions)
    except FileNotFoundError:
      if sources != (COHEN,) or _manual_dir_given(dl_manager):
        raise
      # Cohen's images and the V7 masks are public GitHub files: fetch them.
      paths = dl_manager.download_and_extract({"repo": _COHEN_ARCHIVE_URL, "masks": _V7_MASKS_URL})
      return {COHEN: find_cohen(paths["repo"], extra_mask_parents=[paths["masks"]])}
    return {s: _FINDERS[s](manual) for s in sources}

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    return {"train": self._generate_examples(self._layouts(dl_manager))}

  def _generate_examples(
    self, layouts: dict[str, CohenLayout | NlmLayout]
  ) -> Iterator[tuple[str, dict]]:
    """Yields `(key, example)` per image with a usable mask, source by source."""
    union = len(layouts) > 1
    log = self.skip_log("train", f"{self.name}/{self.builder_config.name}")
    for source, layout in layouts.items():
      source_log = _Log(log, f"{source}/" if union else "")
      counts: dict[str, float] = {}
      self.summary[source] = counts
      pairs = (
        cohen_pairs(layout, source_log, counts)
        if source == COHEN
        else nlm_pairs(source, layout, source_log, counts)
      )
      coverages = []
      for pair in pairs:
        key = f"{source}/{pair.filename}" if union else pair.filename
        loaded = load_pair(pair, source_log, pair.filename)
        if loaded is None:
          continue
        image, mask, coverage = loaded
        for reason in pair.flags:
          source_log.flag(reason, pair.filename)
        coverages.append(coverage)
        yield (
          key,
          {
            "image": image,
            "mask": mask,
            "patient_id": pair.patient_id,
            "filename": pair.filename,
            "source": source,
            "sex": pair.sex,
            "age": pair.age,
            "tb": pair.tb,
            "view": pair.view,
            "reading": pair.reading,
          },
        )
      counts.update(examples=len(coverages), mean_coverage=float(np.mean(coverages or [0.0])))
      logging.info(
        "lung_segmentation %s: %d mask(s), %d matched an image, %d image(s) without mask "
        "(%s), %d example(s), mean lung fraction %.3f.",
        source,
        counts["masks"],
        counts["matched"],
        counts["images_without_mask"],
        "not part of this dataset" if source == COHEN else "skipped",
        counts["examples"],
        counts["mean_coverage"],
      )
    log.log()
