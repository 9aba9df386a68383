"""Tests for DenseNet (Huang et al., 2017) and CheXNet weights (Rajpurkar et al., 2017).

Shape, dtype and train/eval behaviour of ``densenet_tiny`` are covered by the generic tests in
test_models.py. Here: parameter counts of the full-size models (abstract construction only),
the name map, rematerialisation, and parity with torchvision's DenseNet-121 and with a
CheXNet-style checkpoint through ``jaxcxr.weights.convert``, the path users' checkpoints take.
Both parity models have 14 outputs so that XLA compiles DenseNet-121 once for the two tests.
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

from jaxcxr.models import create, list_models, param_count
from jaxcxr.weights import convert
from jaxcxr.weights.maps import densenet as densenet_map

HERE = pathlib.Path(__file__).parent

# torchvision 0.29 `sum(p.numel() for p in densenet121(weights=None).parameters())` etc., with
# the 1000-class head (the figures in torchvision's weight tables).
TORCHVISION_PARAMS = {
  "densenet121": 7_978_856,
  "densenet169": 14_149_480,
  "densenet201": 20_013_928,
}


def _rngs(seed: int = 0) -> nnx.Rngs:
  # 'rbg' keys: XLA:CPU compiles threefry-based initializers slowly.
  return nnx.Rngs(jax.random.key(seed, impl="rbg"))


@functools.cache
def _abstract(name: str) -> nnx.Module:
  """The model with torchvision's 1000-class head, built abstractly (shapes only); shared."""
  return nnx.eval_shape(lambda: create(name, num_classes=1000))


def _run_reference(script: str, *args: str) -> None:
  proc = subprocess.run(
    [sys.executable, str(HERE / script), *args], capture_output=True, text=True, timeout=600
  )
  if proc.returncode == 3:
    pytest.skip(f"reference torch unavailable: {proc.stderr.strip()}")
  assert proc.returncode == 0, proc.stderr[-3000:]


def _state_dict(ref: np.lib.npyio.NpzFile) -> dict[str, np.ndarray]:
  return {k[len("sd/") :]: ref[k] for k in ref.files if k.startswith("sd/")}


@functools.partial(jax.jit, static_argnums=0)
def _eval_logits(graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array) -> jax.Array:
  # Jitted because XLA:CPU runs DenseNet-121 op by op ~4x slower to first result than it
  # compiles it whole; `graphdef` is static, so models of the same structure share the compile.
  return nnx.merge(graphdef, state)(x, train=False)


def _load_densenet121(state_dict: dict[str, np.ndarray], num_classes: int) -> nnx.Module:
  # Abstract model: merge_into replaces every variable (or fails), so a random init is wasted.
  model = nnx.eval_shape(lambda: create("densenet121", num_classes=num_classes))
  flat = convert.torch_to_flat(state_dict, densenet_map.TORCHVISION_RULES)
  convert.merge_into(model, flat, first_conv="features.conv0")
  return model


def _logits(model: nnx.Module, x_nchw: np.ndarray) -> np.ndarray:
  return np.asarray(_eval_logits(*nnx.split(model), jnp.asarray(x_nchw.transpose(0, 2, 3, 1))))


def test_registered_names():
  assert list_models("densenet*") == [
    "densenet121",
    "densenet169",
    "densenet201",
    "densenet_tiny",
  ]


@pytest.mark.parametrize(
  "name",
  [
    "densenet121",
    # Tracing the init of the deeper models takes 5-10 s each on 2 CPU cores.
    pytest.param("densenet169", marks=pytest.mark.slow),
    pytest.param("densenet201", marks=pytest.mark.slow),
  ],
)
def test_param_count_matches_torchvision(name):
  assert param_count(_abstract(name)) == TORCHVISION_PARAMS[name]


def test_parameter_paths_follow_torchvision():
  model = _abstract("densenet121")
  assert model.num_features == 1024
  paths = {convert.path_str(p) for p, _ in nnx.to_flat_state(nnx.state(model))}
  for p in (
    "features.conv0.kernel",
    "features.norm0.mean",
    "features.denseblock1.denselayer6.norm1.scale",
    "features.denseblock3.denselayer24.conv2.kernel",
    "features.transition3.conv.kernel",
    "features.transition1.norm.var",
    "features.norm5.bias",
    "head.fc.kernel",
  ):
    assert p in paths, p
  assert "features.denseblock3.denselayer25.conv1.kernel" not in paths
  assert "features.transition4.conv.kernel" not in paths


