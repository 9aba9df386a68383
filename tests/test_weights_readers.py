"""Tests for jaxcxr.weights.readers: torch, safetensors and Keras files read without torch/TF.

The files are written by torch / Keras in subprocesses (importing torch after TensorFlow
segfaults, and the point is that this process never needs either).
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from jaxcxr.weights import readers

HERE = pathlib.Path(__file__).parent


def _run(args: list[str], what: str) -> None:
  proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
  if proc.returncode == 3 or "No module named" in proc.stderr:
    pytest.skip(f"{what} unavailable: {proc.stderr.strip()[-300:]}")
  assert proc.returncode == 0, proc.stderr[-3000:]


# Saves the same kinds of files users have, beside torch_reference.py's plain state dict.
_TORCH_SAVES = """
import sys, collections, torch, torchvision
out = sys.argv[1]
model = torchvision.models.resnet18(weights=None, num_classes=10)
sd = torch.load(f"{out}/sd.pth")  # torch_reference.py's state dict, so values can be compared
model.load_state_dict(sd)
torch.save(sd, f"{out}/legacy.pth", _use_new_zipfile_serialization=False)
torch.save(model, f"{out}/module.pth")
base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
extra = {
  "view": base[1:, ::2],  # storage offset 6, strides (6, 2), shares base's storage
  "base": base,
  "half": torch.linspace(-1, 1, 5).half(),
  "bf16": torch.linspace(-1, 1, 5).bfloat16(),
  "long": torch.arange(3),
  "flag": torch.tensor([True, False]),
  "scalar": torch.tensor(2.5),
}
torch.save(extra, f"{out}/dtypes.pth")
torch.save(extra, f"{out}/dtypes_legacy.pth", _use_new_zipfile_serialization=False)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
model(torch.randn(2, 3, 32, 32)).sum().backward()
opt.step()
nested = {
  "epoch": 7,
  "best_auc": 0.84,
  "arch": "resnet18",
  "state_dict": collections.OrderedDict(("module." + k, v) for k, v in sd.items()),
  "optimizer": opt.state_dict(),
}
torch.save(nested, f"{out}/nested.pth.tar")
# Whole pickled models: allowed classes only (weights.torch_modules), else refused by name.
head = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Sigmoid())
torch.save({"model": head, "epoch": 2}, f"{out}/whole_zip.pth")
torch.save({"model": head}, f"{out}/whole_legacy.pth", _use_new_zipfile_serialization=False)
torch.save(head.state_dict(), f"{out}/whole_sd.pth")
tanh = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh())
torch.save({"model": tanh}, f"{out}/tanh_zip.pth")
torch.save({"model": tanh}, f"{out}/tanh_legacy.pth", _use_new_zipfile_serialization=False)
"""


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp("torch_files")
  _run(
    [sys.executable, str(HERE / "torch_reference.py"), "torchvision", "resnet18",
     "--num_classes", "10", "--size", "32", "--out", str(out / "ref.npz"),
     "--save_pth", str(out / "sd.pth"), "--save_safetensors", str(out / "sd.safetensors")],
    "reference torch",
  )  # fmt: skip
  _run([sys.executable, "-c", _TORCH_SAVES, str(out)], "reference torch")
  return out


def _reference_sd(torch_files: pathlib.Path) -> dict[str, np.ndarray]:
  ref = np.load(torch_files / "ref.npz")
  return {k[3:]: ref[k] for k in ref.files if k.startswith("sd/")}


def _assert_same(got: dict, want: dict) -> None:
  assert sorted(got) == sorted(want)
  for k, w in want.items():
    assert got[k].dtype == w.dtype, k
    np.testing.assert_array_equal(got[k], w, err_msg=k)


@pytest.mark.slow  # the torch subprocesses: ~10 s
@pytest.mark.parametrize("name", ["sd.pth", "sd.safetensors"])
def test_state_dict_equals_torch(torch_files, name):
  got = readers.read_checkpoint(torch_files / name)
  _assert_same(got, _reference_sd(torch_files))
  # Read without torch: in a fresh process where `import torch` fails (other tests in this
  # process may have imported torch, so sys.modules here proves nothing).
  code = (
    "import sys; sys.modules['torch'] = None\n"
    "from jaxcxr.weights import readers\n"
    "print(len(readers.read_checkpoint(sys.argv[1])))"
  )
  proc = subprocess.run(
    [sys.executable, "-c", code, str(torch_files / name)], capture_output=True, text=True
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert int(proc.stdout.strip().splitlines()[-1]) == len(got)


@pytest.mark.slow
def test_legacy_format(torch_files):
  with open(torch_files / "legacy.pth", "rb") as f:
    assert not f.read(4).startswith(b"PK")  # really the pre-1.6 format
  _assert_same(readers.read_torch(torch_files / "legacy.pth"), _reference_sd(torch_files))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dtypes.pth", "dtypes_legacy.pth"])
def test_dtypes_views_and_strides(torch_files, name):
  d = readers.read_torch(torch_files / name)
  base = np.arange(24, dtype=np.float32).reshape(4, 6)
  np.testing.assert_array_equal(d["base"], base)
  np.testing.assert_array_equal(d["view"], base[1:, ::2])
  assert d["half"].dtype == np.float16
  np.testing.assert_array_equal(d["half"], np.linspace(-1, 1, 5).astype(np.float16))
  assert d["bf16"].dtype == np.float32  # bfloat16 -> float32, exactly
  np.testing.assert_array_equal(d["bf16"], [-1.0, -0.5, 0.0, 0.5, 1.0])
  assert d["long"].dtype == np.int64 and d["long"].tolist() == [0, 1, 2]
  assert d["flag"].tolist() == [True, False]
  assert d["scalar"].shape == () and float(d["scalar"]) == 2.5


@pytest.mark.slow
def test_pickled_module_is_refused_with_the_fix(torch_files):
  path = torch_files / "module.pth"
  with pytest.raises(ValueError) as exc:
    readers.read_checkpoint(path)
  msg = str(exc.value)
  assert str(path) in msg
  assert "torchvision.models.resnet.ResNet" in msg and "not a state dict" in msg
  assert "torch.save(model.state_dict(), 'weights.pth')" in msg


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_whole_model_of_allowed_classes_reads_as_its_state_dict(torch_files, fmt):
  ckpt = readers.read_checkpoint(torch_files / f"whole_{fmt}.pth")
  assert list(ckpt["model"]) == ["0.weight", "0.bias"]  # nn.Module.state_dict's keys and order
  _assert_same(ckpt["model"], readers.read_checkpoint(torch_files / "whole_sd.pth"))
  assert readers.find_state_dict(ckpt).keys() == ckpt["model"].keys()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_whole_model_with_an_unknown_class_is_refused_by_name(torch_files, fmt):
  with pytest.raises(ValueError, match=r"torch\.nn\.modules\.activation\.Tanh"):
    readers.read_checkpoint(torch_files / f"tanh_{fmt}.pth")


@pytest.mark.slow
def test_nested_checkpoint_is_unnested(torch_files):
  ckpt = readers.read_checkpoint(torch_files / "nested.pth.tar")
  assert ckpt["epoch"] == 7 and ckpt["best_auc"] == 0.84 and ckpt["arch"] == "resnet18"
  assert set(ckpt["optimizer"]) == {"state", "param_groups"}
  assert ckpt["optimizer"]["param_groups"][0]["lr"] == 0.1
  assert all(k.startswith("module.") for k in ckpt["state_dict"])
  _assert_same(readers.find_state_dict(ckpt), _reference_sd(torch_files))


def test_find_state_dict_variants():
  w = {"conv.weight": np.ones((1, 1, 1, 1))}
  assert readers.find_state_dict(w) == w
  assert readers.find_state_dict({"model": {"module.conv.weight": w["conv.weight"]}}) == w
  assert readers.find_state_dict({"model_state_dict": w, "epoch": 1}) == w
  with pytest.raises(ValueError, match="No state dict found.*'epoch'"):
    readers.find_state_dict({"epoch": 1, "weights": [1, 2]})


class _Hostile:
  def __init__(self, marker: pathlib.Path):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("layout", ["zip", "pickle"])
def test_hostile_pickle_is_refused_without_running(tmp_path, layout):
  marker = tmp_path / "pwned"
  payload = pickle.dumps({"x": _Hostile(marker)}, protocol=2)
  path = tmp_path / "evil.pth"
  if layout == "zip":
    with zipfile.ZipFile(path, "w") as zf:
      zf.writestr("evil/data.pkl", payload)
  else:
    path.write_bytes(payload)
  with pytest.raises(ValueError, match=r"pickled Python object \((posix|os|nt)\.system\)"):
    readers.read_checkpoint(path)
  assert not marker.exists()


def test_unknown_format_and_missing_file(tmp_path):
  path = tmp_path / "weights.npy"
  path.write_bytes(b"\x93NUMPY" + b"\0" * 64)
  with pytest.raises(ValueError, match="unknown checkpoint format"):
    readers.read_checkpoint(path)
  with pytest.raises(FileNotFoundError, match="nope.pth"):
    readers.read_checkpoint(tmp_path / "nope.pth")


_KERAS_SAVES = """
import json, sys, keras
out = sys.argv[1]
inputs = keras.Input((16, 16, 3))
x = keras.layers.Conv2D(4, 3, name="conv1_conv")(inputs)
x = keras.layers.BatchNormalization(name="conv1_bn")(x)
x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
x = keras.layers.Dense(5, name="predictions")(x)
model = keras.Model(inputs, x)
for w in model.weights:
  w.assign(keras.random.normal(w.shape, seed=len(w.path)))
