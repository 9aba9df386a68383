"""Regenerates `dummy_data/` for the lung_segmentation builder tests.

Tiny synthetic images and lung masks (no real patient data) in the exact upstream layouts, all in
one folder so that every config (and `all`) builds from it:

    dummy_data/
      covid-chestxray-dataset/            github.com/ieee8023/covid-chestxray-dataset
        metadata.csv                      (the 28 upstream columns)
        images/<file>
        semantic_masks_v7labs_lungs/<same file name>   (torchxrayvision's V7 Labs lung masks)
      MontgomerySet/                      NLM-MontgomeryCXRSet.zip
        CXR_png/MCUCXR_0001_0.png
        ManualMask/leftMask/MCUCXR_0001_0.png, ManualMask/rightMask/MCUCXR_0001_0.png
        ClinicalReadings/MCUCXR_0001_0.txt
      ChinaSet_AllFiles/                  ChinaSet_AllFiles.zip (NLM)
        CXR_png/CHNCXR_0001_0.png
        ClinicalReadings/CHNCXR_0001_0.txt
      mask/CHNCXR_0001_0_mask.png         Kaggle yoctoman/shcxr-lung-mask (Stirenko et al. 2018)

Awkward cases (what the builder must do is in the test module's docstring): V7 masks with the
0/127/255 values and JPEG noise of the real ones, an RGB mask, a smaller mask, a mask whose aspect
ratio differs, a mask without image, an image without mask, a corrupt image, a corrupt mask, a CT
image and a lateral view with empty masks, a 16-bit Montgomery PNG, a Montgomery image whose right
mask is missing, a reading saying "same pt as", irregular Shenzhen readings, a `Thumbs.db`.

    python tfds_builders/lung_segmentation/make_dummy_data.py
"""

from __future__ import annotations

import csv
import pathlib
import shutil

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).parent / "dummy_data"
COHEN = ROOT / "covid-chestxray-dataset"
MONTGOMERY = ROOT / "MontgomerySet"
SHENZHEN = ROOT / "ChinaSet_AllFiles"
SHENZHEN_MASKS = ROOT / "mask"

# The header of the upstream metadata.csv (snapshot of 2020-06-22).
COHEN_COLUMNS = (
  "patientid,offset,sex,age,finding,survival,intubated,intubation_present,went_icu,in_icu,"
  "needed_supplemental_O2,extubated,temperature,pO2_saturation,leukocyte_count,neutrophil_count,"
  "lymphocyte_count,view,modality,date,location,folder,filename,doi,url,license,clinical_notes,"
  "other_notes"
).split(",")

H, W = 32, 24  # Portrait, like most chest films.


def _xray(rng: np.random.Generator, h: int = H, w: int = W) -> np.ndarray:
  """A vaguely radiograph-like picture: bright mediastinum and borders, dark lungs, noise."""
  y, x = np.mgrid[:h, :w]
  lungs = _lungs(h, w)
  base = np.where(lungs, 50, 170) + 40 * (y / h)
  return np.clip(base + rng.normal(0, 10, (h, w)), 0, 255).astype(np.uint8)


def _lungs(h: int = H, w: int = W) -> np.ndarray:
  """Two ellipses, True inside the lungs (about 35% of the image)."""
  y, x = np.mgrid[:h, :w] / np.array([h, w])[:, None, None]
  left = ((x - 0.28) / 0.2) ** 2 + ((y - 0.5) / 0.36) ** 2 <= 1
  right = ((x - 0.72) / 0.2) ** 2 + ((y - 0.5) / 0.36) ** 2 <= 1
  return left | right


