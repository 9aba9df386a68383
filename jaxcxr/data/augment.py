"""On-device augmentation and normalisation with dm-pix (fastai-style defaults).

The fastai-based studies (e.g. the eight-backbone EfficientNet/ResNet/DenseNet comparison) trained
with fastai's `aug_transforms`: random flip, rotation up to 10°, zoom up to 1.1×, lighting
(brightness/contrast) 0.2, warp 0.2, each affine/lighting change applied with probability 0.75.
jaxcxr applies the same family of transforms per example inside the jitted train step: one dm-pix
`affine_transform` for rotation + zoom + translation (one resampling, not three), then elastic
deformation (dm-pix's `elastic_deformation`, its blur as two matrix products:
`elastic_coordinates` below), perspective warp (fastai's `warp`, sampled by dm-pix),
flips, gamma, multiplicative brightness, brightness and contrast. Keys come from the step number,
so a resumed run augments exactly as an uninterrupted one; ops a config leaves off draw nothing,
so adding an op never changes the draws of configs without it.

Config (`config.augment`; `config_lib.validate` checks every key):
  * flip, vflip: horizontal / vertical flip probabilities (fastai's `flip_vert`).
  * dihedral: fastai's `Dihedral` probability: one of the 8 symmetries of the square (flips and
    90° rotations, `dihedral_k`), uniformly, identity included; square images only.
  * rotate_deg: angle ~ U(-r, r).
  * zoom (lo, hi): magnification ~ U(lo, hi), > 1 zooms in (Alotaibi 2020: 1.05-1.1); `max_zoom`
    m is the older spelling of (1, m) (fastai's).
  * translate: largest shift, a fraction of the side, both axes; `translate_xy` (fx, fy): per
    axis, fractions of the width and the height (Bassi & Attux 2021's 40 px and 28 px of 224:
    (40 / 224, 28 / 224)); `translate_min`: each axis' shift is then a magnitude ~ U(min, max)
    with a random sign (Alotaibi's 3-10%: min 0.03, max 0.1), else ~ U(-max, max).
  * elastic (alpha, sigma): multiples of the image height (Alotaibi's α = 2H, σ = 0.1H: (2, 0.1)),
    imgaug/Keras-style: uniform noise in [-1, 1] smoothed by a Gaussian of σ, times α, pixels.
  * warp: fastai's perspective warp magnitude (corner offsets ~ U(-warp, warp) of the half side).
  * gamma (lo, hi): out = in ** g, g ~ U(lo, hi) (Alotaibi's 1.05-1.11); brightness_mult (lo, hi):
    out = in * f (Keras' `brightness_range`); brightness: additive delta; contrast: relative.
  * p_affine gates the affine (one draw for rotate, zoom and translate), and elastic and each warp
    corner offset by draws of their own (fastai: each transform its own p); p_lighting gates gamma
    with brightness_mult, and brightness with contrast.
  * subset: Alotaibi's "one or more of" the ops: per image a uniformly drawn non-empty subset of
    the enabled ops among rotate, zoom, translate, elastic, warp, gamma, brightness_mult,
    brightness, contrast is applied (`enabled_ops`), replacing p_affine and p_lighting; flips keep
    their own probabilities.
All zero/empty means no augmentation. Segmentation (`augment_pair`): the mask takes the image's
geometric transforms (same draws: affine, elastic, warp, flips), never its lighting.
"""

from __future__ import annotations

from collections.abc import Sequence

import dm_pix as pix
import jax
import jax.numpy as jnp
import ml_collections

from jaxcxr.constants import PREPROCESSING_MODES


def zoom_range(cfg: ml_collections.ConfigDict) -> tuple[float, float]:
  """The zoom factor range: `zoom` (lo, hi), else (1, `max_zoom`)."""
  zoom = tuple(cfg.get("zoom", ()) or ())
  return (float(zoom[0]), float(zoom[1])) if zoom else (1.0, float(cfg.get("max_zoom", 1.0)))


def translate_max(cfg: ml_collections.ConfigDict) -> tuple[float, float]:
  """The largest shift per axis, (x, y) as fractions of width and height: `translate_xy`, else
  `translate` for both."""
  xy = tuple(cfg.get("translate_xy", ()) or ())
  t = float(cfg.get("translate", 0.0))
  return (float(xy[0]), float(xy[1])) if xy else (t, t)


