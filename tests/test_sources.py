"""Patient-disjoint splits, mixtures with class maps, class balance (jaxcxr.data.splits)."""

from __future__ import annotations

import collections
import json

import jax
import ml_collections
import numpy as np
import pytest
from sklearn.utils import class_weight

from jaxcxr import config_lib, losses
from jaxcxr.data import resplit, splits, tfds_access, views
from tests.conftest import REPO, set_keys

KERMANY_DUMMY = REPO / "tfds_builders" / "chest_xray_pneumonia" / "dummy_data"


def _cohort(num_patients=300, seed=0):
  """Imbalanced 3-class cohort: 1-4 images per patient, one class per patient."""
  rng = np.random.default_rng(seed)
  labels, groups = [], []
  for p in range(num_patients):
    k = rng.choice(3, p=[0.6, 0.3, 0.1])
    for _ in range(rng.integers(1, 5)):
      labels.append(k)
      groups.append(f"p{p}")
  return np.asarray(labels), np.asarray(groups)


def _splits_cfg(**kw) -> ml_collections.ConfigDict:
  c = config_lib.base_config().input.splits
  c.unlock()
  c.update(kw)
  return c


def _patients(groups, rows):
  return set(groups[rows])


def test_fractions_are_patient_disjoint_stratified_and_cover_everything():
  labels, groups = _cohort()
  parts = resplit.split_rows(labels, groups, _splits_cfg(method="fractions"), 3)
  assert set(parts) == {"train", "val", "test"}
  all_rows = np.concatenate(list(parts.values()))
  assert sorted(all_rows) == list(range(len(labels)))  # Each image exactly once.
  for a in parts:
    for b in parts:
      if a < b:
        assert not _patients(groups, parts[a]) & _patients(groups, parts[b]), (a, b)
  n = len(labels)
  for name, share in zip(("train", "val", "test"), (0.7, 0.1, 0.2), strict=True):
    assert abs(len(parts[name]) / n - share) < 0.04, (name, len(parts[name]) / n)
  overall = np.bincount(labels) / n
  for name, rows in parts.items():
    got = np.bincount(labels[rows], minlength=3) / len(rows)
    assert np.abs(got - overall).max() < 0.06, (name, got, overall)
  # Deterministic in the seed, different across seeds.
  again = resplit.split_rows(labels, groups, _splits_cfg(method="fractions"), 3)
  assert all(np.array_equal(parts[k], again[k]) for k in parts)
  other = resplit.split_rows(labels, groups, _splits_cfg(method="fractions", seed=1), 3)
  assert not np.array_equal(parts["test"], other["test"])


def test_kfold_test_folds_partition_the_data():
  labels, groups = _cohort()
  seen = []
  for fold in range(5):
    parts = resplit.split_rows(labels, groups, _splits_cfg(method="kfold", fold=fold), 3)
    assert not _patients(groups, parts["test"]) & _patients(groups, parts["train"])
    assert not _patients(groups, parts["val"]) & _patients(groups, parts["train"])
    assert len(parts["train"]) + len(parts["val"]) + len(parts["test"]) == len(labels)
    assert abs(len(parts["val"]) / len(labels) - 0.1) < 0.04
    seen.append(parts["test"])
  assert sorted(np.concatenate(seen)) == list(range(len(labels)))
  with pytest.raises(ValueError, match="unset test_per_class"):
    resplit.split_rows(labels, groups, _splits_cfg(method="kfold", test_per_class=5), 3)
  with pytest.raises(ValueError, match="fold=5 is out of range"):
    resplit.split_rows(labels, groups, _splits_cfg(method="kfold", fold=5), 3)


def test_kfold_validation_from_the_held_out_fold_halves_it_by_patient():
  labels, groups = _cohort()
  tests, vals = [], []
  for fold in range(5):
    cfg = _splits_cfg(method="kfold", fold=fold, val_from="held_out")
    parts = resplit.split_rows(labels, groups, cfg, 3)
    plain = resplit.split_rows(labels, groups, _splits_cfg(method="kfold", fold=fold), 3)
    # The training folds are the same as without validation; val + test = the held-out fold.
    assert np.array_equal(parts["train"], np.sort(np.concatenate([plain["train"], plain["val"]])))
    assert np.array_equal(np.sort(np.concatenate([parts["val"], parts["test"]])), plain["test"])
    assert not _patients(groups, parts["val"]) & _patients(groups, parts["test"])
    assert abs(len(parts["val"]) / len(plain["test"]) - 0.5) < 0.1
    assert set(labels[parts["val"]]) == set(labels[parts["test"]]) == {0, 1, 2}  # Stratified.
    tests.append(parts["test"])
    vals.append(parts["val"])
  # Every image is tested in at most one fold and validated in at most one; together all.
  both = np.concatenate(tests + vals)
  assert sorted(both) == list(range(len(labels)))
  with pytest.raises(ValueError, match="needs method='kfold'"):
    resplit.split_rows(labels, groups, _splits_cfg(method="fractions", val_from="held_out"), 3)
  with pytest.raises(ValueError, match="val_from='x'"):
    resplit.split_rows(labels, groups, _splits_cfg(method="kfold", val_from="x"), 3)


