"""Helpers every jaxcxr TFDS builder shares: the manual dir, grey-level images, skip reports.

Conventions (set by `chest_xray_pneumonia`, the first builder):
  * images are stored single-channel `(H, W, 1)` so PIL alone decodes them at training time;
    original grey JPEGs are kept byte for byte, anything else is converted with PIL's ITU-R 601
    luma weights and re-encoded;
  * every classification example carries `patient_id` (for patient-disjoint splits) and
    `filename` (the path relative to the upstream root, which also tells the original format);
  * nothing is dropped silently: each builder records, per split, the files it skipped and the
    ones it kept but flagged, by reason, in `builder.skipped[split]` / `builder.flagged[split]`
    (`SkipReportMixin`), and logs one summary per split (`SkipLog.log`);
  * layout errors name the path, what is missing, what the folder holds and the expected layout
    with where to download the data (`require_dir`, `layout_error`);
  * bad input never aborts a build: a file name that is not valid UTF-8 is skipped and named
    with `\\xNN` escapes (`list_dir`); an image with a side under `MIN_IMAGE_SIDE` px is
    skipped, one with a side over `MAX_IMAGE_SIDE` px is downscaled to fit and flagged
    (`image_or_skip`).
"""

from __future__ import annotations

import collections
import io
from typing import Protocol

import tensorflow_datasets as tfds
from absl import logging
from etils import epath
from PIL import Image

from jaxcxr.data import images

# Maximum number of file names spelled out per reason in a summary.
MAX_NAMES_LOGGED = 50

# Image size rule (`image_or_skip`). Under 16 px a side holds no radiograph (1x1 placeholders,
# icons) and would be upsampled into a flat, labelled training image: skipped. (Not higher: the
# builders' dummy data are 24-36 px images, so that their tests stay fast.) Over 8192 px a side
# (real chest films are at most ~4300 px; 8192^2 is 67 MP) the stored image is downscaled, aspect
# kept, so that its longer side is 8192 px: training resizes to a few hundred pixels anyway, and
# one 12,000 px image would cost ~150 MB of decoding per read.
MIN_IMAGE_SIDE = 16
MAX_IMAGE_SIDE = 8192
SKIP_CORRUPT_IMAGE = "unreadable/corrupt image"
SKIP_TOO_SMALL = f"image too small (a side under {MIN_IMAGE_SIDE} px)"
FLAG_DOWNSCALED = f"huge image (a side over {MAX_IMAGE_SIDE} px) downscaled to {MAX_IMAGE_SIDE} px"
# TFDS stores the example key and `filename` as UTF-8 text: a name that is not (undecodable bytes
# from the file system, as Python's surrogate escapes) cannot be stored and used to abort the
# whole build with a UnicodeEncodeError naming no file. Skipping it (rather than storing an
# invented name) keeps `filename` equal to the file on disk.
SKIP_NAME_NOT_UTF8 = "file name not valid UTF-8 (rename the file to include it)"


class Log(Protocol):
  """What builders record skips and flags into: a `SkipLog`, or a view of one."""

  def skip(self, reason: str, name: str) -> None: ...

  def flag(self, reason: str, name: str) -> None: ...


def printable(name: str) -> str:
  """`name` with the bytes that are not UTF-8 (surrogate escapes) spelled `\\xNN`."""
  return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_utf8(name: str) -> bool:
  try:
    name.encode("utf-8")
  except UnicodeEncodeError:
    return False
  return True


def list_dir(folder: epath.Path, log: Log, rel_dir: str) -> list[epath.Path]:
  """The entries of `folder` sorted by name, less those whose name is not valid UTF-8.

  Those are skipped into `log` under `SKIP_NAME_NOT_UTF8`, as `rel_dir/<name>` with `\\xNN`
  escapes (see `printable`).
  """
  kept = []
  for path in sorted(epath.Path(folder).iterdir(), key=lambda p: p.name):
    if is_utf8(path.name):
      kept.append(path)
    else:
      log.skip(SKIP_NAME_NOT_UTF8, f"{rel_dir}/{path.name}" if rel_dir else path.name)
  return kept


def manual_dir(dl_manager: tfds.download.DownloadManager, instructions: str) -> epath.Path:
  """`dl_manager.manual_dir`, or a FileNotFoundError naming the path and how to get the data.

  tfds raises AssertionError for a missing or empty manual dir; users should see the path and the
  download instructions as a FileNotFoundError instead.
  """
  try:
    return epath.Path(dl_manager.manual_dir)
  except AssertionError as e:
    first_line = str(e).splitlines()[0] if str(e) else "Manual directory missing."
    raise FileNotFoundError(f"{first_line}\n{instructions}") from e


def listing(path: epath.Path) -> list[str]:
  """The first 20 names in folder `path`, sorted (for error messages); [] if it is no folder."""
  return sorted(p.name for p in path.iterdir())[:20] if path.is_dir() else []


def require_dir(manual_dir: epath.PathLike, help_text: str) -> epath.Path:
  """`manual_dir` as a path, or a FileNotFoundError naming it, followed by `help_text`.

  Args:
    manual_dir: the folder that should hold the data.
    help_text: the expected layout and where to download the data.
  """
  manual_dir = epath.Path(manual_dir)
  if not manual_dir.is_dir():
    raise FileNotFoundError(f"Manual directory {manual_dir} does not exist. {help_text}")
  return manual_dir


