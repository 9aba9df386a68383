"""The pretrained-weights registry: timm-style ``arch.tag`` names, downloads and loading.

Each entry is a frozen :class:`PretrainedCfg`: where the checkpoint lives (a URL, or a Hugging
Face hub id and file name), the family's name map, and how the weights expect their inputs
(mean/std, input size, crop, interpolation and the preprocessing mode). Families register their
entries with :func:`register_pretrained` in their own name-map module,
``jaxcxr/weights/maps/<family>.py``; every module of that package is imported the first time
the registry is read, so a new family needs no edit here.

Example::

    from jaxcxr import models
    from jaxcxr.weights import pretrained

    model = models.create('resnet50', num_classes=14, in_chans=1)
    report = pretrained.load_pretrained(model, 'resnet50.tv2_in1k')    # download + cache
    report = pretrained.load_pretrained(model, 'weights.pth', arch='resnet50')  # a local file
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import importlib
import os
import pathlib
import pkgutil
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
from flax import nnx

from jaxcxr.constants import IMAGENET_MEAN, IMAGENET_STD
from jaxcxr.weights import convert, readers

__all__ = [
  "DownloadError",
  "LoadReport",
  "PretrainedCfg",
  "download",
  "get_pretrained_cfg",
  "list_pretrained",
  "load_pretrained",
  "pretrained_tags",
  "register_pretrained",
]

# Keras 'caffe' mode: BGR channel order, 0-255 pixels minus these (B, G, R) means, no scaling.
CAFFE_MEAN = (103.939, 116.779, 123.68)
# Keras/TF 'tf' mode: pixels scaled to [-1, 1], i.e. (x / 255 - 0.5) / 0.5.
TF_MEAN = TF_STD = (0.5, 0.5, 0.5)

Mode = Literal["torch", "caffe", "tf"]
# A state dict (torch names) -> flat NNX dict, for checkpoints that need more than renames.
Preprocess = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class PretrainedCfg:
  """One set of pretrained weights for one architecture.

  Attributes:
    arch: the registered model name (`jaxcxr.models.list_models()`), e.g. `resnet50`.
    tag: what the weights are, timm-style (`tv_in1k`, `a1_in1k`); the full name is `arch.tag`.
    rules: the family's name map (`(regex, replacement)` rules for `convert.torch_to_flat`), or
      a callable `state_dict -> flat NNX dict` for checkpoints that need more than renames.
    url: a direct download URL, or
    hf_hub_id: a Hugging Face hub repository (`timm/resnet50.a1_in1k`) with
    filename: the file in it (`model.safetensors`), or
    local_file: a function returning the path of a checkpoint shipped in an installed package
      (nothing is downloaded); it raises `DownloadError` when the package is missing.
    file_format: 'torch', 'safetensors' or 'keras_h5'.
    mean, std: per-channel normalisation, in the scale `mode` says.
    input_size: (C, H, W) the weights were evaluated at.
    crop_pct: centre-crop fraction at evaluation (resize to size / crop_pct, then crop).
    interpolation: resize filter ('bilinear', 'bicubic').
    mode: 'torch' (RGB in [0, 1], then mean/std), 'caffe' (BGR, 0-255 minus mean) or 'tf'
      (RGB scaled to [-1, 1]).
    first_conv: dotted NNX path of the first conv (adapted to `in_chans`).
    classifier: dotted NNX path(s) of the classifier, left as initialised for a new task.
    num_classes: classes of the checkpoint's classifier.
    source: where the weights come from, for people.
    license: the weights' license.
  """

  arch: str
  tag: str
  rules: tuple[convert.Rule, ...] | Preprocess
  url: str | None = None
  hf_hub_id: str | None = None
  filename: str | None = None
  local_file: Callable[[], str] | None = None
  file_format: Literal["torch", "safetensors", "keras_h5"] = "torch"
  mean: tuple[float, ...] = IMAGENET_MEAN
  std: tuple[float, ...] = IMAGENET_STD
  input_size: tuple[int, int, int] = (3, 224, 224)
  crop_pct: float = 0.875
  interpolation: str = "bilinear"
  mode: Mode = "torch"
  first_conv: str = "conv1"
  classifier: str | tuple[str, ...] = "head.fc"
  num_classes: int = 1000
  source: str = ""
  license: str = ""

  def __post_init__(self):
    if sum(x is not None for x in (self.url, self.hf_hub_id, self.local_file)) != 1:
      raise ValueError(f"{self.name}: give exactly one of url and hf_hub_id (or local_file).")
    if self.hf_hub_id is not None and not self.filename:
      raise ValueError(f"{self.name}: a hub checkpoint needs its filename.")
    if self.mode not in ("torch", "caffe", "tf"):
      raise ValueError(f"{self.name}: mode must be 'torch', 'caffe' or 'tf', not {self.mode!r}.")

  @property
  def name(self) -> str:
    return f"{self.arch}.{self.tag}"

  @property
  def download_url(self) -> str | None:
    """Where the checkpoint is downloaded from; `None` for a package's `local_file`."""
    if self.url is not None:
      return self.url
    if self.hf_hub_id is not None:
      return f"https://huggingface.co/{self.hf_hub_id}/resolve/main/{self.filename}"
    return None

  @property
  def classifier_patterns(self) -> tuple[str, ...]:
    """`dont_load` regexes that select the classifier's variables."""
    names = (self.classifier,) if isinstance(self.classifier, str) else self.classifier
    return tuple(rf"^{re.escape(n)}\." for n in names)


