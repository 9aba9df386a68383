"""Fault and bad-input tests (issue 14): each plants one hostile or broken input and asserts the
outcome: refused with the file, tensor or key named; or counted and reported; or recovered.

Findings: 1 and 10 (weights), 8 (config), 3 (what a build was made from), 4, 5 and 9 (builder
inputs, on tiny planted copies of the dummy data), 6 (workdir lock), 7 (damaged checkpoint).
A best-model save newer than the resume checkpoint is replayed. Faults beyond the ten: a truncated
or replaced array_record shard, a full disk during a save (an 8 MiB tmpfs), a damaged file in a
checkpoint that evaluation or inference restores. Each test failed before its fix.
Finding 2 (non-finite guard) and SIGTERM are in tests/test_guards.py; random kills over whole runs
in benchmarks/soak.py (not in CI).
"""

from __future__ import annotations

import pickle
import struct
import zipfile

import jax
import ml_dtypes
import numpy as np
import pytest
from flax import nnx

from jaxcxr import models
from jaxcxr.weights import pretrained, readers

# --- finding 1: torch tensor metadata is untrusted ----------------------------------------------


def _int(n: int) -> bytes:
  return pickle.BININT + struct.pack("<i", n)


def _str(s: str) -> bytes:
  b = s.encode()
  return pickle.BINUNICODE + struct.pack("<I", len(b)) + b


def _tuple(items: list[bytes]) -> bytes:
  return pickle.MARK + b"".join(items) + pickle.TUPLE


def _crafted_pth(
  path, *, size, stride, offset, numel, nbytes, storage="FloatStorage", name="w"
) -> None:
  """A zip-format torch file holding `{name: tensor}` whose metadata says whatever we like.

  Written opcode by opcode, as an attacker would (no torch needed): `_rebuild_tensor_v2(
  storage, offset, size, stride, False, OrderedDict())` over a storage of `nbytes` bytes.
  """
  storage_ref = _tuple(
    [_str("storage"), pickle.GLOBAL + f"torch\n{storage}\n".encode(), _str("0"), _str("cpu"),
     _int(numel)]
  ) + pickle.BINPERSID  # fmt: skip
  args = _tuple(
    [storage_ref, _int(offset), _tuple([_int(n) for n in size]),
     _tuple([_int(n) for n in stride]), pickle.NEWFALSE,
     pickle.GLOBAL + b"collections\nOrderedDict\n" + pickle.EMPTY_TUPLE + pickle.REDUCE]
  )  # fmt: skip
  payload = (
    pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + _str(name)
    + pickle.GLOBAL + b"torch._utils\n_rebuild_tensor_v2\n" + args + pickle.REDUCE
    + pickle.SETITEM + pickle.STOP
  )  # fmt: skip
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("archive/data.pkl", payload)
    zf.writestr("archive/data/0", np.arange(nbytes, dtype=np.uint8).tobytes())


def test_crafted_pth_in_bounds_reads(tmp_path):
  """The crafting helper itself is right: honest metadata reads the expected view."""
  path = tmp_path / "ok.pth"
  _crafted_pth(path, size=(2, 3), stride=(3, 1), offset=1, numel=8, nbytes=32)
  got = readers.read_checkpoint(path)["w"]
  want = np.frombuffer(np.arange(32, dtype=np.uint8).tobytes(), np.float32)[1:7].reshape(2, 3)
  np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
  ("size", "stride", "offset"),
  [
    ((1000, 1000), (1000, 1), 0),  # size past the storage (the 630-byte segfault)
    ((2, 2), (1, 1 << 20), 0),  # stride past it
    ((4,), (1,), 7),  # offset + size past it
    ((4,), (1,), 1 << 30),  # offset alone past it
    ((-3,), (1,), 0),  # negative size
    ((2,), (-1,), 1),  # negative stride
    ((2, 2), (1,), 0),  # rank of size and stride differ
  ],
)
def test_crafted_pth_out_of_bounds_is_refused(tmp_path, size, stride, offset):
  path = tmp_path / "evil.pth"
  _crafted_pth(path, size=size, stride=stride, offset=offset, numel=8, nbytes=32, name="conv.w")
  with pytest.raises(ValueError) as e:
    readers.read_checkpoint(path)
  assert str(path) in str(e.value) and "'conv.w'" in str(e.value)


