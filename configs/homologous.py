r"""Homologous transfer (Zhang & Liu 2021): initialise from a previous jaxcxr run on a related
chest X-ray task (e.g. pneumonia, configs/chest_xray.py) with a new head, freeze the first k
modules, train the classifier, then unfreeze part of the network at Adam 1e-4; the state with the
lowest validation loss is reported.

    python -m jaxcxr.train --config configs/chest_xray.py --workdir SOURCE ...
    python -m jaxcxr.train --config configs/homologous.py --workdir W \
        --config.model_init=SOURCE --config.input.data=... --config.input.manual_dir=...
    python -m jaxcxr.train --config configs/homologous.py:tiny --workdir W \
        --config.model_init=SOURCE_TINY   # CI-sized

`model_init` is the source run's directory (`model_load.step`: 'latest' or 'best'); a different
class count re-initialises the classifier (logged). Stage 1 trains the classifier only; stage 2
keeps the first 3 layer groups (stem, layer1, layer2) frozen.
"""

from configs import common
from jaxcxr import config_lib

stage = config_lib.stage


def get_config(arg: str = ""):
  c = config_lib.base_config()
  common.kermany_splits(c, "3class")
  c.input.image_size, c.input.batch_size = 128, 32
  c.model_name, c.model.in_chans = "resnet18", 1
  c.model_init = ""  # Set to the source run's workdir.
  c.model_load.step = "best"
  c.optimizer.name, c.optimizer.lr = "adam", 1e-3
  c.schedule.name = "constant"
  c.best_monitor, c.select = "val_loss", "best"
  c.stages = (
    stage(name="classifier", num_epochs=5.0, trainable=("head",)),
    stage(name="partial", num_epochs=20.0, freeze_groups=3, optimizer={"lr": 1e-4}),
  )  # fmt: skip
  if "tiny" in common.parse_arg(arg, "configs/homologous.py", words=("tiny",))[0]:
    common.tiny_stages(c, "resnet_tiny", (2, 3))
    c.model_load.step = "latest"
  return c
