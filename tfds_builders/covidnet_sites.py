"""What the builders of agchung's two COVID-Net site datasets share (Figure 1 and Actualmed).

Both repositories were published by the COVID-Net team (Wang, Lin & Wong, "COVID-Net: a tailored
deep convolutional neural network design for detection of COVID-19 cases from chest X-ray
images", Scientific Reports 10, 19549, 2020) as sources of COVIDx, in one layout:

    <repo>/metadata.csv    patientid, offset, sex, age, finding, survival, temperature,
                           pO2 saturation, view, modality, [imagename,] artifacts/distortion, notes
    <repo>/images/*.jpg|png

Figure 1 has no file column (the file is `images/<patientid>.jpg` or `.png`) and writes its CSV in
latin-1/Windows-1252 (`°`, `’`), not UTF-8; Actualmed names the file in `imagename` and is UTF-8.
Many rows have a blank `finding` (no label: skipped, counted) or a blank `view` (Figure 1: most
rows; kept and flagged, since upstream did not record it: the `view` feature is empty for them).

Findings are mapped with the Cohen builder's table (`covid_chestxray.map_finding`: `COVID-19`,
`Pneumonia`, `No finding` here) and the same `3class`/`2class` configs, so a model trained on one
can be scored on the others with an identity class map. Images are stored single-channel
(`common.image_or_skip`: the builders' size rule).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from tfds_builders import common
from tfds_builders.covid_chestxray import covid_chestxray_dataset_builder as cohen

METADATA = "metadata.csv"
IMAGES_DIR = "images"
# Extensions tried, in order, where the file is named after the patientid (Figure 1).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclasses.dataclass(frozen=True)
class Site:
  """One upstream repository.

  Attributes:
    repo: `owner/name` on GitHub.
    source: the value of every example's `source` feature (COVIDx's name for the site).
    encoding: of `metadata.csv`.
    file_column: the column naming the image file; None: `images/<patientid>.<ext>`.
    patient_id: maps a metadata row to the patient id stored in `patient_id`.
    patient_id_doc: how, for the feature's doc.
  """

  repo: str
  source: str
  encoding: str
  file_column: str | None
  patient_id: Callable[[dict[str, str]], str]
  patient_id_doc: str

  @property
  def homepage(self) -> str:
    return f"https://github.com/{self.repo}"

  @property
  def dataset_dir(self) -> str:
    return self.repo.split("/")[1]

  @property
  def archive_url(self) -> str:
    # The default branch's archive (unzips to `<name>-master/`); it moves, so no checksum.
    return f"{self.homepage}/archive/refs/heads/master.zip"

  @property
  def archive_top_dir(self) -> str:
    return f"{self.dataset_dir}-master"

  @property
  def required_columns(self) -> tuple[str, ...]:
    return ("patientid", "finding", "view", "modality") + (
      (self.file_column,) if self.file_column else ()
    )

  def expected_layout(self) -> str:
    file_note = (
      f"(column {self.file_column!r} names the file)"
      if self.file_column
      else "(files named <patientid>.jpg or .png)"
    )
    return (
      f"  <manual_dir>/{self.dataset_dir}/   (or these entries directly in <manual_dir>)\n"
      f"      {METADATA}   ({self.encoding}; columns {', '.join(self.required_columns)}, ...)\n"
      f"      {IMAGES_DIR}/*.jpg|png   {file_note}"
    )

  def download_help(self) -> str:
    return (
      f"Without --manual_dir the builder downloads {self.archive_url} itself. To build from a "
      f"local copy:\n  git clone {self.homepage}\n(or unzip that archive: it unzips to "
      f"{self.archive_top_dir}/) and pass the folder (or its parent) as --manual_dir."
    )

  def instructions(self) -> str:
    return f"{self.download_help()}\nExpected layout:\n{self.expected_layout()}\n"


@dataclasses.dataclass
class SiteConfig(tfds.core.BuilderConfig):
  """Builder config naming the label scheme (`covid_chestxray.LABEL_SCHEMES[name]`)."""

  label_names: tuple[str, ...] = ()


def configs() -> list[SiteConfig]:
  """The `3class` and `2class` configs, as covid_chestxray's (one list per builder class)."""
  return [
    SiteConfig(
      name="3class",
      description="covid-19 / other_pneumonia / no_finding (the covid_chestxray mapping).",
      label_names=("covid-19", "other_pneumonia", "no_finding"),
    ),
    SiteConfig(name="2class", description="covid-19 / other.", label_names=("covid-19", "other")),
  ]


