"""Multi-host: the same CLI as two local processes joined by `jax.distributed.initialize`.

Each process reads its own shard of the data (grain's ShardByJaxProcess for training, a contiguous
slice for evaluation); the evaluation gathers predictions from both, so every example of the split
is scored exactly once. CPU collectives go through gloo.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

from jaxcxr.data import tfds_access
from tests.conftest import REPO


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_and_evaluate(tfds_dir, tmp_path):
  # Prepared beforehand here only to keep the two processes' logs about training.
  tfds_access.prepare(tfds_access.get_builder("synthetic_cxr/tiny", tfds_dir))
  port = _free_port()
  common = [
    sys.executable,
    "-m",
    "jaxcxr.train",
    "--config",
    "configs/quickstart.py",
    "--workdir",
    str(tmp_path),
    f"--coordinator_address=127.0.0.1:{port}",
    "--num_processes=2",
    "--config.input.data=synthetic_cxr/tiny",
    f"--config.input.data_dir={tfds_dir}",
    "--config.input.image_size=32",
    "--config.input.batch_size=8",
    "--config.num_epochs=0",
    "--config.total_steps=4",
    "--config.schedule.warmup_steps=1",
    "--config.checkpoint_every_steps=2",
    "--config.eval_every_steps=0",
    "--config.progress_bar=False",
    "--config.log_every_steps=1",
  ]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  procs = [
    subprocess.Popen(
      common + [f"--process_id={i}"],
      cwd=REPO,
      env=env,
      text=True,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
    )
    for i in range(2)
  ]
  outs = [p.communicate(timeout=600) for p in procs]
  for i, (p, (_, err)) in enumerate(zip(procs, outs, strict=True)):
    assert p.returncode == 0, f"process {i} failed:\n{err[-4000:]}"
  assert "2 processes, 2 devices" in outs[0][1]
  for split in ("val", "test"):
    report = json.load(open(tmp_path / "eval" / f"{split}.json"))
    assert report["num_examples"] == 8
  # Only process 0 prints and writes reports; both ran the same steps.
  assert "[test] n=8" in outs[0][0] and "[test]" not in outs[1][0]
  # Each process saved its own grain iterator position into the shared checkpoint.
  data_dir = tmp_path / "checkpoints" / "4" / "data"
  files = sorted(f for f in os.listdir(data_dir) if f.endswith(".json"))
  assert files == ["process_0-of-2.json", "process_1-of-2.json"]
  states = [json.load(open(data_dir / f)) for f in files]
  assert states[0] != states[1]
  # Process 0 writes the run report; its gallery (a collective checkpoint restore) is left out.
  assert (tmp_path / "report.html").exists()
  assert "Grad-CAM gallery is left out of a 2-process run" in outs[0][1]
