"""Issue 14, finding 2 and preemption: what stops a run on purpose (jaxcxr.training.guards).

A diverging run (the quick start with `optimizer.lr=1e6`, or a NaN planted at a chosen step) must
stop with a non-zero exit naming the first bad step and the last finite checkpoint, which is kept,
with nothing non-finite ever saved; `optimizer.skip_nonfinite` skips a bounded number of bad steps
and still resumes exactly. A real SIGTERM to a training process saves the current step and exits
with `PREEMPTED_EXIT_CODE`; the re-run ends bit-identical to an uninterrupted run. Each test failed
before its fix (the run trained to the end with NaN checkpoints and exit 0; SIGTERM killed it).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxcxr import train
from jaxcxr.training import guards
from jaxcxr.training import steps as steps_lib
from tests.conftest import REPO, tiny_config
from tests.test_train import _final_state


def _config_file(tmp_path, tfds_dir: str, **kw) -> str:
  """A config file for `python -m jaxcxr.train` that is `tiny_config(tfds_dir, **kw)`."""
  path = tmp_path / "tiny_config.py"
  path.write_text(
    "from tests.conftest import tiny_config\n\n\n"
    f"def get_config():\n  return tiny_config({tfds_dir!r}, **{kw!r})\n"
  )
  return str(path)


def _cli_args(config_file: str, workdir) -> list[str]:
  return [sys.executable, "-m", "jaxcxr.train", "--config", config_file, "--workdir", str(workdir)]


def _saved_states(directory) -> dict[int, dict]:
  """`{step: restored tree}` of every checkpoint in `directory` (train state or best model)."""
  out = {}
  for step in sorted(int(d) for d in os.listdir(directory) if d.isdigit()):
    items = [os.path.join(directory, str(step), i) for i in ("state", "default")]
    out[step] = ocp.StandardCheckpointer().restore(next(i for i in items if os.path.isdir(i)))
  return out


def _all_finite(tree) -> bool:
  """Parameters, batch statistics and optimizer state all finite (early stopping's and the
  plateau's 'best so far' start at +inf by design)."""
  tree = {k: tree.get(k) for k in ("params", "rest", "opt_state")}
  return all(
    np.all(np.isfinite(x))
    for x in jax.tree.leaves(tree)
    if np.issubdtype(np.asarray(x).dtype, np.inexact)
  )


# --- finding 2: a diverging run stops, naming the step and the kept checkpoint -------------------


@pytest.mark.slow  # one CLI run: ~1 min on 2 busy cores
def test_diverging_quickstart_exits_non_zero_and_saves_nothing_non_finite(tfds_dir, tmp_path):
  kw = {
    "optimizer.lr": 1e6, "total_steps": 12, "checkpoint_every_steps": 2, "keep_checkpoints": 1,
    "eval_every_steps": 1, "best_monitor": "val_loss", "eval_splits": ("test",),
  }  # fmt: skip
  workdir = tmp_path / "run"
  proc = subprocess.run(
    _cli_args(_config_file(tmp_path, tfds_dir, **kw), workdir),
    cwd=REPO, capture_output=True, text=True, timeout=900,
  )  # fmt: skip
  assert proc.returncode == guards.DIVERGED_EXIT_CODE, proc.stderr[-3000:]
  m = re.search(
    r"Training diverged at step (\d+) \(stage 0\).*the last finite checkpoint, step (\d+) in "
    r"(\S+), is kept",
    proc.stderr,
  )
  assert m, proc.stderr[-3000:]
  bad, kept = int(m.group(1)), int(m.group(2))
  assert m.group(3) == str(workdir / "checkpoints") and 0 < kept < bad < 12
  assert "Traceback" not in proc.stderr  # the message alone, as for a user error
  saved = _saved_states(workdir / "checkpoints")
  assert list(saved) == [kept]  # keep_checkpoints=1: the finite one was not rotated away
  best = _saved_states(workdir / "best")
  assert best and max(best) < bad
  for tree in [*saved.values(), *best.values()]:
    assert _all_finite(tree)
  assert not (workdir / "eval" / "test.json").exists()  # no ordinary-looking report


def _plant_nan(monkeypatch, bad_steps: tuple[int, ...]) -> None:
  """NaN loss, gradients and batch statistics for the updates from the states `bad_steps`."""
  original = steps_lib.loss_and_grads

  def planted(state, batch, **kw):
    loss, logits, rest, grads = original(state, batch, **kw)
    bad = jnp.isin(state.step, jnp.asarray(bad_steps))
    nan = lambda x: jnp.where(bad, jnp.nan, x) if jnp.issubdtype(x.dtype, jnp.inexact) else x
    return nan(loss), logits, jax.tree.map(nan, rest), jax.tree.map(nan, grads)

  monkeypatch.setattr(steps_lib, "loss_and_grads", planted)


@pytest.mark.slow  # two tiny trainings
@pytest.mark.parametrize(
  "skip, bad_states, first_bad",
  [(0, (2,), 3), (1, (2, 3), 4)],  # skip 1: step 3 is skipped, the second bad step in a row stops
)
def test_planted_nan_names_the_first_bad_step(
  tfds_dir, tmp_path, monkeypatch, skip, bad_states, first_bad
):
  _plant_nan(monkeypatch, bad_states)
  # Flags are checked at a log step or a save only: logging every 5 steps, the save of step 4
  # finds the bad step among those since the last check.
  c = tiny_config(
    tfds_dir, total_steps=6, checkpoint_every_steps=2, keep_checkpoints=1, log_every_steps=5
  )
  c.optimizer.skip_nonfinite = skip
  with pytest.raises(guards.NonFiniteError, match=f"at step {first_bad} ") as e:
    train.train_and_evaluate(c, str(tmp_path))
  assert f"step 2 in {tmp_path / 'checkpoints'}, is kept" in str(e.value)
  saved = _saved_states(tmp_path / "checkpoints")
  assert list(saved) == [2] and _all_finite(saved[2])


@pytest.mark.slow  # three tiny trainings: ~1.5 min on 2 busy cores
def test_skip_nonfinite_skips_a_bad_step_and_resumes_exactly(tfds_dir, tmp_path, monkeypatch):
  _plant_nan(monkeypatch, (3,))  # the update to step 4, the step the halted run stops at
  kw = dict(total_steps=7, checkpoint_every_steps=3, eval_splits=("test",))
  c = tiny_config(tfds_dir, **kw)
  c.optimizer.skip_nonfinite = 1
  full = tmp_path / "full"
  assert "test" in train.train_and_evaluate(c, str(full))
  step, state = _final_state(full)
  assert step == 7 and _all_finite(state)
  counters = state["opt_state"]  # optax.ApplyIfFiniteState, as a dict
  assert int(counters["total_notfinite"]) == 1 and int(counters["notfinite_count"]) == 0

  parted = tmp_path / "parted"
  c_halt = tiny_config(tfds_dir, halt_after_steps=4, **kw)
  c_halt.optimizer.skip_nonfinite = 1
  assert train.train_and_evaluate(c_halt, str(parted)) == {}
  assert not bool(_final_state(parted)[1]["opt_state"]["last_finite"])  # saved just after it
  train.train_and_evaluate(c, str(parted))
  (_, a), (_, b) = _final_state(full), _final_state(parted)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


# --- preemption: a real SIGTERM saves the current step; the re-run resumes exactly --------------


_PREEMPT_KW = {"total_steps": 60, "checkpoint_every_steps": 1000, "eval_splits": ("test",)}


@pytest.mark.slow  # two in-process trainings and one CLI run: ~2-3 min on 2 busy cores
def test_sigterm_saves_the_current_step_and_the_rerun_is_bit_identical(tfds_dir, tmp_path):
  full = tmp_path / "full"
  train.train_and_evaluate(tiny_config(tfds_dir, **_PREEMPT_KW), str(full))

  parted = tmp_path / "parted"
  proc = subprocess.Popen(
    _cli_args(_config_file(tmp_path, tfds_dir, **_PREEMPT_KW), parted),
    cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
  )  # fmt: skip
  lines: list[str] = []
  trained = threading.Event()

  def read_stderr():
    for line in proc.stderr:
      lines.append(line)
      if "first train step of stage 0: done" in line:
        trained.set()

  reader = threading.Thread(target=read_stderr, daemon=True)
  reader.start()
  try:
    assert trained.wait(600), "".join(lines)[-3000:]
    proc.send_signal(signal.SIGTERM)  # training is under way: at least one step is done
    proc.wait(timeout=300)
  finally:
    if proc.poll() is None:
      proc.kill()
  reader.join(timeout=30)
  stderr = "".join(lines)
  assert proc.returncode == guards.PREEMPTED_EXIT_CODE, stderr[-3000:]
  m = re.search(r"preempted \(SIGTERM\) after step (\d+): its checkpoint is saved", stderr)
  assert m, stderr[-3000:]
  stopped = int(m.group(1))
  assert 1 <= stopped < _PREEMPT_KW["total_steps"]  # stopped mid-run, not at a save interval
  assert _final_state(parted)[0] == stopped
  assert not (parted / "eval" / "test.json").exists()

  train.train_and_evaluate(tiny_config(tfds_dir, **_PREEMPT_KW), str(parted))  # the re-run
  (s_full, a), (s_part, b) = _final_state(full), _final_state(parted)
  assert s_full == s_part == _PREEMPT_KW["total_steps"]
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)
  assert json.load(open(full / "eval" / "test.json")) == json.load(
    open(parted / "eval" / "test.json")
  )


def test_preemption_hook_halts_once_and_restores_the_handler():
  """Without a training run: SIGTERM to this process only sets the request while armed."""

  class FakeLoop:
    step, halt = 7, False

  before = signal.getsignal(signal.SIGTERM)

  @guards.restores_sigterm
  def armed_then_failing():
    p = guards.Preemption()
    p.arm()
    os.kill(os.getpid(), signal.SIGTERM)  # handled in Python before the next bytecode
    loop = FakeLoop()
    p.after_step(loop)
    assert p.requested and loop.halt and p.stopped_at == 7
    with pytest.raises(guards.Preempted, match="after step 7") as e:
      p.raise_if_stopped("/w/checkpoints")
    assert e.value.exit_code == guards.PREEMPTED_EXIT_CODE
    raise RuntimeError("a failure before disarm")

  with pytest.raises(RuntimeError):
    armed_then_failing()
  assert signal.getsignal(signal.SIGTERM) == before  # not left armed by the failure
