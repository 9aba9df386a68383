r"""ResNet-18 from scratch on Kermany's pediatric pneumonia set (normal vs pneumonia), 128 px.

    python -m jaxcxr.train --config configs/chest_xray.py --workdir W \
        --config.input.manual_dir=../shared/data/chest_xray
    # normal / bacterial / viral pneumonia:
    python -m jaxcxr.train --config configs/chest_xray.py:3class --workdir W ...

The dataset is prepared from a manual download (Kermany et al. 2018, Mendeley data
rscbjbr9sj/2; see tfds_builders/chest_xray_pneumonia/README.md) into array_record files on first
use, or beforehand with
    tfds build tfds_builders/chest_xray_pneumonia --manual_dir=DIR --file_format=array_record
The official `val` split has only 16 images, and the official train and test splits share
patients (46 of the ~545 patients of the shared sample are in both). So the official `test` is
kept, `train` + `val` are re-split into patient-disjoint, class-stratified train/val (90/10,
scikit-learn StratifiedGroupKFold), and the training images of patients who are also in `test`
are left out (their count is logged). The reported figures are those of `test`
(WORKDIR/eval/test.json). Pass `:tiny` for a ResNet-tiny at 64 px (CI-sized).
"""

from configs import common
from jaxcxr import config_lib


def get_config(arg: str = ""):
  args, _ = common.parse_arg(arg, "configs/chest_xray.py", words=("3class", "tiny"))
  c = config_lib.base_config()
  common.kermany_splits(c, "3class" if "3class" in args else "2class")
  c.input.image_size = 128
  c.input.batch_size = 32
  c.model_name = "resnet18"
  c.model.in_chans = 1
  c.num_epochs = 10.0
  c.optimizer.name = "radam"
  c.optimizer.lr = 1e-3
  c.optimizer.weight_decay = 1e-4
  c.schedule.name = "cosine"
  c.schedule.warmup_steps = 20
  c.loss.label_smoothing = 0.1
  common.fastai_augment(c)
  c.augment.flip = 0.0  # Anatomy is not left-right symmetric (heart, gastric bubble).
  c.eval_every_steps = 50
  c.checkpoint_every_steps = 50
  if "tiny" in args:
    c.model_name = "resnet_tiny"
    c.input.image_size = 64
  return c
