"""TFDS builder for the COVID-19 Radiography Database (Chowdhury et al. 2020; Rahman et al. 2021).

Papers:
  * M. E. H. Chowdhury, T. Rahman, A. Khandakar, et al., "Can AI help in screening Viral and
    COVID-19 pneumonia?", IEEE Access 8:132665-132676, 2020, doi:10.1109/ACCESS.2020.3010287.
  * T. Rahman, A. Khandakar, Y. Qiblawey, et al., "Exploring the effect of image enhancement
    techniques on COVID-19 detection using chest X-ray images", Computers in Biology and Medicine
    132:104319, 2021, doi:10.1016/j.compbiomed.2021.104319.
Data: Kaggle `tawsifurrahman/covid19-radiography-database`
(https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database); it must be
downloaded by hand (see `MANUAL_DOWNLOAD_INSTRUCTIONS`).

Three configs, one per archive layout (`v1` and `current` are taken from public code and READMEs
that read each release, e.g. COVID-Net's `create_COVIDx.ipynb`, github lindawangg/COVID-Net; see
README.md; `flat2021` is read from the real sample in ../shared/data/covid19-radiography-2021):

  * `v1`, the first release (219 COVID-19 / 1,341 normal / 1,345 viral pneumonia PNGs):
      COVID-19 Radiography Database/
        COVID-19/COVID-19 (1).png ...      COVID-19.metadata.xlsx
        NORMAL/NORMAL (1).png ...          NORMAL.metadata.xlsx
        Viral Pneumonia/Viral Pneumonia (1).png ...
                                           Viral Pneumonia.matadata.xlsx   (sic, "matadata")
        README.md.txt
  * `current`, Kaggle versions 4-5 (3,616 COVID / 10,192 Normal / 6,012 Lung_Opacity / 1,345
    Viral Pneumonia = 21,165 PNGs of 299x299; version 5 adds 256x256 lung masks):
      COVID-19_Radiography_Dataset/
        {COVID,Normal,Lung_Opacity,Viral Pneumonia}/images/<Class>-N.png
        {COVID,Normal,Lung_Opacity,Viral Pneumonia}/masks/<Class>-N.png      (version 5)
        <Class>.metadata.xlsx   (columns FILE NAME, FORMAT, SIZE, URL)
        README.md.txt
  * `flat2021`, the 2021 flat layout as copies of that release keep it (no `images/` sub-folder,
    no masks, no spreadsheets; `source` and `url` are empty); absent class folders are allowed
    (the shared sample holds COVID and Normal only, re-encoded 224x224 RGB, stored grey):
      COVID-19_Radiography_Dataset/
        {COVID,Normal,Lung_Opacity,Viral Pneumonia}/<Class>-N.png

The label comes from the class folder. The spreadsheets give each image's origin (URL column):
`source` is a short name derived from it (`rsna`, `kermany`, `bimcv`, `sirm`, `eurorad`,
`github:<owner>/<repo>`, else the URL's host) and `url` keeps it verbatim. The spreadsheet names do
not spell the files the same way (`COVID-19(69)` for `COVID-19 (69).png`, `NORMAL-1` for
`Normal-1.png`), so rows and files are matched on a normalised key (see `match_key`), then on the
number alone for what is left; mismatches are counted both ways.

There is no patient id upstream: `patient_id` is the file stem, and every example is flagged for
it. There is no official split either: everything goes to `train` (jaxcxr makes its own
patient-grouped splits).

Build with:

    tfds build tfds_builders/covid19_radiography --manual_dir=PATH --config=current \
        --file_format=array_record
"""

from __future__ import annotations

import dataclasses
import functools
import io
import re
import urllib.parse
from collections.abc import Iterator, Sequence

import numpy as np
import openpyxl
import tensorflow_datasets as tfds
from absl import logging
from etils import epath
from PIL import Image

from tfds_builders import common

_KAGGLE_URL = "https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database"
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
# Kaggle's web download is `archive.zip`; unzipping it into a folder of that name is common.
_ARCHIVE_DIR = "archive"

