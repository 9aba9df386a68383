"""The config schema: the default config every recipe in `configs/` starts from.

Every key a recipe may set exists here, so that a locked config (`lock_config=True`) rejects a
misspelt key from a recipe or the command line with ml_collections' "Did you mean ...?" message.
Durations are given in steps (`total_steps`) or epochs (`num_epochs`) and converted in one place,
`resolve_total_steps`. What recipes share on top of the schema (the `:arg` parser, `tiny`
overrides, fastai augmentation, the COVID-19 mixture recipe) lives in `configs/common.py`.
"""

from __future__ import annotations

import os

import ml_collections

from jaxcxr.constants import IMAGENET_MEAN, IMAGENET_STD, LUNG_MASK_MODES


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # 'classification', or 'segmentation' (a dataset with `mask`s, e.g. lung_segmentation; a UNet,
  # loss 'bce_dice', the 'segmentation' evaluator's Dice/IoU; jaxcxr.models.unet).
  c.task = "classification"

  c.input = ml_collections.ConfigDict()
  c.input.data = "synthetic_cxr"  # TFDS name, `dataset` or `dataset/config`.
  c.input.data_dir = ml_collections.FieldReference(None, field_type=str)  # None: TFDS default.
  c.input.manual_dir = ml_collections.FieldReference(None, field_type=str)
  c.input.prepare = True  # Build the array_record files on first use if missing.
  c.input.train_split = "train"
  c.input.batch_size = 32  # Global batch, over all devices and hosts.
  c.input.eval_batch_size = 0  # 0: same as batch_size.
  c.input.image_size = 224
  # How images reach image_size × image_size (jaxcxr.data.pipeline.fit; training, evaluation and
  # inference alike): 'stretch' (aspect ratio not kept) or 'letterbox' (aspect ratio kept, the
  # rest padded with grey level `pad_value` 0-255; Zhang & Liu 2021).
  c.input.resize = "stretch"
  c.input.pad_value = 128
  # Input normalisation: 'auto' (that of the pretrained weights in `model_init`, else 'torch'),
  # 'torch' (ImageNet mean/std), 'caffe' (BGR mean subtraction on 0-255), 'tf' ([-1, 1]) — the
  # Keras `preprocess_input` modes of the backbones' original weights — or 'custom' (the mean/std
  # below, on [0, 1] images).
  c.input.mode = "auto"
  c.input.mean = IMAGENET_MEAN
  c.input.std = IMAGENET_STD
  # The prepared image cache (jaxcxr.data.prepared): '' off, 'auto' ($JAXCXR_PREPARED_CACHE_DIR,
  # else ~/.cache/jaxcxr/prepared) or a directory. Images decoded and resized once, read back
  # as uint8 array_record; rebuilt when the data, records, size, resize mode or lung mask change.
  c.input.prepared_cache = ""
  # Training batches put on the devices this many steps ahead (pipeline.DevicePrefetch; the
  # checkpointed data position stays that of the last batch a step used). 0: no lookahead.
  c.input.prefetch_to_device = 2
  c.input.num_workers = 0  # grain worker processes.
  c.input.num_threads = 4  # grain reader threads per worker.
  # Mixtures (jaxcxr.data.classes): a tuple of dicts {data, splits, class_map, manual_dir}; empty:
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
  # kfold: where validation comes from: 'rest' (`val_fraction` of all, from the training folds) or
  # 'held_out' (the held-out fold halved by patient into val and test; Alotaibi 2020's protocol).
  c.input.splits.val_from = "rest"
  # Balance the pool *before* a re-split ('none', 'oversample', 'undersample'; Naik et al. 2021
  # undersampled every class to the smallest first). `input.balance` balances the training split.
  c.input.splits.balance = "none"
  c.input.splits.test_per_class = 0
  c.input.splits.seed = 0
  # Also keep (near-)duplicate images of different patient ids on one side of a re-split (the
  # leakage audit's perceptual hashes; costs one decode + hash per image, ~8 ms on one core).
  c.input.splits.group_duplicates = False
  # A run's workdir whose `data_splits.json` fixes the split of every patient that run had, for
  # a target task trained from it (homologous transfer, Zhang & Liu 2021): its test patients
  # stay in test, its training patients stay out of val and test. New patients are re-split.
  c.input.splits.pin_run = ""
  # A run initialised from another run (`model_init` = its workdir) refuses evaluation splits
  # holding patients that run trained on or selected by (its train/val): its figures would be
  # partly measured on training data. True turns the refusal into a warning.
  c.input.splits.allow_source_overlap = False
  c.input.balance = "none"  # Training split: 'none', 'oversample' or 'undersample'.
  # Per-class caps ((class name, max images), ...) on the pool a re-split draws from, whole
  # patients at random (Rachha 2020: 704 no-finding, 500 pneumonia).
  c.input.class_caps = ()
  # Per-class repetition factors ((class name, factor), ...) of the training split, applied after
  # `balance` (Bassi & Attux 2021's online oversampling x8 / x8 / x72).
  c.input.class_factors = ()
  # Lung masking as preprocessing (jaxcxr.lung_mask; Zhang & Liu 2021): `run`, a segmentation
  # run's workdir (configs/lung_unet.py; '' = off), its checkpoint `step` ('best', 'latest' or N),
  # `mode` 'black' (outside the lungs set to 0), 'crop' (to the lungs' bounding box, widened by
  # `margin` of its size per side) or 'both'; masks cached in `cache_dir` ('': WORKDIR/lung_masks).
  # A predicted lung area outside [min_area, max_area] of the image falls back to the whole image.
  c.input.lung_mask = ml_collections.ConfigDict(
    {
      "run": "", "step": "best", "mode": "black", "margin": 0.05, "cache_dir": "",
      "min_area": 0.05, "max_area": 0.8,
    }
  )  # fmt: skip

  c.model_name = "resnet50"
  c.model = ml_collections.ConfigDict()
  c.model.in_chans = 3
  c.model.drop_rate = 0.0
  # The classifier head (jaxcxr.models.heads): '' / 'gap_linear' / 'dropout_linear' (the family's
  # own: GAP, dropout `drop_rate`, linear), 'flatten_bn_dense' (Keras: flatten, BN, dense, BN,
  # dropout; Alotaibi 2020), 'gap_mlp' (GAP, `head_hidden` dense layers of `head_activation`
  # with matched initialisers, BN except for selu; Naik et al. 2021) or 'concat_pool' (fastai's
  # head: avg+max pool, BN, dropout, linear 512, ReLU, BN, dropout, linear). The backbone's own
  # head is replaced after `model_init` loads (every family; on VGG fc6-fc8 go with it).
  c.model.head = ""
  c.model.head_hidden = ()  # Widths of the hidden layers (flatten_bn_dense: 128, concat_pool: 512).
  c.model.head_activation = "relu"  # relu, elu, selu, sigmoid or tanh.
  # Depthwise convs (EfficientNet, MobileNetV2): 'auto' (shifted slices on CPU, XLA's convolution
  # on GPU/TPU), 'slices' or 'xla'; see jaxcxr/models/depthwise.py.
  c.model.depthwise_impl = "auto"
  # Pretrained initialisation: a registered name (`resnet50.tv_in1k`; `python -m jaxcxr.models`
  # lists them), a local checkpoint file, or a `jaxcxr.weights.convert_checkpoint` directory.
  c.model_init = ""
  c.model_load = ml_collections.ConfigDict()
  c.model_load.dont_load = ()  # Regexes of NNX paths to keep as initialised.
  # When `model_init` is a jaxcxr run directory: its 'latest' checkpoint or its 'best' state.
  c.model_load.step = "latest"
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
  c.optimizer.rho = 0.9  # rmsprop/adadelta decay of the squared-gradient average (Keras' rho).
  c.optimizer.weight_decay = 0.0
  c.optimizer.grad_clip_norm = 0.0  # 0: no clipping.
  # Which parameters weight decay applies to: 'kernels' (not biases nor norm scales) or 'all'
  # (PyTorch's SGD/Adam `weight_decay`, as the CheXNet retraining used).
  c.optimizer.decay = "kernels"
  # Skip up to this many consecutive steps whose gradients are not finite (optax.apply_if_finite:
  # the update and batch statistics are left out). 0: a non-finite loss or gradient stops the run.
  c.optimizer.skip_nonfinite = 0

  c.schedule = ml_collections.ConfigDict()
  c.schedule.name = "cosine"
  c.schedule.warmup_steps = 0
  c.schedule.warmup_init_factor = 0.0
  c.schedule.end_factor = 0.0
  c.schedule.boundaries_steps = ()
  c.schedule.boundaries_epochs = ()
  c.schedule.factor = 0.1
  c.schedule.pct_start = 0.25  # onecycle: fraction of the run spent warming up (fastai's).
  c.schedule.div_factor = 25.0  # onecycle: start at lr / div_factor.
  c.schedule.final_div_factor = 1e4  # onecycle: end at lr / (div_factor * final_div_factor).

  c.loss = ml_collections.ConfigDict()
  c.loss.name = "softmax_xent"
  c.loss.label_smoothing = 0.0
  # Per-class loss weights: 'none', 'balanced' (n / (k * n_c) from the training split's class
  # counts, scikit-learn's rule) or comma-separated floats in class order ('1,2.5,1').
  c.loss.class_weights = "none"
  c.loss.dice_weight = 1.0  # 'bce_dice': loss = BCE + dice_weight * (1 - soft Dice).

  # On-device augmentation of training batches (jaxcxr.data.augment: its docstring has each op).
  c.augment = ml_collections.ConfigDict()
  c.augment.flip = 0.0
  c.augment.rotate_deg = 0.0
  c.augment.max_zoom = 1.0  # Zoom factor ~ U(1, max_zoom) (fastai); or `zoom`, not both.
  c.augment.zoom = ()  # (lo, hi): zoom factor ~ U(lo, hi), > 1 zooms in (Alotaibi: 1.05-1.1).
  c.augment.translate = 0.0  # Largest shift, a fraction of the side, both axes.
  # (fx, fy): per-axis largest shifts, fractions of width and height (Bassi & Attux 2021: 40 px
  # and 28 px of 224, (40 / 224, 28 / 224)); replaces `translate`, not both.
  c.augment.translate_xy = ()
  # > 0: each axis' shift magnitude ~ U(translate_min, max) with a random sign (Alotaibi: 3-10%).
  c.augment.translate_min = 0.0
  # (alpha, sigma) in multiples of the image height: elastic deformation (dm-pix; Alotaibi:
  # alpha = 2H, sigma = 0.1H: (2.0, 0.1)). Gated by p_affine.
  c.augment.elastic = ()
  c.augment.warp = 0.0  # fastai's perspective warp magnitude (its aug_transforms: 0.2).
  c.augment.brightness = 0.0
  c.augment.contrast = 0.0
  c.augment.vflip = 0.0  # Vertical flip probability (fastai's flip_vert).
  c.augment.dihedral = 0.0  # fastai's Dihedral: probability of one of the 8 square symmetries.
  c.augment.gamma = ()  # (lo, hi): out = in ** g, g ~ U(lo, hi) (Alotaibi 2020: 1.05-1.11).
  c.augment.brightness_mult = ()  # (lo, hi): out = in * f (Keras brightness_range).
  c.augment.p_affine = 0.75
  c.augment.p_lighting = 0.75
  # Per image a random non-empty subset of the enabled ops instead of the p_affine / p_lighting
  # gates (Alotaibi 2020's "one or more of"); flips keep their own probabilities.
  c.augment.subset = False

  c.val_split = "val"  # Evaluated every eval_every_steps during training ("" for none).
  c.eval_splits = ("val", "test")  # Evaluated at the end; written to WORKDIR/eval/<split>.json.
  # Evaluation splits whose images take `config.augment` too (Keras studies that drew validation
  # from the augmenting ImageDataGenerator). One fixed draw per split and example, so every
  # evaluation of a split sees the same images; a split named like 'test' is refused.
  c.augment_eval = ()
  c.eval_every_steps = 0  # 0: only at the end.
  c.log_every_steps = 10
  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 3
  # Save and exit after this many steps in this invocation (0: run to the end). For job systems
  # with time limits: re-running the same command resumes.
  c.halt_after_steps = 0
  c.progress_bar = True

  # Staged fine-tuning (jaxcxr.training.stages): an ordered tuple of `stage(...)` ConfigDicts, each
  # with its own length, trainable parameters, optimizer overrides, per-group rates, early stopping
  # and plateau. Empty: one stage from the keys above (today's single-stage training).
  c.stages = ()
  # Monitor of the best checkpoint (WORKDIR/best, orbax best_fn/best_mode): '<evaluator>_<scalar>'
  # e.g. 'val_loss', 'val_accuracy', 'val_auroc_macro'; '' keeps none. Never a test split.
  c.best_monitor = ""
  # Which state the final report (eval/<split>.json) evaluates: 'last' or 'best' (needs
  # best_monitor). The report says which (`selected`).
  c.select = "last"
  # Also evaluate the initial state on eval_splits before the first step (the untrained-head
  # baseline; Naik et al. 2021): eval/<split>@0.json. A resumed run does not repeat it.
  c.eval_at_start = False
  # Evaluator plug-ins (jaxcxr.evaluators) run during training: {name: {type, split, every_steps,
  # ...}}. Empty: one 'classification' evaluator named 'val' on val_split every eval_every_steps.
  c.evals = ml_collections.ConfigDict()
  # The final reports (eval/<split>.json): 95% patient-level bootstrap intervals beside every
  # metric (jaxcxr.intervals; `bootstrap` resamples, 0: none; images without a patient id are
  # their own clusters) and a calibration block (ECE with `calibration_bins` equal-width bins,
  # Brier, NLL; jaxcxr.calibration).
  c.report = ml_collections.ConfigDict()
  c.report.bootstrap = 2000
  c.report.bootstrap_method = "bca"  # 'bca' or 'percentile'
  c.report.bootstrap_seed = 0
  c.report.calibration_bins = 15  # 0: no calibration block.
  # Post-hoc, fitted on val_split only and saved in WORKDIR/calibration/ (jaxcxr.post_hoc), then
  # applied to the other splits: temperature scaling (Guo et al. 2017) and per-class decision
  # thresholds, 'youden' (Youden's J), 'sensitivity>=T' or per class '<class>>=T', comma-separated
  # (e.g. 'youden,covid19>=0.95'; '': none).
  c.report.temperature_scaling = True
  c.report.operating_point = "youden"
  # WORKDIR/report.html with PNG figures after the final reports (jaxcxr.report; seconds).
  c.report.html = True
  # Its heat-map gallery (jaxcxr.gallery): Grad-CAM of up to this many most confidently correct
  # and as many wrong test images per class (restores the model, reads the test images again;
  # seconds on a CPU for a few classes). 0: none.
  c.report.gallery = 4
  return c


