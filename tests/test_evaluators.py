"""The evaluators' one pass over a split (`evaluators.base.predict_split`): every example scored
exactly once, padding rows dropped, in split order, and one gather per split, not per batch.

A fake split whose images carry their own index (pixel value = index + 1) and an eval step that
reads it back show which example each output row came from. The same check across two processes
(two devices each) is `eval_split_check.py`, run by the slow test at the bottom.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxcxr import sharding
from jaxcxr.evaluators import base, segmentation

HERE = os.path.dirname(__file__)
SIZE = 8


class FakeSplit(list):
  """Records whose image is filled with index + 1; label = index % 3; a patient per record."""

  label_spec = ((), np.int32)

  def __init__(self, n: int, with_masks: bool = False):
    recs = []
    for i in range(n):
      rec = {"image": np.full((SIZE, SIZE), i + 1, np.uint8), "label": i % 3}
      if with_masks:  # The left i % SIZE columns (0/255, as stored).
        m = np.zeros((SIZE, SIZE), np.uint8)
        m[:, : i % SIZE] = 255
        rec["mask"] = m
      recs.append(rec)
    super().__init__(recs)
    self.patients = [f"p{i // 2}" for i in range(n)]


def _index(batch):
  return batch["image"][:, 0, 0, 0].astype(jnp.float32) - 1.0  # The example's index.


@jax.jit
def fake_eval_step(state, batch):
  del state
  ident = _index(batch)
  return {"probs": jnp.stack([ident, -ident], axis=-1), "loss": ident * 10.0}


@jax.jit
def fake_segmentation_step(state, batch):
  del state
  left = (jnp.arange(SIZE) < SIZE // 2).astype(jnp.float32)  # Probability 0.75 there, else 0.25.
  probs = jnp.broadcast_to(0.25 + 0.5 * left[None, None, :, None], batch["image"].shape)
  return {"probs": probs, "loss": _index(batch) * 10.0}


def make_ctx(eval_batch_size: int, eval_step=fake_eval_step) -> base.EvalContext:
  config = ml_collections.ConfigDict(
    {
      "input": {
        "batch_size": eval_batch_size,
        "eval_batch_size": eval_batch_size,
        "image_size": SIZE,
        "num_threads": 1,
      }
    }
  )
  return base.EvalContext(
    config=config,
    mesh=sharding.make_mesh(),
    data=None,
    class_names=["a", "b"],
    graphdef=None,
    eval_step=eval_step,
  )


def count_gathers(monkeypatch) -> list[int]:
  calls = []
  real = sharding.process_allgather

  def spy(tree):
    calls.append(1)
    return real(tree)

  monkeypatch.setattr(sharding, "process_allgather", spy)
  return calls


@pytest.mark.parametrize("n", [11, 12, 1])
def test_every_example_once_in_split_order_and_one_gather_per_split(n, monkeypatch):
  bs = 4 * jax.device_count()
  calls = count_gathers(monkeypatch)
  split = FakeSplit(n * jax.device_count())  # 11: three batches, the last one padded by one row.
  out = base.predict_split(make_ctx(bs), None, split)
  total = len(split)
  np.testing.assert_array_equal(out["index"], np.arange(total))
  np.testing.assert_array_equal(out["probs"][:, 0], np.arange(total))  # Scored once each.
  np.testing.assert_array_equal(out["loss"], 10.0 * np.arange(total))
  np.testing.assert_array_equal(out["label"], np.arange(total) % 3)
  np.testing.assert_array_equal(out["patient"], split.patients)
  # One gather for the whole split, however many batches (math.ceil(n / 4) here).
  assert len(calls) == 1, f"{len(calls)} gathers for {-(-total // bs)} batches"


def test_segmentation_masks_are_thresholded_on_device_and_gathered_once(monkeypatch):
  calls = count_gathers(monkeypatch)
  ctx = make_ctx(4 * jax.device_count(), fake_segmentation_step)
  split = FakeSplit(7 * jax.device_count(), with_masks=True)
  out = segmentation.predict_masks(ctx, None, split, threshold=0.5)
  total = len(split)
  assert len(calls) == 1
  np.testing.assert_array_equal(out["index"], np.arange(total))
  assert out["raw"].dtype == np.uint8 and out["raw"].shape == (total, SIZE, SIZE)
  np.testing.assert_array_equal(out["raw"].sum(axis=(1, 2)), np.full(total, SIZE * SIZE // 2))
  np.testing.assert_array_equal(out["target"][:, 0].sum(axis=1), np.arange(total) % SIZE)
  np.testing.assert_array_equal(out["image"][:, 0, 0], np.arange(total) + 1)
  np.testing.assert_array_equal(out["loss"], 10.0 * np.arange(total))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_score_every_example_once():
  port = _free_port()
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  procs = [
    subprocess.Popen(
      [sys.executable, os.path.join(HERE, "eval_split_check.py"), f"127.0.0.1:{port}", str(i)],
      env=env,
      text=True,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
    )
    for i in range(2)
  ]
  outs = [p.communicate(timeout=300) for p in procs]
  for i, (p, (_, err)) in enumerate(zip(procs, outs, strict=True)):
    assert p.returncode == 0, f"process {i} failed:\n{err[-4000:]}"
  for out, _ in outs:
    d = json.loads(out.strip().splitlines()[-1])
    assert d["gathers"] == 1, d
    # 13 examples, global batch 8: process 0 reads 0-6, process 1 reads 7-12 (one short).
    assert d["index"] == list(range(13)), d
    assert d["scored"] == list(range(13)), d
    assert d["label"] == [i % 3 for i in range(13)], d


def test_augment_eval_augments_listed_validation_splits_with_a_fixed_draw(tfds_dir):
  # config.augment_eval: the eval step augments only with a key, the same key draws the same
  # images, and a test split is refused.
  import functools  # pylint: disable=g-import-not-at-top

  from conftest import tiny_config  # pylint: disable=g-import-not-at-top

  from jaxcxr import config_lib, losses, train  # pylint: disable=g-import-not-at-top
  from jaxcxr.data import pipeline  # pylint: disable=g-import-not-at-top
  from jaxcxr.evaluators import classification  # pylint: disable=g-import-not-at-top
  from jaxcxr.training import steps  # pylint: disable=g-import-not-at-top

  c = tiny_config(tfds_dir)
  c.augment.rotate_deg, c.augment.p_affine = 30.0, 1.0
  c.augment_eval = ("val",)
  s = train.setup(c)
  loss_fn = losses.make_loss(c.loss, len(s.class_names), None)
  step = jax.jit(functools.partial(steps.eval_step, graphdef=s.graphdef, config=c, loss_fn=loss_fn))
  batch = next(pipeline.eval_batches(s.data.split("val"), local_batch_size=8, image_size=32))
  batch = {k: jnp.asarray(batch[k]) for k in ("image", "label")}
  key = classification.eval_augment_key(c, "val")
  plain, aug, again = step(s.state, batch), step(s.state, batch, key), step(s.state, batch, key)
  np.testing.assert_array_equal(aug["probs"], again["probs"])
  assert float(jnp.abs(aug["probs"] - plain["probs"]).max()) > 1e-4
  # Without a key the step is the plain prediction.
  probs = steps.predict_step(s.state, batch, graphdef=s.graphdef, config=c)
  np.testing.assert_allclose(plain["probs"], probs, atol=1e-6)
  assert classification.eval_augment_key(c, "train") is None
  assert jnp.array_equal(
    jax.random.key_data(key), jax.random.key_data(classification.eval_augment_key(c, "val"))
  )
  for bad in (("val", "test"), ("external_test",)):
    c.augment_eval = bad
    with pytest.raises(ValueError, match=r"config.augment_eval=.*test.* is refused"):
      config_lib.validate(c)