# Per-example flags (kept, with a doubt).
FLAG_NO_PATIENT_ID = "no patient id upstream (kept, id = file stem)"
FLAG_NO_ROW = "image without spreadsheet row (kept, source unknown)"
FLAG_BY_NUMBER = "matched to its spreadsheet row by number only (names differ)"
FLAG_DUPLICATE_ROW = "duplicate spreadsheet row (first kept)"
FLAG_SHARED_KEY = "two image files share one match key (second has no row)"
FLAG_NO_MASK = "no mask file (has_mask False)"
FLAG_BAD_MASK = "unreadable mask (has_mask False)"
FLAG_NO_URL = "spreadsheet row without URL (source unknown)"
# Left out.
SKIP_NOT_IMAGE = "non-image file (ignored)"
SKIP_CORRUPT = "unreadable/corrupt image"
SKIP_ROW_NO_FILE = "spreadsheet row without image file"
SKIP_ROW_NO_NAME = "spreadsheet row without FILE NAME"
SKIP_MASK_NO_IMAGE = "mask without image (ignored)"


@dataclasses.dataclass(frozen=True)
class ClassFolder:
  """One class folder of a release.

  Attributes:
    folder: Folder name under the release root, e.g. `Viral Pneumonia`.
    label: ClassLabel name.
    metadata_files: Accepted names of its spreadsheet (beside the folder), first found wins.
  """

  folder: str
  label: str
  metadata_files: tuple[str, ...]


@dataclasses.dataclass
class Covid19RadiographyConfig(tfds.core.BuilderConfig):
  """Layout of one release of the database.

  Attributes:
    root_name: Folder the archive unzips to.
    class_folders: The class folders, in ClassLabel order.
    images_subdir: Sub-folder of each class folder holding the images (`` = the folder itself).
    masks_subdir: Sub-folder holding lung masks named like the images (`` = no masks).
  """

  root_name: str = ""
  class_folders: tuple[ClassFolder, ...] = ()
  images_subdir: str = ""
  masks_subdir: str = ""
  # Some class folders may be absent (a partial copy such as ../shared/data's 2021 sample): the
  # ClassLabel keeps every class, the folders present are read, the absent ones are logged.
  partial: bool = False

  @property
  def label_names(self) -> list[str]:
    return [c.label for c in self.class_folders]

  def expected_layout(self) -> str:
    """The layout, for error messages and the download instructions."""
    lines = [f"  <manual_dir>/{self.root_name}/   (or its content directly in <manual_dir>)"]
    for c in self.class_folders:
      sub = f"{self.images_subdir}/" if self.images_subdir else ""
      sheet = c.metadata_files[0] if c.metadata_files else "(no spreadsheet)"
      lines.append(f"      {c.folder}/{sub}*.png      {sheet}")
      if self.masks_subdir:
        lines.append(f"      {c.folder}/{self.masks_subdir}/*.png   (lung masks; optional)")
    return "\n".join(lines)


_V1 = Covid19RadiographyConfig(
  name="v1",
  description="First release: covid-19 / normal / viral_pneumonia (2,905 PNGs), no masks.",
  root_name="COVID-19 Radiography Database",
  class_folders=(
    ClassFolder("COVID-19", "covid-19", ("COVID-19.metadata.xlsx",)),
    ClassFolder("NORMAL", "normal", ("NORMAL.metadata.xlsx",)),
    # The first release spells it "matadata"; accept the fixed spelling too.
    ClassFolder(
      "Viral Pneumonia",
      "viral_pneumonia",
      ("Viral Pneumonia.matadata.xlsx", "Viral Pneumonia.metadata.xlsx"),
    ),
  ),
)
_CURRENT = Covid19RadiographyConfig(
  name="current",
  description="Kaggle versions 4-5: covid-19 / normal / lung_opacity / viral_pneumonia (21,165 "
  "PNGs) with lung masks where present.",
  root_name="COVID-19_Radiography_Dataset",
  class_folders=(
    ClassFolder("COVID", "covid-19", ("COVID.metadata.xlsx",)),
    ClassFolder("Normal", "normal", ("Normal.metadata.xlsx",)),
    ClassFolder("Lung_Opacity", "lung_opacity", ("Lung_Opacity.metadata.xlsx",)),
    ClassFolder("Viral Pneumonia", "viral_pneumonia", ("Viral Pneumonia.metadata.xlsx",)),
  ),
  images_subdir="images",
  masks_subdir="masks",
)

