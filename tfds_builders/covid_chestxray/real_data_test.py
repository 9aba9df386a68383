"""Builds covid_chestxray from the real (downscaled) sample and checks it against the files.

The sample lives outside the repo at `<repo>/../shared/data/covid-chestxray-dataset`; set
`JAXCXR_SHARED_DATA` to the folder holding `covid-chestxray-dataset/` to use another copy. Skipped
when the folder is absent. The expected counts are computed here from `metadata.csv` and the files
with simple code of their own, not with the builder's mapping table.
"""

from __future__ import annotations

import collections
import csv
import os
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from tfds_builders import testing_utils
from tfds_builders.covid_chestxray import covid_chestxray_dataset_builder as ccx

tfds.disable_progress_bar()

_ROOT = testing_utils.SHARED_DATA / "covid-chestxray-dataset"
_CONFIGS = ("3class", "2class")
_FRONTAL = {"PA", "AP", "AP Supine", "AP semi erect", "AP erect"}
# Reasons about files in images/, not about metadata rows.
_FILE_REASONS = {"file without metadata row", "non-image file (ignored)"}

pytestmark = pytest.mark.skipif(
  not (_ROOT / "metadata.csv").is_file(),
  reason=f"real covid-chestxray-dataset sample not found at {_ROOT} (set JAXCXR_SHARED_DATA to "
  "the folder that holds covid-chestxray-dataset/)",
)


def _rows() -> list[dict[str, str]]:
  with open(_ROOT / "metadata.csv", newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


def _decodes(path: pathlib.Path) -> bool:
  try:
    with Image.open(path) as img:
      img.load()
    return True
  except Exception:  # pylint: disable=broad-except
    return False


def _expected_labels(config: str) -> collections.Counter:
  """Label counts from the CSV and the files: frontal X-rays with a readable file."""
  files = set(os.listdir(_ROOT / "images"))
  counts = collections.Counter()
  for row in _rows():
    finding = row["finding"].strip()
    if row["folder"] != "images" or row["modality"] != "X-ray" or row["view"] not in _FRONTAL:
      continue
    if finding in ("todo", "Unknown"):
      continue
    if "COVID-19" in finding:
      label = "covid-19"
    elif config == "2class":
      label = "other"
    elif finding == "No Finding":
      label = "no_finding"
    elif finding in ("ARDS", "Tuberculosis"):
      continue  # Not a pneumonia and not normal: outside 3class.
    else:
      label = "other_pneumonia"
    if row["filename"] in files and _decodes(_ROOT / "images" / row["filename"]):
      counts[label] += 1
  return counts


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> tuple[pathlib.Path, dict[str, ccx.Builder]]:
  """Builds both configs once (array_record, as training reads them) into a temporary dir."""
  out = tmp_path_factory.mktemp("tfds")
  builders = {}
  for config in _CONFIGS:
    # The parent of covid-chestxray-dataset/, as for the other builders' samples.
    builder = testing_utils.build(ccx.Builder, testing_utils.SHARED_DATA, out, config)
    builders[config] = builder
  return out, builders


@pytest.mark.slow
@pytest.mark.parametrize("config", _CONFIGS)
def test_label_counts_match_csv_and_files(builds, config):
  data_dir, _ = builds
  train = tfds.data_source(f"covid_chestxray/{config}", data_dir=data_dir)["train"]
  names = train.dataset_info.features["label"].names
  got = collections.Counter(names[train[i]["label"]] for i in range(len(train)))
  assert got == _expected_labels(config)


@pytest.mark.slow
@pytest.mark.parametrize("config", _CONFIGS)
def test_every_row_is_an_example_or_counted_once(builds, config):
  _, builders = builds
  builder = builders[config]
  skipped = builder.skipped["train"]
  row_skips = sum(len(names) for reason, names in skipped.items() if reason not in _FILE_REASONS)
  rows = _rows()
  assert row_skips + builder.info.splits["train"].num_examples == len(rows)
  # Files of images/ without a row, as the CSV says.
  orphans = set(os.listdir(_ROOT / "images")) - {r["filename"] for r in rows}
  assert {n.removeprefix("images/") for r in _FILE_REASONS for n in skipped.get(r, [])} == orphans
  # The design filters, counted from the CSV directly.
  volumes = sum(r["folder"] == "volumes" for r in rows)
  ct = sum(r["folder"] != "volumes" and r["modality"] != "X-ray" for r in rows)
  assert len(skipped.get("CT volume (volumes/ folder)", [])) == volumes
  assert sum(len(v) for k, v in skipped.items() if k.startswith("not X-ray")) == ct
  todo = [r for r in rows if r["finding"] == "todo" and r["view"] in _FRONTAL]
  todo = [r for r in todo if r["modality"] == "X-ray" and r["folder"] == "images"]
  assert len(skipped.get("finding 'todo' (not labelled yet)", [])) == len(todo)
  assert not [k for k in skipped if k.startswith("unknown finding value")], skipped.keys()


@pytest.mark.slow
def test_masks_present_where_the_mask_folder_has_a_file(builds):
  data_dir, _ = builds
  mask_files = set(os.listdir(_ROOT / ccx.MASKS_DIR))
  rows = {r["filename"]: r for r in _rows()}
  train = tfds.data_source("covid_chestxray/3class", data_dir=data_dir)["train"]
  with_mask = 0
  for i in range(len(train)):
    ex = train[i]
    name = ex["filename"].decode().removeprefix("images/")
    assert bool(ex["has_mask"]) == (name in mask_files), name
    assert ex["mask"].shape == ex["image"].shape and ex["image"].shape[-1] == 1, name
    assert set(np.unique(ex["mask"])) <= {0, 255}, name
    if ex["has_mask"]:
      with_mask += 1
      assert ex["mask"].max() == 255, name  # Frontal masks all outline lungs.
    else:
      assert ex["mask"].max() == 0, name
    assert ex["patient_id"].decode() == rows[name]["patientid"], name
    assert ex["finding"].decode() == rows[name]["finding"].strip(), name
  assert with_mask > 0


@pytest.mark.slow
def test_data_source_random_access(builds):
  data_dir, _ = builds
  train = tfds.data_source("covid_chestxray/2class", data_dir=data_dir)["train"]
  for ex in testing_utils.assert_random_access(train):
    assert ex["label"] in (0, 1) and ex["source"] != b""
