"""The five study recipes (configs/studies/) in their CI-sized form, and the k-fold and sweep
drivers (jaxcxr.kfold, jaxcxr.sweep)."""

from __future__ import annotations

import importlib
import json
import os

import numpy as np
import pytest

from jaxcxr import kfold, sweep, train


def _tiny(name: str, tfds_dir: str, arg: str = "tiny"):
  c = importlib.import_module(f"configs.studies.{name}").get_config(arg)
  c.input.data_dir = tfds_dir
  c.progress_bar = False
  c.report.bootstrap = 0  # The intervals are tested elsewhere; keep these runs short.
  return c


@pytest.mark.parametrize("name", ["rachha2020", "alotaibi2020", "bassi2021", "naik2021"])
def test_study_tiny_trains_every_stage(name, tfds_dir, tmp_path):
  c = _tiny(name, tfds_dir)
  results = train.train_and_evaluate(c, str(tmp_path))
  history = [json.loads(line) for line in open(tmp_path / "eval" / "history.jsonl")]
  assert {h["stage"] for h in history} == set(range(len(c.stages)))
  test = results["test"]
  assert test["num_examples"] > 0
  for key in ("precision_macro", "recall_macro", "f1_macro"):
    assert 0.0 <= test[key] <= 1.0
  assert all("accuracy" in v for v in test["per_class"].values())
  # Naik et al.'s untrained-head baseline: the step-0 reports, only where the recipe asks.
  assert os.path.exists(tmp_path / "eval" / "test@0.json") == (name == "naik2021")


def test_zhang_chain_tiny_source_then_target(tfds_dir, tmp_path):
  src = tmp_path / "source"
  r = train.train_and_evaluate(_tiny("zhang2021", tfds_dir, "tiny,source"), str(src))
  assert r["test"]["selected"]["select"] == "best"
  c = _tiny("zhang2021", tfds_dir, f"tiny,4class,source={src}")
  assert c.model_init == str(src)
  r = train.train_and_evaluate(c, str(tmp_path / "target"))
  history = [json.loads(line) for line in open(tmp_path / "target" / "eval" / "history.jsonl")]
  assert {h["stage"] for h in history} == {0, 1}
  # The target keeps every source patient in the source's split (splits.pin_run).
  saved = [
    json.loads((tmp_path / w / "data_splits.json").read_text()) for w in ("source", "target")
  ]
  assert saved[1]["pinned_by_run"]["run"] == str(src)
  for split, ids in saved[0]["patients"].items():
    assert set(ids) <= set(saved[1]["patients"][split]), split
  with pytest.raises(ValueError, match="needs source="):
    _tiny("zhang2021", tfds_dir, "tiny,4class")


def test_study_args_are_checked_and_effnet_b7_is_rachha_with_b7():
  from configs import effnet_b7  # pylint: disable=g-import-not-at-top
  from configs.studies import alotaibi2020, rachha2020  # pylint: disable=g-import-not-at-top

  c = effnet_b7.get_config("")
  assert (c.model_name, c.model_init) == ("tf_efficientnet_b7", "tf_efficientnet_b7.ra_in1k")
  assert c.to_dict() == rachha2020.get_config("").to_dict()
  with pytest.raises(ValueError, match="fixes the backbone"):
    effnet_b7.get_config("backbone=resnet101")
  with pytest.raises(ValueError, match="backbone='resnet18' is not one of"):
    rachha2020.get_config("backbone=resnet18")
  c = alotaibi2020.get_config("backbone=inception_v3")
  assert (c.model_name, c.input.image_size, c.input.mode) == ("inception_v3_keras", 299, "auto")
  with pytest.raises(ValueError, match="unknown argument"):
    alotaibi2020.get_config("tiny,typo")
  from configs.studies import bassi2021  # pylint: disable=g-import-not-at-top

  assert bassi2021.get_config("").model_init == "densenet121.chexnet"
  assert bassi2021.get_config("backbone=chexnet_jrzech").model_init == "densenet121.chexnet_jrzech"
  with pytest.raises(ValueError, match="backbone='resnet' is not one of"):
    bassi2021.get_config("backbone=resnet")
  # The studies' heads on every backbone (EfficientNet and VGG included: test_heads.py).
  for b in rachha2020.BACKBONES:
    assert rachha2020.get_config(f"backbone={b}").model.head == "concat_pool"
  for b in alotaibi2020.BACKBONES:
    assert alotaibi2020.get_config(f"backbone={b}").model.head == "flatten_bn_dense"