_FLAT2021 = Covid19RadiographyConfig(
  name="flat2021",
  description="The 2021 flat layout (<Class>/<Class>-n.png, no images/ sub-folder, no masks, no "
  "spreadsheets), as copies of that release keep it; absent class folders are allowed.",
  root_name="COVID-19_Radiography_Dataset",
  class_folders=(
    ClassFolder("COVID", "covid-19", ()),
    ClassFolder("Normal", "normal", ()),
    ClassFolder("Lung_Opacity", "lung_opacity", ()),
    ClassFolder("Viral Pneumonia", "viral_pneumonia", ()),
  ),
  partial=True,
)

_DOWNLOAD_HELP = f"""\
Download the COVID-19 Radiography Database from Kaggle: {_KAGGLE_URL}
(`kaggle datasets download tawsifurrahman/covid19-radiography-database`, or the web page's
`archive.zip`; the first release is Kaggle version 1). Unzip it and pass the folder it unzips to
(or its parent) as `--manual_dir`."""


# `COVID-19 (69)`, `COVID-19(69)`, `COVID-1`, `COVID 119`, `NORMAL-1`, `Viral Pneumonia (12)`.
_NAME_RE = re.compile(r"^(?P<prefix>.*?)[\s_\-]*\(?\s*(?P<number>\d+)\s*\)?$")


def match_key(name: str) -> str:
  """Normalised key under which a spreadsheet name and an image file name match.

  Lower-cases, drops an image suffix, and splits off the trailing image number; the class prefix
  keeps only letters and digits. So `COVID-19 (69).png` and `COVID-19(69)` both give
  `covid19#69`, `Normal-1.png` and `NORMAL-1` give `normal#1`.
  """
  stem = name.strip()
  if epath.Path(stem).suffix.lower() in _IMAGE_SUFFIXES:
    stem = stem[: -len(epath.Path(stem).suffix)]
  m = _NAME_RE.match(stem.strip())
  if not m:
    return re.sub(r"[^a-z0-9]", "", stem.lower())
  prefix = re.sub(r"[^a-z0-9]", "", m.group("prefix").lower())
  return f"{prefix}#{int(m.group('number'))}"


def _number(key: str) -> str | None:
  return key.rsplit("#", 1)[1] if "#" in key else None


@dataclasses.dataclass
class Matching:
  """Result of `match_rows_to_files`.

  Attributes:
    row_of_file: File name -> index of its spreadsheet row.
    by_number: File names matched on the number alone.
    rows_without_file: Indices of rows no file matched.
    duplicate_rows: Indices of rows whose key an earlier row already had.
    files_sharing_key: File names whose key an earlier file already had.
  """

  row_of_file: dict[str, int]
  by_number: set[str]
  rows_without_file: list[int]
  duplicate_rows: list[int]
  files_sharing_key: list[str]


def match_rows_to_files(row_names: Sequence[str], file_names: Sequence[str]) -> Matching:
  """Matches spreadsheet `FILE NAME`s to image file names of one class folder.

  First on `match_key`; then, among what is still unmatched on both sides, on the image number
  alone when it is unique on each side (a spreadsheet using another class prefix than the files).
  """
  row_by_key: dict[str, int] = {}
  duplicate_rows = []
  for i, name in enumerate(row_names):
    key = match_key(name)
    if key in row_by_key:
      duplicate_rows.append(i)
    else:
      row_by_key[key] = i
  file_by_key: dict[str, str] = {}
  files_sharing_key = []
  for name in file_names:
    key = match_key(name)
    if key in file_by_key:
      files_sharing_key.append(name)
    else:
      file_by_key[key] = name

  row_of_file = {f: row_by_key[k] for k, f in file_by_key.items() if k in row_by_key}
  left_rows = {k: i for k, i in row_by_key.items() if k not in file_by_key}
  left_files = {k: f for k, f in file_by_key.items() if k not in row_by_key}
  by_number = set()
  if left_rows and left_files:
    rows_by_number, files_by_number = {}, {}
    for k, i in left_rows.items():
      rows_by_number.setdefault(_number(k), []).append(i)
    for k, f in left_files.items():
      files_by_number.setdefault(_number(k), []).append(f)
    for number, files in files_by_number.items():
      rows = rows_by_number.get(number, [])
      if number is not None and len(files) == 1 and len(rows) == 1:
        row_of_file[files[0]] = rows[0]
        by_number.add(files[0])
  matched_rows = set(row_of_file.values())
  rows_without_file = sorted(i for i in row_by_key.values() if i not in matched_rows)
  return Matching(row_of_file, by_number, rows_without_file, duplicate_rows, files_sharing_key)


