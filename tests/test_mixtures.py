"""The studies' composite training sets (configs/kermany_cohen.py, configs/cohen_covidx.py) train
a few steps on the builders' dummy data, with the class maps and patient-disjoint splits applied."""

from __future__ import annotations

import collections
import importlib

import numpy as np
import pytest

from jaxcxr import train
from jaxcxr.data import splits
from tests.conftest import REPO

DUMMY = {
  "chest_xray_pneumonia": REPO / "tfds_builders" / "chest_xray_pneumonia" / "dummy_data",
  "covid_chestxray": REPO / "tfds_builders" / "covid_chestxray" / "dummy_data",
  "covidx": REPO / "tfds_builders" / "covidx" / "dummy_data",
}


def _tiny(recipe: str, data_dir: str):
  c = importlib.import_module(f"configs.{recipe}").get_config("tiny")
  c.input.data_dir = data_dir
  # Each dataset's dummy data lives beside its builder.
  c.input.mixture = tuple(
    dict(m, manual_dir=str(DUMMY[m["data"].split("/")[0]])) for m in c.input.mixture
  )
  c.input.num_threads = 2
  c.input.batch_size = 4  # The dummy mixtures have 10-20 images.
  c.input.splits.fractions = (0.6, 0.2, 0.2)
  c.num_epochs, c.total_steps = 0.0, 3
  c.schedule.warmup_steps = 1
  c.eval_every_steps, c.checkpoint_every_steps, c.progress_bar = 0, 3, False
  return c


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["kermany_cohen", "cohen_covidx"])
def test_mixture_recipe_trains_a_few_steps(recipe, tmp_path):
  c = _tiny(recipe, str(tmp_path / "tfds"))
  results = train.train_and_evaluate(c, str(tmp_path / "run"))
  data = splits.load(c.input)
  assert data.class_names == list(c.input.class_names)
  assert results["test"]["class_names"] == list(c.input.class_names)
  assert results["test"]["num_examples"] == len(data.split("test"))
  # Every class of the map is present in the mixture, from the dataset the map says.
  origin = collections.defaultdict(set)
  for split in data.splits.values():
    for i in range(len(split)):
      ex = split[i]
      origin[data.class_names[ex["label"]]].add(ex["dataset"].split("/")[0])
  assert set(origin) == set(c.input.class_names)
  expected = {m["data"].split("/")[0] for m in c.input.mixture}
  assert set().union(*origin.values()) == expected
  patients = {s: set(v.patients) for s, v in data.splits.items()}
  assert not patients["train"] & patients["test"]
  assert np.isfinite(results["test"]["accuracy"])
