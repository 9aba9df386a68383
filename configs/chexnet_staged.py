r"""CheXNet retrained in four stages (Bassi & Attux 2021, "A deep convolutional neural network for
COVID-19 detection using chest X-rays", Res. Biomed. Eng.): DenseNet-121 from ImageNet weights.

    python -m jaxcxr.train --config configs/chexnet_staged.py --workdir W
    python -m jaxcxr.train --config configs/chexnet_staged.py:tiny --workdir W   # CI-sized

(1) the new head only, 10 epochs, SGD with momentum 0.9, lr 1e-3, weight decay 0.01 on every
parameter (PyTorch's SGD), early stopping with patience 5; (2) all layers with discriminative
rates: the last layer 1e-5 and each dense block ~3x smaller than the one after it, 96 epochs,
patience 20; (3) weight decay 0 and every rate x0.1, 48 epochs; (4) every layer at 1e-5, 48 epochs.
The best validation-loss state is reported. The study used CheXNet's ChestX-ray14 weights; ImageNet
weights stand in (`model_init`), or a ChestX-ray14 run of configs/nih_chestxray14.py.
"""

from configs import common
from jaxcxr import config_lib

stage = config_lib.stage

# Stage 2's rates relative to its lr (1e-5, the head's): each block ~3x below the next one.
_BLOCK_MULT = (("head", 1.0), ("block4", 1 / 3), ("block3", 1 / 9), ("block2", 1 / 27),
               ("block1", 1 / 81), ("stem", 1 / 243))  # fmt: skip


def get_config(arg: str = ""):
  c = config_lib.base_config()
  c.input.data = "chest_xray"
  c.input.image_size = 224
  c.input.batch_size = 16
  c.model_name = "densenet121"
  c.model_init = "densenet121.tv_in1k"
  c.model.in_chans = 3
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.9
  c.optimizer.lr = 1e-3
  c.optimizer.weight_decay = 0.01
  c.optimizer.decay = "all"  # PyTorch SGD decays every parameter.
  c.schedule.name = "constant"
  c.best_monitor = "val_loss"
  c.select = "best"
  c.stages = (
    stage(name="head", num_epochs=10.0, trainable=("head",),
          early_stopping={"monitor": "val_loss", "patience": 5}),
    stage(name="discriminative", num_epochs=96.0, optimizer={"lr": 1e-5}, lr_mult=_BLOCK_MULT,
          early_stopping={"monitor": "val_loss", "patience": 20}),
    stage(name="no_decay", num_epochs=48.0, optimizer={"lr": 1e-6, "weight_decay": 0.0},
          lr_mult=_BLOCK_MULT),
    stage(name="flat", num_epochs=48.0, optimizer={"lr": 1e-5, "weight_decay": 0.0}),
  )  # fmt: skip
  if "tiny" in common.parse_arg(arg, "configs/chexnet_staged.py", words=("tiny",))[0]:
    common.tiny_stages(c, "densenet_tiny", (2, 3, 2, 2))
  return c
