"""Tests for the nih_chestxray14 builder on the generated `dummy_data/` (see `make_dummy_data.py`).

`dummy_data/box/` is the NIH Box layout (`images/`, Data_Entry_2017_v2020.csv): train 4, test 4
after the awkward cases are skipped. `dummy_data/kaggle/` is the Kaggle layout
(`images_00N/images/`, Data_Entry_2017.csv with its trailing empty column): train 4, test 2.
"""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from tfds_builders import testing_utils
from tfds_builders.nih_chestxray14 import nih_chestxray14_dataset_builder as nih

tfds.disable_progress_bar()

DUMMY_DATA = pathlib.Path(__file__).parent / "dummy_data"
BOX, KAGGLE = DUMMY_DATA / "box", DUMMY_DATA / "kaggle"


class NihBoxLayoutTest(tfds.testing.DatasetBuilderTestCase):
  """Standard tfds checks on the Box layout; `manual_dir` is mocked to `EXAMPLE_DIR`."""

  DATASET_CLASS = nih.Builder
  EXAMPLE_DIR = str(BOX)
  SPLITS = {"train": 4, "test": 4}


class NihKaggleLayoutTest(tfds.testing.DatasetBuilderTestCase):
  """Standard tfds checks on the Kaggle layout."""

  DATASET_CLASS = nih.Builder
  EXAMPLE_DIR = str(KAGGLE)
  SPLITS = {"train": 4, "test": 2}


def _examples(data_dir: pathlib.Path, split: str) -> dict[str, dict]:
  """All examples of a split, by filename (text features come back as bytes)."""
  source = tfds.data_source("nih_chestxray14", data_dir=data_dir)[split]
  return {ex["filename"].decode(): ex for ex in (source[i] for i in range(len(source)))}


@pytest.fixture(scope="module")
def box_build(tmp_path_factory) -> tuple[nih.Builder, pathlib.Path]:
  data_dir = tmp_path_factory.mktemp("box")
  return testing_utils.build(nih.Builder, BOX, data_dir), data_dir


def test_label_names_are_upstream_order_in_snake_case():
  assert nih.LABEL_NAMES == (
    "atelectasis",
    "cardiomegaly",
    "effusion",
    "infiltration",
    "mass",
    "nodule",
    "pneumonia",
    "pneumothorax",
    "consolidation",
    "edema",
    "emphysema",
    "fibrosis",
    "pleural_thickening",
    "hernia",
    "no_finding",
  )


@pytest.mark.parametrize(
  ("text", "expected"),
  [
    ("No Finding", ("no_finding",)),
    ("Effusion|Atelectasis", ("atelectasis", "effusion")),  # Sorted by label index.
    ("Pleural_Thickening|Hernia", ("pleural_thickening", "hernia")),
    ("Pleural Thickening", ("pleural_thickening",)),
    ("Mass|Mass", ("mass",)),
  ],
)
def test_parse_finding_labels(text, expected):
  assert nih.parse_finding_labels(text) == expected


@pytest.mark.parametrize(
  ("text", "reason"),
  [
    ("", "empty Finding Labels"),
    ("Covid|Mass", "unknown finding name (covid)"),
    ("No Finding|Mass", "'No Finding' together with findings"),
  ],
)
def test_parse_finding_labels_rejects(text, reason):
  with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
    nih.parse_finding_labels(text)


@pytest.mark.parametrize(
  ("text", "expected"),
  [
    ("58", (58, None)),
    ("058Y", (58, None)),  # DICOM age string, as in some copies of the CSV.
    ("011M", (0, "age given in months/weeks/days (converted to whole years)")),
    ("414", (414, "implausible age > 120 (kept as in the CSV)")),  # Data_Entry_2017.csv has some.
    ("", (-1, "age missing (stored as -1)")),
  ],
)
def test_parse_age(text, expected):
  assert nih.parse_age(text) == expected


def test_parse_age_rejects_garbage():
  with pytest.raises(ValueError, match="malformed Patient Age"):
    nih.parse_age("fifty")


def test_parse_row_2017_style_with_trailing_column():
  row = "00000001_000.png,Cardiomegaly,0,1,058Y,M,PA,2682,2749,0.143,0.143,".split(",")
  entry = nih.parse_row(row)
  assert entry.patient_id == "00000001" and entry.age == 58 and entry.follow_up == 0
  assert entry.spacing == (0.143, 0.143) and (entry.width, entry.height) == (2682, 2749)
  assert entry.labels == ("cardiomegaly",) and entry.flags == ()
  with pytest.raises(ValueError, match="malformed CSV row"):
    nih.parse_row(row[:9])
  with pytest.raises(ValueError, match="malformed number"):
    nih.parse_row(["x.png", "Mass", "0", "p7", "5", "M", "PA", "1", "1", "0.1", "0.1"])


