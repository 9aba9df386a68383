"""`jaxcxr.predict` on a tiny trained run: parity with evaluation, DICOM, outputs, errors, CLI."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxcxr import config_lib, post_hoc, predict
from tests.conftest import REPO


def _probs(result):
  names = result["class_names"]
  return np.array([[p["probabilities"][c] for c in names] for p in result["predictions"]])


def _eval_probs(workdir, split="test"):
  """The run's own per-example test probabilities, by index in the split."""
  npz = np.load(os.path.join(workdir, "eval", f"{split}_predictions.npz"))
  return dict(zip(npz["index"].tolist(), npz["probs"], strict=True))


def _index(path):
  return int(os.path.splitext(os.path.basename(path))[0].split("_")[-1])


def test_probabilities_equal_the_runs_eval_predictions(tiny_run, tmp_path):
  # The same images through predict's path (file -> read_grey -> Preprocess -> predict_logits)
  # and through training's eval pipeline give the same numbers: preprocessing is the same.
  r = predict.predict(tiny_run, [os.path.join(tiny_run, "test_pngs")], str(tmp_path), batch_size=3)
  assert r["num_images"] == 8 and r["state"] == {"select": "latest", "step": 6}
  expected = _eval_probs(tiny_run)
  got = _probs(r)
  for p, row in zip(r["predictions"], got, strict=True):
    np.testing.assert_allclose(row, expected[_index(p["file"])], rtol=0, atol=1e-6)
  # And a wrong preprocessing would be caught: nearest-neighbour resizing changes them.
  img = np.asarray(Image.open(os.path.join(tiny_run, "test_pngs", "0.png")))
  Image.fromarray(img).resize((32, 32), Image.NEAREST).save(tmp_path / "nearest.png")
  off = predict.predict(tiny_run, [str(tmp_path / "nearest.png")], str(tmp_path / "n"))
  assert np.abs(_probs(off)[0] - expected[0]).max() > 1e-4


def test_dicom_input_gives_the_same_prediction_as_its_png(tiny_run, tmp_path):
  pydicom = pytest.importorskip("pydicom")
  from tests.test_dicom import write_dicom  # pylint: disable=g-import-not-at-top

  img = np.asarray(Image.open(os.path.join(tiny_run, "test_pngs", "3.png")))
  write_dicom(tmp_path / "scan_3.dcm", img)  # MONOCHROME2, 8-bit: the same grey levels
  # MONOCHROME1 stores the inverse; shown (and predicted) as the same image.
  write_dicom(tmp_path / "inv_3.dcm", 255 - img, photometric="MONOCHROME1")
  # 16-bit, 12 stored, window over the full range: 12-bit values v * 16 + 8 fall on 8-bit level v.
  write_dicom(
    tmp_path / "deep_3.dcm", img.astype(np.uint16) * 16 + 8, bits_stored=12, window=(2048, 4096)
  )
  assert pydicom.dcmread(tmp_path / "inv_3.dcm").PhotometricInterpretation == "MONOCHROME1"
  r = predict.predict(tiny_run, [str(tmp_path / "*.dcm")], str(tmp_path / "out"))
  assert r["num_images"] == 3
  for row in _probs(r):
    np.testing.assert_allclose(row, _eval_probs(tiny_run)[3], rtol=0, atol=1e-6)


def test_shared_dicoms_predict(tiny_run, tmp_path):
  from tests.conftest import require_shared  # pylint: disable=g-import-not-at-top

  d = require_shared("dicom")
  r = predict.predict(tiny_run, [str(d)], str(tmp_path), explain="gradcam")
  assert r["num_images"] == 2
  # The two files hold the same stored values, one read as MONOCHROME1: inverse images, so
  # different inputs; both are valid probability vectors.
  np.testing.assert_allclose(_probs(r).sum(1), 1.0, atol=1e-5)
  for p in r["predictions"]:
    assert Image.open(p["overlay"]).size == (32, 32)


