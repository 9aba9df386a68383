"""TFDS builder for the Figure 1 COVID-19 Chest X-ray Dataset Initiative (a COVID-Net site).

Dataset: chest X-rays contributed through Figure 1 (figure1.com), published by the COVID-Net team
(L. Wang, Z. Q. Lin, A. Wong, "COVID-Net: a tailored deep convolutional neural network design
for detection of COVID-19 cases from chest X-ray images", Scientific Reports 10, 19549, 2020) as
one of the sources of COVIDx. Data: https://github.com/agchung/Figure1-COVID-chestxray-dataset
(`metadata.csv` + `images/`).

Upstream quirks handled here (see `tfds_builders/covidnet_sites.py` for the shared code):
  * `metadata.csv` is latin-1 (Windows-1252: `°` and `’` as single bytes), not UTF-8;
  * there is no file column: the image of a row is `images/<patientid>.jpg` (or `.png`);
  * `patientid` names an image: several images of one patient share the number and differ by a
    trailing letter (`COVID-00003a`/`COVID-00003b`: same age, sex and offset, the second
    "post-intubation"), so `patient_id` drops that letter (`COVID-00003`) for patient-disjoint
    splits; the raw id stays in `filename`;
  * rows with a blank `finding` have no label and are skipped (counted); rows with a blank `view`
    (most of them) are kept and flagged.

    tfds build tfds_builders/figure1_covid_chestxray --file_format=array_record --config=3class \
        [--manual_dir=PATH/TO/Figure1-COVID-chestxray-dataset]
"""

from __future__ import annotations

import re

import tensorflow_datasets as tfds

from tfds_builders import common, covidnet_sites

_SUFFIX = re.compile(r"^(.*\d)[a-z]$")


def patient_id(row: dict[str, str]) -> str:
  """`COVID-00003b` -> `COVID-00003`: the trailing letter numbers a patient's images."""
  pid = row["patientid"]
  m = _SUFFIX.match(pid)
  return m.group(1) if m else pid


SITE = covidnet_sites.Site(
  repo="agchung/Figure1-COVID-chestxray-dataset",
  source="fig1",
  encoding="cp1252",  # Windows-1252, the latin-1 superset upstream uses (0x92 = ’).
  file_column=None,
  patient_id=patient_id,
  patient_id_doc="Upstream `patientid` without its trailing image letter (COVID-00003a -> "
  "COVID-00003).",
)


class Builder(common.SkipReportMixin, tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for the Figure 1 COVID-19 chest X-ray images."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = SITE.instructions()
  BUILDER_CONFIGS = covidnet_sites.configs()
  DEFAULT_BUILDER_CONFIG_NAME = "3class"

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=covidnet_sites.features(SITE, self.builder_config.label_names),
      supervised_keys=("image", "label"),
      homepage=SITE.homepage,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    return {"train": self._generate_examples(covidnet_sites.data_root(self, dl_manager, SITE))}

  def _generate_examples(self, root):
    return covidnet_sites.generate_examples(self, root, SITE)
