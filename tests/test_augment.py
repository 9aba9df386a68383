import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from jaxcxr import config_lib
from jaxcxr.data import augment


def _images(b=4, s=16):
  return jax.random.uniform(jax.random.key(0), (b, s, s, 1))


def test_no_augmentation_is_identity():
  cfg = config_lib.base_config().augment
  x = _images()
  np.testing.assert_array_equal(augment.augment(jax.random.key(1), x, cfg), x)


def test_fastai_augmentation_is_random_per_example_and_deterministic_per_key():
  c = config_lib.base_config()
  common.fastai_augment(c)
  c.augment.p_affine = c.augment.p_lighting = 1.0
  x = jnp.broadcast_to(_images(1), (4, 16, 16, 1))
  f = jax.jit(lambda k, x: augment.augment(k, x, c.augment))
  a = f(jax.random.key(1), x)
  assert a.shape == x.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  # The same source image gets different draws per example, the same draws per key.
  assert not np.allclose(a[0], a[1])
  np.testing.assert_array_equal(a, f(jax.random.key(1), x))
  assert not np.allclose(a, f(jax.random.key(2), x))


def test_flip_only_flips():
  c = config_lib.base_config().augment
  c.flip = 1.0
  x = _images(2)
  np.testing.assert_array_equal(augment.augment(jax.random.key(0), x, c), x[:, :, ::-1])


def test_normalize_grey_to_rgb():
  x = jnp.full((1, 2, 2, 1), 0.5)
  y = augment.normalize(x, config_lib.IMAGENET_MEAN, config_lib.IMAGENET_STD, in_chans=3)
  assert y.shape == (1, 2, 2, 3)
  np.testing.assert_allclose(
    y[0, 0, 0],
    (0.5 - np.array(config_lib.IMAGENET_MEAN)) / np.array(config_lib.IMAGENET_STD),
    rtol=1e-6,
  )
  y1 = augment.normalize(x, (0.5,), (0.25,), in_chans=1)
  np.testing.assert_allclose(y1, 0.0)


