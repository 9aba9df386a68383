"""Data parallelism: an 8-device step equals a 1-device step on the same global batch."""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(__file__)


@pytest.mark.slow
def test_eight_devices_equal_one_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  proc = subprocess.run(
    [sys.executable, os.path.join(HERE, "sharding_check.py")],
    capture_output=True,
    text=True,
    env=env,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-4000:]
  d = json.loads(proc.stdout.strip().splitlines()[-1])
  assert d["loss"] <= 1e-5, d
  assert d["grads"] <= 1e-5 * max(1.0, d["grad_scale"]), d
  assert d["params"] <= 1e-5, d
  assert d["batch_stats"] <= 1e-5, d
