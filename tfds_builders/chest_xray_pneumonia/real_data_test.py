"""Builds chest_xray_pneumonia from the real (downscaled) sample and checks it against the disk.

The sample lives outside the repo at `<repo>/../shared/data/chest_xray`; set `JAXCXR_SHARED_DATA`
to the folder holding `chest_xray/` to use another copy. Skipped when the folder is absent.
"""

from __future__ import annotations

import collections
import pathlib

import pytest
import tensorflow_datasets as tfds

from tfds_builders import testing_utils
from tfds_builders.chest_xray_pneumonia import chest_xray_pneumonia_dataset_builder as cxp

tfds.disable_progress_bar()

_ROOT = testing_utils.SHARED_DATA / "chest_xray"
_SPLITS = ("train", "val", "test")

pytestmark = pytest.mark.skipif(
  not (_ROOT / "train" / "NORMAL").is_dir(),
  reason=f"real chest_xray sample not found at {_ROOT} (set JAXCXR_SHARED_DATA to the folder "
  "that holds chest_xray/)",
)


def _expected_labels(split: str, config: str) -> collections.Counter:
  """Counts label names per split from the files on disk (folder, and file name for 3class)."""
  count = lambda class_dir, pattern: len(list((_ROOT / split / class_dir).glob(pattern)))
  if config == "2class":
    return collections.Counter(
      normal=count("NORMAL", "*.jpeg"), pneumonia=count("PNEUMONIA", "*.jpeg")
    )
  return collections.Counter(
    normal=count("NORMAL", "*.jpeg"),
    bacterial=count("PNEUMONIA", "*_bacteria_*.jpeg"),
    viral=count("PNEUMONIA", "*_virus_*.jpeg"),
  )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> pathlib.Path:
  """Builds both configs once (array_record, as training reads them) into a temporary dir."""
  out = tmp_path_factory.mktemp("tfds")
  for config in ("2class", "3class"):
    builder = testing_utils.build(cxp.Builder, testing_utils.SHARED_DATA, out, config)
    # The sample is clean: nothing may be dropped silently.
    assert not any(builder.skipped.values()) and not any(builder.flagged.values())
  return out


@pytest.mark.slow
@pytest.mark.parametrize("config", ["2class", "3class"])
def test_counts_labels_and_patient_ids_match_disk(data_dir, config):
  ds = tfds.data_source(f"chest_xray_pneumonia/{config}", data_dir=data_dir)
  label_names = ds["train"].dataset_info.features["label"].names
  for split in _SPLITS:
    expected = _expected_labels(split, config)
    source = ds[split]
    assert len(source) == sum(expected.values()), split
    got = collections.Counter()
    for i in range(len(source)):
      ex = source[i]
      name = ex["filename"].decode()
      got[label_names[ex["label"]]] += 1
      class_dir, stem = name.split("/")[1], pathlib.PurePath(name).stem
      patient_id, _ = cxp.parse_file_name(class_dir, stem)
      assert patient_id is not None and ex["patient_id"].decode() == patient_id, name
      assert (_ROOT / name).is_file(), name
    assert got == expected, split


@pytest.mark.slow
def test_data_source_random_access(data_dir):
  train = tfds.data_source("chest_xray_pneumonia/2class", data_dir=data_dir)["train"]
  for ex in testing_utils.assert_random_access(train):
    assert ex["label"] in (0, 1)