def stage(**overrides) -> ml_collections.ConfigDict:
  """One entry of `config.stages`: the defaults below with `overrides` (dotted keys allowed).

  Unknown keys are errors. Sub-dicts `optimizer` and `schedule` hold overrides of the run's
  `config.optimizer` / `config.schedule` keys for this stage only.
  """
  s = ml_collections.ConfigDict()
  s.name = ""
  s.total_steps = 0  # The stage's length: steps, or epochs when total_steps is 0.
  s.num_epochs = 0.0
  # What trains: layer-group names (jaxcxr.models.groups) or regexes over NNX parameter paths
  # ('head', 'block4', r'^layer4/'); empty: everything. `frozen` is taken out afterwards, and
  # so are the first `freeze_groups` layer groups.
  s.trainable = ()
  s.frozen = ()
  s.freeze_groups = 0
  s.train_norms = False  # Also train every norm layer's scale and bias (Keras/fastai stage 1).
  # Batch-norm running statistics: 'update', 'frozen' (none change) or 'trainable' (only those of
  # norm layers whose parameters train change; Keras' frozen BN layers).
  s.bn_stats = "update"
  s.optimizer = ml_collections.ConfigDict()  # Overrides of config.optimizer, e.g. {'lr': 1e-4}.
  s.schedule = ml_collections.ConfigDict()  # Overrides of config.schedule.
  # Per-group learning-rate multipliers: ((group or regex, multiplier), ...), first match wins;
  # unmatched trainable parameters keep 1. `lr_slice=(lo, hi)`: fastai's slice, rates spread
  # geometrically from lo (first group) to hi (last), replacing the stage's lr.
  s.lr_mult = ()
  s.lr_slice = ()
  s.eval_every_steps = 0  # 0: config.eval_every_steps, or every epoch with early stop/plateau.
  s.early_stopping = ml_collections.ConfigDict()
  s.early_stopping.monitor = "val_loss"
  s.early_stopping.patience = 0  # Evaluations without improvement that end the stage; 0: off.
  s.early_stopping.min_delta = 0.0
  s.plateau = ml_collections.ConfigDict()  # optax.contrib.reduce_on_plateau on a monitor.
  s.plateau.monitor = "val_loss"
  s.plateau.patience = 0  # Evaluations without improvement before the rate drops; 0: off.
  s.plateau.factor = 0.1
  s.plateau.rtol = 0.0
  s.plateau.atol = 1e-4  # Keras min_delta; a drop smaller than this is no improvement.
  s.plateau.cooldown = 0
  s.plateau.min_scale = 0.0
  for key, value in overrides.items():
    node = s
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    if isinstance(value, dict) and leaf in ("optimizer", "schedule"):
      for k, v in value.items():
        node[leaf][k] = v
    elif isinstance(value, dict):
      for k, v in value.items():
        if k not in node[leaf]:
          raise KeyError(f"stage key {key}.{k} is not one of {sorted(node[leaf])}.")
        node[leaf][k] = v
    else:
      if leaf not in node:
        raise KeyError(f"stage key {key!r} is not one of {sorted(node)}.")
      node[leaf] = value
  return s


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