@pytest.mark.parametrize(
  "mode,pixel,expected",
  [
    ("tf", 0.0, [-1.0, -1.0, -1.0]),
    ("tf", 1.0, [1.0, 1.0, 1.0]),
    ("caffe", 1.0, [255 - 103.939, 255 - 116.779, 255 - 123.68]),
    ("torch", 0.5, [(0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225]),
  ],
)
def test_keras_preprocessing_modes(mode, pixel, expected):
  mean, std = augment.mode_mean_std(mode, (0.0,), (1.0,))
  y = augment.normalize(jnp.full((1, 1, 1, 1), pixel), mean, std, in_chans=3)
  np.testing.assert_allclose(y[0, 0, 0], expected, rtol=1e-5, atol=1e-4)


def test_unknown_mode_is_a_clear_error():
  with pytest.raises(ValueError, match="keras"):
    augment.mode_mean_std("keras", (0.0,), (1.0,))


def test_dihedral_is_fastais_eight_symmetries_of_the_square():
  # A planted asymmetric image: every pixel distinct, so each symmetry is told apart.
  x = np.arange(5 * 5 * 2, dtype=np.float32).reshape(5, 5, 2) / 64  # in [0, 1], as augment takes
  want = {  # fastai's dihedral(x, k) as rotations and flips of the (H, W) plane
    0: x, 1: np.flip(x, 1), 2: np.flip(x, 0), 3: np.rot90(x, 1),
    4: np.rot90(x, 2), 5: np.rot90(x, -1), 6: np.swapaxes(x, 0, 1), 7: np.rot90(np.flip(x, 0), 1),
  }  # fmt: skip
  f = jax.jit(augment.dihedral_k)
  for k in range(8):
    np.testing.assert_array_equal(f(jnp.asarray(x), k), want[k], err_msg=f"k={k}")
  assert len({w.tobytes() for w in want.values()}) == 8
  # p=1: each example is one of the 8 (identity included), and all 8 turn up.
  c = config_lib.base_config().augment
  c.dihedral = 1.0
  xs = jnp.broadcast_to(jnp.asarray(x), (64, 5, 5, 2))
  got = np.asarray(augment.augment(jax.random.key(0), xs, c))
  seen = {next(k for k, w in want.items() if np.array_equal(g, w)) for g in got}
  assert seen == set(range(8))
  with pytest.raises(ValueError, match=r"dihedral needs square images; got 4x6"):
    augment.augment(jax.random.key(0), jnp.zeros((2, 4, 6, 1)), c)


def test_vertical_flip_only_flips_rows():
  c = config_lib.base_config().augment
  c.vflip = 1.0
  x = _images(2)
  np.testing.assert_array_equal(augment.augment(jax.random.key(0), x, c), x[:, ::-1])


def test_gamma_and_multiplicative_brightness_match_numpy_on_a_planted_image():
  # A planted ramp: every output pixel must be in ** g (resp. in * f) for one g (f) per image,
  # with g (f) inside the configured range.
  ramp = np.linspace(0.05, 0.9, 64, dtype=np.float32).reshape(1, 8, 8, 1)
  x = jnp.asarray(np.repeat(ramp, 8, axis=0))
  c = config_lib.base_config().augment
  c.gamma, c.p_lighting = (1.05, 1.11), 1.0
  y = np.asarray(augment.augment(jax.random.key(3), x, c))
  g = np.log(y[:, 0, 0, 0]) / np.log(ramp[0, 0, 0, 0])  # gamma from one pixel per image
  assert ((g >= 1.05 - 1e-4) & (g <= 1.11 + 1e-4)).all() and np.ptp(g) > 0
  np.testing.assert_allclose(y, ramp ** g[:, None, None, None], rtol=1e-4)
  c.gamma, c.brightness_mult = (), (1.05, 1.1)
  y = np.asarray(augment.augment(jax.random.key(3), x, c))
  f = y[:, 0, 0, 0] / ramp[0, 0, 0, 0]
  assert ((f >= 1.05 - 1e-5) & (f <= 1.1 + 1e-5)).all()
  np.testing.assert_allclose(y, np.clip(ramp * f[:, None, None, None], 0, 1), rtol=1e-5)
  c.p_lighting = 0.0  # Gated by p_lighting like the other lighting ops.
  np.testing.assert_array_equal(augment.augment(jax.random.key(3), x, c), x)


def _jit_augment(key, x, cfg):
  return jax.jit(lambda k, x: augment.augment(k, x, cfg))(key, x)  # One compile, not op by op.


def _aug(**keys):
  c = config_lib.base_config().augment
  for k, v in keys.items():
    c[k] = v
  return c


def _ramps(b: int, s: int) -> tuple[jax.Array, jax.Array]:
  """Batches of a horizontal and a vertical ramp in [0, 1]: a shift or zoom of the image reads
  off one pixel (bilinear resampling is exact on a linear ramp away from the edges)."""
  r = np.linspace(0.0, 1.0, s, dtype=np.float32)
  x = np.broadcast_to(r[None, :, None], (s, s, 1))
  y = np.broadcast_to(r[:, None, None], (s, s, 1))
  return jnp.asarray(np.stack([x] * b)), jnp.asarray(np.stack([y] * b))


def test_zoom_range_draws_magnifications_inside_it():
  s, c = 33, 16
  rx, _ = _ramps(16, s)
  for cfg, lo, hi in ((_aug(zoom=(1.05, 1.1)), 1.05, 1.1), (_aug(max_zoom=1.1), 1.0, 1.1)):
    cfg.p_affine = 1.0
    out = np.asarray(_jit_augment(jax.random.key(0), rx, cfg))
    # Zoom about the centre by m: the ramp's slope per pixel is 1 / (m (s - 1)).
    slope = (out[:, c, c + 4, 0] - out[:, c, c - 4, 0]) / 8
    m = 1.0 / (slope * (s - 1))
    assert ((m >= lo - 1e-3) & (m <= hi + 1e-3)).all(), m
    if lo == 1.0:
      assert (m < 1.05).any()  # max_zoom: ranges from 1, not from the study's minimum.
    else:
      assert np.ptp(m) > 0.01


def test_per_axis_translation_with_a_minimum_magnitude_and_random_sign():
  s, b = 64, 32
  rx, ry = _ramps(b, s)
  fx, fy = 40 / 224, 28 / 224  # Bassi & Attux 2021's pixels of 224, as fractions.
  cfg = _aug(translate_xy=(fx, fy), translate_min=0.03, p_affine=1.0)
  key = jax.random.key(4)  # The same key: example i gets the same shift in both batches.
  c = s // 2
  dx = (np.asarray(_jit_augment(key, rx, cfg))[:, c, c, 0] - rx[0, c, c, 0]) * (s - 1) / s
  dy = (np.asarray(_jit_augment(key, ry, cfg))[:, c, c, 0] - ry[0, c, c, 0]) * (s - 1) / s
  tol = 1e-4
  assert ((np.abs(dx) >= 0.03 - tol) & (np.abs(dx) <= fx + tol)).all(), dx
  assert ((np.abs(dy) >= 0.03 - tol) & (np.abs(dy) <= fy + tol)).all(), dy
  assert np.abs(dx).max() > fy + 0.01  # The axes have their own ranges.
  assert (dx > 0).any() and (dx < 0).any() and (dy > 0).any() and (dy < 0).any()
  # Without a minimum, shifts range down to 0 (the old `translate` behaviour per axis).
  cfg.translate_min = 0.0
  dx0 = (np.asarray(_jit_augment(key, rx, cfg))[:, c, c, 0] - rx[0, c, c, 0]) * (s - 1) / s
  assert (np.abs(dx0) < 0.03).any() and (np.abs(dx0) <= fx + tol).all()


def test_elastic_deformation_is_dm_pix_with_alpha_sigma_in_heights():
  x = _images(3, 32)
  key = jax.random.key(5)
  cfg = _aug(elastic=(2.0, 0.1), p_affine=1.0)
  out = _jit_augment(key, x, cfg)
  # The reference: dm-pix's own op with alpha = 2H, sigma = 0.1H and the op's documented key.
  keys = jax.random.split(key, 3)
  ref = [
    jnp.clip(pix.elastic_deformation(jax.random.split(jax.random.fold_in(k, 104))[0], im, 64.0,
                                     3.2), 0, 1)
    for k, im in zip(keys, x, strict=True)
  ]  # fmt: skip
  np.testing.assert_allclose(out, jnp.stack(ref), atol=1e-5)  # jit vs eager rounding
  assert float(jnp.abs(out - x).max()) > 0.05  # It moved pixels.
  cfg.p_affine = 0.0
  np.testing.assert_array_equal(_jit_augment(key, x, cfg), x)


@pytest.mark.parametrize(("h", "w", "c"), [(224, 229, 3), (57, 40, 2), (16, 16, 1)])
def test_elastic_with_matrix_blur_equals_dm_pix_elastic_deformation(h, w, c):
  # Alotaibi's real size (sigma 22.4 px, 147 taps), odd shapes, a kernel wider than the image.
  x = jax.random.uniform(jax.random.key(1), (h, w, c))
  key, alpha, sigma = jax.random.key(3), 2.0 * h, 0.1 * h
  ref = jax.jit(lambda k, x: pix.elastic_deformation(k, x, alpha, sigma))(key, x)
  ours = jax.jit(
    lambda k, x: augment.resample(x, augment.elastic_coordinates(k, x.shape[:2], alpha, sigma))
  )(key, x)
  assert ours.shape == ref.shape
  # Displacements are alpha (hundreds of px) times a blur; fp32 rounding of that sum alone.
  np.testing.assert_allclose(ours, ref, atol=5e-5)
  assert float(jnp.abs(ours - x).max()) > 0.1
  kernel_size = ((sigma - 0.8) / 0.3 + 1) / 0.5 + 1
  field = jax.random.uniform(key, (h, w, 1))
  blurred = (
    augment.gaussian_blur_matrix(h, sigma, kernel_size)
    @ field[..., 0]
    @ augment.gaussian_blur_matrix(w, sigma, kernel_size).T
  )
  np.testing.assert_allclose(
    blurred, pix.gaussian_blur(field, sigma, kernel_size)[..., 0], atol=1e-6
  )


def test_perspective_warp_moves_the_corners_as_fastai_and_matches_scipy():
  import scipy.ndimage  # pylint: disable=g-import-not-at-top

  s = 21
  img = np.linspace(0.1, 0.9, s * s, dtype=np.float32).reshape(s, s, 1)  # Every pixel its own.
  # fastai: corner (-1, -1) of the input lands at (-1 - y_t, -1 - x_t) of the output, here
  # (-0.8, -0.8): pixel (2, 2) of 21.
  out = np.asarray(augment.perspective_warp(jnp.asarray(img), -0.2, -0.2))
  assert out[2, 2, 0] == pytest.approx(img[0, 0, 0], abs=1e-5)
  assert out[4, 4, 0] > img[1, 1, 0]  # Inside, the image is shrunk towards the centre.
  np.testing.assert_allclose(augment.perspective_warp(jnp.asarray(img), 0.0, 0.0), img, atol=1e-6)
  # An independent reference: fastai's find_coeffs system solved in numpy, sampled by scipy.
  x_t, y_t = 0.13, -0.07
  orig = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], float)
  targ = np.array(
    [[-1 - y_t, -1 - x_t], [-1 + y_t, 1 + x_t], [1 + y_t, -1 + x_t], [1 - y_t, 1 - x_t]]
  )
  a = []
  for (px, py), (qx, qy) in zip(orig, targ, strict=True):
    a += [[qx, qy, 1, 0, 0, 0, -px * qx, -px * qy], [0, 0, 0, qx, qy, 1, -py * qx, -py * qy]]
  m = np.append(np.linalg.solve(np.array(a), orig.reshape(8)), 1.0).reshape(3, 3)
  ii, jj = np.mgrid[0:s, 0:s].astype(float)
  u, v = 2 * jj / (s - 1) - 1, 2 * ii / (s - 1) - 1
  src = np.einsum("ij,jhw->ihw", m, np.stack([u, v, np.ones_like(u)]))
  coords = [(src[1] / src[2] + 1) * (s - 1) / 2, (src[0] / src[2] + 1) * (s - 1) / 2]
  planted = np.asarray(_images(1, s)[0])
  ref = scipy.ndimage.map_coordinates(planted[..., 0], coords, order=1, mode="nearest")
  got = augment.perspective_warp(jnp.asarray(planted), x_t, y_t)[..., 0]
  np.testing.assert_allclose(got, ref, atol=1e-5)