def test_crafted_pth_odd_storage_is_refused(tmp_path):
  path = tmp_path / "odd.pth"
  # 30 bytes are not a whole number of float32s.
  _crafted_pth(path, size=(2,), stride=(1,), offset=0, numel=8, nbytes=30)
  with pytest.raises(ValueError, match=r"odd\.pth: tensor 'w'"):
    readers.read_checkpoint(path)


# --- finding 10: bf16 safetensors, wrong-rank first conv, fake .h5 ------------------------------


def _torch_state_dict(model: nnx.Module) -> dict[str, np.ndarray]:
  """A torchvision-named, torch-layout state dict of a jaxcxr ResNet (the map's inverse)."""
  out = {}
  for path, var in nnx.to_flat_state(nnx.state(model)):
    name = ".".join(map(str, path))
    value = np.asarray(var.get_value())
    if value.ndim == 4:
      value = value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    elif value.ndim == 2:
      value = value.T
    name = name.replace("head.fc.", "fc.")
    for leaf, torch_leaf in (("kernel", "weight"), ("scale", "weight"), ("mean", "running_mean"),
                             ("var", "running_var")):  # fmt: skip
      if name.endswith(f".{leaf}"):
        name = name[: -len(leaf)] + torch_leaf
    out[name] = value
  return out


def _resnet18() -> nnx.Module:
  return models.create("resnet18", num_classes=3, in_chans=1, rngs=nnx.Rngs(0))


def test_bf16_safetensors_come_back_as_float32(tmp_path):
  from safetensors.numpy import save_file

  path = tmp_path / "bf16.safetensors"
  x = np.linspace(-1, 1, 7, dtype=np.float32).astype(ml_dtypes.bfloat16)
  save_file({"x": x, "y": np.ones(2, np.float16)}, str(path))
  got = readers.read_checkpoint(path)
  assert got["x"].dtype == np.float32 and got["y"].dtype == np.float16
  np.testing.assert_array_equal(got["x"], x.astype(np.float32))


def test_wrong_rank_first_conv_names_file_and_weight(tmp_path):
  from safetensors.numpy import save_file

  sd = _torch_state_dict(_resnet18())
  path = tmp_path / "ok.safetensors"
  save_file(sd, str(path))
  assert pretrained.load_pretrained(_resnet18(), path, arch="resnet18").loaded > 0
  bad = tmp_path / "flat_conv1.safetensors"
  save_file({**sd, "conv1.weight": sd["conv1.weight"].reshape(64, -1)}, str(bad))
  with pytest.raises(ValueError) as e:
    pretrained.load_pretrained(_resnet18(), bad, arch="resnet18")
  assert str(bad) in str(e.value) and "conv1.kernel" in str(e.value)
  bad5 = tmp_path / "five_channel_conv1.safetensors"
  save_file({**sd, "conv1.weight": np.ones((64, 5, 7, 7), np.float32)}, str(bad5))
  with pytest.raises(ValueError) as e:
    pretrained.load_pretrained(_resnet18(), bad5, arch="resnet18")
  assert str(bad5) in str(e.value) and "conv1.kernel" in str(e.value)


def test_fake_h5_names_the_file(tmp_path):
  path = tmp_path / "weights.h5"
  path.write_bytes(b"<html>404 Not Found</html>")
  with pytest.raises(ValueError, match=r"weights\.h5 is not a readable HDF5 file"):
    readers.read_checkpoint(path)


def test_lying_safetensors_header_names_the_file(tmp_path):
  path = tmp_path / "lying.safetensors"
  header = b'{"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}'
  path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
  with pytest.raises(ValueError, match=r"lying\.safetensors is not a valid safetensors file"):
    readers.read_checkpoint(path)


# --- finding 8: the whole config is checked at start, before any data is touched ---------------


