"""UNet (jaxcxr.models.unet): output shapes for every encoder, skips, input sizes, encoder taps.

Full-size encoders are checked abstractly (`nnx.eval_shape` + `jax.eval_shape`: shapes only, no
compute); the test variants run for real.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcxr import models
from jaxcxr.models import unet

UNETS = models.list_models("unet*")
MINI = [n for n in UNETS if n.endswith("_mini")]


def _rngs() -> nnx.Rngs:
  # 'rbg' keys: XLA:CPU compiles threefry-based initializers slowly (see test_models).
  return nnx.Rngs(jax.random.key(0, impl="rbg"))


def test_every_encoder_family_is_registered():
  assert {"unet", "unet_resnet34", "unet_resnet50", "unet_lite0", "unet_densenet121"} <= set(UNETS)
  assert MINI == ["unet_lite_mini", "unet_mini", "unet_resnet_mini"]


@pytest.mark.parametrize("name", UNETS)
def test_output_shape_of_every_encoder(name):
  model = nnx.eval_shape(lambda: models.create(name, num_classes=1))
  graphdef, state = nnx.split(model)
  for h, w in ((64, 64), (64, 96)):  # Square and not: any size divisible by the stride.
    x = jax.ShapeDtypeStruct((2, h, w, 3), jnp.float32)
    y = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, x)
    assert y.shape == (2, h, w, 1), name
  assert model.stride == (16 if name == "unet" else 8 if name == "unet_mini" else 32)


@pytest.mark.parametrize("name", MINI)
@pytest.mark.parametrize("train", [False, True])
def test_mini_variants_run(name, train):
  model = models.create(name, num_classes=2, in_chans=1, rngs=_rngs())
  x = jax.random.normal(jax.random.key(1), (2, 64, 32, 1))
  y = model(x, train=train)
  assert y.shape == (2, 64, 32, 2)
  assert bool(jnp.all(jnp.isfinite(y)))


def test_input_not_divisible_by_the_stride_is_an_error():
  model = models.create("unet_resnet_mini", num_classes=1, rngs=_rngs())
  with pytest.raises(ValueError, match="not divisible by its stride 32"):
    model(jnp.zeros((1, 48, 64, 3)))


def test_skips_at_every_stride():
  """The decoder's blocks take the encoder's taps, coarsest first, at each resolution."""
  model = models.create("unet_resnet_mini", num_classes=1, rngs=_rngs())
  taps = model.encoder.forward_stages(jnp.zeros((1, 64, 64, 3)))
  assert [t.shape[1] for t in taps] == [32, 16, 8, 4, 2]  # Strides 2 .. 32.
  chans = [t.shape[-1] for t in taps]
  dec = [16, 8, 8, 8, 8]
  ins = [blk.conv1.in_features for blk in model.decoder]
  # Upsampled previous map + the skip of that stride; the last block has no skip (stride 1).
  assert ins == [chans[4] + chans[3], dec[0] + chans[2], dec[1] + chans[1], dec[2] + chans[0], 8]


@pytest.mark.parametrize("name", ["resnet_tiny", "efficientnet_tiny", "densenet_tiny"])
def test_backbone_taps_end_where_forward_features_does(name):
  """`forward_stages`' taps follow the backbone's own forward: the last equals its feature map
  (ResNet, DenseNet) or its input to the head conv (EfficientNet)."""
  net = models.create(name, num_classes=0, rngs=_rngs())
  x = jax.random.normal(jax.random.key(3), (1, 64, 64, 3))
  taps = net.forward_stages(x)
  assert [64 // t.shape[1] for t in taps] == [2, 4, 8, 16, 32]
  if name == "efficientnet_tiny":
    want = net.act(net.bn2(net.conv_head(taps[-1]), use_running_average=True))
  else:
    want = taps[-1]
  np.testing.assert_allclose(want, net.forward_features(x), rtol=1e-5, atol=1e-5)


def test_plain_encoder_rejects_backbone_options():
  with pytest.raises(ValueError, match="plain UNet encoder takes no options"):
    unet.UNet("", num_classes=1, width=4, depth=2, rngs=_rngs(), zero_init_residual=True)