def test_fixed_number_of_test_images_per_class():
  labels, groups = _cohort()
  parts = resplit.split_rows(
    labels, groups, _splits_cfg(method="fractions", test_per_class=20, fractions=(0.8, 0.2, 0)), 3
  )
  assert np.bincount(labels[parts["test"]]).tolist() == [20, 20, 20]
  assert not _patients(groups, parts["test"]) & _patients(groups, parts["train"])
  assert not _patients(groups, parts["val"]) & _patients(groups, parts["train"])
  with pytest.raises(ValueError, match="fewer images"):
    resplit.split_rows(labels, groups, _splits_cfg(method="fractions", test_per_class=10**4), 3)


def test_too_few_patients_for_the_folds_is_a_clear_error():
  labels, groups = np.array([0, 1, 0, 1]), np.array(["a", "a", "b", "b"])
  with pytest.raises(ValueError, match="from 2 patients"):
    resplit.split_rows(labels, groups, _splits_cfg(method="kfold"), 2)
  with pytest.raises(ValueError, match="must sum to 1"):
    resplit.split_rows(
      labels, groups, _splits_cfg(method="fractions", fractions=(0.5, 0.1, 0.1)), 2
    )


@pytest.mark.parametrize("how", ["oversample", "undersample"])
def test_balance_rows(how):
  labels = np.array([0] * 30 + [1] * 10 + [2] * 5)
  rows = resplit.balance_rows(labels, how, seed=0)
  counts = np.bincount(labels[rows]).tolist()
  assert counts == ([30, 30, 30] if how == "oversample" else [5, 5, 5])
  if how == "oversample":
    assert set(range(len(labels))) <= set(rows.tolist())  # Every original image kept.
  else:
    assert len(set(rows.tolist())) == 15  # No image twice.
  assert np.array_equal(rows, resplit.balance_rows(labels, how, seed=0))
  with pytest.raises(ValueError, match="not one of"):
    resplit.balance_rows(labels, "smote", seed=0)


def test_class_weights_follow_sklearn_balanced_and_weight_the_loss():
  counts = np.array([30, 10, 5])
  labels = np.repeat(np.arange(3), counts)
  w = losses.class_weights(counts)
  expected = class_weight.compute_class_weight("balanced", classes=np.arange(3), y=labels)
  np.testing.assert_allclose(w, expected, rtol=1e-6)
  assert abs(w[labels].mean() - 1.0) < 1e-6
  np.testing.assert_allclose(losses.resolve_class_weights("balanced", counts), w)
  np.testing.assert_allclose(losses.resolve_class_weights("1, 2,0.5", counts), [1, 2, 0.5])
  assert losses.resolve_class_weights("none", counts) is None
  with pytest.raises(ValueError, match="expected 3 non-negative"):
    losses.resolve_class_weights("1,2", counts)
  with pytest.raises(ValueError, match="comma-separated"):
    losses.resolve_class_weights("heavy", counts)

  cfg = config_lib.base_config().loss
  logits = jax.random.normal(jax.random.key(0), (6, 3))
  y = np.array([0, 1, 2, 0, 1, 2])
  plain = losses.make_loss(cfg, 3)(logits, y)
  weighted = losses.make_loss(cfg, 3, w)(logits, y)
  np.testing.assert_allclose(weighted, plain * w[y], rtol=1e-6)


# --- on prepared datasets -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """synthetic_cxr/tiny and the Kermany dummy (3class), prepared once."""
  out = str(tmp_path_factory.mktemp("tfds_sources"))
  tfds_access.prepare(tfds_access.get_builder("synthetic_cxr/tiny", out))
  tfds_access.prepare(
    tfds_access.get_builder("chest_xray_pneumonia/3class", out), str(KERMANY_DUMMY)
  )
  return out


def _input(data_dir, **kw) -> ml_collections.ConfigDict:
  c = config_lib.base_config().input
  c.data = "synthetic_cxr/tiny"
  c.data_dir = data_dir
  return set_keys(c, **kw)


