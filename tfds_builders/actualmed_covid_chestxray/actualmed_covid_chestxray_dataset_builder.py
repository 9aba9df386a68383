"""TFDS builder for the Actualmed COVID-19 Chest X-ray Dataset Initiative (a COVID-Net site).

Dataset: chest X-rays from Actualmed and Universitat Jaume I (Spain), published by the COVID-Net
team (L. Wang, Z. Q. Lin, A. Wong, "COVID-Net: a tailored deep convolutional neural network design
for detection of COVID-19 cases from chest X-ray images", Scientific Reports 10, 19549, 2020) as
one of the sources of COVIDx. Data: https://github.com/agchung/Actualmed-COVID-chestxray-dataset
(`metadata.csv` + `images/`).

Upstream: `metadata.csv` (UTF-8) names each file in the `imagename` column (DICOM-UID-like PNG
names, `CR.1.2.840...png`/`DX.1.2.840...png`); `patientid` (`ANON56`) is a real patient id
shared by a patient's images. Rows with a blank `finding` (their notes say "Inconclusive") have no
label and are skipped (counted). Shared code: `tfds_builders/covidnet_sites.py`.

    tfds build tfds_builders/actualmed_covid_chestxray --file_format=array_record --config=3class \
        [--manual_dir=PATH/TO/Actualmed-COVID-chestxray-dataset]
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from tfds_builders import common, covidnet_sites

SITE = covidnet_sites.Site(
  repo="agchung/Actualmed-COVID-chestxray-dataset",
  source="actmed",
  encoding="utf-8",
  file_column="imagename",
  patient_id=lambda row: row["patientid"],
  patient_id_doc="Upstream `patientid` (ANON<n>), shared by a patient's images.",
)


class Builder(common.SkipReportMixin, tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for the Actualmed COVID-19 chest X-ray images."""

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
