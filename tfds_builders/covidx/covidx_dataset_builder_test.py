"""Tests for the covidx builder on the generated `dummy_data/`.

`dummy_data/` holds `train/`, `test/`, `val/` image folders and the split files of every config
(see `make_dummy_data.py` for the awkward cases and the expected counts).
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_builders import testing_utils
from tfds_builders.covidx import covidx_dataset_builder as cx

tfds.disable_progress_bar()

DUMMY_DATA = pathlib.Path(__file__).parent / "dummy_data"
BUILDER_DIR = "tfds_builders/covidx"
RSNA_UUID = "47c78742-4998-4878-aec4-37b11b1354ac"


class CovidxV5Test(tfds.testing.DatasetBuilderTestCase):
  """Standard tfds checks; `manual_dir` is mocked to `dummy_data/` (v5 files in labels/)."""

  DATASET_CLASS = cx.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["v5"]
  SPLITS = {"train": 5, "test": 5}


class CovidxV9aTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = cx.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["v9a"]
  SPLITS = {"train": 6, "test": 5}


class CovidxV9bTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = cx.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["v9b"]
  SPLITS = {"train": 7, "test": 5}


class CovidxCxr3aTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = cx.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["cxr3a"]
  SPLITS = {"train": 5, "test": 5}


class CovidxCxr3bTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = cx.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["cxr3b"]
  SPLITS = {"train": 6, "test": 5}


class CovidxCxr4Test(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = cx.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["cxr4"]
  SPLITS = {"train": 7, "val": 2, "test": 5}


def _examples(data_dir: pathlib.Path, config: str, split: str) -> dict[str, dict]:
  source = tfds.data_source(f"covidx/{config}", data_dir=data_dir)[split]
  out = {}
  for i in range(len(source)):
    ex = dict(source[i])
    for key in ("filename", "patient_id", "source"):
      ex[key] = ex[key].decode()
    out[ex["filename"]] = ex
  return out


@pytest.mark.parametrize(
  ("line", "expected"),
  [
    (  # 4 columns.
      f"{RSNA_UUID} {RSNA_UUID}.png normal rsna",
      cx.Line(RSNA_UUID, f"{RSNA_UUID}.png", "normal", "rsna"),
    ),
    (  # 3 columns (test_COVIDx2/5).
      "8 SARS-10.1148rg.242035193-g04mr34g05x-Fig5-day9.jpeg pneumonia",
      cx.Line("8", "SARS-10.1148rg.242035193-g04mr34g05x-Fig5-day9.jpeg", "pneumonia", None),
    ),
    (  # A patient id with a space (COVIDx 7-9 sirm lines): 5 tokens.
      "COVID 305 COVID(305).png COVID-19 sirm",
      cx.Line("COVID 305", "COVID(305).png", "COVID-19", "sirm"),
    ),
    (  # The same in 3 columns: 4 tokens.
      "COVID 305 COVID(305).png COVID-19",
      cx.Line("COVID 305", "COVID(305).png", "COVID-19", None),
    ),
    ("210 16745_2_1.PNG negative cohen\r\n", cx.Line("210", "16745_2_1.PNG", "negative", "cohen")),
    ("5\tARDSSevere.png  negative   cohen", cx.Line("5", "ARDSSevere.png", "negative", "cohen")),
    ("this line is not a record", None),
    ("ARDSSevere.png negative", None),  # No patient id.
    ("5 ARDSSevere negative cohen", None),  # No image file name.
  ],
)
def test_parse_line(line, expected):
  assert cx.parse_line(line) == expected


@pytest.mark.parametrize(
  ("filename", "source"),
  [
    (f"{RSNA_UUID}.png", "rsna"),
    ("COVID-19(69).png", "sirm"),
    ("COVID(305).png", "sirm"),
    ("COVID-00015a.png", "fig1"),
    ("CR.1.2.840.113564.1722810170.20200318082923328940.1003000225002.png", "actmed"),
    ("MIDRC-RICORD-1C-419639-003251-46647-0.png", "ricord"),
    ("SARS-10.1148rg.242035193-g04mr34g05x-Fig5-day9.jpeg", None),  # Cohen: not recognisable.
    ("da9e9aac-de8c-44c7-ba57-e7cc8e4caaba.annot.original.jpeg", None),
  ],
)
def test_source_from_filename(filename, source):
  assert cx.source_from_filename(filename) == source


def test_configs_name_their_split_files():
  configs = cx.Builder.builder_configs
  assert configs["v5"].split_file("train") == "train_COVIDx5.txt"
  assert configs["v9b"].split_file("test") == "test_COVIDx9B.txt"
  assert configs["cxr3a"].split_file("train") == "train_COVIDx_CXR-3A.txt"
  assert configs["cxr4"].splits == ("train", "val", "test")
  assert configs["cxr4"].split_file("val") == "val.txt"
  assert configs["v9a"].label_names == ("normal", "pneumonia", "covid-19")
  assert configs["v9b"].label_names == ("negative", "positive")


def test_missing_manual_dir_error_names_path_layout_and_source(tmp_path):
  missing = tmp_path / "nope"
  with pytest.raises(FileNotFoundError) as e:
    testing_utils.build(cx.Builder, missing, tmp_path / "data")
  msg = str(e.value)
  assert str(missing) in msg and "train_COVIDx9B.txt" in msg and "kaggle.com" in msg


def test_missing_split_file_error_names_the_file(tmp_path):
  manual = tmp_path / "manual"
  for split in ("train", "test"):
    testing_utils.write_noise_image(manual / split / "a.png", (16, 16))
  (manual / "train_COVIDx9B.txt").write_text("1 a.png negative rsna\n")
  with pytest.raises(FileNotFoundError) as e:
    testing_utils.build(cx.Builder, manual, tmp_path / "data", "v9b")
  assert "test_COVIDx9B.txt" in str(e.value) and str(manual) in str(e.value)


def test_wrong_layout_error_names_path_and_layout(tmp_path):
  manual = tmp_path / "manual"
  testing_utils.write_noise_image(manual / "images" / "a.png", (16, 16))
  with pytest.raises(FileNotFoundError) as e:
    testing_utils.build(cx.Builder, manual, tmp_path / "data", "cxr4")
  msg = str(e.value)
  assert str(manual) in msg and "val.txt" in msg and "val/" in msg


def test_find_data_root_accepts_data_and_archive_folders(tmp_path):
  config = cx.Builder.builder_configs["v9b"]
  for parent in ("data", "archive"):
    root = tmp_path / parent / parent
    for split in ("train", "test"):
      (root / split).mkdir(parents=True)
      (root / "labels").mkdir(exist_ok=True)
      (root / "labels" / config.split_file(split)).write_text("")
    found, files = cx.find_data_root(tmp_path / parent, config)
    assert found == root and files["test"] == root / "labels" / "test_COVIDx9B.txt"


def test_v9b_dummy_data_labels_sources_patient_ids_and_bookkeeping(tmp_path):
  builder = testing_utils.build(cx.Builder, DUMMY_DATA, tmp_path, "v9b")
  train = _examples(tmp_path, "v9b", "train")
  sirm = train["train/COVID(305).png"]  # The 5-token line.
  assert sirm["patient_id"] == "sirm:COVID 305" and sirm["source"] == "sirm"
  assert sirm["label"] == 1  # positive
  typo = train[f"train/{'8989e25c-a698-48fc-b428-fff56931fc8f'}.png"]
  assert typo["source"] == "rsna" and typo["patient_id"].startswith("rsna:")
  assert train["train/16745_2_1.PNG"]["patient_id"] == "cohen:210"
  jpeg = train["train/3e9d9c9b02b9bcd81c851134667e76_jumbo.jpg"]  # RGB JPEG upstream.
  assert jpeg["image"].shape == (24, 24, 1) and jpeg["image"].dtype == np.uint8

  skipped, flagged = builder.skipped["train"], builder.flagged["train"]
  assert skipped[cx.SKIP_CORRUPT] == ["train/bdc40f9ad2395d88c92479089f5d1b_jumbo-10.jpeg"]
  assert skipped[cx.SKIP_LABEL] == ["train/7fb3786c-5045-4a90-981d-c55b53d4d5d3.png (COVID-19)"]
  assert skipped[cx.SKIP_MISSING] == ["train/a7a4389b-29dd-409d-82b7-edf2633032a8.png"]
  assert flagged[cx.FLAG_SOURCE_ALIAS] == ["train/8989e25c-a698-48fc-b428-fff56931fc8f.png"]
  assert not builder.skipped["test"] and not builder.flagged["test"]


def test_v5_mixed_columns_unparseable_and_unlisted(tmp_path, caplog):
  with caplog.at_level("WARNING"):
    builder = testing_utils.build(cx.Builder, DUMMY_DATA, tmp_path, "v5")
  test = _examples(tmp_path, "v5", "test")
  rsna = test["test/766b8aea-3b43-4a34-b675-09f373ca066b.png"]  # 3 columns: source from name.
  assert rsna["source"] == "rsna" and rsna["label"] == 0
  cohen = test["test/SARS-10.1148rg.242035193-g04mr34g05x-Fig5-day9.jpeg"]
  assert cohen["source"] == "unknown" and cohen["patient_id"] == "unknown:8"
  assert test["test/COVID-00025.jpg"]["source"] == "fig1"  # 4-column line of the same file.
  assert len(builder.flagged["test"][cx.FLAG_SOURCE_FROM_NAME]) == 2
  assert builder.flagged["test"][cx.FLAG_SOURCE_UNKNOWN] == [
    "test/SARS-10.1148rg.242035193-g04mr34g05x-Fig5-day9.jpeg"
  ]
  skipped = builder.skipped["train"]
  assert skipped[cx.SKIP_UNPARSEABLE] == ["train_COVIDx5.txt:8: this line is not a record"]
  assert skipped[cx.SKIP_LABEL] == ["train/MIDRC-RICORD-1C-419639-003251-46647-0.png (positive)"]
  assert skipped[cx.SKIP_UNLISTED] == [
    "train/7fb3786c-5045-4a90-981d-c55b53d4d5d3.png",
    "train/COVID(305).png",
  ]
  assert "this line is not a record" in caplog.text


def test_duplicate_line_and_val_split(tmp_path):
  builder = testing_utils.build(cx.Builder, DUMMY_DATA, tmp_path / "a", "v9a")
  assert builder.skipped["train"][cx.SKIP_DUPLICATE] == [
    "train/8989e25c-a698-48fc-b428-fff56931fc8f.png"
  ]
  builder = testing_utils.build(cx.Builder, DUMMY_DATA, tmp_path / "b", "cxr4")
  val = _examples(tmp_path / "b", "cxr4", "val")
  assert {e["source"] for e in val.values()} == {"rsna", "ricord"}
  assert set(builder.info.splits) == {"train", "val", "test"}


def test_blank_lines_and_bom_are_not_records(tmp_path):
  manual = tmp_path / "manual"
  for split in ("train", "test"):
    testing_utils.write_noise_image(manual / split / f"{RSNA_UUID}.png", (16, 16))
    (manual / f"{split}_COVIDx9B.txt").write_text(
      f"\ufeff{RSNA_UUID} {RSNA_UUID}.png negative rsna\r\n\r\n\n", encoding="utf-8"
    )
  builder = testing_utils.build(cx.Builder, manual, tmp_path / "data", "v9b")
  assert builder.info.splits["train"].num_examples == 1
  assert not builder.skipped["train"] and not builder.skipped["test"]


@pytest.mark.slow
def test_tfds_build_cli(tmp_path):
  """The real `tfds build` CLI writes array_record shards that `tfds.data_source` reads."""
  result = testing_utils.run_tfds_build(BUILDER_DIR, tmp_path, manual_dir=DUMMY_DATA, config="v9b")
  assert result.returncode == 0, result.stderr[-3000:]
  assert testing_utils.array_record_files(tmp_path, "covidx/v9b/1.0.0")
  ds = tfds.data_source("covidx/v9b", data_dir=tmp_path)
  assert len(ds["train"]) == 7 and len(ds["test"]) == 5


if __name__ == "__main__":
  tfds.testing.test_main()
