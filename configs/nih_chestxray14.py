r"""CheXNet's source task: 14 findings of NIH ChestX-ray14, multi-label, DenseNet-121.

    python -m jaxcxr.train --config configs/nih_chestxray14.py --workdir W \
        --config.input.manual_dir=PATH/TO/ChestX-ray14

Rajpurkar et al., "CheXNet: Radiologist-Level Pneumonia Detection on Chest X-Rays with Deep
Learning", arXiv:1711.05225, 2017: DenseNet-121 from ImageNet weights, one sigmoid per finding
(binary cross-entropy), Adam (lr 1e-3, betas 0.9/0.999), batch 16, 224 px, random horizontal
flips, and a patient-disjoint 70/10/20 split of all 112,120 images (not the official lists).
Here: the 14 findings (`no_finding` is dropped from the targets by the class map, so a no-finding
image is negative for all 14), the same patient-grouped 70/10/20 split stratified on each
image's rarest finding, and a cosine schedule in place of CheXNet's decay-on-plateau. Reports
the AUROC of every finding (WORKDIR/eval/test.json `per_class.*.auroc`) and their mean.
`:tiny` gives a CI-sized run (DenseNet-tiny, 32 px, from scratch).
"""

from configs import common
from jaxcxr import config_lib, constants

FINDINGS = constants.CHESTXRAY14_LABELS


def get_config(arg: str = ""):
  args, _ = common.parse_arg(arg, "configs/nih_chestxray14.py", words=("tiny",))
  c = config_lib.base_config()
  c.input.mixture = ({"data": "nih_chestxray14", "class_map": {f: f for f in FINDINGS}},)
  c.input.class_names = FINDINGS
  c.input.splits.method = "fractions"
  c.input.splits.fractions = (0.7, 0.1, 0.2)
  c.input.image_size = 224
  c.input.batch_size = 16
  c.model_name = "densenet121"
  c.model_init = "densenet121.tv_in1k"
  c.model.in_chans = 1
  c.num_epochs = 10.0
  c.optimizer.name = "adam"
  c.optimizer.lr = 1e-3
  c.schedule.name = "cosine"
  c.loss.name = "sigmoid_xent"
  c.augment.flip = 0.5  # CheXNet's only augmentation.
  c.eval_every_steps = 1000
  c.checkpoint_every_steps = 1000
  if "tiny" in args:
    common.tiny(c, "densenet_tiny", image_size=32, batch_size=4)
  return c