def test_builder_splits_are_read_as_is(data_dir):
  data = splits.load(_input(data_dir))
  assert data.class_names == ["normal", "pneumonia", "covid19"]
  assert {s: len(v) for s, v in data.splits.items()} == {"train": 24, "val": 8, "test": 8}
  ex = data.split("train")[3]
  assert ex["image"].shape == (64, 64, 1) and ex["dataset"] == "synthetic_cxr/tiny"
  assert len(data.split("train").labels) == 24  # Index read on demand.
  with pytest.raises(ValueError, match="not one of this run's splits"):
    data.split("holdout")


def test_resplit_pools_all_splits_patient_disjointly(data_dir):
  data = splits.load(_input(data_dir, **{"splits.method": "fractions"}))
  sizes = {s: len(v) for s, v in data.splits.items()}
  assert sum(sizes.values()) == 40, sizes
  patients = {s: set(v.patients) for s, v in data.splits.items()}
  assert not patients["train"] & patients["test"] and not patients["train"] & patients["val"]
  assert data.report["splits"]["test"]["images"] == sizes["test"]
  # Records come through with the view's label.
  v = data.split("test")
  assert [v[i]["label"] for i in range(len(v))] == v.labels.tolist()


def test_keep_official_test_and_resplit_the_rest(data_dir):
  data = splits.load(
    _input(
      data_dir,
      **{
        "splits.method": "fractions",
        "splits.keep": ("test",),
        "splits.fractions": (0.75, 0.25, 0),
      },
    )
  )
  assert len(data.split("test")) == 8
  assert len(data.split("train")) + len(data.split("val")) == 32
  with pytest.raises(ValueError, match="keeps 'test'"):
    splits.load(_input(data_dir, **{"splits.method": "fractions", "splits.keep": ("test",)}))


def test_mixture_with_class_maps(data_dir):
  cfg = _input(
    data_dir,
    mixture=(
      {"data": "synthetic_cxr/tiny", "class_map": {"covid19": "covid-19"}},
      {
        "data": "chest_xray_pneumonia/3class",
        "splits": ("train", "test"),
        "class_map": {"normal": "normal", "bacterial": "pneumonia", "viral": "pneumonia"},
      },
    ),
    class_names=("normal", "pneumonia", "covid-19"),
  )
  data = splits.load(cfg)
  assert data.class_names == ["normal", "pneumonia", "covid-19"]
  train = data.split("train")
  by_dataset = collections.Counter()
  for i in range(len(train)):
    ex = train[i]
    by_dataset[(ex["dataset"], data.class_names[ex["label"]])] += 1
  # Synthetic contributes only its covid19 images, Kermany's dummy train its 8 readable images.
  assert {k for k in by_dataset if k[0] == "synthetic_cxr/tiny"} == {
    ("synthetic_cxr/tiny", "covid-19")
  }
  assert sum(v for k, v in by_dataset.items() if k[0].startswith("chest_xray")) == 8
  assert "val" not in data.splits or all(
    p.startswith("synthetic_cxr:") for p in data.split("val").patients
  )
  dropped = data.report["left_out_by_class_map"]
  assert dropped["synthetic_cxr/tiny:train:normal"] > 0
  assert all(p.split(":")[0] in ("synthetic_cxr", "chest_xray_pneumonia") for p in train.patients)

  bad = _input(data_dir, mixture=({"data": "synthetic_cxr/tiny", "class_map": {"covid": "x"}},))
  with pytest.raises(ValueError, match=r"\['covid'\].*classes are"):
    splits.load(bad)
  with pytest.raises(ValueError, match="unknown"):
    splits.load(_input(data_dir, mixture=({"data": "synthetic_cxr/tiny", "maps": {}},)))


def test_balance_through_load(data_dir):
  data = splits.load(_input(data_dir, balance="oversample"))
  counts = np.bincount(data.split("train").labels)
  assert len(set(counts.tolist())) == 1
  assert data.report["balance"]["after"] == counts.tolist()
  assert len(data.split("test")) == 8  # Only the training split is resampled.


def test_training_on_resplit_balanced_weighted_data(data_dir, tmp_path):
  from jaxcxr import train  # pylint: disable=g-import-not-at-top
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top

  c = tiny_config(data_dir, total_steps=3)
  c.input.balance = "undersample"
  c.input.splits.method = "kfold"
  c.input.splits.num_folds = 4
  c.input.splits.fold = 1
  c.loss.class_weights = "balanced"
  results = train.train_and_evaluate(c, str(tmp_path))
  data = splits.load(c.input)
  assert results["test"]["num_examples"] == len(data.split("test")) > 0
  assert np.isfinite(results["val"]["accuracy"])
  written = json.loads((tmp_path / "data_splits.json").read_text())
  assert written["method"] == "kfold" and written["balance"]["how"] == "undersample"
  assert written["splits"]["test"]["images"] == len(data.split("test"))
  assert not set(written["patients"]["train"]) & set(written["patients"]["test"])


