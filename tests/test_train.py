"""End-to-end training: reports, logs, resumption (exact), the CLI and its errors."""

import glob
import json
import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxcxr import train
from tests.conftest import REPO, tiny_config

REPORT_KEYS = {
  "accuracy",
  "auroc_macro",
  "top2_accuracy",
  "per_class",
  "confusion_matrix",
  "class_names",
  "num_examples",
}


def _final_state(workdir):
  ckpts = os.path.join(workdir, "checkpoints")
  step = max(int(d) for d in os.listdir(ckpts) if d.isdigit())
  return step, ocp.StandardCheckpointer().restore(os.path.join(ckpts, str(step), "state"))


def test_train_and_evaluate_writes_reports_logs_and_checkpoints(tfds_dir, tmp_path):
  c = tiny_config(tfds_dir, eval_every_steps=3, eval_at_start=True)
  results = train.train_and_evaluate(c, str(tmp_path))
  assert set(results) == {"val", "test"}
  # eval_at_start: the initial state's reports beside the final ones, its own predictions.
  for split in ("val", "test"):
    initial = json.load(open(tmp_path / "eval" / f"{split}@0.json"))
    assert initial["selected"] == {"select": "initial", "step": 0}
    assert initial["num_examples"] == 8
    p0 = np.load(tmp_path / "eval" / f"{split}@0_predictions.npz")["probs"]
    p6 = np.load(tmp_path / "eval" / f"{split}_predictions.npz")["probs"]
    assert p0.shape == p6.shape and not np.allclose(p0, p6)
  initial_mtime = os.path.getmtime(tmp_path / "eval" / "val@0.json")
  for split in ("val", "test"):
    with open(tmp_path / "eval" / f"{split}.json") as f:
      report = json.load(f)
    assert REPORT_KEYS <= set(report)
    assert report["num_examples"] == 8  # Every example exactly once, padding removed.
    assert report["class_names"] == ["normal", "pneumonia", "covid19"]
    assert np.sum(report["confusion_matrix"]) == 8
    # config.report: patient-bootstrap intervals around the point values, and calibration.
    lo, hi = report["accuracy_ci95"]
    assert lo <= report["accuracy"] <= hi
    assert report["bootstrap"]["n_resamples"] == 2000 and report["bootstrap"]["n_images"] == 8
    ece = report["calibration"]["ece"]
    assert 0 <= ece["ece"] <= 1 and "15 bins" in ece["binning"]
  history = [json.loads(line) for line in open(tmp_path / "eval" / "history.jsonl")]
  assert [h["step"] for h in history] == [3, 6]
  assert json.load(open(tmp_path / "config.json"))["model_name"] == "resnet_tiny"
  assert glob.glob(str(tmp_path / "tb" / "events.out.tfevents.*"))
  step, state = _final_state(tmp_path)
  assert step == 6 and int(state["step"]) == 6
  # Re-running a finished run trains no further and reproduces the same evaluation.
  again = train.train_and_evaluate(c, str(tmp_path))
  assert again["test"] == results["test"]
  assert os.path.getmtime(tmp_path / "eval" / "val@0.json") == initial_mtime  # Not on resume.


@pytest.mark.slow
def test_stopped_mid_epoch_and_resumed_equals_uninterrupted(tfds_dir, tmp_path):
  # 24 training images, batch 8: 3 steps per epoch; stopping after step 4 is mid-epoch 2.
  c = tiny_config(tfds_dir, total_steps=7, checkpoint_every_steps=3, eval_splits=("test",))
  c.augment.flip = 0.5  # Augmentation draws must resume too.
  c.model.drop_rate = 0.2  # And dropout keys.
  full = tmp_path / "full"
  train.train_and_evaluate(c, str(full))

  parted = tmp_path / "parted"
  c_halt = tiny_config(
    tfds_dir, total_steps=7, checkpoint_every_steps=3, eval_splits=("test",), halt_after_steps=4
  )
  c_halt.augment.flip, c_halt.model.drop_rate = 0.5, 0.2
  assert train.train_and_evaluate(c_halt, str(parted)) == {}  # Halted: no final evaluation.
  assert _final_state(parted)[0] == 4
  train.train_and_evaluate(c, str(parted))  # The same command again resumes from step 4.

  (s_full, a), (s_part, b) = _final_state(full), _final_state(parted)
  assert s_full == s_part == 7
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)
  assert json.load(open(full / "eval" / "test.json")) == json.load(
    open(parted / "eval" / "test.json")
  )


