"""TFDS builder for COVIDx, the chest X-ray benchmark of COVID-Net (Wang, Lin & Wong, 2020).

Paper: L. Wang, Z. Q. Lin, A. Wong, "COVID-Net: a tailored deep convolutional neural network
design for detection of COVID-19 cases from chest X-ray images", Scientific Reports 10:19549,
2020, doi:10.1038/s41598-020-76550-z. Later versions: M. Pavlova et al., "COVIDx CXR-3"
(arXiv:2206.03671, 2022); Y. Wu et al., "COVIDx CXR-4" (arXiv:2311.17677, 2023).
Data: split files in github lindawangg/COVID-Net (`labels/`, docs/COVIDx.md); images on Kaggle
(`andyczhao/covidx-cxr2`, https://www.kaggle.com/datasets/andyczhao/covidx-cxr2) or rebuilt from
the source datasets with COVID-Net's `create_COVIDx*.ipynb`. Download by hand (see
`MANUAL_DOWNLOAD_INSTRUCTIONS`).

Layout (as the notebooks write it and as the Kaggle archive unzips):

    <root>/train/*.png|*.jpg   <root>/test/...   (<root>/val/... for versions that have one)
    <root>/<split file per split>   or   <root>/labels/<split file>

Each config names one version and its split files (`split_file_pattern`, e.g.
`{split}_COVIDx9B.txt`; the `cxr4` names `train.txt`/`val.txt`/`test.txt` follow the Kaggle layout
of the binary release and could not be checked against a CXR-4 copy). A split file has one image
per line, space separated:

    patient_id filename label [source]

`label` is `normal` / `pneumonia` / `COVID-19` (3-class versions: v5 and earlier, 7A, 8A, 9A,
CXR-3A) or `negative` / `positive` (binary versions: 6, 7B, 8B, 9B, CXR-3B, CXR-4). What the
upstream files really hold (read in lindawangg/COVID-Net):

  * `source` (4th column: cohen, fig1, actmed, sirm, rsna, ricord, ...) is missing on some lines:
    `test_COVIDx2.txt` has 3 columns throughout and `test_COVIDx5.txt` mixes 3-column lines
    (RSNA and Cohen pneumonia images) with 4-column ones. For 3-column lines the source is derived
    from the file name where its pattern is unambiguous (RSNA UUIDs, `COVID-19(N).png` of the
    Radiography Database, Figure1 `COVID-000NN`, Actualmed `CR.1.2.840...`/`DX.1.2.840...`,
    `MIDRC-RICORD-*`), else `unknown`, and flagged.
  * The patient id itself can hold a space (`COVID 305 COVID(305).png COVID-19 sirm` in
    `train_COVIDx8A.txt`), so lines are parsed from the right: the file name is the token before
    the label.
  * `train_COVIDx9B.txt` spells some RSNA sources `rnsa`; they are normalised to `rsna` (flagged).

Patient ids come from several source datasets and are only unique within their source, so
`patient_id` is `<source>:<upstream id>`. Splits are kept as upstream (`train`,
`test`, and `val` where a version has one). Images are PNG or JPEG upstream (RSNA/RICORD/BIMCV
PNGs are the vast majority): they are stored as single-channel PNG (lossless for the JPEGs).

    tfds build tfds_builders/covidx --manual_dir=PATH --config=v9b --file_format=array_record
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import tensorflow_datasets as tfds
from etils import epath

from tfds_builders import common

_KAGGLE_URL = "https://www.kaggle.com/datasets/andyczhao/covidx-cxr2"
_GITHUB_URL = "https://github.com/lindawangg/COVID-Net"
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif"})
THREE_CLASS = ("normal", "pneumonia", "covid-19")
BINARY = ("negative", "positive")
# Upstream typos in the source column.
_SOURCE_ALIASES = {"rnsa": "rsna"}
# Source of a 3-column line, from its file name (first match wins).
_FILENAME_SOURCES = (
  (
    re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.png$", re.I),
    "rsna",
  ),
  (re.compile(r"^COVID(-19)?\s*\(\d+\)\.png$", re.I), "sirm"),
  (re.compile(r"^COVID-\d{5}[a-z]?\.(jpg|png)$", re.I), "fig1"),
  (re.compile(r"^(CR|DX)\.1\.2\.840\.", re.I), "actmed"),
  (re.compile(r"^MIDRC-RICORD-", re.I), "ricord"),
)

# Left out.
SKIP_UNPARSEABLE = "unparseable line"
SKIP_LABEL = "label not in this version's vocabulary"
SKIP_DUPLICATE = "file listed twice in the split (first kept)"
SKIP_MISSING = "listed file missing"
SKIP_CORRUPT = "unreadable/corrupt image"
SKIP_UNLISTED = "file on disk not in the split file (not part of this version)"
# Kept, with a doubt.
FLAG_SOURCE_FROM_NAME = "3-column line: source derived from the file name"
FLAG_SOURCE_UNKNOWN = "3-column line: source unknown"
FLAG_SOURCE_ALIAS = "source typo normalised (rnsa -> rsna)"


@dataclasses.dataclass
class CovidxConfig(tfds.core.BuilderConfig):
  """One COVIDx version.

  Attributes:
    split_file_pattern: Name of a split's label file; `{split}` is replaced by the split name.
    splits: Upstream splits; each has an image folder of the same name.
    label_names: ClassLabel names (upstream labels, lower-cased), in index order.
  """

  split_file_pattern: str = "{split}_COVIDx9B.txt"
  splits: tuple[str, ...] = ("train", "test")
  label_names: tuple[str, ...] = BINARY

  def split_file(self, split: str) -> str:
    return self.split_file_pattern.format(split=split)

  def expected_layout(self) -> str:
    folders = "  ".join(f"{s}/*.png|*.jpg" for s in self.splits)
    files = "  ".join(self.split_file(s) for s in self.splits)
    return (
      f"  <manual_dir>/{folders}\n"
      f"  <manual_dir>/{files}   (or in <manual_dir>/labels/)\n"
      "  (<manual_dir>/data/ or <manual_dir>/archive/ may hold all of this instead)"
    )


def _config(name: str, pattern: str, labels: tuple[str, ...], description: str, splits=None):
  return CovidxConfig(
    name=name,
    description=description,
    split_file_pattern=pattern,
    splits=splits or ("train", "test"),
    label_names=labels,
  )


_CONFIGS = [
  _config(
    "v5",
    "{split}_COVIDx5.txt",
    THREE_CLASS,
    "COVIDx5 (Oct 2020): normal / pneumonia / covid-19; train_COVIDx5.txt, test_COVIDx5.txt.",
  ),
  _config(
    "v9a",
    "{split}_COVIDx9A.txt",
    THREE_CLASS,
    "COVIDx9A (Nov 2021): normal / pneumonia / covid-19; train_COVIDx9A.txt, test_COVIDx9A.txt.",
  ),
  _config(
    "v9b",
    "{split}_COVIDx9B.txt",
    BINARY,
    "COVIDx9B (Nov 2021): negative / positive; train_COVIDx9B.txt, test_COVIDx9B.txt.",
  ),
  _config(
    "cxr3a",
    "{split}_COVIDx_CXR-3A.txt",
    THREE_CLASS,
    "COVIDx CXR-3A (Jun 2022): normal / pneumonia / covid-19; train_COVIDx_CXR-3A.txt, "
    "test_COVIDx_CXR-3A.txt.",
  ),
  _config(
    "cxr3b",
    "{split}_COVIDx_CXR-3B.txt",
    BINARY,
    "COVIDx CXR-3B (Jun 2022): negative / positive; train_COVIDx_CXR-3B.txt, "
    "test_COVIDx_CXR-3B.txt.",
  ),
  _config(
    "cxr4",
    "{split}.txt",
    BINARY,
    "COVIDx CXR-4 (Kaggle, 2023): negative / positive; train.txt, val.txt, test.txt "
    "(file names not verified, see README).",
    splits=("train", "val", "test"),
  ),
]

_DOWNLOAD_HELP = f"""\
Download the images (train/, test/, and val/ for CXR-4) and split files from Kaggle:
{_KAGGLE_URL}  (`kaggle datasets download andyczhao/covidx-cxr2`; earlier versions of the Kaggle
set hold earlier COVIDx versions), or rebuild them with the notebooks of {_GITHUB_URL}
(create_COVIDx*.ipynb; split files in its labels/ folder). Pass the folder holding train/ and
test/ as `--manual_dir`, with the config's split files beside them or in labels/."""


