"""Reading TFDS datasets, the grain input pipeline and on-device augmentation."""
