"""``her2mri-tune``: Optuna search of training hyper-parameters with trial pruning (``conf/tune.yaml``).

The ``train`` config plus a ``tune`` block (storage URL, study name, trials, pruner, search space); every
``her2mri-train`` override works here too. Examples::

    her2mri-tune                                             # 20 THDA trials, median pruning, SQLite
    her2mri-tune experiment=paper_thda tune.n_trials=50 tune.pruner.name=successive_halving
    her2mri-tune tune.storage=postgresql://optuna:secret@db-host:5432/optuna   # on every node, many nodes

Running the same command again resumes the study (``load_if_exists``) with ``tune.n_trials`` more trials.
See :mod:`her2mri.runs.tune` and docs/experiments.md.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from her2mri.cli._config import check_config_dir, config_dir
from her2mri.cli.train import normalize_null_choices
from her2mri.runs.resolvers import register_resolvers

CONFIG_NAME = "tune"
register_resolvers()


@hydra.main(config_path=str(config_dir()), config_name=CONFIG_NAME, version_base="1.3")
def _main(cfg: DictConfig) -> None:
    from her2mri.runs.train import route_lightning_logs
    from her2mri.runs.tune import run_tune

    route_lightning_logs()
    run_tune(cfg)


def main() -> None:
    """Console entry point."""
    check_config_dir(CONFIG_NAME)
    sys.argv[1:] = normalize_null_choices(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