@pytest.mark.parametrize(
  ("key", "value", "devices", "named"),
  [
    ("input.eval_batch_size", 6, 4, "config.input.eval_batch_size=6"),
    ("input.batch_size", 6, 4, "config.input.batch_size=6"),
    ("input.batch_size", 0, 1, "config.input.batch_size=0"),
    ("input.batch_size", -8, 1, "config.input.batch_size=-8"),
    ("input.image_size", 0, 1, "config.input.image_size=0"),
    ("input.image_size", -32, 1, "config.input.image_size=-32"),
    ("total_steps", -5, 1, "config.total_steps=-5"),
    ("num_epochs", -1.0, 1, "config.num_epochs=-1.0"),
    ("log_every_steps", 0, 1, "config.log_every_steps=0"),
    ("optimizer.lr", float("nan"), 1, "config.optimizer.lr=nan"),
    ("keep_checkpoints", 0, 1, "config.keep_checkpoints=0"),
  ],
)
def test_config_validate_names_the_key(tmp_path, key, value, devices, named):
  from jaxcxr import config_lib
  from tests.conftest import set_keys, tiny_config

  c = tiny_config(str(tmp_path))
  config_lib.validate(c, num_devices=devices if devices == 1 else 8)  # the tiny config is fine
  set_keys(c, **{key: value})
  with pytest.raises(ValueError) as e:
    config_lib.validate(c, num_devices=devices)
  assert named in str(e.value)


def test_setup_validates_before_touching_data(tmp_path):
  """A bad config fails in `setup` with its key named, before the dataset is read or built."""
  from jaxcxr import train
  from tests.conftest import tiny_config

  c = tiny_config(str(tmp_path / "no_data_here"), total_steps=-5)
  c.input.data = "no_such_dataset_xyz"
  with pytest.raises(ValueError, match=r"config\.total_steps=-5"):
    train.setup(c)
  assert not (tmp_path / "no_data_here").exists()


# --- finding 3: a build remembers what it was made from ------------------------------------------

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
KERMANY_DUMMY = REPO / "tfds_builders" / "chest_xray_pneumonia" / "dummy_data"


@pytest.mark.slow  # one tiny Kermany build: ~5 s
def test_build_is_not_reused_for_other_or_missing_manual_dir(tmp_path):
  import shutil

  from jaxcxr.data import tfds_access

  manual = tmp_path / "kermany"
  shutil.copytree(KERMANY_DUMMY, manual)
  data_dir = str(tmp_path / "tfds")
  builder = tfds_access.prepare(
    tfds_access.get_builder("chest_xray_pneumonia/2class", data_dir), manual
  )
  build = builder.data_dir
  record = open(f"{build}/{tfds_access.SOURCE_RECORD}").read()
  assert str(manual) in record and '"sha256"' in record
  n_train = builder.info.splits["train"].num_examples
  get = lambda: tfds_access.get_builder("chest_xray_pneumonia/2class", data_dir)

  tfds_access.prepare(get(), str(manual))  # the same data: the build is reused
  moved = tmp_path / "moved"
  shutil.copytree(manual, moved)
  tfds_access.prepare(get(), str(moved))  # a copy of the same data: reused too
  tfds_access.prepare(get(), None)  # no manual_dir: the build as it is

  with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
    tfds_access.prepare(get(), str(tmp_path / "nowhere"))

  # Another copy of the data (one more image): refused, naming both and the way out.
  shutil.copy(
    moved / "chest_xray" / "train" / "NORMAL" / "IM-0001-0001.jpeg",
    moved / "chest_xray" / "train" / "NORMAL" / "IM-0999-0001.jpeg",
  )
  with pytest.raises(ValueError) as e:
    tfds_access.prepare(get(), str(moved))
  msg = str(e.value)
  assert str(manual) in msg and str(moved) in msg and f"Delete {build}" in msg
  # An edited label list changes the fingerprint even at the same size.
  assert tfds_access.fingerprint(str(manual)) == tfds_access.fingerprint(str(tmp_path / "kermany"))
  (manual / "labels.csv").write_text("a,1\n")
  before = tfds_access.fingerprint(str(manual))
  (manual / "labels.csv").write_text("a,2\n")
  assert tfds_access.fingerprint(str(manual))["sha256"] != before["sha256"]
  assert get().info.splits["train"].num_examples == n_train  # nothing was rebuilt behind our back


