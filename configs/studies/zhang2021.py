r"""Zhang & Liu 2021 (homologous transfer): a pneumonia source task, then COVID-19 targets.

    # 1. source task: ResNet-50 (ImageNet) on Kermany's 3 classes
    python -m jaxcxr.train --config configs/studies/zhang2021.py:source,data=../shared/data \
        --workdir SRC
    # 2. targets, from the source run (or from ImageNet alone: source=imagenet)
    python -m jaxcxr.train --config configs/studies/zhang2021.py:4class,source=SRC,\
data=../shared/data --workdir T4
    python -m jaxcxr.train --config configs/studies/zhang2021.py:3class,source=SRC,\
data=../shared/data --workdir T3
    python -m jaxcxr.train --config configs/studies/zhang2021.py:tiny --workdir W   # CI-sized

Source task (`source` word): ResNet-50 from ImageNet on Kermany's normal / bacterial / viral
(`chest_xray_pneumonia/3class`), class-weighted cross-entropy, Adam 1e-3 ×0.9 every 5 epochs,
batch 32, 224 px letterboxed (`input.resize='letterbox'`: aspect ratio kept, padded with grey
`pad_value` 128), the state with the lowest validation loss kept. Targets: `4class` = normal /
bacterial / viral + Cohen's COVID-19 capped at 255 images; `3class` = normal / pneumonia (capped
at 200) / COVID-19; each from `source=` (a source run's workdir, its best state, with a new
classifier) through the stages of `configs/homologous.py`: the classifier only, then the first
three layer groups frozen at Adam 1e-4.

Reported figure: not copied here (the paper was not available offline in this environment).

What jaxcxr changes and why:
* The study's target test set was Kermany's official test split, on which its source task had
  trained, so target test images had been seen by the network. Here the source task re-splits
  Kermany by patient (train/val/test 70/10/20, near-duplicates grouped), and a target keeps every
  patient the source run had in that run's split (`input.splits.pin_run`, from the source run's
  `data_splits.json`): the source's test patients are tested, never trained on, and its training
  patients are never tested; only Cohen's patients, new to the targets, are re-split. (Re-splitting
  the targets' mixture with the same seed is not enough: adding Cohen's patients and merging
  classes changes the stratified folds, and 84 of the 110 Kermany test patients of a 4-class
  target had been in the source's train/val split when measured.) A target from ImageNet alone
  takes `splits_from=SRC` to be tested on exactly the same patients.
* Lung masking, the study's preprocessing, is `masked=UNET_RUN` (a `configs/lung_unet.py` run;
  `mask_mode=black` by default, the study's black background; `crop`, `both`): every image of
  every class and split, and every file `jaxcxr.predict` reads, is masked by that UNet
  (`jaxcxr.lung_mask`). Give the same `masked=` to the source task and its targets. Off by
  default, so an unmasked run stays the comparison.
"""

from configs import common, homologous

TARGETS = ("source", "4class", "3class")


def get_config(arg: str = ""):
  args, kv = common.parse_arg(
    arg,
    "configs/studies/zhang2021.py",
    words=("tiny", *TARGETS),
    keys=("data", "source", "splits_from", *common.LUNG_MASK_KEYS),
  )
  task = [t for t in TARGETS if t in args] or ["4class"]
  if len(task) > 1:
    raise ValueError(f"configs/studies/zhang2021.py: pick one of {TARGETS}; got {task}.")
  task = task[0]
  c = homologous.get_config()
  kermany = {"data": "chest_xray_pneumonia/3class", "manual_dir": kv.get("data")}
  cohen = {"data": "covid_chestxray/3class", "class_map": {"covid-19": "covid-19"},
           "manual_dir": kv.get("data")}  # fmt: skip
  if task == "source":
    c.input.mixture = (kermany,)
    c.input.class_names = ("normal", "bacterial", "viral")
  elif task == "4class":
    c.input.mixture = (kermany, cohen)
    c.input.class_names = ("normal", "bacterial", "viral", "covid-19")
    c.input.class_caps = (("covid-19", 255),)
  else:
    c.input.mixture = (
      {**kermany, "class_map": {"normal": "normal", "bacterial": "pneumonia",
                                "viral": "pneumonia"}}, cohen)  # fmt: skip
    c.input.class_names = ("normal", "pneumonia", "covid-19")
    c.input.class_caps = (("pneumonia", 200),)
  c.input.splits.method, c.input.splits.keep = "fractions", ()
  c.input.splits.fractions = (0.7, 0.1, 0.2)
  c.input.splits.group_duplicates = True
  c.input.image_size, c.input.batch_size = 224, 32
  c.input.resize, c.input.pad_value = "letterbox", 128  # Aspect kept, grey padding.
  c.model_name, c.model.in_chans = "resnet50", 1  # First conv summed to grey.
  c.optimizer.name = "adam"
  if task == "source":
    c.model_init, c.stages = "resnet50.tv_in1k", ()
    c.optimizer.lr, c.num_epochs = 1e-3, 30.0
    c.loss.class_weights = "balanced"
    c.schedule.name = "step"
    c.schedule.boundaries_epochs = tuple(float(e) for e in range(5, 30, 5))
    c.schedule.factor = 0.9
    c.eval_every_steps = 50
  else:
    src = kv.get("source", "")
    if not src:
      raise ValueError("configs/studies/zhang2021.py: a target needs source=SRC (a source run's "
                       "workdir) or source=imagenet.")  # fmt: skip
    c.model_init = "resnet50.tv_in1k" if src == "imagenet" else src
    # The source's patients keep the source run's splits (see the module docstring).
    c.input.splits.pin_run = kv.get("splits_from", "" if src == "imagenet" else src)
    c.eval_every_steps = 50
  if "tiny" in args:
    stages = homologous.get_config("tiny").stages if task != "source" else ()
    c.stages = stages
    init = c.model_init
    common.tiny_stages(c, "resnet_tiny", (2, 3)[: len(stages)])
    # A source run's workdir stays the initialisation; ImageNet weights do not fit the tiny model.
    c.model_init = "" if task == "source" or kv.get("source") == "imagenet" else init
    c.input.mixture, c.input.class_names, c.input.class_caps = (), (), ()
    c.input.splits.method, c.input.splits.group_duplicates = "fractions", False
    c.input.splits.fractions = (0.6, 0.2, 0.2)
    c.model_load.step = "latest"
    if task == "source":
      c.num_epochs, c.total_steps = 0.0, 3
      c.schedule.boundaries_epochs, c.schedule.boundaries_steps = (), (2,)
      c.best_monitor, c.select = "val_loss", "best"
  common.lung_mask(c, kv, "configs/studies/zhang2021.py")
  return c