def _cli(*args, timeout=600, env=None):
  return subprocess.run(
    [sys.executable, "-m", "jaxcxr.train", *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=timeout,
    env=env,
  )


def test_cli_rejects_a_misspelt_key_with_suggestions(tmp_path):
  proc = _cli(
    "--config", "configs/quickstart.py", "--workdir", str(tmp_path), "--config.input.batch_sise=16"
  )
  assert proc.returncode != 0
  assert "batch_sise" in proc.stderr and "batch_size" in proc.stderr


@pytest.mark.slow
def test_cli_trains_with_overrides_and_config_args(tfds_dir, tmp_path):
  proc = _cli(
    "--config",
    "configs/chest_xray.py:tiny",
    "--workdir",
    str(tmp_path),
    "--config.input.data=synthetic_cxr/tiny",
    f"--config.input.data_dir={tfds_dir}",
    "--config.input.batch_size=8",
    "--config.input.image_size=32",
    "--config.num_epochs=0",
    "--config.total_steps=2",
    "--config.eval_splits=('test',)",
    "--config.progress_bar=False",
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "[test] n=8" in proc.stdout
  cfg = json.load(open(tmp_path / "config.json"))
  assert cfg["model_name"] == "resnet_tiny" and cfg["input"]["batch_size"] == 8


@pytest.mark.slow
def test_trains_on_the_real_kermany_sample(tmp_path):
  from configs import chest_xray  # pylint: disable=g-import-not-at-top
  from tests.conftest import require_shared  # pylint: disable=g-import-not-at-top

  manual_dir = require_shared("chest_xray")
  c = chest_xray.get_config("tiny")
  c.input.manual_dir = str(manual_dir)
  c.input.data_dir = str(tmp_path / "tfds")
  c.input.image_size, c.input.batch_size = 32, 8
  c.num_epochs, c.total_steps = 0.0, 3
  c.eval_every_steps, c.progress_bar, c.eval_splits = 0, False, ("test",)
  results = train.train_and_evaluate(c, str(tmp_path / "run"))
  n_test = len(glob.glob(str(manual_dir / "test" / "*" / "*.jpeg")))
  assert results["test"]["num_examples"] == n_test  # The official test split, whole.
  assert results["test"]["class_names"] == ["normal", "pneumonia"]


def test_evaluate_restores_the_run_and_reproduces_its_reports(tfds_dir, tmp_path):
  from jaxcxr import evaluate  # pylint: disable=g-import-not-at-top

  c = tiny_config(tfds_dir, total_steps=2, checkpoint_every_steps=1, keep_checkpoints=5)
  results = train.train_and_evaluate(c, str(tmp_path))
  again = evaluate.evaluate(c, str(tmp_path), splits=("test",))
  assert again["test"] == results["test"]
  older = evaluate.evaluate(c, str(tmp_path), splits=("test",), step=1)
  assert (tmp_path / "eval" / "test@1.json").exists()
  assert older["test"]["num_examples"] == 8
  with pytest.raises(FileNotFoundError, match="No checkpoint"):
    evaluate.evaluate(c, str(tmp_path / "empty"))


@pytest.mark.slow
def test_quickstart_recipe_learns(tmp_path):
  """The README's first command, as is (≈45 s on 2 cores): the model must really learn."""
  from configs import quickstart  # pylint: disable=g-import-not-at-top

  c = quickstart.get_config()
  c.input.data_dir = str(tmp_path / "tfds")
  c.progress_bar = False
  results = train.train_and_evaluate(c, str(tmp_path / "run"))
  assert results["test"]["num_examples"] == 150
  # Chance is 0.5 (and accuracy 1/3); the recipe reaches ≈0.92 on CPU.
  assert results["test"]["auroc_macro"] > 0.8, results["test"]
  assert results["test"]["accuracy"] > 0.6, results["test"]