def validate(config: ml_collections.ConfigDict, num_devices: int = 1) -> None:
  """Checks the numbers of a whole config once, at start, before any data is touched.

  Each mistake would otherwise surface late (after training, in PIL or grain, or as a
  `ZeroDivisionError`) or not at all (a negative `total_steps` trains nothing and exits 0).

  Args:
    config: a config built from `base_config()`.
    num_devices: the global device count the batches are split over.

  Raises:
    ValueError: naming the first offending key, its value and what is expected.
  """

  def get(key: str):
    node = config
    for part in key.split("."):
      node = node[part]
    return node

  def require(key: str, ok, expected: str) -> None:
    value = get(key)
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (is_number and value == value and ok(value)):  # `value == value`: not NaN
      raise ValueError(f"config.{key}={value!r}: expected {expected}.")

  positive_int = lambda v: float(v).is_integer() and v > 0
  non_negative_int = lambda v: float(v).is_integer() and v >= 0
  require("input.batch_size", positive_int, "a positive integer")
  require("input.eval_batch_size", non_negative_int, "a positive integer (0: batch_size)")
  for key in ("input.batch_size", "input.eval_batch_size"):
    if get(key) % num_devices:
      raise ValueError(
        f"config.{key}={get(key)} must be divisible by the number of devices ({num_devices}) "
        "so that every device gets the same number of examples."
      )
  require("input.image_size", positive_int, "a positive integer (pixels)")
  require("input.num_workers", non_negative_int, "a non-negative integer")
  require("input.num_threads", positive_int, "a positive integer")
  require("input.prefetch_to_device", non_negative_int, "a non-negative integer (0: off)")
  for split in config.get("augment_eval", ()) or ():
    if not isinstance(split, str) or "test" in split.lower():
      raise ValueError(
        f"config.augment_eval={tuple(config.augment_eval)!r}: expected names of validation "
        f"splits; {split!r} is refused (an augmented test set measures augmented copies)."
      )
  cache = config.input.get("prepared_cache", "")
  if not isinstance(cache, str) or (cache not in ("", "auto") and os.path.isfile(cache)):
    raise ValueError(
      f"config.input.prepared_cache={cache!r}: expected '' (off), 'auto' or a directory."
    )
  require("model.in_chans", positive_int, "a positive integer")
  require("num_classes", non_negative_int, "a non-negative integer (0: from the data)")
  require("total_steps", non_negative_int, "a non-negative integer (0: use num_epochs)")
  require("num_epochs", lambda v: 0 <= v < float("inf"), "a non-negative number")
  # A staged run's length is the sum of its stages' (each checked by jaxcxr.training.stages).
  if not config.get("stages") and not config.total_steps and not config.num_epochs:
    raise ValueError("Set config.total_steps or config.num_epochs to a positive value.")
  require("optimizer.lr", lambda v: 0 < v < float("inf"), "a positive finite number")
  require("optimizer.skip_nonfinite", non_negative_int, "a non-negative integer (0: stop at once)")
  require("schedule.warmup_steps", non_negative_int, "a non-negative integer")
  require("log_every_steps", positive_int, "a positive integer")
  require("eval_every_steps", non_negative_int, "a non-negative integer (0: only at the end)")
  if config.input.splits.val_from not in ("rest", "held_out"):
    raise ValueError(
      f"config.input.splits.val_from={config.input.splits.val_from!r}: expected 'rest' or "
      "'held_out'."
    )
  resize_modes = ("stretch", "letterbox")
  if config.input.get("resize", "stretch") not in resize_modes:
    raise ValueError(
      f"config.input.resize={config.input.resize!r}: expected one of {resize_modes}."
    )
  if "pad_value" in config.input:
    require("input.pad_value", lambda v: float(v).is_integer() and 0 <= v <= 255,
            "an integer grey level in [0, 255]")  # fmt: skip
  validate_augment(config.augment)
  heads = ("", "gap_linear", "dropout_linear", "flatten_bn_dense", "gap_mlp", "concat_pool")
  if config.model.head not in heads:
    raise ValueError(f"config.model.head={config.model.head!r}: expected one of {heads}.")
  require("checkpoint_every_steps", non_negative_int, "a non-negative integer")
  require("keep_checkpoints", positive_int, "a positive integer")
  require("halt_after_steps", non_negative_int, "a non-negative integer (0: run to the end)")
  require("report.gallery", non_negative_int, "a non-negative integer (0: no heat-map gallery)")
  for key in ("temperature_scaling", "html"):
    if not isinstance(config.report[key], bool):
      raise ValueError(f"config.report.{key}={config.report[key]!r}: expected a bool.")
  from jaxcxr import post_hoc  # pylint: disable=g-import-not-at-top

  post_hoc.parse_operating_point(config.report.operating_point)  # Its syntax; classes at setup.
  tasks = ("classification", "segmentation")
  if config.get("task", "classification") not in tasks:
    raise ValueError(f"config.task={config.task!r}: expected one of {tasks}.")
  if (config.get("task") == "segmentation") != (config.loss.name == "bce_dice"):
    raise ValueError(
      f"config.task={config.get('task', 'classification')!r} with config.loss.name="
      f"{config.loss.name!r}: segmentation trains with 'bce_dice', which only it can use."
    )
  require("loss.dice_weight", lambda v: 0 <= v < float("inf"), "a non-negative number")
  check_lung_mask(config)