def enabled_ops(cfg: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The ops a config turns on, in the order they apply; `subset=True` draws among these (flips
  keep their own probabilities and are not among them)."""
  lo, hi = zoom_range(cfg)
  ops = {
    "rotate": bool(cfg.get("rotate_deg", 0.0)),
    "zoom": (lo, hi) != (1.0, 1.0),
    "translate": any(translate_max(cfg)),
    "elastic": bool(tuple(cfg.get("elastic", ()) or ())),
    "warp": bool(cfg.get("warp", 0.0)),
    "gamma": bool(tuple(cfg.get("gamma", ()) or ())),
    "brightness_mult": bool(tuple(cfg.get("brightness_mult", ()) or ())),
    "brightness": bool(cfg.get("brightness", 0.0)),
    "contrast": bool(cfg.get("contrast", 0.0)),
  }
  return tuple(name for name, on in ops.items() if on)


def perspective_coefficients(x_t: jax.Array, y_t: jax.Array) -> jax.Array:
  """fastai's `_WarpCoord` (vision/augment.py: `find_coeffs(orig_pts, targ_pts)`): the 3×3
  projective map from output to input coordinates, both (x, y) normalised to [-1, 1], that sends
  the corners moved by (x_t, y_t) back to the image's corners."""
  orig = jnp.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
  targ = jnp.stack(
    [
      jnp.stack([-1 - y_t, -1 - x_t]),
      jnp.stack([-1 + y_t, 1 + x_t]),
      jnp.stack([1 + y_t, -1 + x_t]),
      jnp.stack([1 - y_t, 1 - x_t]),
    ]
  )
  rows = []
  for (px, py), (qx, qy) in zip(orig, targ, strict=True):  # Maps q (output) → p (input).
    rows.append(jnp.stack([qx, qy, 1.0, 0.0, 0.0, 0.0, -px * qx, -px * qy]))
    rows.append(jnp.stack([0.0, 0.0, 0.0, qx, qy, 1.0, -py * qx, -py * qy]))
  coeffs = jnp.linalg.solve(jnp.stack(rows), orig.reshape(8))
  return jnp.concatenate([coeffs, jnp.ones(1)]).reshape(3, 3)


def perspective_warp(image: jax.Array, x_t: jax.Array, y_t: jax.Array) -> jax.Array:
  """fastai's `warp` of one image (H, W, C) by corner offsets (x_t, y_t) (fractions of the half
  side, fastai's align_corners grid), resampled bilinearly by dm-pix, edges extended."""
  h, w = image.shape[0], image.shape[1]
  m = perspective_coefficients(x_t, y_t)
  ii, jj = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing="ij")  # fmt: skip
  u, v = 2 * jj / max(w - 1, 1) - 1, 2 * ii / max(h - 1, 1) - 1
  src = jnp.einsum("ij,jhw->ihw", m, jnp.stack([u, v, jnp.ones_like(u)]))
  su, sv = src[0] / src[2], src[1] / src[2]
  rows, cols = (sv + 1) * (h - 1) / 2, (su + 1) * (w - 1) / 2
  coords = jnp.stack(
    [
      jnp.broadcast_to(rows[..., None], image.shape),
      jnp.broadcast_to(cols[..., None], image.shape),
      jnp.broadcast_to(jnp.arange(image.shape[2], dtype=jnp.float32), image.shape),
    ]
  )
  return pix.flat_nd_linear_interpolate(image, coords)


def gaussian_blur_matrix(n: int, sigma: float, kernel_size: float) -> jax.Array:
  """(n, n) matrix B with B @ x == dm-pix's 1-D `gaussian_blur` of x along its first axis.

  The same normalised taps (radius int(kernel_size / 2)) and the same zero 'SAME' padding:
  row i holds tap g[j - i + r] at column j. Why a matrix: dm-pix blurs by a convolution with one
  channel and ~6.7 σ taps (147 at Alotaibi's σ = 22.4 px), which XLA:CPU runs ~7-15× slower
  than the same blur as two dense (n, n) matrix products (BENCHMARKS.md, "Elastic
  deformation cost"); on GPUs either is cheap.
  """
  radius = int(kernel_size / 2)
  taps = jnp.arange(-radius, radius + 1).astype(jnp.float32)
  g = jnp.exp(-(taps**2) / (2.0 * sigma**2))
  g = g / jnp.sum(g)
  offset = jnp.arange(n)[None, :] - jnp.arange(n)[:, None]  # j - i
  return jnp.where(jnp.abs(offset) <= radius, g[jnp.clip(offset + radius, 0, 2 * radius)], 0.0)


