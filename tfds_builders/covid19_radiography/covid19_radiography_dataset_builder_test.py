"""Tests for the covid19_radiography builder on the generated `dummy_data/`.

`dummy_data/` holds both release layouts (see `make_dummy_data.py`): `COVID-19 Radiography
Database/` (v1) and `COVID-19_Radiography_Dataset/` (current), 7 readable images each, with
corrupt images, non-image files, spreadsheet rows without files and files without rows.
"""

from __future__ import annotations

import io
import pathlib
import shutil

import numpy as np
import openpyxl
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from tfds_builders import testing_utils
from tfds_builders.covid19_radiography import covid19_radiography_dataset_builder as crd

tfds.disable_progress_bar()

DUMMY_DATA = pathlib.Path(__file__).parent / "dummy_data"
BUILDER_DIR = "tfds_builders/covid19_radiography"


class Covid19RadiographyV1Test(tfds.testing.DatasetBuilderTestCase):
  """Standard tfds checks on the v1 layout; `manual_dir` is mocked to `dummy_data/`."""

  DATASET_CLASS = crd.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["v1"]
  SPLITS = {"train": 7}


class Covid19RadiographyCurrentTest(tfds.testing.DatasetBuilderTestCase):
  """Standard tfds checks on the current (v4/v5) layout."""

  DATASET_CLASS = crd.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["current"]
  SPLITS = {"train": 7}


def _examples(data_dir: pathlib.Path, config: str) -> dict[str, dict]:
  """All examples of the built `train` split, by file name (text features decoded)."""
  source = tfds.data_source(f"covid19_radiography/{config}", data_dir=data_dir)["train"]
  out = {}
  for i in range(len(source)):
    ex = dict(source[i])
    for key in ("filename", "patient_id", "source", "url"):
      ex[key] = ex[key].decode()
    out[ex["filename"]] = ex
  return out


def _xlsx(path: pathlib.Path, rows: list[tuple], header=("FILE NAME", "FORMAT", "SIZE", "URL")):
  workbook = openpyxl.Workbook()
  workbook.active.append(list(header))
  for row in rows:
    workbook.active.append(list(row))
  workbook.save(path)


@pytest.mark.parametrize(
  ("name", "key"),
  [
    ("COVID-19 (69).png", "covid19#69"),
    ("COVID-19(69)", "covid19#69"),
    ("COVID (119).png", "covid#119"),
    ("COVID 119", "covid#119"),
    ("COVID-1", "covid#1"),
    ("COVID-1.png", "covid#1"),
    ("NORMAL-1", "normal#1"),
    ("Normal-1.PNG", "normal#1"),
    ("Lung_Opacity-12", "lungopacity#12"),
    ("Viral Pneumonia (7).png", "viralpneumonia#7"),
    ("Viral Pneumonia-007", "viralpneumonia#7"),
    ("readme", "readme"),
  ],
)
def test_match_key(name, key):
  assert crd.match_key(name) == key


def test_match_rows_to_files_counts_mismatches_both_ways():
  rows = ["COVID-19(1)", "COVID-19(2)", "COVID-19(2)", "COVID-19(9)", "COVID 4"]
  files = ["COVID-19 (1).png", "COVID-19 (2).png", "COVID-19 (3).png", "COVID (4).png"]
  m = crd.match_rows_to_files(rows, files)
  assert m.row_of_file == {"COVID-19 (1).png": 0, "COVID-19 (2).png": 1, "COVID (4).png": 4}
  assert m.duplicate_rows == [2]
  assert m.rows_without_file == [3]  # COVID-19(9); COVID-19 (3).png has no row.
  assert not m.by_number


def test_match_rows_to_files_falls_back_to_the_number_when_prefixes_differ():
  # A spreadsheet naming the class differently from the files (seen across releases).
  rows = ["COVID-19(1)", "COVID-19(2)", "COVID-19(5)"]
  files = ["COVID (1).png", "COVID (2).png", "COVID (3).png"]
  m = crd.match_rows_to_files(rows, files)
  assert m.row_of_file == {"COVID (1).png": 0, "COVID (2).png": 1}
  assert m.by_number == {"COVID (1).png", "COVID (2).png"}
  assert m.rows_without_file == [2]