_PRETRAINED: dict[str, PretrainedCfg] = {}
_discovered = False


def register_pretrained(cfg: PretrainedCfg) -> PretrainedCfg:
  """Adds `cfg` to the registry under `cfg.name` (call it at import of the family's map)."""
  if cfg.name in _PRETRAINED:
    raise ValueError(f"Pretrained weights {cfg.name!r} are already registered.")
  _PRETRAINED[cfg.name] = cfg
  return cfg


def _registry() -> dict[str, PretrainedCfg]:
  """The registry, after importing every `jaxcxr.weights.maps` module (they register entries)."""
  global _discovered
  if not _discovered:
    _discovered = True
    from jaxcxr.weights import maps

    for info in pkgutil.iter_modules(maps.__path__):
      importlib.import_module(f"{maps.__name__}.{info.name}")
  return _PRETRAINED


def list_pretrained(pattern: str = "*") -> list[str]:
  """Sorted `arch.tag` names matching the `fnmatch` pattern (`'resnet50.*'`, `'*in1k'`)."""
  return sorted(n for n in _registry() if fnmatch.fnmatchcase(n, pattern))


def get_pretrained_cfg(name: str) -> PretrainedCfg:
  """The config registered as `name` (`arch.tag`); a bare `arch` gives its first registered tag."""
  registry = _registry()
  if name in registry:
    return registry[name]
  if "." not in name:
    tags = [n for n in registry if n.split(".", 1)[0] == name]
    if tags:
      return registry[tags[0]]
  raise ValueError(
    f"No pretrained weights named {name!r}. Available: {sorted(registry)}. "
    "To load a local file, pass its path and arch=<model name>."
  )


class DownloadError(OSError):
  """A checkpoint could not be downloaded."""


def _cache_root(cache_dir: str | os.PathLike | None) -> pathlib.Path:
  if cache_dir is not None:
    return pathlib.Path(cache_dir)
  if "JAXCXR_CACHE" in os.environ:
    return pathlib.Path(os.environ["JAXCXR_CACHE"])
  return pathlib.Path.home() / ".cache" / "jaxcxr"


