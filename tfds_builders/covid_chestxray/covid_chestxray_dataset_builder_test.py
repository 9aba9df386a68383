"""Tests for the covid_chestxray builder on the generated `dummy_data/`.

`dummy_data/covid-chestxray-dataset/` mirrors the upstream repository (see `make_dummy_data.py`):
18 metadata rows, of which 7 are kept in 3class (3 covid-19, 3 other_pneumonia, 1 no_finding) and
9 in 2class (plus ARDS and Tuberculosis as `other`); the rest, and one file without a row, are
skipped and counted.
"""

from __future__ import annotations

import collections
import io
import pathlib
import shutil
from unittest import mock

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from tfds_builders import testing_utils
from tfds_builders.covid_chestxray import covid_chestxray_dataset_builder as ccx
from tfds_builders.covid_chestxray import make_dummy_data

tfds.disable_progress_bar()

DUMMY_DATA = pathlib.Path(__file__).parent / "dummy_data"
DUMMY_ROOT = DUMMY_DATA / "covid-chestxray-dataset"


class CovidChestxray3ClassTest(tfds.testing.DatasetBuilderTestCase):
  """Standard tfds checks; `manual_dir` is mocked to `dummy_data/` by the base class."""

  DATASET_CLASS = ccx.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["3class"]
  SPLITS = {"train": 7}


class CovidChestxray2ClassTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = ccx.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["2class"]
  SPLITS = {"train": 9}  # The 3class rows plus ARDS and Tuberculosis as `other`.


@pytest.mark.parametrize(
  ("finding", "three", "two"),
  [
    # 2020 flat values.
    ("COVID-19", "covid-19", "covid-19"),
    ("COVID-19, ARDS", "covid-19", "covid-19"),
    ("SARS", "other_pneumonia", "other"),  # Another coronavirus, not COVID-19.
    ("Streptococcus", "other_pneumonia", "other"),
    ("Pneumocystis", "other_pneumonia", "other"),
    ("Klebsiella", "other_pneumonia", "other"),
    ("E.Coli", "other_pneumonia", "other"),
    ("Legionella", "other_pneumonia", "other"),
    ("Chlamydophila", "other_pneumonia", "other"),
    ("Varicella", "other_pneumonia", "other"),
    ("Influenza", "other_pneumonia", "other"),
    ("Lipoid", "other_pneumonia", "other"),
    ("Bacterial", "other_pneumonia", "other"),
    ("Pneumonia", "other_pneumonia", "other"),
    ("No Finding", "no_finding", "other"),
    ("ARDS", None, "other"),
    ("Tuberculosis", None, "other"),
    ("Cryptogenic Organizing Pneumonia", None, "other"),
    # Hierarchical values.
    ("Pneumonia/Viral/COVID-19", "covid-19", "covid-19"),
    ("Pneumonia/Viral/SARS", "other_pneumonia", "other"),
    ("Pneumonia/Bacterial/Streptococcus", "other_pneumonia", "other"),
    ("Pneumonia/Bacterial/Staphylococcus/MRSA", "other_pneumonia", "other"),
    ("Pneumonia/Fungal/Pneumocystis", "other_pneumonia", "other"),
    ("Pneumonia/Lipoid", "other_pneumonia", "other"),
    ("Pneumonia/Aspiration", "other_pneumonia", "other"),
    # Whitespace and case as upstream writes them sometimes.
    ("Pneumonia/Viral/Herpes ", "other_pneumonia", "other"),
    (" no finding", "no_finding", "other"),
  ],
)
def test_map_finding(finding, three, two):
  assert ccx.map_finding(finding, "3class")[0] == three
  assert ccx.map_finding(finding, "2class")[0] == two


@pytest.mark.parametrize("config", ["3class", "2class"])
def test_map_finding_excludes_todo_unknown_and_names_unknown_values(config):
  assert ccx.map_finding("todo", config) == (None, "finding 'todo' (not labelled yet)")
  assert ccx.map_finding("Unknown", config) == (None, "finding 'Unknown' (diagnosis unknown)")
  label, reason = ccx.map_finding("Pneumonia/Viral/Adenovirus", config)
  assert label is None and "'Pneumonia/Viral/Adenovirus'" in reason and "unknown" in reason
  # Never guessed from a substring either.
  assert ccx.map_finding("COVID-19?", config)[0] is None


def test_mapping_table_is_consistent():
  groups = set(ccx.FINDING_GROUPS.values())
  for config in ccx.Builder.BUILDER_CONFIGS:
    scheme = ccx.LABEL_SCHEMES[config.name]
    assert set(scheme.values()) == set(config.label_names), config.name
    assert set(scheme) <= groups
  # No two table keys collide after normalisation.
  assert len({ccx.normalize_text(k) for k in ccx.FINDING_GROUPS}) == len(ccx.FINDING_GROUPS)


@pytest.mark.parametrize(
  ("view", "frontal"),
  [("PA", True), ("AP", True), ("AP Supine", True), ("AP semi erect", True), ("AP Erect", True),
   ("L", False), ("Axial", False), ("Coronal", False), ("", False), ("?", False)],
)  # fmt: skip
def test_is_frontal(view, frontal):
  assert ccx.is_frontal(view) is frontal