def find_data_root(path: epath.PathLike, site: Site) -> epath.Path:
  """The folder holding `metadata.csv` and `images/`: `path`, or its repo/archive subfolder."""
  path = epath.Path(path)
  if not path.is_dir():
    raise FileNotFoundError(f"{path} does not exist. {site.instructions()}")
  for root in (path, path / site.dataset_dir, path / site.archive_top_dir):
    if (root / METADATA).is_file() and (root / IMAGES_DIR).is_dir():
      return root
  raise common.layout_error(
    path,
    f"the {site.dataset_dir} layout: no {METADATA} and {IMAGES_DIR}/ in it or in its "
    f"{site.dataset_dir}/ or {site.archive_top_dir}/ subfolder",
    site.instructions(),
  )


def read_metadata(path: epath.Path, site: Site) -> list[dict[str, str]]:
  """Rows of `metadata.csv` as {lower-case column: stripped cell}, decoded as `site.encoding`.

  Raises:
    ValueError: naming the file and what is wrong (undecodable, empty, missing columns).
  """
  data = path.read_bytes()
  if site.encoding != "utf-8":
    # Figure 1's bytes (0xb0 for the degree sign, 0x92 for Windows' right quote) are never valid
    # UTF-8, so a copy re-saved as UTF-8 (or pure ASCII) decodes as UTF-8 first, without mojibake;
    # cp1252 reads 0x92 as the quote it is, and latin-1 (which decodes any byte) is the last resort.
    for encoding in ("utf-8-sig", site.encoding, "latin-1"):
      try:
        text = data.decode(encoding)
        break
      except UnicodeDecodeError:
        continue
  else:
    try:
      text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
      raise ValueError(
        f"{path} is not UTF-8 (byte {e.start}); upstream's {METADATA} of {site.homepage} is."
      ) from e
  reader = csv.DictReader(io.StringIO(text, newline=""))
  if reader.fieldnames is None:
    raise ValueError(f"{path} is empty; expected the upstream header {site.required_columns}...")
  reader.fieldnames = [name.strip().lower() for name in reader.fieldnames]
  missing = [c for c in site.required_columns if c not in reader.fieldnames]
  if missing:
    raise ValueError(
      f"{path} lacks column(s) {missing} (found: {reader.fieldnames}); expected the upstream "
      f"{METADATA} of {site.homepage}."
    )
  return [{k: (v or "").strip() for k, v in row.items() if isinstance(k, str)} for row in reader]


def features(site: Site, label_names: tuple[str, ...]) -> tfds.features.FeaturesDict:
  text = tfds.features.Text
  return tfds.features.FeaturesDict(
    {
      "image": tfds.features.Image(shape=(None, None, 1), encoding_format="jpeg"),
      "label": tfds.features.ClassLabel(names=list(label_names)),
      "patient_id": text(doc=site.patient_id_doc),
      "filename": text(doc="`images/<file>`, relative to the dataset root; the key."),
      "source": text(doc=f"Always `{site.source}` (the site, as COVIDx names it)."),
      "finding": text(doc="Raw upstream `finding`: COVID-19, Pneumonia or No finding."),
      "view": text(doc="Raw upstream `view` (PA, AP, AP erect, ...); empty when not recorded."),
      "sex": text(doc="M, F or empty."),
      "age": text(doc="As upstream, text: `33`, `50+`, `early 40s`, or empty."),
      "offset": tfds.features.Scalar(
        np.float32,
        doc="Days since symptom onset; NaN when blank or not a number.",
      ),
      "notes": text(doc="Upstream `notes` (clinical notes; Actualmed: the test result and date)."),
    }
  )


