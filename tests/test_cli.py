"""The command line a new user meets (issue 16): user errors, `--help`, start-up noise, phases."""

from __future__ import annotations

import logging as std_logging
import os
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import pytest

from jaxcxr import cli, config_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run_tool(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
  env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
  return subprocess.run(
    [sys.executable, "-m", *args],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def test_misspelt_key_prints_one_clear_message_and_exits_2(tmp_path):
  r = _run_tool(
    "jaxcxr.train",
    "--config",
    "configs/quickstart.py",
    "--workdir",
    str(tmp_path),
    "--config.input.batchsize=3",
  )
  assert r.returncode == 2, r.stderr
  assert "Traceback" not in r.stderr
  assert "jaxcxr.train: error: 'batchsize'\nDid you mean \"batch_size\"" in r.stderr
  assert r.stderr.count("batchsize") == 2  # The key and the suggestion, once.
  assert "\\n" not in r.stderr and "\\'" not in r.stderr  # Not escaped.


def test_verbose_shows_the_traceback_of_a_user_error(tmp_path):
  r = _run_tool(
    "jaxcxr.evaluate",
    "--config",
    "configs/quickstart.py",
    "--workdir",
    str(tmp_path),
    "--config.input.batchsize=3",
    "--verbose",
  )
  assert r.returncode not in (0, 2)
  assert "Traceback" in r.stderr and "Did you mean" in r.stderr


def _raised(fn) -> BaseException:
  try:
    fn()
  except Exception as e:  # noqa: BLE001
    return e
  raise AssertionError("did not raise")


def test_config_layer_errors_are_user_errors():
  def bad_value():
    c = config_lib.base_config()
    c.input.batch_size = 0
    config_lib.validate(c)

  def locked_key():
    c = config_lib.base_config()
    c.lock()
    c.input.batchsize = 3

  assert cli.is_user_error(_raised(bad_value))
  e = _raised(locked_key)
  assert cli.is_user_error(e)
  assert cli.user_error_message(e) == (
    'Key "batchsize" does not exist and cannot be added since the config is locked.\n'
    'Did you mean "batch_size" instead of "batchsize"?'
  )
  assert cli.is_user_error(_raised(lambda: (_ for _ in ()).throw(cli.UserError("x"))))


def test_unknown_dataset_is_a_user_error_without_the_tfds_catalogue():
  from jaxcxr.data import tfds_access

  e = _raised(lambda: tfds_access.get_builder("nosuchdata"))
  assert cli.is_user_error(e)
  message = cli.user_error_message(e)
  assert message.startswith("Dataset nosuchdata not found.")
  assert "synthetic_cxr" in message and "abstract_reasoning" not in message


def test_bugs_are_not_user_errors():
  # A shape error raised inside JAX and a subscript KeyError in jaxcxr's own code are bugs.
  assert not cli.is_user_error(_raised(lambda: jnp.zeros((2, 3)) @ jnp.zeros((2, 3))))
  assert not cli.is_user_error(_raised(lambda: cli._leaves({"a": 1}.__class__())["missing"]))
  assert not cli.is_user_error(_raised(lambda: 1 / 0))


def test_help_lists_the_config_keys_with_defaults_and_comments():
  r = _run_tool("jaxcxr.train", "--help")
  out = r.stdout + r.stderr
  assert "DESIGN.md" not in out
  assert "--config.KEY=VALUE" in out
  assert "  input.batch_size = 32\n      Global batch, over all devices and hosts." in out
  assert "  optimizer.lr = 0.001" in out
  text = cli.config_keys_help()
  leaves = dict(cli._leaves(config_lib.base_config()))
  for key in leaves:  # Every key, so that keys added to base_config appear by themselves.
    assert f"\n  {key} = " in text


def test_evaluate_help_lists_the_config_keys():
  r = _run_tool("jaxcxr.evaluate", "--help")
  assert "  input.batch_size = 32" in r.stdout + r.stderr


def test_quiet_startup_logs_drops_only_the_named_noise():
  f = cli.QuietStartupLogs()

  def record(msg, level=std_logging.INFO):
    return std_logging.LogRecord("x", level, __file__, 1, msg, None, None)

  assert not f.filter(
    record("Unable to initialize backend 'tpu': INTERNAL: Failed to open libtpu.so: no file")
  )
  assert not f.filter(record("OpenCV is not installed. We recommend ...", std_logging.WARNING))
  assert not f.filter(record("apitools not found, and bigquery ...", std_logging.WARNING))
  assert f.filter(record("Unable to initialize backend 'cuda': no GPU", std_logging.INFO))
  assert f.filter(record("some other warning", std_logging.WARNING))


def test_phase_logs_start_and_seconds(caplog):
  with caplog.at_level(std_logging.INFO), cli.phase("compiling the train step"):
    pass
  messages = [r.getMessage() for r in caplog.records]
  assert messages[0] == "compiling the train step ..."
  assert messages[1].startswith("compiling the train step: done in ")
  assert messages[1].endswith(" s")


if __name__ == "__main__":
  sys.exit(pytest.main([__file__, "-q"]))


def test_sweep_of_a_config_without_get_hyper_is_a_user_error(tmp_path):
  r = _run_tool("jaxcxr.sweep", "--config", "configs/quickstart.py", "--workdir", str(tmp_path))
  assert r.returncode == 2, r.stderr
  assert "defines no get_hyper(arg)" in r.stderr and "Traceback" not in r.stderr
