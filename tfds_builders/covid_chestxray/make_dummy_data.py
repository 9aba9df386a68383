"""Regenerates `dummy_data/` for the covid_chestxray builder test.

The layout, file naming and `metadata.csv` format are upstream's
(https://github.com/ieee8023/covid-chestxray-dataset, header copied from the 2020-06-22 release;
lung masks as in torchxrayvision's `semantic_masks_v7labs_lungs.zip`): tiny synthetic images, no
patient data. 18 rows that exercise every path of the builder:

  kept in both configs: 3 covid-19 (flat `COVID-19`, `COVID-19, ARDS`, hierarchical
  `Pneumonia/Viral/COVID-19`), 3 other pneumonias (flat `SARS`, `Pneumonia/Bacterial/...`,
  `Pneumonia/Fungal/...` in view `AP semi erect`), 1 `No Finding`;
  kept in 2class only: `ARDS`, `Tuberculosis`;
  skipped: `todo`, `Unknown`, an unknown finding (`Sarcoidosis`), a CT row, a `volumes/` row, a
  lateral row, a blank-view row, a row whose file is missing, a corrupt JPEG;
  plus a file in images/ without a row. Images: grey JPEGs, an RGB JPEG, an RGBA PNG, a grey PNG.
  Masks: a JPEG mask with a device (127) region for `nejmc2001573_f1a.jpeg`, a half-size PNG mask
  for the RGBA PNG, an all-zero mask for the lateral image (as upstream has for laterals).

    python tfds_builders/covid_chestxray/make_dummy_data.py
"""

from __future__ import annotations

import csv
import io
import pathlib
import shutil

import numpy as np
from PIL import Image

from tfds_builders import testing_utils

ROOT = pathlib.Path(__file__).parent / "dummy_data" / "covid-chestxray-dataset"

# Copied from the upstream metadata.csv (28 columns).
HEADER = (
  "patientid,offset,sex,age,finding,survival,intubated,intubation_present,went_icu,in_icu,"
  "needed_supplemental_O2,extubated,temperature,pO2_saturation,leukocyte_count,neutrophil_count,"
  "lymphocyte_count,view,modality,date,location,folder,filename,doi,url,license,clinical_notes,"
  "other_notes"
)
_NOTES = (
  "On January 22, 2020, a 65-year-old man was admitted with low-grade fever, cough and fatigue.\n"
  'Chest radiographs obtained on admission showed an "infiltrate" in the upper lobe, left lung'
)

# (patientid, offset, sex, age, finding, view, modality, folder, filename, url, license, notes)
ROWS = [
  ("4", "0", "F", "52", "COVID-19", "PA", "X-ray", "images", "nejmc2001573_f1a.jpeg",
   "https://www.nejm.org/doi/full/10.1056/NEJMc2001573", "", _NOTES),
  ("4", "5", "F", "52", "COVID-19, ARDS", "AP Supine", "X-ray", "images", "nejmc2001573_f1b.jpeg",
   "https://www.nejm.org/doi/full/10.1056/NEJMc2001573", "", "progressive opacities, bilateral"),
  ("326a", "2", "M", "71", "Pneumonia/Viral/COVID-19", "AP", "X-ray", "images",
   "41379_2020_536_Fig2_HTML-c1.png", "https://www.nature.com/articles/s41379-020-0536-x",
   "CC BY 4.0", ""),
  ("3", "", "M", "", "SARS", "AP", "X-ray", "images",
   "SARS-10.1148rg.242035193-g04mr34g0-Fig8a-day0.jpeg",
   "https://pubs.rsna.org/doi/10.1148/rg.242035193", "", "SARS in a 74-year-old man, day 0."),
  ("50", "-1", "F", "44", "Pneumonia/Bacterial/Streptococcus", "PA", "X-ray", "images",
   "streptococcus-pneumoniae-pneumonia-1.jpg",
   "https://radiopaedia.org/cases/streptococcus-pneumoniae-pneumonia-1", "CC BY-NC-SA", ""),
  ("51", "10", "M", "38", "Pneumonia/Fungal/Pneumocystis", "AP semi erect", "X-ray", "images",
   "pneumocystis-pneumonia-2-PA.png", "https://www.eurorad.org/case/16745", "CC BY-NC-SA 4.0", ""),
  ("52", "?", "", "", "No Finding", "PA", "X-ray", "images", "00870a9c.jpg",
   "https://github.com/ieee8023/covid-chestxray-dataset", "", ""),
  ("5", "", "", "", "ARDS", "PA", "X-ray", "images", "ARDSSevere.png",
   "https://en.wikipedia.org/wiki/File:ARDSSevere.png", "CC BY-SA",
   "Severe ARDS. Person is intubated, with an OG in place."),
  ("53", "", "M", "30", "Tuberculosis", "PA", "X-ray", "images", "tuberculosis-1.jpg",
   "https://radiopaedia.org/cases/tuberculosis-1", "", ""),
  ("350a", "", "", "", "todo", "AP", "X-ray", "images",
   "08ed451c576ee00935ee178ec85c57_jumbo-1.jpeg",
   "https://radiopaedia.org/cases/covid-19-pneumonia-92?lang=us", "", ""),
  ("17", "9", "M", "54", "COVID-19", "Axial", "CT", "images", "jkms-35-e79-g001-l-d.jpg",
   "https://www.jkms.org/DOIx.php?id=10.3346/jkms.2020.35.e79", "", ""),
  ("13", "4", "M", "35", "COVID-19", "L", "X-ray", "images", "nejmoa2001191_f1-L.jpeg",
   "https://www.nejm.org/doi/full/10.1056/NEJMoa2001191", "", "No thoracic abnormalities."),
  ("54", "14", "", "", "COVID-19", "PA", "X-ray", "images", "covid-19-pneumonia-14-PA.png",
   "https://radiopaedia.org/cases/covid-19-pneumonia-14", "", ""),
  ("55", "", "M", "61", "Klebsiella", "PA", "X-ray", "images", "kjr-21-e24-g001-l-a.jpg",
   "https://www.kjronline.org/DOIx.php?id=10.3348/kjr.2020.0132", "", ""),
  ("56", "", "", "", "COVID-19", "Axial", "CT", "volumes", "coronacases_org_001.nii.gz",
   "https://coronacases.org/forum/coronacases-org-helping-radiologists-to-help-people", "", ""),
  ("57", "", "F", "47", "Sarcoidosis", "PA", "X-ray", "images", "sarcoidosis-1.jpg",
   "radiopaedia.org/cases/sarcoidosis-1", "", ""),
  ("350c", "", "", "", "COVID-19", "", "X-ray", "images",
   "6770dac454c45c86bc6c2d6193b177_jumbo.jpeg",
   "https://radiopaedia.org/cases/covid-19-pneumonia-97?lang=us", "", ""),
  ("58", "", "", "", "Unknown", "PA", "X-ray", "images", "unknown-1.jpg", "", "", ""),
]  # fmt: skip
MISSING_FILE = "covid-19-pneumonia-14-PA.png"
CORRUPT_FILE = "kjr-21-e24-g001-l-a.jpg"
ORPHAN_FILE = "orphan-figure-3.jpeg"  # In images/ but in no row.
RGB_FILE = "nejmc2001573_f1b.jpeg"
RGBA_FILE = "41379_2020_536_Fig2_HTML-c1.png"
JPEG_MASK = "nejmc2001573_f1a.jpeg"  # Same size as the image, lungs 255 + a device at 127.
SMALL_MASK = RGBA_FILE  # Half the image size: the builder resizes it.
EMPTY_MASK = "nejmoa2001191_f1-L.jpeg"  # Lateral: upstream masks for laterals are all zero.


