"""DICOM through the one image decoder (jaxcxr.data.images): the display pipeline of PS3.3 C.11.

Every expected pixel is computed by hand from the standard's formulas (not by pydicom), on small
files the tests write: MONOCHROME1 and 2, 8 and 16 bits (12 stored), signed, rescale
slope/intercept, window centre/width (LINEAR), a VOI LUT, RLE and JPEG 2000 compression, an
undecodable transfer syntax and a damaged file. The two real files of ../shared/data/dicom (JPEG
baseline, MONOCHROME2 and its MONOCHROME1 twin) are read too.
"""

from __future__ import annotations

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402

from jaxcxr.data import images  # noqa: E402
from tests.conftest import require_shared  # noqa: E402


def write_dicom(
  path,
  pixels,
  *,
  photometric="MONOCHROME2",
  bits_stored=None,
  window=None,
  rescale=None,
  voi_lut=None,
  syntax=pydicom.uid.ExplicitVRLittleEndian,
):
  """A minimal secondary-capture DICOM file of `pixels` (uint8/uint16/int16, (H, W))."""
  pixels = np.asarray(pixels)
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
  meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
  meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
  ds = Dataset()
  ds.file_meta = meta
  ds.SOPClassUID = meta.MediaStorageSOPClassUID
  ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
  ds.Modality = "DX"
  ds.Rows, ds.Columns = pixels.shape
  ds.SamplesPerPixel = 1
  ds.PhotometricInterpretation = photometric
  ds.BitsAllocated = pixels.dtype.itemsize * 8
  ds.BitsStored = bits_stored or ds.BitsAllocated
  ds.HighBit = ds.BitsStored - 1
  ds.PixelRepresentation = int(pixels.dtype.kind == "i")
  ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
  if window is not None:
    ds.WindowCenter, ds.WindowWidth = window
  if rescale is not None:
    ds.RescaleSlope, ds.RescaleIntercept = rescale
  if voi_lut is not None:
    item = Dataset()
    item.LUTDescriptor = [len(voi_lut), 0, 16]
    item.add_new((0x0028, 0x3006), "US", [int(v) for v in voi_lut])  # LUT Data
    ds.VOILUTSequence = Sequence([item])
  if syntax != pydicom.uid.ExplicitVRLittleEndian:
    ds.compress(syntax)
  ds.save_as(path, enforce_file_format=True)
  return path


def read(path):
  return images.read_grey(path)


def linear_window(values, center, width):
  """PS3.3 C.11.2.1.2.1 (LINEAR) as a fraction of the output range, then 0-255."""
  v = np.asarray(values, np.float64)
  frac = np.clip((v - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
  return np.round(frac * 255).astype(np.uint8)


def test_monochrome2_8bit_is_kept(tmp_path):
  # No VOI transform, 8 bits: kept as is, like an 8-bit PNG.
  p = write_dicom(tmp_path / "a.dcm", np.array([[0, 40], [80, 200]], np.uint8))
  np.testing.assert_array_equal(read(p), [[0, 40], [80, 200]])


def test_monochrome1_is_inverted(tmp_path):
  px = np.array([[0, 40], [80, 200]], np.uint8)
  p = write_dicom(tmp_path / "m1.dcm", px, photometric="MONOCHROME1")
  np.testing.assert_array_equal(read(p), [[255, 215], [175, 55]])
  q = write_dicom(tmp_path / "m1_16.dcm", px.astype(np.uint16) * 20, photometric="MONOCHROME1")
  np.testing.assert_array_equal(read(q), [[255, 204], [153, 0]])  # 255 - x * 255 / 4000


def test_16bit_12_stored_scales_by_the_maximum(tmp_path):
  px = np.array([[0, 800], [1600, 4000]], np.uint16)
  p = write_dicom(tmp_path / "b.dcm", px, bits_stored=12)
  np.testing.assert_array_equal(read(p), [[0, 51], [102, 255]])


def test_signed_16bit_lowest_value_is_black(tmp_path):
  # Lowest (-100) black, highest (300) white: (v + 100) * 255 / 400.
  px = np.array([[-100, 60], [220, 300]], np.int16)
  p = write_dicom(tmp_path / "s.dcm", px, bits_stored=12)
  np.testing.assert_array_equal(read(p), [[0, 102], [204, 255]])


def test_rescale_slope_intercept_without_window(tmp_path):
  # Stored 0, 500, 1000, 1500 -> 2 x - 1000 = -1000, 0, 1000, 2000 -> (v + 1000) * 255 / 3000.
  px = np.array([[0, 500], [1000, 1500]], np.uint16)
  p = write_dicom(tmp_path / "r.dcm", px, bits_stored=12, rescale=(2, -1000))
  np.testing.assert_array_equal(read(p), [[0, 85], [170, 255]])


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_16bit_window_center_width(tmp_path, photometric):
  px = np.array([[0, 600], [1000, 1400], [1500, 3000]], np.uint16)
  p = write_dicom(
    tmp_path / "w.dcm", px, bits_stored=12, window=(1001, 1001), photometric=photometric
  )
  expected = linear_window(px, 1001, 1001)
  np.testing.assert_array_equal(expected, [[0, 25], [127, 229], [255, 255]])  # by hand
  if photometric == "MONOCHROME1":
    expected = 255 - expected
  np.testing.assert_array_equal(read(p), expected)


def test_window_applies_after_rescale(tmp_path):
  # Stored 0, 500, 600, 800 -> 2 x - 1000 = -1000, 0, 200, 600; the window (501, 1001) is on those.
  px = np.array([[0, 500], [600, 800]], np.uint16)
  p = write_dicom(tmp_path / "rw.dcm", px, bits_stored=12, rescale=(2, -1000), window=(501, 1001))
  np.testing.assert_array_equal(read(p), [[0, 0], [51, 153]])
  # The same window on the stored values would give another image: the order matters.
  assert not np.array_equal(read(p), linear_window(px, 501, 1001))


def test_voi_lut_sequence_wins_over_the_window(tmp_path):
  # Stored 0..3 index the LUT [0, 20, 40, 100]; its values span 0-100 -> x * 255 / 100.
  px = np.array([[0, 1], [2, 3]], np.uint16)
  p = write_dicom(tmp_path / "l.dcm", px, bits_stored=12, voi_lut=[0, 20, 40, 100], window=(2, 2))
  np.testing.assert_array_equal(read(p), [[0, 51], [102, 255]])


def test_rle_compressed_decodes_like_uncompressed(tmp_path):
  px = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) * 7) % 4096
  plain = write_dicom(tmp_path / "plain.dcm", px, bits_stored=12, window=(2048, 4096))
  rle = write_dicom(
    tmp_path / "rle.dcm", px, bits_stored=12, window=(2048, 4096), syntax=pydicom.uid.RLELossless
  )
  assert pydicom.dcmread(rle).file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
  np.testing.assert_array_equal(read(rle), read(plain))
  np.testing.assert_array_equal(read(plain), linear_window(px, 2048, 4096))