# --- findings 4 and 5: file names that are not UTF-8, tiny and huge images ----------------------


def _planted_kermany(tmp_path):
  """The Kermany dummy data plus a non-UTF-8 name, a 1x1 image and a 12,000 px square image."""
  import os
  import shutil

  from PIL import Image

  manual = tmp_path / "kermany"
  shutil.copytree(KERMANY_DUMMY, manual)
  normal = manual / "chest_xray" / "train" / "NORMAL"
  good = (normal / "IM-0001-0001.jpeg").read_bytes()
  # A Latin-1 name (b'\xe9' is 'é' in Latin-1, invalid alone in UTF-8), as from an old archive.
  with open(os.path.join(os.fsencode(normal), b"IM-0200-0001-caf\xe9.jpeg"), "wb") as f:
    f.write(good)
  Image.new("L", (1, 1), 128).save(normal / "IM-0300-0001.jpeg")
  Image.new("L", (12000, 12000), 100).save(normal / "IM-0400-0001.jpeg", quality=50)
  return manual


@pytest.mark.slow  # one Kermany build with a 144 MP image: ~10 s
def test_non_utf8_names_and_tiny_and_huge_images_are_counted(tmp_path):
  from tfds_builders import common, testing_utils
  from tfds_builders.chest_xray_pneumonia import chest_xray_pneumonia_dataset_builder as cxp

  builder = testing_utils.build(cxp.Builder, _planted_kermany(tmp_path), tmp_path / "tfds")
  skipped, flagged = builder.skipped["train"], builder.flagged["train"]
  assert skipped[common.SKIP_NAME_NOT_UTF8] == ["train/NORMAL/IM-0200-0001-caf\\xe9.jpeg"]
  assert skipped[common.SKIP_TOO_SMALL] == ["train/NORMAL/IM-0300-0001.jpeg"]
  assert flagged[common.FLAG_DOWNSCALED] == ["train/NORMAL/IM-0400-0001.jpeg"]
  source = builder.as_data_source("train")
  examples = {source[i]["filename"].decode(): source[i] for i in range(len(source))}
  assert "train/NORMAL/IM-0300-0001.jpeg" not in examples
  assert examples["train/NORMAL/IM-0400-0001.jpeg"]["image"].shape == (8192, 8192, 1)
  assert len(examples) == 8 + 1  # the dummy's 8 good train images and the downscaled one


def test_image_size_rule():
  import io

  from PIL import Image

  from tfds_builders import common

  def png(size, mode="L"):
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()

  log = common.SkipLog("ds", "train")
  assert common.image_or_skip(log, "one.png", png((1, 1)), "png") is None
  assert common.image_or_skip(log, "thin.png", png((15, 400)), "png") is None
  small = png((16, 16))
  assert common.image_or_skip(log, "ok.png", small, "png") is small  # grey PNG: byte for byte
  wide = common.image_or_skip(log, "wide.png", png((9000, 300), "RGB"), "png")
  assert Image.open(io.BytesIO(wide)).size == (8192, 273)
  assert common.image_or_skip(log, "bad.png", b"\x89PNG junk", "png", corrupt_reason="bad") is None
  assert dict(log.skipped) == {common.SKIP_TOO_SMALL: ["one.png", "thin.png"], "bad": ["bad.png"]}
  assert dict(log.flagged) == {common.FLAG_DOWNSCALED: ["wide.png"]}


# --- finding 9: Cohen metadata.csv with a duplicated column or shifted rows ---------------------

COHEN_DUMMY = REPO / "tfds_builders" / "covid_chestxray" / "dummy_data" / "covid-chestxray-dataset"


def test_cohen_duplicated_header_is_refused(tmp_path):
  from tfds_builders import common
  from tfds_builders.covid_chestxray import covid_chestxray_dataset_builder as ccx

  text = (COHEN_DUMMY / "metadata.csv").read_text()
  header, rest = text.split("\n", 1)
  path = tmp_path / "metadata.csv"
  path.write_text(header.replace("other_notes", "Finding ") + "\n" + rest)
  with pytest.raises(ValueError) as e:
    ccx.read_metadata(path, common.SkipLog("covid_chestxray", "train"))
  assert str(path) in str(e.value) and "['finding']" in str(e.value)


