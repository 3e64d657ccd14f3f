"""``her2mri-eval``: score a trained checkpoint on any cohort (``conf/eval.yaml``).

Examples::

    her2mri-eval ckpt_path=outputs/train/2026-01-01_12-00-00/checkpoints/last.ckpt
    her2mri-eval ckpt_path=best.ckpt data=manifest data.manifest_csv=external.csv split=all
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from her2mri.cli._config import check_config_dir, config_dir

CONFIG_NAME = "eval"


@hydra.main(config_path=str(config_dir()), config_name=CONFIG_NAME, version_base="1.3")
def _main(cfg: DictConfig) -> None:
    from her2mri.training.run import evaluate

    evaluate(cfg)


def main() -> None:
    """Console entry point."""
    check_config_dir(CONFIG_NAME)
    _main()


if __name__ == "__main__":
    main()