@pytest.mark.parametrize(
  ("url", "source"),
  [
    ("https://radiopaedia.org/cases/covid-19-pneumonia-2", "radiopaedia.org"),
    ("https://www.nejm.org/doi/full/10.1056/NEJMc2001272", "nejm.org"),
    ("https://pubs.rsna.org/doi/10.1148/rg.242035193", "pubs.rsna.org"),
    ("radiopaedia.org/cases/sarcoidosis-1", "radiopaedia.org"),
    ("", "unknown"),
    ("  ", "unknown"),
  ],
)
def test_url_source(url, source):
  assert ccx.url_source(url) == source


def test_parse_number():
  assert ccx.parse_number("-1") == -1.0 and ccx.parse_number(" 65 ") == 65.0
  assert np.isnan(ccx.parse_number(""))
  for bad in ("?", "nan", "50s"):
    with pytest.raises(ValueError):
      ccx.parse_number(bad)


def test_lung_mask_drops_devices_and_resizes():
  grey = np.zeros((10, 8), np.uint8)
  grey[2:8, 1:4] = 255
  grey[2:8, 4:7] = 254  # JPEG noise on lung pixels.
  grey[0:2, 0:2] = 127  # Device class.
  png = _png(grey)
  mask, resized = ccx.lung_mask(png, (8, 10))
  assert not resized and mask.shape == (10, 8, 1) and set(np.unique(mask)) == {0, 255}
  assert mask[2:8, 1:7].min() == 255 and mask[0:2, 0:2].max() == 0
  big, resized = ccx.lung_mask(png, (16, 20))
  assert resized and big.shape == (20, 16, 1) and set(np.unique(big)) == {0, 255}


