r"""Three classes from two sources: Cohen COVID-19 + COVIDx normal / pneumonia.

    python -m jaxcxr.train --config configs/cohen_covidx.py:cohen=DIR1,covidx=DIR2 --workdir W

The composite set of the COVID-19 transfer-learning studies: the frontal COVID-19 X-rays of Cohen
et al.'s collection (`covid_chestxray/3class`, class `covid-19` only) and the normal and
pneumonia images of COVID-Net's COVIDx (`covidx/v9a`, train and test files pooled; its own
COVID-19 images are left out and counted). DIR1 holds Cohen's `covid-chestxray-dataset/` (or is
it), DIR2 the COVIDx folders (`train/`, `test/`, `train_COVIDx9A.txt`, ...).

Splits are re-made patient-disjoint and class-stratified over the mixture (70/10/20,
StratifiedGroupKFold; patients are namespaced by dataset, and patients whose images are
(near) duplicates of each other are kept together: Cohen files some radiographs under two
patient ids). ResNet-50 from ImageNet weights,
RAdam, label smoothing, class-weighted loss.

COVIDx's normal/pneumonia images come mostly from RSNA/ChestX-ray14 while the COVID-19 class here
comes from publications and Radiopaedia: class is confounded with source (and image size and
format). Run `python -m jaxcxr.audit --config configs/cohen_covidx.py:...` first; it also finds
COVIDx images that are Cohen images (COVIDx was built partly from Cohen's collection).
`:tiny` (with the directories) gives a CI-sized run (ResNet-tiny, 32 px, from scratch).
"""

from configs import common
from jaxcxr import config_lib

CLASS_NAMES = ("normal", "pneumonia", "covid-19")


def get_config(arg: str = ""):
  args, dirs = common.parse_arg(
    arg, "configs/cohen_covidx.py", words=("tiny",), keys=("cohen", "covidx")
  )
  c = config_lib.base_config()
  c.input.mixture = (
    {
      "data": "covid_chestxray/3class",
      "class_map": {"covid-19": "covid-19"},
      "manual_dir": dirs.get("cohen"),
    },
    {
      "data": "covidx/v9a",
      "class_map": {"normal": "normal", "pneumonia": "pneumonia"},
      "manual_dir": dirs.get("covidx"),
    },
  )
  c.input.class_names = CLASS_NAMES
  common.covid_mixture_recipe(c, is_tiny="tiny" in args)
  return c
