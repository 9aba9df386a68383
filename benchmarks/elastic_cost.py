"""Where Alotaibi 2020's augmentation time goes: the whole config vs without elastic vs dm-pix's
`elastic_deformation` alone vs jaxcxr's (`augment.elastic_coordinates` + `augment.resample`: the
same field, its blur as two matrix products), per batch of 8 at 224 px (jitted; median of repeats).

    PYTHONPATH=. python benchmarks/elastic_cost.py
"""

import time

import dm_pix as pix
import jax
import numpy as np

from configs.studies import alotaibi2020
from jaxcxr.data import augment


def _ms(f, *args, n: int = 5) -> float:
  jax.block_until_ready(f(*args))  # compile
  times = []
  for _ in range(n):
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    times.append(time.perf_counter() - t)
  return 1000 * float(np.median(times))


def main() -> None:
  cfg = alotaibi2020.get_config("").augment
  x = jax.random.uniform(jax.random.key(0), (8, 224, 224, 1))
  k = jax.random.key(1)
  full = jax.jit(lambda k, x: augment.augment(k, x, cfg))
  no_el = cfg.copy_and_resolve_references()
  no_el.elastic = ()
  without = jax.jit(lambda k, x: augment.augment(k, x, no_el))
  alpha, sigma = 2 * 224, 0.1 * 224
  el = jax.jit(
    jax.vmap(lambda k, im: pix.elastic_deformation(k, im, alpha=alpha, sigma=sigma), (0, 0))
  )
  ours = jax.jit(
    jax.vmap(
      lambda k, im: augment.resample(
        im, augment.elastic_coordinates(k, im.shape[:2], alpha, sigma)
      ),
      (0, 0),
    )
  )
  keys = jax.random.split(k, 8)
  # The displacement-field blur elastic_deformation does: one channel per axis, sigma 22.4, its
  # kernel-size rule (147 taps).
  fields = jax.random.uniform(k, (8, 224, 224, 1), minval=-1, maxval=1)
  ks = ((sigma - 0.8) / 0.3 + 1) / 0.5 + 1
  blur = jax.jit(jax.vmap(lambda f: pix.gaussian_blur(f, sigma, ks)))
  print(f"devices: {jax.devices()}")
  print(f"alotaibi2020 augment, batch 8, 224 px: {_ms(full, k, x):.1f} ms")
  print(f"  same without elastic:               {_ms(without, k, x):.1f} ms")
  print(f"  dm-pix elastic_deformation alone:   {_ms(el, keys, x):.1f} ms")
  print(f"  jaxcxr elastic (matrix blur) alone:  {_ms(ours, keys, x):.1f} ms")
  print(f"  dm-pix gaussian_blur of one field:   {_ms(blur, fields):.1f} ms")
  print(f"max |jaxcxr - dm-pix| elastic: {float(abs(ours(keys, x) - el(keys, x)).max()):.2e}")


if __name__ == "__main__":
  main()
