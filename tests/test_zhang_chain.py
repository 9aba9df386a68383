"""benchmarks/zhang_chain.py: each run is the study's own config with only the stated CPU-sizing
changes, and the two initialisations of a target differ only in `model_init` (no training here)."""

from __future__ import annotations

import argparse

import pytest

from configs.studies import zhang2021
from tests.conftest import load_benchmark

# What the script may change in the study's configs (its docstring): backbone, normalisation,
# data location, size, batch, length, evaluation cadence and the report.
ALLOWED = {
  "model_name", "model_init", "num_epochs", "stages", "eval_every_steps",
  "checkpoint_every_steps", "progress_bar", "report", "schedule",
  "input.mode", "input.mean", "input.std", "input.data_dir", "input.image_size",
  "input.batch_size", "input.num_threads",
}  # fmt: skip


@pytest.fixture(scope="module")
def chain():
  return load_benchmark("zhang_chain")


def _args(tmp_path):
  return argparse.Namespace(
    workdir=str(tmp_path), data="/data", data_dir="/d", image_size=96, batch_size=16,
    source_epochs=10.0, stage_epochs=(1.0, 3.0), eval_every=25,
  )  # fmt: skip


def _flat(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict) and prefix == "" and k == "input":
      out.update(_flat(v, "input."))
    else:
      out[prefix + k] = v
  return out


RUNS = [
  ("source", "source"),
  ("4class_from_source", "4class,source=SRC"),
  ("3class_from_imagenet", "3class,source=imagenet,splits_from=SRC"),
]


@pytest.mark.parametrize("name,arg", RUNS)
def test_runs_are_the_study_config_with_only_the_stated_changes(chain, tmp_path, name, arg):
  a = _args(tmp_path)
  ours = _flat(chain.make_config(name, arg, a).to_dict())
  src = str(tmp_path / "source")
  study = _flat(zhang2021.get_config(f"{arg.replace('SRC', src)},data=/data").to_dict())
  changed = {k for k in ours if ours[k] != study.get(k)}
  assert changed <= ALLOWED, changed - ALLOWED
  assert ours["model_name"] == "tf_efficientnet_lite0"
  assert ours["input.resize"] == "letterbox" and ours["input.image_size"] == 96
  if name == "source":
    assert ours["num_epochs"] == 10.0
    assert ours["schedule"]["boundaries_epochs"] == (2.0, 4.0, 6.0, 8.0)
  else:
    assert [s["num_epochs"] for s in ours["stages"]] == [1.0, 3.0]
    assert ours["stages"][1]["freeze_groups"] == 3  # The recipe's partial unfreezing is kept.


def test_target_initialisations_differ_only_in_model_init(chain, tmp_path):
  a = _args(tmp_path)
  homologous = chain.make_config("4class_from_source", "4class,source=SRC", a).to_dict()
  imagenet = chain.make_config(
    "4class_from_imagenet", "4class,source=imagenet,splits_from=SRC", a
  ).to_dict()
  assert homologous.pop("model_init") == str(tmp_path / "source")
  assert imagenet.pop("model_init") == "tf_efficientnet_lite0.pypi_in1k"
  assert homologous == imagenet  # The same splits too: both pin the source run's patients.
  assert homologous["input"]["splits"]["pin_run"] == str(tmp_path / "source")
