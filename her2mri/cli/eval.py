"""``her2mri-eval``: score a checkpoint, several, or their ensemble on any cohort (``conf/eval.yaml``).

Examples::

    her2mri-eval ckpt_path=outputs/train/2026-01-01_12-00-00/checkpoints/last.ckpt
    her2mri-eval ckpt_path=best.ckpt data=manifest data.manifest_csv=external.csv split=all
    her2mri-eval -m ckpt_path=a.ckpt,b.ckpt,c.ckpt data=manifest data.manifest_csv=external.csv split=all
    her2mri-eval ensemble=true 'ckpt_paths=[a.ckpt,b.ckpt,c.ckpt]' data=manifest \
        data.manifest_csv=external.csv split=all
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from her2mri.cli._config import check_config_dir, check_sweep_extras, config_dir
from her2mri.runs.resolvers import register_resolvers

CONFIG_NAME = "eval"
register_resolvers()


@hydra.main(config_path=str(config_dir()), config_name=CONFIG_NAME, version_base="1.3")
def _main(cfg: DictConfig) -> None:
    from her2mri.runs.faults import run_task

    if cfg.get("ensemble", False):
        from her2mri.runs.evaluate import evaluate_ensemble

        run_task(evaluate_ensemble, cfg)
    else:
        from her2mri.runs.evaluate import evaluate

        run_task(evaluate, cfg)


def main() -> None:
    """Console entry point."""
    check_config_dir(CONFIG_NAME)
    check_sweep_extras(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