def test_geometric_ops_move_the_mask_with_the_image():
  m = (np.asarray(_images(4, 32)) > 0.5).astype(np.float32)
  cfg = _aug(elastic=(2.0, 0.1), warp=0.2, zoom=(1.05, 1.1), rotate_deg=5.0, p_affine=1.0)
  img, mask = jax.jit(lambda k, x, y: augment.augment_pair(k, x, y, cfg))(
    jax.random.key(2), jnp.asarray(m), jnp.asarray(m)
  )
  np.testing.assert_array_equal(np.asarray(img) >= 0.5, np.asarray(mask) > 0)
  assert not np.array_equal(np.asarray(mask), m)


def test_subset_mode_applies_a_random_non_empty_subset_of_the_enabled_ops():
  ramp = np.linspace(0.05, 0.9, 64, dtype=np.float32).reshape(1, 8, 8, 1)
  x = jnp.asarray(np.repeat(ramp, 64, axis=0))
  # rotate_deg etc. are 0: not enabled, so never "chosen" as a no-op.
  cfg = _aug(gamma=(1.5, 2.0), brightness_mult=(0.5, 0.7), subset=True, p_lighting=0.0)
  assert augment.enabled_ops(cfg) == ("gamma", "brightness_mult")
  y = np.asarray(jax.jit(lambda k, x: augment.augment(k, x, cfg))(jax.random.key(0), x))
  r = ramp.reshape(-1)
  kinds = []
  for yi in y.reshape(64, -1):
    ratio = yi / r  # brightness_mult alone: constant
    log_ratio = np.log(yi) / np.log(r)  # gamma alone: constant
    if np.ptp(ratio) < 1e-4:
      kinds.append("mult")
    elif np.ptp(log_ratio) < 1e-3:
      kinds.append("gamma")
    else:
      kinds.append("both")
    assert not np.allclose(yi, r)  # Never the empty subset (p_lighting 0 is not used).
  assert set(kinds) == {"mult", "gamma", "both"}


