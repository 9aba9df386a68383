"""Heads by name (jaxcxr.models.heads.NamedHead, config.model.head) against NumPy references of
their layer sequences, their initialisers, and through create_model with pretrained loading."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from jaxcxr import config_lib
from jaxcxr.models import groups, heads
from jaxcxr.training import model_init


def _p(module):
  return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(module, nnx.Param)))


def _bn_eval(x, bn, eps):
  return (x - bn["mean"]) / np.sqrt(bn["var"] + eps) * bn["scale"] + bn["bias"]


def _stats(module):
  return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(module, nnx.BatchStat)))


def _planted(head):
  """Random BN statistics and scales, so the reference sees every term."""
  rng = np.random.default_rng(0)
  state = nnx.state(head)
  leaves, tree = jax.tree.flatten(state)
  nnx.update(head, jax.tree.unflatten(tree, [
    np.abs(rng.normal(1.0, 0.3, np.shape(v))).astype(np.float32) for v in leaves
  ]))  # fmt: skip
  return head


def test_concat_pool_head_is_fastais_sequence():
  h = _planted(heads.NamedHead("concat_pool", 6, 3, hidden=(5,), drop_rate=0.5,
                               rngs=nnx.Rngs(0)))  # fmt: skip
  x = np.random.default_rng(1).normal(size=(2, 4, 4, 6)).astype(np.float32)
  p, s = _p(h), _stats(h)
  bn = lambda name, i=None: {**(p[name] if i is None else p[name][i]),
                             **(s[name] if i is None else s[name][i])}  # fmt: skip
  y = np.concatenate([x.max((1, 2)), x.mean((1, 2))], -1)  # fastai: max first, then avg
  y = _bn_eval(y, bn("bn_in"), 1e-5) @ p["dense"][0]["kernel"]
  y = _bn_eval(np.maximum(y, 0), bn("bns", 0), 1e-5) @ p["out"]["kernel"]
  assert "bias" not in p["out"] and "bias" not in p["dense"][0]  # fastai's LinBnDrop: no bias
  np.testing.assert_allclose(h(x, train=False), y, rtol=1e-4, atol=1e-5)


def test_flatten_bn_dense_head_is_alotaibis_keras_sequence():
  h = _planted(heads.NamedHead("flatten_bn_dense", 4, 2, feature_hw=(3, 3), drop_rate=0.6,
                               rngs=nnx.Rngs(0)))  # fmt: skip
  assert h.dense[0].out_features == 128  # Dense 128
  x = np.random.default_rng(2).normal(size=(2, 3, 3, 4)).astype(np.float32)
  p, s = _p(h), _stats(h)
  y = _bn_eval(x.reshape(2, -1), {**p["bn_in"], **s["bn_in"]}, 1e-3)  # Keras epsilon
  y = np.maximum(y @ p["dense"][0]["kernel"] + p["dense"][0]["bias"], 0)
  y = _bn_eval(y, {**p["bns"][0], **s["bns"][0]}, 1e-3)
  y = y @ p["out"]["kernel"] + p["out"]["bias"]
  np.testing.assert_allclose(h(x, train=False), y, rtol=1e-4, atol=1e-5)
  assert h.bn_in.momentum == 0.99  # Keras' BatchNormalization


@pytest.mark.parametrize("act", ["selu", "relu", "tanh"])
def test_gap_mlp_head_matches_its_activation_and_initialiser(act):
  h = heads.NamedHead("gap_mlp", 512, 3, hidden=(256, 256, 256), activation=act,
                      rngs=nnx.Rngs(0))  # fmt: skip
  k = np.asarray(h.dense[1].kernel[...])
  expected_std = {"selu": np.sqrt(1 / 256), "relu": np.sqrt(2 / 256),
                  "tanh": np.sqrt(2 / (256 + 256))}[act]  # lecun / he / glorot  # fmt: skip
  assert np.std(k) == pytest.approx(expected_std, rel=0.05)
  assert len(h.bns) == (0 if act == "selu" else 3)  # No BN with selu (self-normalising).
  x = np.random.default_rng(3).normal(size=(2, 2, 2, 512)).astype(np.float32)
  p = _p(h)
  fn = {"selu": jax.nn.selu, "relu": jax.nn.relu, "tanh": np.tanh}[act]
  y = x.mean((1, 2))
  for i in range(3):
    y = np.asarray(fn(y @ p["dense"][i]["kernel"] + p["dense"][i]["bias"]))
    if act != "selu":
      y = y / np.sqrt(1 + 1e-3)  # Fresh BN in eval mode: mean 0, var 1, scale 1, bias 0.
  y = y @ p["out"]["kernel"] + p["out"]["bias"]
  np.testing.assert_allclose(h(x, train=False), y, rtol=1e-4, atol=1e-4)


def test_named_head_through_create_model_replaces_the_head_group():
  c = config_lib.base_config()
  c.model_name, c.model.in_chans, c.input.image_size = "resnet_tiny", 1, 64
  c.model.head, c.model.head_hidden, c.model.drop_rate = "concat_pool", (16,), 0.5
  m = model_init.create_model(c, 3)
  assert isinstance(m.head, heads.NamedHead)
  x = np.zeros((2, 64, 64, 1), np.float32)
  assert m(x, train=True, rngs=jax.random.key(0)).shape == (2, 3)
  c.model.head = "flatten_bn_dense"
  m = model_init.create_model(c, 3)
  assert m.head.bn_in.num_features == m.head.num_features * 2 * 2  # 64 px / 32 = 2x2 map
  c.model.head, c.total_steps = "nope", 1
  with pytest.raises(ValueError, match="config.model.head='nope'"):
    config_lib.validate(c)


@pytest.mark.parametrize("name", ["efficientnet_tiny", "vgg_tiny"])
def test_named_head_replaces_the_classifier_of_efficientnet_and_vgg(name):
  # Rachha 2020 puts fastai's head on EfficientNet-B7 and VGG19-BN; Alotaibi 2020 the Keras
  # flatten head on VGG19: the named head reads the conv map and the family's classifier goes.
  c = config_lib.base_config()
  c.model_name, c.model.in_chans, c.input.image_size = name, 1, 64
  c.model.head, c.model.head_hidden = "concat_pool", (16,)
  m = model_init.create_model(c, 3)
  assert isinstance(m.head, heads.NamedHead) and m.classifier is None
  x = np.random.default_rng(0).normal(size=(2, 64, 64, 1)).astype(np.float32)
  feats = m.forward_features(x)
  np.testing.assert_allclose(np.asarray(m(x)), np.asarray(m.head(feats)), rtol=1e-6)
  assert m.head.num_features == feats.shape[-1]
  paths = ["/".join(map(str, k)) for k, _ in nnx.to_flat_state(nnx.state(m, nnx.Param))]
  g = groups.assign(name, paths)
  assert list(g)[-1] == "head"
  assert sorted(g["head"]) == sorted(p for p in paths if p.startswith("head/"))
  assert not any(p.startswith("classifier/") for p in paths)
  c.model.head = "flatten_bn_dense"
  m = model_init.create_model(c, 3)
  assert m.head.bn_in.num_features == feats.shape[-1] * 2 * 2  # 64 px / 32 = 2x2 map