model.save_weights(f"{out}/k3.weights.h5")
model.save(f"{out}/classic.h5")  # the legacy HDF5 layout of the downloadable Keras weights
json.dump({w.path: [list(w.shape), w.numpy().ravel()[:3].tolist()] for w in model.weights},
          open(f"{out}/weights.json", "w"))
"""


@pytest.mark.slow  # importing keras/TF in the subprocess: ~10 s
def test_keras_h5(tmp_path):
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  proc = subprocess.run(
    [sys.executable, "-c", _KERAS_SAVES, str(tmp_path)],
    capture_output=True, text=True, timeout=600, env=env,
  )  # fmt: skip
  if "No module named" in proc.stderr:
    pytest.skip(f"keras unavailable: {proc.stderr.strip()[-300:]}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  want = json.loads((tmp_path / "weights.json").read_text())
  for name in ("k3.weights.h5", "classic.h5"):
    got = readers.read_checkpoint(tmp_path / name)
    assert sorted(got) == sorted(want), name
    for key, (shape, head) in want.items():
      assert list(got[key].shape) == shape, (name, key)
      np.testing.assert_allclose(got[key].ravel()[:3], head, rtol=1e-6, err_msg=key)
  assert "conv1_bn/moving_variance" in want and "predictions/kernel" in want
