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