def elastic_coordinates(key: jax.Array, hw: Sequence[int], alpha: float, sigma: float) -> jax.Array:
  """dm-pix's `elastic_deformation` sampling grid, (2, H, W): the same key split, uniform noise
  in [-1, 1], kernel size and scaling; only the blur is computed as `gaussian_blur_matrix`
  products (equal to rounding: tests/test_augment.py)."""
  h, w = int(hw[0]), int(hw[1])
  key_i, key_j = jax.random.split(key)
  # dm-pix's kernel size rule (OpenCV's for a given sigma).
  kernel_size = ((sigma - 0.8) / 0.3 + 1) / 0.5 + 1
  b_h, b_w = (
    gaussian_blur_matrix(h, sigma, kernel_size),
    gaussian_blur_matrix(w, sigma, kernel_size),
  )
  hi = jax.lax.Precision.HIGHEST  # fp32 products: the field is scaled by alpha (hundreds of px)

  def field(k: jax.Array) -> jax.Array:
    noise = jax.random.uniform(k, shape=(h, w, 1))[..., 0] * 2 - 1
    return jnp.matmul(jnp.matmul(b_h, noise, precision=hi), b_w.T, precision=hi) * alpha

  grid_i, grid_j = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
  return jnp.stack([grid_i + field(key_i), grid_j + field(key_j)])


def resample(image: jax.Array, coords: jax.Array) -> jax.Array:
  """Each channel of an (H, W, C) image bilinearly sampled at (2, H, W) coordinates, edges
  repeated (dm-pix's interpolation with mode 'nearest', as its `elastic_deformation`)."""
  # dm-pix's grid over (H, W, 1): the channel coordinate 0, the output (H, W, 1) per channel.
  coords3 = jnp.concatenate([coords, jnp.zeros((1, *coords.shape[1:]), coords.dtype)])[..., None]
  return jnp.concatenate(
    [
      pix.flat_nd_linear_interpolate(image[..., c : c + 1], coords3) for c in range(image.shape[-1])
    ],
    axis=-1,
  )