@dataclasses.dataclass(frozen=True)
class Line:
  """One parsed split-file line.

  Attributes:
    patient_id: Upstream patient id (may contain spaces).
    filename: Image file name in the split folder.
    label: Label as written upstream.
    source: 4th column, or None on 3-column lines.
  """

  patient_id: str
  filename: str
  label: str
  source: str | None


def _is_image_name(token: str) -> bool:
  return epath.Path(token).suffix.lower() in _IMAGE_SUFFIXES


def parse_line(line: str) -> Line | None:
  """Parses `patient_id filename label [source]`, from the right; None if it does not fit.

  The file name is the token with an image suffix just before the label: third from the right on
  4-column lines, second on 3-column lines. Whatever precedes it is the patient id.
  """
  tokens = line.split()
  if len(tokens) >= 4 and _is_image_name(tokens[-3]) and not _is_image_name(tokens[-2]):
    return Line(" ".join(tokens[:-3]), tokens[-3], tokens[-2], tokens[-1])
  if len(tokens) >= 3 and _is_image_name(tokens[-2]):
    return Line(" ".join(tokens[:-2]), tokens[-2], tokens[-1], None)
  return None


def source_from_filename(filename: str) -> str | None:
  """The source dataset a COVIDx file name identifies unambiguously, else None."""
  for pattern, source in _FILENAME_SOURCES:
    if pattern.match(filename):
      return source
  return None