def test_torchvision_rules():
  sd = {
    # Current torchvision names, and the old ones of its ImageNet files and CheXNet.
    "features.denseblock1.denselayer1.norm1.weight": np.ones(4),
    "features.denseblock2.denselayer10.norm.2.running_var": np.ones(4),
    "features.denseblock2.denselayer10.conv.2.weight": np.ones((8, 4, 3, 3)),
    "features.denseblock2.denselayer10.norm.2.num_batches_tracked": np.array(0),
    "features.transition1.norm.weight": np.ones(4),
    "classifier.weight": np.ones((14, 4)),
    "classifier.bias": np.ones(14),
  }
  assert sorted(convert.torch_to_flat(sd, densenet_map.TORCHVISION_RULES)) == [
    "features.denseblock1.denselayer1.norm1.scale",
    "features.denseblock2.denselayer10.conv2.kernel",
    "features.denseblock2.denselayer10.norm2.var",
    "features.transition1.norm.scale",  # a transition's `norm.` is not an old dense-layer name
    "head.fc.bias",
    "head.fc.kernel",
  ]


@pytest.mark.parametrize(
  "wrap",
  [
    lambda sd: {"epoch": 3, "state_dict": {f"module.densenet121.{k}": v for k, v in sd.items()}},
    lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "best_loss": 0.1},
    lambda sd: sd,
  ],
  ids=["arnoweng", "dataparallel", "bare"],
)
def test_chexnet_state_dict_unwraps(wrap):
  sd = {
    "features.denseblock1.denselayer1.conv.1.weight": np.ones((8, 4, 1, 1), np.float32),
    "features.norm5.running_mean": np.zeros(4, np.float32),
    "classifier.0.weight": np.ones((14, 4), np.float32),
    "classifier.0.bias": np.ones(14, np.float32),
  }
  assert sorted(densenet_map.chexnet_state_dict(wrap(sd))) == [
    "classifier.bias",
    "classifier.weight",
    "features.denseblock1.denselayer1.conv1.weight",
    "features.norm5.running_mean",
  ]


def test_chexnet_state_dict_errors():
  with pytest.raises(ValueError, match="classifier.0.weight"):
    densenet_map.chexnet_state_dict({"state_dict": {"module.features.conv0.weight": np.ones(1)}})
  with pytest.raises(ValueError, match="top-level keys"):
    densenet_map.chexnet_state_dict({"epoch": 1, "best_loss": 0.1})


def test_chexnet_classes():
  assert len(densenet_map.CHEXNET_CLASSES) == 14
  assert densenet_map.CHEXNET_CLASSES[:3] == ("Atelectasis", "Cardiomegaly", "Effusion")
  assert densenet_map.CHEXNET_CLASSES[6] == "Pneumonia"
  assert densenet_map.CHEXNET_CLASSES[-2:] == ("Pleural_Thickening", "Hernia")


@pytest.mark.slow  # compiles two value_and_grads of densenet_tiny: ~15 s on 2 CPU cores
def test_memory_efficient_same_loss_stats_and_gradients():
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  labels = jnp.array([0, 2])

  def train_step(memory_efficient: bool):
    model = create("densenet_tiny", num_classes=3, memory_efficient=memory_efficient, rngs=_rngs())
    graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)

    def loss_fn(params):
      m = nnx.merge(graphdef, params, stats, copy=True)
      logits = m(x, train=True)
      loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))
      return loss, nnx.state(m, nnx.BatchStat)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    # One rematerialised region per dense layer (`remat`, named `checkpoint` in some JAX
    # versions) in the differentiated program, or none.
    jaxpr = str(jax.make_jaxpr(grad_fn)(params))
    num_remat = jaxpr.count("remat") + jaxpr.count("checkpoint")
    assert num_remat == (8 if memory_efficient else 0), num_remat
    (loss, new_stats), grads = jax.jit(grad_fn)(params)
    return loss, new_stats, grads

  plain, remat = train_step(False), train_step(True)
  assert remat[2]["features"]["denseblock2"]["denselayer2"]["conv1"]["kernel"][...].any()
  # Recomputation reorders floating-point work inside XLA's fusions: equal up to rounding.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), plain, remat)