def test_kfold_alotaibi_tiny_two_folds_summary_and_resume(tfds_dir, tmp_path, monkeypatch):
  c = _tiny("alotaibi2020", tfds_dir)
  summary = kfold.run_folds(c, str(tmp_path), num_folds=2)
  assert summary["finished"] == [0, 1] and not summary["missing"]
  reports = [
    {s: json.load(open(tmp_path / f"fold_{k}" / "eval" / f"{s}.json")) for s in ("val", "test")}
    for k in range(2)
  ]
  splits = [json.load(open(tmp_path / f"fold_{k}" / "data_splits.json")) for k in range(2)]
  assert splits[0] != splits[1]
  # Every image is tested in exactly one fold and validated in exactly one (Alotaibi's halves).
  n_all = 24 + 8 + 8  # synthetic_cxr/tiny
  assert sum(r["test"]["num_examples"] + r["val"]["num_examples"] for r in reports) == n_all
  test = summary["splits"]["test"]
  acc = [r["test"]["accuracy"] for r in reports]
  assert test["metrics"]["accuracy"]["folds"] == acc
  assert test["metrics"]["accuracy"]["mean"] == pytest.approx(np.mean(acc))
  assert test["metrics"]["accuracy"]["sd"] == pytest.approx(np.std(acc, ddof=1))
  assert "per_class.normal.f1" in test["metrics"] and "f1_macro" in test["metrics"]
  summed = np.sum([r["test"]["confusion_matrix"] for r in reports], axis=0)
  assert test["confusion_matrix_summed"] == summed.tolist()
  assert json.load(open(tmp_path / kfold.SUMMARY_JSON)) == json.loads(json.dumps(summary))
  assert "mean ± sd" in (tmp_path / kfold.SUMMARY_MD).read_text()

  # Finished folds are read, not re-run; an unfinished fold runs (here: one removed report).
  calls = []
  monkeypatch.setattr(train, "train_and_evaluate", lambda cfg, wd: calls.append(wd) or {})
  again = kfold.run_folds(c, str(tmp_path), num_folds=2)
  assert not calls and again["splits"]["test"]["metrics"] == test["metrics"]
  os.remove(tmp_path / "fold_1" / "eval" / "test.json")
  partial = kfold.run_folds(c, str(tmp_path), num_folds=2)
  assert calls == [str(tmp_path / "fold_1")] and partial["missing"] == [1]


def test_fold_config_and_summary_on_planted_reports():
  c = _tiny("alotaibi2020", "/unused")
  f = kfold.fold_config(c, 1, 3)
  assert (f.input.splits.method, f.input.splits.fold, f.input.splits.num_folds) == ("kfold", 1, 3)
  assert c.input.splits.fold == 0  # A copy.
  with pytest.raises(ValueError, match="out of range"):
    kfold.fold_config(c, 3, 3)
  rep = lambda a, cm: {"test": {"accuracy": a, "num_examples": 4, "confusion_matrix": cm,
                                "accuracy_ci95": [0, 1], "per_class": {"x": {"f1": a,
                                "support": 2}}, "calibration": {"ece": 0.1}}}  # fmt: skip
  s = kfold.summarise({0: rep(0.5, [[1, 1], [0, 2]]), 1: rep(1.0, [[2, 0], [0, 2]])}, ["test"])
  m = s["splits"]["test"]["metrics"]
  assert set(m) == {"accuracy", "per_class.x.f1", "calibration.ece"}
  assert m["accuracy"]["mean"] == 0.75
  assert m["accuracy"]["sd"] == pytest.approx(np.std([0.5, 1.0], ddof=1))
  assert s["splits"]["test"]["confusion_matrix_summed"] == [[3, 1], [0, 4]]


def test_sweep_naik_tiny_two_trials_ranked_on_validation(tfds_dir, tmp_path, monkeypatch):
  from configs.studies import naik2021  # pylint: disable=g-import-not-at-top

  c = _tiny("naik2021", tfds_dir)
  trials = sweep.trials_from(naik2021.get_hyper("tiny"), num_trials=2)
  summary = sweep.run_sweep(c, str(tmp_path), trials, config_file="configs/studies/naik2021.py")
  assert summary["monitor"] == "val_accuracy" and summary["mode"] == "max"
  assert summary["finished"] == [0, 1]
  for k in range(2):
    assert json.load(open(tmp_path / f"trial_{k}" / "overrides.json")) == trials[k]
    assert not (tmp_path / f"trial_{k}" / "eval" / "test.json").exists()  # No test figures.
  values = [r["monitor"] for r in summary["trials"]]
  assert values == sorted(values, reverse=True)
  for r in summary["trials"]:
    val = json.load(open(tmp_path / f"trial_{r['trial']}" / "eval" / "val.json"))
    assert r["monitor"] == val["accuracy"]
  assert "--config.optimizer.name=" in summary["best"]["command"]
  assert "| rank | trial |" in (tmp_path / sweep.SUMMARY_MD).read_text()
  calls = []
  monkeypatch.setattr(train, "train_and_evaluate", lambda cfg, wd: calls.append(wd) or {})
  assert sweep.run_sweep(c, str(tmp_path), trials)["trials"] == summary["trials"] and not calls
  with pytest.raises(ValueError, match="other overrides"):
    sweep.run_sweep(c, str(tmp_path), trials[::-1])
  with pytest.raises(ValueError, match="never selects on a test split"):
    sweep.run_sweep(c, str(tmp_path), trials, monitor="test_accuracy")