@pytest.mark.slow  # one Cohen dummy build: ~5 s
def test_cohen_shifted_row_is_skipped_as_shifted(tmp_path):
  import shutil

  from tfds_builders import testing_utils
  from tfds_builders.covid_chestxray import covid_chestxray_dataset_builder as ccx

  manual = tmp_path / "cohen"
  shutil.copytree(COHEN_DUMMY, manual)
  lines = (manual / "metadata.csv").read_text().split("\n")
  row = next(i for i, line in enumerate(lines) if "nejmc2001573_f1a.jpeg" in line)
  lines[row] = "4," + lines[row]  # one cell too many: every column shifted right
  (manual / "metadata.csv").write_text("\n".join(lines))
  builder = testing_utils.build(ccx.Builder, manual, tmp_path / "tfds", "2class")
  skipped = builder.skipped["train"]
  assert skipped[ccx.SKIP_SHIFTED_ROW] == [f"metadata.csv row {row} (29 cells: 4,4,0...)"]
  assert "images/nejmc2001573_f1a.jpeg" in skipped["file without metadata row"]
  # No reason of the other rows names the shifted row's cells.
  assert sum(map(len, skipped.values())) == 12


# --- finding 6: two trainings on one workdir ---------------------------------------------------


def _lock_as_another_process(path, record: dict):
  """Holds `path`'s flock on a file description of our own, as another process would."""
  import fcntl
  import json

  f = open(path, "a+")  # noqa: SIM115
  fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  f.truncate(0)
  f.write(json.dumps(record))
  f.flush()
  return f


def test_workdir_lock_refuses_a_second_run_naming_the_first(tmp_path):
  from jaxcxr import train, workdir_lock
  from tests.conftest import tiny_config

  workdir = tmp_path / "run"
  workdir.mkdir()
  other = _lock_as_another_process(
    workdir / workdir_lock.LOCK_FILE, {"pid": 4242, "host": "gpu7", "started": "then"}
  )
  c = tiny_config(str(tmp_path / "tfds"))
  c.input.data = "no_such_dataset_xyz"  # the lock is checked before any data is touched
  with pytest.raises(workdir_lock.WorkdirLockedError) as e:
    train.train_and_evaluate(c, str(workdir))
  assert "pid 4242 on host gpu7" in str(e.value) and str(workdir) in str(e.value)
  other.close()  # the first run ends: the lock is free
  workdir_lock.hold(str(workdir))
  workdir_lock.hold(str(workdir))  # re-entrant within a process
  with pytest.raises(BlockingIOError):
    _lock_as_another_process(workdir / workdir_lock.LOCK_FILE, {})
  workdir_lock.release(str(workdir))
  _lock_as_another_process(workdir / workdir_lock.LOCK_FILE, {}).close()


def test_workdir_lock_of_a_killed_run_is_not_stale(tmp_path):
  """`kill -9` leaves the record behind but not the lock: the next run starts."""
  import signal
  import subprocess
  import sys

  from jaxcxr import workdir_lock

  holder = subprocess.Popen(
    [sys.executable, "-c", "import sys, time; from jaxcxr import workdir_lock; "
     "workdir_lock.hold(sys.argv[1]); print('held', flush=True); time.sleep(120)", str(tmp_path)],
    stdout=subprocess.PIPE, text=True, cwd=REPO,
  )  # fmt: skip
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f"pid {holder.pid} on host"):
      workdir_lock.hold(str(tmp_path))
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  workdir_lock.hold(str(tmp_path))
  workdir_lock.release(str(tmp_path))


# --- finding 7: a damaged newest checkpoint does not block resuming ------------------------------


_RESUME_KW = dict(
  total_steps=6, checkpoint_every_steps=2, keep_checkpoints=5, eval_splits=("test",)
)


@pytest.fixture(scope="module")
def uninterrupted_run(tfds_dir, tmp_path_factory):
  from jaxcxr import train
  from tests.conftest import tiny_config

  full = tmp_path_factory.mktemp("full")
  train.train_and_evaluate(tiny_config(tfds_dir, **_RESUME_KW), str(full))
  return full


