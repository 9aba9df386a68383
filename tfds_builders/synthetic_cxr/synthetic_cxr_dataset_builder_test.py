"""Tests for the synthetic_cxr builder (SYNTHETIC data; nothing to download)."""

from __future__ import annotations

import collections
import time

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import testing_utils
from tfds_builders.synthetic_cxr import synthetic_cxr_dataset_builder as synth

tfds.disable_progress_bar()


class SyntheticCxrTest(tfds.testing.DatasetBuilderTestCase):
  """Standard tfds checks on the `tiny` config; `dummy_data/` is empty (only a .gitkeep)."""

  DATASET_CLASS = synth.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["tiny"]
  SPLITS = {"train": 24, "val": 8, "test": 8}


def _read_all(tmp_path, config: str) -> dict[str, list[dict]]:
  ds = tfds.data_source(f"synthetic_cxr/{config}", data_dir=tmp_path)
  return {s: [ds[s][i] for i in range(len(ds[s]))] for s in ("train", "val", "test")}


def test_default_config_is_fast_deterministic_and_patient_disjoint(tmp_path):
  start = time.perf_counter()
  testing_utils.build(synth.Builder, None, tmp_path / "a", "default")
  assert time.perf_counter() - start < 30  # ~2 s here; generation alone is < 1 s.
  testing_utils.build(synth.Builder, None, tmp_path / "b", "default")
  a, b = _read_all(tmp_path / "a", "default"), _read_all(tmp_path / "b", "default")
  assert {s: len(v) for s, v in a.items()} == {"train": 600, "val": 150, "test": 150}

  patients = {}
  for split, examples in a.items():
    patients[split] = collections.Counter(ex["patient_id"] for ex in examples)
    assert max(patients[split].values()) <= 3
    labels = collections.Counter(int(ex["label"]) for ex in examples)
    assert set(labels) == {0, 1, 2} and min(labels.values()) > len(examples) / 6, (split, labels)
    for ex_a, ex_b in zip(examples, b[split], strict=True):  # Same bytes on a rebuild.
      assert ex_a["patient_id"] == ex_b["patient_id"] and ex_a["label"] == ex_b["label"]
      np.testing.assert_array_equal(ex_a["image"], ex_b["image"])
  assert not set(patients["train"]) & set(patients["val"])
  assert not set(patients["train"]) & set(patients["test"])
  assert not set(patients["val"]) & set(patients["test"])

  ex = a["train"][0]
  assert ex["image"].shape == (64, 64, 1) and ex["image"].dtype == np.uint8
  assert ex["patient_id"].startswith(b"synth-")


def test_classes_differ_where_expected():
  """Pneumonia and covid19 add brightness inside the lungs; covid19 on both sides."""
  rng = np.random.default_rng(0)
  anatomy = np.array([0.0, 0.0, 1.0])
  mean = {
    label: np.mean([synth.render_image(rng, label, anatomy).astype(float) for _ in range(128)], 0)
    for label in range(3)
  }
  lung_rows = slice(16, 44)
  left, right = (slice(8, 22), slice(42, 56))  # Outer part of each lung.
  for cols in (left, right):
    covid_gain = mean[2][lung_rows, cols].mean() - mean[0][lung_rows, cols].mean()
    assert covid_gain > 3, covid_gain
  pneumonia_gain = mean[1][lung_rows].mean() - mean[0][lung_rows].mean()
  assert pneumonia_gain > 0.5, pneumonia_gain  # Focal: small when averaged over both lungs.


if __name__ == "__main__":
  tfds.testing.test_main()
