"""Dataset preparation as users run it: the `tfds build` CLI, and errors reaching `train`."""

import os
import shutil
import subprocess
import sys

import pytest

from jaxcxr import train
from tests.conftest import REPO, tiny_config

DUMMY = REPO / "tfds_builders" / "chest_xray_pneumonia" / "dummy_data"


@pytest.mark.slow
def test_tfds_build_cli_writes_array_record(tmp_path):
  # `tfds build` is a console script of tensorflow-datasets; run its module with this Python.
  proc = subprocess.run(
    [
      sys.executable, "-m", "tensorflow_datasets.scripts.cli.main", "build",
      "tfds_builders/chest_xray_pneumonia", f"--manual_dir={DUMMY}", "--config=3class",
      "--file_format=array_record", f"--data_dir={tmp_path}", "--noforce_checksums_validation",
    ],
    cwd=REPO, capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = tmp_path / "chest_xray_pneumonia" / "3class" / "1.0.0"
  records = sorted(p.name for p in out.iterdir() if ".array_record" in p.name)
  assert any(r.startswith("chest_xray_pneumonia-train.array_record") for r in records), records
  # The corrupt dummy image is reported, not built in.
  assert "unreadable/corrupt image: 1" in proc.stdout + proc.stderr


def test_training_on_a_missing_manual_dir_says_what_to_download(tmp_path):
  c = tiny_config(str(tmp_path / "tfds"))
  c.input.data = "chest_xray_pneumonia/2class"
  c.input.manual_dir = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError) as e:
    train.train_and_evaluate(c, str(tmp_path / "run"))
  msg = str(e.value)
  assert "nowhere" in msg and "train/NORMAL" in msg and "mendeley" in msg.lower()


def test_training_on_a_wrongly_laid_out_manual_dir(tmp_path):
  wrong = tmp_path / "download"
  shutil.copytree(DUMMY / "chest_xray" / "train", wrong / "images")
  c = tiny_config(str(tmp_path / "tfds"))
  c.input.data = "chest_xray_pneumonia/2class"
  c.input.manual_dir = str(wrong)
  with pytest.raises(FileNotFoundError, match="train/NORMAL") as e:
    train.train_and_evaluate(c, str(tmp_path / "run"))
  assert os.fspath(wrong) in str(e.value) and "images" in str(e.value)
