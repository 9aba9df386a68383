"""Tests for the lung_segmentation builder on the generated `dummy_data/`.

`dummy_data/` holds the three upstream layouts side by side (see `make_dummy_data.py`), so every
config builds from it. What each config must make of it:

* cohen_v7 (10 V7 masks, 10 images): 5 examples; skipped: a CT slice, a lateral view with an empty
  mask, a corrupt image, a mask whose aspect ratio differs, a mask without image; flagged: an
  image without metadata.csv row, a half-size mask (resized), an RGB mask. The image without a mask
  is not part of the dataset and not an error.
* montgomery (6 images + Thumbs.db): 4 examples; skipped: right mask missing, corrupt left mask,
  the left/right masks of an absent image, Thumbs.db; a 16-bit PNG is scaled to 8 bits; two
  images are one patient ("same pt as" in the reading).
* shenzhen (5 images): 4 examples; skipped: an image without mask, a mask without image; a
  double-size mask is resized; an RGB image is converted to grey.
* all: the 13 examples of the three, keys `<source>/<filename>`.
"""

from __future__ import annotations

import io
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from tfds_builders import testing_utils
from tfds_builders.lung_segmentation import lung_segmentation_dataset_builder as ls

tfds.disable_progress_bar()

DUMMY_DATA = pathlib.Path(__file__).parent / "dummy_data"
COUNTS = {"cohen_v7": 5, "montgomery": 4, "shenzhen": 4, "all": 13}


class CohenV7Test(tfds.testing.DatasetBuilderTestCase):
  """Standard tfds checks; `manual_dir` is mocked to `dummy_data/` by the base class."""

  DATASET_CLASS = ls.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["cohen_v7"]
  SPLITS = {"train": COUNTS["cohen_v7"]}


class MontgomeryTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = ls.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["montgomery"]
  SPLITS = {"train": COUNTS["montgomery"]}


class ShenzhenTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = ls.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["shenzhen"]
  SPLITS = {"train": COUNTS["shenzhen"]}


class AllTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = ls.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["all"]
  SPLITS = {"train": COUNTS["all"]}


def _examples(data_dir: pathlib.Path, config: str) -> dict[str, dict]:
  """{filename: example} read back with tfds.data_source (text features come back as bytes)."""
  source = tfds.data_source(f"lung_segmentation/{config}", data_dir=data_dir)["train"]
  examples = [source[i] for i in range(len(source))]
  return {
    (e["source"].decode() + "/" if config == "all" else "") + e["filename"].decode(): e
    for e in examples
  }


def _png(arr: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, format=fmt, **kw)
  return buf.getvalue()


# --- Masks and readings ----------------------------------------------------------------------

_LUNG = np.zeros((8, 8), bool)
_LUNG[2:6, 1:4] = _LUNG[2:6, 5:7] = True


def _v7_like() -> np.ndarray:
  m = np.where(_LUNG, 255, 0).astype(np.uint8)
  m[7, :3] = 127  # V7's "other object" class: not lung.
  m[0, 0], m[3, 2] = 1, 254  # JPEG ringing.
  return m


def _rgba() -> np.ndarray:
  a = np.zeros((8, 8, 4), np.uint8)
  a[..., :3] = 255  # White everywhere, but only the lungs are opaque.
  a[..., 3] = np.where(_LUNG, 255, 0)
  return a


@pytest.mark.parametrize(
  ("data", "converted"),
  [
    pytest.param(_png(np.where(_LUNG, 255, 0).astype(np.uint8)), False, id="0/255"),
    pytest.param(_png(_v7_like()), False, id="v7-127-class-and-noise"),
    pytest.param(_png(_LUNG.astype(np.uint8)), False, id="0/1"),
    pytest.param(_png(_LUNG), False, id="mode-1"),
    pytest.param(_png(np.where(_LUNG, 65535, 0).astype(np.uint16)), False, id="16-bit"),
    pytest.param(
      _png(
        np.stack([np.where(_LUNG, 255, 0).astype(np.uint8)] + [np.zeros((8, 8), np.uint8)] * 2, -1)
      ),
      True,
      id="rgb-red",
    ),
    pytest.param(_png(_rgba()), True, id="rgba-alpha"),
  ],
)
def test_binarize_mask(data, converted):
  lung, was_converted = ls.binarize_mask(data)
  np.testing.assert_array_equal(lung, _LUNG)
  assert was_converted == converted