def test_jpeg2000_lossless_decodes_with_openjpeg(tmp_path):
  pytest.importorskip("openjpeg", reason="pylibjpeg-openjpeg not installed")
  px = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 3) % 4096
  p = write_dicom(tmp_path / "j2k.dcm", px, bits_stored=12, syntax=pydicom.uid.JPEG2000Lossless)
  assert pydicom.dcmread(p).file_meta.TransferSyntaxUID == pydicom.uid.JPEG2000Lossless
  np.testing.assert_array_equal(read(p), images.to_uint8(px))


def test_undecodable_transfer_syntax_names_the_file(tmp_path):
  p = write_dicom(tmp_path / "video.dcm", np.zeros((4, 4), np.uint8))
  ds = pydicom.dcmread(p)
  ds.file_meta.TransferSyntaxUID = pydicom.uid.MPEG2MPML  # No pydicom plugin decodes video.
  ds.PixelData = pydicom.encaps.encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 12])
  ds.save_as(p, enforce_file_format=True)
  with pytest.raises(ValueError, match=r"video\.dcm.*MPEG2"):
    read(p)


def test_damaged_file_names_the_file(tmp_path):
  p = tmp_path / "broken.dcm"
  p.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage")
  with pytest.raises(ValueError, match=r"broken\.dcm"):
    read(p)
  q = tmp_path / "noimage.png"
  q.write_bytes(b"not an image")
  with pytest.raises(ValueError, match=r"noimage\.png: not a readable image"):
    read(q)


def test_grey_image_bytes_encodes_dicom_for_builders(tmp_path):
  px = np.array([[0, 40], [80, 200]], np.uint8)
  p = write_dicom(tmp_path / "a.dcm", px, photometric="MONOCHROME1")
  png = images.grey_image_bytes(p.read_bytes(), "png")
  np.testing.assert_array_equal(images.to_grey(png), [[255, 215], [175, 55]])


def test_shared_dicoms_jpeg_baseline_monochrome1_and_2():
  d = require_shared("dicom")
  files = sorted(d.glob("*.dcm"))
  assert len(files) == 2, files
  mono1 = [f for f in files if pydicom.dcmread(f).PhotometricInterpretation == "MONOCHROME1"]
  mono2 = [f for f in files if pydicom.dcmread(f).PhotometricInterpretation == "MONOCHROME2"]
  assert len(mono1) == len(mono2) == 1
  for f in files:
    assert pydicom.dcmread(f).file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
  a, b = read(mono2[0]), read(mono1[0])
  assert a.shape == b.shape == (1024, 1024) and a.dtype == np.uint8
  assert a.std() > 20  # a radiograph, not a flat image
  raw1, raw2 = pydicom.dcmread(mono1[0]).pixel_array, pydicom.dcmread(mono2[0]).pixel_array
  np.testing.assert_array_equal(a, raw2)  # 8-bit MONOCHROME2, no VOI: the stored values
  # The "fake" MONOCHROME1 file stores the same values; read as MONOCHROME1 they are inverted.
  np.testing.assert_array_equal(raw1, raw2)
  np.testing.assert_array_equal(b, 255 - a)
