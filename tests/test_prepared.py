"""The prepared image cache (jaxcxr.data.prepared): the same batches, rebuilt when it must be."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from conftest import tiny_config

from jaxcxr import config_lib, train
from jaxcxr.data import pipeline, prepared
from jaxcxr.data.tfds_access import DamagedDataError


def _config(tfds_dir, cache, **overrides):
  c = tiny_config(tfds_dir, **overrides)
  c.input.prepared_cache = str(cache)
  return c


def _raw(c):
  """The run's splits without the cache (the dataset prepared if needed)."""
  off = c.copy_and_resolve_references()
  off.input.prepared_cache = ""
  return train.load_datasets(off)


def _both(c):
  raw = _raw(c)
  return raw, prepared.prepare(raw, c)


def _built(data) -> dict[str, bool]:
  return {k: v["built"] for k, v in data.report["prepared_cache"]["caches"].items()}


def _assert_same_batches(raw, prep, c, train_batches=6):
  kw = {"image_size": c.input.image_size, **pipeline.resize_args(c.input), "num_threads": 2}
  for s in raw.splits:
    a = list(pipeline.eval_batches(raw.split(s), local_batch_size=8, **kw))
    b = list(pipeline.eval_batches(prep.split(s), local_batch_size=8, **kw))
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
      assert x.keys() == y.keys()
      for k in x:
        np.testing.assert_array_equal(x[k], y[k], err_msg=f"{s} {k}")
  ia = pipeline.train_iterator(raw.split("train"), local_batch_size=8, seed=3, **kw)
  ib = pipeline.train_iterator(prep.split("train"), local_batch_size=8, seed=3, **kw)
  for _ in range(train_batches):  # 24 training images: more than two epochs of reshuffles.
    x, y = next(ia), next(ib)
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_batches_are_bit_identical_with_and_without_the_cache(tfds_dir, tmp_path, resize):
  # A re-split with oversampling: rows repeat and are not the builder's record order.
  c = _config(
    tfds_dir, tmp_path / "cache", **{"input.resize": resize, "input.splits.method": "fractions",
                                     "input.balance": "oversample", "input.image_size": 27},
  )  # fmt: skip
  raw, prep = _both(c)
  assert all(_built(prep).values())
  assert all(isinstance(v, prepared.PreparedView) for v in prep.splits.values())
  # Labels, patients and lengths are the split's own.
  for s in raw.splits:
    np.testing.assert_array_equal(raw.split(s).labels, prep.split(s).labels)
    assert list(raw.split(s).patients) == list(prep.split(s).patients)
  _assert_same_batches(raw, prep, c)


def test_reused_and_rebuilt_when_its_key_changes(tfds_dir, tmp_path):
  cache = tmp_path / "cache"
  c = _config(tfds_dir, cache)
  first = prepared.prepare(_raw(c), c)
  assert all(_built(first).values()) and len(_built(first)) == 3
  again = prepared.prepare(_raw(c), c)
  assert not any(_built(again).values())  # Read, not rebuilt.
  folders = {v["folder"] for v in first.report["prepared_cache"]["caches"].values()}
  assert folders == {v["folder"] for v in again.report["prepared_cache"]["caches"].values()}
  # Each of size, resize mode, pad value and the records used makes other folders.
  seen = set(folders)
  for key, value in [
    ("input.image_size", 24), ("input.resize", "letterbox"), ("input.pad_value", 0),
    ("input.class_caps", (("normal", 2),)),
  ]:  # fmt: skip
    ci = _config(tfds_dir, cache, **{key: value})
    if key == "input.class_caps":
      ci.input.splits.method = "fractions"  # Caps apply to a re-split's pool.
    caches = prepared.prepare(_raw(ci), ci).report["prepared_cache"]["caches"].values()
    assert any(v["folder"] not in folders for v in caches), key
    # Built exactly where the key is new (caps change only the builder splits they thin out).
    assert all(v["built"] == (v["folder"] not in seen) for v in caches), key
    seen |= {v["folder"] for v in caches}
  # A rebuilt dataset (its shard files rewritten) invalidates the caches of its split.
  source = _raw(c).split("test")
  from jaxcxr.data import views  # pylint: disable=g-import-not-at-top

  shard = prepared.split_fingerprint(views.data_source(source, "synthetic_cxr/tiny", "test"))
  path = shard["shards"][0][0]
  st = os.stat(path)
  os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
  touched = prepared.prepare(_raw(c), c)
  assert _built(touched) == {
    "synthetic_cxr/tiny/test": True, "synthetic_cxr/tiny/train": False,
    "synthetic_cxr/tiny/val": False,
  }  # fmt: skip


