"""Losses picked by name from `config.loss` (optax's cross-entropies; the soft Dice here).

- `softmax_xent`: cross-entropy with label smoothing (Szegedy et al. 2016), the loss of the
  fastai-based EfficientNet/ResNet study (`LabelSmoothingCrossEntropy`, eps=0.1).
- `sigmoid_xent`: binary cross-entropy on one-hot targets (CheXNet-style sigmoid heads), or on
  multi-hot targets for multi-label data (ChestX-ray14's 14 findings).
- `bce_dice`: segmentation: per-pixel binary cross-entropy plus `dice_weight` times the soft
  Dice loss `1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s)` per image and channel (Milletari,
  Navab and Ahmadi 2016, V-Net; smoothing `s = 1` as segmentation_models_pytorch), on sigmoid
  probabilities `p` and 0/1 masks `t`; logits and masks are `(N, H, W, C)`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from sklearn.utils import class_weight

LOSSES = ("softmax_xent", "sigmoid_xent", "bce_dice")
SIGMOID_LOSSES = ("sigmoid_xent", "bce_dice")  # Probabilities are sigmoids, not a softmax.
DICE_SMOOTH = 1.0


def soft_dice(probs: jax.Array, masks: jax.Array, smooth: float = DICE_SMOOTH) -> jax.Array:
  """Soft Dice coefficient per image and channel, `(N, C)`, of probabilities and 0/1 masks."""
  axes = (1, 2)
  inter = jnp.sum(probs * masks, axes)
  return (2.0 * inter + smooth) / (jnp.sum(probs, axes) + jnp.sum(masks, axes) + smooth)


def bce_dice(logits: jax.Array, masks: jax.Array, dice_weight: float = 1.0) -> jax.Array:
  """Per-image loss: mean per-pixel BCE plus `dice_weight` times the mean soft Dice loss."""
  logits, masks = logits.astype(jnp.float32), masks.astype(jnp.float32)
  bce = optax.sigmoid_binary_cross_entropy(logits, masks).mean((1, 2, 3))
  dice = soft_dice(jax.nn.sigmoid(logits), masks).mean(-1)
  return bce + dice_weight * (1.0 - dice)


def make_loss(
  cfg: ml_collections.ConfigDict, num_classes: int, class_weights: np.ndarray | None = None
) -> Callable[..., jax.Array]:
  """Returns `loss(logits, labels) -> per-example loss`; labels are integer class ids (or
  multi-hot rows; for `bce_dice`, 0/1 masks like the logits).

  Args:
    cfg: `config.loss`.
    num_classes: number of classes.
    class_weights: optional per-class weights; each example's loss is scaled by its class's
      weight (the class-weighted loss of the COVID transfer study); for multi-hot targets each
      class's binary cross-entropy term is.
  """
  name = cfg.get("name", "softmax_xent")
  smoothing = float(cfg.get("label_smoothing", 0.0))
  if name not in LOSSES:
    raise ValueError(f"config.loss.name={name!r} is not one of {LOSSES}.")
  weights = None
  if class_weights is not None:
    weights = jnp.asarray(class_weights, jnp.float32)
    if weights.shape != (num_classes,):
      raise ValueError(f"class_weights has shape {weights.shape}; expected ({num_classes},).")

  if name == "bce_dice":
    if weights is not None:
      raise ValueError("config.loss.class_weights does not apply to config.loss.name='bce_dice'.")
    dice_weight = float(cfg.get("dice_weight", 1.0))
    return lambda logits, masks: bce_dice(logits, masks, dice_weight)

  def loss(logits, labels):
    logits = logits.astype(jnp.float32)
    if labels.ndim == logits.ndim:  # Multi-hot targets (multi-label data).
      if name != "sigmoid_xent":
        raise ValueError("Multi-label data needs config.loss.name='sigmoid_xent'.")
      # Binary label smoothing: each target moves towards 1/2.
      targets = labels.astype(jnp.float32) * (1.0 - smoothing) + 0.5 * smoothing
      per_class = optax.sigmoid_binary_cross_entropy(logits, targets)
      return (per_class if weights is None else per_class * weights).sum(-1)
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)
    if name == "softmax_xent":
      per_example = optax.softmax_cross_entropy(logits, targets)
    else:
      per_example = optax.sigmoid_binary_cross_entropy(logits, targets).sum(-1)
    return per_example if weights is None else per_example * weights[labels]

  return loss


def resolve_class_weights(spec: str, class_counts: np.ndarray) -> np.ndarray | None:
  """`config.loss.class_weights` → per-class weights (None for 'none').

  Args:
    spec: 'none', 'balanced' (n / (k * n_c), scikit-learn's rule, from the training split's
      class counts) or comma-separated floats in class order.
    class_counts: images per class in the training split.
  """
  spec = spec.strip().lower()
  if spec in ("", "none"):
    return None
  if spec == "balanced":
    return class_weights(np.asarray(class_counts))
  try:
    weights = np.asarray([float(w) for w in spec.split(",")], np.float32)
  except ValueError:
    raise ValueError(
      f"config.loss.class_weights={spec!r}: expected 'none', 'balanced' or comma-separated floats."
    ) from None
  if len(weights) != len(class_counts) or (weights < 0).any():
    raise ValueError(
      f"config.loss.class_weights={spec!r} gives {len(weights)} weights; expected "
      f"{len(class_counts)} non-negative floats, one per class."
    )
  return weights


def class_weights(counts: np.ndarray) -> np.ndarray:
  """Per-class loss weights n / (k · n_c) (scikit-learn's 'balanced'); mean weight over images 1."""
  labels = np.repeat(np.arange(len(counts)), counts)
  present = np.unique(labels)
  w = np.ones(len(counts), np.float32)
  w[present] = class_weight.compute_class_weight("balanced", classes=present, y=labels)
  return w
