r"""Alotaibi 2020 (Keras, four backbones): "Transfer learning for detecting COVID-19 cases from
chest X-ray images", stratified 5-fold cross-validation.

    python -m jaxcxr.kfold --config configs/studies/alotaibi2020.py:data=DIR --workdir W
    python -m jaxcxr.kfold --config configs/studies/alotaibi2020.py:backbone=inception_v3,data=DIR \
        --workdir W
    python -m jaxcxr.kfold --config configs/studies/alotaibi2020.py:2class,layout=flat2021,\
data=../shared/data/covid19-radiography-2021 --workdir W         # COVID vs Normal
    python -m jaxcxr.kfold --config configs/studies/alotaibi2020.py:tiny --workdir W --folds 2

Data: the COVID-19 Radiography Database (`covid19_radiography`; DIR holds the Kaggle download;
`layout=` picks the builder config: `current` (Kaggle v4-5, the default), `v1` or `flat2021`);
COVID-19 / normal / viral pneumonia, or `2class` COVID-19 vs normal.

Backbones (`backbone=`, default `resnet50`), each with its Keras ImageNet weights and the Keras
`preprocess_input` mode those weights' pretrained config carries (`input.mode='auto'`):
resnet50 ('caffe'), vgg19 ('caffe'), densenet121 ('torch') at 224 px, inception_v3 ('tf') at
299 px; `lite0` (not the study's) is EfficientNet-Lite0 with `tf_efficientnet_lite0.pypi_in1k`,
the one ImageNet checkpoint available offline here. `cpu`: 128 px, 1 + 2 epochs, no doubling
(what BENCHMARKS.md tried on two shared cores).

The two stages and callbacks are those of `configs/keras_two_stage.py`: the new head and every
batch norm, then from Keras layer 165 / 17 / 423 / 299 (`groups.keras_trainable_from`) with
ReduceLROnPlateau and early stopping; the state with the lowest validation loss is reported.
Folds: `jaxcxr.kfold` makes 5 stratified, patient-grouped folds; validation is half of the
held-out fold and test the other half (`val_from='held_out'`); confusion matrices are summed over
folds in `W/kfold_summary.md`. Balancing: every class of the training split oversampled to the
majority count, then doubled (`balance='oversample'`, `class_factors` 2: "to 2x the majority
class"), each copy augmented differently by the study's balancing augmentation: per image "one or
more of" (`augment.subset`: a uniformly drawn non-empty subset of) multiplicative brightness
1.05-1.1 (`brightness_mult`), gamma 1.05-1.11, elastic deformation with alpha = 2H and sigma =
0.1H (`elastic=(2.0, 0.1)`, dm-pix), zoom 1.05-1.1 (`zoom`, magnification), shift 3-10% (each
axis a magnitude in [0.03, 0.1] of the side with a random sign: `translate`, `translate_min`) and
rotation ±5°.

Reported figure: not copied here (the paper was not available offline in this environment).

What jaxcxr changes and why:
* Folds are grouped by patient where ids exist (this database has none: its `patient_id` is the
  file stem, so near-duplicate grouping is the only guard; `group_duplicates=True`).
* Validation is taken from the held-out fold as the study did, but monitors never read the test
  half (the trainer refuses a test monitor).
* The study's head (flatten → BN → Dense 128 ReLU → BN → Dropout 0.6 → softmax:
  `model.head='flatten_bn_dense'`) replaces the backbone's classifier on every backbone (on
  VGG19 fc6-fc8 go: Keras' `include_top=False` map, flattened).
* The paper gives the ranges, not how each op is drawn: here each chosen op draws its magnitude
  uniformly in its range; the shift applies to both axes (each its own magnitude and sign); the
  elastic field is imgaug/Keras-style (uniform noise smoothed by a Gaussian of sigma, times alpha).
"""

from configs import common, keras_two_stage
from jaxcxr.models import groups

