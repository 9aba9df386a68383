"""Argument checks shared by the explanation methods (one home for "which class, which images")."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# Passed for "the predicted class" into the jitted functions, which resolve it from the logits.
PREDICTED = -1


def check_inputs(
  model: nnx.Module, images: jax.Array, target: int | jax.Array | None, who: str
) -> tuple[jax.Array, jax.Array]:
  """Validates NHWC ``images`` and ``target`` classes; returns them as arrays (target ``(N,)``).

  Args:
      model: the classifier; its ``num_classes`` bounds ``target``.
      images: ``(N, H, W, C)``.
      target: an int, one per image, or ``None`` for each image's predicted class.
      who: the caller's name, for error messages.
  """
  images = jnp.asarray(images)
  if images.ndim != 4:
    raise ValueError(f"{who}: images must be NHWC (N, H, W, C), got shape {images.shape}.")
  num_classes = getattr(model, "num_classes", 0)
  if not num_classes:
    raise ValueError(f"{who}: the model has no classifier (num_classes=0); nothing to explain.")
  target_np = np.asarray(PREDICTED if target is None else target)
  if target_np.ndim > 1 or (target_np.ndim == 1 and len(target_np) != images.shape[0]):
    raise ValueError(
      f"{who}: target must be an int or one class per image ({images.shape[0]}), got shape "
      f"{target_np.shape}."
    )
  target_np = np.broadcast_to(target_np.astype(np.int32), (images.shape[0],))
  if np.any(target_np >= num_classes) or np.any(target_np < PREDICTED):
    raise ValueError(
      f"{who}: target {target_np.tolist()} out of range for {num_classes} classes "
      "(use None for the predicted class)."
    )
  return images, jnp.asarray(target_np)


def resolve_target(logits: jax.Array, target: jax.Array) -> jax.Array:
  """``target`` with each ``PREDICTED`` entry replaced by that image's highest-logit class."""
  return jnp.where(target == PREDICTED, jnp.argmax(logits, axis=-1), target)
