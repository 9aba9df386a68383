"""Regenerates `dummy_data/` for the covid19_radiography builder test.

Tiny synthetic PNGs (no real patient data) in the exact layouts of the two releases, with real
`.xlsx` spreadsheets (openpyxl) whose FILE NAME spellings differ from the files as upstream's do
(`COVID-19(1)` for `COVID-19 (1).png`, `NORMAL-1` for `Normal-1.png`), plus the awkward cases:

  * v1: an RGB image, a corrupt PNG, a `desktop.ini`, a spreadsheet row without file
    (`COVID-19(5)`), an image without row (`Viral Pneumonia (2).png`), the "matadata" typo.
    -> 7 examples (covid-19 3, normal 2, viral_pneumonia 2).
  * current: an RGBA image, a corrupt PNG, masks at 24x24 for 30x30 images (upstream: 256 for
    299), one image without mask (`COVID-3.png`), a mask without image, a row without file
    (`COVID-9`). -> 7 examples (covid-19 3, normal 2, lung_opacity 1, viral_pneumonia 1).

    python tfds_builders/covid19_radiography/make_dummy_data.py
"""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
import openpyxl
from PIL import Image

from tfds_builders import testing_utils

DUMMY = pathlib.Path(__file__).parent / "dummy_data"
V1 = DUMMY / "COVID-19 Radiography Database"
CURRENT = DUMMY / "COVID-19_Radiography_Dataset"
SIZE, MASK_SIZE = 30, 24

# Spreadsheet URLs as upstream writes them (one per collection the builder names).
SIRM = "https://sirm.org/category/senza-categoria/covid-19/"
COHEN = "https://github.com/ieee8023/covid-chestxray-dataset"
NEJM = "https://www.nejm.org/doi/full/10.1056/NEJMoa2001191"
KERMANY = "https://www.kaggle.com/paultimothymooney/chest-xray-pneumonia"
RSNA = "https://www.kaggle.com/c/rsna-pneumonia-detection-challenge/data"
BIMCV = "https://bimcv.cipf.es/bimcv-projects/bimcv-covid19/#1590858128006-9e640421-6711"
HANNOVER = "https://github.com/ml-workgroup/covid-19-image-repository/tree/master/png"


def _mask(size: int = MASK_SIZE) -> np.ndarray:
  """Two 'lungs' at 255 on 0."""
  m = np.zeros((size, size), np.uint8)
  m[size // 5 : -size // 6, size // 8 : size // 2 - 2] = 255
  m[size // 5 : -size // 6, size // 2 + 2 : -size // 8] = 255
  return m


def _png(path: pathlib.Path, array: np.ndarray, mode: str = "L") -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  img = Image.fromarray(array, "L")
  if mode != "L":
    img = img.convert(mode)
  img.save(path)


def _xlsx(path: pathlib.Path, rows: list[tuple[str, str]]) -> None:
  """A metadata spreadsheet with the upstream header FILE NAME, FORMAT, SIZE, URL."""
  workbook = openpyxl.Workbook()
  sheet = workbook.active
  sheet.title = "Sheet1"
  sheet.append(["FILE NAME", "FORMAT", "SIZE", "URL"])
  for name, url in rows:
    sheet.append([name, "PNG", "256*256", url])
  workbook.save(path)


def make_v1(rng: np.random.Generator) -> None:
  for name in ("COVID-19 (1).png", "COVID-19 (2).png"):
    _png(V1 / "COVID-19" / name, testing_utils.fake_radiograph(rng, SIZE))
  _png(V1 / "COVID-19" / "COVID-19 (3).png", testing_utils.fake_radiograph(rng, SIZE), "RGB")
  (V1 / "COVID-19" / "COVID-19 (4).png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
  for name in ("NORMAL (1).png", "NORMAL (2).png"):
    _png(V1 / "NORMAL" / name, testing_utils.fake_radiograph(rng, SIZE))
  for name in ("Viral Pneumonia (1).png", "Viral Pneumonia (2).png"):
    _png(V1 / "Viral Pneumonia" / name, testing_utils.fake_radiograph(rng, SIZE))
  (V1 / "NORMAL" / "desktop.ini").write_text("[.ShellClassInfo]\n")
  _xlsx(
    V1 / "COVID-19.metadata.xlsx",
    [
      ("COVID-19(1)", SIRM),
      ("COVID-19(2)", COHEN),
      ("COVID-19(3)", NEJM),
      ("COVID-19(4)", SIRM),
      ("COVID-19(5)", SIRM),
    ],
  )
  _xlsx(V1 / "NORMAL.metadata.xlsx", [("NORMAL(1)", KERMANY), ("NORMAL(2)", KERMANY)])
  _xlsx(V1 / "Viral Pneumonia.matadata.xlsx", [("Viral Pneumonia(1)", KERMANY)])
  (V1 / "README.md.txt").write_text("COVID-19 Radiography Database (synthetic test copy).\n")


def make_current(rng: np.random.Generator) -> None:
  images = {
    "COVID": ["COVID-1.png", "COVID-2.png"],
    "Normal": ["Normal-1.png", "Normal-2.png"],
    "Lung_Opacity": ["Lung_Opacity-1.png"],
    "Viral Pneumonia": ["Viral Pneumonia-1.png"],
  }
  for folder, names in images.items():
    for name in names:
      _png(CURRENT / folder / "images" / name, testing_utils.fake_radiograph(rng, SIZE))
      _png(CURRENT / folder / "masks" / name, _mask())
  rgba_without_mask = CURRENT / "COVID" / "images" / "COVID-3.png"
  _png(rgba_without_mask, testing_utils.fake_radiograph(rng, SIZE), "RGBA")
  (CURRENT / "Lung_Opacity" / "images" / "Lung_Opacity-2.png").write_bytes(b"not a png")
  _png(CURRENT / "Normal" / "masks" / "Normal-7.png", _mask())  # Mask without image.
  _xlsx(
    CURRENT / "COVID.metadata.xlsx",
    [("COVID-1", BIMCV), ("COVID-2", SIRM), ("COVID-3", HANNOVER), ("COVID-9", SIRM)],
  )
  _xlsx(CURRENT / "Normal.metadata.xlsx", [("NORMAL-1", RSNA), ("NORMAL-2", KERMANY)])
  _xlsx(
    CURRENT / "Lung_Opacity.metadata.xlsx", [("Lung_Opacity-1", RSNA), ("Lung_Opacity-2", RSNA)]
  )
  _xlsx(CURRENT / "Viral Pneumonia.metadata.xlsx", [("Viral Pneumonia-1", KERMANY)])
  (CURRENT / "README.md.txt").write_text("COVID-19 Radiography Database (synthetic test copy).\n")


def main() -> None:
  if DUMMY.exists():
    shutil.rmtree(DUMMY)
  rng = np.random.default_rng(0)
  make_v1(rng)
  make_current(rng)


if __name__ == "__main__":
  main()
