"""Regenerates `dummy_data/` for the nih_chestxray14 builder tests.

Two copies of the upstream layout with synthetic 24-32 px PNGs (no real patient data):

  * `dummy_data/box/`: the NIH Box folder (https://nihcc.app.box.com/v/ChestXray-NIHCC) after
    extracting the tarballs: `Data_Entry_2017_v2020.csv` (its real header line), the two split
    lists, `BBox_List_2017.csv` and `images/*.png`;
  * `dummy_data/kaggle/`: Kaggle's `nih-chest-xrays/data`: `Data_Entry_2017.csv` (the 2017 header
    and rows, each line ending in an empty column), the lists, `BBox_List_2017.csv` and
    `images_001/images/`, `images_002/images/`.

Awkward cases (expected builder behaviour in the comments below): a CSV row without file, a file
without row, a name in both lists, in neither list, listed but absent everywhere, a corrupt PNG, an
RGBA PNG, an unknown finding, `No Finding` with a finding, a `.DS_Store`, an image present in two
`images_NNN/` folders, an implausible age, a Patient ID that disagrees with the file name, a box
spilling over the 1024-px frame and the `Infiltrate` spelling of the box list.

    python tfds_builders/nih_chestxray14/make_dummy_data.py
"""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
from PIL import Image

from tfds_builders import testing_utils

ROOT = pathlib.Path(__file__).parent / "dummy_data"

