"""On-device augmentation and normalisation with dm-pix (fastai-style defaults).

The fastai-based studies (e.g. the eight-backbone EfficientNet/ResNet/DenseNet comparison) trained
with fastai's `aug_transforms`: random flip, rotation up to 10°, zoom up to 1.1×, lighting
(brightness/contrast) 0.2, each affine/lighting change applied with probability 0.75. jaxcxr
applies the same family of transforms per example inside the jitted train step: one dm-pix
`affine_transform` for rotation + zoom + translation (one resampling, not three), then flip,
brightness and contrast. Keys come from the step number, so a resumed run augments exactly as an
uninterrupted one.

Config (`config.augment`): flip (probability), vflip (vertical flip probability, fastai's
`flip_vert`), rotate_deg, max_zoom, translate (fraction of the side), brightness (max delta on
[0, 1] images), contrast (max relative change), gamma ((lo, hi): out = in ** g, g uniform;
Alotaibi 2020's 1.05-1.11), brightness_mult ((lo, hi): out = in * f, Keras' `brightness_range`),
p_affine, p_lighting (also gates gamma and brightness_mult). All zero/empty means no
augmentation. Segmentation (`augment_pair`): the mask takes the image's geometric transforms
(same draws: affine, flips), never its lighting.
"""

from __future__ import annotations

from collections.abc import Sequence

import dm_pix as pix
import jax
import jax.numpy as jnp
import ml_collections

from jaxcxr.constants import PREPROCESSING_MODES


def _augment_one(
  key: jax.Array,
  image: jax.Array,
  cfg: ml_collections.ConfigDict,
  mask: jax.Array | None = None,
) -> jax.Array | tuple[jax.Array, jax.Array]:
  """Augments one float image (H, W, C) in [0, 1]; and its 0/1 `mask` (H, W, 1), if given,
  by the same geometric draw (resampled bilinearly, then thresholded at 1/2) and no lighting."""
  k_aff, k_rot, k_zoom, k_tr, k_flip, k_light, k_b, k_c = jax.random.split(key, 8)
  h, w = image.shape[0], image.shape[1]
  rotate = float(cfg.get("rotate_deg", 0.0))
  zoom = float(cfg.get("max_zoom", 1.0))
  translate = float(cfg.get("translate", 0.0))
  if rotate or zoom > 1.0 or translate:
    apply = jax.random.uniform(k_aff) < float(cfg.get("p_affine", 0.75))
    angle = jnp.deg2rad(jax.random.uniform(k_rot, minval=-rotate, maxval=rotate))
    # Zoom in only (scale >= 1 on the output), as fastai does, so no border is pulled in.
    scale = 1.0 / jax.random.uniform(k_zoom, minval=1.0, maxval=zoom)
    shift = jax.random.uniform(k_tr, (2,), minval=-translate, maxval=translate) * jnp.array([h, w])
    angle, scale, shift = jnp.where(apply, angle, 0.0), jnp.where(apply, scale, 1.0), shift * apply
    cos, sin = jnp.cos(angle) * scale, jnp.sin(angle) * scale
    # dm-pix maps output coordinates to input ones: in = M @ out + offset, over (y, x, channel).
    matrix = jnp.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    center = jnp.array([(h - 1) / 2.0, (w - 1) / 2.0, 0.0])
    offset = center - matrix @ center + jnp.concatenate([shift, jnp.zeros(1)])
    image = pix.affine_transform(image, matrix, offset=offset, order=1, mode="nearest")
    if mask is not None:
      # The image's matrix over (y, x, channel) applies to the one-channel mask as it is.
      mask = pix.affine_transform(mask, matrix, offset=offset, order=1, mode="nearest")
  flip = float(cfg.get("flip", 0.0))
  if flip:
    image = pix.random_flip_left_right(k_flip, image, probability=flip)
    if mask is not None:  # The same key draws the same flip.
      mask = pix.random_flip_left_right(k_flip, mask, probability=flip)
  # The ops below draw keys folded from the example's key, so configs without them augment
  # exactly as before they existed.
  vflip = float(cfg.get("vflip", 0.0))
  if vflip:
    k_v = jax.random.fold_in(key, 101)
    image = pix.random_flip_up_down(k_v, image, probability=vflip)
    if mask is not None:  # A geometric op: the mask takes the same draw.
      mask = pix.random_flip_up_down(k_v, mask, probability=vflip)
  gamma, mult = tuple(cfg.get("gamma", ()) or ()), tuple(cfg.get("brightness_mult", ()) or ())
  if gamma or mult:  # Lighting: the image only.
    k_on, k_g, k_m = jax.random.split(jax.random.fold_in(key, 102), 3)
    out = image
    if gamma:  # out = in ** gamma on [0, 1] (dm-pix adjust_gamma, gain 1).
      out = pix.adjust_gamma(out, jax.random.uniform(k_g, minval=gamma[0], maxval=gamma[1]))
    if mult:  # Keras ImageDataGenerator's brightness_range: a multiplicative factor.
      out = out * jax.random.uniform(k_m, minval=mult[0], maxval=mult[1])
    image = jnp.where(jax.random.uniform(k_on) < float(cfg.get("p_lighting", 0.75)), out, image)
  brightness = float(cfg.get("brightness", 0.0))
  contrast = float(cfg.get("contrast", 0.0))
  if brightness or contrast:
    light = jax.random.uniform(k_light) < float(cfg.get("p_lighting", 0.75))
    out = image
    if brightness:
      out = pix.random_brightness(k_b, out, brightness)
    if contrast:
      out = pix.random_contrast(k_c, out, 1.0 - contrast, 1.0 + contrast)
    image = jnp.where(light, out, image)
  image = jnp.clip(image, 0.0, 1.0)
  if mask is None:
    return image
  return image, (mask >= 0.5).astype(mask.dtype)


