"""Tests for the actualmed_covid_chestxray builder on the generated `dummy_data/`.

`dummy_data/Actualmed-COVID-chestxray-dataset/` mirrors upstream (see `make_dummy_data.py`): 9
metadata rows, of which 5 are kept (3 COVID-19, 2 No finding); the rest, and one file without a
row, are skipped and counted.
"""

from __future__ import annotations

import collections
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_builders import testing_utils
from tfds_builders.actualmed_covid_chestxray import actualmed_covid_chestxray_dataset_builder as am
from tfds_builders.actualmed_covid_chestxray import make_dummy_data as dummy

tfds.disable_progress_bar()

DUMMY_DATA = pathlib.Path(__file__).parent / "dummy_data"
DUMMY_ROOT = DUMMY_DATA / "Actualmed-COVID-chestxray-dataset"


class ActualmedThreeClassTest(tfds.testing.DatasetBuilderTestCase):
  """Standard tfds checks; `manual_dir` is mocked to `dummy_data/` by the base class."""

  DATASET_CLASS = am.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["3class"]
  SPLITS = {"train": 5}


class ActualmedTwoClassTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = am.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["2class"]
  SPLITS = {"train": 5}


def test_missing_imagename_column_is_named(tmp_path):
  root = tmp_path / "Actualmed-COVID-chestxray-dataset"
  (root / "images").mkdir(parents=True)
  (root / "metadata.csv").write_text(
    "patientid,finding,view,modality,filename\nA,COVID-19,PA,X-ray,a\n"
  )
  with pytest.raises(ValueError, match="'imagename'"):
    testing_utils.build(am.Builder, tmp_path, tmp_path / "data", "3class")


def test_non_utf8_metadata_is_a_clear_error(tmp_path):
  root = tmp_path / "Actualmed-COVID-chestxray-dataset"
  (root / "images").mkdir(parents=True)
  (root / "metadata.csv").write_bytes(
    b"patientid,finding,view,modality,imagename\nA\xb0,,PA,X-ray,a\n"
  )
  with pytest.raises(ValueError, match="not UTF-8"):
    testing_utils.build(am.Builder, tmp_path, tmp_path / "data", "3class")


@pytest.fixture(scope="module")
def dummy_builds(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds")
  return data_dir, {
    c: testing_utils.build(am.Builder, DUMMY_DATA, data_dir, c) for c in ("3class", "2class")
  }


def test_skip_counts_by_reason(dummy_builds):
  _, builders = dummy_builds
  names = {pid: name for pid, _, _, name, _ in dummy.ROWS}
  for builder in builders.values():
    assert builder.skipped["train"] == {
      "blank finding (no label upstream)": [
        f"images/{dummy.ROWS[4][3]}",  # ANON3's inconclusive image.
        f"images/{names['ANON5']}",
      ],
      "row without image file": [f"images/{names['ANON6']}"],
      "row without file name (blank imagename)": ["metadata.csv line 10"],
      "file without metadata row": [f"images/{dummy.ORPHAN}"],
    }
    assert builder.flagged["train"] == {}
    row_skips = sum(len(v) for k, v in builder.skipped["train"].items() if "metadata row" not in k)
    assert row_skips + builder.info.splits["train"].num_examples == len(dummy.ROWS)


def test_examples_labels_and_features(dummy_builds):
  data_dir, _ = dummy_builds
  for config, expected in [
    ("3class", {"covid-19": 3, "no_finding": 2}),
    ("2class", {"covid-19": 3, "other": 2}),
  ]:
    train = tfds.data_source(f"actualmed_covid_chestxray/{config}", data_dir=data_dir)["train"]
    names = train.dataset_info.features["label"].names
    assert collections.Counter(names[train[i]["label"]] for i in range(len(train))) == expected
  train = tfds.data_source("actualmed_covid_chestxray/3class", data_dir=data_dir)["train"]
  examples = [train[i] for i in range(len(train))]
  assert collections.Counter(ex["patient_id"] for ex in examples)[b"ANON1"] == 2
  for ex in examples:
    assert ex["image"].dtype == np.uint8 and ex["image"].shape[-1] == 1
    assert ex["source"] == b"actmed" and ex["view"] in (b"PA", b"AP")
  sixteen = next(ex for ex in examples if ex["patient_id"] == b"ANON4")
  assert sixteen["image"].max() == 255  # 16-bit PNG scaled to 8 bits, not clipped.
  assert np.isnan(sixteen["offset"]) and sixteen["age"] == b""


if __name__ == "__main__":
  tfds.testing.test_main()
