"""Tests for the figure1_covid_chestxray builder on the generated `dummy_data/`.

`dummy_data/Figure1-COVID-chestxray-dataset/` mirrors upstream (see `make_dummy_data.py`): 11
metadata rows in latin-1/cp1252, of which 5 are kept (3 COVID-19, 1 Pneumonia, 1 No finding); the
rest, and one file without a row, are skipped and counted.
"""

from __future__ import annotations

import collections
import pathlib
import shutil
from unittest import mock

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_builders import covidnet_sites, testing_utils
from tfds_builders.figure1_covid_chestxray import figure1_covid_chestxray_dataset_builder as fig1
from tfds_builders.figure1_covid_chestxray import make_dummy_data

tfds.disable_progress_bar()

DUMMY_DATA = pathlib.Path(__file__).parent / "dummy_data"
DUMMY_ROOT = DUMMY_DATA / "Figure1-COVID-chestxray-dataset"


class Figure1ThreeClassTest(tfds.testing.DatasetBuilderTestCase):
  """Standard tfds checks; `manual_dir` is mocked to `dummy_data/` by the base class."""

  DATASET_CLASS = fig1.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["3class"]
  SPLITS = {"train": 5}


class Figure1TwoClassTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = fig1.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["2class"]
  SPLITS = {"train": 5}


@pytest.mark.parametrize(
  ("raw", "patient"),
  [("COVID-00003a", "COVID-00003"), ("COVID-00039c", "COVID-00039"), ("COVID-00004", "COVID-00004"),
   ("", "")],
)  # fmt: skip
def test_patient_id_drops_the_image_letter(raw, patient):
  assert fig1.patient_id({"patientid": raw}) == patient


def test_metadata_is_read_as_latin1_and_a_utf8_resave_too(tmp_path):
  rows = covidnet_sites.read_metadata(DUMMY_ROOT / "metadata.csv", fig1.SITE)
  assert rows[0]["notes"] == "Fever 38\u00b0 and cough."
  assert rows[4]["notes"] == "patient\u2019s cough"  # cp1252 0x92, not the C1 control U+0092.
  resaved = tmp_path / "metadata.csv"
  resaved.write_text((DUMMY_ROOT / "metadata.csv").read_bytes().decode("cp1252"), "utf-8")
  assert covidnet_sites.read_metadata(resaved, fig1.SITE) == rows


def test_missing_columns_error_names_file_and_columns(tmp_path):
  root = tmp_path / "Figure1-COVID-chestxray-dataset"
  (root / "images").mkdir(parents=True)
  (root / "metadata.csv").write_text("patientid,finding\nCOVID-00001,COVID-19\n")
  with pytest.raises(ValueError) as e:
    testing_utils.build(fig1.Builder, tmp_path, tmp_path / "data", "3class")
  assert (
    "metadata.csv" in str(e.value) and "'view'" in str(e.value) and "'modality'" in str(e.value)
  )


def test_wrong_layout_error_names_path_layout_and_source(tmp_path):
  (tmp_path / "something_else").mkdir()
  with pytest.raises(FileNotFoundError) as e:
    testing_utils.build(fig1.Builder, tmp_path, tmp_path / "data", "3class")
  msg = str(e.value)
  assert str(tmp_path) in msg and "metadata.csv" in msg and "images/" in msg
  assert "github.com/agchung/Figure1-COVID-chestxray-dataset" in msg and "latin-1" not in msg


def test_without_manual_dir_downloads_the_archive(tmp_path):
  """No network here: the download is mocked; the archive's top folder must be found."""
  extracted = tmp_path / "extracted"
  shutil.copytree(DUMMY_ROOT, extracted / "Figure1-COVID-chestxray-dataset-master")
  with mock.patch.object(
    tfds.download.DownloadManager, "download_and_extract", return_value=extracted
  ) as download:
    builder = testing_utils.build(fig1.Builder, None, tmp_path / "data", "3class")
  download.assert_called_once_with(fig1.SITE.archive_url)
  assert builder.info.splits["train"].num_examples == 5


@pytest.fixture(scope="module")
def dummy_builds(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds")
  return data_dir, {
    c: testing_utils.build(fig1.Builder, DUMMY_DATA, data_dir, c) for c in ("3class", "2class")
  }


def test_skip_and_flag_counts_by_reason(dummy_builds):
  _, builders = dummy_builds
  for builder in builders.values():
    assert builder.skipped["train"] == {
      "blank finding (no label upstream)": ["images/COVID-00002.jpg", "images/COVID-00005.jpg"],
      "not frontal (view 'L')": ["images/COVID-00007.jpg"],
      "not X-ray (modality 'CT')": ["images/COVID-00008.jpg"],
      "row without image file": ["images/COVID-00009.jpg"],
      "unreadable/corrupt image": ["images/COVID-00010.jpg"],
      "file without metadata row": ["images/COVID-00099.jpg"],
    }
    assert builder.flagged["train"] == {
      "blank view (kept: not recorded upstream)": [
        "images/COVID-00003b.png",
        "images/COVID-00006.jpg",
      ],
      "non-numeric offset '?' (stored NaN)": ["images/COVID-00004.jpg"],
    }
    row_skips = sum(len(v) for k, v in builder.skipped["train"].items() if "metadata row" not in k)
    assert row_skips + builder.info.splits["train"].num_examples == len(make_dummy_data.ROWS)


def test_examples_labels_and_features(dummy_builds):
  data_dir, _ = dummy_builds
  for config, expected in [
    ("3class", {"covid-19": 3, "other_pneumonia": 1, "no_finding": 1}),
    ("2class", {"covid-19": 3, "other": 2}),
  ]:
    train = tfds.data_source(f"figure1_covid_chestxray/{config}", data_dir=data_dir)["train"]
    names = train.dataset_info.features["label"].names
    assert collections.Counter(names[train[i]["label"]] for i in range(len(train))) == expected
  train = tfds.data_source("figure1_covid_chestxray/3class", data_dir=data_dir)["train"]
  by_name = {ex["filename"].decode(): ex for ex in (train[i] for i in range(len(train)))}
  for name, ex in by_name.items():
    assert ex["image"].dtype == np.uint8 and ex["image"].shape[-1] == 1, name
    assert ex["source"] == b"fig1", name
  a, b = by_name["images/COVID-00003a.jpg"], by_name["images/COVID-00003b.png"]
  assert a["patient_id"] == b["patient_id"] == b"COVID-00003"
  assert b["view"] == b"" and b["image"][:, :3].max() < 40  # Transparent margin onto black.
  first = by_name["images/COVID-00001.jpg"]
  assert first["notes"].decode() == "Fever 38\u00b0 and cough." and first["offset"] == 13.0
  assert by_name["images/COVID-00004.jpg"]["age"] == b"early 40s"
  assert np.isnan(by_name["images/COVID-00004.jpg"]["offset"])


@pytest.mark.slow
def test_tfds_build_cli(tmp_path):
  result = testing_utils.run_tfds_build(
    "tfds_builders/figure1_covid_chestxray", tmp_path, manual_dir=DUMMY_DATA, config="2class"
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert testing_utils.array_record_files(tmp_path, "figure1_covid_chestxray/2class/1.0.0")
  assert "blank finding (no label upstream): 2" in result.stdout + result.stderr


if __name__ == "__main__":
  tfds.testing.test_main()