def _png(arr: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(arr, "L").save(buf, format="PNG")
  return buf.getvalue()


def test_find_data_root_accepts_folder_parent_and_archive(tmp_path):
  for sub in ("covid-chestxray-dataset", "covid-chestxray-dataset-master"):
    root = tmp_path / sub / "x" / sub
    (root / "images").mkdir(parents=True)
    (root / "metadata.csv").write_text("patientid\n")
    assert ccx.find_data_root(root) == root
    assert ccx.find_data_root(root.parent) == root


def test_wrong_layout_error_names_path_layout_and_source(tmp_path):
  (tmp_path / "chest_xray").mkdir()
  with pytest.raises(FileNotFoundError) as e:
    testing_utils.build(ccx.Builder, tmp_path, tmp_path / "data", "3class")
  msg = str(e.value)
  assert str(tmp_path) in msg and "metadata.csv" in msg and "images/" in msg
  assert "github.com/ieee8023/covid-chestxray-dataset" in msg


def test_missing_columns_error_names_file_and_columns(tmp_path):
  root = tmp_path / "covid-chestxray-dataset"
  (root / "images").mkdir(parents=True)
  (root / "metadata.csv").write_text("patientid,finding,filename\n1,COVID-19,a.jpg\n")
  with pytest.raises(ValueError) as e:
    testing_utils.build(ccx.Builder, tmp_path, tmp_path / "data", "3class")
  assert "metadata.csv" in str(e.value) and "'view'" in str(e.value)
  assert "'modality'" in str(e.value)


def test_without_manual_dir_downloads_the_archive(tmp_path):
  """No network here: the download is mocked; the archive's top folder must be found."""
  extracted = tmp_path / "extracted"
  shutil.copytree(DUMMY_ROOT, extracted / "covid-chestxray-dataset-master")
  with mock.patch.object(
    tfds.download.DownloadManager, "download_and_extract", return_value=extracted
  ) as download:
    builder = testing_utils.build(ccx.Builder, None, tmp_path / "data", "3class")
  download.assert_called_once_with(ccx.ARCHIVE_URL)
  assert builder.info.splits["train"].num_examples == 7


def test_failed_download_error_says_how_to_use_manual_dir(tmp_path):
  with mock.patch.object(
    tfds.download.DownloadManager, "download_and_extract", side_effect=OSError("no network")
  ):
    with pytest.raises(RuntimeError) as e:
      testing_utils.build(ccx.Builder, tmp_path / "nope", tmp_path / "data", "3class")
  msg = str(e.value)
  assert ccx.ARCHIVE_URL in msg and "no network" in msg and "--manual_dir" in msg


@pytest.fixture(scope="module")
def dummy_builds(tmp_path_factory) -> tuple[pathlib.Path, dict[str, ccx.Builder]]:
  data_dir = tmp_path_factory.mktemp("tfds")
  return data_dir, {
    c: testing_utils.build(ccx.Builder, DUMMY_DATA, data_dir, c) for c in ("3class", "2class")
  }


def test_skip_counts_by_reason(dummy_builds):
  _, builders = dummy_builds
  common = {
    "CT volume (volumes/ folder)": ["volumes/coronacases_org_001.nii.gz"],
    "not X-ray (modality 'CT')": ["images/jkms-35-e79-g001-l-d.jpg"],
    "not frontal (view 'L')": ["images/nejmoa2001191_f1-L.jpeg"],
    "not frontal (view '')": ["images/6770dac454c45c86bc6c2d6193b177_jumbo.jpeg"],
    "finding 'todo' (not labelled yet)": ["images/08ed451c576ee00935ee178ec85c57_jumbo-1.jpeg"],
    "finding 'Unknown' (diagnosis unknown)": ["images/unknown-1.jpg"],
    "unknown finding value 'Sarcoidosis' (not in FINDING_GROUPS)": ["images/sarcoidosis-1.jpg"],
    "row without image file": ["images/covid-19-pneumonia-14-PA.png"],
    "unreadable/corrupt image": ["images/kjr-21-e24-g001-l-a.jpg"],
    "file without metadata row": ["images/orphan-figure-3.jpeg"],
  }
  assert builders["2class"].skipped["train"] == common
  assert builders["3class"].skipped["train"] == {
    **common,
    "finding outside the 3class scheme: 'ARDS'": ["images/ARDSSevere.png"],
    "finding outside the 3class scheme: 'Tuberculosis'": ["images/tuberculosis-1.jpg"],
  }
  for config, builder in builders.items():
    assert builder.flagged["train"] == {
      "mask resized to the image size": ["images/41379_2020_536_Fig2_HTML-c1.png"],
      "non-numeric offset '?' (stored NaN)": ["images/00870a9c.jpg"],
    }, config
    # Every metadata row is either an example or counted once.
    row_skips = sum(len(v) for k, v in builder.skipped["train"].items() if "metadata row" not in k)
    assert row_skips + builder.info.splits["train"].num_examples == len(make_dummy_data.ROWS)


def test_examples_labels_features_and_masks(dummy_builds):
  data_dir, _ = dummy_builds
  for config, expected in [
    ("3class", {"covid-19": 3, "other_pneumonia": 3, "no_finding": 1}),
    ("2class", {"covid-19": 3, "other": 6}),
  ]:
    train = tfds.data_source(f"covid_chestxray/{config}", data_dir=data_dir)["train"]
    names = train.dataset_info.features["label"].names
    assert collections.Counter(names[train[i]["label"]] for i in range(len(train))) == expected

  train = tfds.data_source("covid_chestxray/3class", data_dir=data_dir)["train"]
  # Text features come back as bytes from a data source.
  by_name = {ex["filename"].decode(): ex for ex in (train[i] for i in range(len(train)))}
  for name, ex in by_name.items():
    assert ex["image"].dtype == np.uint8 and ex["image"].shape[-1] == 1, name
    assert ex["mask"].shape == ex["image"].shape, name
    assert set(np.unique(ex["mask"])) <= {0, 255}, name
    assert bool(ex["has_mask"]) == (ex["mask"].max() == 255), name
  assert sum(bool(ex["has_mask"]) for ex in by_name.values()) == 2

  masked = by_name["images/nejmc2001573_f1a.jpeg"]
  h, w = masked["mask"].shape[:2]
  assert masked["mask"][: h // 5, : w // 4].max() == 0  # The device region (127) is not lung.
  assert masked["mask"][h // 2, w // 4] == 255
  assert masked["source"] == b"nejm.org" and masked["patient_id"] == b"4"
  assert masked["age"] == 52.0 and masked["offset"] == 0.0 and masked["sex"] == b"F"

  rgba = by_name["images/41379_2020_536_Fig2_HTML-c1.png"]  # RGBA PNG -> grey, mask resized.
  assert rgba["patient_id"] == b"326a" and rgba["finding"] == b"Pneumonia/Viral/COVID-19"
  assert rgba["image"][:, :2].max() < 40  # The transparent margin composited onto black.
  assert rgba["license"] == b"CC BY 4.0" and rgba["view"] == b"AP"

  sars = by_name["images/SARS-10.1148rg.242035193-g04mr34g0-Fig8a-day0.jpeg"]
  assert np.isnan(sars["age"]) and np.isnan(sars["offset"])  # Blank cells.
  assert by_name["images/streptococcus-pneumoniae-pneumonia-1.jpg"]["offset"] == -1.0
  assert by_name["images/pneumocystis-pneumonia-2-PA.png"]["view"] == b"AP semi erect"
  assert np.isnan(by_name["images/00870a9c.jpg"]["offset"])  # `?`.


@pytest.mark.slow
def test_tfds_build_cli(tmp_path):
  """`tfds build` as users run it (the CLI, array_record) on the dummy data."""
  result = testing_utils.run_tfds_build(
    "tfds_builders/covid_chestxray", tmp_path, manual_dir=DUMMY_DATA, config="2class"
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert testing_utils.array_record_files(tmp_path, "covid_chestxray/2class/1.0.0")
  train = tfds.data_source("covid_chestxray/2class", data_dir=tmp_path)["train"]
  assert len(train) == 9
  # The skip summary is logged (the CLI sends absl logs to stdout).
  assert "file without metadata row: 1" in result.stdout + result.stderr


if __name__ == "__main__":
  tfds.testing.test_main()
