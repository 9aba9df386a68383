r"""Four classes from two sources: Kermany normal / bacterial / viral + Cohen COVID-19.

    python -m jaxcxr.train --config configs/kermany_cohen.py --workdir W \
        --config.input.manual_dir=../shared/data

The composite set of the studies that added COVID-19 to Kermany's pneumonia classes: Kermany et
al. 2018 (`chest_xray_pneumonia/3class`, all of its splits pooled) and the frontal COVID-19
X-rays of Cohen et al.'s collection (`covid_chestxray/3class`, class `covid-19` only; its other
pneumonias and no-finding images are left out and counted). `manual_dir` is one folder holding
both downloads (`chest_xray/` and `covid-chestxray-dataset/`), as in ../shared/data.

Splits are re-made patient-disjoint and class-stratified over the mixture (70/10/20,
StratifiedGroupKFold; patients are namespaced by dataset, and patients whose images are
(near) duplicates of each other are kept together: Cohen files some radiographs under two
patient ids). ResNet-50 from ImageNet weights
(`resnet50.tv_in1k`, first conv summed to one channel), RAdam, label smoothing, class-weighted
loss (COVID-19 is the smallest class).

Read the audit before the numbers: every COVID-19 image is an adult radiograph, often cropped
from a publication, and every other image a pediatric one from one hospital, so class is
confounded with source, age, size and format (`python -m jaxcxr.audit --config
configs/kermany_cohen.py ...` measures how much). High accuracy here is not evidence of COVID-19
detection. `:tiny` gives a CI-sized run (ResNet-tiny, 32 px, from scratch).

`:masked=UNET_RUN` (with `mask_mode=black|crop|both`, default black) lung-masks every image of
every class by a `configs/lung_unet.py` run (`jaxcxr.lung_mask`; never by Cohen's own masks,
which exist for COVID-19 images only), for the masked-vs-unmasked comparison of Zhang & Liu 2021:
the same recipe and seed with and without it.
"""

from configs import common
from jaxcxr import config_lib

CLASS_NAMES = ("normal", "bacterial", "viral", "covid-19")


def get_config(arg: str = ""):
  args, kv = common.parse_arg(
    arg, "configs/kermany_cohen.py", words=("tiny",), keys=common.LUNG_MASK_KEYS
  )
  c = config_lib.base_config()
  c.input.mixture = (
    {"data": "chest_xray_pneumonia/3class"},  # normal, bacterial, viral as they are.
    {"data": "covid_chestxray/3class", "class_map": {"covid-19": "covid-19"}},
  )
  c.input.class_names = CLASS_NAMES
  common.covid_mixture_recipe(c, is_tiny="tiny" in args)
  common.lung_mask(c, kv, "configs/kermany_cohen.py")
  return c
