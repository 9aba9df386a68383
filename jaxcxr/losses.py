"""Losses picked by name from `config.loss` (all from optax).

- `softmax_xent`: cross-entropy with label smoothing (Szegedy et al. 2016), the loss of the
  fastai-based EfficientNet/ResNet study (`LabelSmoothingCrossEntropy`, eps=0.1).
- `sigmoid_xent`: binary cross-entropy on one-hot targets (CheXNet-style sigmoid heads).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

LOSSES = ("softmax_xent", "sigmoid_xent")


def make_loss(cfg: ml_collections.ConfigDict, num_classes: int) -> Callable[..., jax.Array]:
  """Returns `loss(logits, labels) -> per-example loss`; labels are integer class ids."""
  name = cfg.get("name", "softmax_xent")
  smoothing = float(cfg.get("label_smoothing", 0.0))
  if name == "softmax_xent":

    def loss(logits, labels):
      targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)
      return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)

  elif name == "sigmoid_xent":

    def loss(logits, labels):
      targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)
      return optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), targets).sum(-1)

  else:
    raise ValueError(f"config.loss.name={name!r} is not one of {LOSSES}.")
  return loss