def test_binarize_mask_jpeg_noise_alone_is_empty():
  noise = np.zeros((16, 16), np.uint8)
  noise[3, 3] = 1  # In a JPEG a lone 1 is ringing, not a 0/1 mask.
  lung, _ = ls.binarize_mask(_png(noise, "JPEG", quality=100))
  assert not lung.any()


def test_binarize_mask_corrupt_raises():
  with pytest.raises(Exception):  # noqa: B017  # PIL's error type varies with the damage.
    ls.binarize_mask(b"\x89PNG\r\n\x1a\n truncated")


def test_resize_nearest_keeps_binary():
  big = ls.resize_nearest(_LUNG, (16, 24))
  assert big.shape == (24, 16) and big.dtype == bool and big.any()


@pytest.mark.parametrize(
  ("text", "sex", "age", "reading", "same"),
  [
    ("Patient's Sex: F \nPatient's Age: 027Y\nnormal\n", "F", 27, "normal", None),
    ("Patient's Sex: O \nPatient's Age: 005Y\nnormal", "", 5, "normal", None),
    (
      "Patient's Sex: M \nPatient's Age: 049Y\nNO REPORT (same pt as MCUCXR_0162_1)",
      "M",
      49,
      "NO REPORT (same pt as MCUCXR_0162_1)",
      "MCUCXR_0162",
    ),
    (
      "Patient's Sex: M\nPatient's Age: 010M\n\nleft  upper\nlobe infiltrate",
      "M",
      0,
      "left upper lobe infiltrate",
      None,
    ),
    ("male 45yrs\nnormal", "M", 45, "normal", None),
    ("female24yrs\nnormal", "F", 24, "normal", None),
    ("femal 32yrs\nnormal", "F", 32, "normal", None),
    ("male , 29yrs  \t\nbilateral secondary PTB", "M", 29, "bilateral secondary PTB", None),
    ("Female, 28yrs\nPTB in the left upper field", "F", 28, "PTB in the left upper field", None),
    ("male 16month\nnormal", "M", 1, "normal", None),
    ("female 64days\nnormal", "F", 0, "normal", None),
    ("male 42\nnormal", "M", 42, "normal", None),
    ("normal", "", -1, "normal", None),
    ("PTB, 2 cavities\nright upper lobe", "", -1, "PTB, 2 cavities right upper lobe", None),
    ("38yrs\nnormal", "", 38, "normal", None),
    ("", "", -1, "", None),
  ],
)
def test_parse_reading(text, sex, age, reading, same):
  assert ls.parse_reading(text) == ls.Reading(sex, age, reading, same)


def test_group_same_patient_chains_and_cycles():
  groups = ls.group_same_patient({"MC_4": "MC_3", "MC_5": "MC_4", "MC_8": "MC_9", "MC_9": "MC_8"})
  assert groups == {
    "MC_3": "MC_3",
    "MC_4": "MC_3",
    "MC_5": "MC_3",
    "MC_8": "MC_8",
    "MC_9": "MC_8",
  }


# --- Layouts and errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
  ("config", "layout_hint", "url_hint"),
  [
    ("cohen_v7", "semantic_masks_v7labs_lungs", "github.com/ieee8023"),
    ("montgomery", "ManualMask/leftMask", "lhncbc.nlm.nih.gov"),
    ("shenzhen", "CHNCXR_0001_0_mask.png", "yoctoman/shcxr-lung-mask"),
    ("all", "ManualMask/leftMask", "torchxrayvision"),
  ],
)
def test_missing_manual_dir_error_names_path_layout_and_source(
  tmp_path, config, layout_hint, url_hint
):
  missing = tmp_path / "nope"
  with pytest.raises(FileNotFoundError) as e:
    testing_utils.build(ls.Builder, missing, tmp_path / "data", config)
  msg = str(e.value)
  assert str(missing) in msg and layout_hint in msg and url_hint in msg