def dihedral_k(image: jax.Array, k: jax.Array | int) -> jax.Array:
  """Symmetry k (0-7) of the square for an (H, W, C) image, as fastai's `dihedral`: flip the
  width axis if k in {1, 3, 4, 7}, then the height axis if k in {2, 4, 5, 7}, then transpose H
  and W if k in {3, 5, 6, 7}. The eight are the identity, the flips and the 90° rotations."""

  def sym(j: int):
    def f(x):
      x = jnp.flip(x, 1) if j in (1, 3, 4, 7) else x
      x = jnp.flip(x, 0) if j in (2, 4, 5, 7) else x
      return jnp.swapaxes(x, 0, 1) if j in (3, 5, 6, 7) else x

    return f

  return jax.lax.switch(k, [sym(j) for j in range(8)], image)


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
  ops = enabled_ops(cfg)
  if cfg.get("subset", False) and ops:
    # Alotaibi 2020's "one or more of" the ops: a non-empty subset, uniform over the 2^n - 1, as
    # the bits of one integer in [1, 2^n).
    bits = jax.random.randint(jax.random.fold_in(key, 105), (), 1, 2 ** len(ops))
    chosen = {name: (bits >> i) & 1 == 1 for i, name in enumerate(ops)}
    on = lambda name, gate: chosen[name]  # noqa: E731
  else:
    on = lambda name, gate: gate  # noqa: E731
  rotate = float(cfg.get("rotate_deg", 0.0))
  zoom_lo, zoom_hi = zoom_range(cfg)
  tx, ty = translate_max(cfg)
  tmin = float(cfg.get("translate_min", 0.0))
  if {"rotate", "zoom", "translate"} & set(ops):
    apply = jax.random.uniform(k_aff) < float(cfg.get("p_affine", 0.75))
    angle = jnp.deg2rad(jax.random.uniform(k_rot, minval=-rotate, maxval=rotate))
    # Zoom in for factors > 1 (scale < 1 from output to input), as fastai does.
    scale = 1.0 / jax.random.uniform(k_zoom, minval=zoom_lo, maxval=zoom_hi)
    # Over (y, x): fractions of the height and width.
    t_max = jnp.array([ty, tx])
    if tmin:  # A magnitude in [min, max] with a random sign, per axis.
      mag = jax.random.uniform(k_tr, (2,), minval=tmin, maxval=t_max)
      sign = jnp.where(jax.random.bernoulli(jax.random.fold_in(key, 103), 0.5, (2,)), 1.0, -1.0)
      shift = mag * sign * jnp.array([h, w])
    else:
      shift = jax.random.uniform(k_tr, (2,), minval=-t_max, maxval=t_max) * jnp.array([h, w])
    angle = jnp.where(on("rotate", apply), angle, 0.0)
    scale = jnp.where(on("zoom", apply), scale, 1.0)
    shift = jnp.where(on("translate", apply), shift, 0.0)
    cos, sin = jnp.cos(angle) * scale, jnp.sin(angle) * scale
    # dm-pix maps output coordinates to input ones: in = M @ out + offset, over (y, x, channel).
    matrix = jnp.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    center = jnp.array([(h - 1) / 2.0, (w - 1) / 2.0, 0.0])
    offset = center - matrix @ center + jnp.concatenate([shift, jnp.zeros(1)])
    image = pix.affine_transform(image, matrix, offset=offset, order=1, mode="nearest")
    if mask is not None:
      # The image's matrix over (y, x, channel) applies to the one-channel mask as it is.
      mask = pix.affine_transform(mask, matrix, offset=offset, order=1, mode="nearest")
  p_affine = float(cfg.get("p_affine", 0.75))
  elastic = tuple(cfg.get("elastic", ()) or ())
  if elastic:
    # Simard 2003 / imgaug's ElasticTransformation by dm-pix: uniform noise smoothed by a Gaussian
    # of sigma, scaled by alpha; both given as multiples of the height (Alotaibi: 2H, 0.1H).
    k_e, k_on = jax.random.split(jax.random.fold_in(key, 104))
    gate = on("elastic", jax.random.uniform(k_on) < p_affine)
    alpha, sigma = float(elastic[0]) * h, float(elastic[1]) * h
    coords = elastic_coordinates(k_e, image.shape[:2], alpha, sigma)
    image = jnp.where(gate, resample(image, coords), image)
    if mask is not None:  # The same displacement field.
      mask = jnp.where(gate, resample(mask, coords), mask)
  warp = float(cfg.get("warp", 0.0))
  if warp:
    # fastai's Warp: each corner offset ~ U(-warp, warp), each kept with probability p_affine.
    k_x, k_y, k_gx, k_gy = jax.random.split(jax.random.fold_in(key, 106), 4)
    draw = lambda k, k_g: jnp.where(  # noqa: E731
      on("warp", jax.random.uniform(k_g) < p_affine),
      jax.random.uniform(k, minval=-warp, maxval=warp), 0.0,
    )  # fmt: skip
    x_t, y_t = draw(k_x, k_gx), draw(k_y, k_gy)
    image = perspective_warp(image, x_t, y_t)
    if mask is not None:
      mask = perspective_warp(mask, x_t, y_t)
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
  dihedral = float(cfg.get("dihedral", 0.0))
  if dihedral:  # fastai's Dihedral: with probability p, k ~ U{0..7} (0: identity).
    if h != w:
      raise ValueError(f"config.augment.dihedral needs square images; got {h}x{w} (H x W).")
    k_on, k_k = jax.random.split(jax.random.fold_in(key, 107))
    k = jnp.where(jax.random.uniform(k_on) < dihedral, jax.random.randint(k_k, (), 0, 8), 0)
    image = dihedral_k(image, k)
    if mask is not None:  # A geometric op: the mask takes the same draw.
      mask = dihedral_k(mask, k)
  p_lighting = float(cfg.get("p_lighting", 0.75))
  gamma, mult = tuple(cfg.get("gamma", ()) or ()), tuple(cfg.get("brightness_mult", ()) or ())
  if gamma or mult:  # Lighting: the image only.
    k_on, k_g, k_m = jax.random.split(jax.random.fold_in(key, 102), 3)
    light = jax.random.uniform(k_on) < p_lighting
    if gamma:  # out = in ** gamma on [0, 1] (dm-pix adjust_gamma, gain 1).
      g = jax.random.uniform(k_g, minval=gamma[0], maxval=gamma[1])
      image = jnp.where(on("gamma", light), pix.adjust_gamma(image, g), image)
    if mult:  # Keras ImageDataGenerator's brightness_range: a multiplicative factor.
      f = jax.random.uniform(k_m, minval=mult[0], maxval=mult[1])
      image = jnp.where(on("brightness_mult", light), image * f, image)
  brightness = float(cfg.get("brightness", 0.0))
  contrast = float(cfg.get("contrast", 0.0))
  if brightness or contrast:
    light = jax.random.uniform(k_light) < p_lighting
    if brightness:
      image = jnp.where(on("brightness", light), pix.random_brightness(k_b, image, brightness),
                        image)  # fmt: skip
    if contrast:
      out = pix.random_contrast(k_c, image, 1.0 - contrast, 1.0 + contrast)
      image = jnp.where(on("contrast", light), out, image)
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
