"""``her2mri-train``: train a HER2 classifier from the Hydra config ``her2mri/conf/train.yaml``.

With no arguments it runs the main job (synthetic cohort, THDA-ResNet34, CPU, a few minutes): the demo
settings of ``conf/demo/synthetic.yaml`` apply only while ``data=synthetic``; any other ``data=`` option gets
the plain group defaults. Examples::

    her2mri-train
    her2mri-train experiment=vit_baseline trainer=gpu
    her2mri-train data=breastdcedl data.root=/data/BreastDCEDL data.metadata_csv=/data/meta.csv
    her2mri-train debug=fdr
    her2mri-train -m experiment=paper_thda sweep=seeds          # a multirun (docs/experiments.md)

In a multirun a failing job does not stop the sweep: it writes ``metrics.json`` with ``status: failed`` and
returns the sweeper's worst value (:mod:`her2mri.runs.faults`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import hydra
from omegaconf import DictConfig

from her2mri.cli._config import check_config_dir, check_sweep_extras, config_dir
from her2mri.runs.resolvers import register_resolvers

CONFIG_NAME = "train"
register_resolvers()  # before Hydra composes (also in joblib/submitit workers, which import this module)


@hydra.main(config_path=str(config_dir()), config_name=CONFIG_NAME, version_base="1.3")
def _main(cfg: DictConfig) -> float | None:
    from her2mri.runs.faults import run_task
    from her2mri.runs.train import metric_value, train

    return run_task(train, cfg, lambda metrics: metric_value(metrics, cfg.get("optimized_metric")))


def normalize_null_choices(argv: Sequence[str]) -> list[str]:
    """Rewrite ``group=null`` overrides that Hydra's parser rejects into what they mean.

    ``experiment=null`` (the old documented way to the plain defaults) names the default, so it is dropped;
    ``demo=null`` becomes ``~demo`` (no demo settings on the synthetic cohort).

    Args:
        argv: command-line arguments after the program name.

    Returns:
        The arguments with those two forms rewritten; everything else unchanged and in order.
    """
    out: list[str] = []
    for arg in argv:
        if arg in ("experiment=null", "experiment=none"):
            continue
        out.append("~demo" if arg in ("demo=null", "demo=none") else arg)
    return out


def main() -> float | None:
    """Console entry point (returns ``optimized_metric`` for Hydra sweepers)."""
    check_config_dir(CONFIG_NAME)
    check_sweep_extras(sys.argv[1:])
    sys.argv[1:] = normalize_null_choices(sys.argv[1:])
    return _main()


if __name__ == "__main__":
    main()