def download(cfg: PretrainedCfg, cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """Downloads the checkpoint of `cfg` once and returns its local path.

  Files are cached as `<cache>/<arch.tag>/<file name>`, with `<cache>` = `cache_dir`, else
  `$JAXCXR_CACHE`, else `~/.cache/jaxcxr`. The download goes to a temporary file that is renamed
  into place when complete, so an interrupted download never leaves a truncated checkpoint. A
  URL whose file name carries a hash prefix (torchvision's `resnet50-0676ba61.pth`) is checked
  against the file's SHA-256. A `local_file` checkpoint (shipped in a package) is returned where
  it lies, without copying or network access.

  Raises:
    DownloadError: the URL is unreachable (e.g. offline), the hash does not match, or a
      `local_file` checkpoint is missing.
  """
  if cfg.local_file is not None:
    path = pathlib.Path(cfg.local_file())
    if not path.is_file():
      raise DownloadError(f"{cfg.name}: the packaged checkpoint {path} does not exist.")
    return path
  url = cfg.download_url
  basename = cfg.filename or url.rsplit("/", 1)[-1]
  dest = _cache_root(cache_dir) / cfg.name / basename
  if dest.is_file():
    return dest
  dest.parent.mkdir(parents=True, exist_ok=True)
  expected = re.search(r"-([0-9a-f]{8,})\.", basename) if cfg.url else None
  sha = hashlib.sha256()
  fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{basename}.", suffix=".part")
  try:
    with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
      while chunk := response.read(1 << 20):
        out.write(chunk)
        sha.update(chunk)
    if expected and not sha.hexdigest().startswith(expected.group(1)):
      raise DownloadError(
        f"Downloaded {url} but its SHA-256 {sha.hexdigest()[:12]}... does not start with "
        f"{expected.group(1)} (corrupted or changed file)."
      )
    os.replace(tmp, dest)
  except (urllib.error.URLError, OSError) as e:
    if isinstance(e, DownloadError):
      raise
    raise DownloadError(
      f"Could not download {cfg.name} from {url} ({e}). If this machine is offline, fetch the "
      f"file elsewhere and pass its local path instead: load_pretrained(model, "
      f"'/path/to/{basename}', arch={cfg.arch!r}), or place it at {dest}."
    ) from e
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return dest


@dataclasses.dataclass(frozen=True)
class LoadReport:
  """What `load_pretrained` did.

  Attributes:
    source: the checkpoint (registry name and path).
    loaded: number of model variables replaced from the checkpoint.
    kept: NNX paths left as initialised (the classifier when the class count differs, and
      whatever `dont_load` named).
  """

  source: str
  loaded: int
  kept: tuple[str, ...]

  def __str__(self) -> str:
    kept = f"; kept as initialised: {list(self.kept)}" if self.kept else ""
    return f"Loaded {self.loaded} tensors from {self.source}{kept}"


def _checkpoint_classes(flat: Mapping[str, np.ndarray], cfg: PretrainedCfg) -> int | None:
  """The class count of the checkpoint's classifier (its bias length), if it has one."""
  names = (cfg.classifier,) if isinstance(cfg.classifier, str) else cfg.classifier
  for name in names:
    for leaf in ("bias", "kernel"):
      if f"{name}.{leaf}" in flat:
        return int(np.shape(flat[f"{name}.{leaf}"])[0])  # torch layout: (out, ...)
  return None


def load_pretrained(
  model: nnx.Module,
  name_or_path: str | os.PathLike,
  *,
  arch: str | None = None,
  dont_load: Sequence[str] | None = None,
  num_classes: int | None = None,
  cache_dir: str | os.PathLike | None = None,
) -> LoadReport:
  """Loads pretrained weights into `model` in place, failing loudly on any mismatch.

  The classifier is left as initialised when the model's `num_classes` differs from the
  checkpoint's (a new task); the first conv is adapted to the model's input channels (summed
  RGB kernels for 1-channel X-rays).

  Args:
    model: an initialised model of the right architecture.
    name_or_path: a registered `arch.tag` (downloaded and cached), or a local checkpoint file
      (safetensors, torch `.pth`/`.bin`/`.pth.tar`, Keras `.h5`); a local file needs `arch`.
    arch: for a local file, the registered name (`resnet50`) or `arch.tag` whose name map,
      first conv and classifier apply.
    dont_load: more regexes of NNX paths to keep as initialised.
    num_classes: the checkpoint's class count, if it cannot be read from its classifier.
    cache_dir: where downloads are cached (see `download`).

  Returns:
    A `LoadReport`: how many tensors were loaded and which variables were kept.

  Raises:
    ValueError: unknown name, a local file without `arch`, or names/shapes that do not match.
    DownloadError: a registered checkpoint could not be downloaded.
  """
  name = os.fspath(name_or_path)
  if os.path.isfile(name):
    if arch is None:
      raise ValueError(
        f"Loading the local file {name} needs arch=<model name> (e.g. arch='resnet50') to pick "
        "the name map; registered weights: list_pretrained()."
      )
    cfg, path = get_pretrained_cfg(arch), pathlib.Path(name)
  elif name in _registry():
    cfg = _registry()[name]
    path = download(cfg, cache_dir)
  else:
    raise ValueError(
      f"{name!r} is neither a file nor registered pretrained weights. "
      f"Available: {list_pretrained()}."
    )
  source = f"{cfg.name} ({path})"
  state_dict = readers.find_state_dict(readers.read_checkpoint(path))
  if callable(cfg.rules):
    flat = cfg.rules(state_dict)
  else:
    flat = convert.torch_to_flat(state_dict, cfg.rules)

  skip = list(dont_load or ())
  ckpt_classes = num_classes or _checkpoint_classes(flat, cfg) or cfg.num_classes
  if getattr(model, "num_classes", ckpt_classes) != ckpt_classes:
    skip += cfg.classifier_patterns
  kept = convert.merge_into(model, flat, dont_load=skip, first_conv=cfg.first_conv, source=source)
  total = len(nnx.to_flat_state(nnx.state(model)))
  return LoadReport(source=source, loaded=total - len(kept), kept=tuple(kept))


def pretrained_tags(arch: str) -> list[str]:
  """The tags registered for `arch` (`['a1_in1k', 'tv_in1k']` for `resnet50`)."""
  return sorted(n.split(".", 1)[1] for n in _registry() if n.split(".", 1)[0] == arch)
