r"""Keras two-stage transfer learning (Alotaibi 2020, "Transfer learning for detecting COVID-19
cases from chest X-ray images"): ResNet50 with Keras' ImageNet weights on the Kermany set.

    python -m jaxcxr.train --config configs/keras_two_stage.py --workdir W \
        --config.input.manual_dir=../shared/data/chest_xray
    python -m jaxcxr.train --config configs/keras_two_stage.py:tiny --workdir W   # CI-sized

Stage 1 trains only the new head *and every batch-norm layer* (their statistics update too);
stage 2 unfreezes from Keras layer 165 (`jaxcxr.models.groups.keras_trainable_from`; VGG19 17,
DenseNet121 423 and InceptionV3 299 are mapped as well) with Adam 1e-3, ReduceLROnPlateau
(factor 0.05, patience 5 on val_loss) and early stopping (patience 10); Keras' frozen BN layers run
with fixed statistics (`bn_stats='trainable'`). The best val_loss state is reported.
"""

from configs import common
from jaxcxr import config_lib
from jaxcxr.models import groups

stage = config_lib.stage


def get_config(arg: str = ""):
  c = config_lib.base_config()
  common.kermany_splits(c, "2class")
  c.input.image_size, c.input.batch_size = 224, 32
  c.model_name = "resnet50_keras"
  c.model_init = "resnet50_keras.keras_in1k"  # Keras 'caffe' preprocessing comes with it.
  c.optimizer.name, c.optimizer.lr = "adam", 1e-3
  c.schedule.name = "constant"
  c.best_monitor, c.select = "val_loss", "best"
  c.stages = (
    stage(name="head_and_bn", num_epochs=10.0, trainable=("head",), train_norms=True),
    stage(
      name="from_layer_165", num_epochs=50.0,
      trainable=groups.keras_trainable_from("resnet50_keras", 165), bn_stats="trainable",
      plateau={"monitor": "val_loss", "patience": 5, "factor": 0.05},
      early_stopping={"monitor": "val_loss", "patience": 10},
    ),
  )  # fmt: skip
  if "tiny" in common.parse_arg(arg, "configs/keras_two_stage.py", words=("tiny",))[0]:
    common.tiny_stages(c, "resnet_tiny", (2, 4))
    # resnet_tiny has one block per stage: its last stage stands in for conv5_block3.
    c.stages[1].trainable = (r"^layer4/", r"^head/")
    c.stages[1].plateau.patience, c.stages[1].early_stopping.patience = 1, 2
  return c
