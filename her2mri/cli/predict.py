"""``her2mri-predict``: score new cases (DICOM study, folder of phase NIfTIs, manifest) with checkpoints.

Examples::

    her2mri-predict ckpt_path=outputs/train/<run>/checkpoints/epoch_009.ckpt input=/data/study_0042 out=pred/
    her2mri-predict ckpt_path=best.ckpt input=case_dir/ bbox=10,14,40,60,38,62 out=pred/
    her2mri-predict 'ckpt_path=[seed0.ckpt,seed1.ckpt,seed2.ckpt]' input=external/manifest.csv out=pred/

Writes ``predictions.csv``, ``predictions.json`` and ``gradcam/<case>.png`` into ``out`` (docs/predict.md).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from her2mri.cli._config import check_config_dir, config_dir
from her2mri.runs.resolvers import register_resolvers

CONFIG_NAME = "predict"
register_resolvers()


@hydra.main(config_path=str(config_dir()), config_name=CONFIG_NAME, version_base="1.3")
def _main(cfg: DictConfig) -> None:
    import torch

    from her2mri.runs.predict import predict
    from her2mri.runs.train import route_lightning_logs
    from her2mri.viz.case_gradcam import save_case_gradcams

    route_lightning_logs()
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    torch.manual_seed(int(cfg.get("seed") or 0))
    ckpts = (
        OmegaConf.to_container(cfg.ckpt_path, resolve=True)
        if OmegaConf.is_list(cfg.ckpt_path)
        else cfg.ckpt_path
    )
    phases = OmegaConf.to_container(cfg.phases, resolve=True) if OmegaConf.is_list(cfg.phases) else cfg.phases
    bbox = OmegaConf.to_container(cfg.bbox, resolve=True) if OmegaConf.is_list(cfg.bbox) else cfg.bbox
    payload = predict(
        ckpts,  # type: ignore[arg-type]
        cfg.input,
        cfg.out,
        mask=cfg.get("mask"),
        bbox=None if bbox is None else (bbox if isinstance(bbox, list) else str(bbox)),  # type: ignore[arg-type]
        bbox_unit=str(cfg.bbox_unit),
        phases=phases,  # type: ignore[arg-type]
        case_id=None if cfg.get("case_id") is None else str(cfg.case_id),
        axis_order=str(cfg.axis_order),
        tta=str(cfg.tta),
        threshold=None if cfg.get("threshold") is None else float(cfg.threshold),
        gradcam=save_case_gradcams if cfg.gradcam else None,
        batch_size=int(cfg.batch_size),
        progress=bool(cfg.progress),
        calibration=cfg.get("calibration", "auto"),
    )
    thr, n, wall = payload["threshold"]["value"], len(payload["cases"]), payload["wall_time_s"]
    print(f"her2mri-predict: {n} case(s), threshold {thr:.4f} ({wall:.1f} s)")  # noqa: T201
    for row in payload["cases"]:
        print(  # noqa: T201
            f"  {row['case_id']}: p={row['prob']:.4f} -> {row['call']}  "
            f"(uncertainty {row['uncertainty']:.4f}, {row['uncertainty_source']}; {row['n_slices']} slices)"
        )
    print(f"wrote {cfg.out}/predictions.csv, predictions.json" + (", gradcam/" if cfg.gradcam else ""))  # noqa: T201


def main() -> None:
    """Console entry point."""
    check_config_dir(CONFIG_NAME)
    _main()


if __name__ == "__main__":
    main()
