"""Constants more than one part of jaxcxr needs: input normalisation and dataset vocabularies.

A leaf module (it imports nothing of jaxcxr): configs, models, weights and builders read these
values from here instead of spelling them again.
"""

from __future__ import annotations

# ImageNet channel statistics (RGB, on [0, 1] images): torchvision's and timm's defaults.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The Keras `preprocess_input` modes the studies used, as (mean, std) on [0, 1] images.
# caffe: BGR channel order, 0-255, ImageNet BGR mean subtracted, no scaling. Grey radiographs are
# replicated to three equal channels, so the RGB→BGR swap is a no-op on the image; only the mean
# vector is in BGR order, matching the first conv of caffe-mode weights. `custom` (not listed)
# takes mean/std from the config.
PREPROCESSING_MODES = {
  "torch": (IMAGENET_MEAN, IMAGENET_STD),
  "caffe": ((103.939 / 255, 116.779 / 255, 123.68 / 255), (1 / 255, 1 / 255, 1 / 255)),
  "tf": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}

# The 14 ChestX-ray14 findings (Wang et al., "ChestX-ray8: Hospital-scale Chest X-ray Database
# and Benchmarks on Weakly-Supervised Classification and Localization of Common Thorax
# Diseases", CVPR 2017) as spelt upstream, in the order of the `Finding Labels` legend of
# README_CHESTXRAY.pdf, which is also the order of CheXNet's 14 outputs.
CHESTXRAY14_FINDINGS = (
  "Atelectasis",
  "Cardiomegaly",
  "Effusion",
  "Infiltration",
  "Mass",
  "Nodule",
  "Pneumonia",
  "Pneumothorax",
  "Consolidation",
  "Edema",
  "Emphysema",
  "Fibrosis",
  "Pleural_Thickening",
  "Hernia",
)
# The same findings as TFDS label names (`Pleural_Thickening` -> `pleural_thickening`).
CHESTXRAY14_LABELS = tuple(f.lower() for f in CHESTXRAY14_FINDINGS)

# config.input.lung_mask.mode (jaxcxr.lung_mask): outside the lungs black, cropped to them, both.
LUNG_MASK_MODES = ("black", "crop", "both")
