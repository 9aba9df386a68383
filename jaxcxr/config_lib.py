"""The default config every recipe in `configs/` starts from, and config helpers.

Every key a recipe may set exists here, so that a locked config (`lock_config=True`) rejects a
misspelt key from a recipe or the command line with ml_collections' "Did you mean ...?" message.
Durations are given in steps (`total_steps`) or epochs (`num_epochs`) and converted in one place,
`resolve_total_steps`.
"""

from __future__ import annotations

import ml_collections

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.input = ml_collections.ConfigDict()
  c.input.data = "synthetic_cxr"  # TFDS name, `dataset` or `dataset/config`.
  c.input.data_dir = ml_collections.FieldReference(None, field_type=str)  # None: TFDS default.
  c.input.manual_dir = ml_collections.FieldReference(None, field_type=str)
  c.input.prepare = True  # Build the array_record files on first use if missing.
  c.input.train_split = "train"
  c.input.batch_size = 32  # Global batch, over all devices and hosts.
  c.input.eval_batch_size = 0  # 0: same as batch_size.
  c.input.image_size = 224
  # Input normalisation: 'torch' (ImageNet mean/std), 'caffe' (BGR mean subtraction on 0-255),
  # 'tf' ([-1, 1]) — the Keras `preprocess_input` modes of the backbones' original weights — or
  # 'custom' (the mean/std below, on [0, 1] images).
  c.input.mode = "torch"
  c.input.mean = IMAGENET_MEAN
  c.input.std = IMAGENET_STD
  c.input.num_workers = 0  # grain worker processes.
  c.input.num_threads = 4  # grain reader threads per worker.
  # Mixtures (jaxcxr.data.sources): a tuple of dicts {data, splits, class_map, manual_dir}; empty:
  # `data` alone. `class_names` fixes the output class order (default: order of appearance).
  c.input.mixture = ()
  c.input.class_names = ()
  # Splits: 'builder' (the dataset's own), or patient-disjoint stratified re-splits 'fractions'
  # (train, val, test) / 'kfold' (`fold` of `num_folds` is test, `val_fraction` of all for val);
  # `test_per_class` > 0 holds out exactly that many test images per class; `keep` passes
  # official splits through (e.g. ('test',)) and re-splits the rest.
  c.input.splits = ml_collections.ConfigDict()
  c.input.splits.method = "builder"
  c.input.splits.keep = ()
  c.input.splits.fractions = (0.7, 0.1, 0.2)
  c.input.splits.num_folds = 5
  c.input.splits.fold = 0
  c.input.splits.val_fraction = 0.1
  c.input.splits.test_per_class = 0
  c.input.splits.seed = 0
  # Also keep (near-)duplicate images of different patient ids on one side of a re-split (the
  # leakage audit's perceptual hashes; costs one decode + hash per image, ~8 ms on one core).
  c.input.splits.group_duplicates = False
  c.input.balance = "none"  # Training split: 'none', 'oversample' or 'undersample'.

  c.model_name = "resnet50"
  c.model = ml_collections.ConfigDict()
  c.model.in_chans = 3
  c.model.drop_rate = 0.0
  # Depthwise convs (EfficientNet, MobileNetV2): 'auto' (shifted slices on CPU, XLA's convolution
  # on GPU/TPU), 'slices' or 'xla'; see jaxcxr/models/depthwise.py.
  c.model.depthwise_impl = "auto"
  # Pretrained initialisation: a registered name (`resnet50.tv_in1k`; `python -m jaxcxr.models`
  # lists them), a local checkpoint file, or a `jaxcxr.weights.convert_checkpoint` directory.
  c.model_init = ""
  c.model_load = ml_collections.ConfigDict()
  c.model_load.dont_load = ()  # Regexes of NNX paths to keep as initialised.
  c.num_classes = 0  # 0: the number of classes of the dataset's `label` feature.
  c.dtype = "float32"  # Computation dtype (bfloat16 on accelerators); parameters stay fp32.

  c.total_steps = 0
  c.num_epochs = 0.0  # Used when total_steps == 0.

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "radam"
  c.optimizer.lr = 1e-3
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-8
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
  c.optimizer.weight_decay = 0.0
  c.optimizer.grad_clip_norm = 0.0  # 0: no clipping.

  c.schedule = ml_collections.ConfigDict()
  c.schedule.name = "cosine"
  c.schedule.warmup_steps = 0
  c.schedule.warmup_init_factor = 0.0
  c.schedule.end_factor = 0.0
  c.schedule.boundaries_steps = ()
  c.schedule.boundaries_epochs = ()
  c.schedule.factor = 0.1

  c.loss = ml_collections.ConfigDict()
  c.loss.name = "softmax_xent"
  c.loss.label_smoothing = 0.0
  # Per-class loss weights: 'none', 'balanced' (n / (k * n_c) from the training split's class
  # counts, scikit-learn's rule) or comma-separated floats in class order ('1,2.5,1').
  c.loss.class_weights = "none"

  c.augment = ml_collections.ConfigDict()
  c.augment.flip = 0.0
  c.augment.rotate_deg = 0.0
  c.augment.max_zoom = 1.0
  c.augment.translate = 0.0
  c.augment.brightness = 0.0
  c.augment.contrast = 0.0
  c.augment.p_affine = 0.75
  c.augment.p_lighting = 0.75

  c.val_split = "val"  # Evaluated every eval_every_steps during training ("" for none).
  c.eval_splits = ("val", "test")  # Evaluated at the end; written to WORKDIR/eval/<split>.json.
  c.eval_every_steps = 0  # 0: only at the end.
  c.log_every_steps = 10
  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 3
  # Save and exit after this many steps in this invocation (0: run to the end). For job systems
  # with time limits: re-running the same command resumes.
  c.halt_after_steps = 0
  c.progress_bar = True
  return c