def test_box_layout_skips_and_flags_every_awkward_case(box_build, caplog):
  builder, _ = box_build
  assert builder.skipped["train"] == {
    "non-image file (ignored)": ["images/.DS_Store"],
    "CSV row without image file": ["00000006_000.png"],
    "image without CSV row": ["images/00000007_000.png"],
    "in both train_val_list.txt and test_list.txt": ["images/00000008_000.png"],
    "'No Finding' together with findings": ["images/00000011_000.png"],
    "in neither train_val_list.txt nor test_list.txt": ["images/00000012_000.png"],
    "unreadable/corrupt image": ["images/00000009_000.png"],
  }
  assert builder.skipped["test"] == {
    "in both train_val_list.txt and test_list.txt": ["images/00000008_000.png"],
    "unknown finding name (covid-19)": ["images/00000010_000.png"],
    "listed, but no CSV row nor image": ["00000014_000.png"],
  }
  assert builder.flagged["train"] == {}
  assert builder.flagged["test"] == {
    "BBox_List_2017.csv: box clipped to the 1024x1024 frame": ["images/00000013_000.png"],
    "not an 8-bit grey PNG (converted to grey)": ["images/00000003_000.png"],  # RGBA.
  }


def test_box_layout_examples(box_build):
  _, data_dir = box_build
  train, test = _examples(data_dir, "train"), _examples(data_dir, "test")
  assert sorted(train) == [
    "images/00000001_000.png",
    "images/00000001_001.png",
    "images/00000001_002.png",
    "images/00000002_000.png",
  ]
  names = list(nih.LABEL_NAMES)
  ex = train["images/00000001_001.png"]
  assert [names[i] for i in ex["labels"]] == ["cardiomegaly", "emphysema"]
  assert ex["patient_id"] == b"00000001" and ex["follow_up"] == 1 and ex["age"] == 58
  assert ex["sex"] == b"M" and ex["view"] == b"PA" and ex["source"] == b"nih_chestxray14"
  assert (ex["original_width"], ex["original_height"]) == (2894, 2729)
  np.testing.assert_allclose(ex["pixel_spacing"], [0.143, 0.143])
  # Sequences come back from a data source as Python lists.
  assert len(ex["bboxes"]["bbox"]) == len(ex["bboxes"]["label"]) == 0
  assert [names[i] for i in train["images/00000002_000.png"]["labels"]] == ["no_finding"]

  for ex in [*train.values(), *test.values()]:
    image = ex["image"]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 1
    assert 24 <= image.shape[0] <= 32 and image.std() > 0
  rgba = test["images/00000003_000.png"]["image"]
  with Image.open(BOX / "images" / "00000003_000.png") as original:
    assert original.mode == "RGBA"
    # Opaque RGBA grey -> the same grey values.
    np.testing.assert_array_equal(rgba[..., 0], np.asarray(original.convert("L")))

  boxes = test["images/00000004_000.png"]["bboxes"]
  assert [names[i] for i in boxes["label"]] == ["mass", "nodule"]
  np.testing.assert_allclose(
    boxes["bbox"][0],
    np.array([547.019216763771, 225.084745762712, 626.2056574, 311.8644068]) / 1024,
    rtol=1e-5,
  )
  infiltrate = test["images/00000005_000.png"]["bboxes"]
  assert [names[i] for i in infiltrate["label"]] == ["infiltration"]
  clipped = test["images/00000013_000.png"]["bboxes"]["bbox"][0]
  assert clipped[3] == 1.0 and clipped[1] == pytest.approx(800 / 1024)


def test_kaggle_layout(tmp_path):
  builder = testing_utils.build(nih.Builder, KAGGLE, tmp_path)
  assert builder.skipped == {
    "train": {"duplicate image file (first copy kept)": ["images_002/images/00000001_001.png"]},
    "test": {},
  }
  assert builder.flagged == {
    "train": {"implausible age > 120 (kept as in the CSV)": ["images_002/images/00000003_000.png"]},
    "test": {
      "Patient ID differs from the file name (kept the CSV's)": [
        "images_002/images/00000005_000.png"
      ]
    },
  }
  train = _examples(tmp_path, "train")
  assert sorted(train) == [
    "images_001/images/00000001_000.png",
    "images_001/images/00000001_001.png",
    "images_001/images/00000002_000.png",
    "images_002/images/00000003_000.png",
  ]
  assert train["images_002/images/00000003_000.png"]["age"] == 414
  test = _examples(tmp_path, "test")
  assert test["images_002/images/00000005_000.png"]["patient_id"] == b"00000006"
  assert test["images_002/images/00000004_000.png"]["bboxes"]["label"] == [4]  # mass


