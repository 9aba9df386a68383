"""Starting training from pretrained weights (`config.model_init`)."""

import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from jaxcxr import config_lib, models, train
from tests.conftest import REPO


def _config(**kw):
  c = config_lib.base_config()
  for k, v in kw.items():
    c[k] = v
  return c


def test_init_from_a_converted_checkpoint_directory(tmp_path):
  c = _config(model_name="resnet_tiny")
  c.model.in_chans = 1
  source = models.create("resnet_tiny", num_classes=3, in_chans=1, rngs=nnx.Rngs(123))
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(tmp_path / "ckpt", nnx.state(source))
  c.model_init = str(tmp_path / "ckpt")
  model = train.create_model(c, 3)
  for a, b in zip(
    jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(source)), strict=True
  ):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_init_from_a_torchvision_file_for_a_new_task(tmp_path):
  ref, pth = tmp_path / "ref.npz", tmp_path / "resnet18.pth"
  proc = subprocess.run(
    [sys.executable, str(REPO / "tests" / "torch_reference.py"), "torchvision", "resnet18",
     "--num_classes", "1000", "--out", str(ref), "--save_pth", str(pth)],
    capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  if proc.returncode == 3:
    pytest.skip(f"reference torch unavailable: {proc.stderr.strip()}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  c = _config(model_name="resnet18", model_init=str(pth))
  c.model.in_chans = 1
  model = train.create_model(c, 3)  # A 3-class grey-image task from 1000-class RGB weights.
  sd = np.load(ref)
  np.testing.assert_allclose(
    model.layer1[0].conv1.kernel.value, sd["sd/layer1.0.conv1.weight"].transpose(2, 3, 1, 0)
  )
  np.testing.assert_allclose(
    model.conv1.kernel.value[:, :, 0, :],
    sd["sd/conv1.weight"].sum(axis=1).transpose(1, 2, 0),
    rtol=1e-6,
    atol=1e-6,
  )
  assert model.head.fc.kernel.value.shape == (512, 3)
  # The same through the registry's `pretrained=` argument.
  direct = models.create("resnet18", num_classes=3, in_chans=1, pretrained=str(pth))
  np.testing.assert_array_equal(direct.conv1.kernel.value, model.conv1.kernel.value)
  # A typo in dont_load's target or a wrong architecture is an error, never a partial load.
  c_bad = _config(model_name="resnet34", model_init=str(pth))
  with pytest.raises(ValueError, match="missing"):
    train.create_model(c_bad, 3)


def test_create_with_pretrained_names_a_missing_tag_clearly():
  with pytest.raises(ValueError, match="resnet18.no_such_tag"):
    models.create("resnet18", num_classes=3, pretrained="no_such_tag")
  with pytest.raises(ValueError, match="No pretrained weights named 'resnet_tiny'"):
    models.create("resnet_tiny", num_classes=3, pretrained=True)
