"""Builds nih_chestxray14 from the real (downscaled) sample and checks it against the CSV and disk.

The sample lives outside the repo at `<repo>/../shared/data/nih-chestxray14` (images/*.png and
Data_Entry_2017_v2020.csv; no split lists, so one `train` split); set `JAXCXR_SHARED_DATA` to the
folder holding `nih-chestxray14/` to use another copy. Skipped when the folder is absent.

The expected values are computed here with the csv module and PIL, independently of the builder.
"""

from __future__ import annotations

import collections
import csv
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from tfds_builders import testing_utils
from tfds_builders.nih_chestxray14 import nih_chestxray14_dataset_builder as nih

tfds.disable_progress_bar()

_ROOT = testing_utils.SHARED_DATA / "nih-chestxray14"

pytestmark = pytest.mark.skipif(
  not (_ROOT / "images").is_dir(),
  reason=f"real NIH ChestX-ray14 sample not found at {_ROOT} (set JAXCXR_SHARED_DATA to the "
  "folder that holds nih-chestxray14/)",
)


def _expected_rows() -> dict[str, list[str]]:
  """CSV rows (cells) whose image exists in images/, by image name."""
  csv_path = next(_ROOT / n for n in nih.CSV_NAMES if (_ROOT / n).is_file())
  with csv_path.open(newline="") as f:
    rows = list(csv.reader(f))[1:]
  return {r[0]: r for r in rows if r and (_ROOT / "images" / r[0]).is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[nih.Builder, pathlib.Path]:
  """Builds the sample once (array_record, as training reads it) into a temporary dir."""
  data_dir = tmp_path_factory.mktemp("tfds")
  builder = testing_utils.build(nih.Builder, _ROOT, data_dir)
  return builder, data_dir


@pytest.mark.slow
def test_counts_per_finding_and_patient_ids_match_csv(built):
  builder, data_dir = built
  rows = _expected_rows()
  assert set(builder.info.splits) == {"train"}  # The sample has no split lists.
  source = tfds.data_source("nih_chestxray14", data_dir=data_dir)["train"]
  assert len(source) == len(rows)

  expected = collections.Counter(
    f.strip().lower().replace(" ", "_") for r in rows.values() for f in r[1].split("|")
  )
  got = collections.Counter()
  for i in range(len(source)):
    ex = source[i]
    name = ex["filename"].decode()
    row = rows[pathlib.PurePath(name).name]
    got.update(nih.LABEL_NAMES[int(j)] for j in ex["labels"])
    assert ex["patient_id"].decode() == f"{int(row[3]):08d}" == name.split("/")[-1][:8], name
    assert ex["age"] == int(row[4]) and ex["sex"].decode() == row[5], name
    assert ex["view"].decode() == row[6] and ex["follow_up"] == int(row[2]), name
    assert ex["source"] == b"nih_chestxray14"
  assert got == expected


@pytest.mark.slow
def test_nothing_skipped_and_only_non_grey_pngs_flagged(built):
  builder, _ = built
  assert not builder.skipped["train"]
  non_grey = []
  for path in sorted((_ROOT / "images").glob("*.png")):
    with Image.open(path) as img:
      if img.mode != "L":
        non_grey.append(f"images/{path.name}")
  flagged = dict(builder.flagged["train"])
  assert flagged.pop("not an 8-bit grey PNG (converted to grey)", []) == non_grey
  # The v2020 CSV has no ages > 120; anything else flagged would be a surprise worth a look.
  assert not flagged, flagged


@pytest.mark.slow
def test_every_image_decodes_to_grey(built):
  _, data_dir = built
  source = tfds.data_source("nih_chestxray14", data_dir=data_dir)["train"]
  for i in range(len(source)):
    ex = source[i]
    image = ex["image"]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 1
    with Image.open(_ROOT / ex["filename"].decode()) as original:
      assert image.shape[:2] == (original.height, original.width)
    assert image.std() > 0, ex["filename"]
