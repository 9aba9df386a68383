"""Test helpers for the builders: run the real `tfds build` CLI as users do."""

from __future__ import annotations

import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


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
