"""The segmentation task: bce_dice loss and Dice/IoU against hand-computed values, joint
augmentation keeps a planted asymmetric mask aligned, post-processing, and the tiny recipe trains.
"""

from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxcxr import config_lib, losses, masks
from jaxcxr.data import augment


def test_bce_dice_by_hand():
  # p = sigmoid(logits) = [0.5, 0.75, 0.25, 0.5]; mask [1, 1, 0, 0].
  logits = jnp.array([0.0, math.log(3), -math.log(3), 0.0]).reshape(1, 2, 2, 1)
  mask = jnp.array([1.0, 1.0, 0.0, 0.0]).reshape(1, 2, 2, 1)
  bce = (2 * math.log(2) + 2 * math.log(4 / 3)) / 4  # -log .5, -log .75, -log .75, -log .5
  dice = (2 * 1.25 + 1) / (2.0 + 2.0 + 1)  # smooth 1: sum(p t) = 1.25, sum p = sum t = 2
  assert dice == pytest.approx(0.7)
  np.testing.assert_allclose(losses.soft_dice(jax.nn.sigmoid(logits), mask), [[0.7]], rtol=1e-6)
  cfg = ml_collections.ConfigDict({"name": "bce_dice", "dice_weight": 1.0})
  got = losses.make_loss(cfg, 1)(logits, mask)
  np.testing.assert_allclose(got, [bce + (1 - dice)], rtol=1e-6)
  cfg.dice_weight = 0.5
  np.testing.assert_allclose(
    losses.make_loss(cfg, 1)(logits, mask), [bce + 0.5 * (1 - dice)], rtol=1e-6
  )


def test_dice_and_iou_by_hand():
  pred = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]).reshape(4, 2, 2)
  target = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]).reshape(4, 2, 2)
  dice, iou = masks.dice_iou(pred, target)
  # |A n B| = 1, |A| + |B| = 4, |A u B| = 3; two empty masks agree; perfect; all missed.
  np.testing.assert_allclose(dice, [0.5, 1.0, 1.0, 0.0])
  np.testing.assert_allclose(iou, [1 / 3, 1.0, 1.0, 0.0])


def _planted(size: int = 32) -> np.ndarray:
  """An asymmetric 0/1 mask: an L in the top-left quadrant and a bar at the right edge."""
  m = np.zeros((size, size, 1), np.float32)
  m[4:16, 4:8] = 1
  m[12:16, 4:14] = 1
  m[6:26, 26:29] = 1
  return m


def _geometry_cfg(**overrides) -> ml_collections.ConfigDict:
  cfg = config_lib.base_config().augment
  cfg.rotate_deg, cfg.max_zoom, cfg.translate, cfg.flip, cfg.p_affine = 20.0, 1.3, 0.1, 0.5, 1.0
  for k, v in overrides.items():
    cfg[k] = v
  return cfg


def test_joint_augmentation_keeps_a_planted_mask_aligned():
  m = np.stack([_planted()] * 8)
  images = jnp.asarray(m)  # The image is the mask itself, so alignment can be read exactly.
  key = jax.random.key(0)
  out_images, out_masks = augment.augment_pair(key, images, jnp.asarray(m), _geometry_cfg())
  out_images, out_masks = np.asarray(out_images), np.asarray(out_masks)
  assert set(np.unique(out_masks)) <= {0.0, 1.0}
  np.testing.assert_array_equal(out_images >= 0.5, out_masks > 0)
  # The draw moved the masks (so the check above could fail), differently per example, and
  # some were flipped: the mirrored L is where no unflipped one lies.
  moved = [(out_masks[i] != m[i]).mean() for i in range(8)]
  assert min(moved) > 0.01 and len({round(x, 4) for x in moved}) > 1
  # The image path is exactly `augment`'s with the same key.
  np.testing.assert_array_equal(
    np.asarray(augment.augment(key, images, _geometry_cfg())), out_images
  )


def test_vertical_flip_flips_the_mask_with_the_image():
  m = np.stack([_planted()] * 8)
  cfg = config_lib.base_config().augment
  cfg.vflip = 0.5  # The only op: each example is flipped upside down or left as it is.
  out_images, out_masks = augment.augment_pair(
    jax.random.key(3), jnp.asarray(m), jnp.asarray(m), cfg
  )
  out_images, out_masks = np.asarray(out_images), np.asarray(out_masks)
  np.testing.assert_array_equal(out_images >= 0.5, out_masks > 0)
  flipped = [bool((out_masks[i] == m[i, ::-1]).all()) for i in range(8)]
  assert any(flipped) and not all(flipped)  # Both outcomes drawn: the check above can fail.


