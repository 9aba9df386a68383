r"""InceptionV3 frozen, then unfrozen (Naik et al. 2021): Keras InceptionV3 with ImageNet weights.

    python -m jaxcxr.train --config configs/naik_inception.py --workdir W \
        --config.input.manual_dir=../shared/data/chest_xray
    python -m jaxcxr.train --config configs/naik_inception.py:tiny --workdir W   # CI-sized

5 epochs with the backbone frozen (the new head only; frozen batch norms keep their statistics),
then every layer with early stopping on validation accuracy (patience 5); the best val_accuracy
state is reported.
"""

from configs import common
from jaxcxr import config_lib

stage = config_lib.stage


def get_config(arg: str = ""):
  c = config_lib.base_config()
  common.kermany_splits(c, "2class")
  c.input.image_size, c.input.batch_size = 299, 32
  c.model_name = "inception_v3_keras"
  c.model_init = "inception_v3_keras.keras_in1k"
  c.optimizer.name, c.optimizer.lr = "adam", 1e-4
  c.schedule.name = "constant"
  c.best_monitor, c.select = "val_accuracy", "best"
  c.stages = (
    stage(name="frozen", num_epochs=5.0, trainable=("head",), bn_stats="frozen"),
    stage(name="all", num_epochs=30.0,
          early_stopping={"monitor": "val_accuracy", "patience": 5}),
  )  # fmt: skip
  if "tiny" in common.parse_arg(arg, "configs/naik_inception.py", words=("tiny",))[0]:
    common.tiny_stages(c, "resnet_tiny", (2, 4))  # inception_tiny needs 75+ px; same schedule.
    c.stages[1].early_stopping.patience = 2
  return c
