"""The cohort of ``her2mri-radiomics``: radiomics cases from the ``cohort`` config; the config entry point.

:func:`load_cases` reads a synthetic cohort (written under the cache folder on first use), a BreastDCEDL
folder or a manifest CSV into :class:`her2mri.radiomics.cases.RadiomicsCase` objects;
:func:`run_from_config` runs the configured pipeline (:func:`her2mri.radiomics.pipelines.run_experiment`) on
them, with or without the Hydra runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from her2mri.data.errors import DataError
from her2mri.data.manifest import read_manifest
from her2mri.options import check_choice
from her2mri.radiomics.cases import RadiomicsCase, from_case_record

SOURCES = ("synthetic", "breastdcedl", "manifest")


def load_cases(cohort: dict[str, Any], cache_dir: str | Path) -> list[RadiomicsCase]:
    """Build the radiomics cases of the configured cohort.

    Args:
        cohort: the ``cohort`` config section.
        cache_dir: where a synthetic cohort is written when ``cohort.root`` is null.
    """
    source = check_choice("cohort.source", cohort.get("source", "synthetic"), SOURCES)
    phases = tuple(cohort.get("phases") or ("early", "wash_out"))
    if source == "manifest":
        if not cohort.get("manifest"):
            raise ValueError("cohort.manifest is null: cohort.source=manifest needs a CSV path")
        records = read_manifest(
            cohort["manifest"],
            require_label=False,
            axis_order=str(cohort.get("axis_order") or "zyx"),
            image_columns=tuple(cohort.get("image_columns") or ("image",)),
        )
        no_mask = [r.pid for r in records if r.mask_path is None]
        if no_mask:
            raise DataError(
                f"{cohort['manifest']}: column 'mask' is missing or empty for case(s) {no_mask[:10]}: "
                "radiomics needs a tumour mask for every case (docs/data.md, section 1.2)"
            )
        cases = [from_case_record(r) for r in records]
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
    limit = cohort.get("limit")
    return cases[: int(limit)] if limit else cases


def run_from_config(cfg: DictConfig | dict[str, Any], out_dir: str | Path | None = None) -> dict[str, Any]:
    """Run the experiment of a composed config (usable without the Hydra runtime, e.g. in tests).

    Args:
        cfg: the composed ``radiomics`` config.
        out_dir: output folder; default ``cfg.paths.output_dir``.
    """
    from her2mri.radiomics.pipelines import run_experiment

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
