"""What training reads, from TFDS builders to device batches (docs/design.md has the picture).

`splits.load(config.input)` is the entry: `tfds_access` (builders), `classes` (mixtures, class
maps, the label/patient index), `resplit` (patient-disjoint splits, balance, duplicate groups),
`views` (the random-access splits). `images` is the one image decoder and `duplicates` the image
hashing that the audit shares; `pipeline` (grain) and `augment` (dm-pix, on device) feed the step.
"""
