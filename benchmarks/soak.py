r"""Soak test of exact resumption: random `kill -9`s and SIGTERMs over whole training runs.

    nice -n 10 python benchmarks/soak.py --kills 3 --workdir /tmp/jaxcxr_soak
    python benchmarks/soak.py --kills 20 --runs quickstart --full   # the unshrunk quick start

For each run (`quickstart`: configs/quickstart.py; `staged`: configs/chexnet_staged.py:tiny, four
stages with best-model selection) it trains once uninterrupted (the reference, timed: T in all, F
to its first step), then starts the same command in a second workdir `--kills` times, each time
sending SIGKILL or SIGTERM (drawn at random): one time in four at a uniform time in [0, F) of
start-up (imports, restore, compile), otherwise once the run has done its first step, after a
further uniform [0, (T - F) / kills) — so signals land in steps, asynchronous saves, evaluations,
stage changes and the final reports — and finally lets it run to the end. The final train state
must equal the reference bit for bit and the reports (`eval/*.json`) must be equal. A SIGTERM
during training must exit with status 75 after saving the step it names; one outside the training
loop terminates (-15) with nothing to save. A run that finishes before its signal ends the series.

Prints one JSON line per signal and one summary line per run; exits 1 on any mismatch. Not part of
CI (minutes per kill); BENCHMARKS.md records the runs made. `--full` trains the quick start as
published (64 px, 15 epochs, synthetic_cxr/default); by default it is shrunk to CPU size
(synthetic_cxr/tiny, 32 px, 30 steps).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
PREEMPTED = 75  # jaxcxr.training.guards.PREEMPTED_EXIT_CODE (not imported: no JAX in this process)

_SMALL = [
  "--config.input.data=synthetic_cxr/tiny",
  "--config.input.image_size=32",
  "--config.input.batch_size=8",
  "--config.input.num_threads=2",
  "--config.progress_bar=False",
]
RUNS = {
  "quickstart": (
    "configs/quickstart.py",
    _SMALL
    + [
      "--config.num_epochs=0",
      "--config.total_steps=40",
      "--config.schedule.warmup_steps=4",
      "--config.checkpoint_every_steps=10",
      "--config.eval_every_steps=20",
      "--config.eval_splits=('test',)",
    ],  # fmt: skip
  ),
  "staged": ("configs/chexnet_staged.py:tiny", ["--config.progress_bar=False"]),
}


def _command(run: str, workdir: pathlib.Path, data_dir: pathlib.Path, full: bool) -> list[str]:
  config, overrides = RUNS[run]
  if full and run == "quickstart":
    overrides = ["--config.progress_bar=False"]
  return [
    sys.executable, "-m", "jaxcxr.train", "--config", config, "--workdir", str(workdir),
    f"--config.input.data_dir={data_dir}", *overrides,
  ]  # fmt: skip


def _start(cmd: list[str], log: pathlib.Path) -> subprocess.Popen:
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _wait_for_first_step(proc: subprocess.Popen, log: pathlib.Path) -> float | None:
  """Seconds until the run's log says a stage's first step is done (None: it ended first)."""
  t0 = time.perf_counter()
  while proc.poll() is None:
    if "first train step of stage" in log.read_text(errors="replace"):
      return time.perf_counter() - t0
    time.sleep(0.2)
  return None


def _steps(workdir: pathlib.Path) -> list[int]:
  ckpts = workdir / "checkpoints"
  return sorted(int(d) for d in os.listdir(ckpts) if d.isdigit()) if ckpts.is_dir() else []


def _final_state(workdir: pathlib.Path) -> tuple[int, dict]:
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  step = _steps(workdir)[-1]
  return step, ocp.StandardCheckpointer().restore(
    str(workdir / "checkpoints" / str(step) / "state")
  )


def _reports(workdir: pathlib.Path) -> dict[str, dict]:
  return {p.name: json.loads(p.read_text()) for p in sorted((workdir / "eval").glob("*.json"))}


def soak(run: str, kills: int, root: pathlib.Path, rng: random.Random, full: bool) -> dict:
  """Reference run, `kills` signalled runs, a final run; returns the summary."""
  import jax  # pylint: disable=g-import-not-at-top

  data_dir, ref, soaked = root / "tfds", root / f"{run}_reference", root / f"{run}_soaked"
  for d in (ref, soaked):
    shutil.rmtree(d, ignore_errors=True)
  log = root / f"{run}_reference.log"
  t0 = time.perf_counter()
  proc = _start(_command(run, ref, data_dir, full), log)
  first_s = _wait_for_first_step(proc, log)
  if proc.wait() != 0 or first_s is None:
    raise SystemExit(f"{run}: the reference run failed; see {log}")
  ref_s = time.perf_counter() - t0
  print(json.dumps({"run": run, "reference_s": round(ref_s, 1), "first_step_s": round(first_s, 1)}))

  events, problems = [], []
  for i in range(kills):
    sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
    in_startup = rng.random() < 0.25
    delay = rng.uniform(0.0, first_s if in_startup else (ref_s - first_s) / kills)
    log = root / f"{run}_soaked_{i}.log"
    t0 = time.perf_counter()
    proc = _start(_command(run, soaked, data_dir, full), log)
    if not in_startup:
      _wait_for_first_step(proc, log)
    try:
      proc.wait(timeout=delay)
      sent = False  # it finished first
    except subprocess.TimeoutExpired:
      proc.send_signal(sig)
      sent = True
    signalled_s = time.perf_counter() - t0
    rc = proc.wait()
    event = {
      "run": run, "kill": i, "signal": sig.name if sent else None,
      "when": "start-up" if in_startup else "training", "after_s": round(signalled_s, 1),
      "exit": rc, "checkpoints": _steps(soaked),
    }  # fmt: skip
    if sent and sig == signal.SIGTERM:
      m = re.search(r"preempted \(SIGTERM\) after step (\d+)", log.read_text(errors="replace"))
      if rc == PREEMPTED and m and int(m.group(1)) in event["checkpoints"]:
        event["saved_step"] = int(m.group(1))
      elif rc not in (-signal.SIGTERM, 0):  # outside the loop: terminated, nothing to save
        problems.append(f"kill {i}: SIGTERM gave exit {rc} (log {log})")
    elif sent and rc != -signal.SIGKILL and rc != 0:
      problems.append(f"kill {i}: SIGKILL gave exit {rc} (log {log})")
    print(json.dumps(event), flush=True)
    events.append(event)
    if not sent:
      break  # finished: later signals would only hit a run with nothing left to train

  log = root / f"{run}_soaked_final.log"
  if _start(_command(run, soaked, data_dir, full), log).wait() != 0:
    problems.append(f"the final run failed (log {log})")
  else:
    (s_ref, a), (s_soak, b) = _final_state(ref), _final_state(soaked)
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    same = s_ref == s_soak and len(leaves_a) == len(leaves_b)
    same = same and all(np.array_equal(x, y) for x, y in zip(leaves_a, leaves_b, strict=True))
    if not same:
      problems.append(f"final state differs (steps {s_ref} vs {s_soak})")
    if _reports(ref) != _reports(soaked):
      problems.append("eval reports differ")
  summary = {
    "run": run,
    "kills_sent": sum(e["signal"] is not None for e in events),
    "sigkill": sum(e["signal"] == "SIGKILL" for e in events),
    "sigterm": sum(e["signal"] == "SIGTERM" for e in events),
    "sigterm_saved": sum("saved_step" in e for e in events),
    "bit_identical": not problems,
    "problems": problems,
  }
  print(json.dumps(summary), flush=True)
  return summary


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--kills", type=int, default=3, help="signals per run")
  p.add_argument("--runs", default="quickstart,staged", help=f"comma-separated, of {list(RUNS)}")
  p.add_argument("--workdir", default="/tmp/jaxcxr_soak")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--full", action="store_true", help="the quick start as published (slow)")
  args = p.parse_args()
  root = pathlib.Path(args.workdir).resolve()
  root.mkdir(parents=True, exist_ok=True)
  rng = random.Random(args.seed)
  runs = [r.strip() for r in args.runs.split(",") if r.strip()]
  unknown = sorted(set(runs) - set(RUNS))
  if unknown:
    p.error(f"--runs: unknown {unknown}; choose from {list(RUNS)}")
  summaries = [soak(run, args.kills, root, rng, args.full) for run in runs]
  sys.exit(0 if all(s["bit_identical"] for s in summaries) else 1)


if __name__ == "__main__":
  main()
