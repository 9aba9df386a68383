"""Classification heads shared by all model families.

The head is the one used by ResNet (He et al., 2016, "Deep Residual Learning for Image
Recognition", CVPR) and by most ImageNet CNNs since: global average pooling over the spatial
dimensions followed by a single fully connected layer, optionally preceded by dropout
(Srivastava et al., 2014, "Dropout: A Simple Way to Prevent Neural Networks from Overfitting").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype

from jaxcxr.models.layers import pool_and_dropout

# torch.nn.Linear's default init draws the weight from U(-1/sqrt(fan_in), 1/sqrt(fan_in)); a
# variance-scaling uniform with scale 1/3 has exactly that bound. We keep the bias at zero: that
# is the usual choice for a fresh transfer-learning head and changes nothing once trained.
_TORCH_LINEAR_INIT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class ClassifierHead(nnx.Module):
  """Global average pool -> optional dropout -> linear classifier.

  Attributes:
      fc: the final ``nnx.Linear`` (``None`` when ``num_classes == 0``). Named ``fc`` so that a
          torchvision ``fc.weight`` maps onto ``head/fc/kernel`` by one explicit rename.
      num_features: number of input channels (pooled feature size).
      num_classes: number of outputs; 0 means the head returns the pooled features.
  """

  def __init__(
    self,
    in_features: int,
    num_classes: int,
    *,
    drop_rate: float = 0.0,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
  ):
    """Builds the head.

    Args:
        in_features: channels of the NHWC feature map fed to the head.
        num_classes: number of logits; 0 makes the head pool only (feature extractor).
        drop_rate: dropout rate applied to the pooled features in training.
        rngs: random streams used to initialise ``fc``.
        dtype: computation dtype.
        param_dtype: parameter storage dtype.
    """
    self.num_features = in_features
    self.num_classes = num_classes
    self.drop_rate = drop_rate
    # No stored rngs: the dropout key is passed at call time, because training runs
    # functionally (nnx.split / nnx.merge under jax.jit) with an explicit per-step key.
    self.dropout = nnx.Dropout(drop_rate)
    if num_classes > 0:
      self.fc = nnx.Linear(
        in_features,
        num_classes,
        kernel_init=_TORCH_LINEAR_INIT,
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
      )
    else:
      self.fc = None

  def __call__(
    self,
    x: jax.Array,
    *,
    train: bool = False,
    rngs: nnx.Rngs | jax.Array | None = None,
  ) -> jax.Array:
    """Pools an NHWC feature map and classifies it.

    Args:
        x: feature map of shape ``(N, H, W, C)``.
        train: enables dropout (when ``drop_rate > 0``).
        rngs: an ``nnx.Rngs`` (its ``dropout`` stream, else ``default``) or a PRNG key;
            required only when ``train`` and ``drop_rate > 0``.

    Returns:
        Logits ``(N, num_classes)``, or pooled features ``(N, C)`` if ``num_classes == 0``.
    """
    x = pool_and_dropout(x, self.dropout, train=train, rngs=rngs, owner="ClassifierHead")
    if self.fc is not None:
      x = self.fc(x)
    return x