def _v7_mask(rng: np.random.Generator, h: int = H, w: int = W) -> np.ndarray:
  """Like the real V7 masks: lungs 255, a non-lung object (marker, tube) 127, JPEG-ish noise."""
  m = np.where(_lungs(h, w), 255, 0).astype(np.uint8)
  m[h - 4 :, : w // 4] = 127  # A side marker in the corner: not lung.
  noise = rng.random((h, w)) < 0.03
  m[noise & (m == 0)] = 1
  m[noise & (m == 255)] = 254
  return m


def _save(arr: np.ndarray, path: pathlib.Path, **kw) -> None:
  """Saves uint8 (H, W) as L, (H, W, 3) as RGB, uint16 (H, W) as I;16, in the suffix's format."""
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(arr).save(path, **kw)


def _cohen(rng: np.random.Generator) -> None:
  images, masks = COHEN / "images", COHEN / "semantic_masks_v7labs_lungs"
  rows = []

  def row(patient, filename, view="PA", modality="X-ray", sex="M", age="65", finding="COVID-19"):
    rows.append(
      dict.fromkeys(COHEN_COLUMNS, "")
      | {
        "patientid": patient,
        "offset": "0",
        "sex": sex,
        "age": age,
        "finding": finding,
        "view": view,
        "modality": modality,
        "folder": "images",
        "filename": filename,
        "license": "CC BY-NC-SA 4.0",
        "clinical_notes": 'A "quoted", multi-line\nnote, as upstream has.',
      }
    )

  # Kept: JPEG image + JPEG mask with the 127 class and compression noise (like most real ones).
  row("101", "16660_1_1.jpg")
  _save(_xray(rng), images / "16660_1_1.jpg", quality=90)
  _save(_v7_mask(rng), masks / "16660_1_1.jpg", quality=90)
  # Kept: RGB PNG image (upstream has many), PNG mask; same patient as above.
  row("101", "covid-19-pneumonia-7-PA.png", view="AP Supine", sex="M", age="65")
  _save(np.repeat(_xray(rng)[..., None], 3, -1), images / "covid-19-pneumonia-7-PA.png")
  _save(_v7_mask(rng), masks / "covid-19-pneumonia-7-PA.png")
  # Kept, flagged: an RGB mask (red lungs).
  row("102", "nejmoa2001191_f3-PA.png", sex="F", age="35", finding="Pneumonia/Viral/SARS")
  _save(_xray(rng), images / "nejmoa2001191_f3-PA.png")
  red = np.zeros((H, W, 3), np.uint8)
  red[_lungs(), 0] = 255
  _save(red, masks / "nejmoa2001191_f3-PA.png")
  # Kept, flagged: a mask at half the image size (resized with nearest neighbour).
  row("103", "lancet-case2a.jpg", view="AP", sex="", age="")
  _save(_xray(rng), images / "lancet-case2a.jpg", quality=90)
  _save(_v7_mask(rng, H // 2, W // 2), masks / "lancet-case2a.jpg")
  # Kept, flagged: image and mask but no metadata.csv row (patient id = file stem).
  _save(_xray(rng), images / "extra-no-row.png")
  _save(_v7_mask(rng), masks / "extra-no-row.png")
  # Skipped: CT slice (its V7 mask is empty, as upstream).
  row("104", "16630_2_1.jpg", view="Axial", modality="CT")
  _save(_xray(rng), images / "16630_2_1.jpg", quality=90)
  _save(np.zeros((H, W), np.uint8), masks / "16630_2_1.jpg", quality=90)
  # Skipped: lateral view with an empty mask (upstream lateral masks are all empty).
  row("105", "16664_1_2.jpg", view="L")
  _save(_xray(rng), images / "16664_1_2.jpg", quality=90)
  _save(np.zeros((H, W), np.uint8), masks / "16664_1_2.jpg", quality=90)
  # Skipped: corrupt image.
  row("106", "corrupt-radiograph.jpeg")
  (images / "corrupt-radiograph.jpeg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
  _save(_v7_mask(rng), masks / "corrupt-radiograph.jpeg", quality=90)
  # Skipped: mask whose aspect ratio differs from the image's (it annotates another crop).
  row("107", "figure1-crop.png")
  _save(_xray(rng), images / "figure1-crop.png")
  _save(_v7_mask(rng, H, H), masks / "figure1-crop.png")
  # Skipped: mask without image.
  _save(_v7_mask(rng), masks / "removed-image.jpg", quality=90)
  # Not part of the dataset (no mask), not an error: image with a metadata row.
  row("108", "no-mask-here.jpg")
  _save(_xray(rng), images / "no-mask-here.jpg", quality=90)

  with open(COHEN / "metadata.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=COHEN_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)


def _montgomery(rng: np.random.Generator) -> None:
  images, left, right = (
    MONTGOMERY / "CXR_png",
    MONTGOMERY / "ManualMask" / "leftMask",
    MONTGOMERY / "ManualMask" / "rightMask",
  )
  readings = MONTGOMERY / "ClinicalReadings"
  lungs = _lungs()
  # The patient's left lung is on the image's right.
  left_mask = np.where(lungs & (np.mgrid[:H, :W][1] >= W // 2), 255, 0).astype(np.uint8)
  right_mask = np.where(lungs & (np.mgrid[:H, :W][1] < W // 2), 255, 0).astype(np.uint8)

  def case(stem: str, reading: str | None, *, image=None, masks=("left", "right")) -> None:
    if image is None:
      _save(_xray(rng), images / f"{stem}.png")
    else:
      image(images / f"{stem}.png")
    if "left" in masks:
      _save(left_mask, left / f"{stem}.png")
    if "right" in masks:
      _save(right_mask, right / f"{stem}.png")
    if reading is not None:
      readings.mkdir(parents=True, exist_ok=True)
      (readings / f"{stem}.txt").write_text(reading)

  case("MCUCXR_0001_0", "Patient's Sex: F \nPatient's Age: 040Y\nnormal\n")
  # No reading file: kept, flagged, sex/age unknown.
  case("MCUCXR_0002_0", None)
  # 16-bit PNG (the builder scales it to 8 bits), TB.
  sixteen = lambda p: _save(_xray(rng).astype(np.uint16) * 16, p)
  case(
    "MCUCXR_0003_1",
    "Patient's Sex: M \nPatient's Age: 049Y\nright upper lobe cavity, TB\n",
    image=sixteen,
  )
  case(
    "MCUCXR_0004_1",
    "Patient's Sex: O \nPatient's Age: 049Y\nNO REPORT (same pt as MCUCXR_0003_1)\n",
  )
  # Skipped: right mask missing.
  case("MCUCXR_0005_0", "Patient's Sex: F \nPatient's Age: 005Y\nnormal\n", masks=("left",))
  # Skipped: corrupt left mask.
  case("MCUCXR_0006_1", "Patient's Sex: M \nPatient's Age: 061Y\nbilateral infiltrates\n")
  (left / "MCUCXR_0006_1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
  # Skipped: masks without image; Thumbs.db is not an image.
  _save(left_mask, left / "MCUCXR_0099_0.png")
  _save(right_mask, right / "MCUCXR_0099_0.png")
  (images / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 junk")


def _shenzhen(rng: np.random.Generator) -> None:
  images, readings = SHENZHEN / "CXR_png", SHENZHEN / "ClinicalReadings"
  lungs = np.where(_lungs(), 255, 0).astype(np.uint8)

  def case(stem: str, reading: str, *, mask: bool = True, rgb: bool = False) -> None:
    x = _xray(rng)
    if rgb:  # A few upstream Shenzhen PNGs are RGB.
      _save(np.repeat(x[..., None], 3, -1), images / f"{stem}.png")
    else:
      _save(x, images / f"{stem}.png")
    if mask:
      _save(lungs, SHENZHEN_MASKS / f"{stem}_mask.png")
    readings.mkdir(parents=True, exist_ok=True)
    (readings / f"{stem}.txt").write_text(reading)

  case("CHNCXR_0001_0", "male 45yrs\nnormal\n")
  case("CHNCXR_0002_0", "female24yrs\nnormal\n", rgb=True)
  case("CHNCXR_0003_1", "male , 29yrs  \t\nbilateral secondary PTB\n")
  # Skipped: image without mask (Stirenko's set has masks for 566 of the 662 images).
  case("CHNCXR_0004_1", "Female, 28yrs\nPTB in the left upper field\n", mask=False)
  # Kept, flagged: mask at twice the image size (resized with nearest neighbour).
  case("CHNCXR_0005_0", "male 16month\nnormal\n", mask=False)
  big = np.asarray(Image.fromarray(lungs).resize((2 * W, 2 * H), Image.NEAREST))
  _save(big, SHENZHEN_MASKS / "CHNCXR_0005_0_mask.png")
  # Skipped: mask without image.
  _save(lungs, SHENZHEN_MASKS / "CHNCXR_0099_1_mask.png")


def main() -> None:
  if ROOT.exists():
    shutil.rmtree(ROOT)
  rng = np.random.default_rng(0)
  _cohen(rng)
  _montgomery(rng)
  _shenzhen(rng)


if __name__ == "__main__":
  main()