def test_outputs_with_temperature_and_operating_points(tiny_run, tmp_path):
  # What training saves (fitted on val), written here from the run's own val predictions.
  run = tmp_path / "run"
  shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("test_pngs"))
  val = np.load(run / "eval" / "val_predictions.npz")
  names = [str(c) for c in val["class_names"]]
  post = post_hoc.fit(val["label"], val["probs"], names, "val", config_lib.base_config().report)
  post_hoc.save(post, str(run))
  t, points = post.temperature, post.points

  out = tmp_path / "out"
  r = predict.predict(str(run), [os.path.join(tiny_run, "test_pngs")], str(out), explain="lrp")
  probs = _probs(r)
  assert r["temperature"]["temperature"] == pytest.approx(t.temperature)
  for p, row in zip(r["predictions"], probs, strict=True):
    assert p["predicted_class"] == names[int(np.argmax(row))]
    cal = np.array([p["calibrated_probabilities"][c] for c in names])
    np.testing.assert_allclose(cal, t.apply(probs=row[None])[0], atol=1e-5)
    for j, c in enumerate(names):
      thr = points.thresholds[j]
      # Thresholds were chosen on temperature-scaled validation scores: applied to those.
      assert p["decisions"][c] == (None if thr is None else bool(cal[j] >= thr))
    assert os.path.getsize(p["overlay"]) > 0
  with open(out / "predictions.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 8
  assert [k for k in rows[0] if k.startswith("decision_")] == [f"decision_{c}" for c in names]
  for row, p in zip(rows, r["predictions"], strict=True):
    assert row["file"] == p["file"] and row["predicted_class"] == p["predicted_class"]
    for c in names:
      assert float(row[f"p_{c}"]) == pytest.approx(p["probabilities"][c], rel=1e-6)
      assert float(row[f"calibrated_p_{c}"]) == pytest.approx(
        p["calibrated_probabilities"][c], rel=1e-6
      )
  saved = json.load(open(out / "predictions.json"))
  assert saved["operating_points"]["fitted_on"] == "val" and len(saved["predictions"]) == 8
  # LRP overlays: a diverging map over the 32-px model input.
  assert Image.open(r["predictions"][0]["overlay"]).size == (32, 32)


def test_best_step_and_numbered_steps(tiny_run, tmp_path):
  png = os.path.join(tiny_run, "test_pngs", "0.png")
  best = predict.predict(tiny_run, [png], str(tmp_path / "b"), step="best")
  assert best["state"]["select"] == "best" and best["state"]["step"] in (3, 6)
  two = predict.predict(tiny_run, [png], str(tmp_path / "s"), step="4")
  assert two["state"] == {"select": "step", "step": 4}
  with pytest.raises(FileNotFoundError, match=r"No checkpoint of step 5 .* \[2, 4, 6\]"):
    predict.predict(tiny_run, [png], str(tmp_path / "x"), step=5)


def test_unreadable_files_are_named_or_skipped(tiny_run, tmp_path):
  good = os.path.join(tiny_run, "test_pngs", "1.png")
  (tmp_path / "in").mkdir()
  shutil.copy(good, tmp_path / "in" / "ok.png")
  (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
  (tmp_path / "in" / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x00" * 8)
  (tmp_path / "in" / "notes.txt").write_text("not an image, not looked at")
  with pytest.raises(ValueError, match=r"2 of 3 input files cannot be read") as e:
    predict.predict(tiny_run, [str(tmp_path / "in")], str(tmp_path / "out"))
  assert "broken.png" in str(e.value) and "broken.dcm" in str(e.value)
  r = predict.predict(tiny_run, [str(tmp_path / "in")], str(tmp_path / "out"), skip_bad=True)
  assert r["num_images"] == 1 and r["num_skipped"] == 2
  assert sorted(os.path.basename(b["file"]) for b in r["skipped"]) == ["broken.dcm", "broken.png"]
  with pytest.raises(ValueError, match="is not a file, a folder or a pattern"):
    predict.collect_inputs([str(tmp_path / "missing.png")])


def test_collect_inputs_files_folders_globs(tmp_path):
  for rel in ("a/x.png", "a/b/y.JPG", "a/b/z.dcm", "a/skip.txt", "c.jpeg"):
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_bytes(b"")
  got = predict.collect_inputs([str(tmp_path / "a"), str(tmp_path / "*.jpeg"), str(tmp_path / "a")])
  rel = [os.path.relpath(g, tmp_path) for g in got]
  assert rel == ["a/x.png", "a/b/y.JPG", "a/b/z.dcm", "c.jpeg"]


def test_cli(tiny_run, tmp_path):
  r = subprocess.run(
    [
      sys.executable, "-m", "jaxcxr.predict", "--workdir", tiny_run, "--out", str(tmp_path),
      "--batch_size", "4", os.path.join(tiny_run, "test_pngs", "*.png"),
    ],
    capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    timeout=300,
  )  # fmt: skip
  assert r.returncode == 0, r.stderr[-3000:]
  assert "8 images ->" in r.stdout and "ms/image" in r.stdout
  assert (tmp_path / "predictions.csv").exists() and (tmp_path / "predictions.json").exists()
  bad = subprocess.run(
    [sys.executable, "-m", "jaxcxr.predict", "--workdir", tiny_run, "--out", str(tmp_path), "x"],
    capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    timeout=300,
  )  # fmt: skip
  assert bad.returncode == 2 and "'x' is not a file, a folder or a pattern" in bad.stderr
