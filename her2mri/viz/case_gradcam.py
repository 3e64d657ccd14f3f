"""One Grad-CAM overlay PNG per scored case (``her2mri-predict``'s ``gradcam/<case>.png``)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from her2mri.viz.gradcam import gradcam_maps
from her2mri.viz.overlay import save_overlay_figure, to_display_rgb


def save_case_gradcams(
    module: Any,
    items: Mapping[str, Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    out_dir: Path,
    imagenet_norm: bool = True,
) -> dict[str, str]:
    """Grad-CAM (HER2-positive logit) of each case's chosen slice, with its call in the title.

    Args:
        module: a ``HER2Classifier`` (its ``.model`` is explained) or a her2mri model.
        items: per case id ``{"image": (3, H, W) or (V, 3, H, W) tensor, "mask": tensor or None,
            "slice_idx": int}``.
        rows: prediction rows with ``case_id``, ``prob``, ``threshold``, ``call``.
        out_dir: folder of the PNGs (created).
        imagenet_norm: whether the images are ImageNet-normalised.

    Returns:
        ``{case_id: PNG path relative to out_dir's parent}``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    model = getattr(module, "model", module)
    by_case = {r["case_id"]: r for r in rows}
    files: dict[str, str] = {}
    for case, item in items.items():
        image = item["image"]
        res = gradcam_maps(model, image[None])
        views = res["maps"].shape[1]
        imgs = image.reshape(views, 3, *image.shape[-2:])
        rgbs = [to_display_rgb(imgs[v], imagenet_norm) for v in range(views)]
        mask = item.get("mask")
        mask_np = None if mask is None else mask.float().cpu().numpy().reshape(rgbs[0].shape[:2])
        masks = [mask_np if v == views // 2 else None for v in range(views)]
        titles = ["Grad-CAM (HER2+)"] if views == 1 else [f"Grad-CAM head {v + 1}" for v in range(views)]
        r = by_case[case]
        title = (
            f"{case}: p={r['prob']:.4f}, threshold {r['threshold']:.4f} -> {r['call']} "
            f"(slice {item['slice_idx']}; research use only)"
        )
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", str(case))
        path = save_overlay_figure(out_dir / f"{safe}.png", rgbs, list(res["maps"][0]), masks, titles, title)
        files[case] = str(path.relative_to(out_dir.parent))
    return files
