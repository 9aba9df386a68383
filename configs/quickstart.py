r"""Quick start: a tiny ResNet on the synthetic chest-radiograph set, from scratch, on a CPU.

    python -m jaxcxr.train --config configs/quickstart.py --workdir /tmp/jaxcxr_quickstart

Needs no download: the TFDS builder `tfds_builders/synthetic_cxr` generates a small *synthetic*
three-class set (normal / focal "pneumonia" opacity / bilateral peripheral "covid19" opacities;
not medical data) into the TFDS data dir on first use. On a 2-core CPU the run takes a few
minutes and ends by printing the val and test metrics (test macro AUROC well above 0.5).
"""

from jaxcxr import config_lib


def get_config():
  c = config_lib.base_config()
  c.input.data = "synthetic_cxr/default"
  c.input.image_size = 64
  c.input.batch_size = 32
  c.input.mode = "custom"
  c.input.mean = (0.5,)
  c.input.std = (0.25,)
  c.model_name = "resnet_tiny"
  c.model.in_chans = 1
  c.num_epochs = 15.0
  c.optimizer.name = "radam"
  c.optimizer.lr = 3e-3
  c.optimizer.weight_decay = 1e-4
  c.schedule.name = "cosine"
  c.schedule.warmup_steps = 10
  c.loss.label_smoothing = 0.1
  c.augment.rotate_deg = 5.0
  c.augment.max_zoom = 1.05
  c.augment.brightness = 0.1
  c.augment.contrast = 0.1
  c.eval_every_steps = 50
  c.checkpoint_every_steps = 50
  c.log_every_steps = 5
  return c