@pytest.mark.parametrize(
  ("url", "source"),
  [
    ("https://www.kaggle.com/c/rsna-pneumonia-detection-challenge/data", "rsna"),
    ("https://www.kaggle.com/paultimothymooney/chest-xray-pneumonia", "kermany"),
    ("https://bimcv.cipf.es/bimcv-projects/bimcv-covid19/#1590858128006-9e640421-6711", "bimcv"),
    ("https://sirm.org/category/senza-categoria/covid-19/", "sirm"),
    ("https://eurorad.org", "eurorad"),
    ("https://github.com/armiro/COVID-CXNet", "github:armiro/covid-cxnet"),
    (
      "https://github.com/ml-workgroup/covid-19-image-repository/tree/master/png",
      "github:ml-workgroup/covid-19-image-repository",
    ),
    ("https://www.kaggle.com/datasets/someone/some-set", "kaggle:someone/some-set"),
    ("https://www.nejm.org/doi/full/10.1056/NEJMoa2001191", "nejm.org"),
    ("radiopaedia.org/cases/covid-19-pneumonia-1", "radiopaedia.org"),
    ("", "unknown"),
  ],
)
def test_source_from_url(url, source):
  assert crd.source_from_url(url) == source


def test_read_metadata_skips_blank_rows_and_reports_a_bad_header(tmp_path):
  good = tmp_path / "COVID.metadata.xlsx"
  _xlsx(good, [("COVID-1", "PNG", "256*256", "https://sirm.org/x"), (None, None, None, None)])
  assert crd.read_metadata(good) == [("COVID-1", "https://sirm.org/x")]
  bad = tmp_path / "Normal.metadata.xlsx"
  _xlsx(bad, [("NORMAL-1", "x")], header=("NAME", "LINK"))
  with pytest.raises(ValueError, match="Normal.metadata.xlsx.*FILE NAME"):
    crd.read_metadata(bad)


def test_mask_png_is_binary_and_resized_nearest():
  mask = np.zeros((8, 8), np.uint8)
  mask[2:6, 2:6] = 200  # Not 255: thresholded at 128.
  data = io.BytesIO()
  Image.fromarray(mask, "L").save(data, format="PNG")
  out = np.asarray(Image.open(io.BytesIO(crd.mask_png(data.getvalue(), (12, 12)))))
  assert out.shape == (12, 12) and set(np.unique(out)) == {0, 255}
  assert out[6, 6] == 255 and out[0, 0] == 0


@pytest.mark.parametrize("config", ["v1", "current"])
def test_find_data_root_accepts_folder_parent_and_archive_nesting(tmp_path, config):
  cfg = crd.Builder.builder_configs[config]

  def make(root: pathlib.Path) -> pathlib.Path:
    for c in cfg.class_folders:
      (root / c.folder / cfg.images_subdir).mkdir(parents=True)
    return root

  folder = make(tmp_path / "a" / cfg.root_name)
  assert crd.find_data_root(folder, cfg) == folder  # The folder itself.
  assert crd.find_data_root(tmp_path / "a", cfg) == folder  # Its parent.
  twice = make(tmp_path / "b" / cfg.root_name / cfg.root_name)
  assert crd.find_data_root(tmp_path / "b", cfg) == twice
  archive = make(tmp_path / "c" / "archive" / cfg.root_name)
  assert crd.find_data_root(tmp_path / "c", cfg) == archive


def test_missing_manual_dir_error_names_path_layout_and_source(tmp_path):
  missing = tmp_path / "nope"
  with pytest.raises(FileNotFoundError) as e:
    testing_utils.build(crd.Builder, missing, tmp_path / "data")
  msg = str(e.value)
  assert str(missing) in msg and "COVID-19_Radiography_Dataset" in msg and "Lung_Opacity" in msg
  assert "kaggle.com" in msg