HEADER_V2020 = (
  "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
  "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
S143, S168, S171 = "0.14300000000000002,0.14300000000000002", "0.168,0.168", "0.171,0.171"

# Box layout. Built: train 4 (00000001_000..002, 00000002_000), test 4 (00000003_000 RGBA,
# 00000004_000, 00000005_000, 00000013_000).
BOX_ROWS = [
  f"00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,{S143}",
  f"00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,{S143}",
  f"00000001_002.png,Cardiomegaly|Effusion,2,1,58,M,PA,2500,2048,{S168}",
  f"00000002_000.png,No Finding,0,2,80,M,PA,2500,2048,{S171}",
  f"00000003_000.png,Hernia,0,3,74,F,PA,2500,2048,{S168}",  # RGBA file: converted, flagged.
  f"00000004_000.png,Mass|Nodule,0,4,82,M,AP,2500,2048,{S168}",
  f"00000005_000.png,Infiltration,0,5,69,F,AP,2048,2500,{S168}",
  f"00000006_000.png,Atelectasis,0,6,81,M,PA,2500,2048,{S168}",  # No file: skipped (train).
  "00000008_000.png,Edema,0,8,45,F,AP,3056,2544,0.139,0.139",  # In both lists: skipped twice.
  f"00000009_000.png,Consolidation,0,9,33,M,PA,2500,2048,{S171}",  # Corrupt PNG: skipped.
  f"00000010_000.png,Covid-19,0,10,52,F,PA,2500,2048,{S171}",  # Unknown finding: skipped (test).
  f"00000011_000.png,No Finding|Effusion,0,11,60,M,PA,2500,2048,{S171}",  # Contradiction: skipped.
  f"00000012_000.png,Fibrosis,0,12,71,F,PA,2500,2048,{S171}",  # In neither list: skipped (train).
  f"00000013_000.png,Pleural_Thickening|Pneumothorax,0,13,60,M,PA,2992,2991,{S143}",
]
BOX_FILES = [
  "00000001_000.png",
  "00000001_001.png",
  "00000001_002.png",
  "00000002_000.png",
  "00000004_000.png",
  "00000005_000.png",
  "00000007_000.png",  # No CSV row: skipped (train).
  "00000008_000.png",
  "00000010_000.png",
  "00000011_000.png",
  "00000012_000.png",
  "00000013_000.png",
]
BOX_RGBA = "00000003_000.png"
BOX_CORRUPT = "00000009_000.png"
BOX_TRAIN_LIST = [
  "00000001_000.png",
  "00000001_001.png",
  "00000001_002.png",
  "00000002_000.png",
  "00000006_000.png",
  "00000007_000.png",
  "00000008_000.png",
  "00000009_000.png",
  "00000011_000.png",
]
BOX_TEST_LIST = [
  "00000003_000.png",
  "00000004_000.png",
  "00000005_000.png",
  "00000008_000.png",
  "00000010_000.png",
  "00000013_000.png",
  "00000014_000.png",  # No row, no file: skipped (test).
]
BOX_BBOXES = [
  "00000004_000.png,Mass,225.084745762712,547.019216763771,86.7796610169491,79.1864406779661,,,",
  "00000004_000.png,Nodule,686.101694915254,131.796610169492,35.7966101694915,33.0847457627119,,,",
  "00000005_000.png,Infiltrate,180.2,201.5,300.0,412.7,,,",  # `Infiltrate` = infiltration.
  "00000013_000.png,Pneumothorax,800.0,100.0,300.0,500.0,,,",  # x + w > 1024: clipped, flagged.
]

# Kaggle layout: Data_Entry_2017.csv lines end with a comma. Built: train 4 (00000001_000, _001,
# 00000002_000, 00000003_000), test 2 (00000004_000, 00000005_000).
KAGGLE_HEADER = HEADER_V2020 + ","
KAGGLE_ROWS = [
  "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143,",
  "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143,",
  "00000002_000.png,No Finding,0,2,81,M,PA,2500,2048,0.171,0.171,",
  "00000003_000.png,Hernia,0,3,414,F,PA,2500,2048,0.168,0.168,",  # Age 414: kept, flagged.
  "00000004_000.png,Mass|Nodule,0,4,82,M,AP,2500,2048,0.168,0.168,",
  "00000005_000.png,Infiltration,0,6,69,F,AP,2048,2500,0.168,0.168,",  # ID 6 != file: flagged.
]
KAGGLE_FILES = {
  "images_001": ["00000001_000.png", "00000001_001.png", "00000002_000.png"],
  # The same 00000001_001.png again: the second copy is skipped as a duplicate (train).
  "images_002": ["00000001_001.png", "00000003_000.png", "00000004_000.png", "00000005_000.png"],
}
KAGGLE_TRAIN_LIST = ["00000001_000.png", "00000001_001.png", "00000002_000.png", "00000003_000.png"]
KAGGLE_TEST_LIST = ["00000004_000.png", "00000005_000.png"]
KAGGLE_BBOXES = [
  "00000004_000.png,Mass,225.084745762712,547.019216763771,86.7796610169491,79.1864406779661,,,",
]


def _write_png(path: pathlib.Path, rng: np.random.Generator, mode: str = "L") -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  size = int(rng.integers(24, 33))
  Image.fromarray(testing_utils.fake_radiograph(rng, size), "L").convert(mode).save(path)


def _write_lines(path: pathlib.Path, lines: list[str]) -> None:
  # Upstream files use Unix line ends and end with a newline.
  path.write_text("\n".join(lines) + "\n")


def main() -> None:
  if ROOT.exists():
    shutil.rmtree(ROOT)
  rng = np.random.default_rng(0)

  box = ROOT / "box"
  box.mkdir(parents=True)
  _write_lines(box / "Data_Entry_2017_v2020.csv", [HEADER_V2020, *BOX_ROWS])
  _write_lines(box / "train_val_list.txt", BOX_TRAIN_LIST)
  _write_lines(box / "test_list.txt", BOX_TEST_LIST)
  _write_lines(box / "BBox_List_2017.csv", [BBOX_HEADER, *BOX_BBOXES])
  for name in BOX_FILES:
    _write_png(box / "images" / name, rng)
  _write_png(box / "images" / BOX_RGBA, rng, mode="RGBA")
  (box / "images" / BOX_CORRUPT).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
  (box / "images" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")  # Skipped (train).

  kaggle = ROOT / "kaggle"
  kaggle.mkdir(parents=True)
  _write_lines(kaggle / "Data_Entry_2017.csv", [KAGGLE_HEADER, *KAGGLE_ROWS])
  _write_lines(kaggle / "train_val_list.txt", KAGGLE_TRAIN_LIST)
  _write_lines(kaggle / "test_list.txt", KAGGLE_TEST_LIST)
  _write_lines(kaggle / "BBox_List_2017.csv", [BBOX_HEADER, *KAGGLE_BBOXES])
  for folder, names in KAGGLE_FILES.items():
    for name in names:
      _write_png(kaggle / folder / "images" / name, rng)


if __name__ == "__main__":
  main()
