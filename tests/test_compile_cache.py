"""The persistent compilation cache that `import jaxcxr` switches on (jaxcxr.compile_cache)."""

from __future__ import annotations

import jax
import pytest

from jaxcxr import compile_cache


@pytest.fixture
def restore_cache_dir():
  before = jax.config.jax_compilation_cache_dir
  yield
  jax.config.update("jax_compilation_cache_dir", before)


def test_default_dir_is_per_user(monkeypatch, tmp_path):
  monkeypatch.delenv(compile_cache.ENV_DIR, raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert compile_cache.default_dir() == str(tmp_path / "jaxcxr" / "jax_compilation_cache")
  monkeypatch.setenv(compile_cache.ENV_DIR, str(tmp_path / "mine"))
  assert compile_cache.default_dir() == str(tmp_path / "mine")


def test_enable_sets_jax_dir_and_keeps_a_users_own(monkeypatch, tmp_path, restore_cache_dir):
  monkeypatch.delenv(compile_cache.ENV_SWITCH, raising=False)
  monkeypatch.setenv(compile_cache.ENV_DIR, str(tmp_path / "c"))
  jax.config.update("jax_compilation_cache_dir", None)
  assert compile_cache.enable() == str(tmp_path / "c")
  assert jax.config.jax_compilation_cache_dir == str(tmp_path / "c")
  assert (tmp_path / "c").is_dir()
  jax.config.update("jax_compilation_cache_dir", str(tmp_path / "users"))
  assert compile_cache.enable() == str(tmp_path / "users")
  assert jax.config.jax_compilation_cache_dir == str(tmp_path / "users")


@pytest.mark.parametrize("off", ["0", "off", "False"])
def test_switch_off(monkeypatch, tmp_path, restore_cache_dir, off):
  monkeypatch.setenv(compile_cache.ENV_SWITCH, off)
  jax.config.update("jax_compilation_cache_dir", None)
  assert compile_cache.enable(str(tmp_path / "c")) is None
  assert jax.config.jax_compilation_cache_dir is None
  assert not (tmp_path / "c").exists()