def test_lighting_changes_the_image_only():
  m = np.stack([_planted()] * 4)
  images = jnp.asarray(0.2 + 0.6 * m)
  cfg = config_lib.base_config().augment
  cfg.brightness, cfg.contrast, cfg.p_lighting = 0.3, 0.3, 1.0
  out_images, out_masks = augment.augment_pair(jax.random.key(1), images, jnp.asarray(m), cfg)
  np.testing.assert_array_equal(np.asarray(out_masks), m)
  assert not np.allclose(np.asarray(out_images), np.asarray(images))


def test_postprocess_keeps_two_largest_and_fills_holes():
  m = np.zeros((40, 40), np.uint8)
  m[5:35, 3:15] = 1  # left lung, 360 px
  m[5:35, 22:36] = 1  # right lung, 420 px
  m[15:18, 8:11] = 0  # a hole
  m[1:3, 18:20] = 1  # a speck between them
  out, fell = masks.postprocess(m)
  assert not fell
  want = np.zeros_like(m)
  want[5:35, 3:15] = 1
  want[5:35, 22:36] = 1
  np.testing.assert_array_equal(out, want)


def test_postprocess_falls_back_to_the_whole_image_on_an_implausible_area():
  m = np.zeros((40, 40), np.uint8)
  m[10:13, 10:13] = 1  # 9 px of 1600: far below 5% of the image
  out, fell = masks.postprocess(m)
  assert fell and out.all()
  full, fell_full = masks.postprocess(np.ones((40, 40), np.uint8))  # 100% > 80%
  assert fell_full and full.all()
  batch, flags = masks.postprocess_batch(np.stack([m, np.ones_like(m)])[..., None])
  assert batch.shape == (2, 40, 40, 1) and flags.tolist() == [True, True]


def test_overlay_grid_draws_both_outlines():
  img = np.full((2, 20, 20), 100, np.uint8)
  ref = np.zeros((2, 20, 20), np.uint8)
  ref[:, 5:15, 5:15] = 1
  pred = np.roll(ref, 3, axis=2)
  grid = masks.overlay_grid(img, pred, ref, columns=2)
  assert grid.shape == (22, 44, 3)
  tile = grid[:20, :20]
  assert (tile[5, 5] == (255, 0, 0)).all() and (tile[5, 17] == (0, 255, 0)).all()
  assert (tile[10, 10] == 100).all()  # Inside both: the radiograph shows through.


def test_segmentation_needs_its_loss():
  c = config_lib.base_config()
  c.total_steps = 1
  c.task = "segmentation"
  with pytest.raises(ValueError, match="bce_dice"):
    config_lib.validate(c)
  c.task = "detection"
  with pytest.raises(ValueError, match="config.task='detection'"):
    config_lib.validate(c)


def test_tiny_recipe_trains_and_reports_dice(tfds_dir, tmp_path):
  from configs import lung_unet  # pylint: disable=g-import-not-at-top
  from jaxcxr import train  # pylint: disable=g-import-not-at-top

  c = lung_unet.get_config("tiny")
  c.input.data_dir = tfds_dir
  workdir = str(tmp_path / "run")
  results = train.train_and_evaluate(c, workdir)
  for split in ("val", "test"):
    r = results[split]
    assert r["num_examples"] > 0 and 0.0 <= r["dice"] <= 1.0 and 0.0 <= r["iou"] <= r["dice"]
    assert r["selected"]["select"] == "best" and r["selected"]["monitor"] == "val_dice"
    with open(os.path.join(workdir, "eval", f"{split}.json")) as f:
      assert json.load(f)["dice"] == pytest.approx(r["dice"])
    pred = np.load(os.path.join(workdir, "eval", f"{split}_predictions.npz"))
    assert pred["pred"].shape == pred["target"].shape == (r["num_examples"], 32, 32)
    np.testing.assert_allclose(pred["dice"].mean(), r["dice"])
    assert os.path.isfile(os.path.join(workdir, "eval", f"{split}_predictions_overlays.png"))
  # Patient-disjoint splits from the builder's patient ids.
  with open(os.path.join(workdir, "data_splits.json")) as f:
    patients = json.load(f)["patients"]
  pats = [set(patients[s]) for s in ("train", "val", "test")]
  assert not (pats[0] & pats[1] or pats[0] & pats[2] or pats[1] & pats[2])
