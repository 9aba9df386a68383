"""benchmarks/transfer_vs_scratch.py: the two conditions differ only in their initial weights, and
the paired difference over seeds gets a Student-t interval (no training here)."""

from __future__ import annotations

import argparse
import math

import pytest
from scipy import stats

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def tvs():
  return load_benchmark("transfer_vs_scratch")


def _args(**kw):
  base = dict(manual_dir="/m", data_dir="/d", image_size=96, batch_size=16, steps=60)
  return argparse.Namespace(**{**base, **kw})


def test_conditions_share_the_budget_and_differ_only_in_model_init(tvs):
  a = _args()
  transfer, scratch = (tvs.make_config(c, 1, a).to_dict() for c in ("transfer", "scratch"))
  assert transfer.pop("model_init") == "tf_efficientnet_lite0.pypi_in1k"
  assert scratch.pop("model_init") == ""
  assert transfer == scratch  # steps, batch, size, optimizer, schedule, augment, normalisation
  assert transfer["total_steps"] == 60 and transfer["input"]["image_size"] == 96
  assert transfer["input"]["mode"] == "custom"  # the pretrained weights' stats, for both
  assert transfer["select"] == "last"  # the recipe's choice; nothing read from test
  with pytest.raises(ValueError, match="condition"):
    tvs.make_config("imagenet", 0, a)


def test_paired_difference_and_t_interval(tvs):
  def row(cond, seed, acc, auc):
    return {"condition": cond, "seed": seed, "accuracy": acc, "auroc_macro": auc}

  rows = [
    row("transfer", 0, 0.90, 0.95), row("scratch", 0, 0.80, 0.90),
    row("transfer", 1, 0.86, 0.97), row("scratch", 1, 0.82, 0.91),
    row("transfer", 2, 0.88, 0.96), row("scratch", 2, 0.84, 0.92),
  ]  # fmt: skip
  s = tvs.summarise(rows)
  d = [0.10, 0.04, 0.04]
  mean, sd = sum(d) / 3, math.sqrt(sum((x - sum(d) / 3) ** 2 for x in d) / 2)
  half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
  got = s["difference"]["accuracy"]
  assert got["n_pairs"] == 3 and got["mean"] == pytest.approx(mean)
  assert got["ci95"] == pytest.approx([mean - half, mean + half])
  assert s["conditions"]["scratch"]["accuracy"]["mean"] == pytest.approx(0.82)
  assert s["conditions"]["scratch"]["accuracy"]["sd"] == pytest.approx(0.02)
  # An unpaired run (seed 3 of one condition only) is left out of the difference.
  s2 = tvs.summarise(rows + [row("transfer", 3, 0.5, 0.5)])
  assert s2["difference"]["accuracy"]["n_pairs"] == 3
  assert s2["conditions"]["transfer"]["n_seeds"] == 4
