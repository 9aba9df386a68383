"""Builds lung_segmentation/cohen_v7 from the real (downscaled) sample and checks it against disk.

The sample lives outside the repo at `<repo>/../shared/data/covid-chestxray-dataset` (images,
metadata.csv and torchxrayvision's `semantic_masks_v7labs_lungs/`); set `JAXCXR_SHARED_DATA` to
the folder holding `covid-chestxray-dataset/` to use another copy. Skipped when it is absent.

The expected counts are computed here from the files, independently of the builder: the mask
files that have an image, less the CT slices (metadata.csv `modality`) and the masks with no pixel
at or above 192 (V7 left lateral views and CT slices unannotated).
"""

from __future__ import annotations

import csv
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from tfds_builders import testing_utils
from tfds_builders.lung_segmentation import lung_segmentation_dataset_builder as ls

tfds.disable_progress_bar()

_ROOT = testing_utils.SHARED_DATA / "covid-chestxray-dataset"
_MASKS = _ROOT / "semantic_masks_v7labs_lungs"

pytestmark = pytest.mark.skipif(
  not (_MASKS.is_dir() and (_ROOT / "images").is_dir()),
  reason=f"real covid-chestxray-dataset sample with V7 masks not found at {_ROOT} (set "
  "JAXCXR_SHARED_DATA to the folder that holds covid-chestxray-dataset/)",
)


def _lung(path: pathlib.Path) -> np.ndarray:
  """The mask file's lung pixels: grey value >= 192 (V7: 255 lung, 127 other objects)."""
  with Image.open(path) as img:
    return np.asarray(img.convert("L")) >= 192


def _expected() -> dict[str, list[str]]:
  """File names of the masks with an image, split by what the builder must do with them."""
  images = {p.name for p in (_ROOT / "images").iterdir()}
  with open(_ROOT / "metadata.csv", newline="", encoding="utf-8") as f:
    rows = {row["filename"]: row for row in csv.DictReader(f)}
  masks = sorted(p.name for p in _MASKS.iterdir())
  with_image = [m for m in masks if m in images]
  ct = [m for m in with_image if rows.get(m, {}).get("modality", "X-ray") != "X-ray"]
  empty = [m for m in with_image if m not in ct and not _lung(_MASKS / m).any()]
  kept = [m for m in with_image if m not in ct and m not in empty]
  return {
    "masks": masks,
    "with_image": with_image,
    "ct": ct,
    "empty": empty,
    "kept": kept,
    "images": sorted(images),
    "rows": {m: rows.get(m, {}) for m in kept},
  }


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[ls.Builder, list[dict]]:
  """Builds cohen_v7 once (array_record, as training reads it); returns the builder and examples."""
  out = tmp_path_factory.mktemp("tfds")
  builder = testing_utils.build(ls.Builder, testing_utils.SHARED_DATA, out, "cohen_v7")
  source = tfds.data_source("lung_segmentation/cohen_v7", data_dir=out)["train"]
  return builder, [source[i] for i in range(len(source))]


@pytest.mark.slow
def test_counts_match_the_masks_that_have_images(built):
  builder, examples = built
  exp = _expected()
  assert len(examples) == len(exp["kept"]) == builder.info.splits["train"].num_examples
  assert sorted(e["filename"].decode() for e in examples) == [f"images/{m}" for m in exp["kept"]]
  skipped = dict(builder.skipped["train"])
  assert sorted(skipped.pop("not an X-ray (metadata.csv modality, e.g. CT)", [])) == [
    f"images/{m}" for m in exp["ct"]
  ]
  assert sorted(skipped.pop("empty mask (no lung annotated)", [])) == [
    f"images/{m}" for m in exp["empty"]
  ]
  missing_image = sorted(set(exp["masks"]) - set(exp["with_image"]))
  assert sorted(skipped.pop("mask without image", [])) == [
    f"semantic_masks_v7labs_lungs/{m}" for m in missing_image
  ]
  assert not skipped, skipped  # Nothing else dropped.
  summary = builder.summary["cohen_v7"]
  assert summary["masks"] == len(exp["masks"])
  assert summary["matched"] == len(exp["with_image"])
  assert summary["images_without_mask"] == len(exp["images"]) - len(exp["with_image"])
  print(
    f"\ncohen_v7 real sample: {len(exp['masks'])} masks, {len(exp['with_image'])} with an image, "
    f"{len(exp['ct'])} CT, {len(exp['empty'])} empty, {len(examples)} examples; "
    f"{summary['images_without_mask']} images without mask."
  )


@pytest.mark.slow
def test_masks_binary_image_sized_and_plausible(built):
  _, examples = built
  coverage = []
  for ex in examples:
    name = ex["filename"].decode()
    image, mask = ex["image"], ex["mask"]
    with Image.open(_ROOT / name) as original:
      width, height = original.size
    assert image.shape == mask.shape == (height, width, 1), name
    assert set(np.unique(mask)) <= {0, 255}, name
    # The stored mask is the source mask thresholded at 192, pixel for pixel (sizes match here).
    np.testing.assert_array_equal(
      mask[..., 0] > 0,
      _lung(_ROOT / "semantic_masks_v7labs_lungs" / pathlib.Path(name).name),
      err_msg=name,
    )
    coverage.append((mask > 0).mean())
  coverage = np.array(coverage)
  print(
    f"\ncohen_v7 lung fraction: mean {coverage.mean():.3f}, min {coverage.min():.3f}, "
    f"max {coverage.max():.3f} over {len(coverage)} masks"
  )
  # Lung fields fill about a fifth to a half of a chest film.
  assert 0.25 < coverage.mean() < 0.5
  assert coverage.min() > 0.1 and coverage.max() < 0.75


@pytest.mark.slow
def test_patient_ids_and_metadata(built):
  _, examples = built
  exp = _expected()
  for ex in examples:
    name = pathlib.PurePath(ex["filename"].decode())
    row = exp["rows"][name.name]
    assert ex["patient_id"].decode() == (row.get("patientid") or name.stem), name
    assert ex["view"].decode() == row.get("view", ""), name
    assert ex["sex"].decode() == (row.get("sex") or ""), name
    assert ex["source"] == b"cohen_v7" and ex["tb"] == -1
