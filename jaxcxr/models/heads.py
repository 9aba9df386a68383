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

from jaxcxr.models.layers import dropout_rngs, pool_and_dropout

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


# ---------------------------------------------------------------------------------------------
# Heads by name (`config.model.head`), the classifiers of the studies jaxcxr reimplements.
#
# * `flatten_bn_dense` (Alotaibi 2020, Keras): Flatten -> BatchNorm -> Dense(hidden, relu) ->
#   BatchNorm -> Dropout -> Dense(num_classes); Keras' BN (momentum 0.99, epsilon 1e-3).
# * `gap_mlp` (Naik et al. 2021): GAP -> [Dense(width, act) -> BatchNorm (not for selu)] x L ->
#   Dense(num_classes), each Dense initialised to match its activation (Keras names):
#   lecun_normal for selu (Klambauer et al. 2017, "Self-Normalizing Neural Networks"), he_normal
#   for relu / elu (He et al. 2015), glorot_uniform for sigmoid / tanh (Glorot & Bengio 2010).
# * `concat_pool` (fastai's `create_head`, Howard & Gugger 2020): concat(avg pool, max pool) ->
#   BatchNorm -> Dropout(p/2) -> Linear(512, no bias) -> ReLU -> BatchNorm -> Dropout(p) ->
#   Linear(num_classes, no bias); torch BN (momentum 0.1, epsilon 1e-5).
# * `gap_linear` / `dropout_linear` (Bassi & Attux 2021: dropout then a linear layer whose
#   sigmoid the loss applies): the family's own `ClassifierHead` with `model.drop_rate`.
# ---------------------------------------------------------------------------------------------

HEADS = ("", "gap_linear", "dropout_linear", "flatten_bn_dense", "gap_mlp", "concat_pool")
ACTIVATIONS = {
  "relu": (jax.nn.relu, nnx.initializers.he_normal()),
  "elu": (jax.nn.elu, nnx.initializers.he_normal()),
  "selu": (jax.nn.selu, nnx.initializers.lecun_normal()),
  "sigmoid": (jax.nn.sigmoid, nnx.initializers.glorot_uniform()),
  "tanh": (jnp.tanh, nnx.initializers.glorot_uniform()),
}


def _bn(ch: int, keras: bool, rngs: nnx.Rngs, dtype: Dtype) -> nnx.BatchNorm:
  # Flax momentum weighs the old statistics: Keras' 0.99; torch's momentum 0.1 is 0.9 here.
  return nnx.BatchNorm(
    ch, momentum=0.99 if keras else 0.9, epsilon=1e-3 if keras else 1e-5, dtype=dtype, rngs=rngs
  )


class NamedHead(nnx.Module):
  """One of the named heads above; called like `ClassifierHead` on an NHWC feature map."""

  def __init__(
    self,
    kind: str,
    in_features: int,
    num_classes: int,
    *,
    feature_hw: tuple[int, int] = (1, 1),
    hidden: tuple[int, ...] = (),
    activation: str = "relu",
    drop_rate: float = 0.0,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
  ):
    if kind not in ("flatten_bn_dense", "gap_mlp", "concat_pool"):
      raise ValueError(f"NamedHead kind {kind!r} is not one of flatten_bn_dense, gap_mlp, "
                       "concat_pool.")  # fmt: skip
    if activation not in ACTIVATIONS:
      raise ValueError(f"config.model.head_activation={activation!r} is not one of "
                       f"{sorted(ACTIVATIONS)}.")  # fmt: skip
    if num_classes <= 0:
      raise ValueError(f"config.model.head={kind!r} needs num_classes > 0.")
    self.kind, self.activation = kind, activation
    self.num_features, self.num_classes = in_features, num_classes
    self.dropout = nnx.Dropout(drop_rate)
    act_init = ACTIVATIONS[activation][1]
    if kind == "flatten_bn_dense":
      width = (tuple(hidden) or (128,))[0]
      flat = in_features * feature_hw[0] * feature_hw[1]
      self.bn_in = _bn(flat, True, rngs, dtype)
      self.dense = nnx.List([nnx.Linear(flat, width, kernel_init=act_init, dtype=dtype,
                                        rngs=rngs)])  # fmt: skip
      self.bns = nnx.List([_bn(width, True, rngs, dtype)])
      self.out = nnx.Linear(width, num_classes, dtype=dtype, rngs=rngs)
    elif kind == "gap_mlp":
      widths = (in_features, *hidden)
      self.dense = nnx.List([
        nnx.Linear(a, b, kernel_init=act_init, dtype=dtype, rngs=rngs)
        for a, b in zip(widths[:-1], widths[1:], strict=True)
      ])  # fmt: skip
      # Self-normalising networks need no batch norm (Naik et al. used none with selu).
      self.bns = nnx.List([] if activation == "selu" else
                          [_bn(w, True, rngs, dtype) for w in widths[1:]])  # fmt: skip
      self.out = nnx.Linear(widths[-1], num_classes, dtype=dtype, rngs=rngs)
    else:
      width = (tuple(hidden) or (512,))[0]
      self.bn_in = _bn(2 * in_features, False, rngs, dtype)
      self.dropout_in = nnx.Dropout(drop_rate / 2)
      self.dense = nnx.List([nnx.Linear(2 * in_features, width, use_bias=False,
                                        kernel_init=act_init, dtype=dtype, rngs=rngs)])  # fmt: skip
      self.bns = nnx.List([_bn(width, False, rngs, dtype)])
      self.out = nnx.Linear(width, num_classes, use_bias=False, dtype=dtype, rngs=rngs)

  def _drop(self, x, dropout, train, rngs):
    if train and dropout.rate > 0.0:
      x = dropout(x, deterministic=False, rngs=dropout_rngs(rngs, needed=True, owner="NamedHead",
                                                            rate=dropout.rate))  # fmt: skip
    return x

  def __call__(
    self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | jax.Array | None = None
  ) -> jax.Array:
    act = ACTIVATIONS[self.activation][0]
    avg = not train
    if self.kind == "flatten_bn_dense":
      x = self.bn_in(x.reshape(x.shape[0], -1), use_running_average=avg)
      x = self.bns[0](act(self.dense[0](x)), use_running_average=avg)
      return self.out(self._drop(x, self.dropout, train, rngs))
    if self.kind == "gap_mlp":
      x = jnp.mean(x, axis=(1, 2))
      for i, dense in enumerate(self.dense):
        x = act(dense(x))
        if len(self.bns):
          x = self.bns[i](x, use_running_average=avg)
      return self.out(self._drop(x, self.dropout, train, rngs))
    # fastai's AdaptiveConcatPool2d puts the max pool first.
    x = jnp.concatenate([jnp.max(x, axis=(1, 2)), jnp.mean(x, axis=(1, 2))], axis=-1)
    x = self._drop(self.bn_in(x, use_running_average=avg), self.dropout_in, train, rngs)
    x = self.bns[0](act(self.dense[0](x)), use_running_average=avg)
    return self.out(self._drop(x, self.dropout, train, rngs))
