"""Helpers shared by the explanation tests: run explain_reference.py, load its weights."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from jaxcxr.models import create
from jaxcxr.weights import convert
from jaxcxr.weights.maps import densenet as densenet_map
from jaxcxr.weights.maps import resnet as resnet_map
from jaxcxr.weights.maps import vgg as vgg_map

HERE = pathlib.Path(__file__).parent

_MAPS = {
  "resnet": (resnet_map.TORCHVISION_RULES, "conv1"),
  "densenet": (densenet_map.TORCHVISION_RULES, "features.conv0"),
  "vgg": (vgg_map.TORCHVISION_RULES, "features.0"),
}


def reference(tmp_path: pathlib.Path, *args: str) -> np.lib.npyio.NpzFile:
  """Runs explain_reference.py with ``args`` and loads its npz; skips without the references."""
  out = tmp_path / "ref.npz"
  proc = subprocess.run(
    [sys.executable, str(HERE / "explain_reference.py"), *args, "--out", str(out)],
    capture_output=True,
    text=True,
    timeout=600,
  )
  if proc.returncode == 3:
    pytest.skip(f"reference torch / grad-cam / zennit unavailable: {proc.stderr.strip()}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return np.load(out)


def load_torchvision(arch: str, ref: np.lib.npyio.NpzFile) -> nnx.Module:
  """jaxcxr's ``arch`` holding the reference's torchvision weights, through the family's map."""
  rules, first_conv = next(v for k, v in _MAPS.items() if arch.startswith(k))
  sd = {k[len("sd/") :]: ref[k] for k in ref.files if k.startswith("sd/")}
  # Abstract model: merge_into replaces every variable (or fails), so a random init is wasted.
  model = nnx.eval_shape(lambda: create(arch, num_classes=1000))
  convert.merge_into(model, convert.torch_to_flat(sd, rules), first_conv=first_conv)
  return model


def nhwc(x_nchw: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))
