"""Builds covidx from a real copy, when one is present.

Looks in `<repo>/../shared/data/covidx` (or `$JAXCXR_SHARED_DATA/covidx`) for the layout of each
config; a config whose folders or split files are absent is skipped with the path in the reason
(the shared sample does not hold COVIDx at the time of writing).
"""

from __future__ import annotations

import pytest
import tensorflow_datasets as tfds

from tfds_builders import testing_utils
from tfds_builders.covidx import covidx_dataset_builder as cx

tfds.disable_progress_bar()

_ROOT = testing_utils.SHARED_DATA / "covidx"


@pytest.mark.slow
@pytest.mark.parametrize("config", [c.name for c in cx.Builder.BUILDER_CONFIGS])
def test_every_line_is_an_example_or_counted(tmp_path, config):
  cfg = cx.Builder.builder_configs[config]
  try:
    _, files = cx.find_data_root(_ROOT, cfg)
  except FileNotFoundError:
    pytest.skip(
      f"real COVIDx ({config}: {cfg.split_file_pattern}) not found at {_ROOT} "
      "(set JAXCXR_SHARED_DATA to the folder that holds covidx/)"
    )
  builder = testing_utils.build(cx.Builder, _ROOT, tmp_path, config)
  for split, path in files.items():
    lines = [t for t in path.read_text(encoding="utf-8-sig").splitlines() if t.strip()]
    skipped = builder.skipped[split]
    counted = sum(len(v) for k, v in skipped.items() if k != cx.SKIP_UNLISTED)
    assert builder.info.splits[split].num_examples + counted == len(lines), split