def fastai_augment(c: ml_collections.ConfigDict) -> None:
  """fastai's `aug_transforms()` defaults, as used by the fastai-based studies."""
  c.augment.flip = 0.5
  c.augment.rotate_deg = 10.0
  c.augment.max_zoom = 1.1
  c.augment.brightness = 0.2
  c.augment.contrast = 0.2


def covid_mixture_recipe(c: ml_collections.ConfigDict, tiny: bool = False) -> None:
  """What the COVID-19 mixture recipes share (configs/kermany_cohen.py, configs/cohen_covidx.py).

  Patient-disjoint 70/10/20 re-split with duplicate grouping; ResNet-50 from ImageNet weights
  with the first conv summed to one channel; RAdam, cosine, label smoothing, class-weighted loss,
  fastai augmentation without flips. `tiny`: ResNet-tiny from scratch at 32 px (CI-sized).
  """
  c.input.splits.method = "fractions"
  c.input.splits.group_duplicates = True  # Copies under other patient ids stay together.
  c.input.splits.fractions = (0.7, 0.1, 0.2)
  c.input.image_size = 224
  c.input.batch_size = 32
  c.model_name = "resnet50"
  c.model_init = "resnet50.tv_in1k"
  c.model.in_chans = 1
  c.num_epochs = 10.0
  c.optimizer.name = "radam"
  c.optimizer.lr = 1e-4
  c.schedule.name = "cosine"
  c.schedule.warmup_steps = 50
  c.loss.label_smoothing = 0.1
  c.loss.class_weights = "balanced"
  fastai_augment(c)
  c.augment.flip = 0.0  # Anatomy is not left-right symmetric.
  c.eval_every_steps = 100
  c.checkpoint_every_steps = 100
  if tiny:
    c.model_name, c.model_init = "resnet_tiny", ""
    c.input.image_size, c.input.batch_size = 32, 8
    c.input.mode, c.input.mean, c.input.std = "custom", (0.5,), (0.25,)


def resolve_total_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  """Training length in steps, from `total_steps` or `num_epochs` (exactly one must be set)."""
  if config.total_steps and config.num_epochs:
    raise ValueError(
      f"Set config.total_steps ({config.total_steps}) or config.num_epochs "
      f"({config.num_epochs}), not both."
    )
  if config.total_steps:
    return int(config.total_steps)
  if config.num_epochs:
    return max(1, int(round(config.num_epochs * steps_per_epoch)))
  raise ValueError("Set config.total_steps or config.num_epochs to a positive value.")
