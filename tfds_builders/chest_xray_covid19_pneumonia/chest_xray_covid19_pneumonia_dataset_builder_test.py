"""Tests for the chest_xray_covid19_pneumonia builder on the generated `dummy_data/`.

`dummy_data/Data/` mirrors the unzipped Kaggle archive (see `make_dummy_data.py`): train 8 images
(an RGB JPEG, a PNG named `.jpg` and a misfiled `NORMAL(7).jpg` among them) plus a corrupt `.jpg`
and a `.DS_Store` that must be skipped; test 4. No real data is available for this set here.
"""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_builders import testing_utils
from tfds_builders.chest_xray_covid19_pneumonia import (
  chest_xray_covid19_pneumonia_dataset_builder as cxc,
)

tfds.disable_progress_bar()

DUMMY_DATA = pathlib.Path(__file__).parent / "dummy_data"
NAME = "chest_xray_covid19_pneumonia"


class ChestXrayCovid19PneumoniaTest(tfds.testing.DatasetBuilderTestCase):
  """Standard tfds checks; `manual_dir` is mocked to `dummy_data/` (the parent of `Data/`)."""

  DATASET_CLASS = cxc.Builder
  SPLITS = {"train": 8, "test": 4}


_write_jpeg = testing_utils.write_noise_image  # A grey noise JPEG.


def _minimal_layout(data: pathlib.Path) -> None:
  for split in cxc.SPLITS:
    for class_dir in cxc.CLASS_DIRS:
      _write_jpeg(data / split / class_dir / f"{class_dir}(0).jpg")


def test_label_names():
  assert cxc.LABEL_NAMES == ("covid-19", "normal", "pneumonia")


def test_dummy_data_skips_flags_and_examples(tmp_path):
  builder = testing_utils.build(cxc.Builder, DUMMY_DATA, tmp_path)
  assert builder.skipped == {
    "train": {
      "non-image file (ignored)": ["train/NORMAL/.DS_Store"],
      "unreadable/corrupt image": ["train/PNEUMONIA/PNEUMONIA(2).jpg"],
    },
    "test": {},
  }
  flagged = builder.flagged["train"]
  assert flagged["not a grey JPEG (converted to grey JPEG)"] == [
    "train/COVID19/COVID19(1).jpg",  # RGB JPEG.
    "train/COVID19/COVID19(2).jpg",  # PNG named .jpg.
  ]
  assert flagged["file name names another class than its folder (folder label kept)"] == [
    "train/PNEUMONIA/NORMAL(7).jpg"
  ]
  # Every example, no exception: upstream has no patient ids.
  assert len(flagged[cxc.NO_PATIENT_ID]) == 8
  assert builder.flagged["test"] == {cxc.NO_PATIENT_ID: builder.flagged["test"][cxc.NO_PATIENT_ID]}
  assert len(builder.flagged["test"][cxc.NO_PATIENT_ID]) == 4

  ds = tfds.data_source(NAME, data_dir=tmp_path)
  by_name = {}
  for split in cxc.SPLITS:
    for i in range(len(ds[split])):
      ex = ds[split][i]
      by_name[ex["filename"].decode()] = ex
      image = ex["image"]
      assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 1
      assert 24 <= image.shape[0] <= 32 and image.std() > 0
      assert ex["source"] == NAME.encode()
  assert len(by_name) == 12
  misfiled = by_name["train/PNEUMONIA/NORMAL(7).jpg"]
  assert (
    cxc.LABEL_NAMES[misfiled["label"]] == "pneumonia" and misfiled["patient_id"] == b"NORMAL(7)"
  )
  assert cxc.LABEL_NAMES[by_name["test/COVID19/COVID19(460).jpg"]["label"]] == "covid-19"
  assert cxc.LABEL_NAMES[by_name["train/NORMAL/NORMAL(1).jpg"]["label"]] == "normal"
  assert by_name["train/COVID19/COVID19(2).jpg"]["image"].shape[-1] == 1  # PNG converted.


@pytest.mark.parametrize("nesting", ["", "Data", "archive/Data"])
def test_find_data_root_accepts_data_its_parent_and_archive(tmp_path, nesting):
  data = tmp_path / nesting if nesting else tmp_path
  _minimal_layout(data)
  assert cxc.find_data_root(tmp_path) == data


def test_stray_files_and_unknown_class_folders_are_skipped(tmp_path):
  data = tmp_path / "Data"
  _minimal_layout(data)
  _write_jpeg(data / "train" / "loose.jpg")
  _write_jpeg(data / "test" / "TUBERCULOSIS" / "TB(1).jpg")
  _write_jpeg(data / "test" / "PNEUMONIA" / "person1_virus_6.jpeg")  # Not the upstream pattern.
  builder = testing_utils.build(cxc.Builder, tmp_path, tmp_path / "out")
  outside = "outside the COVID19/NORMAL/PNEUMONIA folders"
  assert builder.skipped["train"] == {outside: ["train/loose.jpg"]}
  assert builder.skipped["test"] == {outside: ["test/TUBERCULOSIS/TB(1).jpg"]}
  assert builder.flagged["test"]["file name not in the upstream CLASS(N) pattern"] == [
    "test/PNEUMONIA/person1_virus_6.jpeg"
  ]
  assert builder.info.splits["test"].num_examples == 4


def test_missing_manual_dir_error_names_path_layout_and_source(tmp_path):
  missing = tmp_path / "nope"
  with pytest.raises(FileNotFoundError) as e:
    testing_utils.build(cxc.Builder, missing, tmp_path / "data")
  msg = str(e.value)
  assert str(missing) in msg and "train/COVID19" in msg
  assert "kaggle.com/datasets/prashant268" in msg


def test_wrong_layout_error_names_path_and_layout(tmp_path):
  manual = tmp_path / "manual"
  _minimal_layout(manual / "Data")
  shutil.rmtree(manual / "Data" / "test" / "COVID19")  # One class folder short.
  with pytest.raises(FileNotFoundError) as e:
    cxc.find_data_root(manual)
  msg = str(e.value)
  assert str(manual) in msg and "test/COVID19" in msg and "kaggle" in msg.lower()


@pytest.mark.slow
def test_tfds_build_cli(tmp_path):
  result = testing_utils.run_tfds_build(
    "tfds_builders/chest_xray_covid19_pneumonia", tmp_path, manual_dir=DUMMY_DATA
  )
  assert result.returncode == 0, result.stderr[-3000:]
  files = testing_utils.array_record_files(tmp_path, f"{NAME}/1.0.0")
  assert any(f.startswith(f"{NAME}-train.array_record") for f in files), files
  assert any(f.startswith(f"{NAME}-test.array_record") for f in files), files
  source = tfds.data_source(NAME, data_dir=tmp_path)
  assert (len(source["train"]), len(source["test"])) == (8, 4)


if __name__ == "__main__":
  tfds.testing.test_main()
