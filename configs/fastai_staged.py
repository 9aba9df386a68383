r"""fastai's freeze / unfreeze fine-tuning (Rachha 2020; Howard & Gugger 2020): ResNet-50 with
ImageNet weights, one-cycle rates.

    python -m jaxcxr.train --config configs/fastai_staged.py --workdir W \
        --config.input.manual_dir=../shared/data/chest_xray
    python -m jaxcxr.train --config configs/fastai_staged.py:tiny --workdir W   # CI-sized

`learn.freeze(); fit_one_cycle(4, 1e-3)`: the body frozen but its batch norms training (fastai's
`train_bn=True`); then `learn.unfreeze(); fit_one_cycle(4, slice(1e-6, 1e-4))`: every layer, the
rates spread geometrically from 1e-6 (stem) to 1e-4 (head) over the layer groups. Adam with
fastai's defaults (b1 0.9, b2 0.99, weight decay 0.01 on every parameter).
"""

from configs import common
from jaxcxr import config_lib

stage = config_lib.stage


def get_config(arg: str = ""):
  c = config_lib.base_config()
  common.kermany_splits(c, "2class")
  c.input.image_size, c.input.batch_size = 224, 32
  c.model_name, c.model_init = "resnet50", "resnet50.tv_in1k"
  c.optimizer.name, c.optimizer.b2 = "adamw", 0.99
  c.optimizer.weight_decay, c.optimizer.decay = 0.01, "all"
  c.schedule.name = "onecycle"
  c.eval_every_steps = 50
  c.stages = (
    stage(name="frozen", num_epochs=4.0, trainable=("head",), train_norms=True,
          optimizer={"lr": 1e-3}),
    stage(name="unfrozen", num_epochs=4.0, optimizer={"lr": 1e-4}, lr_slice=(1e-6, 1e-4)),
  )  # fmt: skip
  if "tiny" in common.parse_arg(arg, "configs/fastai_staged.py", words=("tiny",))[0]:
    common.tiny_stages(c, "resnet_tiny", (3, 3))
  return c