def check_lung_mask(config: ml_collections.ConfigDict) -> None:
  """`config.input.lung_mask` (`jaxcxr.lung_mask`): its keys' values (the UNet run itself is
  checked when it is restored), and no mixture entry masking on its own.

  Raises:
    ValueError: naming the key, its value and what is expected.
  """
  for i, m in enumerate(config.input.get("mixture", ())):
    if "lung_mask" in dict(m):
      raise ValueError(
        f"config.input.mixture[{i}] sets 'lung_mask': masking applies to every component alike "
        "(masked images of some sources or classes beside unmasked others are a shortcut); set "
        "config.input.lung_mask instead."
      )
  if not config.input.get("lung_mask", {}).get("run"):
    return
  lm = config.input.lung_mask
  if lm.mode not in LUNG_MASK_MODES:
    raise ValueError(f"config.input.lung_mask.mode={lm.mode!r}: expected one of {LUNG_MASK_MODES}.")
  if not (isinstance(lm.margin, int | float) and 0 <= lm.margin < 1):
    raise ValueError(
      f"config.input.lung_mask.margin={lm.margin!r}: expected a number in [0, 1) (a fraction "
      "of the lung bounding box added on each side)."
    )
  if not 0 <= lm.min_area <= lm.max_area <= 1:
    raise ValueError(
      f"config.input.lung_mask: min_area={lm.min_area!r}, max_area={lm.max_area!r}: expected "
      "0 <= min_area <= max_area <= 1 (fractions of the image)."
    )
  if config.get("task", "classification") != "classification":
    raise ValueError(
      f"config.input.lung_mask.run is set for config.task={config.task!r}: lung masking is "
      "preprocessing for classification."
    )


