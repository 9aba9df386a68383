"""`jaxcxr.export`: the StableHLO export, deserialised and run, equals jaxcxr's predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxcxr import cli, export, predict
from tests.conftest import REPO


def test_stablehlo_export_matches_predict(tiny_run, tmp_path):
  meta = export.export(tiny_run, str(tmp_path / "exp"))
  assert meta["class_names"] == ["normal", "pneumonia", "covid19"]
  assert meta["input"]["shape"] == ["batch", 32, 32, 1] and meta["platforms"] == ["cpu"]
  assert "stablehlo" in (tmp_path / "exp" / "model.mlir").read_text()[:20000]
  exported, saved = export.load(str(tmp_path / "exp"))
  assert saved == json.loads(json.dumps(meta))

  pngs = os.path.join(tiny_run, "test_pngs")
  r = predict.predict(tiny_run, [pngs], str(tmp_path / "pred"))
  paths, pixels, _ = predict.load_images(predict.collect_inputs([pngs]), 32)
  assert [p["file"] for p in r["predictions"]] == paths
  want = np.array([[p["probabilities"][c] for c in meta["class_names"]] for p in r["predictions"]])
  # One file, any batch size (the batch dimension is symbolic).
  for n in (8, 3, 1):
    logits, probs = export.run_exported(exported, pixels[:n])
    assert probs.shape == (n, 3) and logits.shape == (n, 3)
    np.testing.assert_allclose(probs, want[:n], rtol=0, atol=1e-6)
  # Another state exports another function: the comparison can fail.
  export.export(tiny_run, str(tmp_path / "s2"), step=2)
  other, _ = export.load(str(tmp_path / "s2"))
  assert np.abs(export.run_exported(other, pixels)[1] - want).max() > 1e-4


def test_onnx_is_refused_with_the_reason(tiny_run, tmp_path):
  with pytest.raises(cli.UserError, match="jax2onnx"):
    export.export(tiny_run, str(tmp_path), fmt="onnx")


def test_cli(tiny_run, tmp_path):
  r = subprocess.run(
    [sys.executable, "-m", "jaxcxr.export", "--workdir", tiny_run, "--out", str(tmp_path)],
    capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    timeout=300,
  )  # fmt: skip
  assert r.returncode == 0, r.stderr[-3000:]
  assert "exported resnet_tiny (latest@6) for cpu" in r.stdout
  assert (tmp_path / "model.stablehlo").stat().st_size > 0
