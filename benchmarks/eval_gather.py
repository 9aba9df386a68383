r"""Wall time of one evaluation pass over a split in two local processes (one CPU device each).

    python benchmarks/eval_gather.py [--repo PATH] [--examples 240 --batch 2 --size 32]

Runs the split loop of the jaxcxr checkout at `--repo` (default: this one) on the fake split of
tests/test_evaluators.py (images that carry their index, so at most 255 examples; a trivial jitted
eval step), so the time is the loop's own: data, dispatch, device-to-host copies and
cross-process gathers. It uses `evaluators.base.predict_split` where the checkout has it, else
the older per-batch `evaluators.classification.predict_split`, and counts
`sharding.process_allgather` calls. Prints process 0's JSON line (best of 3 passes after a
warm-up).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parents[1]


def worker(addr: str, pid: int, n: int, bs: int, size: int) -> None:
  from jaxcxr import sharding  # pylint: disable=g-import-not-at-top

  sharding.initialize_distributed(addr, num_processes=2, process_id=pid)
  from jaxcxr.evaluators import base, classification  # pylint: disable=g-import-not-at-top

  # The fake split of this checkout's tests, whichever checkout's loop runs.
  spec = importlib.util.spec_from_file_location("fake", HERE / "tests" / "test_evaluators.py")
  t = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(t)
  t.SIZE = size
  calls = []
  real = sharding.process_allgather

  def spy(tree):
    calls.append(1)
    return real(tree)

  sharding.process_allgather = spy
  fn = getattr(base, "predict_split", None) or classification.predict_split
  ctx, split = t.make_ctx(bs), t.FakeSplit(n)
  fn(ctx, None, t.FakeSplit(bs))  # compiles
  times = []
  for _ in range(3):
    calls.clear()
    t0 = time.perf_counter()
    out = fn(ctx, None, split)
    times.append(time.perf_counter() - t0)
  if pid == 0:
    row = {"impl": f"{fn.__module__}.{fn.__name__}", "examples": len(out["probs"]), "batch": bs}
    print(json.dumps({**row, "gathers": len(calls), "seconds": round(min(times), 3)}))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--repo", default=str(HERE))
  p.add_argument("--examples", type=int, default=240)
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--size", type=int, default=32)
  p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
  a = p.parse_args()
  if a.worker:
    worker(a.worker[0], int(a.worker[1]), a.examples, a.batch, a.size)
    return
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    addr = f"127.0.0.1:{s.getsockname()[1]}"
  repo = os.path.abspath(a.repo)
  env = dict(os.environ, PYTHONPATH=repo, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  args = ["--examples", str(a.examples), "--batch", str(a.batch), "--size", str(a.size)]
  procs = [
    subprocess.Popen(
      [sys.executable, __file__, *args, "--worker", addr, str(i)],
      cwd=repo,
      env=env,
      text=True,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
    )  # fmt: skip
    for i in range(2)
  ]
  outs = [q.communicate(timeout=900) for q in procs]
  for i, (q, (_, err)) in enumerate(zip(procs, outs, strict=True)):
    if q.returncode:
      sys.exit(f"process {i} failed:\n{err[-3000:]}")
  print(outs[0][0].strip().splitlines()[-1])


if __name__ == "__main__":
  main()