@pytest.mark.parametrize(
  ("config", "layout_hint"),
  [
    ("cohen_v7", "semantic_masks_v7labs_lungs"),
    ("montgomery", "ManualMask/leftMask"),
    ("shenzhen", "CHNCXR_0001_0_mask.png"),
  ],
)
def test_wrong_layout_error_names_path_and_layout(tmp_path, config, layout_hint):
  manual = tmp_path / "manual"
  (manual / "CXR_png").mkdir(parents=True)  # Images but no masks: not enough for any config.
  (manual / "images").mkdir()
  (manual / "CXR_png" / "x.png").write_bytes(_png(np.zeros((4, 4), np.uint8)))
  with pytest.raises(FileNotFoundError) as e:
    testing_utils.build(ls.Builder, manual, tmp_path / "data", config)
  msg = str(e.value)
  assert str(manual) in msg and layout_hint in msg and "CXR_png" in msg


def test_finders_accept_the_dataset_folder_itself_or_its_parent(tmp_path):
  cohen = DUMMY_DATA / "covid-chestxray-dataset"
  assert ls.find_cohen(DUMMY_DATA).root == ls.find_cohen(cohen).root == epath.Path(cohen)
  montgomery = epath.Path(DUMMY_DATA / "MontgomerySet")
  assert ls.find_montgomery(DUMMY_DATA).root == ls.find_montgomery(montgomery).root == montgomery
  # Shenzhen's masks come from another download: accept mask/ beside or inside ChinaSet_AllFiles.
  china = tmp_path / "ChinaSet_AllFiles"
  shutil.copytree(DUMMY_DATA / "ChinaSet_AllFiles", china)
  shutil.copytree(DUMMY_DATA / "mask", china / "mask" / "mask")  # Kaggle's doubled folder.
  for manual in (tmp_path, china):
    layout = ls.find_shenzhen(manual)
    assert layout.root == epath.Path(china)
    assert layout.mask_dirs == (epath.Path(china / "mask" / "mask"),)


def test_cohen_mask_folder_beside_the_dataset_folder(tmp_path):
  shutil.copytree(DUMMY_DATA / "covid-chestxray-dataset" / "images", tmp_path / "ccd" / "images")
  shutil.copytree(
    DUMMY_DATA / "covid-chestxray-dataset" / "semantic_masks_v7labs_lungs",
    tmp_path / "semantic_masks_v7labs_lungs",
  )
  layout = ls.find_cohen(tmp_path / "ccd", extra_mask_parents=[tmp_path])
  assert layout.mask_dir == epath.Path(tmp_path / "semantic_masks_v7labs_lungs")


# --- Builds on dummy data --------------------------------------------------------------------

