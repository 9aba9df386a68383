"""Tests for the model registry (jaxcxr.models) and the ResNet family (He et al., 2016).

Forward passes run only on the tiny test variants so the suite stays fast on CPU; the full-size
models are checked through abstract (``nnx.eval_shape``) construction, which costs no memory.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcxr import models
from jaxcxr.models import create, get_default_cfg, list_models, param_count, param_counts, registry

HERE = pathlib.Path(__file__).parent

TINY = list_models("*_tiny")
NUM_CLASSES = 3

# Parameter counts of torchvision's models with the 1000-class ImageNet head.
TORCHVISION_PARAMS = {
  "resnet18": 11_689_512,
  "resnet34": 21_797_672,
  "resnet50": 25_557_032,
  "resnet101": 44_549_160,
  "resnet152": 60_192_808,
}


def _rngs(seed: int = 0) -> nnx.Rngs:
  # 'rbg' keys: XLA:CPU compiles threefry-based initializers slowly (~16 s vs ~4.5 s to build
  # the tiny ResNet on a 2-core CPU); the library default stays nnx.Rngs(0).
  return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def _images(n: int = 2, size: int = 32, chans: int = 3, seed: int = 0) -> jax.Array:
  return jax.random.normal(jax.random.key(seed), (n, size, size, chans))


def _size(name: str, size: int = 32) -> int:
  """`size`, raised to the model's `min_input_size` (timm's cfg key; Inception-v3 needs 75)."""
  return max(size, models.get_default_cfg(name).get("min_input_size", (3, 0, 0))[1])


def test_list_models():
  assert TINY, "no *_tiny model registered"
  assert set(TORCHVISION_PARAMS) <= set(list_models())
  assert list_models("resnet1*") == ["resnet101", "resnet152", "resnet18"]


@pytest.mark.parametrize("name", list_models())
def test_default_cfg(name):
  cfg = models.get_default_cfg(name)
  assert len(cfg["input_size"]) == 3 and cfg["input_size"][0] == 3
  assert len(cfg["mean"]) == len(cfg["std"]) == 3
  assert cfg["first_conv"] and cfg["classifier"]


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("train", [False, True])
def test_forward_shape_and_finite(name, train):
  model = create(name, num_classes=NUM_CLASSES, rngs=_rngs())
  y = model(_images(size=_size(name)), train=train)
  assert y.shape == (2, NUM_CLASSES)
  assert bool(jnp.all(jnp.isfinite(y)))


@pytest.mark.parametrize("name", TINY)
def test_single_channel_input(name):
  model = create(name, num_classes=NUM_CLASSES, in_chans=1, rngs=_rngs())
  y = model(_images(size=_size(name), chans=1))
  assert y.shape == (2, NUM_CLASSES)
  assert bool(jnp.all(jnp.isfinite(y)))


@pytest.mark.parametrize("name", TINY)
def test_features_and_feature_extractor(name):
  model = create(name, num_classes=0, rngs=_rngs())
  x = _images(size=_size(name, 64))
  feats = model.forward_features(x)
  # Stride 32: 2 x 2 at 64 px. Inception-v3's unpadded convs leave 1 x 1 at its minimum, 75 px.
  side = 2 if x.shape[1] == 64 else 1
  assert feats.shape == (2, side, side, model.num_features)
  pooled = model(x)
  # timm's convention: families whose classifier has hidden layers (VGG's fc6/fc7) return their
  # last hidden layer, of size `head_hidden_size`; the others return the pooled feature map.
  hidden = getattr(model, "head_hidden_size", model.num_features)
  assert pooled.shape == (2, hidden)
  if hidden == model.num_features:
    np.testing.assert_allclose(pooled, feats.mean(axis=(1, 2)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", TINY)
def test_batch_stats_update_only_in_train(name):
  graphdef, params, stats = nnx.split(
    create(name, num_classes=NUM_CLASSES, rngs=_rngs()), nnx.Param, nnx.BatchStat
  )
  x = _images(size=_size(name))

  # copy=True: by default merge shares the Variables with `stats`, so the train-mode forward
  # would update `stats` in place and hide the change we want to see.
  m = nnx.merge(graphdef, params, stats, copy=True)
  m(x, train=False)
  jax.tree.map(np.testing.assert_array_equal, nnx.state(m, nnx.BatchStat), stats)

  m = nnx.merge(graphdef, params, stats, copy=True)
  m(x, train=True)
  new_stats = nnx.state(m, nnx.BatchStat)
  changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new_stats, stats))
  assert all(changed), "every BatchNorm mean/var should move after a train-mode forward"


@pytest.mark.slow  # compiles a full value_and_grad: 4-9 s on a 2-core CPU
@pytest.mark.parametrize("name", TINY)
def test_functional_train_step_under_jit(name):
  model = create(name, num_classes=NUM_CLASSES, drop_rate=0.2, rngs=_rngs())
  graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  x, labels = _images(size=_size(name)), jnp.array([0, 2])

  @jax.jit
  def step(params, stats, x, labels, key):
    def loss_fn(params):
      # copy=True: `stats` holds Variables created at the jit trace level; mutating them
      # (BN running stats) inside the grad trace raises TraceContextError.
      m = nnx.merge(graphdef, params, stats, copy=True)
      logits = m(x, train=True, rngs=key)
      loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))
      return loss, nnx.state(m, nnx.BatchStat)

    (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return loss, grads, new_stats

  loss, grads, new_stats = step(params, stats, x, labels, jax.random.key(1))
  assert bool(jnp.isfinite(loss))
  assert jax.tree.structure(grads) == jax.tree.structure(params)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert any(
    bool(jnp.any(a != b))
    for a, b in zip(jax.tree.leaves(new_stats), jax.tree.leaves(stats), strict=True)
  )

  @jax.jit
  def predict(params, stats, x):
    return nnx.merge(graphdef, params, stats)(x, train=False)

  np.testing.assert_allclose(predict(params, stats, x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", TINY)
def test_head_dropout(name):
  model = create(name, num_classes=NUM_CLASSES, drop_rate=0.5, rngs=_rngs())
  feats = model.forward_features(_images(size=_size(name)))
  # Eval: deterministic, no key needed.
  np.testing.assert_array_equal(model.forward_head(feats), model.forward_head(feats))
  eval_out = model.forward_head(feats)
  # Train: reproducible for a given key (raw key or nnx.Rngs), different across keys.
  a = model.forward_head(feats, train=True, rngs=jax.random.key(0))
  b = model.forward_head(feats, train=True, rngs=jax.random.key(0))
  c = model.forward_head(feats, train=True, rngs=jax.random.key(1))
  d = model.forward_head(feats, train=True, rngs=nnx.Rngs(dropout=0))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  assert not np.allclose(a, eval_out)
  assert d.shape == a.shape
  with pytest.raises(ValueError, match="dropout key"):
    model.forward_head(feats, train=True)


@pytest.mark.parametrize("name", TINY)
def test_bfloat16_compute(name):
  model = create(name, num_classes=NUM_CLASSES, dtype=jnp.bfloat16, rngs=_rngs())
  y = model(_images(size=_size(name)), train=True)
  assert y.dtype == jnp.bfloat16
  assert bool(jnp.all(jnp.isfinite(y)))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_zero_init_residual():
  model = create("resnet_tiny", num_classes=NUM_CLASSES, zero_init_residual=True, rngs=_rngs())
  for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
    for blk in stage:
      np.testing.assert_array_equal(blk.bn2.scale[...], 0.0)
      np.testing.assert_array_equal(blk.bn1.scale[...], 1.0)


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_param_count_matches_torchvision(name):
  abstract = nnx.eval_shape(lambda: create(name, num_classes=1000))
  assert param_count(abstract) == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])  # one per block type
def test_param_count_changes_by_fc_size(name):
  abstract = nnx.eval_shape(lambda: create(name, num_classes=1000))
  small = nnx.eval_shape(lambda: create(name, num_classes=3))
  # A 3-class head differs by exactly the fc weights and biases.
  fc_diff = (1000 - 3) * (abstract.num_features + 1)
  assert param_count(abstract) - param_count(small) == fc_diff


def test_param_count_excludes_batch_stats():
  model = create("resnet_tiny", num_classes=NUM_CLASSES, rngs=_rngs())
  n_stats = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.BatchStat)))
  n_all = sum(x.size for x in jax.tree.leaves(nnx.state(model)))
  assert n_stats > 0
  assert param_count(model) == n_all - n_stats


def test_unknown_model_lists_close_matches():
  with pytest.raises(ValueError) as exc:
    create("resnet5", num_classes=2)
  msg = str(exc.value)
  assert "'resnet5'" in msg
  assert "Did you mean" in msg and "resnet50" in msg
  assert "resnet_tiny" in msg  # the full list of available models


def test_parameter_paths_follow_torchvision():
  paths = {
    "/".join(map(str, k))
    for k, _ in nnx.to_flat_state(
      nnx.state(nnx.eval_shape(lambda: create("resnet18", num_classes=10)))
    )
  }
  for p in (
    "conv1/kernel",
    "bn1/scale",
    "bn1/mean",
    "layer1/0/conv1/kernel",
    "layer2/0/downsample/0/kernel",
    "layer2/0/downsample/1/var",
    "head/fc/kernel",
    "head/fc/bias",
  ):
    assert p in paths, p


# --- Parity with torchvision (optional: needs torch, which the library itself never imports) ---


def _torch_key_to_path(key: str, ndim: int) -> tuple[str | int, ...]:
  """The explicit torchvision -> NNX name map documented in jaxcxr/models/resnet.py."""
  *mods, leaf = key.split(".")
  if mods == ["fc"]:
    mods = ["head", "fc"]
  leaf = {
    "weight": "kernel" if ndim > 1 else "scale",
    "bias": "bias",
    "running_mean": "mean",
    "running_var": "var",
  }[leaf]
  return tuple(int(m) if m.isdigit() else m for m in mods) + (leaf,)


@pytest.mark.slow  # importing torch dominates: ~8 s
def test_parity_with_torchvision_resnet18(tmp_path):
  ref_file = tmp_path / "ref.npz"
  proc = subprocess.run(
    [sys.executable, str(HERE / "torch_reference.py"), "torchvision", "resnet18",
     "--num_classes", "10", "--size", "64", "--out", str(ref_file)],
    capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  if proc.returncode == 3:
    pytest.skip(f"reference torch unavailable: {proc.stderr.strip()}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  ref = np.load(ref_file)

  # Abstract model: every variable is replaced below (and the test checks that), so there is
  # no point paying for a random init.
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: create("resnet18", num_classes=10)))
  flat = dict(nnx.to_flat_state(abstract))
  loaded = {}
  for name in ref.files:
    if not name.startswith("sd/") or name.endswith("num_batches_tracked"):
      continue
    key, w = name[3:], ref[name]
    path = _torch_key_to_path(key, w.ndim)
    if w.ndim == 4:
      w = w.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    elif w.ndim == 2:
      w = w.T  # (out, in) -> (in, out)
    assert flat[path].shape == w.shape, (key, path)
    loaded[path] = flat[path].replace(jnp.asarray(w))
  assert set(loaded) == set(flat), f"unmapped NNX variables: {sorted(set(flat) - set(loaded))}"
  model = nnx.merge(graphdef, nnx.from_flat_state(loaded))

  x, want = ref["x"], ref["logits"]
  got = np.asarray(model(jnp.asarray(x.transpose(0, 2, 3, 1))))
  assert np.max(np.abs(got - want)) <= 1e-4, np.max(np.abs(got - want))


def test_stored_param_counts_match_the_built_tiny_models():
  """`default_cfg["num_params"]` (what `python -m jaxcxr.models` lists) is the built model's."""
  tiny = list_models("*tiny*")
  assert len(tiny) >= 6  # One per family.
  for name in tiny:
    abstract = nnx.eval_shape(lambda name=name: create(name, num_classes=1000))
    assert get_default_cfg(name)["num_params"] == param_count(abstract), name
  assert set(param_counts.NUM_PARAMS) == set(list_models())  # Every model has its count.


def test_model_listing_check_flag_fails_on_a_wrong_count(monkeypatch, capsys):
  from jaxcxr.models import __main__ as listing  # pylint: disable=g-import-not-at-top

  assert listing.check("resnet_tiny") == []
  cfg = dict(get_default_cfg("resnet_tiny"), num_params=1)
  monkeypatch.setattr(registry._MODELS["resnet_tiny"], "default_cfg", cfg)
  assert listing.check("resnet_tiny") == [
    f"resnet_tiny: stored 1, built {param_counts.NUM_PARAMS['resnet_tiny']}"
  ]
