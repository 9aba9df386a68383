"""Regenerates `dummy_data/` for the figure1_covid_chestxray builder test.

The layout, file naming and `metadata.csv` format are upstream's
(https://github.com/agchung/Figure1-COVID-chestxray-dataset: header copied, CSV in latin-1, files
named `<patientid>.jpg|png`): tiny synthetic images, no patient data. 11 rows:

  kept (3class and 2class): COVID-00001 (COVID-19, AP erect, notes with a latin-1 degree sign),
  COVID-00003a and COVID-00003b (COVID-19, one patient, the second an RGBA PNG with blank view:
  flagged), COVID-00004 (Pneumonia, PA, offset `?`: flagged), COVID-00006 (No finding, blank view:
  flagged);
  skipped: COVID-00002 and COVID-00005 (blank finding), COVID-00007 (view `L`), COVID-00008
  (modality CT), COVID-00009 (no image file), COVID-00010 (corrupt JPEG);
  plus `images/COVID-00099.jpg` without a row.

    python tfds_builders/figure1_covid_chestxray/make_dummy_data.py
"""

from __future__ import annotations

import csv
import io
import pathlib
import shutil

import numpy as np
from PIL import Image

from tfds_builders import testing_utils

ROOT = pathlib.Path(__file__).parent / "dummy_data" / "Figure1-COVID-chestxray-dataset"
HEADER = (
  "patientid,offset,sex,age,finding,survival,temperature,pO2 saturation,view,modality,"
  "artifacts/distortion,notes"
).split(",")
# (patientid, offset, sex, age, finding, view, modality, notes)
ROWS = [
  ("COVID-00001", "13", "M", "33", "COVID-19", "AP erect", "X-ray", "Fever 38\u00b0 and cough."),
  ("COVID-00002", "", "M", "50+", "", "AP erect", "X-ray", "returning from abroad"),
  ("COVID-00003a", "8", "M", "28", "COVID-19", "AP erect", "X-ray", "admission"),
  ("COVID-00003b", "8", "M", "28", "COVID-19", "", "X-ray", "Post-intubation"),
  ("COVID-00004", "?", "F", "early 40s", "Pneumonia", "PA", "X-ray", "patient\u2019s cough"),
  ("COVID-00005", "", "", "", "", "", "X-ray", ""),
  ("COVID-00006", "", "F", "60", "No finding", "", "X-ray", "Normal image a year earlier."),
  ("COVID-00007", "2", "F", "60", "COVID-19", "L", "X-ray", "lateral"),
  ("COVID-00008", "2", "M", "70", "COVID-19", "Axial", "CT", "a CT slice"),
  ("COVID-00009", "1", "M", "45", "COVID-19", "PA", "X-ray", "file missing upstream"),
  ("COVID-00010", "4", "F", "51", "COVID-19", "AP", "X-ray", "truncated file"),
]
PNG_IDS = {"COVID-00003b"}
NO_FILE = {"COVID-00009"}
CORRUPT = {"COVID-00010"}


def main() -> None:
  rng = np.random.default_rng(0)
  shutil.rmtree(ROOT, ignore_errors=True)
  (ROOT / "images").mkdir(parents=True)
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(HEADER)
  for pid, offset, sex, age, finding, view, modality, notes in ROWS:
    w.writerow([pid, offset, sex, age, finding, "", "", "", view, modality, "", notes])
    if pid in NO_FILE:
      continue
    grey = testing_utils.fake_radiograph(rng, 40, 48)
    if pid in PNG_IDS:
      rgba = np.stack([grey, grey, grey, np.full_like(grey, 255)], -1)
      rgba[:, :3, 3] = 0  # A transparent margin, as on figures cropped from slides.
      Image.fromarray(rgba, "RGBA").save(ROOT / "images" / f"{pid}.png")
    elif pid in CORRUPT:
      out = io.BytesIO()
      Image.fromarray(grey, "L").save(out, format="JPEG")
      (ROOT / "images" / f"{pid}.jpg").write_bytes(out.getvalue()[:200])
    else:
      Image.fromarray(grey, "L").save(ROOT / "images" / f"{pid}.jpg", quality=90)
  Image.fromarray(testing_utils.fake_radiograph(rng, 32), "L").save(
    ROOT / "images" / "COVID-00099.jpg"
  )
  (ROOT / "metadata.csv").write_bytes(buf.getvalue().encode("cp1252"))  # latin-1 plus 0x92.


if __name__ == "__main__":
  main()