def _lungs(h: int, w: int, device: bool = False) -> np.ndarray:
  mask = np.zeros((h, w), np.uint8)
  mask[h // 6 : h - h // 6, w // 8 : w // 2 - 2] = 255
  mask[h // 6 : h - h // 6, w // 2 + 2 : w - w // 8] = 255
  if device:
    mask[: h // 5, : w // 4] = 127  # Upstream's device class (pacemaker, pump), not lung.
  return mask


def _save(arr: np.ndarray, path: pathlib.Path, mode: str = "L") -> None:
  img = Image.fromarray(arr, "L")
  if mode != "L":
    img = img.convert(mode)
  if path.suffix in (".jpg", ".jpeg"):
    img.save(path, quality=90)
  else:
    img.save(path)


def main() -> None:
  if ROOT.exists():
    shutil.rmtree(ROOT)
  images, masks = ROOT / "images", ROOT / "semantic_masks_v7labs_lungs"
  images.mkdir(parents=True)
  masks.mkdir()
  rng = np.random.default_rng(0)
  sizes = {}
  for i, row in enumerate(ROWS):
    folder, name = row[7], row[8]
    if folder != "images" or name in (MISSING_FILE, CORRUPT_FILE):
      continue
    h, w = 24 + 4 * (i % 4), 28 + 4 * (i % 3)  # Mixed sizes, as upstream.
    sizes[name] = (h, w)
    if name == RGBA_FILE:
      rgba = Image.fromarray(testing_utils.fake_radiograph(rng, h, w), "L").convert("RGBA")
      alpha = np.full((h, w), 255, np.uint8)
      alpha[:, : w // 6] = 0  # A transparent margin, as in figures cropped from papers.
      rgba.putalpha(Image.fromarray(alpha, "L"))
      rgba.save(images / name)
    else:
      mode = "RGB" if name == RGB_FILE else "L"
      _save(testing_utils.fake_radiograph(rng, h, w), images / name, mode)
  (images / CORRUPT_FILE).write_bytes(b"\xff\xd8\xff\xe0 truncated download")
  _save(testing_utils.fake_radiograph(rng, 32, 32), images / ORPHAN_FILE)

  h, w = sizes[JPEG_MASK]
  Image.fromarray(_lungs(h, w, device=True), "L").save(masks / JPEG_MASK, quality=95)
  h, w = sizes[SMALL_MASK]
  Image.fromarray(_lungs(h // 2, w // 2), "L").save(masks / SMALL_MASK)
  h, w = sizes[EMPTY_MASK]
  Image.fromarray(np.zeros((h, w), np.uint8), "L").save(masks / EMPTY_MASK, quality=95)

  columns = HEADER.split(",")
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")  # Quotes cells with commas, quotes, newlines.
  for patientid, offset, sex, age, finding, view, modality, folder, name, url, lic, notes in ROWS:
    cells = dict.fromkeys(columns, "")
    cells.update(
      patientid=patientid, offset=offset, sex=sex, age=age, finding=finding, view=view,
      modality=modality, folder=folder, filename=name, url=url, license=lic, clinical_notes=notes,
      date="2020", location="Toronto, Ontario, Canada" if finding == "SARS" else "",
    )  # fmt: skip
    writer.writerow([cells[c] for c in columns])
  (ROOT / "metadata.csv").write_text(HEADER + "\n" + buf.getvalue(), encoding="utf-8")


if __name__ == "__main__":
  main()