@pytest.mark.slow  # three tiny trainings: ~1 min on 2 cores
@pytest.mark.parametrize("damage", ["emptied", "truncated"])
def test_resume_skips_a_damaged_newest_checkpoint(
  tfds_dir, uninterrupted_run, tmp_path, damage, caplog
):
  import logging
  import os
  import shutil

  import orbax.checkpoint as ocp

  from jaxcxr import train
  from tests.conftest import tiny_config

  kw, full, parted = _RESUME_KW, uninterrupted_run, tmp_path / "parted"
  assert (
    train.train_and_evaluate(tiny_config(tfds_dir, halt_after_steps=4, **kw), str(parted)) == {}
  )
  step4 = parted / "checkpoints" / "4"
  if damage == "emptied":
    for child in step4.iterdir():
      shutil.rmtree(child) if child.is_dir() else child.unlink()
  else:  # every file of the train state cut to half its size
    for root, _, files in os.walk(step4 / "state"):
      for name in files:
        path = os.path.join(root, name)
        with open(path, "r+b") as f:
          f.truncate(os.path.getsize(path) // 2)
  with caplog.at_level(logging.WARNING):
    results = train.train_and_evaluate(tiny_config(tfds_dir, **kw), str(parted))
  assert "test" in results
  assert "skipped the damaged newer checkpoint(s): step 4" in caplog.text
  assert (tmp_path / "parted" / "checkpoints_damaged" / "4").is_dir()  # kept, not deleted
  # Resumed from step 2, the run still ends bit-identical to the uninterrupted one.
  restore = lambda d: ocp.StandardCheckpointer().restore(str(d / "checkpoints" / "6" / "state"))
  a, b = restore(full), restore(parted)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow  # three tiny trainings
def test_resume_replays_best_saves_newer_than_the_checkpoint(tfds_dir, tmp_path):
  """`kill -9` after a best-model save but before the next checkpoint: the re-run replays that
  step and saves it again (orbax's StepAlreadyExistsError stopped every re-run there)."""
  import json
  import shutil

  from jaxcxr import train
  from tests.conftest import tiny_config

  kw = dict(
    total_steps=6, checkpoint_every_steps=4, eval_every_steps=5, best_monitor="val_loss",
    select="best", eval_splits=("test",),
  )  # fmt: skip
  full, parted = tmp_path / "full", tmp_path / "parted"
  train.train_and_evaluate(tiny_config(tfds_dir, **kw), str(full))
  assert (
    train.train_and_evaluate(tiny_config(tfds_dir, halt_after_steps=5, **kw), str(parted)) == {}
  )
  assert (parted / "best" / "5").is_dir()
  shutil.rmtree(parted / "checkpoints" / "5")  # as if killed before step 5's checkpoint
  results = train.train_and_evaluate(tiny_config(tfds_dir, **kw), str(parted))
  assert results["test"]["selected"] == {"select": "best", "step": 5, "monitor": "val_loss"}
  assert json.load(open(full / "eval" / "test.json")) == json.load(
    open(parted / "eval" / "test.json")
  )


# --- a truncated or replaced array_record shard of a prepared dataset ---------------------------


def _damaged_copy(tfds_dir, tmp_path):
  """A copy of the prepared synthetic_cxr/tiny build (the session's stays sound)."""
  import shutil

  from jaxcxr.data import tfds_access

  build = tfds_access.prepare(tfds_access.get_builder("synthetic_cxr/tiny", tfds_dir)).data_dir
  copy = tmp_path / "tfds"
  shutil.copytree(build, copy / "synthetic_cxr" / "tiny" / "1.0.0")
  shard = lambda s: copy / "synthetic_cxr" / "tiny" / "1.0.0" / (
    f"synthetic_cxr-{s}.array_record-00000-of-00001"
  )  # fmt: skip
  return str(copy), shard


@pytest.mark.parametrize("keep", ["half", "one_block", "empty", "other_shard"])
def test_damaged_shard_is_refused_when_opened_naming_it(tfds_dir, tmp_path, keep):
  from jaxcxr.data import tfds_access

  data_dir, shard = _damaged_copy(tfds_dir, tmp_path)
  path = shard("train")
  if keep == "other_shard":  # a sound file, of another split: 8 records, not 24
    path.write_bytes(shard("val").read_bytes())
  else:
    size = {"half": path.stat().st_size // 2, "one_block": 1 << 16, "empty": 0}[keep]
    with open(path, "r+b") as f:
      f.truncate(size)
  builder = tfds_access.get_builder("synthetic_cxr/tiny", data_dir)
  assert len(tfds_access.open_split(builder, "val")) == 8  # the other splits still open
  with pytest.raises(tfds_access.DamagedDataError) as e:
    tfds_access.open_split(builder, "train")
  msg = str(e.value)
  assert f"shard {path} of split 'train'" in msg and f"Delete {builder.data_dir}" in msg
  if keep == "other_shard":
    assert "holds 8 records where its build wrote 24" in msg


def test_truncated_test_shard_stops_training_before_the_first_step(tfds_dir, tmp_path):
  """The test split is read only after training: its damage is found at setup, not then."""
  from jaxcxr import train
  from jaxcxr.data import tfds_access
  from tests.conftest import tiny_config

  data_dir, shard = _damaged_copy(tfds_dir, tmp_path)
  with open(shard("test"), "r+b") as f:
    f.truncate(100_000)
  workdir = tmp_path / "run"
  with pytest.raises(tfds_access.DamagedDataError, match=str(shard("test"))):
    train.train_and_evaluate(tiny_config(data_dir), str(workdir))
  assert not (workdir / "checkpoints" / "2").exists()  # no step was trained


# --- a full disk: a size-limited folder (tmpfs) the workdir is on ---------------------------------


@pytest.fixture
def small_disk(tmp_path):
  """A 8 MiB tmpfs at `tmp_path / 'disk'` (root only: skipped where it cannot be mounted)."""
  import subprocess

  disk = tmp_path / "disk"
  disk.mkdir()
  mount = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True, text=True
  )
  if mount.returncode:
    pytest.skip(f"cannot mount a size-limited tmpfs here ({mount.stderr.strip()}); skipping")
  yield disk
  subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk, leave: int = 8192):
  """Writes a file into `disk` that leaves `leave` bytes free; returns it."""
  import os

  st = os.statvfs(disk)
  filler = disk / "filler"
  with open(filler, "wb") as f:
    f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
  return filler