_EXPECTED_SKIPPED = {
  "cohen_v7": {
    "not an X-ray (metadata.csv modality, e.g. CT)": ["images/16630_2_1.jpg"],
    "empty mask (no lung annotated)": ["images/16664_1_2.jpg"],
    "unreadable/corrupt image": ["images/corrupt-radiograph.jpeg"],
    "mask aspect ratio differs from the image's": ["images/figure1-crop.png"],
    "mask without image": ["semantic_masks_v7labs_lungs/removed-image.jpg"],
  },
  "montgomery": {
    "non-image file (ignored)": ["CXR_png/Thumbs.db"],
    "mask without image": [
      "ManualMask/leftMask/MCUCXR_0099_0.png",
      "ManualMask/rightMask/MCUCXR_0099_0.png",
    ],
    "incomplete mask (left or right lung mask missing)": ["CXR_png/MCUCXR_0005_0.png"],
    "unreadable/corrupt mask": ["CXR_png/MCUCXR_0006_1.png"],
  },
  "shenzhen": {
    "mask without image": ["mask/CHNCXR_0099_1_mask.png"],
    "image without mask": ["CXR_png/CHNCXR_0004_1.png"],
  },
}
_EXPECTED_FLAGGED = {
  "cohen_v7": {
    "no metadata.csv row or patient id (patient id = file stem)": ["images/extra-no-row.png"],
    "mask resized to the image size (nearest neighbour)": ["images/lancet-case2a.jpg"],
    "mask not single-channel (RGB/alpha/palette: colour maximum used)": [
      "images/nejmoa2001191_f3-PA.png"
    ],
  },
  "montgomery": {
    "patient id = image number (upstream has no patient ids)": [
      f"CXR_png/MCUCXR_000{i}.png" for i in ("1_0", "2_0", "3_1", "4_1")
    ],
    "no clinical reading (sex, age unknown)": ["CXR_png/MCUCXR_0002_0.png"],
    "same patient as another image (a reading says 'same pt as')": [
      "CXR_png/MCUCXR_0003_1.png",
      "CXR_png/MCUCXR_0004_1.png",
    ],
  },
  "shenzhen": {
    "patient id = image number (upstream has no patient ids)": [
      f"CXR_png/CHNCXR_000{i}.png" for i in ("1_0", "2_0", "3_1", "5_0")
    ],
    "mask resized to the image size (nearest neighbour)": ["CXR_png/CHNCXR_0005_0.png"],
  },
}
_EXPECTED_SUMMARY = {
  "cohen_v7": {"masks": 10, "matched": 9, "images_without_mask": 1, "examples": 5},
  "montgomery": {"masks": 7, "matched": 5, "images_without_mask": 0, "examples": 4},
  "shenzhen": {"masks": 5, "matched": 4, "images_without_mask": 1, "examples": 4},
}


@pytest.fixture(scope="module")
def dummy_builds(tmp_path_factory) -> tuple[pathlib.Path, dict[str, ls.Builder]]:
  """All four configs built once from dummy_data (array_record, as training reads them)."""
  data_dir = tmp_path_factory.mktemp("tfds")
  return data_dir, {c: testing_utils.build(ls.Builder, DUMMY_DATA, data_dir, c) for c in COUNTS}


@pytest.mark.parametrize("config", ["cohen_v7", "montgomery", "shenzhen"])
def test_skips_flags_and_counts(dummy_builds, config):
  _, builders = dummy_builds
  b = builders[config]
  assert b.info.splits["train"].num_examples == COUNTS[config]
  assert dict(b.skipped["train"]) == _EXPECTED_SKIPPED[config]
  assert dict(b.flagged["train"]) == _EXPECTED_FLAGGED[config]
  summary = dict(b.summary[config])
  assert 0.3 < summary.pop("mean_coverage") < 0.6
  assert summary == _EXPECTED_SUMMARY[config]


def test_all_is_the_union_with_prefixed_names(dummy_builds):
  data_dir, builders = dummy_builds
  b = builders["all"]
  expected_skips = {
    (reason, f"{source}/{name}")
    for source, reasons in _EXPECTED_SKIPPED.items()
    for reason, names in reasons.items()
    for name in names
  }
  got_skips = {(reason, name) for reason, names in b.skipped["train"].items() for name in names}
  assert got_skips == expected_skips
  examples = _examples(data_dir, "all")
  singles = {f"{c}/{name}" for c in ls.SOURCES for name in _examples(data_dir, c)}
  assert set(examples) == singles
  assert {e["source"] for e in examples.values()} == {s.encode() for s in ls.SOURCES}


@pytest.mark.parametrize("config", ["cohen_v7", "montgomery", "shenzhen"])
def test_masks_are_binary_and_the_image_size(dummy_builds, config):
  data_dir, _ = dummy_builds
  for name, ex in _examples(data_dir, config).items():
    image, mask = ex["image"], ex["mask"]
    assert image.dtype == mask.dtype == np.uint8, name
    assert image.shape == mask.shape and image.shape[-1] == 1, name
    assert set(np.unique(mask)) <= {0, 255}, name
    assert 0.2 < (mask > 0).mean() < 0.7, name
    assert image.std() > 0, name