# backbone= -> (model_name, Keras weights, image size, "trainable from" Keras layer index).
BACKBONES = {
  "resnet50": ("resnet50_keras", "resnet50_keras.keras_in1k", 224, 165),
  "vgg19": ("vgg19", "vgg19.keras_in1k", 224, 17),
  "densenet121": ("densenet121", "densenet121.keras_in1k", 224, 423),
  "inception_v3": ("inception_v3_keras", "inception_v3_keras.keras_in1k", 299, 299),
  # Not the study's: the one ImageNet checkpoint available offline here (its own 'tf' mode);
  # stage 2 trains its last MBConv stage, head conv and classifier.
  "lite0": ("tf_efficientnet_lite0", "tf_efficientnet_lite0.pypi_in1k", 224, None),
}
LAYOUTS = ("current", "v1", "flat2021")


def get_config(arg: str = ""):
  args, kv = common.parse_arg(
    arg, "configs/studies/alotaibi2020.py", words=("tiny", "2class", "cpu"),
    keys=("backbone", "data", "layout"),
  )  # fmt: skip
  c = keras_two_stage.get_config()
  layout = kv.get("layout", "current")
  if layout not in LAYOUTS:
    raise ValueError(f"configs/studies/alotaibi2020.py: layout={layout!r} is not one of {LAYOUTS}.")
  classes = {"covid-19": "covid-19", "normal": "normal"}
  if "2class" not in args:
    classes["viral_pneumonia"] = "viral_pneumonia"
  c.input.data = f"covid19_radiography/{layout}"
  c.input.mixture = ({"data": c.input.data, "class_map": classes, "manual_dir": kv.get("data")},)
  c.input.class_names = tuple(classes)
  c.input.splits.method = "kfold"
  c.input.splits.keep = ()
  c.input.splits.num_folds = 5
  c.input.splits.val_from = "held_out"
  c.input.splits.group_duplicates = True  # No patient ids upstream: copies stay together.
  c.input.balance = "oversample"
  c.input.class_factors = tuple((name, 2) for name in classes)
  backbone = kv.get("backbone", "resnet50")
  if backbone not in BACKBONES:
    raise ValueError(f"configs/studies/alotaibi2020.py: backbone={backbone!r} is not one of "
                     f"{sorted(BACKBONES)}.")  # fmt: skip
  c.model_name, c.model_init, c.input.image_size, layer = BACKBONES[backbone]
  c.input.mode = "auto"  # The Keras preprocessing mode of the weights' pretrained config.
  c.model.head, c.model.head_hidden, c.model.drop_rate = "flatten_bn_dense", (128,), 0.6
  if layer is None:
    c.stages[1].name, c.stages[1].trainable = "last_stage", (r"^blocks/6/", "top", "head")
  else:
    c.stages[1].name = f"from_layer_{layer}"
    c.stages[1].trainable = groups.keras_trainable_from(c.model_name, layer)
  # The balancing augmentation: "one or more of" the ops per image (jaxcxr.data.augment).
  c.augment.rotate_deg, c.augment.zoom = 5.0, (1.05, 1.1)
  c.augment.translate, c.augment.translate_min = 0.1, 0.03
  c.augment.elastic = (2.0, 0.1)  # alpha = 2H, sigma = 0.1H
  c.augment.gamma, c.augment.brightness_mult = (1.05, 1.11), (1.05, 1.1)
  c.augment.subset = True
  if "cpu" in args:
    # CPU-sized (2 shared cores): 128 px, 1 + 2 epochs, evaluated every 10 steps, patience 2 /
    # 1, no doubling of the balanced training split.
    c.input.image_size, c.input.batch_size = 128, 16
    c.stages[0].num_epochs, c.stages[1].num_epochs = 1.0, 2.0
    c.stages[1].early_stopping.patience, c.stages[1].plateau.patience = 2, 1
    c.stages[1].eval_every_steps = c.stages[0].eval_every_steps = 10
    c.input.class_factors = ()
    c.report.bootstrap = 500
  if "tiny" in args:
    c.stages = keras_two_stage.get_config("tiny").stages
    common.tiny_stages(c, "resnet_tiny", (2, 3))
    c.input.mixture, c.input.class_names = (), ()
    c.input.class_factors = (("normal", 2), ("pneumonia", 2), ("covid19", 2))
    c.input.splits.method, c.input.splits.group_duplicates = "kfold", False
  return c
