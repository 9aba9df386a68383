"""TFDS builder for the pediatric chest X-ray pneumonia dataset (Kermany et al., 2018).

Dataset: D. S. Kermany, M. Goldbaum, W. Cai, et al., "Identifying Medical Diagnoses and Treatable
Diseases by Image-Based Deep Learning", Cell 172(5):1122-1131, 2018, doi:10.1016/j.cell.2018.02.010.
Data: Kermany, Zhang, Goldbaum, "Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images
for Classification", Mendeley Data v2, doi:10.17632/rscbjbr9sj.2 (CC BY 4.0); also mirrored on
Kaggle as `paultimothymooney/chest-xray-pneumonia`.

The data must be downloaded by hand (see `MANUAL_DOWNLOAD_INSTRUCTIONS`). Build with:

    tfds build tfds_builders/chest_xray_pneumonia --manual_dir=PATH/TO/chest_xray \
        --file_format=array_record --config=2class

Two configs: `2class` (normal / pneumonia, from the folder) and `3class` (normal / bacterial /
viral; the pneumonia type is read from the file name, e.g. `person21_bacteria_72.jpeg`).

Images are stored single-channel: grayscale JPEGs are kept byte for byte; the few RGB (or other
mode) files of the upstream set are converted to `L` and re-encoded as JPEG (quality 95), so every
stored image decodes to (H, W, 1) with PIL alone, without TensorFlow at read time.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from tfds_builders import common

_SPLITS = ("train", "val", "test")
# Mendeley's ChestXRay2017.zip has only train/ and test/: the 16-image val/ split was carved out of
# train by the Kaggle uploader. So val/ is optional.
_REQUIRED_SPLITS = ("train", "test")
_CLASS_DIRS = ("NORMAL", "PNEUMONIA")
_IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png"})

_MENDELEY_URL = "https://data.mendeley.com/datasets/rscbjbr9sj/2"
_KAGGLE_URL = "https://www.kaggle.com/datasets/paultimothymooney/chest-xray-pneumonia"

_EXPECTED_LAYOUT = """\
  <manual_dir>/chest_xray/          (or these folders directly in <manual_dir>)
      train/NORMAL/*.jpeg     train/PNEUMONIA/*.jpeg
      val/NORMAL/*.jpeg       val/PNEUMONIA/*.jpeg    (Kaggle only; optional)
      test/NORMAL/*.jpeg      test/PNEUMONIA/*.jpeg"""

_DOWNLOAD_HELP = f"""\
Download the chest X-ray part of the dataset from either
  * Mendeley Data (CC BY 4.0): {_MENDELEY_URL}  (file `ChestXRay2017.zip`), or
  * Kaggle: {_KAGGLE_URL}
    (`kaggle datasets download paultimothymooney/chest-xray-pneumonia`),
unzip it and pass the resulting `chest_xray` folder (or its parent) as `--manual_dir`."""

# `person21_bacteria_72.jpeg`, `person1649_virus_2850.jpeg`.
_PNEUMONIA_RE = re.compile(r"^(?P<patient>person\d+)_(?P<kind>bacteria|virus)_\d+$", re.IGNORECASE)
# `IM-0461-0001.jpeg`, `IM-0501-0001-0002.jpeg`, `NORMAL2-IM-1427-0001.jpeg`.
_NORMAL_RE = re.compile(r"^(?P<patient>(?:NORMAL2-)?IM-\d+)(?:-\d+)+$", re.IGNORECASE)
_PNEUMONIA_KIND_TO_LABEL = {"bacteria": "bacterial", "virus": "viral"}


@dataclasses.dataclass
class ChestXrayPneumoniaConfig(tfds.core.BuilderConfig):
  """Builder config naming the label set.

  Attributes:
    label_names: ClassLabel names, in label-index order.
  """

  label_names: tuple[str, ...] = ("normal", "pneumonia")


def parse_file_name(class_dir: str, stem: str) -> tuple[str | None, str | None]:
  """Parses patient id and pneumonia kind from an upstream file name.

  Args:
    class_dir: `NORMAL` or `PNEUMONIA`.
    stem: File name without suffix, e.g. `person21_bacteria_72` or `IM-0461-0001`.

  Returns:
    `(patient_id, kind)`: `kind` is `normal`, `bacterial` or `viral`; either is None when the name
    does not follow the upstream pattern of its folder.
  """
  if class_dir == "NORMAL":
    m = _NORMAL_RE.match(stem)
    return (m.group("patient") if m else None), "normal"
  m = _PNEUMONIA_RE.match(stem)
  if not m:
    return None, None
  return m.group("patient"), _PNEUMONIA_KIND_TO_LABEL[m.group("kind").lower()]


def find_data_root(manual_dir: epath.PathLike) -> epath.Path:
  """Returns the folder holding `train/`, `val/`, `test/` inside `manual_dir`.

  Accepts the folders directly in `manual_dir`, in `manual_dir/chest_xray` (the unzipped archive),
  or in `manual_dir/chest_xray/chest_xray` (the nested copy in Kaggle's zip).

  Args:
    manual_dir: The manual download directory.

  Raises:
    FileNotFoundError: if `manual_dir` is missing or none of the candidates has the layout; the
      message names the path, the expected layout and where to download the data.
  """
  help_text = f"Expected layout:\n{_EXPECTED_LAYOUT}\n{_DOWNLOAD_HELP}"
  manual_dir = common.require_dir(manual_dir, help_text)
  candidates = [manual_dir, manual_dir / "chest_xray", manual_dir / "chest_xray" / "chest_xray"]
  for root in candidates:
    if all((root / s / c).is_dir() for s in _REQUIRED_SPLITS for c in _CLASS_DIRS):
      return root
  raise common.layout_error(
    manual_dir,
    "the chest_xray layout: no train/NORMAL, train/PNEUMONIA, test/NORMAL, test/PNEUMONIA "
    "folders in it or in its chest_xray/ subfolder",
    help_text,
  )


class Builder(common.SkipReportMixin, tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for the Kermany et al. (2018) pediatric chest X-ray pneumonia dataset."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"{_DOWNLOAD_HELP}\nExpected layout:\n{_EXPECTED_LAYOUT}\n"
  BUILDER_CONFIGS = [
    ChestXrayPneumoniaConfig(
      name="2class",
      description="Labels normal / pneumonia, from the folder name.",
      label_names=("normal", "pneumonia"),
    ),
    ChestXrayPneumoniaConfig(
      name="3class",
      description="Labels normal / bacterial / viral pneumonia, from the file name.",
      label_names=("normal", "bacterial", "viral"),
    ),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "2class"

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(None, None, 1), encoding_format="jpeg"),
          "label": tfds.features.ClassLabel(names=list(self.builder_config.label_names)),
          "patient_id": tfds.features.Text(),
          "filename": tfds.features.Text(),
        }
      ),
      supervised_keys=("image", "label"),
      homepage=_MENDELEY_URL,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = find_data_root(common.manual_dir(dl_manager, self.MANUAL_DOWNLOAD_INSTRUCTIONS))
    splits = [s for s in _SPLITS if all((root / s / c).is_dir() for c in _CLASS_DIRS)]
    if "val" not in splits:
      logging.warning(
        "No val/NORMAL and val/PNEUMONIA in %s (the Mendeley layout): building train and test "
        "only. Hold out a patient-grouped validation set from train.",
        root,
      )
    return {split: self._generate_examples(root, split) for split in splits}

  def _generate_examples(self, root: epath.Path, split: str) -> Iterator[tuple[str, dict]]:
    """Yields `(relative path, example)` for the images of one split, skipping bad files."""
    three_class = len(self.builder_config.label_names) == 3
    log = self.skip_log(split)
    for class_dir in _CLASS_DIRS:
      for path in common.list_dir(root / split / class_dir, log, f"{split}/{class_dir}"):
        rel = f"{split}/{class_dir}/{path.name}"
        # `.DS_Store`, macOS `._*` resource forks, `Thumbs.db`, sub-folders: not data.
        if path.name.startswith(".") or path.suffix.lower() not in _IMAGE_SUFFIXES:
          log.skip("non-image file (ignored)", rel)
          continue
        patient_id, kind = parse_file_name(class_dir, path.stem)
        if three_class and kind is None:
          # Bacterial vs viral is only in the name: skip rather than guess a label.
          log.skip("pneumonia type not in file name (3class)", rel)
          continue
        image = common.image_or_skip(log, rel, path)
        if image is None:
          continue
        if patient_id is None:
          # Keep the image (its label is certain) but say so: one-image "patients" can leak
          # across splits if the real patient has other images.
          log.flag("patient id not in file name (kept, id = file stem)", rel)
          patient_id = path.stem
        yield (
          rel,
          {
            "image": image,
            "label": kind if three_class else class_dir.lower(),
            "patient_id": patient_id,
            "filename": rel,
          },
        )
    log.log()
