"""Tests for the pretrained registry, downloads, `load_pretrained`, the converter CLI and the
model listing (`python -m jaxcxr.models`)."""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from jaxcxr import models
from jaxcxr.models import __main__ as listing
from jaxcxr.weights import convert_checkpoint, pretrained
from jaxcxr.weights.maps import resnet as resnet_map

HERE = pathlib.Path(__file__).parent


def _rngs(seed: int = 0) -> nnx.Rngs:
  return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def _flat(model: nnx.Module) -> dict[str, np.ndarray]:
  return {
    ".".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(nnx.state(model))
  }


# --- registry ---------------------------------------------------------------------------------


def test_list_and_get():
  assert pretrained.list_pretrained("resnet50.*") == [
    "resnet50.a1_in1k",
    "resnet50.tv2_in1k",
    "resnet50.tv_in1k",
  ]
  assert set(pretrained.list_pretrained("resnet*.tv_in1k")) == {
    f"resnet{d}.tv_in1k" for d in (18, 34, 50, 101, 152)
  }
  cfg = pretrained.get_pretrained_cfg("resnet18.tv_in1k")
  assert cfg.download_url == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
  assert cfg.rules == resnet_map.TORCHVISION_RULES
  assert (cfg.first_conv, cfg.classifier, cfg.num_classes, cfg.mode) == (
    "conv1",
    "head.fc",
    1000,
    "torch",
  )
  hub = pretrained.get_pretrained_cfg("resnet50.a1_in1k")
  assert hub.download_url == (
    "https://huggingface.co/timm/resnet50.a1_in1k/resolve/main/model.safetensors"
  )
  assert hub.file_format == "safetensors" and hub.interpolation == "bicubic"
  assert pretrained.get_pretrained_cfg("resnet18").name == "resnet18.tv_in1k"  # first tag
  assert pretrained.pretrained_tags("resnet18") == ["a1_in1k", "tv_in1k"]
  # Every entry names a registered model.
  assert {n.split(".")[0] for n in pretrained.list_pretrained()} <= set(models.list_models())


def test_registry_errors():
  with pytest.raises(ValueError, match="No pretrained weights named 'resnet50.nope'"):
    pretrained.get_pretrained_cfg("resnet50.nope")
  with pytest.raises(ValueError, match="already registered"):
    pretrained.register_pretrained(pretrained.get_pretrained_cfg("resnet18.tv_in1k"))
  with pytest.raises(ValueError, match="exactly one of url and hf_hub_id"):
    pretrained.PretrainedCfg(arch="x", tag="y", rules=())
  with pytest.raises(ValueError, match="mode"):
    pretrained.PretrainedCfg(arch="x", tag="y", rules=(), url="u", mode="keras")


# --- download ---------------------------------------------------------------------------------


def test_download_offline_gives_a_clear_error(tmp_path):
  cfg = pretrained.PretrainedCfg(arch="resnet18", tag="t", rules=(), url="http://127.0.0.1:9/x.pth")
  with pytest.raises(pretrained.DownloadError) as exc:
    pretrained.download(cfg, cache_dir=tmp_path)
  msg = str(exc.value)
  assert "http://127.0.0.1:9/x.pth" in msg and "local path" in msg and "arch='resnet18'" in msg
  assert not any(p.is_file() for p in tmp_path.rglob("*"))  # no partial file left behind


def test_download_caches_atomically_and_checks_the_hash(tmp_path, monkeypatch):
  payload = b"weights" * 1000
  good = tmp_path / "src" / f"w-{hashlib.sha256(payload).hexdigest()[:8]}.pth"
  good.parent.mkdir()
  good.write_bytes(payload)
  cfg = pretrained.PretrainedCfg(arch="a", tag="b", rules=(), url=good.as_uri())
  monkeypatch.setenv("JAXCXR_CACHE", str(tmp_path / "cache"))
  path = pretrained.download(cfg)
  assert path == tmp_path / "cache" / "a.b" / good.name and path.read_bytes() == payload
  good.unlink()
  assert pretrained.download(cfg) == path  # cached: the source is not read again

  bad = good.with_name("w-00000000.pth")
  bad.write_bytes(payload)
  with pytest.raises(pretrained.DownloadError, match="SHA-256"):
    pretrained.download(dataclasses.replace(cfg, url=bad.as_uri()), cache_dir=tmp_path / "c2")
  assert not any(p.is_file() for p in (tmp_path / "c2").rglob("*"))