# Substring of the URL -> source name; first match wins.
_SOURCE_RULES = (
  ("rsna-pneumonia-detection-challenge", "rsna"),
  # Kermany et al.'s pediatric set (Guangzhou), as mirrored on Kaggle.
  ("chest-xray-pneumonia", "kermany"),
  # BIMCV-COVID19+ / PadChest (the database's README calls these "padchest").
  ("bimcv", "bimcv"),
  ("padchest", "bimcv"),
  ("sirm.org", "sirm"),
  ("eurorad.org", "eurorad"),
)


def source_from_url(url: str) -> str:
  """Short name of the upstream collection an image came from, from the spreadsheet URL.

  `rsna`, `kermany`, `bimcv`, `sirm`, `eurorad` for the known collections; `github:<owner>/<repo>`
  for GitHub repositories; `kaggle:<owner>/<dataset>` for other Kaggle sets; else the URL's host
  without `www.` (a journal, radiopaedia.org, ...); `unknown` when empty.
  """
  low = url.strip().lower()
  if not low:
    return "unknown"
  for needle, source in _SOURCE_RULES:
    if needle in low:
      return source
  parsed = urllib.parse.urlparse(low if "://" in low else f"http://{low}")
  host = parsed.netloc.removeprefix("www.")
  parts = [p for p in parsed.path.split("/") if p]
  if host == "github.com" and len(parts) >= 2:
    return f"github:{parts[0]}/{parts[1]}"
  if host == "kaggle.com":
    parts = [p for p in parts if p not in ("datasets", "c")]
    if parts:
      return "kaggle:" + "/".join(parts[:2])
  return host or "unknown"


def read_metadata(path: epath.Path) -> list[tuple[str, str]]:
  """`(FILE NAME, URL)` of each data row of a `<Class>.metadata.xlsx`, in sheet order.

  Blank rows are dropped; a row without a FILE NAME gives `("", url)`.

  Raises:
    ValueError: if the first sheet's header has no `FILE NAME` or `URL` column.
  """
  workbook = openpyxl.load_workbook(io.BytesIO(path.read_bytes()), read_only=True, data_only=True)
  try:
    rows = workbook.worksheets[0].iter_rows(values_only=True)
    header = next(rows, None) or ()
    columns = {str(h).strip().upper(): i for i, h in enumerate(header) if h is not None}
    if "FILE NAME" not in columns or "URL" not in columns:
      raise ValueError(
        f"{path}: the first row {list(header)} has no 'FILE NAME' and 'URL' columns; expected "
        "the upstream header FILE NAME, FORMAT, SIZE, URL."
      )

    def cell(row: tuple, column: str) -> str:
      i = columns[column]
      value = row[i] if i < len(row) else None
      return "" if value is None else str(value).strip()

    out = []
    for row in rows:
      if not any(v is not None and str(v).strip() for v in row):
        continue
      out.append((cell(row, "FILE NAME"), cell(row, "URL")))
    return out
  finally:
    workbook.close()