def test_without_split_lists_builds_one_train_split(tmp_path, caplog):
  manual = tmp_path / "ChestXray-NIHCC"  # One sub-folder of the manual dir is accepted.
  shutil.copytree(BOX, manual)
  (manual / "train_val_list.txt").unlink()
  (manual / "test_list.txt").unlink()
  with caplog.at_level("WARNING"):
    builder = testing_utils.build(nih.Builder, tmp_path, tmp_path / "data")
  assert "no train_val_list.txt / test_list.txt" in caplog.text
  assert set(builder.info.splits) == {"train"}
  # The 8 of the two splits + 00000008 (was in both lists) + 00000012 (was in neither).
  assert builder.info.splits["train"].num_examples == 10
  assert set(builder.skipped["train"]) == {
    "non-image file (ignored)",
    "CSV row without image file",
    "image without CSV row",
    "'No Finding' together with findings",
    "unknown finding name (covid-19)",
    "unreadable/corrupt image",
  }


def test_v2020_csv_is_preferred_over_2017(tmp_path):
  manual = tmp_path / "nih"
  shutil.copytree(BOX, manual)
  # A 2017 CSV that would label everything differently must be ignored.
  (manual / "Data_Entry_2017.csv").write_text(
    (KAGGLE / "Data_Entry_2017.csv").read_text().replace("Cardiomegaly", "Hernia")
  )
  plan = nih.plan_splits(nih.find_data_root(manual))
  entries = dict(plan.examples["train"])
  assert entries["images/00000001_000.png"].labels == ("cardiomegaly",)


def test_only_one_split_list_is_an_error(tmp_path):
  manual = tmp_path / "nih"
  shutil.copytree(BOX, manual)
  (manual / "test_list.txt").unlink()
  with pytest.raises(FileNotFoundError, match="has train_val_list.txt but not test_list.txt"):
    nih.plan_splits(manual)


def test_wrong_header_error_names_file_and_header(tmp_path):
  manual = tmp_path / "nih"
  shutil.copytree(BOX, manual)
  (manual / "Data_Entry_2017_v2020.csv").write_text("filename,label\na.png,Mass\n")
  with pytest.raises(ValueError) as e:
    nih.plan_splits(manual)
  assert "Data_Entry_2017_v2020.csv" in str(e.value) and "'filename'" in str(e.value)


def test_missing_manual_dir_error_names_path_layout_and_source(tmp_path):
  missing = tmp_path / "nope"
  with pytest.raises(FileNotFoundError) as e:
    testing_utils.build(nih.Builder, missing, tmp_path / "data")
  msg = str(e.value)
  assert str(missing) in msg and "images_001/images" in msg
  assert "nihcc.app.box.com" in msg and "kaggle" in msg.lower()


def test_wrong_layout_errors(tmp_path):
  manual = tmp_path / "manual"
  (manual / "images").mkdir(parents=True)  # Images but no CSV.
  with pytest.raises(FileNotFoundError) as e:
    nih.find_data_root(manual)
  assert str(manual) in str(e.value) and "Data_Entry_2017_v2020.csv" in str(e.value)
  (manual / "images").rmdir()
  shutil.copy(BOX / "Data_Entry_2017_v2020.csv", manual)  # CSV but no images.
  with pytest.raises(FileNotFoundError, match="no images/ or images_NNN/images/"):
    nih.find_data_root(manual)


@pytest.mark.slow
def test_tfds_build_cli(tmp_path):
  result = testing_utils.run_tfds_build("tfds_builders/nih_chestxray14", tmp_path, manual_dir=BOX)
  assert result.returncode == 0, result.stderr[-3000:]
  files = testing_utils.array_record_files(tmp_path, "nih_chestxray14/1.0.0")
  assert any(f.startswith("nih_chestxray14-train.array_record") for f in files), files
  assert any(f.startswith("nih_chestxray14-test.array_record") for f in files), files
  source = tfds.data_source("nih_chestxray14", data_dir=tmp_path)
  assert (len(source["train"]), len(source["test"])) == (4, 4)


if __name__ == "__main__":
  tfds.testing.test_main()
