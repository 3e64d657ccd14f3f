"""``her2mri-train``: train a HER2 classifier from the Hydra config ``conf/train.yaml``.

With no arguments it runs the main job (synthetic cohort, THDA-ResNet34, CPU, a few minutes). Examples::

    her2mri-train
    her2mri-train experiment=vit_baseline trainer=gpu
    her2mri-train experiment=null data=breastdcedl data.root=/data/BreastDCEDL \
        data.metadata_csv=/data/meta.csv
    her2mri-train debug=fdr
    her2mri-train -m experiment=paper_thda sweep=seeds          # a multirun (docs/experiments.md)

In a multirun a failing job does not stop the sweep: it writes ``metrics.json`` with ``status: failed`` and
returns the sweeper's worst value (:mod:`her2mri.experiments.faults`).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from her2mri.cli._config import check_config_dir, config_dir
from her2mri.experiments.resolvers import register_resolvers

CONFIG_NAME = "train"
register_resolvers()  # before Hydra composes (also in joblib/submitit workers, which import this module)


@hydra.main(config_path=str(config_dir()), config_name=CONFIG_NAME, version_base="1.3")
def _main(cfg: DictConfig) -> float | None:
    from her2mri.experiments.faults import run_task
    from her2mri.training.run import metric_value, train

    return run_task(train, cfg, lambda metrics: metric_value(metrics, cfg.get("optimized_metric")))


def main() -> float | None:
    """Console entry point (returns ``optimized_metric`` for Hydra sweepers)."""
    check_config_dir(CONFIG_NAME)
    return _main()


if __name__ == "__main__":
    main()