@pytest.mark.slow
def test_kermany_recipe_keeps_official_test_and_removes_shared_patients(tmp_path):
  """The real sample's official train and test share patients; the recipe's splits do not."""
  from configs import chest_xray  # pylint: disable=g-import-not-at-top
  from tests.conftest import require_shared  # pylint: disable=g-import-not-at-top

  manual_dir = require_shared("chest_xray")
  c = chest_xray.get_config()
  c.input.data_dir = str(tmp_path)
  builder = tfds_access.prepare(
    tfds_access.get_builder(c.input.data, c.input.data_dir), str(manual_dir)
  )
  data = splits.load(c.input)
  official = {
    s: set(views._PlainView(s, builder, c.input.data).patients) for s in ("train", "val", "test")
  }
  shared = (official["train"] | official["val"]) & official["test"]
  assert shared  # The trap is real in the sample...
  test, train, val = (set(data.split(s).patients) for s in ("test", "train", "val"))
  assert (
    test == official["test"] and len(data.split("test")) == builder.info.splits["test"].num_examples
  )
  assert not (train | val) & test and not train & val  # ...and gone from the splits.
  removed = data.report["removed_patient_overlap_with_kept"]
  assert removed["patients"] == len(shared)
  total = sum(builder.info.splits[s].num_examples for s in ("train", "val"))
  assert len(data.split("train")) + len(data.split("val")) + removed["images"] == total


def test_group_duplicates_keeps_copies_under_other_patient_ids_together(tmp_path):
  """A rotated copy of a training image filed under another patient stays on its side."""
  import shutil  # pylint: disable=g-import-not-at-top

  from PIL import Image  # pylint: disable=g-import-not-at-top

  manual = tmp_path / "manual"
  shutil.copytree(KERMANY_DUMMY, manual)
  root = manual / "chest_xray" / "train" / "PNEUMONIA"
  Image.open(root / "person3_virus_5.jpeg").rotate(90, expand=True).save(
    root / "person99_virus_1.jpeg", quality=90
  )
  data_dir = str(tmp_path / "tfds")
  tfds_access.prepare(tfds_access.get_builder("chest_xray_pneumonia/3class", data_dir), str(manual))
  cfg = _input(data_dir, **{"splits.method": "fractions", "splits.group_duplicates": True})
  cfg.data = "chest_xray_pneumonia/3class"
  cfg.splits.fractions = (0.5, 0.0, 0.5)
  for seed in range(4):
    cfg.splits.seed = seed
    data = splits.load(cfg)
    where = {
      p: s
      for s, v in data.splits.items()
      for p in v.patients
      if p.endswith(("person3", "person99"))
    }
    assert len(set(where.values())) == 1, (seed, where)
  assert data.report["duplicates_grouped"] == {
    "duplicate_pairs": 1,
    "cross_patient_pairs": 1,
    "patients_merged": 1,
  }


def test_class_caps_keep_whole_patients_under_the_cap_and_factors_repeat_rows():
  labels, groups = _cohort()
  rows = resplit.cap_rows(labels, groups, {0: 100, 1: 50}, seed=0)
  counts = np.bincount(labels[rows], minlength=3)
  assert 95 <= counts[0] <= 100 and 45 <= counts[1] <= 50  # Patients of 1-4 images fill it.
  assert counts[2] == (labels == 2).sum()  # Uncapped class untouched.
  kept = set(groups[rows])
  assert all((groups == g).sum() == (groups[rows] == g).sum() for g in kept)  # Whole patients.
  assert not np.array_equal(rows, resplit.cap_rows(labels, groups, {0: 100, 1: 50}, seed=1))
  rep = resplit.factor_rows(labels, {0: 1, 1: 8, 2: 2.5}, seed=0)
  n = np.bincount(labels, minlength=3)
  assert np.bincount(labels[rep], minlength=3).tolist() == [
    n[0],
    8 * n[1],
    2 * n[2] + int(round(0.5 * n[2])),
  ]
  assert set(rep) == set(range(len(labels)))