def find_data_root(manual_dir: epath.PathLike, config: Covid19RadiographyConfig) -> epath.Path:
  """The release root inside `manual_dir`: the folder holding the class folders.

  Accepts the class folders directly in `manual_dir`, in `manual_dir/<root_name>`, in
  `manual_dir/<root_name>/<root_name>` (archives unzipped twice) or in `manual_dir/archive[/...]`
  (Kaggle's web download).

  Raises:
    FileNotFoundError: naming the path, the expected layout and where to download the data.
  """
  layout = config.expected_layout()
  manual_dir = common.require_dir(
    manual_dir, f"Expected layout ({config.name}):\n{layout}\n{_DOWNLOAD_HELP}"
  )
  name = config.root_name
  archive = manual_dir / _ARCHIVE_DIR
  candidates = [manual_dir, manual_dir / name, manual_dir / name / name, archive, archive / name]
  for root in candidates:
    present = [(root / c.folder / config.images_subdir).is_dir() for c in config.class_folders]
    if all(present) or (config.partial and any(present)):
      if not all(present):
        logging.warning(
          "covid19_radiography/%s: no %s folder(s) in %s; those classes get no images.",
          config.name, [c.folder for c, p in zip(config.class_folders, present, strict=True)
                        if not p], root,
        )  # fmt: skip
      return root
  raise common.layout_error(
    manual_dir,
    f"the '{config.name}' layout of the COVID-19 Radiography Database: no "
    f"{', '.join(repr(c.folder) for c in config.class_folders)} folders in it or in '{name}/'",
    f"Expected layout:\n{layout}\n{_DOWNLOAD_HELP}",
  )


def _png(image: Image.Image) -> bytes:
  buf = io.BytesIO()
  image.save(buf, format="PNG")
  return buf.getvalue()


@functools.lru_cache(maxsize=8)
def _empty_mask(size: tuple[int, int]) -> bytes:
  """An all-zero (H, W) PNG, for images without a mask."""
  return _png(Image.new("L", size, 0))


def mask_png(data: bytes, size: tuple[int, int]) -> bytes:
  """Binary 0/255 grey PNG of a mask, resized (nearest) to the image's `(width, height)`.

  Upstream masks are 256x256 for 299x299 images; nearest keeps them binary.
  """
  with Image.open(io.BytesIO(data)) as img:
    img.load()
    grey = np.asarray(img.convert("L"))
  binary = Image.fromarray(np.where(grey >= 128, 255, 0).astype(np.uint8), "L")
  if binary.size != size:
    binary = binary.resize(size, Image.NEAREST)
  return _png(binary)


