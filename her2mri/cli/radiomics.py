"""``her2mri-radiomics``: run a radiomics / DLR / clinical-fusion / URAN experiment (Hydra app).

Examples::

    her2mri-radiomics radiomics_experiment=hu2025
    her2mri-radiomics radiomics_experiment=peritumoral cohort.n=80 pyradiomics=fast
    her2mri-radiomics radiomics_experiment=uran cohort.source=manifest cohort.manifest=us.csv \
        pyradiomics=us_2d
    her2mri-radiomics mode=apply model_dir=outputs/radiomics/<run> cohort.source=manifest \
        cohort.manifest=other_centre.csv        # score a new cohort with the saved models

Config: ``her2mri/conf/radiomics.yaml`` with the groups ``radiomics_experiment/`` and ``pyradiomics/``; see
docs/radiomics.md. Outputs go to the Hydra run directory (``paths.output_dir``).
"""

from __future__ import annotations

from omegaconf import DictConfig

from her2mri.cli._config import config_dir
from her2mri.radiomics.cohort import run_from_config


def _main(cfg: DictConfig) -> float:
    info = run_from_config(cfg)
    summary = info["summary"]
    cols = [k for k in ("signature", "val/auroc_patient", "test/auroc_patient") if k in summary.columns]
    print(summary[cols].to_string(index=False))
    print(
        f"wall time {info['wall_s']:.1f} s (extraction {info['extraction_s']:.1f} s); outputs in "
        f"{cfg.paths.output_dir}"
    )
    vals = summary.get("test/auroc_patient" if cfg.get("mode") == "apply" else "val/auroc_patient")
    return float(vals.max()) if vals is not None and len(vals) else float("nan")


def main() -> None:
    """Console entry point (``her2mri-radiomics``)."""
    import hydra

    from her2mri.cli._config import check_config_dir
    from her2mri.runs.resolvers import register_resolvers

    check_config_dir("radiomics")
    register_resolvers()  # ${run_uid:} of the run folder
    hydra.main(config_path=str(config_dir()), config_name="radiomics", version_base="1.3")(_main)()


if __name__ == "__main__":
    main()
