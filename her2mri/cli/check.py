"""``her2mri-check``: validate every case of a cohort without training (the data options of her2mri-train).

Examples::

    her2mri-check data=breastdcedl data.root=/data/BreastDCEDL data.metadata_csv=/data/meta.csv
    her2mri-check data=manifest data.manifest_csv=imported/manifest.csv
    her2mri-check experiment=paper_thda data.root=... data.metadata_csv=... strict=true

Prints one table of every problem (case, file, problem, severity), a summary per split and the class balance
per split and site; exits 0 when there is no error (``strict=true``: no warning either), 1 otherwise.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from her2mri.cli._config import check_config_dir, config_dir
from her2mri.cli.train import normalize_null_choices
from her2mri.runs.resolvers import register_resolvers

CONFIG_NAME = "check"
register_resolvers()
_EXIT: list[int] = [0]


@hydra.main(config_path=str(config_dir()), config_name=CONFIG_NAME, version_base="1.3")
def _main(cfg: DictConfig) -> None:
    from her2mri.runs.check import check, summary_line
    from her2mri.runs.train import route_lightning_logs

    route_lightning_logs()
    report, code = check(cfg)
    print(summary_line(report))  # noqa: T201
    _EXIT[0] = code


def main() -> None:
    """Console entry point; exits 0 (no error) or 1."""
    check_config_dir(CONFIG_NAME)
    sys.argv[1:] = normalize_null_choices(sys.argv[1:])
    _main()
    sys.exit(_EXIT[0])


if __name__ == "__main__":
    main()
