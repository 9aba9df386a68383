"""Multi-label training (ChestX-ray14, CheXNet's source task): targets, loss, metrics, a run."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from sklearn import metrics as skm

from jaxcxr import config_lib, losses, metrics, train
from jaxcxr.data import classes, splits, tfds_access
from tests.conftest import REPO, require_shared

NIH_DUMMY = REPO / "tfds_builders" / "nih_chestxray14" / "dummy_data" / "box"


def test_multilabel_loss_is_per_finding_bce_with_weights_and_smoothing():
  cfg = config_lib.base_config().loss
  cfg.name = "sigmoid_xent"
  logits = jax.random.normal(jax.random.key(0), (5, 3))
  y = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0], [1, 0, 0]], np.float32)
  bce = -(y * np.log(jax.nn.sigmoid(logits)) + (1 - y) * np.log(1 - jax.nn.sigmoid(logits)))
  np.testing.assert_allclose(losses.make_loss(cfg, 3)(logits, y), bce.sum(-1), rtol=1e-5)
  w = np.array([1.0, 2.0, 0.5], np.float32)
  np.testing.assert_allclose(losses.make_loss(cfg, 3, w)(logits, y), (bce * w).sum(-1), rtol=1e-5)
  cfg.label_smoothing = 0.2
  t = y * 0.8 + 0.1
  smooth = -(t * np.log(jax.nn.sigmoid(logits)) + (1 - t) * np.log(1 - jax.nn.sigmoid(logits)))
  np.testing.assert_allclose(losses.make_loss(cfg, 3)(logits, y), smooth.sum(-1), rtol=1e-5)
  cfg.name = "softmax_xent"
  with pytest.raises(ValueError, match="sigmoid_xent"):
    losses.make_loss(cfg, 3)(logits, y)


def test_multilabel_metrics_match_sklearn_per_finding():
  rng = np.random.default_rng(0)
  y = (rng.random((50, 4)) < 0.3).astype(np.int64)
  y[:, 3] = 0  # A finding absent from the split: its AUROC is undefined, not 0.5 or NaN.
  p = np.clip(y * 0.4 + rng.random((50, 4)) * 0.6, 0, 1)
  m = metrics.classification_metrics(y.astype(np.float32), p, ["a", "b", "c", "d"])
  assert m["multi_label"] and m["num_examples"] == 50
  for k, name in enumerate("abc"):
    assert m["per_class"][name]["auroc"] == pytest.approx(skm.roc_auc_score(y[:, k], p[:, k]))
    assert m["per_class"][name]["average_precision"] == pytest.approx(
      skm.average_precision_score(y[:, k], p[:, k])
    )
  assert m["per_class"]["d"]["auroc"] is None and "'d'" in m["auroc_note"]
  assert m["auroc_macro"] == pytest.approx(
    np.mean([skm.roc_auc_score(y[:, k], p[:, k]) for k in range(3)])
  )
  assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p >= 0.5))
  assert np.array(m["confusion_matrix"]).shape == (4, 2, 2)


def test_strata_are_the_rarest_finding():
  t = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 0, 1]], np.uint8)  # Frequencies 3, 1, 1.
  assert classes.multilabel_strata(t).tolist() == [1, 0, 3, 2]


@pytest.fixture(scope="module")
def nih_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("tfds_nih"))
  tfds_access.prepare(tfds_access.get_builder("nih_chestxray14", out), str(NIH_DUMMY))
  return out


def _tiny(data_dir, manual_dir=None):
  from configs import nih_chestxray14  # pylint: disable=g-import-not-at-top

  c = nih_chestxray14.get_config("tiny")
  c.input.data_dir = data_dir
  c.input.manual_dir = manual_dir
  c.input.num_threads = 2
  c.num_epochs, c.total_steps = 0.0, 3
  c.eval_every_steps, c.checkpoint_every_steps, c.progress_bar = 0, 3, False
  return c


def test_views_give_multi_hot_targets_without_no_finding(nih_dir):
  c = _tiny(nih_dir)
  c.input.splits.method = "builder"
  data = splits.load(c.input)
  assert data.multi_label and len(data.class_names) == 14
  builder = tfds_access.get_builder("nih_chestxray14", nih_dir)
  raw = builder.as_data_source("train")
  names = list(builder.info.features["labels"].feature.names)
  view = data.split("train")
  for i in range(len(view)):
    ex = view[i]
    expected = {names[k] for k in raw[i]["labels"]} - {"no_finding"}
    got = {data.class_names[k] for k in np.flatnonzero(ex["label"])}
    assert ex["label"].dtype == np.float32 and got == expected
  dropped = data.report["left_out_findings_by_class_map"]
  assert sum(dropped.values()) >= 1 and all(k.endswith(":no_finding") for k in dropped)
  c.input.balance = "oversample"
  with pytest.raises(ValueError, match="multi-label"):
    splits.load(c.input)


def test_nih_recipe_trains_a_few_steps_on_dummy_data(nih_dir, tmp_path):
  c = _tiny(nih_dir)
  c.input.splits.method = "fractions"
  with pytest.raises(ValueError, match="Cannot make 5 stratified folds"):
    train.setup(c)  # 13 images over 15 strata: too few to stratify.
  c.input.splits.method = "builder"  # The official train_val / test lists of the dummy data.
  c.val_split, c.eval_splits = "", ("test",)
  results = train.train_and_evaluate(c, str(tmp_path))
  test = results["test"]
  assert test["multi_label"] and test["num_examples"] == len(splits.load(c.input).split("test"))
  assert set(test["per_class"]) == set(c.input.class_names)
  c.loss.name = "softmax_xent"
  with pytest.raises(ValueError, match="sigmoid_xent"):
    train.setup(c)


@pytest.mark.slow
def test_nih_recipe_on_the_real_sample(tmp_path):
  manual_dir = require_shared("nih-chestxray14")
  c = _tiny(str(tmp_path / "tfds"), str(manual_dir))
  results = train.train_and_evaluate(c, str(tmp_path / "run"))
  data = splits.load(c.input)
  assert sum(len(v) for v in data.splits.values()) == 471
  test = results["test"]
  assert test["num_examples"] == len(data.split("test"))
  # Every finding of the sample has positives in test (stratified on the rarest finding).
  assert test["auroc_macro"] is not None and "auroc_note" not in test, test.get("auroc_note")