def test_class_caps_and_factors_through_the_config(tfds_dir):
  c = config_lib.base_config().input
  set_keys(c, data="synthetic_cxr/tiny", data_dir=tfds_dir, **{"splits.method": "fractions",
           "splits.fractions": (0.5, 0.25, 0.25)})  # fmt: skip
  tfds_access.prepare(tfds_access.get_builder(c.data, tfds_dir))
  c.class_caps = (("normal", 4),)
  c.class_factors = (("covid19", 3),)
  data = splits.load(c)
  assert data.report["class_caps"]["after"][0] <= 4
  assert data.report["class_factors"]["after"][2] % 3 == 0
  assert len(data.splits["train"]) == sum(data.report["class_factors"]["after"])
  c.class_caps = (("nope", 4),)
  with pytest.raises(ValueError, match="names class 'nope'"):
    splits.load(c)
  c.class_caps, c.splits.method = (("normal", 4),), "builder"
  with pytest.raises(ValueError, match="class_caps caps the pool"):
    splits.load(c)


def _write_splits(run, patients):
  run.mkdir(parents=True, exist_ok=True)
  (run / "data_splits.json").write_text(json.dumps({"patients": patients}))


def test_pin_rows_keeps_a_runs_patients_in_its_splits(tmp_path):
  run = tmp_path / "source"
  _write_splits(run, {"train": ["k:a", "k:b"], "val": ["k:c"], "test": ["k:d", "k:e"]})
  patients = np.array(["k:a", "k:a", "k:b", "k:c", "k:d", "k:e", "c:x", "c:y", "c:z"])
  # c:x is a duplicate of k:d's image (one group): it goes where k:d went, to test.
  groups = np.array(["k:a", "k:a", "k:b", "k:c", "k:d", "k:e", "k:d", "c:y", "c:z"])
  pool = np.array([0, 1, 2, 3, 4, 6, 7, 8])  # k:e's image was capped away.
  pinned, rest = resplit.pin_rows(pool, patients, groups, str(run))
  assert {k: v.tolist() for k, v in pinned.items()} == {
    "train": [0, 1, 2], "val": [3], "test": [4, 6]
  }  # fmt: skip
  assert rest.tolist() == [7, 8]  # New patients, for the re-split.


def test_pin_rows_a_group_pinned_twice_goes_to_test_and_errors_name_the_file(tmp_path):
  run = tmp_path / "r"
  _write_splits(run, {"train": ["a"], "test": ["b"]})
  pinned, rest = resplit.pin_rows(np.array([0, 1]), np.array(["a", "b"]), np.array(["g", "g"]),
                                  str(run))  # fmt: skip
  assert pinned["test"].tolist() == [0, 1] and "train" not in pinned and not len(rest)
  with pytest.raises(FileNotFoundError, match=r"pin_run=.*nowhere.*data_splits.json"):
    resplit.pin_rows(np.array([0]), np.array(["a"]), np.array(["a"]), str(tmp_path / "nowhere"))
  (run / "data_splits.json").write_text("{}")
  with pytest.raises(ValueError, match=r"data_splits.json: expected a JSON object with 'patients'"):
    resplit.pin_rows(np.array([0]), np.array(["a"]), np.array(["a"]), str(run))


def test_a_run_from_a_source_run_refuses_its_training_patients_unless_pinned(
  tfds_dir, tiny_run, tmp_path, caplog
):
  # model_init = a run whose train/val patients this run's re-split puts in val or test: refused
  # (the figures would be measured partly on the source's training data), naming the fix.
  import logging  # pylint: disable=g-import-not-at-top

  from conftest import tiny_config  # pylint: disable=g-import-not-at-top

  from jaxcxr import train  # pylint: disable=g-import-not-at-top
  from jaxcxr.data import splits as splits_lib  # pylint: disable=g-import-not-at-top

  c = tiny_config(tfds_dir, **{"input.splits.method": "fractions", "input.splits.seed": 3})
  c.model_init = tiny_run
  data = train.load_datasets(c)
  with pytest.raises(ValueError, match=r"trained on or selected by patients .*pin_run="):
    splits_lib.check_source_overlap(c, data)
  c.input.splits.allow_source_overlap = True
  with caplog.at_level(logging.WARNING):
    splits_lib.check_source_overlap(c, data)
  assert "trained on or selected by" in caplog.text
  # Pinned to the source run: every patient keeps its split there, nothing to refuse.
  c.input.splits.allow_source_overlap = False
  c.input.splits.pin_run = tiny_run
  splits_lib.check_source_overlap(c, train.load_datasets(c))
  # The source's own builder splits: disjoint by construction.
  b = tiny_config(tfds_dir)
  b.model_init = tiny_run
  splits_lib.check_source_overlap(b, train.load_datasets(b))
