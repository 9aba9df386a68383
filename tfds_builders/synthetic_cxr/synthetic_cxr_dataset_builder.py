"""TFDS builder for SYNTHETIC chest-radiograph caricatures (not medical data).

Procedurally generated grayscale images for the quick start, tutorials and tests: they download
nothing, build in seconds and are learnable by a small CNN. A dark background holds a bright torso
ellipse with two darker lung fields, a bright spine/mediastinum and faint rib arcs; per-class
"findings" are added on top:

* `normal`: clear lungs.
* `pneumonia`: one focal, lobar, blob-like opacity in one lung.
* `covid19`: several faint, bilateral, peripheral ground-glass opacities.

Opacity size and intensity, anatomy shift/scale, brightness, contrast and noise vary per image, so
the task is easy but not trivial. Nothing here resembles real pathology closely; never use it to
evaluate a medical model.

    tfds build tfds_builders/synthetic_cxr --file_format=array_record
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

LABEL_NAMES = ("normal", "pneumonia", "covid19")
_SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class SyntheticCxrConfig(tfds.core.BuilderConfig):
  """Sizes of the generated dataset.

  Attributes:
    num_train: Images in `train`.
    num_val: Images in `val`.
    num_test: Images in `test`.
    image_size: Height and width in pixels.
    seed: Base seed; split `i` uses `np.random.default_rng([seed, i])`.
  """

  num_train: int = 600
  num_val: int = 150
  num_test: int = 150
  image_size: int = 64
  seed: int = 0


def _ellipse(
  x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float, softness: float = 0.08
) -> np.ndarray:
  """Soft-edged ellipse mask in [0, 1] (soft edges avoid aliasing at 64 px)."""
  r = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
  return np.clip((1.0 - r) / softness + 0.5, 0.0, 1.0)


def _blob(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sigma: float) -> np.ndarray:
  return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))


def render_image(
  rng: np.random.Generator, label: int, anatomy: np.ndarray, size: int = 64
) -> np.ndarray:
  """Draws one synthetic radiograph.

  Args:
    rng: Random generator (consumed).
    label: Index into `LABEL_NAMES`.
    anatomy: Per-patient `[dx, dy, scale]`, so a patient's images look alike.
    size: Output height and width.

  Returns:
    A `(size, size)` uint8 image.
  """
  # Normalized coordinates in [-1, 1]; the patient's pose plus a small per-image jitter.
  dx, dy, scale = anatomy + rng.normal(0, [0.02, 0.02, 0.02])
  coords = (np.arange(size) + 0.5) / size * 2 - 1
  y, x = np.meshgrid(coords, coords, indexing="ij")
  x, y = (x - dx) / scale, (y - dy) / scale

  img = np.full((size, size), 15.0)
  img += 135 * _ellipse(x, y, 0.0, 0.1, 0.82, 0.95)  # Torso / soft tissue.
  lungs = np.zeros_like(img)
  lung_geometry = []
  for side in (-1, 1):
    cx, cy, rx, ry = side * 0.36, -0.05, 0.26 + rng.normal(0, 0.01), 0.55 + rng.normal(0, 0.02)
    lung_geometry.append((side, cx, cy, rx, ry))
    lungs = np.maximum(lungs, _ellipse(x, y, cx, cy, rx, ry, softness=0.25))
  img -= 85 * lungs  # Air in the lungs is dark.
  img += 70 * np.exp(-((x / 0.09) ** 2)) * (y > -0.75)  # Spine and mediastinum.
  img += 45 * _ellipse(x, y, 0.1, 0.35, 0.25, 0.22, softness=0.4) * lungs  # Heart shadow.
  # Faint rib arcs: bright bands curving down from the spine, visible over the lungs.
  for k in range(7):
    y0 = -0.6 + 0.17 * k + rng.normal(0, 0.01)
    arc = y - (y0 + 0.35 * x**2)
    img += 14 * np.exp(-((arc / 0.03) ** 2)) * lungs

  # Findings: opacities are bright (fluid/consolidation absorbs X-rays), only inside the lungs.
  opacity = np.zeros_like(img)
  if LABEL_NAMES[label] == "pneumonia":
    side, cx, cy, rx, ry = lung_geometry[rng.integers(2)]
    bx, by = cx + rng.uniform(-0.5, 0.5) * rx, cy + rng.uniform(-0.6, 0.6) * ry
    opacity += rng.uniform(35, 80) * _blob(x, y, bx, by, rng.uniform(0.09, 0.17))
  elif LABEL_NAMES[label] == "covid19":
    for side, cx, cy, rx, ry in lung_geometry:
      for _ in range(rng.integers(2, 4)):
        # Peripheral: towards the outer edge of each lung.
        bx = cx + side * rng.uniform(0.45, 0.8) * rx
        by = cy + rng.uniform(-0.7, 0.7) * ry
        opacity += rng.uniform(18, 38) * _blob(x, y, bx, by, rng.uniform(0.07, 0.13))
  img += opacity * lungs

  # Exposure: brightness, contrast, then quantum-like noise.
  img = (img - 80) * rng.uniform(0.85, 1.15) + 80 + rng.uniform(-15, 15)
  img += rng.normal(0, rng.uniform(5, 11), img.shape)
  return np.clip(img, 0, 255).astype(np.uint8)


def _png(image: np.ndarray) -> bytes:
  """PNG bytes: the Image feature then needs no TensorFlow to encode (unlike numpy input)."""
  buf = io.BytesIO()
  Image.fromarray(image, "L").save(buf, format="PNG")
  return buf.getvalue()


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for synthetic (procedural, non-medical) chest-radiograph caricatures."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
    SyntheticCxrConfig(name="default", description="600/150/150 images of 64x64."),
    SyntheticCxrConfig(
      name="tiny",
      description="24/8/8 images of 64x64, for unit tests.",
      num_train=24,
      num_val=8,
      num_test=8,
    ),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "default"

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(size, size, 1), encoding_format="png"),
          "label": tfds.features.ClassLabel(names=list(LABEL_NAMES)),
          "patient_id": tfds.features.Text(),
        }
      ),
      supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Nothing to download.
    cfg = self.builder_config
    sizes = {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}
    # Patient numbers never repeat across splits: each split starts after the previous one's
    # largest possible count (one image per patient).
    offsets = {"train": 0, "val": cfg.num_train, "test": cfg.num_train + cfg.num_val}
    return {
      split: self._generate_examples(i, sizes[split], offsets[split])
      for i, split in enumerate(_SPLITS)
    }

  def _generate_examples(
    self, split_index: int, num_images: int, first_patient: int
  ) -> Iterator[tuple[int, dict]]:
    """Yields `num_images` examples; 1-3 images per patient, one class per patient."""
    cfg = self.builder_config
    rng = np.random.default_rng([cfg.seed, split_index])
    index, patient = 0, first_patient
    while index < num_images:
      label = int(rng.integers(len(LABEL_NAMES)))
      anatomy = np.array([rng.normal(0, 0.05), rng.normal(0, 0.05), rng.uniform(0.9, 1.1)])
      for _ in range(min(int(rng.integers(1, 4)), num_images - index)):
        image = render_image(rng, label, anatomy, cfg.image_size)
        yield (
          index,
          {
            "image": _png(image),
            "label": label,
            "patient_id": f"synth-{patient:05d}",
          },
        )
        index += 1
      patient += 1
