"""Regenerates `dummy_data/` for the covidx builder test.

Tiny synthetic images (no real patient data) under upstream COVIDx file names, in the layout of
the Kaggle archive / COVID-Net notebooks (`train/`, `test/`, `val/` image folders), and the split
files of every config in the upstream line formats (see the builder docstring): 4-column lines,
3-column lines mixed in (`test_COVIDx5.txt`, as upstream), a patient id with a space
(`COVID 305 COVID(305).png COVID-19 sirm`), the `rnsa` source typo. The v5 split files lie in
`labels/` (as in the COVID-Net repository), the others beside the image folders.

Awkward cases: a corrupt JPEG, an RGB JPEG, an upper-case `.PNG`, an unparseable line, a listed
file that is missing, a label outside the version's vocabulary, a line listed twice, an image on
disk that a version does not list.

Valid examples per config (train/test[/val]): v5 5/5, v9a 6/5, v9b 7/5, cxr3a 5/5, cxr3b 6/5,
cxr4 7/2/5.

    python tfds_builders/covidx/make_dummy_data.py
"""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
from PIL import Image

from tfds_builders import testing_utils

DUMMY = pathlib.Path(__file__).parent / "dummy_data"
SIZE = 24  # Image side, px.

# RSNA images are named by their patient UUID.
R1 = "47c78742-4998-4878-aec4-37b11b1354ac"
R2 = "8989e25c-a698-48fc-b428-fff56931fc8f"
R3 = "7fb3786c-5045-4a90-981d-c55b53d4d5d3"
R4 = "766b8aea-3b43-4a34-b675-09f373ca066b"
R5 = "bd8facb9-dce0-4048-8249-e6078b28e1b7"
R6 = "f6236cb5-cc36-4ec4-895c-d11ce043341d"
RICORD = "MIDRC-RICORD-1C-419639-003251-46647-0.png"
RICORD_VAL = "MIDRC-RICORD-1C-SITE2-000265-99793-1.png"
SARS = "SARS-10.1148rg.242035193-g04mr34g05x-Fig5-day9.jpeg"
JUMBO = "3e9d9c9b02b9bcd81c851134667e76_jumbo.jpg"
CORRUPT = "bdc40f9ad2395d88c92479089f5d1b_jumbo-10.jpeg"

IMAGES = {
  "train": [
    "ARDSSevere.png",
    JUMBO,  # RGB JPEG.
    "COVID(305).png",
    RICORD,
    f"{R1}.png",
    f"{R2}.png",
    f"{R3}.png",
    "16745_2_1.PNG",
  ],
  "test": [f"{R4}.png", f"{R5}.png", SARS, "COVID-00025.jpg", "COVID-19(70).png"],
  "val": [f"{R6}.png", RICORD_VAL],
}
RGB = ("train", JUMBO)

THREE_CLASS_TEST = f"""\
{R4} {R4}.png normal rsna
{R5} {R5}.png pneumonia rsna
8 {SARS} pneumonia cohen
COVID-00025 COVID-00025.jpg COVID-19 fig1
COVID-19(70) COVID-19(70).png COVID-19 sirm
"""
BINARY_TEST = f"""\
{R4} {R4}.png negative rsna
{R5} {R5}.png negative rsna
8 {SARS} negative cohen
COVID-00025 COVID-00025.jpg positive fig1
COVID-19(70) COVID-19(70).png positive sirm
"""
V9A_TRAIN = f"""\
5 ARDSSevere.png pneumonia cohen
462 {JUMBO} pneumonia cohen
COVID 305 COVID(305).png COVID-19 sirm
419639-003251 {RICORD} COVID-19 ricord
{R1} {R1}.png normal rsna
{R2} {R2}.png pneumonia rsna
{R2} {R2}.png pneumonia rsna
"""
V9B_TRAIN = f"""\
5 ARDSSevere.png negative cohen
462 {JUMBO} negative cohen
COVID 305 COVID(305).png positive sirm
419639-003251 {RICORD} positive ricord
{R1} {R1}.png negative rsna
{R2} {R2}.png negative rnsa
210 16745_2_1.PNG negative cohen
477 {CORRUPT} negative cohen
{R3} {R3}.png COVID-19 rsna
a7a4389b-29dd-409d-82b7-edf2633032a8 a7a4389b-29dd-409d-82b7-edf2633032a8.png negative rnsa
"""


def _drop_first(text: str) -> str:
  """CXR-3 is 9A/9B minus 'non-representative' images: here, the first line."""
  return "".join(text.splitlines(keepends=True)[1:])


SPLIT_FILES = {
  "labels/train_COVIDx5.txt": f"""\
5 ARDSSevere.png pneumonia cohen
462 {JUMBO} pneumonia cohen
COVID-19(69) COVID-19(69).png COVID-19 sirm
{R1} {R1}.png normal rsna
{R2} {R2}.png pneumonia rsna
210 16745_2_1.PNG COVID-19 cohen
477 {CORRUPT} pneumonia cohen
this line is not a record
419639-003251 {RICORD} positive ricord
""",
  # As upstream's test_COVIDx5.txt: RSNA and Cohen pneumonia lines have no source column.
  "labels/test_COVIDx5.txt": f"""\
{R4} {R4}.png normal
{R5} {R5}.png pneumonia
8 {SARS} pneumonia
COVID-00025 COVID-00025.jpg COVID-19 fig1
COVID-19(70) COVID-19(70).png COVID-19 sirm
""",
  "train_COVIDx9A.txt": V9A_TRAIN,
  "test_COVIDx9A.txt": THREE_CLASS_TEST,
  "train_COVIDx9B.txt": V9B_TRAIN,
  "test_COVIDx9B.txt": BINARY_TEST,
  "train_COVIDx_CXR-3A.txt": _drop_first(V9A_TRAIN),
  "test_COVIDx_CXR-3A.txt": THREE_CLASS_TEST,
  "train_COVIDx_CXR-3B.txt": _drop_first(V9B_TRAIN),
  "test_COVIDx_CXR-3B.txt": BINARY_TEST,
  "train.txt": V9B_TRAIN,
  "val.txt": f"{R6} {R6}.png negative rsna\nSITE2-000265 {RICORD_VAL} positive ricord\n",
  "test.txt": BINARY_TEST,
}


def main() -> None:
  if DUMMY.exists():
    shutil.rmtree(DUMMY)
  rng = np.random.default_rng(0)
  for split, names in IMAGES.items():
    (DUMMY / split).mkdir(parents=True)
    for name in names:
      img = Image.fromarray(testing_utils.fake_radiograph(rng, SIZE), "L")
      if (split, name) == RGB:
        img = img.convert("RGB")
      fmt = "JPEG" if name.lower().endswith((".jpg", ".jpeg")) else "PNG"
      img.save(DUMMY / split / name, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
  (DUMMY / "train" / CORRUPT).write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
  for name, text in SPLIT_FILES.items():
    (DUMMY / name).parent.mkdir(parents=True, exist_ok=True)
    (DUMMY / name).write_text(text)


if __name__ == "__main__":
  main()
