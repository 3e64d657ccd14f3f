"""``her2mri-radiomics``: run a radiomics / DLR / clinical-fusion / URAN experiment (Hydra app).

Examples::

    her2mri-radiomics radiomics_experiment=hu2025
    her2mri-radiomics radiomics_experiment=peritumoral cohort.n=80 pyradiomics=fast
    her2mri-radiomics radiomics_experiment=uran cohort.source=manifest cohort.manifest=us.csv \
        pyradiomics=us_2d
    her2mri-radiomics mode=apply model_dir=outputs/radiomics/<run> cohort.source=manifest \
        cohort.manifest=other_centre.csv        # score a new cohort with the saved models

Config: ``conf/radiomics.yaml`` with the groups ``radiomics_experiment/`` and ``pyradiomics/``; see
docs/radiomics.md. Outputs go to the Hydra run directory (``paths.output_dir``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from her2mri.cli._config import config_dir
from her2mri.radiomics.cases import RadiomicsCase, from_case_record, read_manifest

SOURCES = ("synthetic", "breastdcedl", "manifest")


def load_cases(cohort: dict[str, Any], cache_dir: str | Path) -> list[RadiomicsCase]:
    """Build the radiomics cases of the configured cohort.

    Args:
        cohort: the ``cohort`` config section.
        cache_dir: where a synthetic cohort is written when ``cohort.root`` is null.
    """
    source = cohort.get("source", "synthetic")
    phases = tuple(cohort.get("phases") or ("early", "wash_out"))
    if source == "manifest":
        if not cohort.get("manifest"):
            raise ValueError("cohort.manifest is null: cohort.source=manifest needs a CSV path")
        cases = read_manifest(cohort["manifest"], tuple(cohort.get("image_columns") or ("image",)))
    elif source in ("synthetic", "breastdcedl"):
        from her2mri.data.readers import load_breastdcedl

        if source == "synthetic":
            from her2mri.data.synth import make_synthetic_cohort

            shape = tuple(int(s) for s in cohort.get("shape", (24, 64, 64)))
            n, seed = int(cohort.get("n", 60)), int(cohort.get("synth_seed", 0))
            root = Path(
                cohort.get("root")
                or Path(cache_dir) / f"synthetic_radiomics_n{n}_s{seed}_{'x'.join(map(str, shape))}"
            )
            if not (root / "metadata.csv").is_file():
                make_synthetic_cohort(root, n=n, seed=seed, shape=shape)
            records = load_breastdcedl(root, root / "metadata.csv")
        else:
            if not cohort.get("root") or not cohort.get("metadata_csv"):
                raise ValueError("cohort.source=breastdcedl needs cohort.root and cohort.metadata_csv")
            records = load_breastdcedl(cohort["root"], cohort["metadata_csv"], require_label=False)
        cases = [from_case_record(r, phases) for r in records if r.mask_path is not None]
    else:
        raise ValueError(f"cohort.source={source!r}: expected one of {SOURCES}")
    limit = cohort.get("limit")
    return cases[: int(limit)] if limit else cases


def run_from_config(cfg: DictConfig | dict[str, Any], out_dir: str | Path | None = None) -> dict[str, Any]:
    """Run the experiment of a composed config (usable without the Hydra runtime, e.g. in tests).

    Args:
        cfg: the composed ``radiomics`` config.
        out_dir: output folder; default ``cfg.paths.output_dir``.
    """
    from her2mri.radiomics.experiments import run_experiment

    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    out = Path(out_dir) if out_dir is not None else Path(c["paths"]["output_dir"])
    cache = c.get("paths", {}).get("cache_dir", ".cache/her2mri")
    mode = c.get("mode", "train") or "train"
    if mode not in ("train", "apply"):
        raise ValueError(f"mode={mode!r}: expected 'train' or 'apply'")
    if mode == "apply" and not c.get("model_dir"):
        raise ValueError("model_dir is null: mode=apply needs the run directory of a training run")
    cases = load_cases(c["cohort"], cache)
    if mode == "apply":
        from her2mri.radiomics.apply import apply_models

        return apply_models(cases, c, c["model_dir"], out)
    return run_experiment(cases, c, out)


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

    check_config_dir("radiomics")
    hydra.main(config_path=str(config_dir()), config_name="radiomics", version_base="1.3")(_main)()


if __name__ == "__main__":
    main()