def test_all_ops_jit_and_are_deterministic_per_key():
  cfg = _aug(
    flip=0.5, vflip=0.5, rotate_deg=5.0, zoom=(1.05, 1.1), translate=0.1, translate_min=0.03,
    elastic=(2.0, 0.1), warp=0.2, gamma=(1.05, 1.11), brightness_mult=(1.05, 1.1),
    brightness=0.2, contrast=0.2, subset=True,
  )  # fmt: skip
  config_lib.validate_augment(cfg)
  x = _images(4, 32)
  f = jax.jit(lambda k, x: augment.augment(k, x, cfg))
  a = f(jax.random.key(1), x)
  np.testing.assert_array_equal(a, f(jax.random.key(1), x))
  assert not np.allclose(a, f(jax.random.key(2), x))


@pytest.mark.parametrize(
  "key,value,match",
  [
    ("flip", 1.5, r"augment.flip=1.5: expected a probability in \[0, 1\]"),
    ("p_affine", -0.1, r"augment.p_affine=-0.1: expected a probability"),
    ("zoom", (1.1, 1.05), r"augment.zoom=\(1.1, 1.05\): expected \(\) \(off\) or \(lo, hi\)"),
    ("zoom", (1.0,), r"augment.zoom=\(1.0,\)"),
    ("max_zoom", 0.9, r"augment.max_zoom=0.9: expected a zoom factor >= 1"),
    ("translate_xy", (0.2, 1.5), r"augment.translate_xy=\(0.2, 1.5\): expected \(\) \(off\)"),
    ("translate_min", 0.05, r"augment.translate_min=0.05 needs a shift on both axes"),
    ("elastic", (2.0, 0.0), r"augment.elastic=\(2.0, 0.0\): expected \(\) \(off\) or \(alpha"),
    ("warp", 1.0, r"augment.warp=1.0: expected a magnitude in \[0, 1\)"),
    ("gamma", (0.0, 1.1), r"augment.gamma=\(0.0, 1.1\)"),
    ("rotate_deg", -5.0, r"augment.rotate_deg=-5.0"),
    ("subset", 1, r"augment.subset=1: expected a bool"),
    ("dihedral", 2.0, r"augment.dihedral=2.0: expected a probability in \[0, 1\]"),
  ],
)
def test_augment_validation_names_key_value_and_expectation(key, value, match):
  c = config_lib.base_config()
  c.total_steps = 1
  with c.augment.ignore_type():
    c.augment[key] = value
  with pytest.raises(ValueError, match=match):
    config_lib.validate(c)