@pytest.fixture(scope="module")
def chexnet_reference(tmp_path_factory) -> tuple[np.lib.npyio.NpzFile, pathlib.Path]:
  tmp = tmp_path_factory.mktemp("chexnet")
  _run_reference(
    "chexnet_reference.py",
    *("--size", "64", "--out", str(tmp / "ref.npz"), "--save_pth_tar", str(tmp / "model.pth.tar")),
    *("--save_jrzech", str(tmp / "jrzech")),
  )
  return np.load(tmp / "ref.npz"), tmp / "model.pth.tar"


@pytest.mark.slow  # torch in a subprocess (~10 s) and one DenseNet-121 compile (~15 s)
def test_parity_with_torchvision_densenet121(tmp_path):
  ref_file = tmp_path / "ref.npz"
  _run_reference(
    "torch_reference.py",
    *("torchvision", "densenet121", "--num_classes", "14", "--size", "64", "--out", str(ref_file)),
  )
  ref = np.load(ref_file)
  model = _load_densenet121(_state_dict(ref), num_classes=14)
  got = _logits(model, ref["x"])
  assert np.max(np.abs(got - ref["logits"])) <= 1e-4, np.max(np.abs(got - ref["logits"]))


@pytest.mark.slow  # torch in a subprocess (~10 s); the compile is shared with the test above
def test_parity_with_chexnet_checkpoint(chexnet_reference):
  ref, _ = chexnet_reference
  checkpoint = {"epoch": 1, "state_dict": _state_dict(ref), "best_loss": 0.1}
  model = _load_densenet121(densenet_map.chexnet_state_dict(checkpoint), num_classes=14)
  probs = np.asarray(jax.nn.sigmoid(_logits(model, ref["x"])))
  assert np.max(np.abs(probs - ref["probs"])) <= 1e-4, np.max(np.abs(probs - ref["probs"]))
  # Logits too: the sigmoid flattens differences of saturated outputs.
  got = _logits(model, ref["x"])
  assert np.max(np.abs(got - ref["logits"])) <= 1e-4, np.max(np.abs(got - ref["logits"]))


@pytest.mark.slow  # shares the subprocess above
def test_chexnet_pth_tar_through_read_checkpoint(chexnet_reference):
  from jaxcxr.weights.readers import read_checkpoint

  ref, pth_tar = chexnet_reference
  checkpoint = read_checkpoint(pth_tar)  # legacy (pre-zip) torch.save format, as in 2017
  assert checkpoint["epoch"] == 1 and "optimizer" in checkpoint
  got = densenet_map.chexnet_state_dict(checkpoint)
  want = densenet_map.chexnet_state_dict({"state_dict": _state_dict(ref)})
  assert sorted(got) == sorted(want)
  for key, value in want.items():
    np.testing.assert_array_equal(got[key], value, err_msg=key)


@pytest.mark.slow  # shares the subprocess and the compile above
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_parity_with_jrzech_whole_model_checkpoint(chexnet_reference, fmt):
  """jrzech/reproduce-chexnet's `{'model': <pickled DenseNet-121>, ...}`, read without torch."""
  from jaxcxr.weights import pretrained, readers

  ref, pth_tar = chexnet_reference
  path = pth_tar.parent / f"jrzech_{fmt}"
  checkpoint = readers.read_checkpoint(path)
  assert checkpoint["epoch"] == 1 and checkpoint["LR"] == 1e-3
  assert isinstance(checkpoint["rng_state"], np.ndarray)
  # The registry entry's rules, on what `load_pretrained` passes them.
  flat = pretrained.get_pretrained_cfg("densenet121.chexnet_jrzech").rules(
    readers.find_state_dict(checkpoint)
  )
  assert {"head.fc.kernel", "head.fc.bias", "features.conv0.kernel"} <= set(flat)
  model = _load_densenet121(densenet_map.chexnet_state_dict(checkpoint["model"]), num_classes=14)
  got = _logits(model, ref["x"])
  assert np.max(np.abs(got - ref["logits"])) <= 1e-4, np.max(np.abs(got - ref["logits"]))
  probs = np.asarray(jax.nn.sigmoid(got))
  assert np.max(np.abs(probs - ref["probs"])) <= 1e-4, np.max(np.abs(probs - ref["probs"]))