@pytest.mark.slow  # three tiny trainings
def test_full_disk_stops_the_run_naming_the_folder_and_nothing_is_lost(
  tfds_dir, uninterrupted_run, small_disk, caplog
):
  import logging

  import orbax.checkpoint as ocp

  from jaxcxr import checkpoint, train
  from tests.conftest import tiny_config

  kw, workdir = _RESUME_KW, small_disk / "run"
  assert (
    train.train_and_evaluate(tiny_config(tfds_dir, halt_after_steps=2, **kw), str(workdir)) == {}
  )
  filler = _fill(small_disk)  # the disk fills up: the save of step 4 finds no space
  with pytest.raises(checkpoint.NoSpaceError) as e:
    train.train_and_evaluate(tiny_config(tfds_dir, **kw), str(workdir))
  msg = str(e.value)
  assert f"No space left on the device of {workdir / 'checkpoints'}" in msg
  assert "The last complete checkpoint, step 2, is kept" in msg
  assert not (workdir / "checkpoints" / "4").exists()  # only its tmp folder, if anything
  filler.unlink()  # space again: the re-run resumes from step 2, as if nothing had happened
  with caplog.at_level(logging.INFO):
    assert "test" in train.train_and_evaluate(tiny_config(tfds_dir, **kw), str(workdir))
  assert "Resuming from the checkpoint of step 2 " in caplog.text
  restore = lambda d: ocp.StandardCheckpointer().restore(str(d / "checkpoints" / "6" / "state"))
  a, b = restore(uninterrupted_run), restore(workdir)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --- a damaged file in a checkpoint that evaluation or inference restores -------------------------


