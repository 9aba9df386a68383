"""Converting torch-layout state dicts into jaxcxr's Flax NNX models, with loud checks.

Every family declares one explicit name map: an ordered list of `(regex, replacement)` rules that
turn a timm/torchvision key (`layer1.0.bn1.running_mean`) into the dotted NNX path of the
matching variable (`layer1.0.bn1.mean`). Tensor layouts are converted by the kind of the target:
conv kernels OIHW → HWIO (`transpose(2, 3, 1, 0)`, depthwise convs included: torch (C, 1, kh, kw)
becomes Flax (kh, kw, 1, C)), linear weights (out, in) → (in, out).

`merge_into` then follows big_vision's `merge_params`: a pretrained tensor replaces the
initialised one only when names and shapes agree, and anything missing, unexpected or mis-shaped
is an error — except what `dont_load` names (typically the classifier when `num_classes` differs).
Silent partial loads are the classic transfer-learning bug.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
from flax import nnx

Rule = tuple[str, str]

# Names every torch BatchNorm and Linear/Conv uses; families append these after their own rules.
COMMON_RULES: tuple[Rule, ...] = (
  (r"\.running_mean$", ".mean"),
  (r"\.running_var$", ".var"),
)
IGNORED = (r"(^|\.)num_batches_tracked$",)


def rename(key: str, rules: Sequence[Rule]) -> str:
  """Applies every rule in order (each `re.sub` once over the key)."""
  for pattern, repl in rules:
    key = re.sub(pattern, repl, key)
  return key


def path_str(path: tuple) -> str:
  return ".".join(str(p) for p in path)


def to_flax_layout(array: np.ndarray, target_ndim: int) -> np.ndarray:
  """torch layout → Flax layout, chosen by the rank of the tensor."""
  if array.ndim == 4:
    return array.transpose(2, 3, 1, 0)  # OIHW -> HWIO
  if array.ndim == 2 and target_ndim == 2:
    return array.T  # (out, in) -> (in, out)
  return array


def torch_to_flat(
  state_dict: Mapping[str, np.ndarray],
  rules: Sequence[Rule],
) -> dict[str, np.ndarray]:
  """Renames a torch state dict into `{dotted NNX path: array in torch layout}`.

  Args:
    state_dict: torch key → numpy array.
    rules: the family's explicit map (applied in order), then `COMMON_RULES`. A trailing
      `.weight` left by the rules becomes `.kernel` for tensors of rank ≥ 2 (convs, linears)
      and `.scale` for rank 1 (norm layers).
  """
  out: dict[str, np.ndarray] = {}
  for key, value in state_dict.items():
    if any(re.search(p, key) for p in IGNORED):
      continue
    new = rename(key, tuple(rules) + COMMON_RULES)
    if new.endswith(".weight"):
      new = new[: -len(".weight")] + (".kernel" if np.ndim(value) >= 2 else ".scale")
    if new in out:
      raise ValueError(f"Two checkpoint tensors map to {new!r} (the second is {key!r}).")
    out[new] = np.asarray(value)
  return out


def adapt_input_conv(kernel: np.ndarray, in_chans: int) -> np.ndarray:
  """Adapts an RGB first-conv kernel (HWIO, I=3) to `in_chans` input channels (timm's rule).

  One channel: the sum of the RGB kernels, so a grey image gives the same output as that image
  replicated to RGB. More channels: the RGB kernels repeated and rescaled by 3 / in_chans.
  """
  if kernel.shape[2] == in_chans:
    return kernel
  if kernel.shape[2] != 3:
    raise ValueError(f"Cannot adapt a first conv with {kernel.shape[2]} input channels.")
  if in_chans == 1:
    return kernel.sum(axis=2, keepdims=True)
  reps = -(-in_chans // 3)
  return np.tile(kernel, (1, 1, reps, 1))[:, :, :in_chans, :] * (3.0 / in_chans)


def merge_into(
  model: nnx.Module,
  flat: Mapping[str, np.ndarray],
  *,
  dont_load: Sequence[str] = (),
  first_conv: str | None = None,
  source: str = "checkpoint",
) -> list[str]:
  """Loads `flat` (from `torch_to_flat`) into `model` in place, failing loudly on any mismatch.

  Args:
    model: the initialised model; variables not loaded keep their initial values.
    flat: dotted NNX path → array in torch layout.
    dont_load: regexes of NNX paths to keep as initialised (and checkpoint tensors to drop),
      e.g. `(r"^head\\.fc\\.",)` for a new classifier.
    first_conv: dotted path of the first conv's kernel module (e.g. `conv1`), adapted to the
      model's input channels with `adapt_input_conv`.
    source: names the checkpoint in error messages.

  Returns:
    The paths that were left as initialised because of `dont_load`.
  """
  state = nnx.state(model)
  targets = {path_str(p): v for p, v in nnx.to_flat_state(state)}
  skip = lambda name: any(re.search(p, name) for p in dont_load)
  missing = sorted(n for n in targets if n not in flat and not skip(n))
  unexpected = sorted(n for n in flat if n not in targets and not skip(n))
  mismatched, updates, kept = [], {}, []
  for name, var in targets.items():
    if skip(name):
      kept.append(name)
      continue
    if name not in flat:
      continue
    target = var.get_value()
    value = to_flax_layout(flat[name], np.ndim(target))
    if first_conv and name == f"{first_conv}.kernel":
      # The checkpoint's shape is untrusted: adapt only a conv kernel (HWIO) of the model's
      # rank, and name the file and weight when it cannot be adapted.
      if value.ndim != 4 or np.ndim(target) != 4:
        mismatched.append(f"{name}: checkpoint {value.shape} vs model {target.shape}")
        continue
      try:
        value = adapt_input_conv(value, target.shape[2])
      except ValueError as e:
        raise ValueError(f"Cannot load {source}: first conv {name!r}: {e}") from e
    if value.shape != target.shape:
      mismatched.append(f"{name}: checkpoint {value.shape} vs model {target.shape}")
      continue
    updates[name] = value.astype(target.dtype)
  problems = []
  if missing:
    problems.append(f"missing from the checkpoint ({len(missing)}): {missing[:20]}")
  if unexpected:
    problems.append(f"unexpected in the checkpoint ({len(unexpected)}): {unexpected[:20]}")
  if mismatched:
    problems.append(f"shape mismatches ({len(mismatched)}): {mismatched[:20]}")
  if problems:
    raise ValueError(
      f"Cannot load {source} into {type(model).__name__}: "
      + "; ".join(problems)
      + ". Name tensors to leave as initialised with dont_load (e.g. the classifier)."
    )
  for path, var in nnx.to_flat_state(state):
    name = path_str(path)
    if name in updates:
      var.set_value(updates[name])
  nnx.update(model, state)
  return kept
