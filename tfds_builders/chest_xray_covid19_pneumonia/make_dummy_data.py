"""Regenerates `dummy_data/` for the chest_xray_covid19_pneumonia builder tests.

Synthetic 24-32 px JPEGs in the exact layout of the unzipped Kaggle archive
(https://www.kaggle.com/datasets/prashant268/chest-xray-covid19-pneumonia):
`Data/{train,test}/{COVID19,NORMAL,PNEUMONIA}/CLASS(N).jpg`; no real patient data.

Awkward cases: an RGB JPEG and a PNG named `.jpg` (both converted, flagged), a corrupt `.jpg`
and a `.DS_Store` (skipped), and a `NORMAL(N).jpg` inside `PNEUMONIA/` (kept with the folder's
label, flagged).

    python tfds_builders/chest_xray_covid19_pneumonia/make_dummy_data.py
"""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
from PIL import Image

from tfds_builders import testing_utils

ROOT = pathlib.Path(__file__).parent / "dummy_data" / "Data"

# split -> class folder -> grey JPEG file names. Built: train 8, test 4 (with the files below).
FILES = {
  "train": {
    "COVID19": ["COVID19(0).jpg"],
    "NORMAL": ["NORMAL(0).jpg", "NORMAL(1).jpg"],
    "PNEUMONIA": ["PNEUMONIA(0).jpg", "PNEUMONIA(1).jpg"],
  },
  "test": {
    "COVID19": ["COVID19(460).jpg"],
    "NORMAL": ["NORMAL(1266).jpg"],
    "PNEUMONIA": ["PNEUMONIA(3418).jpg", "PNEUMONIA(3419).jpg"],
  },
}
RGB_FILE = ("train", "COVID19", "COVID19(1).jpg")  # Cohen's images are often RGB.
PNG_AS_JPG = ("train", "COVID19", "COVID19(2).jpg")  # PNG content behind a .jpg name.
MISFILED = ("train", "PNEUMONIA", "NORMAL(7).jpg")  # Name says normal, folder pneumonia.
CORRUPT_FILE = ("train", "PNEUMONIA", "PNEUMONIA(2).jpg")
JUNK_FILE = ("train", "NORMAL", ".DS_Store")


def _image(rng: np.random.Generator) -> np.ndarray:
  """A fake radiograph of a random size (24 to 32 px square)."""
  return testing_utils.fake_radiograph(rng, int(rng.integers(24, 33)))


def main() -> None:
  if ROOT.exists():
    shutil.rmtree(ROOT)
  rng = np.random.default_rng(0)
  for split, classes in FILES.items():
    for class_dir, names in classes.items():
      (ROOT / split / class_dir).mkdir(parents=True, exist_ok=True)
      for name in names:
        Image.fromarray(_image(rng), "L").save(ROOT / split / class_dir / name, "JPEG", quality=90)
  Image.fromarray(_image(rng), "L").convert("RGB").save(ROOT.joinpath(*RGB_FILE), "JPEG")
  Image.fromarray(_image(rng), "L").save(ROOT.joinpath(*PNG_AS_JPG), "PNG")
  Image.fromarray(_image(rng), "L").save(ROOT.joinpath(*MISFILED), "JPEG", quality=90)
  ROOT.joinpath(*CORRUPT_FILE).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
  ROOT.joinpath(*JUNK_FILE).write_bytes(b"\x00\x00\x00\x01Bud1")


if __name__ == "__main__":
  main()