def test_wrong_layout_error_names_path_and_layout(tmp_path):
  manual = tmp_path / "manual"
  (manual / "COVID-19_Radiography_Dataset" / "COVID" / "images").mkdir(parents=True)  # Partial.
  with pytest.raises(FileNotFoundError) as e:
    testing_utils.build(crd.Builder, manual, tmp_path / "data")
  msg = str(e.value)
  assert str(manual) in msg and "Viral Pneumonia" in msg and "kaggle.com" in msg


def test_v1_dummy_data_examples_sources_and_bookkeeping(tmp_path):
  builder = testing_utils.build(crd.Builder, DUMMY_DATA, tmp_path, "v1")
  examples = _examples(tmp_path, "v1")
  names = builder.info.features["label"].names
  assert names == ["covid-19", "normal", "viral_pneumonia"]
  counts = {n: sum(names[e["label"]] == n for e in examples.values()) for n in names}
  assert counts == {"covid-19": 3, "normal": 2, "viral_pneumonia": 2}
  assert {f: e["source"] for f, e in examples.items() if f.startswith("COVID-19/")} == {
    "COVID-19/COVID-19 (1).png": "sirm",
    "COVID-19/COVID-19 (2).png": "github:ieee8023/covid-chestxray-dataset",
    "COVID-19/COVID-19 (3).png": "nejm.org",  # A publication URL: its host.
  }
  rgb = examples["COVID-19/COVID-19 (3).png"]
  assert rgb["image"].shape == (30, 30, 1)  # RGB converted to grey.
  assert examples["NORMAL/NORMAL (1).png"]["source"] == "kermany"
  assert examples["NORMAL/NORMAL (1).png"]["patient_id"] == "NORMAL (1)"
  # No masks in v1: all-zero masks of the image size.
  assert all(not e["has_mask"] and e["mask"].shape == (30, 30, 1) for e in examples.values())
  assert not any(e["mask"].any() for e in examples.values())
  # The image without row is kept with source unknown; the corrupt one is not in the split.
  orphan = examples["Viral Pneumonia/Viral Pneumonia (2).png"]
  assert orphan["source"] == "unknown" and orphan["url"] == ""
  assert "COVID-19/COVID-19 (4).png" not in examples

  skipped, flagged = builder.skipped["train"], builder.flagged["train"]
  assert skipped[crd.SKIP_CORRUPT] == ["COVID-19/COVID-19 (4).png"]
  assert skipped[crd.SKIP_NOT_IMAGE] == ["NORMAL/desktop.ini"]
  assert skipped[crd.SKIP_ROW_NO_FILE] == ["COVID-19: COVID-19(5)"]
  assert flagged[crd.FLAG_NO_ROW] == ["Viral Pneumonia/Viral Pneumonia (2).png"]
  assert len(flagged[crd.FLAG_NO_PATIENT_ID]) == 7
  assert crd.FLAG_NO_MASK not in flagged  # v1 has no masks by design: not a doubt.


def test_current_dummy_data_masks_sources_and_bookkeeping(tmp_path):
  builder = testing_utils.build(crd.Builder, DUMMY_DATA, tmp_path, "current")
  examples = _examples(tmp_path, "current")
  names = builder.info.features["label"].names
  assert names == ["covid-19", "normal", "lung_opacity", "viral_pneumonia"]
  counts = {n: sum(names[e["label"]] == n for e in examples.values()) for n in names}
  assert counts == {"covid-19": 3, "normal": 2, "lung_opacity": 1, "viral_pneumonia": 1}
  normal = examples["Normal/images/Normal-1.png"]  # Row spelled NORMAL-1.
  assert normal["source"] == "rsna"
  assert normal["url"] == "https://www.kaggle.com/c/rsna-pneumonia-detection-challenge/data"
  assert examples["COVID/images/COVID-1.png"]["source"] == "bimcv"
  # 24x24 masks resized to the 30x30 images, binary.
  covid1 = examples["COVID/images/COVID-1.png"]
  assert covid1["has_mask"] and covid1["mask"].shape == covid1["image"].shape == (30, 30, 1)
  assert set(np.unique(covid1["mask"])) == {0, 255}
  no_mask = examples["COVID/images/COVID-3.png"]  # RGBA, no mask file.
  assert not no_mask["has_mask"] and not no_mask["mask"].any()
  assert no_mask["image"].shape == (30, 30, 1)

  skipped, flagged = builder.skipped["train"], builder.flagged["train"]
  assert skipped[crd.SKIP_CORRUPT] == ["Lung_Opacity/images/Lung_Opacity-2.png"]
  assert skipped[crd.SKIP_ROW_NO_FILE] == ["COVID: COVID-9"]
  assert skipped[crd.SKIP_MASK_NO_IMAGE] == ["Normal/masks/Normal-7.png"]
  assert flagged[crd.FLAG_NO_MASK] == ["COVID/images/COVID-3.png"]
  assert crd.FLAG_NO_ROW not in flagged  # NORMAL-N rows matched Normal-N.png files.