def test_a_damaged_cache_is_rebuilt_with_a_warning(tfds_dir, tmp_path, caplog):
  c = _config(tfds_dir, tmp_path / "cache")
  raw, prep = _both(c)
  folder = prep.report["prepared_cache"]["caches"]["synthetic_cxr/tiny/train"]["folder"]
  images = os.path.join(folder, "images.array_record")
  with open(images, "r+b") as f:  # Truncated: a full disk or a partial copy.
    f.truncate(os.path.getsize(images) // 2)
  with caplog.at_level(logging.WARNING):
    again = prepared.prepare(raw, c)
  assert "is damaged" in caplog.text and folder in caplog.text
  assert _built(again)["synthetic_cxr/tiny/train"]
  _assert_same_batches(raw, again, c, train_batches=3)
  # A foreign meta.json (another key in this folder) is damage too.
  with open(os.path.join(folder, "meta.json"), "w") as f:
    json.dump({"format": 0}, f)
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    assert _built(prepared.prepare(raw, c))["synthetic_cxr/tiny/train"]
  assert "does not match" in caplog.text
  # An interrupted build's temporary folder is cleared by the next build of that key.
  stale = os.path.join(os.path.dirname(folder), f".tmp-{os.path.basename(folder)}-x")
  os.makedirs(stale)
  os.remove(os.path.join(folder, "records.npy"))
  prepared.prepare(raw, c)
  assert not os.path.exists(stale)


def test_a_record_of_the_wrong_length_names_the_cache(tfds_dir, tmp_path):
  c = _config(tfds_dir, tmp_path / "cache")
  _, prep = _both(c)
  view = prep.split("val")
  cache = view._caches[("synthetic_cxr/tiny", "val")]  # pylint: disable=protected-access
  cache.layout = prepared.Layout(33, "stretch", 128, False)  # What another size would expect.
  with pytest.raises(DamagedDataError, match=r"Prepared cache .*val-32px.* holds 1024 bytes"):
    view[0]


def test_prepared_records_are_not_resized_again(tfds_dir, tmp_path):
  c = _config(tfds_dir, tmp_path / "cache")
  _, prep = _both(c)
  record = prep.split("test")[0]
  assert record["image"].shape == (32, 32, 1) and record["prepared"] == (32, "stretch", 128)
  assert pipeline.Preprocess(32).map(record)["image"] is record["image"]
  with pytest.raises(ValueError, match=r"made at .*\(32, 'stretch', 128\).*for \(64"):
    pipeline.Preprocess(64).map(record)
  with pytest.raises(ValueError, match="without a mask"):
    pipeline.Preprocess(32, with_mask=True).map(record)


@pytest.mark.parametrize("bad", [None, "FILE"])
def test_the_config_key_is_validated(tmp_path, bad):
  c = config_lib.base_config()
  c.total_steps = 1
  if bad == "FILE":
    bad = str(tmp_path / "a_file")
    open(bad, "w").close()
  with c.unlocked():
    c.input.prepared_cache = bad
  with pytest.raises(
    ValueError, match=r"config.input.prepared_cache=.*expected '' \(off\), 'auto'"
  ):
    config_lib.validate(c)


def test_auto_is_the_env_dir_else_the_user_cache(monkeypatch, tmp_path):
  monkeypatch.setenv(prepared.ENV_DIR, str(tmp_path / "env"))
  assert prepared.cache_root("auto") == str(tmp_path / "env")
  monkeypatch.delenv(prepared.ENV_DIR)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert prepared.cache_root("auto") == str(tmp_path / "xdg" / "jaxcxr" / "prepared")
  assert prepared.cache_root(str(tmp_path / "d")) == str(tmp_path / "d")


def test_a_run_with_the_cache_equals_the_run_without(tfds_dir, tiny_run, tmp_path):
  # tiny_run's config (conftest) with the cache on: the same metrics, to the last bit.
  c = tiny_config(tfds_dir, eval_every_steps=3, best_monitor="val_loss")
  c.input.prepared_cache = str(tmp_path / "cache")
  train.train_and_evaluate(c, str(tmp_path / "run"))
  for split in ("val", "test"):
    with open(os.path.join(tiny_run, "eval", f"{split}.json")) as f:
      want = json.load(f)
    with open(tmp_path / "run" / "eval" / f"{split}.json") as f:
      got = json.load(f)
    assert got["accuracy"] == want["accuracy"] and got["loss"] == want["loss"], split
  with open(tmp_path / "run" / "data_splits.json") as f:
    report = json.load(f)["prepared_cache"]
  assert set(report["caches"]) == {f"synthetic_cxr/tiny/{s}" for s in ("train", "val", "test")}


def test_a_concurrent_build_keeps_the_first_sound_copy(tfds_dir, tmp_path, monkeypatch):
  # Two runs (say folds side by side) build one key: the second finds the first's folder sound
  # at its rename and discards its own copy, leaving no temporary folder.
  c = _config(tfds_dir, tmp_path / "cache")
  raw, prep = _both(c)
  folder = prep.report["prepared_cache"]["caches"]["synthetic_cxr/tiny/val"]["folder"]
  images = os.path.join(folder, "images.array_record")
  before = os.stat(images).st_ino
  real_check = prepared._check  # pylint: disable=protected-access
  calls = []

  def check(f, meta, n):  # The first check of val (on open) misses it: built concurrently.
    calls.append(f)
    return "missing" if calls.count(folder) == 1 and f == folder else real_check(f, meta, n)

  monkeypatch.setattr(prepared, "_check", check)
  again = prepared.prepare(raw, c)
  assert _built(again)["synthetic_cxr/tiny/val"]  # It did build a copy ...
  assert os.stat(images).st_ino == before  # ... and kept the existing one.
  assert not [n for n in os.listdir(os.path.dirname(folder)) if n.startswith(".tmp-")]
  _assert_same_batches(raw, again, c, train_batches=1)


def test_segmentation_masks_are_cached_with_their_images(tfds_dir, tmp_path):
  from configs import lung_unet  # pylint: disable=g-import-not-at-top

  c = lung_unet.get_config("tiny")
  c.input.data_dir = tfds_dir
  c.input.prepared_cache = str(tmp_path / "cache")
  raw, prep = _both(c)
  assert prep.segmentation and prep.split("train")[0]["mask"].shape[-1] == 1
  size, kw = c.input.image_size, pipeline.resize_args(c.input)
  for s in raw.splits:
    a = pipeline.eval_batches(
      raw.split(s), local_batch_size=4, image_size=size, with_masks=True, **kw
    )
    b = pipeline.eval_batches(
      prep.split(s), local_batch_size=4, image_size=size, with_masks=True, **kw
    )
    for x, y in zip(a, b, strict=True):
      for k in ("image", "seg", "label", "mask"):
        np.testing.assert_array_equal(x[k], y[k])