def validate_augment(aug: ml_collections.ConfigDict) -> None:
  """Checks every `config.augment` key (jaxcxr.data.augment's ops): unknown keys, probabilities
  in [0, 1], ranges, and keys that say the same thing twice.

  Raises:
    ValueError: naming the key, its value and what is expected.
  """
  known = base_config().augment
  unknown = sorted(set(aug) - set(known))
  if unknown:
    raise ValueError(
      f"config.augment has unknown key(s) {unknown}: expected keys of {sorted(known)}."
    )

  def number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v

  def check(key: str, ok, expected: str) -> None:
    value = aug[key]
    if not (number(value) and ok(value)):
      raise ValueError(f"config.augment.{key}={value!r}: expected {expected}.")

  def pair(key: str, ok, expected: str) -> tuple:
    value = aug[key]
    r = tuple(value) if isinstance(value, tuple | list) else value
    if r == ():
      return r
    if not (isinstance(r, tuple) and len(r) == 2 and all(number(v) for v in r) and ok(*r)):
      raise ValueError(f"config.augment.{key}={value!r}: expected () (off) or {expected}.")
    return r

  for key in ("flip", "vflip", "dihedral", "p_affine", "p_lighting"):
    check(key, lambda v: 0 <= v <= 1, "a probability in [0, 1]")
  check("rotate_deg", lambda v: 0 <= v <= 180, "a non-negative angle in degrees, at most 180")
  check("max_zoom", lambda v: 1 <= v < float("inf"), "a zoom factor >= 1 (1: no zoom)")
  zoom = pair("zoom", lambda lo, hi: 0 < lo <= hi < float("inf"), "(lo, hi) with 0 < lo <= hi")
  if zoom and aug.max_zoom != 1:
    raise ValueError(
      f"config.augment.zoom={zoom} and config.augment.max_zoom={aug.max_zoom}: set one ((1, m) "
      "is max_zoom m)."
    )
  fraction = lambda v: 0 <= v < 1  # noqa: E731
  check("translate", fraction, "a fraction of the side in [0, 1)")
  xy = pair("translate_xy", lambda fx, fy: fraction(fx) and fraction(fy),
            "(fx, fy), fractions of the width and the height in [0, 1)")  # fmt: skip
  if xy and aug.translate:
    raise ValueError(
      f"config.augment.translate_xy={xy} and config.augment.translate={aug.translate}: set one."
    )
  t_max = xy or (aug.translate, aug.translate)
  if number(aug.translate_min) and aug.translate_min > 0 and not min(t_max):
    raise ValueError(
      f"config.augment.translate_min={aug.translate_min} needs a shift on both axes "
      f"(translate / translate_xy, now {t_max})."
    )
  check("translate_min", lambda v: 0 <= v <= min(t_max), f"a fraction in [0, {min(t_max)}], "
        "at most the largest shift of each axis (translate / translate_xy)")  # fmt: skip
  pair("elastic", lambda a, s: a > 0 and s > 0 and a < float("inf") and s < float("inf"),
       "(alpha, sigma) > 0, multiples of the image height (Alotaibi 2020: (2.0, 0.1))")  # fmt: skip
  check("warp", fraction, "a magnitude in [0, 1) (fastai's default 0.2)")
  for key in ("gamma", "brightness_mult"):
    pair(key, lambda lo, hi: 0 < lo <= hi < float("inf"), "(lo, hi) with 0 < lo <= hi")
  check("brightness", lambda v: 0 <= v <= 1, "a largest delta in [0, 1]")
  check("contrast", lambda v: 0 <= v <= 1, "a largest relative change in [0, 1]")
  if not isinstance(aug.subset, bool):
    raise ValueError(f"config.augment.subset={aug.subset!r}: expected a bool.")


