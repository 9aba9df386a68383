"""The interface every jaxcxr backbone shares (timm's `forward_features` / `forward_head` split).

A family defines `forward_features` (NHWC image → NHWC feature map, for Grad-CAM and frozen
feature extraction) and a `head` module (pool, dropout, classifier); `Backbone` supplies the rest.
"""

from __future__ import annotations

import jax
from flax import nnx


class Backbone(nnx.Module):
  """Base of the classification backbones: features, then head."""

  def forward_features(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    raise NotImplementedError

  def forward_head(
    self,
    feats: jax.Array,
    *,
    train: bool = False,
    rngs: nnx.Rngs | jax.Array | None = None,
  ) -> jax.Array:
    """Pool, dropout (train only, key from ``rngs``) and classify a feature map."""
    return self.head(feats, train=train, rngs=rngs)

  def __call__(
    self,
    x: jax.Array,
    *,
    train: bool = False,
    rngs: nnx.Rngs | jax.Array | None = None,
  ) -> jax.Array:
    """Logits ``(N, num_classes)`` for NHWC images ``x``.

    Args:
        x: images ``(N, H, W, in_chans)``.
        train: use batch statistics (and update the running ones) and enable dropout.
        rngs: dropout key (``nnx.Rngs`` or PRNG key); needed only if train and drop_rate > 0.
    """
    return self.forward_head(self.forward_features(x, train=train), train=train, rngs=rngs)