def test_augment_validation_rejects_unknown_keys_and_doubled_keys():
  c = config_lib.base_config()
  c.total_steps = 1
  config_lib.validate(c)  # The defaults pass.
  c.augment.zoom, c.augment.max_zoom = (1.05, 1.1), 1.2
  with pytest.raises(ValueError, match="zoom=.*max_zoom=1.2: set one"):
    config_lib.validate(c)
  c.augment.max_zoom = 1.0
  c.augment.translate, c.augment.translate_xy = 0.1, (0.1, 0.1)
  with pytest.raises(ValueError, match="translate_xy=.*translate=0.1: set one"):
    config_lib.validate(c)
  c.augment.translate, c.augment.translate_min = 0.0, 0.2
  with pytest.raises(ValueError, match=r"translate_min=0.2: expected a fraction in \[0, 0.1\]"):
    config_lib.validate(c)
  c.augment.translate_min = 0.0
  c.augment.elastc = (2.0, 0.1)
  with pytest.raises(ValueError, match=r"unknown key\(s\) \['elastc'\]"):
    config_lib.validate(c)
  c = config_lib.base_config()
  c.total_steps, c.input.resize = 1, "pad"
  with pytest.raises(ValueError, match="input.resize='pad'"):
    config_lib.validate(c)
  c.input.resize, c.input.pad_value = "letterbox", 300
  with pytest.raises(ValueError, match="input.pad_value=300"):
    config_lib.validate(c)