def augment(key: jax.Array, images: jax.Array, cfg: ml_collections.ConfigDict) -> jax.Array:
  """Augments a batch of float images (B, H, W, C) in [0, 1], an independent draw per example."""
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(lambda k, x: _augment_one(k, x, cfg))(keys, images)


def augment_pair(
  key: jax.Array, images: jax.Array, masks: jax.Array, cfg: ml_collections.ConfigDict
) -> tuple[jax.Array, jax.Array]:
  """Augments images (B, H, W, C) and their 0/1 masks (B, H, W, 1) together: per example one
  geometric draw (affine, flip) for both, lighting on the image only. The images get exactly
  the numbers `augment` would give them with the same key."""
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(lambda k, x, m: _augment_one(k, x, cfg, m))(keys, images, masks)


def to_float(images: jax.Array) -> jax.Array:
  """uint8 → float32 in [0, 1]."""
  return images.astype(jnp.float32) / 255.0


def mode_mean_std(
  mode: str, mean: Sequence[float], std: Sequence[float]
) -> tuple[Sequence[float], Sequence[float]]:
  """(mean, std) for a preprocessing mode; `custom` takes `mean`/`std` from the config."""
  if mode == "custom":
    return mean, std
  if mode not in PREPROCESSING_MODES:
    raise ValueError(
      f"config.input.mode={mode!r} is not one of {sorted(PREPROCESSING_MODES)} or 'custom'."
    )
  return PREPROCESSING_MODES[mode]


def normalize(
  images: jax.Array,
  mean: Sequence[float],
  std: Sequence[float],
  in_chans: int,
  dtype: jnp.dtype = jnp.float32,
) -> jax.Array:
  """Grey [0, 1] images (B, H, W, 1) → model input with `in_chans` channels, standardised.

  A grey radiograph given to an ImageNet (3-channel) model is replicated to RGB, the usual
  practice; with `in_chans=1` the per-channel statistics are averaged.
  """
  mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
  if in_chans == 1:
    mean, std = mean.mean(keepdims=True), std.mean(keepdims=True)
  if images.shape[-1] != in_chans:
    images = jnp.broadcast_to(images, images.shape[:-1] + (in_chans,))
  return ((images - mean) / std).astype(dtype)
