r"""Naik et al. 2021 (Keras InceptionV3): COVID-19 / normal / pneumonia on Kaggle's "Chest X-ray
(Covid-19 & Pneumonia)", with a search over the classifier's training.

    # the search: 5 epochs each with the backbone frozen, ranked on validation accuracy
    python -m jaxcxr.sweep --config configs/studies/naik2021.py:search,data=DIR --workdir S \
        --space random --trials 30
    # the final recipe
    python -m jaxcxr.train --config configs/studies/naik2021.py:data=DIR --workdir W
    python -m jaxcxr.sweep --config configs/studies/naik2021.py:tiny --workdir W --trials 2  # CI

Data: `chest_xray_covid19_pneumonia` (DIR holds Kaggle's `Data/`), its train and test folders
pooled, every class undersampled to the smallest *before* the split (`input.splits.balance`),
then a 70/10/20 stratified re-split. Images scaled to [0, 1] (the study's min-max rescale by
1/255: `input.mode='custom'`, mean 0, std 1), InceptionV3 with Keras ImageNet weights at 299 px;
rotation ±10°, shifts up to 10%, horizontal flips. Final recipe: 5 epochs with the backbone
frozen, then every layer with early stopping on validation accuracy (`configs/naik_inception.py`),
Nadam 1e-3, head GAP → 3×Dense(32, selu) → softmax (`model.head='gap_mlp'`); train / val / test
precision, recall and F1 (per class and macro) in eval/.

`get_hyper(arg)` (for `jaxcxr.sweep`): the study's space, head activation (sigmoid, tanh, relu,
elu, selu; each with its matched initialiser, BN except for selu) × hidden layers (0-4) × width
(32-256) × optimizer (Adam, RMSprop, Adagrad, Adadelta, Adamax, Nadam) × initial rate (0.1 ...
1e-4), each trial one 5-epoch frozen-backbone stage (`search`), ranked on `val_accuracy`
(`--space random --trials N` samples it; the full grid has 2,040 points).

Reported figure: not copied here (the paper was not available offline in this environment).

What jaxcxr changes and why:
* The upstream set has no patient ids and overlaps Cohen's and Kermany's sets (see the builder):
  the split cannot be patient-disjoint; near-duplicate images are grouped instead.
* The untrained-head baseline is the final recipe's evaluation at step 0 (`eval_at_start`:
  `eval/<split>@0.json` beside the trained reports); the search's trials skip it.
"""

from configs import common, naik_inception
from jaxcxr import config_lib

OPTIMIZERS = ("adam", "rmsprop", "adagrad", "adadelta", "adamax", "nadam")
RATES = (0.1, 0.01, 1e-3, 1e-4)
ACTIVATIONS = ("sigmoid", "tanh", "relu", "elu", "selu")
WIDTHS = (32, 64, 128, 256)


def get_config(arg: str = ""):
  args, kv = common.parse_arg(
    arg, "configs/studies/naik2021.py", words=("tiny", "search"), keys=("data",)
  )
  c = naik_inception.get_config()
  c.input.data = "chest_xray_covid19_pneumonia"
  c.input.manual_dir = kv.get("data")
  c.input.splits.method, c.input.splits.keep = "fractions", ()
  c.input.splits.fractions = (0.7, 0.1, 0.2)
  c.input.splits.balance = "undersample"
  c.input.splits.group_duplicates = True
  c.input.mode, c.input.mean, c.input.std = "custom", (0.0,), (1.0,)
  c.optimizer.name, c.optimizer.lr = "nadam", 1e-3
  # The final head: GAP -> 3 x Dense(32, selu) (LeCun-normal init, no BN) -> softmax.
  c.model.head, c.model.head_hidden, c.model.head_activation = "gap_mlp", (32, 32, 32), "selu"
  c.augment.rotate_deg, c.augment.translate, c.augment.flip = 10.0, 0.1, 0.5
  c.eval_every_steps = 50
  c.eval_at_start = True  # The study's untrained-head baseline.
  if "tiny" in args:
    common.tiny_stages(c, "resnet_tiny", (2, 3))
    c.stages[1].early_stopping.patience = 2
    c.input.data, c.input.manual_dir = "synthetic_cxr/tiny", None
    c.input.splits.method, c.input.splits.group_duplicates = "fractions", False
    c.input.splits.fractions = (0.6, 0.2, 0.2)
  if "search" in args:
    # The search form: one stage, the head only, 5 epochs (2 steps with `tiny`).
    first = c.stages[0].to_dict()
    c.stages = (config_lib.stage(**{**first, "name": "search"}),)
    c.best_monitor, c.select = "val_accuracy", "last"
    c.eval_at_start = False  # Trials are ranked on val alone; the baseline is the final recipe's.
  return c


def get_hyper(arg: str = ""):
  """The sweep's space (dotted config keys -> values) for `jaxcxr.sweep`."""
  args, _ = common.parse_arg(
    arg, "configs/studies/naik2021.py", words=("tiny", "search"), keys=("data",)
  )
  if "tiny" in args:
    return [
      {"optimizer.name": "adam", "optimizer.lr": 1e-3, "model.head_activation": "relu",
       "model.head_hidden": [8]},
      {"optimizer.name": "nadam", "optimizer.lr": 1e-2, "model.head_activation": "selu",
       "model.head_hidden": [8, 8]},
    ]  # fmt: skip
  depths = [()] + [(w,) * n for n in range(1, 5) for w in WIDTHS]
  return {
    "model.head_activation": list(ACTIVATIONS),
    "model.head_hidden": depths,
    "optimizer.name": list(OPTIMIZERS),
    "optimizer.lr": list(RATES),
  }