class Builder(common.SkipReportMixin, tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for the COVID-19 Radiography Database (Kaggle, Chowdhury/Rahman et al.)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f"{_DOWNLOAD_HELP}\nExpected layout, config `v1`:\n{_V1.expected_layout()}\n"
    f"config `current`:\n{_CURRENT.expected_layout()}\n"
    f"config `flat2021`:\n{_FLAT2021.expected_layout()}\n"
  )
  BUILDER_CONFIGS = [_V1, _CURRENT, _FLAT2021]
  DEFAULT_BUILDER_CONFIG_NAME = "current"

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
          # Lung mask resized to the image, 0/255; all zero when `has_mask` is False.
          "mask": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
          "has_mask": np.bool_,
          "label": tfds.features.ClassLabel(names=self.builder_config.label_names),
          "patient_id": tfds.features.Text(),
          "filename": tfds.features.Text(),
          "source": tfds.features.Text(),
          "url": tfds.features.Text(),
        }
      ),
      supervised_keys=("image", "label"),
      homepage=_KAGGLE_URL,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = find_data_root(
      common.manual_dir(dl_manager, self.MANUAL_DOWNLOAD_INSTRUCTIONS), self.builder_config
    )
    return {"train": self._generate_examples(root)}

  def _generate_examples(self, root: epath.Path) -> Iterator[tuple[str, dict]]:
    """Yields `(relative path, example)` for every readable image of every class folder."""
    log = self.skip_log("train")
    for class_folder in self.builder_config.class_folders:
      if self.builder_config.partial and not (root / class_folder.folder).is_dir():
        continue
      yield from self._class_examples(root, class_folder, log)
    log.log()

  def _class_examples(
    self, root: epath.Path, class_folder: ClassFolder, log: common.SkipLog
  ) -> Iterator[tuple[str, dict]]:
    config = self.builder_config
    rel_dir = "/".join(p for p in (class_folder.folder, config.images_subdir) if p)
    images = []
    for path in common.list_dir(root / rel_dir, log, rel_dir):
      # `desktop.ini`, `.DS_Store`, macOS `._*` forks, sub-folders: not data.
      if path.name.startswith(".") or path.suffix.lower() not in _IMAGE_SUFFIXES:
        log.skip(SKIP_NOT_IMAGE, f"{rel_dir}/{path.name}")
      else:
        images.append(path)

    rows = self._read_rows(root, class_folder, log)
    matching = match_rows_to_files([name for name, _ in rows], [p.name for p in images])
    for i in matching.rows_without_file:
      log.skip(SKIP_ROW_NO_FILE, f"{class_folder.folder}: {rows[i][0]}")
    for i in matching.duplicate_rows:
      log.flag(FLAG_DUPLICATE_ROW, f"{class_folder.folder}: {rows[i][0]}")

    mask_dir = root / class_folder.folder / config.masks_subdir if config.masks_subdir else None
    has_mask_dir = mask_dir is not None and mask_dir.is_dir()
    if has_mask_dir:
      image_names = {p.name for p in images}
      for path in sorted(mask_dir.iterdir()):
        if path.name not in image_names and path.suffix.lower() in _IMAGE_SUFFIXES:
          log.skip(SKIP_MASK_NO_IMAGE, f"{class_folder.folder}/{config.masks_subdir}/{path.name}")

    for path in images:
      rel = f"{rel_dir}/{path.name}"
      image = common.image_or_skip(log, rel, path, "png", corrupt_reason=SKIP_CORRUPT)
      if image is None:
        continue
      with Image.open(io.BytesIO(image)) as img:
        size = img.size

      row = matching.row_of_file.get(path.name)
      if row is None and not class_folder.metadata_files:
        url = ""  # A layout without spreadsheets: nothing to match, nothing to flag.
      elif row is None:
        log.flag(FLAG_SHARED_KEY if path.name in matching.files_sharing_key else FLAG_NO_ROW, rel)
        url = ""
      else:
        url = rows[row][1]
        if path.name in matching.by_number:
          log.flag(FLAG_BY_NUMBER, rel)
        if not url:
          log.flag(FLAG_NO_URL, rel)

      mask, has_mask = _empty_mask(size), False
      if has_mask_dir:
        mask_path = mask_dir / path.name
        if not mask_path.is_file():
          log.flag(FLAG_NO_MASK, rel)
        else:
          try:
            mask, has_mask = mask_png(mask_path.read_bytes(), size), True
          except Exception:  # pylint: disable=broad-except
            log.flag(FLAG_BAD_MASK, rel)
      elif config.masks_subdir:
        # Kaggle version 4 has no masks/ folders.
        log.flag(FLAG_NO_MASK, rel)

      log.flag(FLAG_NO_PATIENT_ID, rel)
      yield (
        rel,
        {
          "image": image,
          "mask": mask,
          "has_mask": has_mask,
          "label": class_folder.label,
          "patient_id": path.stem,
          "filename": rel,
          "source": source_from_url(url),
          "url": url,
        },
      )

  def _read_rows(
    self, root: epath.Path, class_folder: ClassFolder, log: common.SkipLog
  ) -> list[tuple[str, str]]:
    """The class spreadsheet's `(FILE NAME, URL)` rows; [] (with a warning) when it is absent."""
    if not class_folder.metadata_files:
      return []  # The layout has none.
    for name in class_folder.metadata_files:
      if (root / name).is_file():
        rows = read_metadata(root / name)
        for file_name, _ in rows:
          if not file_name:
            log.skip(SKIP_ROW_NO_NAME, name)
        return [r for r in rows if r[0]]
    logging.warning(
      "covid19_radiography: no %s in %s: the %s images get source 'unknown'.",
      " or ".join(class_folder.metadata_files),
      root,
      class_folder.folder,
    )
    return []
