"""Regenerates `dummy_data/` for the actualmed_covid_chestxray builder test.

The layout, file naming and `metadata.csv` format are upstream's
(https://github.com/agchung/Actualmed-COVID-chestxray-dataset: header copied, UTF-8, files named
in `imagename`, grey PNGs with DICOM-UID-like names): tiny synthetic images, no patient data.
9 rows:

  kept: ANON1 x2 (COVID-19, PA and AP), ANON2 (No finding, PA), ANON3 (No finding, PA; same patient
  also has an Inconclusive row), ANON4 (COVID-19, AP, a 16-bit PNG);
  skipped: ANON3 and ANON5 (blank finding, notes "Inconclusive"), ANON6 (no image file), a row with
  a blank imagename;
  plus one PNG without a row.

    python tfds_builders/actualmed_covid_chestxray/make_dummy_data.py
"""

from __future__ import annotations

import csv
import pathlib
import shutil

import numpy as np
from PIL import Image

from tfds_builders import testing_utils

ROOT = pathlib.Path(__file__).parent / "dummy_data" / "Actualmed-COVID-chestxray-dataset"
HEADER = (
  "patientid,offset,sex,age,finding,survival,temperature,pO2 saturation,view,modality,imagename,"
  "artifacts/distortion,notes"
).split(",")
_UID = "1.2.840.113564.1722810170.2020031{}.1003000225002.png"
NEGATIVE = "Negative (covid-19 viral infection is excluded), date taken (YYYYMMDD): 20200317"
INCONCLUSIVE = "Inconclusive, date taken (YYYYMMDD): 20200313"
POSITIVE = "Positive, date taken (YYYYMMDD): 20200320"
# (patientid, finding, view, imagename, notes)
ROWS = [
  ("ANON1", "COVID-19", "PA", "DX." + _UID.format("8082923328940"), POSITIVE),
  ("ANON1", "COVID-19", "AP", "DX." + _UID.format("9101230000001"), POSITIVE),
  ("ANON2", "No finding", "PA", "CR." + _UID.format("7090830828260"), NEGATIVE),
  ("ANON3", "No finding", "PA", "CR." + _UID.format("7104341875470"), NEGATIVE),
  ("ANON3", "", "PA", "CR." + _UID.format("3090023421700"), INCONCLUSIVE),
  ("ANON4", "COVID-19", "AP", "DX." + _UID.format("9120000000016"), POSITIVE),
  ("ANON5", "", "AP", "CR." + _UID.format("3100318375460"), INCONCLUSIVE),
  ("ANON6", "COVID-19", "PA", "DX." + _UID.format("9999999999999"), POSITIVE),
  ("ANON7", "COVID-19", "PA", "", POSITIVE),
]
NO_FILE = {"ANON6"}
SIXTEEN_BIT = {"ANON4"}
ORPHAN = "CR." + _UID.format("0000000000000")


def main() -> None:
  rng = np.random.default_rng(1)
  shutil.rmtree(ROOT, ignore_errors=True)
  (ROOT / "images").mkdir(parents=True)
  with open(ROOT / "metadata.csv", "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(HEADER)
    for pid, finding, view, name, notes in ROWS:
      w.writerow([pid, "", "", "", finding, "", "", "", view, "X-ray", name, "", notes])
      if not name or pid in NO_FILE:
        continue
      grey = testing_utils.fake_radiograph(rng, 44, 36)
      if pid in SIXTEEN_BIT:
        Image.fromarray(grey.astype(np.uint16) * 64).save(ROOT / "images" / name)
      else:
        Image.fromarray(grey, "L").save(ROOT / "images" / name)
  Image.fromarray(testing_utils.fake_radiograph(rng, 30), "L").save(ROOT / "images" / ORPHAN)


if __name__ == "__main__":
  main()
