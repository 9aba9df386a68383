r"""Lung segmentation: a UNet on an ImageNet EfficientNet-Lite0 encoder, Cohen's V7 lung masks.

    python -m jaxcxr.train --config configs/lung_unet.py --workdir W \
        --config.input.manual_dir=../shared/data
    python -m jaxcxr.train --config configs/lung_unet.py:tiny --workdir W   # CI: dummy data

Zhang & Liu (2021) segment the lungs with a UNet (Ronneberger et al. 2015; their Dice 0.958 was
on Montgomery + Shenzhen) before classifying. This recipe trains `unet_lite0` (the decoder of
`jaxcxr.models.unet` on `tf_efficientnet_lite0` with its real ImageNet weights,
`tf_efficientnet_lite0.pypi_in1k`) on `lung_segmentation/cohen_v7` (298 radiographs with V7
Labs lung masks) at 256 px with per-pixel BCE + soft Dice, patient-disjoint splits 70/10/20
(test 20%, validation 10% of all, from the other 80%), geometric augmentation applied to image and
mask together, the best state by validation Dice, and reports test Dice/IoU per image after
post-processing (two largest components, holes filled, whole-image fallback counted).

`:tiny`: `unet_mini` from scratch on the builder's dummy data (`lung_segmentation/all`: dummy
Cohen, Montgomery and Shenzhen images) at 32 px, a few steps: trains in seconds.
Other words: `montgomery`, `shenzhen`, `all` pick that builder config instead of `cohen_v7`.
"""

import pathlib

import ml_collections

from configs import common
from jaxcxr import config_lib

_DUMMY = pathlib.Path(__file__).resolve().parents[1] / "tfds_builders/lung_segmentation/dummy_data"
_SOURCES = ("cohen_v7", "montgomery", "shenzhen", "all")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  words, _ = common.parse_arg(arg, "configs/lung_unet.py", words=("tiny", *_SOURCES[1:]))
  source = next((w for w in _SOURCES if w in words), "cohen_v7")
  c = config_lib.base_config()
  c.task = "segmentation"
  c.input.data = f"lung_segmentation/{source}"
  c.input.splits.method = "fractions"  # Patient-disjoint (the builder's patient ids).
  c.input.splits.fractions = (0.7, 0.1, 0.2)
  c.input.image_size = 256
  c.input.batch_size = 8
  c.input.eval_batch_size = 16
  c.model_name = "unet_lite0"
  c.model_init = "tf_efficientnet_lite0.pypi_in1k"  # Into the encoder; mode 'auto': its stats.
  c.model.in_chans = 3
  # A quarter of segmentation_models_pytorch's decoder FLOPs (channels halved; 8 at full size):
  # 1.2 GMAC per 256 px image instead of 2.9, what a shared 2-core CPU trains in minutes.
  c.model.decoder_channels = (128, 64, 32, 16, 8)
  c.loss.name = "bce_dice"
  c.total_steps = 200  # ~7.7 epochs of the 209 training images at batch 8.
  c.optimizer.name = "adamw"
  c.optimizer.lr = 1e-3
  c.optimizer.weight_decay = 1e-4
  c.schedule.name = "cosine"
  c.schedule.warmup_steps = 10
  # No flip: the heart makes left and right lungs differ; lighting is applied to the image only.
  c.augment.rotate_deg = 10.0
  c.augment.max_zoom = 1.1
  c.augment.translate = 0.05
  c.augment.brightness = 0.2
  c.augment.contrast = 0.2
  c.evals.val = ml_collections.ConfigDict({"type": "segmentation", "split": "val"})
  c.eval_every_steps = 40
  c.best_monitor = "val_dice"
  c.select = "best"
  c.checkpoint_every_steps = 100
  c.log_every_steps = 10
  c.report.bootstrap = 0  # Classification intervals; the segmentation report is per image.
  if "tiny" in words:
    common.tiny(c, "unet_mini", image_size=32, batch_size=4)
    del c.model["decoder_channels"]  # The plain UNet's decoder mirrors its encoder.
    c.model.in_chans = 1
    c.input.data = "lung_segmentation/all"
    c.input.manual_dir = str(_DUMMY)
    c.input.eval_batch_size = 4
    c.input.splits.fractions = (0.5, 0.25, 0.25)
    c.total_steps = 6
    c.schedule.warmup_steps = 2
    c.eval_every_steps = 3
    c.checkpoint_every_steps = 3
    c.log_every_steps = 1
    c.progress_bar = False
  return c
