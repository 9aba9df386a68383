"""Tests for the chest_xray_pneumonia builder on the generated `dummy_data/`.

`dummy_data/chest_xray/` mirrors the unzipped upstream archive (see `make_dummy_data.py`): 8 train
images (one of them RGB), a corrupt `.jpeg` and a `.DS_Store` that must be skipped, 2 val, 4 test.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_builders import testing_utils
from tfds_builders.chest_xray_pneumonia import chest_xray_pneumonia_dataset_builder as cxp

tfds.disable_progress_bar()

DUMMY_DATA = pathlib.Path(__file__).parent / "dummy_data"


class ChestXrayPneumoniaTest(tfds.testing.DatasetBuilderTestCase):
  """Standard tfds checks; `manual_dir` is mocked to `dummy_data/` by the base class."""

  DATASET_CLASS = cxp.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["2class", "3class"]
  # Same counts for both configs: every dummy pneumonia file name says bacteria or virus.
  SPLITS = {"train": 8, "val": 2, "test": 4}


_write_jpeg = testing_utils.write_noise_image  # A grey noise JPEG.


@pytest.mark.parametrize(
  ("class_dir", "stem", "expected"),
  [
    ("NORMAL", "IM-0461-0001", ("IM-0461", "normal")),
    ("NORMAL", "IM-0501-0001-0002", ("IM-0501", "normal")),
    ("NORMAL", "NORMAL2-IM-1427-0001", ("NORMAL2-IM-1427", "normal")),
    ("PNEUMONIA", "person21_bacteria_72", ("person21", "bacterial")),
    ("PNEUMONIA", "person1649_virus_2850", ("person1649", "viral")),
    ("PNEUMONIA", "scan_0001", (None, None)),
    ("NORMAL", "scan_0001", (None, "normal")),
  ],
)
def test_parse_file_name(class_dir, stem, expected):
  assert cxp.parse_file_name(class_dir, stem) == expected


def test_missing_manual_dir_error_names_path_layout_and_source(tmp_path):
  missing = tmp_path / "nope"
  with pytest.raises(FileNotFoundError) as e:
    testing_utils.build(cxp.Builder, missing, tmp_path / "data")
  msg = str(e.value)
  assert str(missing) in msg and "train/NORMAL" in msg
  assert "data.mendeley.com" in msg and "kaggle" in msg.lower()


def test_wrong_layout_error_names_path_and_layout(tmp_path):
  manual = tmp_path / "manual"
  _write_jpeg(manual / "images" / "a.jpeg")  # Not the upstream layout.
  (manual / "train" / "NORMAL").mkdir(parents=True)  # Partial layout is not enough either.
  with pytest.raises(FileNotFoundError) as e:
    testing_utils.build(cxp.Builder, manual, tmp_path / "data")
  msg = str(e.value)
  assert str(manual) in msg and "train/NORMAL" in msg and "data.mendeley.com" in msg


def test_find_data_root_accepts_kaggle_nesting(tmp_path):
  nested = tmp_path / "chest_xray" / "chest_xray"
  for split in ("train", "val", "test"):
    for c in ("NORMAL", "PNEUMONIA"):
      (nested / split / c).mkdir(parents=True)
  (tmp_path / "chest_xray" / "__MACOSX").mkdir()
  assert cxp.find_data_root(tmp_path) == nested
  assert cxp.find_data_root(tmp_path / "chest_xray") == nested


def test_mendeley_layout_without_val_builds_train_and_test(tmp_path):
  manual = tmp_path / "chest_xray"
  for split in ("train", "test"):
    _write_jpeg(manual / split / "NORMAL" / f"IM-0{len(split)}00-0001.jpeg")
    _write_jpeg(manual / split / "PNEUMONIA" / f"person{len(split)}_bacteria_1.jpeg")
  builder = testing_utils.build(cxp.Builder, tmp_path, tmp_path / "data", "3class")
  assert set(builder.info.splits) == {"train", "test"}
  assert builder.info.splits["train"].num_examples == 2


def test_skips_and_reports_bad_files(tmp_path, caplog):
  manual = tmp_path / "chest_xray"
  for split in ("train", "val", "test"):
    _write_jpeg(manual / split / "NORMAL" / f"IM-0{len(split)}00-0001.jpeg")
    _write_jpeg(manual / split / "PNEUMONIA" / f"person{len(split)}_virus_1.jpeg")
  (manual / "train" / "NORMAL" / "IM-0999-0001.jpeg").write_bytes(b"garbage")  # Corrupt.
  (manual / "train" / "NORMAL" / "Thumbs.db").write_bytes(b"junk")  # Not an image.
  _write_jpeg(manual / "train" / "PNEUMONIA" / "scan_7.jpeg")  # Pneumonia type unknown.

  with caplog.at_level("WARNING"):
    b2 = testing_utils.build(cxp.Builder, tmp_path, tmp_path / "data2", "2class")
  b3 = testing_utils.build(cxp.Builder, tmp_path, tmp_path / "data3", "3class")

  assert b2.info.splits["train"].num_examples == 3  # Includes scan_7 (label pneumonia).
  assert b3.info.splits["train"].num_examples == 2  # scan_7 can't be bacterial/viral: skipped.
  assert b2.info.splits["val"].num_examples == b3.info.splits["val"].num_examples == 2
  for b in (b2, b3):
    assert b.skipped["train"]["unreadable/corrupt image"] == ["train/NORMAL/IM-0999-0001.jpeg"]
    assert b.skipped["train"]["non-image file (ignored)"] == ["train/NORMAL/Thumbs.db"]
    assert not b.skipped["val"]
  assert b3.skipped["train"]["pneumonia type not in file name (3class)"] == [
    "train/PNEUMONIA/scan_7.jpeg"
  ]
  assert b2.flagged["train"]["patient id not in file name (kept, id = file stem)"] == [
    "train/PNEUMONIA/scan_7.jpeg"
  ]
  assert "IM-0999-0001.jpeg" in caplog.text and "2 file(s) skipped" in caplog.text

  # The corrupt file never got a label: it is in no split.
  ds = tfds.data_source("chest_xray_pneumonia/2class", data_dir=tmp_path / "data2")
  # Text features come back as bytes from a data source.
  names = {
    ds[s][i]["filename"].decode() for s in ("train", "val", "test") for i in range(len(ds[s]))
  }
  assert len(names) == 7 and not any("IM-0999" in n for n in names)


def test_data_source_random_access_on_dummy_data(tmp_path):
  testing_utils.build(cxp.Builder, DUMMY_DATA, tmp_path)
  ds = tfds.data_source("chest_xray_pneumonia/2class", data_dir=tmp_path)
  train = ds["train"]
  assert len(train) == 8
  ex = train[len(train) - 1]  # Random access, as grain does.
  assert ex["image"].dtype == np.uint8 and ex["image"].shape == (32, 32, 1)
  assert ex["label"] in (0, 1)
  examples = [train[i] for i in range(len(train))]
  rgb = [e for e in examples if e["filename"].endswith(b"person8_bacteria_10.jpeg")]
  assert len(rgb) == 1 and rgb[0]["image"].shape == (32, 32, 1)  # RGB converted to L.
  by_name = {e["filename"].decode(): e for e in examples}
  assert by_name["train/NORMAL/NORMAL2-IM-0007-0001.jpeg"]["patient_id"] == b"NORMAL2-IM-0007"
  assert by_name["train/NORMAL/NORMAL2-IM-0007-0001.jpeg"]["label"] == 0
  assert by_name["train/PNEUMONIA/person3_virus_5.jpeg"]["patient_id"] == b"person3"
  assert by_name["train/PNEUMONIA/person3_virus_5.jpeg"]["label"] == 1


if __name__ == "__main__":
  tfds.testing.test_main()