def from_run_json(saved: dict) -> ml_collections.ConfigDict:
  """A run's config rebuilt from its `WORKDIR/config.json`: `base_config()` with the saved values.

  JSON turns tuples into lists and stages into plain dicts; both are turned back. Keys the saved
  config has and this schema lacks (a run of another jaxcxr version) are an error naming them,
  except under `model`: that holds the model constructor's keywords, which a config may extend
  with any its model takes (`configs/lung_unet.py`'s `decoder_channels`), so they are kept.
  """
  c = base_config()
  unknown = []

  def convert(value):
    if isinstance(value, dict):
      return ml_collections.ConfigDict(value)
    if isinstance(value, list):
      return tuple(convert(v) for v in value)
    return value

  def merge(node: ml_collections.ConfigDict, values: dict, prefix: str) -> None:
    for key, value in values.items():
      if key not in node:
        if prefix == "model.":  # A keyword of the run's model (see above), kept as saved.
          node[key] = convert(value)
        else:
          unknown.append(prefix + key)
        continue
      current = node[key]
      if isinstance(current, ml_collections.ConfigDict) and isinstance(value, dict) and current:
        merge(current, value, f"{prefix}{key}.")
        continue
      with node.ignore_type():  # JSON cannot tell 1 from 1.0 or a tuple from a list.
        node[key] = convert(value)

  merge(c, saved, "")
  if unknown:
    raise ValueError(f"The saved config has keys this jaxcxr does not know: {unknown}.")
  return c