def layout_error(path: epath.Path, what: str, help_text: str) -> FileNotFoundError:
  """The error for a folder that exists but does not hold the expected layout.

  Args:
    path: the folder searched.
    what: what it lacks, e.g. `the chest_xray layout: no train/NORMAL, ... in it`.
    help_text: the expected layout and where to download the data.
  """
  return FileNotFoundError(f"{path} does not hold {what} (found: {listing(path)}). {help_text}")


def grayscale_image_bytes(
  data: bytes, encoding: str = "jpeg", max_side: int | None = None
) -> bytes:
  """Single-channel image bytes; raises if PIL cannot fully decode `data`.

  The one grey-level rule of `jaxcxr.data.images` (16-bit scaled so that 0 stays black and the
  maximum is 255, transparency composited onto black), so that the stored image is what the
  pipeline and the audit would decode from the original file.

  Args:
    data: the file's bytes (JPEG, PNG, ...; any PIL mode).
    encoding: `jpeg` (quality 95) or `png`, the encoding of the dataset's image feature. Files
      that are already grey, in that format and within `max_side` are returned unchanged.
    max_side: if set, an image with a longer side is downscaled (Lanczos, aspect kept) to fit
      in `max_side` x `max_side`. Builders go through `image_or_skip`, which records that.
  """
  return images.grey_image_bytes(data, encoding, max_side)


def image_or_skip(
  log: Log,
  name: str,
  data: bytes | epath.Path,
  encoding: str = "jpeg",
  corrupt_reason: str = SKIP_CORRUPT_IMAGE,
) -> bytes | None:
  """`grayscale_image_bytes` under the image size rule; None (skipped, recorded) if unusable.

  Args:
    log: where skips and flags go.
    name: the file as the summary names it (its path relative to the upstream root).
    data: the file's bytes, or its path (read here, so that an unreadable file is skipped too).
    encoding: the dataset's image encoding, as in `grayscale_image_bytes`.
    corrupt_reason: the builder's reason for a file PIL cannot decode.

  Returns:
    The single-channel image bytes (downscaled and flagged under `FLAG_DOWNSCALED` if a side is
    over `MAX_IMAGE_SIDE`), or None: skipped under `SKIP_TOO_SMALL` (a side under
    `MIN_IMAGE_SIDE`) or `corrupt_reason`.
  """
  try:
    if not isinstance(data, bytes):
      data = epath.Path(data).read_bytes()
    with Image.open(io.BytesIO(data)) as img:
      size = img.size  # the header only: cheap, before a full decode
    if min(size) < MIN_IMAGE_SIDE:
      log.skip(SKIP_TOO_SMALL, name)
      return None
    image = grayscale_image_bytes(data, encoding, max_side=MAX_IMAGE_SIDE)
  except Exception:  # pylint: disable=broad-except  # PIL raises many types on bad data.
    log.skip(corrupt_reason, name)
    return None
  if max(size) > MAX_IMAGE_SIDE:
    log.flag(FLAG_DOWNSCALED, name)
  return image


class SkipLog:
  """Per-split record of files a builder left out (`skipped`) or kept with a doubt (`flagged`)."""

  def __init__(self, dataset: str, split: str):
    self.dataset, self.split = dataset, split
    self.skipped: dict[str, list[str]] = collections.defaultdict(list)
    self.flagged: dict[str, list[str]] = collections.defaultdict(list)

  def skip(self, reason: str, name: str) -> None:
    self.skipped[reason].append(printable(name))  # logging and JSON need valid text

  def flag(self, reason: str, name: str) -> None:
    self.flagged[reason].append(printable(name))

  def log(self) -> None:
    """Logs the counts and (up to MAX_NAMES_LOGGED) names per reason, once per split."""
    if not self.skipped and not self.flagged:
      logging.info("%s %s: no file skipped.", self.dataset, self.split)
      return
    lines = []
    for reason, names in [*self.skipped.items(), *self.flagged.items()]:
      shown = ", ".join(names[:MAX_NAMES_LOGGED])
      more = (
        f", ... (+{len(names) - MAX_NAMES_LOGGED} more)" if len(names) > MAX_NAMES_LOGGED else ""
      )
      lines.append(f"  {reason}: {len(names)}: {shown}{more}")
    logging.warning(
      "%s %s split: %d file(s) skipped, %d flagged:\n%s",
      self.dataset,
      self.split,
      sum(map(len, self.skipped.values())),
      sum(map(len, self.flagged.values())),
      "\n".join(lines),
    )


class SkipReportMixin:
  """Gives a builder `skipped[split]` / `flagged[split]` ({reason: [names]}) and `skip_log(split)`.

  Use as `class Builder(common.SkipReportMixin, tfds.core.GeneratorBasedBuilder)`. A plain mixin,
  not a DatasetBuilder: TFDS registers only the builder itself, under its own name.
  """

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    # {split: {reason: [names]}}, filled while the split is generated, for the summary log and for
    # tests: files left out of the split, and files kept but worth a look.
    self.skipped: dict[str, dict[str, list[str]]] = {}
    self.flagged: dict[str, dict[str, list[str]]] = {}

  def skip_log(self, split: str, dataset: str | None = None) -> SkipLog:
    """A new SkipLog for `split`, whose records `skipped[split]` / `flagged[split]` show.

    Args:
      split: the split name.
      dataset: the name its summary log line starts with; the builder's name by default.
    """
    log = SkipLog(dataset or self.name, split)
    self.skipped[split], self.flagged[split] = log.skipped, log.flagged
    return log
