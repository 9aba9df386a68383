"""TFDS builder for the Kaggle "Chest X-ray (Covid-19 & Pneumonia)" set (Prashant Patel, 2020).

Data: P. Patel, "Chest X-ray (Covid-19 & Pneumonia)", Kaggle,
https://www.kaggle.com/datasets/prashant268/chest-xray-covid19-pneumonia : 6,432 chest X-ray
JPEGs in `Data/train/` and `Data/test/` (20% of the images), each with `COVID19/`, `NORMAL/` and
`PNEUMONIA/` folders, files named `COVID19(0).jpg`, `NORMAL(12).jpg`, `PNEUMONIA(3417).jpg`.

It is a compilation, not a clinical collection: it was assembled from J. P. Cohen's COVID-19 image
data collection (github.com/ieee8023/covid-chestxray-dataset), the pediatric pneumonia set of
Kermany et al. (Cell 2018, doi:10.1016/j.cell.2018.02.010) and other public sources; its normal /
pneumonia class totals (1,583 / 4,273, as reported for it) equal Kermany's, re-split and renamed.
Upstream gives no patient ids, so `patient_id` is the file stem and every example is flagged: the
splits cannot be made patient-disjoint, and the set overlaps Cohen's and Kermany's sets (the
jaxcxr leakage audit checks this).

The data must be downloaded by hand (see `MANUAL_DOWNLOAD_INSTRUCTIONS`). Build with:

    tfds build tfds_builders/chest_xray_covid19_pneumonia --manual_dir=PATH/TO/archive \
        --file_format=array_record

Images are stored single-channel JPEG: grey JPEGs byte for byte, anything else (RGB JPEGs, PNGs
named `.jpg`) converted to grey and re-encoded (quality 95, flagged).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import tensorflow_datasets as tfds
from etils import epath

from tfds_builders import common

DATASET = "chest_xray_covid19_pneumonia"
SPLITS = ("train", "test")
# Upstream class folder -> label name, in label-index order.
CLASS_DIRS = {"COVID19": "covid-19", "NORMAL": "normal", "PNEUMONIA": "pneumonia"}
LABEL_NAMES = tuple(CLASS_DIRS.values())
_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
# `COVID19(0)`, `NORMAL(12)`, `PNEUMONIA(3417)`.
_NAME_RE = re.compile(r"^(?P<cls>COVID19|NORMAL|PNEUMONIA)\((?P<n>\d+)\)$")

NO_PATIENT_ID = "no patient id upstream (id = file stem; splits cannot be patient-disjoint)"

_KAGGLE_URL = "https://www.kaggle.com/datasets/prashant268/chest-xray-covid19-pneumonia"

_EXPECTED_LAYOUT = """\
  <manual_dir>/Data/            (or <manual_dir> = Data/ itself, or <manual_dir>/archive/Data/)
      train/COVID19/*.jpg   train/NORMAL/*.jpg   train/PNEUMONIA/*.jpg
      test/COVID19/*.jpg    test/NORMAL/*.jpg    test/PNEUMONIA/*.jpg"""

_DOWNLOAD_HELP = f"""\
Download "Chest X-ray (Covid-19 & Pneumonia)" from Kaggle: {_KAGGLE_URL}
(`kaggle datasets download prashant268/chest-xray-covid19-pneumonia`), unzip it and pass the
folder holding `Data/` (or `Data/` itself) as `--manual_dir`."""


def find_data_root(manual_dir: epath.PathLike) -> epath.Path:
  """Returns the `Data/` folder (the one holding `train/` and `test/`) inside `manual_dir`.

  Accepts `manual_dir` itself, `manual_dir/Data` or `manual_dir/archive/Data` (Kaggle's zip name).

  Raises:
    FileNotFoundError: `manual_dir` is missing or none of the candidates has every
      `{train,test}/{COVID19,NORMAL,PNEUMONIA}` folder; the message names the path, the expected
      layout and where to download the data.
  """
  help_text = f"Expected layout:\n{_EXPECTED_LAYOUT}\n{_DOWNLOAD_HELP}"
  manual_dir = common.require_dir(manual_dir, help_text)
  for root in (manual_dir, manual_dir / "Data", manual_dir / "archive" / "Data"):
    if all((root / s / c).is_dir() for s in SPLITS for c in CLASS_DIRS):
      return root
  raise common.layout_error(
    manual_dir,
    "the Data/ layout: no train/ and test/ folders each with COVID19/, NORMAL/ and PNEUMONIA/ in "
    "it, in Data/ or in archive/Data/",
    help_text,
  )


def _files_under(path: epath.Path) -> list[epath.Path]:
  """`path` if it is a file, else every file below it (epath's `rglob` refuses `**`)."""
  if not path.is_dir():
    return [path]
  return [f for child in sorted(path.iterdir()) for f in _files_under(child)]


class Builder(common.SkipReportMixin, tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for Kaggle's "Chest X-ray (Covid-19 & Pneumonia)" (prashant268)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"{_DOWNLOAD_HELP}\nExpected layout:\n{_EXPECTED_LAYOUT}\n"

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(None, None, 1), encoding_format="jpeg"),
          "label": tfds.features.ClassLabel(names=list(LABEL_NAMES)),
          "patient_id": tfds.features.Text(),
          "filename": tfds.features.Text(),
          "source": tfds.features.Text(),
        }
      ),
      supervised_keys=("image", "label"),
      homepage=_KAGGLE_URL,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = find_data_root(common.manual_dir(dl_manager, self.MANUAL_DOWNLOAD_INSTRUCTIONS))
    return {split: self._generate_examples(root, split) for split in SPLITS}

  def _generate_examples(self, root: epath.Path, split: str) -> Iterator[tuple[str, dict]]:
    """Yields `(relative path, example)` for the images of one split, skipping bad files."""
    log = self.skip_log(split)
    for path in sorted((root / split).iterdir()):
      if path.name not in CLASS_DIRS:
        # Stray files or extra folders beside the class folders: nothing here has a label.
        for p in _files_under(path):
          log.skip("outside the COVID19/NORMAL/PNEUMONIA folders", str(p.relative_to(root)))
    for class_dir, label in CLASS_DIRS.items():
      for path in common.list_dir(root / split / class_dir, log, f"{split}/{class_dir}"):
        rel = f"{split}/{class_dir}/{path.name}"
        # `.DS_Store`, macOS `._*` resource forks, `Thumbs.db`, sub-folders: not data.
        if path.name.startswith(".") or path.suffix.lower() not in _IMAGE_SUFFIXES:
          log.skip("non-image file (ignored)", rel)
          continue
        data = path.read_bytes()
        image = common.image_or_skip(log, rel, data, encoding="jpeg")
        if image is None:
          continue
        if image is not data:
          log.flag("not a grey JPEG (converted to grey JPEG)", rel)
        m = _NAME_RE.match(path.stem)
        if not m:
          log.flag("file name not in the upstream CLASS(N) pattern", rel)
        elif m.group("cls") != class_dir:
          log.flag("file name names another class than its folder (folder label kept)", rel)
        log.flag(NO_PATIENT_ID, rel)
        yield (
          rel,
          {
            "image": image,
            "label": label,
            "patient_id": path.stem,
            "filename": rel,
            "source": DATASET,
          },
        )
    log.log()
