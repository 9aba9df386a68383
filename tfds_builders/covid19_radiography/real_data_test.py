"""Builds covid19_radiography from a real copy of the database, when one is present.

Looks in `<repo>/../shared/data` (or `$JAXCXR_SHARED_DATA`) for `COVID-19_Radiography_Dataset/`
(config `current`), `COVID-19 Radiography Database/` (config `v1`) and
`covid19-radiography-2021/COVID-19_Radiography_Dataset/` (config `flat2021`, the shared sample);
each test is skipped, with the path in the reason, when its folder is absent.
"""

from __future__ import annotations

import collections

import pytest
import tensorflow_datasets as tfds

from tfds_builders import testing_utils
from tfds_builders.covid19_radiography import covid19_radiography_dataset_builder as crd

tfds.disable_progress_bar()


@pytest.mark.slow
@pytest.mark.parametrize("config", ["v1", "current"])
def test_counts_match_the_files_on_disk(tmp_path, config):
  cfg = crd.Builder.builder_configs[config]
  root = testing_utils.SHARED_DATA / cfg.root_name
  if not root.is_dir():
    pytest.skip(
      f"real COVID-19 Radiography Database ({config}) not found at {root} "
      "(set JAXCXR_SHARED_DATA to the folder that holds it)"
    )
  builder = testing_utils.build(crd.Builder, testing_utils.SHARED_DATA, tmp_path, config)
  corrupt = collections.Counter(
    name.split("/")[0] for name in builder.skipped["train"].get(crd.SKIP_CORRUPT, [])
  )
  expected = collections.Counter()
  for c in cfg.class_folders:
    folder = root / c.folder / cfg.images_subdir
    n = sum(p.suffix.lower() in (".png", ".jpg", ".jpeg") for p in folder.iterdir())
    expected[c.label] = n - corrupt[c.folder]
  train = tfds.data_source(f"covid19_radiography/{config}", data_dir=tmp_path)["train"]
  names = builder.info.features["label"].names
  got = collections.Counter(names[train[i]["label"]] for i in range(len(train)))
  assert got == expected
  # Every image should have found its spreadsheet row on a release as published.
  assert not builder.flagged["train"].get(crd.FLAG_NO_ROW), builder.flagged["train"]


@pytest.mark.slow
def test_flat2021_sample_counts_match_the_files_on_disk(tmp_path):
  """The 2021 flat layout of ../shared/data/covid19-radiography-2021 (COVID and Normal only)."""
  manual = testing_utils.SHARED_DATA / "covid19-radiography-2021"
  root = manual / "COVID-19_Radiography_Dataset"
  if not root.is_dir():
    pytest.skip(f"the 2021 flat-layout sample is not at {root} (set JAXCXR_SHARED_DATA)")
  builder = testing_utils.build(crd.Builder, manual, tmp_path, "flat2021")
  expected = collections.Counter()
  for folder, label in (("COVID", "covid-19"), ("Normal", "normal")):
    files = [p for p in (root / folder).iterdir() if p.suffix.lower() == ".png"]
    assert files and all(p.name.startswith(f"{folder}-") for p in files)
    expected[label] = len(files) - len(builder.skipped["train"].get(crd.SKIP_CORRUPT, []))
  train = tfds.data_source("covid19_radiography/flat2021", data_dir=tmp_path)["train"]
  names = builder.info.features["label"].names
  got = collections.Counter(names[train[i]["label"]] for i in range(len(train)))
  assert got == expected
  assert sum(got.values()) > 500  # about 300 COVID + 290 Normal (SOURCES.md)
  assert not builder.flagged["train"].get(crd.FLAG_NO_ROW)  # No spreadsheets in this layout.
  assert train[0]["image"].shape[-1] == 1  # Stored grey (the sample's files are RGB).