def test_sweep_spaces_and_overrides():
  space = {"optimizer.name": ["adam", "nadam"], "optimizer.lr": [0.1, 0.01, 0.001]}
  grid = sweep.trials_from(space, "grid")
  assert len(grid) == 6 and {"optimizer.name": "adam", "optimizer.lr": 0.1} in grid
  rand = sweep.trials_from(space, "random", num_trials=4, seed=0)
  assert len(rand) == 4 and rand == sweep.trials_from(space, "random", num_trials=4, seed=0)
  assert all(t in grid for t in rand)
  c = _tiny("naik2021", "/unused")
  o = sweep.apply_overrides(c, {"optimizer.lr": 0.5, "stages.1.early_stopping.patience": 7})
  assert o.optimizer.lr == 0.5 and o.stages[1].early_stopping.patience == 7
  assert c.optimizer.lr != 0.5  # A copy.
  with pytest.raises(ValueError, match="not in the config"):
    sweep.apply_overrides(c, {"optimizer.lrr": 0.5})


def test_study_recipes_use_their_augmentation_and_resize():
  from configs.studies import alotaibi2020, bassi2021, rachha2020, zhang2021
  from jaxcxr import config_lib  # pylint: disable=g-import-not-at-top
  from jaxcxr.data import augment  # pylint: disable=g-import-not-at-top

  a = alotaibi2020.get_config("").augment
  assert a.subset and augment.enabled_ops(a) == (
    "rotate", "zoom", "translate", "elastic", "gamma", "brightness_mult"
  )  # fmt: skip
  assert (a.zoom, a.translate, a.translate_min, a.elastic) == ((1.05, 1.1), 0.1, 0.03, (2.0, 0.1))
  assert augment.translate_max(bassi2021.get_config("").augment) == (40 / 224, 28 / 224)
  z = zhang2021.get_config("source").input
  assert (z.resize, z.pad_value) == ("letterbox", 128)
  r = rachha2020.get_config("").augment
  assert (r.vflip, r.warp) == (0.5, 0.2)
  for c in (alotaibi2020.get_config(""), bassi2021.get_config(""), rachha2020.get_config("")):
    config_lib.validate(c)


def test_bassi_lite0_form_steps_the_rates_down_block_by_block():
  from flax import nnx  # pylint: disable=g-import-not-at-top

  from configs.studies import bassi2021  # pylint: disable=g-import-not-at-top
  from jaxcxr import train  # pylint: disable=g-import-not-at-top
  from jaxcxr.training import stages as stages_lib  # pylint: disable=g-import-not-at-top

  c = bassi2021.get_config("radiography=/x,backbone=lite0,cpu")
  assert (c.model_name, c.model_init) == (
    "tf_efficientnet_lite0",
    "tf_efficientnet_lite0.pypi_in1k",
  )
  assert c.input.class_factors == () and c.input.image_size == 128
  assert bassi2021.get_config("radiography=/x").input.class_factors == (
    ("normal", 8), ("covid-19", 8),
  )  # fmt: skip
  model = nnx.eval_shape(lambda: train.create_model(c, 2, init=False))
  _, params, rest = nnx.split(model, nnx.Param, ...)
  discriminative = stages_lib.resolve(c, 10, params, rest)[1]
  by_prefix = {}  # Module (blocks/N for the MBConv stages) -> the multipliers of its parameters.
  for path, m in discriminative.lr_mult.items():
    parts = path.split("/")
    by_prefix.setdefault("/".join(parts[:2] if parts[0] == "blocks" else parts[:1]), set()).add(m)
  want = {"conv_stem": 1 / 243, "bn1": 1 / 243, "blocks/0": 1 / 81, "blocks/1": 1 / 81,
          "blocks/2": 1 / 27, "blocks/3": 1 / 27, "blocks/4": 1 / 9, "blocks/5": 1 / 9,
          "blocks/6": 1 / 3, "conv_head": 1 / 3, "bn2": 1 / 3, "classifier": 1.0}  # fmt: skip
  assert by_prefix == {k: {v} for k, v in want.items()}
