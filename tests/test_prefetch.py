"""Device prefetch (pipeline.DevicePrefetch): batches ahead on the devices, resumption exact."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_config

from jaxcxr import train
from jaxcxr.data import pipeline


def _iterator(tfds_dir):
  c = tiny_config(tfds_dir)
  split = train.load_datasets(c).split("train")
  return lambda: pipeline.train_iterator(
    split, local_batch_size=8, image_size=32, seed=7, num_threads=2
  )


def _equal(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_prefetch_keeps_the_order_and_checkpoints_the_consumed_position(tfds_dir, depth):
  make = _iterator(tfds_dir)
  plain = make()
  want = [next(plain) for _ in range(9)]  # 3 epochs of the 24-image split, reshuffled.
  puts = []

  def put(batch):
    puts.append(1)
    return {k: np.array(v) for k, v in batch.items()}

  it = pipeline.DevicePrefetch(make(), put, depth)
  first = next(it)
  assert len(puts) == depth + 1  # The lookahead: `depth` batches beyond the one handed out.
  _equal(first, want[0])
  for i in (1, 2):
    _equal(next(it), want[i])
  state = it.get_state()
  # The checkpointed position is after batch 3 (the inner iterator has read 3 + depth).
  resumed = make()
  resumed.set_state(state)
  for i in range(3, 9):
    _equal(next(resumed), want[i])
  # Set on the prefetcher itself (what grain's orbax handler does on restore): buffer dropped.
  for _ in range(2):
    next(it)
  it.set_state(state)
  it.start_prefetch()
  for i in range(3, 9):
    _equal(next(it), want[i])


def test_a_negative_depth_is_refused(tfds_dir):
  with pytest.raises(ValueError, match=r"prefetch_to_device=-1: expected >= 0"):
    pipeline.DevicePrefetch(_iterator(tfds_dir)(), lambda b: b, -1)