def test_cohen_features(dummy_builds):
  data_dir, _ = dummy_builds
  ex = _examples(data_dir, "cohen_v7")
  assert (
    ex["images/16660_1_1.jpg"]["patient_id"]
    == ex["images/covid-19-pneumonia-7-PA.png"]["patient_id"]
    == b"101"
  )
  a = ex["images/16660_1_1.jpg"]
  assert (a["sex"], a["age"], a["tb"], a["view"], a["reading"]) == (
    b"M",
    65,
    -1,
    b"PA",
    b"COVID-19",
  )
  assert ex["images/extra-no-row.png"]["patient_id"] == b"extra-no-row"
  assert ex["images/lancet-case2a.jpg"]["age"] == -1  # Blank in metadata.csv.
  # The V7 mask's 127 "other object" corner (bottom left) is not lung.
  assert not a["mask"][-4:, :6].any()
  # The red RGB mask gives the same lungs as the grey ones.
  rgb = ex["images/nejmoa2001191_f3-PA.png"]["mask"]
  grey = ex["images/extra-no-row.png"]["mask"]
  np.testing.assert_array_equal(rgb, grey)


def test_montgomery_features(dummy_builds):
  data_dir, _ = dummy_builds
  ex = _examples(data_dir, "montgomery")
  one, three, four = (ex[f"CXR_png/MCUCXR_000{i}.png"] for i in ("1_0", "3_1", "4_1"))
  assert (one["patient_id"], one["sex"], one["age"], one["tb"]) == (b"MCUCXR_0001", b"F", 40, 0)
  assert one["reading"] == b"normal" and one["view"] == b"PA"
  # "same pt as MCUCXR_0003_1": one patient; sex "O" is unknown.
  assert three["patient_id"] == four["patient_id"] == b"MCUCXR_0003"
  assert (four["sex"], four["age"], four["tb"]) == (b"", 49, 1)
  # The 16-bit PNG is scaled to 8 bits, not clipped to white.
  assert three["image"].max() > 200 and three["image"].min() < 100
  # Left + right masks: both lungs, as in the other sets.
  assert (one["mask"][:, :12] > 0).any() and (one["mask"][:, 12:] > 0).any()


def test_shenzhen_features(dummy_builds):
  data_dir, _ = dummy_builds
  ex = _examples(data_dir, "shenzhen")
  assert ex["CXR_png/CHNCXR_0002_0.png"]["image"].shape == (32, 24, 1)  # RGB upstream.
  three = ex["CXR_png/CHNCXR_0003_1.png"]
  assert (three["sex"], three["age"], three["tb"]) == (b"M", 29, 1)
  assert three["reading"] == b"bilateral secondary PTB"
  assert ex["CXR_png/CHNCXR_0005_0.png"]["mask"].shape == (32, 24, 1)  # Resized from 64x48.
  assert ex["CXR_png/CHNCXR_0005_0.png"]["age"] == 1  # "16month".


def test_kaggle_combined_layout(tmp_path):
  """Kaggle nikhilpandey360/chest-xray-masks-and-labels: both sets in one `Lung Segmentation/`."""
  root = tmp_path / "data" / "Lung Segmentation"
  for sub in ("CXR_png", "masks", "ClinicalReadings"):
    (root / sub).mkdir(parents=True)
  china = DUMMY_DATA / "ChinaSet_AllFiles"
  mont = DUMMY_DATA / "MontgomerySet"
  for stem in ("CHNCXR_0001_0", "CHNCXR_0003_1", "CHNCXR_0004_1"):
    shutil.copy(china / "CXR_png" / f"{stem}.png", root / "CXR_png")
    shutil.copy(china / "ClinicalReadings" / f"{stem}.txt", root / "ClinicalReadings")
  for stem in ("CHNCXR_0001_0", "CHNCXR_0003_1"):
    shutil.copy(DUMMY_DATA / "mask" / f"{stem}_mask.png", root / "masks")
  for stem in ("MCUCXR_0001_0", "MCUCXR_0003_1"):
    shutil.copy(mont / "CXR_png" / f"{stem}.png", root / "CXR_png")
    shutil.copy(mont / "ClinicalReadings" / f"{stem}.txt", root / "ClinicalReadings")
    left = np.asarray(Image.open(mont / "ManualMask" / "leftMask" / f"{stem}.png"))
    right = np.asarray(Image.open(mont / "ManualMask" / "rightMask" / f"{stem}.png"))
    Image.fromarray(np.maximum(left, right)).save(root / "masks" / f"{stem}.png")  # Merged.
  (root / "test").mkdir()  # Kaggle's unlabelled test images: not read.

  sz = testing_utils.build(ls.Builder, tmp_path, tmp_path / "tfds", "shenzhen")
  assert sz.info.splits["train"].num_examples == 2
  assert sz.skipped["train"]["image without mask"] == ["CXR_png/CHNCXR_0004_1.png"]
  assert sorted(sz.skipped["train"]["other NLM set's file (MCUCXR_*)"]) == [
    "CXR_png/MCUCXR_0001_0.png",
    "CXR_png/MCUCXR_0003_1.png",
    "masks/MCUCXR_0001_0.png",
    "masks/MCUCXR_0003_1.png",
  ]
  # The folder itself, this time.
  mc = testing_utils.build(ls.Builder, root, tmp_path / "tfds", "montgomery")
  assert mc.info.splits["train"].num_examples == 2
  assert len(mc.skipped["train"]["other NLM set's file (CHNCXR_*)"]) == 5
  ex = _examples(tmp_path / "tfds", "montgomery")
  assert ex["CXR_png/MCUCXR_0003_1.png"]["sex"] == b"M"
  assert set(np.unique(ex["CXR_png/MCUCXR_0001_0.png"]["mask"])) == {0, 255}


