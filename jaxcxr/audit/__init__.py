r"""Leakage and shortcut audit: what would make test figures dishonest, checked before training.

    python -m jaxcxr.audit --data covid_chestxray/3class --data chest_xray_pneumonia/3class \
        --manual_dir chest_xray_pneumonia=PATH/TO/chest_xray --out audit/ --strict

Chest X-ray classifiers, the COVID-19 ones above all, have been reported with test figures that
do not survive contact with new hospitals. Roberts et al. ("Common pitfalls and recommendations
for using machine learning to detect and prognosticate for COVID-19 using chest radiographs and
CT scans", Nat. Mach. Intell. 3:199-217, 2021) found none of 62 published models fit for
clinical use, largely through duplicated images, patients shared between training and test sets
and "Frankenstein" datasets assembled from other datasets. DeGrave, Janizek and Lee ("AI for
radiographic COVID-19 detection selects shortcuts over signal", Nat. Mach. Intell. 3:610-619,
2021) showed that models trained on mixed sources learn the source (laterality markers, image
borders, patient position) rather than the disease; Maguolo and Nanni ("A critic evaluation of
methods for COVID-19 automatic detection from X-ray images", Information Fusion 76:1-7, 2021)
reached high accuracy on images whose lungs were blacked out, i.e. from dataset bias alone; and
Cohen et al.'s COVID-19 image data collection (arXiv:2003.11597, arXiv:2006.11988) gathers its
images from many publications and sites, so that source goes with finding, and it is usually
mixed with other datasets for the other classes. This module reports, per dataset and split:

1. **Exact duplicates**: identical decoded pixels (sha256), including identical pixels under
   different file names or labels.
2. **Near duplicates**: perceptual hashes (`imagehash`; 256-bit pHash confirmed by a 256-bit
   wavelet hash) of each image and of its 8 dihedral transforms, so that resized, re-encoded,
   flipped and rotated copies match. Clusters are reported within a split, across splits (a
   LEAK), across datasets, with conflicting labels and under different patient ids.
3. **Patient overlap**: patient ids present in more than one split of a dataset.
4. **Shortcuts**: how strongly the class is tied to metadata (source dataset, `source` field,
   image width / height / aspect ratio, file format): Cramér's V, normalized mutual information
   and the cross-validated accuracy of a decision tree that sees the metadata alone, against
   always answering the majority class, with how well it picks out each class (one class from
   one source is the typical COVID-19 shortcut).

The near-duplicate thresholds were calibrated on real radiographs (Kermany pediatric, Cohen
COVID-19 and NIH ChestX-ray14 samples; `benchmarks/audit_real.py --calibrate`): see
`NEAR_THRESHOLD`. The core works on plain `Record`s (`audit(records)`), so it does not depend on
how data is loaded; the CLI reads prepared TFDS datasets (`records_from_tfds`).

Modules: `records` (what is audited and how it is read), `duplicates` (exact and near-duplicate
clusters, on the hashes of `jaxcxr.data.duplicates`), `patients` (patient overlap), `shortcuts`
(class from metadata), `report` (`audit()`, the Markdown/JSON report, `run`), `__main__` (CLI).
"""

from jaxcxr.audit.records import (
  Record,
  label_name,
  manual_dir_for,
  parse_data_spec,
  records_from_config,
  records_from_tfds,
)
from jaxcxr.audit.report import audit, format_report, run, write_report
from jaxcxr.audit.shortcuts import METADATA_FACTORS, SHORTCUT_THRESHOLD
from jaxcxr.data.duplicates import (
  CONFIRM_THRESHOLD,
  HASH_SIZE,
  NEAR_THRESHOLD,
  ImageFeatures,
  duplicate_pairs,
  hamming_min,
  image_features,
  near_pairs,
)
from jaxcxr.data.images import to_grey

__all__ = [
  "CONFIRM_THRESHOLD",
  "HASH_SIZE",
  "METADATA_FACTORS",
  "NEAR_THRESHOLD",
  "SHORTCUT_THRESHOLD",
  "ImageFeatures",
  "Record",
  "audit",
  "duplicate_pairs",
  "format_report",
  "hamming_min",
  "image_features",
  "label_name",
  "manual_dir_for",
  "near_pairs",
  "parse_data_spec",
  "records_from_config",
  "records_from_tfds",
  "run",
  "to_grey",
  "write_report",
]