# --- load_pretrained --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet18_pth(tmp_path_factory) -> tuple[pathlib.Path, dict]:
  out = tmp_path_factory.mktemp("resnet18")
  proc = subprocess.run(
    [sys.executable, str(HERE / "torch_reference.py"), "torchvision", "resnet18",
     "--num_classes", "1000", "--size", "64", "--out", str(out / "ref.npz"),
     "--save_pth", str(out / "resnet18.pth")],
    capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  if proc.returncode == 3:
    pytest.skip(f"reference torch unavailable: {proc.stderr.strip()}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return out / "resnet18.pth", dict(np.load(out / "ref.npz"))


@pytest.mark.slow  # torch subprocess + resnet18 forward passes: ~15 s
def test_load_pretrained_logits_match_torchvision(resnet18_pth):
  pth, ref = resnet18_pth
  model = models.create("resnet18", num_classes=1000, rngs=_rngs())
  report = pretrained.load_pretrained(model, pth, arch="resnet18")
  assert report.kept == () and report.loaded == len(_flat(model))
  assert "resnet18.tv_in1k" in str(report)
  got = np.asarray(model(jnp.asarray(ref["x"].transpose(0, 2, 3, 1))))
  assert np.max(np.abs(got - ref["logits"])) <= 1e-4, np.max(np.abs(got - ref["logits"]))

  # One channel: a grey image gives the logits of that image replicated to RGB.
  grey_model = models.create("resnet18", num_classes=1000, in_chans=1, rngs=_rngs(1))
  pretrained.load_pretrained(grey_model, pth, arch="resnet18")
  grey = jnp.asarray(ref["x"][:, :1].transpose(0, 2, 3, 1))
  want = np.asarray(model(jnp.repeat(grey, 3, axis=-1)))
  np.testing.assert_allclose(np.asarray(grey_model(grey)), want, rtol=0, atol=1e-4)


@pytest.mark.slow
def test_load_pretrained_new_task_keeps_the_head(resnet18_pth):
  pth, ref = resnet18_pth
  model = models.create("resnet18", num_classes=3, rngs=_rngs())
  before = _flat(model)
  report = pretrained.load_pretrained(model, pth, arch="resnet18.tv_in1k")
  after = _flat(model)
  assert report.kept == ("head.fc.bias", "head.fc.kernel")
  assert report.loaded == len(after) - 2
  for name in report.kept:
    np.testing.assert_array_equal(after[name], before[name])
  np.testing.assert_array_equal(after["bn1.var"], ref["sd/bn1.running_var"])
  np.testing.assert_array_equal(
    after["layer4.1.conv2.kernel"], ref["sd/layer4.1.conv2.weight"].transpose(2, 3, 1, 0)
  )


@pytest.mark.slow
def test_load_pretrained_errors(resnet18_pth):
  pth, _ = resnet18_pth
  model = nnx.eval_shape(lambda: models.create("resnet18", num_classes=1000))
  with pytest.raises(ValueError, match="needs arch="):
    pretrained.load_pretrained(model, pth)
  with pytest.raises(ValueError, match="neither a file nor registered"):
    pretrained.load_pretrained(model, "resnet18.nope")
  with pytest.raises(ValueError, match="missing from the checkpoint"):
    pretrained.load_pretrained(
      nnx.eval_shape(lambda: models.create("resnet34", num_classes=1000)), pth, arch="resnet34"
    )


# --- converter CLI and model listing ----------------------------------------------------------


@pytest.mark.slow
def test_convert_checkpoint_cli(resnet18_pth, tmp_path, capsys):
  pth, ref = resnet18_pth
  out = tmp_path / "ckpt"
  argv = ["--model", "resnet18", "--weights", str(pth), "--num_classes", "3", "--in_chans", "1"]
  convert_checkpoint.main([*argv, "--out", str(out)])
  printed = capsys.readouterr().out
  assert "kept as initialised: ['head.fc.bias', 'head.fc.kernel']" in printed
  assert f"to {out}" in printed

  # What training does with config.model_init = out: restore into a fresh model's state.
  abstract = nnx.eval_shape(lambda: models.create("resnet18", num_classes=3, in_chans=1))
  target = jax.tree.map(ocp.utils.to_shape_dtype_struct, nnx.state(abstract))
  with ocp.StandardCheckpointer() as checkpointer:
    restored = checkpointer.restore(out, target)
  expected, _ = convert_checkpoint.convert(
    "resnet18", str(pth), str(tmp_path / "again"), num_classes=3, in_chans=1
  )
  want = nnx.state(expected)
  jax.tree.map(np.testing.assert_array_equal, restored, want)
  np.testing.assert_allclose(
    restored["conv1"]["kernel"][...][:, :, 0, :],
    ref["sd/conv1.weight"].sum(axis=1).transpose(1, 2, 0),
    rtol=1e-6,
    atol=1e-6,
  )
  with pytest.raises(ValueError, match="already exists"):
    convert_checkpoint.main([*argv, "--out", str(out)])


def test_model_listing():
  rows = {r[0]: r for r in listing.rows("resnet18")}
  assert rows["resnet18"][1:4] == ("11.69M", "224x224", "a1_in1k, tv_in1k")
  assert "torchvision ResNet18_Weights.IMAGENET1K_V1" in rows["resnet18"][4]
