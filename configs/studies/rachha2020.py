r"""Rachha 2020 (fastai, eight backbones): COVID-19 / pneumonia / no-finding from two sources.

    python -m jaxcxr.lr_find --config configs/studies/rachha2020.py:cohen=D1,covidx=D2 \
        --workdir W/lr
    python -m jaxcxr.train --config configs/studies/rachha2020.py:cohen=D1,covidx=D2 --workdir W
    python -m jaxcxr.train --config configs/studies/rachha2020.py:backbone=resnet101,cohen=D1,\
covidx=D2 --workdir W
    python -m jaxcxr.train --config configs/studies/rachha2020.py:tiny --workdir W   # CI-sized

Backbones (`backbone=`, default `efficientnet_b7`): efficientnet_b7, efficientnet_b4 (timm's
`tf_efficientnet_b*` weights: the TF originals the fastai/timm models of 2020 loaded), resnet101,
resnet152, densenet169, densenet201, mobilenet_v2, vgg19_bn (torchvision weights), all at 224 px.
`configs/effnet_b7.py` is this recipe with its default backbone.

The recipe: Cohen's COVID-19 images plus COVIDx normal / pneumonia and COVIDx's own COVID-19 images
("COVID-19 from both sources"), capped at 704 no-finding and 500 pneumonia images
(`input.class_caps`, whole patients at random); fastai's `aug_transforms(flip_vert=True)` (flip,
vertical flip, rotate 10°, zoom 1.1, lighting 0.2, perspective warp 0.2, p 0.75;
`common.fastai_augment` with `augment.vflip` and `augment.warp`); the LR finder first
(`jaxcxr.lr_find`), then fastai's freeze / unfreeze (`configs/fastai_staged.py`: the body frozen
with its batch norms training, one-cycle; then everything with `lr_slice`), RAdam, label smoothing
0.1, batch 32, 50 epochs in all (5 frozen + 45 unfrozen); reports accuracy, AUROC, top-2 accuracy,
P/R/F1 (per class and macro) and the confusion matrix.

Reported figure: not copied here (the paper was not available offline in this environment); see
Rachha 2020 for its per-backbone accuracies.

What jaxcxr changes and why:
* The study chose its best model on the test set; this recipe keeps the state with the best
  validation loss (`best_monitor='val_loss'`, `select='best'`) and reports test once.
* Its split was by image; here patient-disjoint and class-stratified 70/10/20 with near-duplicate
  images of different patient ids kept together (Cohen files some radiographs twice; COVIDx reuses
  Cohen's images), so the test split holds no copy of a training image.
* fastai's `flip_vert=True` draws one of the 8 dihedral symmetries (`Dihedral`); here independent
  horizontal and vertical flips (p 0.5 each) give 4 of them (no transposition).
* fastai's concat-pool head (`model.head='concat_pool'`, ps=0.5) on every backbone; on VGG19-BN
  it replaces fc6-fc8 and reads the conv map, as fastai's `cnn_learner` cuts VGG at its features.
"""

from configs import common, fastai_staged

# backbone= -> (model_name, pretrained weights).
BACKBONES = {
  "efficientnet_b7": ("tf_efficientnet_b7", "tf_efficientnet_b7.ra_in1k"),
  "efficientnet_b4": ("tf_efficientnet_b4", "tf_efficientnet_b4.in1k"),
  "resnet101": ("resnet101", "resnet101.tv_in1k"),
  "resnet152": ("resnet152", "resnet152.tv_in1k"),
  "densenet169": ("densenet169", "densenet169.tv_in1k"),
  "densenet201": ("densenet201", "densenet201.tv_in1k"),
  "mobilenet_v2": ("mobilenet_v2", "mobilenet_v2.tv_in1k"),
  "vgg19_bn": ("vgg19_bn", "vgg19_bn.tv_in1k"),
}
CLASS_NAMES = ("normal", "pneumonia", "covid-19")


def get_config(arg: str = ""):
  args, kv = common.parse_arg(
    arg, "configs/studies/rachha2020.py", words=("tiny",), keys=("backbone", "cohen", "covidx")
  )
  c = fastai_staged.get_config()
  c.input.mixture = (
    {"data": "covid_chestxray/3class", "class_map": {"covid-19": "covid-19"},
     "manual_dir": kv.get("cohen")},
    {"data": "covidx/v9a", "manual_dir": kv.get("covidx"),
     "class_map": {"normal": "normal", "pneumonia": "pneumonia", "covid-19": "covid-19"}},
  )  # fmt: skip
  c.input.class_names = CLASS_NAMES
  c.input.class_caps = (("normal", 704), ("pneumonia", 500))
  c.input.splits.method = "fractions"
  c.input.splits.keep = ()
  c.input.splits.fractions = (0.7, 0.1, 0.2)
  c.input.splits.group_duplicates = True
  backbone = kv.get("backbone", "efficientnet_b7")
  if backbone not in BACKBONES:
    raise ValueError(f"configs/studies/rachha2020.py: backbone={backbone!r} is not one of "
                     f"{sorted(BACKBONES)}.")  # fmt: skip
  c.model_name, c.model_init = BACKBONES[backbone]
  c.input.image_size, c.input.batch_size = 224, 32
  c.model.head, c.model.drop_rate = "concat_pool", 0.5  # fastai's head, ps=0.5
  common.fastai_augment(c)
  c.augment.vflip, c.augment.warp = 0.5, 0.2  # flip_vert=True; aug_transforms' max_warp.
  c.optimizer.name = "radam"
  c.loss.label_smoothing = 0.1
  c.best_monitor, c.select = "val_loss", "best"
  c.stages[0].num_epochs, c.stages[1].num_epochs = 5.0, 45.0
  if "tiny" in args:
    common.tiny_stages(c, "efficientnet_tiny" if "efficientnet" in backbone else "resnet_tiny",
                       (2, 3))  # fmt: skip
    # The recipe's data path on the synthetic set: a capped patient-disjoint re-split.
    c.input.mixture, c.input.class_names = (), ()
    c.input.splits.method, c.input.splits.fractions = "fractions", (0.6, 0.2, 0.2)
    c.input.splits.group_duplicates = False
    c.input.class_caps = (("normal", 10), ("pneumonia", 10))
  return c