def test_release_without_masks_or_spreadsheet(tmp_path, caplog):
  """Kaggle version 4 has no masks/ folders; a lost spreadsheet leaves the source unknown."""
  root = tmp_path / "COVID-19_Radiography_Dataset"
  shutil.copytree(DUMMY_DATA / "COVID-19_Radiography_Dataset", root)
  for masks in root.glob("*/masks"):
    shutil.rmtree(masks)
  (root / "Viral Pneumonia.metadata.xlsx").unlink()
  with caplog.at_level("WARNING"):
    builder = testing_utils.build(crd.Builder, tmp_path, tmp_path / "data")
  examples = _examples(tmp_path / "data", "current")
  assert len(examples) == 7 and not any(e["has_mask"] for e in examples.values())
  assert len(builder.flagged["train"][crd.FLAG_NO_MASK]) == 7
  assert examples["Viral Pneumonia/images/Viral Pneumonia-1.png"]["source"] == "unknown"
  assert builder.flagged["train"][crd.FLAG_NO_ROW] == [
    "Viral Pneumonia/images/Viral Pneumonia-1.png"
  ]
  assert "Viral Pneumonia.metadata.xlsx" in caplog.text


def test_row_matched_by_number_only_is_flagged(tmp_path):
  root = tmp_path / "COVID-19 Radiography Database"
  for folder, stem in (("COVID-19", "COVID-19"), ("NORMAL", "NORMAL")):
    testing_utils.write_noise_image(root / folder / f"{stem} (1).png", (20, 20))
  testing_utils.write_noise_image(root / "Viral Pneumonia" / "Viral Pneumonia (1).png", (20, 20))
  # Rows with another prefix than the files (e.g. a later release's sheet).
  _xlsx(root / "COVID-19.metadata.xlsx", [("COVID(1)", "PNG", "", "https://sirm.org/a")])
  _xlsx(root / "NORMAL.metadata.xlsx", [("NORMAL(1)", "PNG", "", "")])
  builder = testing_utils.build(crd.Builder, tmp_path, tmp_path / "data", "v1")
  examples = _examples(tmp_path / "data", "v1")
  assert examples["COVID-19/COVID-19 (1).png"]["source"] == "sirm"
  flagged = builder.flagged["train"]
  assert flagged[crd.FLAG_BY_NUMBER] == ["COVID-19/COVID-19 (1).png"]
  assert flagged[crd.FLAG_NO_URL] == ["NORMAL/NORMAL (1).png"]
  assert flagged[crd.FLAG_NO_ROW] == ["Viral Pneumonia/Viral Pneumonia (1).png"]


@pytest.mark.slow
def test_tfds_build_cli(tmp_path):
  """The real `tfds build` CLI writes array_record shards that `tfds.data_source` reads."""
  result = testing_utils.run_tfds_build(
    BUILDER_DIR, tmp_path, manual_dir=DUMMY_DATA, config="current"
  )
  assert result.returncode == 0, result.stderr[-3000:]
  shards = testing_utils.array_record_files(tmp_path, "covid19_radiography/current/1.0.0")
  assert shards, result.stderr[-3000:]
  train = tfds.data_source("covid19_radiography/current", data_dir=tmp_path)["train"]
  assert len(train) == 7 and train[0]["image"].shape[-1] == 1


if __name__ == "__main__":
  tfds.testing.test_main()
