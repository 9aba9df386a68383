"""TFDS builder for Cohen et al.'s COVID-19 image data collection (frontal chest X-rays).

Dataset: J. P. Cohen, P. Morrison, L. Dao, K. Roth, T. Q. Duong, M. Ghassemi, "COVID-19 Image
Data Collection: Prospective Predictions Are the Future", Machine Learning for Biomedical Imaging
(MELBA) 2020, arXiv:2006.11988; J. P. Cohen, P. Morrison, L. Dao, "COVID-19 image data
collection", arXiv:2003.11597, 2020.
Data: https://github.com/ieee8023/covid-chestxray-dataset (`metadata.csv` + `images/`; the column
meanings are in the repository's SCHEMA.md). Lung masks: V7 Labs annotations of these images, as
shipped by torchxrayvision (`torchxrayvision/data/semantic_masks_v7labs_lungs.zip`,
https://github.com/mlmed/torchxrayvision).

Without `--manual_dir` the builder downloads the repository archive (branch master; large: all
images and CT volumes, no lung masks); with `--manual_dir` it reads a local copy (see
`MANUAL_DOWNLOAD_INSTRUCTIONS`). Build with:

    tfds build tfds_builders/covid_chestxray --manual_dir=PATH/TO/covid-chestxray-dataset \
        --file_format=array_record --config=3class

Only frontal X-rays are kept (view PA, AP, AP Supine, AP semi erect, AP erect; modality X-ray).
Every other metadata row (lateral or unknown views, CT, `volumes/` rows, `todo` findings, findings
outside the config's label scheme, unknown finding strings, rows whose file is missing or
unreadable) and every file of `images/` without a row is skipped and counted by reason in
`builder.skipped["train"]`, and logged; each row is counted once, under the first reason that
applies, in the order of `_generate_examples`.

Two configs, one mapping table (`FINDING_GROUPS`, flat 2020 values and the later hierarchical
ones): `3class` (covid-19 / other_pneumonia / no_finding) and `2class` (covid-19 / other).
Images are stored single-channel (`common.grayscale_image_bytes`): grey JPEGs byte for byte,
everything else (RGB/RGBA PNGs cropped from papers, RGB JPEGs) converted to `L` and re-encoded as
JPEG (quality 95).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import urllib.parse
from collections.abc import Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath
from PIL import Image

from tfds_builders import common

_HOMEPAGE = "https://github.com/ieee8023/covid-chestxray-dataset"
# The archive of the default branch: unzips to `covid-chestxray-dataset-master/`. It changes with
# every upstream commit, so there is no checksums file to pin it.
ARCHIVE_URL = "https://github.com/ieee8023/covid-chestxray-dataset/archive/refs/heads/master.zip"
_ARCHIVE_TOP_DIR = "covid-chestxray-dataset-master"
_DATASET_DIR = "covid-chestxray-dataset"
_MASKS_URL = (
  "https://github.com/mlmed/torchxrayvision/raw/master/torchxrayvision/data/"
  "semantic_masks_v7labs_lungs.zip"
)
METADATA = "metadata.csv"
IMAGES_DIR = "images"
MASKS_DIR = "semantic_masks_v7labs_lungs"
_REQUIRED_COLUMNS = ("patientid", "finding", "view", "modality", "filename")
# A row whose cell count differs from the header's: its columns are shifted, so none of its cells
# (finding, view, filename) can be trusted.
SKIP_SHIFTED_ROW = "row with another number of cells than the header (shifted columns)"

# Frontal X-ray views, compared after `normalize_text` (upstream writes `AP semi erect`, `AP erect`
# and, in some versions, `AP Erect`). `L` (lateral), CT's `Axial`/`Coronal`, blank and `?` are not.
FRONTAL_VIEWS = frozenset({"pa", "ap", "ap supine", "ap semi erect", "ap erect"})

# V7 Labs masks: lungs are 255, devices (pacemakers, pumps, ...) 127, background 0; many masks are
# JPEGs, so the values ring (1, 126, 128, 254). Lung = at least 192: keeps JPEG-noisy lung pixels
# and drops the device class, as torchxrayvision's `mask == 255` intends.
_LUNG_THRESHOLD = 192

_EXPECTED_LAYOUT = f"""\
  <manual_dir>/{_DATASET_DIR}/       (or these entries directly in <manual_dir>)
      {METADATA}                    (upstream header: patientid, offset, sex, age, finding, ...,
                                      view, modality, date, location, folder, filename, doi, url,
                                      license, clinical_notes, other_notes)
      {IMAGES_DIR}/*.jpg|jpeg|png
      {MASKS_DIR}/*            (optional: lung masks, same file names as images/)"""

_DOWNLOAD_HELP = f"""\
Without --manual_dir the builder downloads {ARCHIVE_URL} itself. To build from a local copy:
  git clone {_HOMEPAGE}
(or unzip that archive: it unzips to {_ARCHIVE_TOP_DIR}/) and pass the folder (or its parent) as
--manual_dir. Lung masks are optional and not in that repository: unzip torchxrayvision's
{_MASKS_URL}
into the same folder (it holds {MASKS_DIR}/)."""

# Label groups of the mapping table. A config maps groups to its labels; a group a config leaves
# out is skipped (counted) for that config.
COVID = "covid-19"
OTHER_PNEUMONIA = "other_pneumonia"
NO_FINDING = "no_finding"
# Not a pneumonia label (ARDS alone, tuberculosis, interstitial/organizing lung disease): neither
# "other pneumonia" nor "no finding" in 3class; part of "other" in 2class.
NOT_PNEUMONIA = "not_pneumonia"
TODO = "todo"  # Upstream's "not labelled yet": excluded from every config.
UNKNOWN_DIAGNOSIS = "unknown_diagnosis"  # Upstream's `Unknown`: excluded from every config.

# The one mapping table: upstream `finding` value -> group. Matched after `normalize_text`
# (whitespace collapsed, case folded: upstream has `Pneumonia/Viral/Herpes ` with a trailing space
# and `No Finding`/`No finding`). A value that is not here is skipped and named, never guessed.
# SARS and MERS are other coronaviruses, not COVID-19: other_pneumonia. "X, ARDS" keeps X.
FINDING_GROUPS: Mapping[str, str] = {
  # Flat values of the 2020 releases (e.g. the 2020-06-22 snapshot).
  "COVID-19": COVID,
  "COVID-19, ARDS": COVID,
  "SARS": OTHER_PNEUMONIA,
  "MERS-CoV": OTHER_PNEUMONIA,
  "Streptococcus": OTHER_PNEUMONIA,
  "Pneumocystis": OTHER_PNEUMONIA,
  "Klebsiella": OTHER_PNEUMONIA,
  "E.Coli": OTHER_PNEUMONIA,
  "Legionella": OTHER_PNEUMONIA,
  "Chlamydophila": OTHER_PNEUMONIA,
  "Mycoplasma Bacterial Pneumonia": OTHER_PNEUMONIA,
  "Nocardia": OTHER_PNEUMONIA,
  "MRSA": OTHER_PNEUMONIA,
  "Varicella": OTHER_PNEUMONIA,
  "Influenza": OTHER_PNEUMONIA,
  "Swine-Origin Influenza A (H1N1) Viral Pneumonia": OTHER_PNEUMONIA,
  "Herpes pneumonia": OTHER_PNEUMONIA,
  "Herpes pneumonia, ARDS": OTHER_PNEUMONIA,
  "Invasive Aspergillosis": OTHER_PNEUMONIA,
  "Lipoid": OTHER_PNEUMONIA,
  "Aspiration pneumonia": OTHER_PNEUMONIA,
  "Bacterial": OTHER_PNEUMONIA,
  "Pneumonia": OTHER_PNEUMONIA,
  "Lobar Pneumonia": OTHER_PNEUMONIA,
  "Multilobar Pneumonia": OTHER_PNEUMONIA,
  "Round pneumonia": OTHER_PNEUMONIA,
  "ARDS": NOT_PNEUMONIA,
  "Tuberculosis": NOT_PNEUMONIA,
  "Spinal Tuberculosis": NOT_PNEUMONIA,
  # Idiopathic interstitial / organizing / eosinophilic lung disease: "pneumonia" in name only.
  "Cryptogenic Organizing Pneumonia": NOT_PNEUMONIA,
  "Cryptogenic organising pneumonia": NOT_PNEUMONIA,
  "Organizing Pneumonia": NOT_PNEUMONIA,
  "Eosinophilic Pneumonia": NOT_PNEUMONIA,
  "Chronic eosinophilic pneumonia": NOT_PNEUMONIA,
  "Unusual Interstitial Pneumonia": NOT_PNEUMONIA,
  "Accelerated Phase Usual Interstitial Pneumonia": NOT_PNEUMONIA,
  "Lymphocytic Interstitial Pneumonia": NOT_PNEUMONIA,
  "Desquamative Interstitial Pneumonia": NOT_PNEUMONIA,
  "Allergic bronchopulmonary aspergillosis": NOT_PNEUMONIA,
  "No Finding": NO_FINDING,
  "todo": TODO,
  "Unknown": UNKNOWN_DIAGNOSIS,
  # Hierarchical values of the later releases (`Pneumonia/<kind>/<organism>`).
  "Pneumonia/Viral/COVID-19": COVID,
  "Pneumonia/Viral/SARS": OTHER_PNEUMONIA,
  "Pneumonia/Viral/MERS-CoV": OTHER_PNEUMONIA,
  "Pneumonia/Viral/Varicella": OTHER_PNEUMONIA,
  "Pneumonia/Viral/Influenza": OTHER_PNEUMONIA,
  "Pneumonia/Viral/Influenza/H1N1": OTHER_PNEUMONIA,
  "Pneumonia/Viral/Herpes": OTHER_PNEUMONIA,
  "Pneumonia/Bacterial": OTHER_PNEUMONIA,
  "Pneumonia/Bacterial/Streptococcus": OTHER_PNEUMONIA,
  "Pneumonia/Bacterial/Klebsiella": OTHER_PNEUMONIA,
  "Pneumonia/Bacterial/E.Coli": OTHER_PNEUMONIA,
  "Pneumonia/Bacterial/Legionella": OTHER_PNEUMONIA,
  "Pneumonia/Bacterial/Chlamydophila": OTHER_PNEUMONIA,
  "Pneumonia/Bacterial/Mycoplasma": OTHER_PNEUMONIA,
  "Pneumonia/Bacterial/Nocardia": OTHER_PNEUMONIA,
  "Pneumonia/Bacterial/Staphylococcus/MRSA": OTHER_PNEUMONIA,
  "Pneumonia/Fungal/Pneumocystis": OTHER_PNEUMONIA,
  "Pneumonia/Fungal/Aspergillosis": OTHER_PNEUMONIA,
  "Pneumonia/Lipoid": OTHER_PNEUMONIA,
  "Pneumonia/Aspiration": OTHER_PNEUMONIA,
  # `Tuberculosis`, `No Finding`, `todo`, `Unknown`: as in the flat releases (above).
}

# Config name -> {group: label}. Groups not listed are skipped for that config.
LABEL_SCHEMES: Mapping[str, Mapping[str, str]] = {
  "3class": {COVID: "covid-19", OTHER_PNEUMONIA: "other_pneumonia", NO_FINDING: "no_finding"},
  "2class": {
    COVID: "covid-19",
    OTHER_PNEUMONIA: "other",
    NO_FINDING: "other",
    NOT_PNEUMONIA: "other",
  },
}


def normalize_text(value: str) -> str:
  """Whitespace-collapsed, case-folded text, for matching views and findings."""
  return " ".join(value.split()).casefold()


_GROUP_BY_FINDING = {normalize_text(k): v for k, v in FINDING_GROUPS.items()}


def map_finding(finding: str, config_name: str) -> tuple[str | None, str | None]:
  """Maps an upstream `finding` value to a label of a config.

  Args:
    finding: The raw `finding` cell, e.g. `COVID-19` or `Pneumonia/Bacterial/Streptococcus`.
    config_name: `3class` or `2class`.

  Returns:
    `(label, None)`, or `(None, skip_reason)` when the row has no label in this config.
  """
  group = _GROUP_BY_FINDING.get(normalize_text(finding))
  shown = " ".join(finding.split())
  if group is None:
    return None, f"unknown finding value {shown!r} (not in FINDING_GROUPS)"
  if group == TODO:
    return None, "finding 'todo' (not labelled yet)"
  if group == UNKNOWN_DIAGNOSIS:
    return None, "finding 'Unknown' (diagnosis unknown)"
  label = LABEL_SCHEMES[config_name].get(group)
  if label is None:
    return None, f"finding outside the {config_name} scheme: {shown!r}"
  return label, None


def is_frontal(view: str) -> bool:
  return normalize_text(view) in FRONTAL_VIEWS


def url_source(url: str) -> str:
  """The url's host without `www.` (`radiopaedia.org`, `nejm.org`), or `unknown`."""
  url = url.strip()
  if not url:
    return "unknown"
  if "://" not in url:  # `radiopaedia.org/cases/...` parses as a path without a scheme.
    url = "//" + url
  try:
    host = urllib.parse.urlsplit(url).hostname
  except ValueError:
    host = None
  return host.removeprefix("www.") if host else "unknown"


def parse_number(value: str) -> float:
  """`float(value)`, NaN when blank; raises ValueError when non-blank and not a number (`?`)."""
  value = value.strip()
  if not value:
    return math.nan
  number = float(value)
  if not math.isfinite(number):
    raise ValueError(value)
  return number


def lung_mask(data: bytes, size: tuple[int, int]) -> tuple[np.ndarray, bool]:
  """Binary 0/255 lung mask `(H, W, 1)` uint8 at `size` (PIL's `(W, H)`), and whether resized."""
  with Image.open(io.BytesIO(data)) as img:
    img.load()
    grey = np.asarray(img.convert("L"))
  mask = Image.fromarray(np.where(grey >= _LUNG_THRESHOLD, 255, 0).astype(np.uint8), "L")
  resized = mask.size != size
  if resized:
    mask = mask.resize(size, Image.NEAREST)  # Nearest keeps it binary.
  return np.asarray(mask)[:, :, None], resized


def find_data_root(path: epath.PathLike) -> epath.Path:
  """The folder holding `metadata.csv` and `images/`: `path`, or its dataset/archive subfolder.

  Raises:
    FileNotFoundError: naming the path, the expected layout and where to get the data.
  """
  path = epath.Path(path)
  if not path.is_dir():
    raise FileNotFoundError(
      f"{path} does not exist. Expected layout:\n{_EXPECTED_LAYOUT}\n{_DOWNLOAD_HELP}"
    )
  for root in (path, path / _DATASET_DIR, path / _ARCHIVE_TOP_DIR):
    if (root / METADATA).is_file() and (root / IMAGES_DIR).is_dir():
      return root
  raise common.layout_error(
    path,
    f"the covid-chestxray-dataset layout: no {METADATA} and {IMAGES_DIR}/ in it or in its "
    f"{_DATASET_DIR}/ or {_ARCHIVE_TOP_DIR}/ subfolder",
    f"Expected layout:\n{_EXPECTED_LAYOUT}\n{_DOWNLOAD_HELP}",
  )


def read_metadata(path: epath.Path, log: common.Log) -> list[tuple[int, dict[str, str]]]:
  """Rows of `metadata.csv` as (row number, {lower-case column: stripped cell}).

  csv handles quoted newlines. A row with more or fewer cells than the header (a stray or
  missing comma shifts every later column: `finding` would be read from another column) is
  skipped into `log` under `SKIP_SHIFTED_ROW`, named by its row number and first cells.

  Raises:
    ValueError: naming the file and what is wrong (not UTF-8, empty, missing or duplicated
      columns).
  """
  # utf-8-sig: a BOM from a spreadsheet re-save must not rename the first column. newline="":
  # the csv module itself splits rows, so quoted newlines in clinical_notes stay in their cell.
  try:
    text = path.read_bytes().decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise ValueError(f"{path} is not UTF-8 (byte {e.start}); upstream's metadata.csv is.") from e
  reader = csv.reader(io.StringIO(text, newline=""))
  header = next(reader, None)
  if header is None:
    raise ValueError(f"{path} is empty; expected the upstream header {_REQUIRED_COLUMNS}...")
  # Early releases wrote `Patientid` and ` url`: compare column names stripped and lower-case.
  header = [name.strip().lower() for name in header]
  duplicated = sorted({name for name in header if header.count(name) > 1})
  if duplicated:
    # A second `finding` column would silently replace the first one in every row.
    raise ValueError(
      f"{path}: column(s) {duplicated} appear more than once in the header {header}; each "
      "column must be named once."
    )
  missing = [c for c in _REQUIRED_COLUMNS if c not in header]
  if missing:
    raise ValueError(
      f"{path} lacks column(s) {missing} (found: {header}); expected the upstream "
      f"metadata.csv of {_HOMEPAGE}."
    )
  rows = []
  for row_number, cells in enumerate(reader, start=1):
    if not cells:
      continue  # a blank line holds no record
    if len(cells) != len(header):
      shown = ",".join(cells[:3])[:60]
      log.skip(SKIP_SHIFTED_ROW, f"{METADATA} row {row_number} ({len(cells)} cells: {shown}...)")
      continue
    rows.append((row_number, {k: v.strip() for k, v in zip(header, cells, strict=True)}))
  return rows


@dataclasses.dataclass
class CovidChestxrayConfig(tfds.core.BuilderConfig):
  """Builder config naming the label scheme.

  Attributes:
    label_names: ClassLabel names, in label-index order; `LABEL_SCHEMES[name]` maps to them.
  """

  label_names: tuple[str, ...] = ()


class Builder(common.SkipReportMixin, tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for the frontal chest X-rays of Cohen et al.'s COVID-19 image collection."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"{_DOWNLOAD_HELP}\nExpected layout:\n{_EXPECTED_LAYOUT}\n"
  BUILDER_CONFIGS = [
    CovidChestxrayConfig(
      name="3class",
      description="covid-19 / other_pneumonia / no_finding; ARDS alone, tuberculosis and "
      "interstitial lung disease are skipped.",
      label_names=("covid-19", "other_pneumonia", "no_finding"),
    ),
    CovidChestxrayConfig(
      name="2class",
      description="covid-19 / other (every other labelled finding).",
      label_names=("covid-19", "other"),
    ),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "3class"

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(None, None, 1), encoding_format="jpeg"),
          "label": tfds.features.ClassLabel(names=list(self.builder_config.label_names)),
          "patient_id": text(doc="Upstream `patientid` as text (ints, some like `311a`)."),
          "filename": text(doc="`images/<filename>`, relative to the dataset root; the key."),
          "source": text(doc="Domain of `url` without `www.` (e.g. radiopaedia.org), or unknown."),
          "finding": text(doc="Raw upstream `finding` (flat or hierarchical)."),
          "view": text(doc="Raw upstream `view`: PA, AP, AP Supine, AP semi erect, AP erect."),
          "sex": text(doc="M, F or empty."),
          "age": tfds.features.Scalar(np.float32, doc="Years; NaN when blank or not a number."),
          "offset": tfds.features.Scalar(
            np.float32,
            doc="Days since symptom onset/admission (can be negative); NaN when blank or `?`.",
          ),
          "license": text(doc="Per-image licence as upstream (often empty: see url)."),
          "url": text(),
          "doi": text(),
          "mask": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
          "has_mask": tfds.features.Scalar(
            np.bool_, doc="A V7 Labs lung mask exists; otherwise `mask` is all zero."
          ),
        }
      ),
      supervised_keys=("image", "label"),
      homepage=_HOMEPAGE,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    try:
      manual = common.manual_dir(dl_manager, self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    except FileNotFoundError as e:
      logging.warning("%s\nDownloading %s instead.", str(e).splitlines()[0], ARCHIVE_URL)
      manual = None
    if manual is not None:
      # A manual dir with the wrong layout is an error, not a reason to download behind it.
      root = find_data_root(manual)
    else:
      try:
        extracted = dl_manager.download_and_extract(ARCHIVE_URL)
      except Exception as e:  # pylint: disable=broad-except  # Network/HTTP errors vary.
        raise RuntimeError(
          f"No manual dir, and downloading {ARCHIVE_URL} failed: {e}\n"
          f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
        ) from e
      root = find_data_root(extracted)
    return {"train": self._generate_examples(root)}

  def _generate_examples(self, root: epath.Path) -> Iterator[tuple[str, dict]]:
    """Yields `(images/<filename>, example)` per kept row; counts every other row and file."""
    config_name = self.builder_config.name
    log = self.skip_log("train")
    rows = read_metadata(root / METADATA, log)
    image_files = {p.name for p in (root / IMAGES_DIR).iterdir() if p.is_file()}
    mask_dir = root / MASKS_DIR
    mask_files = {p.name for p in mask_dir.iterdir()} if mask_dir.is_dir() else set()
    seen: set[str] = set()
    # Order of the checks = reason each row is counted under: design filters first (volumes, CT,
    # view, finding), then file problems, so "row without image file" lists rows we wanted.
    for row_number, row in rows:
      name = row["filename"]
      folder = row.get("folder") or IMAGES_DIR  # Early releases have no `folder` column.
      rel = f"{folder}/{name}"
      if not name:
        log.skip("row without file name", f"{METADATA} row {row_number}")
        continue
      if rel in seen:  # Also keeps the example keys unique.
        log.skip("duplicate metadata row for the same file", rel)
        continue
      seen.add(rel)
      if folder == "volumes":
        log.skip("CT volume (volumes/ folder)", rel)
        continue
      if normalize_text(row["modality"]) != "x-ray":
        log.skip(f"not X-ray (modality {row['modality']!r})", rel)
        continue
      if not is_frontal(row["view"]):
        log.skip(f"not frontal (view {row['view']!r})", rel)
        continue
      label, reason = map_finding(row["finding"], config_name)
      if label is None:
        log.skip(reason, rel)
        continue
      if folder != IMAGES_DIR or name not in image_files:
        log.skip("row without image file", rel)
        continue
      image = common.image_or_skip(log, rel, root / rel, "jpeg")
      if image is None:
        continue
      with Image.open(io.BytesIO(image)) as img:
        size = img.size
      mask, has_mask = np.zeros((size[1], size[0], 1), np.uint8), False
      if name in mask_files:
        try:
          mask, resized = lung_mask((mask_dir / name).read_bytes(), size)
          has_mask = True
          if resized:
            log.flag("mask resized to the image size", rel)
          if not mask.any():
            log.flag("mask without lung pixels (kept, has_mask=True)", rel)
        except Exception:  # pylint: disable=broad-except
          log.flag("unreadable mask (kept the image, has_mask=False)", rel)
      numbers = {}
      for column in ("age", "offset"):
        try:
          numbers[column] = parse_number(row.get(column, ""))
        except ValueError:
          log.flag(f"non-numeric {column} {row[column]!r} (stored NaN)", rel)
          numbers[column] = math.nan
      patient_id = row["patientid"]
      if not patient_id:
        log.flag("blank patientid (id = filename)", rel)
        patient_id = rel
      yield (
        rel,
        {
          "image": image,
          "label": label,
          "patient_id": patient_id,
          "filename": rel,
          "source": url_source(row.get("url", "")),
          "finding": row["finding"],
          "view": row["view"],
          "sex": row.get("sex", ""),
          "age": numbers["age"],
          "offset": numbers["offset"],
          "license": row.get("license", ""),
          "url": row.get("url", ""),
          "doi": row.get("doi", ""),
          "mask": mask,
          "has_mask": has_mask,
        },
      )
    referenced = {r["filename"] for _, r in rows if (r.get("folder") or IMAGES_DIR) == IMAGES_DIR}
    for name in sorted(image_files - referenced):
      if name.startswith("."):  # `.DS_Store`, macOS `._*` forks.
        log.skip("non-image file (ignored)", f"{IMAGES_DIR}/{name}")
      else:
        log.skip("file without metadata row", f"{IMAGES_DIR}/{name}")
    log.log()