def data_root(builder: tfds.core.GeneratorBasedBuilder, dl_manager, site: Site) -> epath.Path:
  """The data root in the manual dir, or in the downloaded archive when there is none."""
  try:
    manual = common.manual_dir(dl_manager, builder.MANUAL_DOWNLOAD_INSTRUCTIONS)
  except FileNotFoundError as e:
    logging.warning("%s\nDownloading %s instead.", str(e).splitlines()[0], site.archive_url)
    manual = None
  if manual is not None:
    # A manual dir with the wrong layout is an error, not a reason to download behind it.
    root = find_data_root(manual, site)
  else:
    try:
      extracted = dl_manager.download_and_extract(site.archive_url)
    except Exception as e:  # pylint: disable=broad-except  # Network/HTTP errors vary.
      raise RuntimeError(
        f"No manual dir, and downloading {site.archive_url} failed: {e}\n{site.instructions()}"
      ) from e
    root = find_data_root(extracted, site)
  return root


def _file_name(row: dict[str, str], site: Site, image_files: set[str]) -> str:
  """The row's image file name (for Figure 1: the first existing `<patientid><ext>`)."""
  if site.file_column:
    return row[site.file_column]
  pid = row["patientid"]
  if not pid:
    return ""
  found = [pid + ext for ext in IMAGE_EXTENSIONS if pid + ext in image_files]
  return found[0] if found else pid + IMAGE_EXTENSIONS[0]


def generate_examples(
  builder: tfds.core.GeneratorBasedBuilder, root: epath.Path, site: Site
) -> Iterator[tuple[str, dict]]:
  """Yields `(images/<file>, example)` per kept row; counts every other row and file."""
  config_name = builder.builder_config.name
  log = builder.skip_log("train")
  rows = read_metadata(root / METADATA, site)
  image_files = {p.name for p in common.list_dir(root / IMAGES_DIR, log, IMAGES_DIR) if p.is_file()}
  referenced: set[str] = set()
  seen: set[str] = set()
  # Check order = the reason a row is counted under: design filters (modality, view, finding)
  # first, then file problems, as in the covid_chestxray builder.
  for row_number, row in enumerate(rows, start=2):  # Line 1 is the header.
    name = _file_name(row, site, image_files)
    if not name:
      column = site.file_column or "patientid"
      log.skip(f"row without file name (blank {column})", f"{METADATA} line {row_number}")
      continue
    referenced.add(name)
    rel = f"{IMAGES_DIR}/{name}"
    if rel in seen:  # Also keeps the example keys unique.
      log.skip("duplicate metadata row for the same file", rel)
      continue
    seen.add(rel)
    if cohen.normalize_text(row["modality"]) != "x-ray":
      log.skip(f"not X-ray (modality {row['modality']!r})", rel)
      continue
    if row["view"] and not cohen.is_frontal(row["view"]):
      log.skip(f"not frontal (view {row['view']!r})", rel)
      continue
    if not row["finding"]:
      log.skip("blank finding (no label upstream)", rel)
      continue
    label, reason = cohen.map_finding(row["finding"], config_name)
    if label is None:
      log.skip(reason, rel)
      continue
    if name not in image_files:
      log.skip("row without image file", rel)
      continue
    image = common.image_or_skip(log, rel, root / rel, "jpeg", "unreadable/corrupt image")
    if image is None:
      continue
    if not row["view"]:
      log.flag("blank view (kept: not recorded upstream)", rel)
    try:
      offset = cohen.parse_number(row.get("offset", ""))
    except ValueError:
      log.flag(f"non-numeric offset {row['offset']!r} (stored NaN)", rel)
      offset = math.nan
    patient_id = site.patient_id(row)
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
        "source": site.source,
        "finding": row["finding"],
        "view": row["view"],
        "sex": row.get("sex", ""),
        "age": row.get("age", ""),
        "offset": offset,
        "notes": row.get("notes", ""),
      },
    )
  for name in sorted(image_files - referenced):
    if name.startswith("."):  # `.DS_Store`, macOS `._*` forks.
      log.skip("non-image file (ignored)", f"{IMAGES_DIR}/{name}")
    else:
      log.skip("file without metadata row", f"{IMAGES_DIR}/{name}")
  log.log()
