"""Lung masking as classification preprocessing (`jaxcxr.lung_mask`): each mode on a planted mask,
the same UNet masks applied to every class and split, the mask cache (hit without a UNet call,
invalidated by another run or step), `predict` masking as training did, and the errors.

One tiny UNet (`configs/lung_unet.py:tiny`, 6 steps at 32 px on the builder's dummy data) serves
the module. Its masks are poor, so the tests widen the plausible area (`min_area=0`,
`max_area=1`): the masks then differ from the whole image and masking visibly changes the input.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from conftest import set_keys, tiny_config
from PIL import Image

from configs import lung_unet
from jaxcxr import config_lib, lung_mask, masks
from jaxcxr.data import images, pipeline, splits, tfds_access


def _lesson_image() -> np.ndarray:
  return (np.arange(20 * 30).reshape(20, 30) % 251 + 1).astype(np.uint8)  # no zero pixel


def test_black_keeps_the_mask_and_zeros_the_rest():
  grey = _lesson_image()
  m = np.zeros((20, 30), np.uint8)
  m[5:12, 3:9] = 1
  m[6:15, 20:26] = 1
  out = lung_mask.apply(grey, m, "black")
  assert out.shape == grey.shape
  np.testing.assert_array_equal(out[m > 0], grey[m > 0])
  assert (out[m == 0] == 0).all()


def test_crop_is_the_bounding_box_with_margin_and_both_blacks_then_crops():
  grey = _lesson_image()
  m = np.zeros((20, 30), np.uint8)
  m[5:12, 3:9] = 1
  m[6:15, 20:26] = 1  # bounding box rows 5..14, cols 3..25: 10 x 23
  np.testing.assert_array_equal(lung_mask.apply(grey, m, "crop"), grey[5:15, 3:26])
  # margin 0.1 of the box: 1 row and 2 columns each side.
  np.testing.assert_array_equal(lung_mask.apply(grey, m, "crop", 0.1), grey[4:16, 1:28])
  both = lung_mask.apply(grey, m, "both")
  np.testing.assert_array_equal(both, lung_mask.apply(grey, m, "black")[5:15, 3:26])
  assert (both == 0).any() and (both > 0).any()
  # A margin past the border stops at it.
  np.testing.assert_array_equal(lung_mask.apply(grey, m, "crop", 0.9), grey)


def test_a_mask_at_another_resolution_is_resized_to_the_image():
  grey = np.full((64, 64), 200, np.uint8)
  m = np.zeros((32, 32), np.uint8)
  m[8:24, 4:12] = 1
  out = lung_mask.apply(grey, m, "black")
  want = np.zeros((64, 64), bool)
  want[16:48, 8:24] = True
  np.testing.assert_array_equal(out > 0, want)
  np.testing.assert_array_equal(lung_mask.apply(grey, m, "crop").shape, (32, 16))
  with pytest.raises(ValueError, match="mode 'blur'"):
    lung_mask.apply(grey, m, "blur")


@pytest.fixture(scope="module")
def unet_run(tfds_dir, tmp_path_factory) -> str:
  from configs import lung_unet  # pylint: disable=g-import-not-at-top
  from jaxcxr import train  # pylint: disable=g-import-not-at-top

  c = lung_unet.get_config("tiny")
  c.input.data_dir = tfds_dir
  c.report.html = False
  workdir = str(tmp_path_factory.mktemp("unet") / "run")
  train.train_and_evaluate(c, workdir)
  # The classification data the tests mask (load_splits reads prepared datasets only).
  tfds_access.prepare(tfds_access.get_builder("synthetic_cxr/tiny", tfds_dir))
  return workdir


def _masked_config(tfds_dir: str, run: str, **overrides):
  c = tiny_config(tfds_dir)
  lm = {"run": run, "step": "latest", "min_area": 0.0, "max_area": 1.0, "mode": "black"}
  return set_keys(c, **{f"input.lung_mask.{k}": v for k, v in lm.items()} | overrides)


def _raw_grey(view, i) -> np.ndarray:
  return images.to_grey(view.base[i]["image"])


def test_every_split_and_class_is_masked_by_the_same_unet(tfds_dir, unet_run, tmp_path):
  c = _masked_config(tfds_dir, unet_run)
  data = lung_mask.load_splits(c, str(tmp_path))
  masker = lung_mask.masker_for(c)
  rep = data.report["lung_mask"]
  assert rep["unet"] == masker.key and rep["mode"] == "black"
  assert rep["masks_computed"] == sum(len(v) for v in data.splits.values())
  changed_per_class = np.zeros(len(data.class_names), int)
  for name, view in data.splits.items():
    assert isinstance(view, lung_mask.MaskedView), name
    greys = [_raw_grey(view, i) for i in range(len(view))]
    want, _ = masker.predict(greys)
    for i, grey in enumerate(greys):
      # The UNet's own mask of this image, applied whatever its class: no other mask is used.
      np.testing.assert_array_equal(view.mask(i), want[i])
      got = view[i]["image"]
      np.testing.assert_array_equal(got, lung_mask.apply(grey, want[i], "black"))
      changed_per_class[view.labels[i]] += int((got != grey).any())
  # Masking changed images of every class (so the checks above could fail).
  assert (changed_per_class > 0).all(), changed_per_class


def test_cache_hit_without_unet_call_and_invalidation(tfds_dir, unet_run, tmp_path, monkeypatch):
  c = _masked_config(tfds_dir, unet_run)
  first = lung_mask.load_splits(c, str(tmp_path))
  n = sum(len(v) for v in first.splits.values())
  files = sorted(os.listdir(os.path.join(tmp_path, lung_mask.CACHE_DIR)))
  assert len(files) == 1  # one UNet key

  calls = []
  real = lung_mask.Masker.predict
  monkeypatch.setattr(
    lung_mask.Masker, "predict", lambda self, g: calls.append(len(g)) or real(self, g)
  )
  second = lung_mask.load_splits(c, str(tmp_path))
  assert calls == [] and second.report["lung_mask"]["masks_from_cache"] == n
  for s in first.splits:
    np.testing.assert_array_equal(first.splits[s].packed, second.splits[s].packed)

  # Another step of the same run: another key, all recomputed.
  other_step = set_keys(_masked_config(tfds_dir, unet_run), **{"input.lung_mask.step": "3"})
  third = lung_mask.load_splits(other_step, str(tmp_path))
  assert sum(calls) == n and third.report["lung_mask"]["masks_computed"] == n
  assert third.report["lung_mask"]["unet_digest"] != first.report["lung_mask"]["unet_digest"]
  # Another run (a copy elsewhere: the same parameters, another workdir): recomputed too.
  copy = str(tmp_path / "unet_copy")
  shutil.copytree(unet_run, copy)
  fourth = lung_mask.load_splits(_masked_config(tfds_dir, copy), str(tmp_path))
  assert sum(calls) == 2 * n and fourth.report["lung_mask"]["masks_computed"] == n
  # A cache file whose record does not match (e.g. written for other data) is recomputed.
  path = lung_mask._cache_path(  # pylint: disable=protected-access
    str(tmp_path / lung_mask.CACHE_DIR), first.report["lung_mask"]["unet_digest"],
    "synthetic_cxr/tiny", "test",
  )  # fmt: skip
  with np.load(path) as z:
    parts = dict(z)
  meta = json.loads(str(parts["meta"]))
  meta["data_dir"] = "/elsewhere"
  parts["meta"] = json.dumps(meta)
  np.savez_compressed(path, **parts)
  fifth = lung_mask.load_splits(c, str(tmp_path))
  assert fifth.report["lung_mask"]["masks_computed"] == len(first.splits["test"])


def test_masker_params_digest_follows_the_checkpoint(unet_run):
  a = lung_mask.Masker(unet_run, "latest")
  b = lung_mask.Masker(unet_run, 3)
  assert a.key["params_sha256"] != b.key["params_sha256"] and a.digest != b.digest
  assert lung_mask.Masker(unet_run, "latest").digest == a.digest


def test_errors_name_the_run(tfds_dir, tiny_run, tmp_path):
  missing = _masked_config(tfds_dir, str(tmp_path / "nope"))
  with pytest.raises(FileNotFoundError, match="lung_mask.run=.*nope.*no such folder"):
    lung_mask.load_splits(missing, str(tmp_path))
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match="not a jaxcxr training workdir"):
    lung_mask.load_splits(_masked_config(tfds_dir, str(empty)), str(tmp_path))
  with pytest.raises(ValueError, match="is a 'classification' run.*segmentation run"):
    lung_mask.load_splits(_masked_config(tfds_dir, tiny_run), str(tmp_path))
  bad_mode = _masked_config(tfds_dir, tiny_run, **{"input.lung_mask.mode": "blur"})
  with pytest.raises(ValueError, match="lung_mask.mode='blur'"):
    config_lib.validate(bad_mode)
  bad_area = _masked_config(
    tfds_dir, tiny_run, **{"input.lung_mask.min_area": 0.9, "input.lung_mask.max_area": 0.5}
  )
  with pytest.raises(ValueError, match="min_area=0.9, max_area=0.5"):
    config_lib.validate(bad_area)


def test_a_mixture_cannot_mask_some_sources_only(tfds_dir, tmp_path):
  c = tiny_config(tfds_dir)
  c.input.mixture = (
    {"data": "synthetic_cxr/tiny", "class_map": {"covid19": "covid19"}, "lung_mask": "v7"},
    {"data": "synthetic_cxr/tiny", "class_map": {"normal": "normal"}},
  )
  with pytest.raises(ValueError, match=r"mixture\[0\] sets 'lung_mask'.*every component"):
    config_lib.validate(c)
  with pytest.raises(ValueError, match=r"mixture\[0\] sets 'lung_mask'"):
    lung_mask.load_splits(c, str(tmp_path))


def test_a_run_with_lung_masks_predicts_its_files_masked(tfds_dir, unet_run, tmp_path):
  from jaxcxr import evaluate, inference, predict, train  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path / "cls")
  c = _masked_config(tfds_dir, unet_run)
  train.train_and_evaluate(c, workdir)
  with open(os.path.join(workdir, "data_splits.json")) as f:
    rep = json.load(f)["lung_mask"]
  assert rep["masks_computed"] > 0 and set(rep["fallbacks"]) == {"train", "val", "test"}
  assert os.path.isdir(os.path.join(workdir, lung_mask.CACHE_DIR))

  # The test split's raw images (unmasked) as PNG files: predict masks them as training did, so
  # its probabilities equal the run's own evaluation of the masked test split.
  raw = splits.load(c.input).split("test")
  pngs = tmp_path / "pngs"
  pngs.mkdir()
  for i in range(len(raw)):
    Image.fromarray(images.to_grey(raw[i]["image"])).save(pngs / f"{i:03d}.png")
  out = predict.predict(workdir, [str(pngs)], str(tmp_path / "out"), batch_size=4)
  assert out["lung_mask"]["mode"] == "black" and out["lung_mask"]["unet"] == rep["unet"]
  with np.load(os.path.join(workdir, "eval", "test_predictions.npz")) as z:
    want = z["probs"][np.argsort(z["index"])]
  got = np.array([[r["probabilities"][n] for n in out["class_names"]] for r in out["predictions"]])
  np.testing.assert_allclose(got, want, atol=1e-5)
  # Unmasked, the same files give other probabilities: the masking is what made them equal.
  restored = inference.restore(workdir)
  _, pixels, _ = predict.load_images(predict.collect_inputs([str(pngs)]), 32)
  p = predict.Predictor(restored, 4)
  assert np.abs(p.probabilities(p.logits(pixels)) - want).max() > 1e-4

  # An external evaluation (here the same test split, read as another build) is masked too.
  ext = tmp_path / "ext"
  evaluate.evaluate_external(workdir, "synthetic_cxr/tiny:test", str(ext))  # built in ext/tfds
  with np.load(ext / "predictions.npz") as z:
    np.testing.assert_allclose(z["probs"][np.argsort(z["index"])], want, atol=1e-5)
  assert os.path.isdir(ext / lung_mask.CACHE_DIR)

  # A UNet whose parameters changed since training is refused.
  saved = os.path.join(workdir, "data_splits.json")
  with open(saved) as f:
    js = json.load(f)
  js["lung_mask"]["unet"]["params_sha256"] = "0" * 16
  with open(saved, "w") as f:
    json.dump(js, f)
  with pytest.raises(ValueError, match="trained on lung masks of UNet"):
    predict.predict(workdir, [str(pngs)], str(tmp_path / "out2"))


def test_postprocess_fallback_is_counted(tfds_dir, unet_run, tmp_path):
  # The default plausible area: a 6-step UNet's masks mostly fall back, and the count says so.
  c = set_keys(_masked_config(tfds_dir, unet_run), **{"input.lung_mask.min_area": 0.99})
  data = lung_mask.load_splits(c, str(tmp_path))
  masker = lung_mask.masker_for(c)
  view = data.splits["val"]
  _, fell = masker.predict([_raw_grey(view, i) for i in range(len(view))])
  assert data.report["lung_mask"]["fallbacks"]["val"] == int(fell.sum())
  for i in np.flatnonzero(fell):
    assert view.mask(i).all()  # The whole image: passed on unmasked.
  assert masker.post == masks.PostprocessConfig(min_area=0.99, max_area=1.0)


def test_recipes_take_masked_and_mask_mode():
  from configs import kermany_cohen  # pylint: disable=g-import-not-at-top
  from configs.studies import zhang2021  # pylint: disable=g-import-not-at-top

  c = kermany_cohen.get_config("tiny,masked=/runs/unet,mask_mode=both")
  assert (c.input.lung_mask.run, c.input.lung_mask.mode) == ("/runs/unet", "both")
  config_lib.validate(c)
  assert kermany_cohen.get_config("tiny").input.lung_mask.run == ""  # off by default
  z = zhang2021.get_config("tiny,4class,source=imagenet,masked=/runs/unet")
  assert (z.input.lung_mask.run, z.input.lung_mask.mode) == ("/runs/unet", "black")
  with pytest.raises(ValueError, match="mask_mode=crop needs masked"):
    kermany_cohen.get_config("mask_mode=crop")
  with pytest.raises(ValueError, match="lung_mask.mode='blur'"):
    config_lib.validate(kermany_cohen.get_config("tiny,masked=/u,mask_mode=blur"))


def test_the_audit_of_a_masked_config_reads_the_masked_images(tfds_dir, unet_run, tmp_path):
  from jaxcxr.audit import records_from_config  # pylint: disable=g-import-not-at-top

  c = _masked_config(tfds_dir, unet_run)
  recs = list(records_from_config(c, str(tmp_path)))
  data = lung_mask.load_splits(c, str(tmp_path))  # the audit's masks, from the cache
  assert data.report["lung_mask"]["masks_computed"] == 0
  changed = 0
  for r in recs:
    view = data.splits[r.split]
    np.testing.assert_array_equal(r.image, view[r.index]["image"])
    changed += int((r.image != _raw_grey(view, r.index)).any())
  assert len(recs) == sum(len(v) for v in data.splits.values()) and changed > 0


def test_a_saved_lung_unet_config_is_read_back_with_its_model_keywords():
  # configs/lung_unet.py adds `model.decoder_channels`, a keyword of its UNet that base_config
  # lacks; the lung masker rebuilds that run's config from config.json (it used to refuse it).
  c = lung_unet.get_config()
  saved = json.loads(c.to_json_best_effort())
  back = config_lib.from_run_json(saved)
  assert tuple(back.model.decoder_channels) == tuple(c.model.decoder_channels)
  assert back.model_name == c.model_name
  saved["not_a_key"], saved["input"]["nor_this"] = 1, 2  # Elsewhere unknown keys stay errors.
  with pytest.raises(ValueError, match=r"not_a_key.*input.nor_this|input.nor_this.*not_a_key"):
    config_lib.from_run_json(saved)


def test_a_letterboxed_mask_is_mapped_back_through_the_letterbox():
  # A 40 x 20 (w x h) image letterboxed to 16: content rows 4..11 of the mask. A mask that marks
  # the left half of the content must black out the left half of the image, nothing shifted.
  grey = np.full((20, 40), 200, np.uint8)
  mask = np.zeros((16, 16), np.uint8)
  x0, y0, nw, nh = pipeline.letterbox_box(40, 20, 16)
  assert (x0, y0, nw, nh) == (0, 4, 16, 8)
  mask[y0 : y0 + nh, : nw // 2] = 1
  out = lung_mask.apply(grey, mask, "black", resize="letterbox")
  assert (out[:, :20] == 200).all() and (out[:, 20:] == 0).all()
  # The same mask read as a stretched one would cut rows: the letterbox geometry matters.
  assert not np.array_equal(lung_mask.apply(grey, mask, "black"), out)


def test_a_letterboxed_unet_masks_with_its_own_resize(tfds_dir, tmp_path):
  from jaxcxr import train  # pylint: disable=g-import-not-at-top

  c = lung_unet.get_config("tiny")
  c.input.data_dir, c.report.html = tfds_dir, False
  c.input.resize = "letterbox"
  run = str(tmp_path / "unet_lb")
  train.train_and_evaluate(c, run)
  masker = lung_mask.Masker(run, "latest")
  assert masker.resize == "letterbox" and masker.key["resize"]["resize"] == "letterbox"
  grey = np.random.default_rng(0).integers(0, 255, (30, 50), np.uint8)
  # Its input is the letterboxed image, as its training saw it.
  want = pipeline.Preprocess(masker.resolution, resize="letterbox").map({"image": grey, "label": 0})
  got = masker._pre.map({"image": grey, "label": 0})  # pylint: disable=protected-access
  np.testing.assert_array_equal(got["image"], want["image"])
  m, _ = masker.predict([grey])
  assert m.shape == (1, masker.resolution, masker.resolution)


def test_prepared_cache_of_masked_images_equals_masking_and_follows_the_mask(
  tfds_dir, unet_run, tmp_path
):
  # The prepared cache stores the masked pixels: the same batches as masking on the fly, and
  # another mode (or UNet) is another cache folder.
  from jaxcxr import train  # pylint: disable=g-import-not-at-top
  from jaxcxr.data import prepared  # pylint: disable=g-import-not-at-top

  c = _masked_config(tfds_dir, unet_run, **{"input.lung_mask.cache_dir": str(tmp_path / "m")})
  raw = train.load_datasets(c)
  c.input.prepared_cache = str(tmp_path / "p")
  prep = train.load_datasets(c)
  assert isinstance(prep.split("test"), prepared.PreparedView)
  assert isinstance(prep.split("test").base, lung_mask.MaskedView)
  for s in raw.splits:
    a = list(pipeline.eval_batches(raw.split(s), local_batch_size=8, image_size=32))
    b = list(pipeline.eval_batches(prep.split(s), local_batch_size=8, image_size=32))
    for x, y in zip(a, b, strict=True):
      np.testing.assert_array_equal(x["image"], y["image"])
  folders = {v["folder"] for v in prep.report["prepared_cache"]["caches"].values()}
  c.input.lung_mask.mode = "crop"
  crop = train.load_datasets(c).report["prepared_cache"]["caches"].values()
  assert not folders & {v["folder"] for v in crop}
  assert all(v["built"] for v in crop)