def test_cohen_without_metadata_csv_flags_every_patient_id(tmp_path):
  shutil.copytree(DUMMY_DATA / "covid-chestxray-dataset", tmp_path / "covid-chestxray-dataset")
  (tmp_path / "covid-chestxray-dataset" / "metadata.csv").unlink()
  b = testing_utils.build(ls.Builder, tmp_path, tmp_path / "tfds", "cohen_v7")
  assert b.info.splits["train"].num_examples == 5
  # Without metadata the CT slice is not known as CT: its empty mask skips it instead.
  assert sorted(b.skipped["train"]["empty mask (no lung annotated)"]) == [
    "images/16630_2_1.jpg",
    "images/16664_1_2.jpg",
  ]
  assert len(b.flagged["train"]["no metadata.csv row or patient id (patient id = file stem)"]) == 5


def test_cohen_downloads_when_no_manual_dir_is_given(tmp_path, monkeypatch):
  calls = []

  def fake_download_and_extract(self, urls):
    calls.append(urls)
    # What the two archives extract to: the repo (images/, metadata.csv) and the masks folder.
    return {
      "repo": epath.Path(DUMMY_DATA / "covid-chestxray-dataset"),
      "masks": epath.Path(DUMMY_DATA / "covid-chestxray-dataset"),
    }

  monkeypatch.setattr(
    tfds.download.DownloadManager, "download_and_extract", fake_download_and_extract
  )
  b = testing_utils.build(ls.Builder, None, tmp_path / "tfds", "cohen_v7")
  assert b.info.splits["train"].num_examples == COUNTS["cohen_v7"]
  assert calls == [{"repo": ls._COHEN_ARCHIVE_URL, "masks": ls._V7_MASKS_URL}]

  # A --manual_dir that is given but missing is an error, never a silent download.
  calls.clear()
  with pytest.raises(FileNotFoundError):
    testing_utils.build(ls.Builder, tmp_path / "nope", tmp_path / "tfds2", "cohen_v7")
  assert not calls


@pytest.mark.slow
def test_tfds_build_cli(tmp_path):
  """The real `tfds build` CLI, as users run it (one config: the union, all code paths)."""
  result = testing_utils.run_tfds_build(
    "tfds_builders/lung_segmentation", tmp_path, manual_dir=DUMMY_DATA, config="all"
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert testing_utils.array_record_files(tmp_path, "lung_segmentation/all/1.0.0")
  source = tfds.data_source("lung_segmentation/all", data_dir=tmp_path)["train"]
  assert len(source) == COUNTS["all"]
  ex = source[0]
  assert ex["mask"].shape == ex["image"].shape


if __name__ == "__main__":
  tfds.testing.test_main()