def find_data_root(manual_dir: epath.PathLike, config: CovidxConfig) -> tuple[epath.Path, dict]:
  """The folder holding the split folders, and `{split: split file}`.

  The root is `manual_dir`, `manual_dir/data` (COVID-Net's notebooks) or `manual_dir/archive`
  (Kaggle's web download unzipped); split files lie in the root, in `root/labels`, or in
  `manual_dir[/labels]`.

  Raises:
    FileNotFoundError: naming the path, the expected layout and where to download the data.
  """
  layout = config.expected_layout()
  manual_dir = common.require_dir(
    manual_dir, f"Expected layout (config {config.name}):\n{layout}\n{_DOWNLOAD_HELP}"
  )
  for root in (manual_dir, manual_dir / "data", manual_dir / "archive"):
    if not all((root / s).is_dir() for s in config.splits):
      continue
    files = {}
    for split in config.splits:
      name = config.split_file(split)
      places = (root, root / "labels", manual_dir, manual_dir / "labels")
      files[split] = next((p / name for p in places if (p / name).is_file()), None)
    missing = [config.split_file(s) for s, f in files.items() if f is None]
    if missing:
      raise FileNotFoundError(
        f"{root} holds the image folders {list(config.splits)} but not the split files "
        f"{missing} of config {config.name} (looked in {root}, {root / 'labels'} and "
        f"{manual_dir}). Expected layout:\n{layout}\n{_DOWNLOAD_HELP}"
      )
    return root, files
  raise common.layout_error(
    manual_dir,
    f"the COVIDx layout of config {config.name}: no "
    f"{', '.join(s + '/' for s in config.splits)} folders in it, in data/ or in archive/",
    f"Expected layout:\n{layout}\n{_DOWNLOAD_HELP}",
  )


class Builder(common.SkipReportMixin, tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for COVIDx (COVID-Net), one config per version."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f"{_DOWNLOAD_HELP}\nExpected layout (split files per config: "
    + ", ".join(f"{c.name}: {c.split_file_pattern}" for c in _CONFIGS)
    + f"):\n{_CONFIGS[2].expected_layout()}\n"
  )
  BUILDER_CONFIGS = _CONFIGS
  DEFAULT_BUILDER_CONFIG_NAME = "v9b"

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
          "label": tfds.features.ClassLabel(names=list(self.builder_config.label_names)),
          "patient_id": tfds.features.Text(),
          "filename": tfds.features.Text(),
          "source": tfds.features.Text(),
        }
      ),
      supervised_keys=("image", "label"),
      homepage=_GITHUB_URL,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = common.manual_dir(dl_manager, self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    root, files = find_data_root(manual_dir, self.builder_config)
    return {split: self._generate_examples(root, split, files[split]) for split in files}

  def _generate_examples(
    self, root: epath.Path, split: str, split_file: epath.Path
  ) -> Iterator[tuple[str, dict]]:
    """Yields `(split/filename, example)` for the lines of one split file."""
    vocabulary = set(self.builder_config.label_names)
    log = self.skip_log(split, f"{self.name}/{self.builder_config.name}")
    listed, mentioned = set(), set()
    lines = split_file.read_text(encoding="utf-8-sig").splitlines()
    for number, text in enumerate(lines, start=1):
      if not text.strip():
        continue  # Blank lines (a trailing newline) hold no record.
      line = parse_line(text)
      if line is None:
        log.skip(SKIP_UNPARSEABLE, f"{split_file.name}:{number}: {text.strip()[:80]}")
        continue
      rel = f"{split}/{line.filename}"
      mentioned.add(line.filename)
      if line.label.lower() not in vocabulary:
        log.skip(SKIP_LABEL, f"{rel} ({line.label})")
        continue
      if line.filename in listed:
        log.skip(SKIP_DUPLICATE, rel)
        continue
      listed.add(line.filename)
      path = root / split / line.filename
      if not path.is_file():
        log.skip(SKIP_MISSING, rel)
        continue
      image = common.image_or_skip(log, rel, path, "png", corrupt_reason=SKIP_CORRUPT)
      if image is None:
        continue
      source = line.source
      if source is None:
        source = source_from_filename(line.filename)
        log.flag(FLAG_SOURCE_FROM_NAME if source else FLAG_SOURCE_UNKNOWN, rel)
        source = source or "unknown"
      source = source.lower()
      if source in _SOURCE_ALIASES:
        log.flag(FLAG_SOURCE_ALIAS, rel)
        source = _SOURCE_ALIASES[source]
      yield (
        rel,
        {
          "image": image,
          "label": line.label.lower(),
          # Ids are only unique within their source dataset: qualify by source.
          "patient_id": f"{source}:{line.patient_id}",
          "filename": rel,
          "source": source,
        },
      )
    # Images of the folder that this version does not list (other versions share the folder).
    for path in sorted((root / split).iterdir()):
      if path.name not in mentioned and not path.name.startswith("."):
        log.skip(SKIP_UNLISTED, f"{split}/{path.name}")
    log.log()
