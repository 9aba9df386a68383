"""`jaxcxr.markers`: the perturbations, the effect arithmetic, and a run on a tiny run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxcxr import markers
from tests.conftest import REPO


def _grey(h=200, w=160, value=60):
  return np.full((h, w), value, np.uint8)


@pytest.mark.parametrize("kind", ["word", "letter", "arrow"])
def test_markers_are_white_bounded_seeded_and_vary(kind):
  img = _grey()
  a = markers.perturb(img, kind, np.random.default_rng(1))
  b = markers.perturb(img, kind, np.random.default_rng(1))
  np.testing.assert_array_equal(a, b)  # seeded
  changed = a != img
  assert changed.any() and set(np.unique(a[changed])) <= set(range(61, 256))  # brighter only
  assert changed.mean() < 0.2  # a marker, not a repaint
  masks = [markers.perturb(img, kind, np.random.default_rng(s)) != img for s in range(8)]
  # Sizes and positions vary with the seed.
  assert len({int(m.sum()) for m in masks}) > 1
  assert len({tuple(np.argwhere(m).min(0)) for m in masks}) > 1
  assert (img == 60).all()  # the input is not modified


def test_black_corners():
  out = markers.black_corners(_grey(100, 200), frac=0.1)
  assert (out[:10, :10] == 0).all() and (out[-10:, -10:] == 0).all()
  assert (out[:10, -10:] == 0).all() and (out[-10:, :10] == 0).all()
  assert (out[10:-10, :] == 60).all() and int((out == 0).sum()) == 4 * 100


def test_effects_arithmetic():
  orig = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
  pert = np.array([[0.3, 0.6, 0.1], [0.5, 0.4, 0.1], [0.1, 0.8, 0.1]])
  e = markers.effects(orig, pert, np.array([0, 0, 1]), ["a", "b", "c"])
  assert e["per_class"]["a"] == {"n": 2, "flip_rate": 0.5, "mean_shift": pytest.approx(-0.25)}
  assert e["per_class"]["b"] == {"n": 1, "flip_rate": 0.0, "mean_shift": 0.0}
  assert e["per_class"]["c"] == {"n": 0, "flip_rate": None, "mean_shift": None}
  assert e["overall"]["flip_rate"] == pytest.approx(1 / 3)
  same = markers.effects(orig, orig, np.array([0, 0, 1]), ["a", "b", "c"])
  assert same["overall"] == {"n": 3, "flip_rate": 0.0, "mean_abs_shift": 0.0}


def test_marker_test_on_the_tiny_run(tiny_run, tmp_path):
  out = str(tmp_path / "m")
  r = markers.marker_test(tiny_run, "test", out=out, batch_size=4)
  assert r["num_images"] == 8 and set(r["perturbations"]) == set(markers.KINDS)
  for kind, e in r["perturbations"].items():
    assert sum(pc["n"] for pc in e["per_class"].values()) == 8
    assert 0 <= e["overall"]["flip_rate"] <= 1 and e["overall"]["mean_abs_shift"] > 0, kind
    for i in range(4):
      assert os.path.getsize(os.path.join(out, "examples", f"{kind}_{i}.png")) > 0
  assert json.load(open(os.path.join(out, "test.json"))) == json.loads(json.dumps(r))
  again = markers.marker_test(tiny_run, "test", out=str(tmp_path / "m2"), batch_size=8)
  # Seeded and independent of the batch (up to float rounding of another batch shape).
  for kind, e in again["perturbations"].items():
    for c, pc in e["per_class"].items():
      assert pc["flip_rate"] == r["perturbations"][kind]["per_class"][c]["flip_rate"]
      assert pc["mean_shift"] == pytest.approx(
        r["perturbations"][kind]["per_class"][c]["mean_shift"], abs=1e-6
      )
  lines = []
  markers.format_table(r, lines.append)
  assert lines[1].split()[:4] == ["perturbation", "normal", "pneumonia", "covid19"]
  assert [ln.split()[0] for ln in lines[2:]] == list(markers.KINDS)


def test_cli(tiny_run, tmp_path):
  r = subprocess.run(
    [
      sys.executable, "-m", "jaxcxr.markers", "--workdir", tiny_run, "--split", "val",
      "--kinds", "letter,corners", "--out", str(tmp_path),
    ],
    capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    timeout=300,
  )  # fmt: skip
  assert r.returncode == 0, r.stderr[-3000:]
  assert "text-marker test on val (8 images" in r.stdout and "corners" in r.stdout
  assert (tmp_path / "val.json").exists()
