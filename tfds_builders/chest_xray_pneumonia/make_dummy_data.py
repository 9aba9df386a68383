"""Regenerates `dummy_data/` for the chest_xray_pneumonia builder test.

Synthetic 32x32 noise JPEGs in the exact upstream layout (no real patient data), plus the awkward
cases the builder must handle: an RGB JPEG, a corrupt `.jpeg` and a `.DS_Store`.

    python tfds_builders/chest_xray_pneumonia/make_dummy_data.py
"""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
from PIL import Image

from tfds_builders import testing_utils

ROOT = pathlib.Path(__file__).parent / "dummy_data" / "chest_xray"
SIZE = 32  # Image side, px.

# split -> class folder -> file names. Valid images: train 8 (incl. the RGB one), val 2, test 4.
FILES = {
  "train": {
    "NORMAL": ["IM-0001-0001.jpeg", "IM-0003-0001-0002.jpeg", "NORMAL2-IM-0007-0001.jpeg"],
    "PNEUMONIA": [
      "person1_bacteria_1.jpeg",
      "person1_bacteria_2.jpeg",
      "person3_virus_5.jpeg",
      "person7_virus_9.jpeg",
    ],
  },
  "val": {"NORMAL": ["NORMAL2-IM-1427-0001.jpeg"], "PNEUMONIA": ["person1946_bacteria_4874.jpeg"]},
  "test": {
    "NORMAL": ["IM-0011-0001.jpeg", "IM-0013-0001.jpeg"],
    "PNEUMONIA": ["person100_bacteria_475.jpeg", "person101_virus_187.jpeg"],
  },
}
RGB_FILE = ("train", "PNEUMONIA", "person8_bacteria_10.jpeg")  # Upstream has a few RGB JPEGs.
CORRUPT_FILE = ("train", "NORMAL", "IM-0009-0001.jpeg")
JUNK_FILE = ("train", "NORMAL", ".DS_Store")


def main() -> None:
  if ROOT.exists():
    shutil.rmtree(ROOT)
  rng = np.random.default_rng(0)
  for split, classes in FILES.items():
    for class_dir, names in classes.items():
      (ROOT / split / class_dir).mkdir(parents=True, exist_ok=True)
      for name in names:
        image = Image.fromarray(testing_utils.fake_radiograph(rng, SIZE), "L")
        image.save(ROOT / split / class_dir / name, quality=90)
  rgb = Image.fromarray(testing_utils.fake_radiograph(rng, SIZE), "L").convert("RGB")
  rgb.save(ROOT.joinpath(*RGB_FILE), quality=90)
  ROOT.joinpath(*CORRUPT_FILE).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
  ROOT.joinpath(*JUNK_FILE).write_bytes(b"\x00\x00\x00\x01Bud1")


if __name__ == "__main__":
  main()