@pytest.mark.parametrize("damage", ["garbage_metadata", "truncated_manifest", "flipped_byte"])
def test_restoring_a_damaged_checkpoint_names_its_step_folder(tiny_run, tmp_path, damage):
  """One file of the newest step damaged. (Resuming skips such a step: the truncated cases of
  `test_resume_skips_a_damaged_newest_checkpoint` go through the same `except`.)"""
  import os
  import shutil

  from jaxcxr import checkpoint, evaluate, inference

  workdir = tmp_path / "run"
  shutil.copytree(tiny_run, workdir)
  step = max(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit())
  step_dir = workdir / "checkpoints" / str(step)
  if damage == "garbage_metadata":  # same size, not JSON: a UnicodeDecodeError that names nothing
    path = step_dir / "state" / "_METADATA"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, path.stat().st_size, np.uint8))
  elif damage == "truncated_manifest":  # the OCDBT manifest cut short: tensorstore's DATA_LOSS
    # (Truncating one array data file often goes unnoticed: the partial restore may not read it.)
    path = step_dir / "state" / "manifest.ocdbt"
    with open(path, "r+b") as f:
      f.truncate(path.stat().st_size // 2)
  else:  # one byte of the largest array file changed, size kept: only the seal can tell
    path = max((p for p in (step_dir / "state").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)  # fmt: skip
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
  with pytest.raises(checkpoint.DamagedCheckpointError) as e:
    inference.restore(str(workdir))
  assert f"The checkpoint {step_dir} cannot be restored" in str(e.value)
  rel = os.path.relpath(path, step_dir)
  assert f"{rel} changed since it was saved" in str(e.value)  # the seal names the file
  assert "Other steps in" in str(e.value) and "--step" in str(e.value)
  with pytest.raises(checkpoint.DamagedCheckpointError, match=f"checkpoint {step_dir} cannot"):
    evaluate.evaluate(None, str(workdir), splits=("test",))
  older = inference.restore(str(workdir), step=step - 2)  # an intact step still restores
  assert older.step == step - 2


def test_no_space_is_found_anywhere_in_the_error_chain(tmp_path):
  """Arrays written in the background fail later, wrapped by orbax: the next save or wait names
  the folder all the same; an error that is not about space passes through unchanged."""
  import errno
  import os

  from jaxcxr import checkpoint

  (tmp_path / "3").mkdir()
  (tmp_path / "5.orbax-checkpoint-tmp").mkdir()
  with pytest.raises(
    checkpoint.NoSpaceError, match="The last complete checkpoint, step 3, is kept"
  ):
    with checkpoint._space_errors_named(str(tmp_path)):
      try:
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
      except OSError as e:
        raise RuntimeError("a background save failed") from e
  with pytest.raises(KeyError), checkpoint._space_errors_named(str(tmp_path)):
    raise KeyError("data")


def test_every_checkpoint_of_a_run_is_sealed_and_verified(tiny_run, tmp_path):
  """`jaxcxr_sha256.json` in every kept step (regular and best); `verify` passes on them, fails
  naming a file that went missing, and passes over a step without a seal (an older one)."""
  import json
  import os
  import shutil

  from jaxcxr import checkpoint

  steps = []
  for sub in ("checkpoints", "best"):
    folder = os.path.join(tiny_run, sub)
    steps += [os.path.join(folder, d) for d in os.listdir(folder) if d.isdigit()]
  assert len(steps) >= 2
  for step_dir in steps:
    digests = json.load(open(os.path.join(step_dir, checkpoint.MANIFEST)))
    assert any(k.endswith("manifest.ocdbt") for k in digests)  # the arrays are covered
    assert checkpoint.verify(step_dir) is True
  copy = tmp_path / "step"
  shutil.copytree(steps[0], copy)
  victim = sorted(json.load(open(copy / checkpoint.MANIFEST)))[0]
  os.remove(copy / victim)
  with pytest.raises(checkpoint.DamagedCheckpointError, match=f"{victim} is missing"):
    checkpoint.verify(str(copy))
  os.remove(copy / checkpoint.MANIFEST)
  assert checkpoint.verify(str(copy)) is False
