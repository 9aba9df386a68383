"""Test helpers for the builders: build them, run the real `tfds build` CLI, fake images.

Also used by the `make_dummy_data.py` scripts (`fake_radiograph`).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
# The real data sample, outside the repository (read-only; never copied into it).
SHARED_DATA = pathlib.Path(os.environ.get("JAXCXR_SHARED_DATA", REPO.parent / "shared" / "data"))


def build(
  builder_cls: type[tfds.core.DatasetBuilder],
  manual_dir: pathlib.Path | None,
  data_dir: pathlib.Path,
  config: str | None = None,
  **builder_kwargs,
) -> tfds.core.DatasetBuilder:
  """Builds `builder_cls` as training reads it (array_record), without statistics; returns it.

  Args:
    builder_cls: e.g. `chest_xray_pneumonia_dataset_builder.Builder`.
    manual_dir: the manual dir (None for builders that need none).
    data_dir: where the dataset is written.
    config: the config name; the builder's default when None.
    **builder_kwargs: more arguments of `builder_cls`.
  """
  builder = builder_cls(config=config, data_dir=data_dir, **builder_kwargs)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir, compute_stats=tfds.download.ComputeStatsMode.SKIP
    ),
    file_format="array_record",
  )
  return builder


def run_tfds_build(
  builder_dir: str,
  data_dir: pathlib.Path,
  *,
  manual_dir: pathlib.Path | None = None,
  config: str | None = None,
  timeout: int = 600,
) -> subprocess.CompletedProcess:
  """Runs `tfds build <builder_dir> --file_format=array_record` with this Python; returns it.

  Args:
    builder_dir: e.g. `tfds_builders/covid_chestxray`, relative to the repository root.
    data_dir: where the dataset is written.
    manual_dir: the `--manual_dir`, if the builder needs one.
    config: the `--config` name, if any.
  """
  cmd = [
    sys.executable, "-m", "tensorflow_datasets.scripts.cli.main", "build", builder_dir,
    "--file_format=array_record", f"--data_dir={data_dir}", "--noforce_checksums_validation",
  ]  # fmt: skip
  if manual_dir is not None:
    cmd.append(f"--manual_dir={manual_dir}")
  if config is not None:
    cmd.append(f"--config={config}")
  return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def array_record_files(data_dir: pathlib.Path, name: str) -> list[str]:
  """Names of the array_record shards written for `name` (`dataset/config/version`)."""
  out = pathlib.Path(data_dir) / name
  return sorted(p.name for p in out.iterdir() if ".array_record" in p.name)


def assert_random_access(source, count: int = 5) -> list[dict]:
  """Reads `count` examples of a data source at random indices, as grain does, and returns them.

  Checks that each image is a non-constant grey uint8 `(H, W, 1)` array larger than 16 px.
  """
  examples = []
  for i in np.random.default_rng(0).integers(0, len(source), count):
    ex = source[int(i)]
    image = ex["image"]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 1
    assert min(image.shape[:2]) > 16 and image.std() > 0
    examples.append(ex)
  return examples


def write_noise_image(path: pathlib.Path, shape: tuple[int, int] = (16, 20)) -> None:
  """Writes a grey uniform-noise image (format from the suffix), seeded by the file name length."""
  path.parent.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(len(path.name))
  Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), "L").save(path)


def fake_radiograph(rng: np.random.Generator, height: int, width: int | None = None) -> np.ndarray:
  """A vaguely radiograph-like uint8 (height, width) image: a bright middle band plus noise.

  For the `make_dummy_data.py` scripts: synthetic, no patient data. `width` defaults to `height`.
  """
  width = height if width is None else width
  y, x = np.mgrid[:height, :width]
  y, x = y / height, x / width
  base = 60 + 120 * np.exp(-(((x - 0.5) / 0.35) ** 2)) * (0.6 + 0.4 * y)
  return np.clip(base + rng.normal(0, 12, (height, width)), 0, 255).astype(np.uint8)
