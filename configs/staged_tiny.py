"""The CI-sized (`:tiny`) form shared by the staged recipes: synthetic_cxr/tiny at 32 px, a tiny
backbone of the same family from scratch, stage lengths in steps, evaluation every step.

(To be merged with the structure issue's `configs/common.py` tiny overrides.)
"""

from jaxcxr import config_lib


def shrink(c, model_name: str, lengths: tuple[int, ...]):
  """`c` made CI-sized; stage i lasts `lengths[i]` steps."""
  c.input.data = "synthetic_cxr/tiny"
  c.input.splits.method = "builder"
  c.input.image_size, c.input.batch_size, c.input.num_threads = 32, 8, 2
  c.input.mode, c.input.mean, c.input.std = "custom", (0.5,), (0.25,)
  c.model_name, c.model_init, c.model.in_chans = model_name, "", 1
  c.eval_every_steps, c.checkpoint_every_steps, c.log_every_steps = 1, 4, 1
  c.stages = tuple(
    config_lib.stage(**{**s.to_dict(), "num_epochs": 0.0, "total_steps": n})
    for s, n in zip(c.stages, lengths, strict=True)
  )
  return c


def parse(arg: str, path: str) -> bool:
  """True for `tiny`; '' is the full recipe; anything else is an error naming the file."""
  if arg not in ("", "tiny"):
    raise ValueError(f"{path}: unknown argument {arg!r}; use '' or 'tiny'.")
  return arg == "tiny"
