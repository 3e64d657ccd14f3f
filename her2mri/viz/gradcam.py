"""Grad-CAM for every her2mri model (pytorch-grad-cam), one map per view / head, saved as overlay PNGs.

The models expose :meth:`~her2mri.models.base.Her2Model.gradcam_target_layers` and
:meth:`~her2mri.models.base.Her2Model.gradcam_reshape_transform`, so nothing here branches on the model type:

- single-view CNNs (``resnet34``): the last residual block of ``layer4``; one map per image;
- transformers (``vit_small``, ``vit_base``, ``cvt_13``): the model's reshape transform turns the tokens of
  the target block into a 2-D grid ``(N, C, h, w)``; one map per image;
- THDA-ResNet (``num_views = 3``): the three heads share one backbone that runs on the ``B * V`` views, so the
  target block's activations have batch ``B * V`` and Grad-CAM gives one map **per head (view)**. The input is
  passed channel-stacked ``(B, V * 3, H, W)`` (which the model accepts) so pytorch-grad-cam treats it as a
  2-D image; the ``B * V`` maps are reshaped to ``(B, V, H, W)``.

Grad-CAM (Selvaraju et al., ICCV 2017) explains the logit of ``target_class`` (default 1 = HER2-positive,
whatever the prediction), so maps of different patients answer the same question. Each map is min-max
scaled to [0, 1] on its own (pytorch-grad-cam's ``scale_cam_image``), so the colours of two heads are not
comparable in absolute terms; the fusion weight of each head (THDA ``fusion="attention"``) is shown instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from her2mri.viz.overlay import save_overlay_figure, to_display_rgb

__all__ = ["CONTOUR_VIEWS", "GradCAMResult", "gradcam_maps", "load_model", "save_gradcam_gallery"]

CONTOUR_VIEWS: tuple[str, ...] = ("centre", "all", "none")


class GradCAMResult(dict):
    """``{"maps": (B, V, H, W) float32 in [0, 1], "probs": (B,), "fusion_weights": (B, V) or None}``."""


def load_model(source: Any, map_location: str = "cpu") -> nn.Module:
    """The her2mri model inside a checkpoint path, a ``HER2Classifier`` or a bare model.

    Args:
        source: path to a Lightning checkpoint of ``HER2Classifier``, a ``HER2Classifier`` (its ``.model`` is
            used) or a her2mri model (anything with ``gradcam_target_layers``).
        map_location: device for the checkpoint tensors.

    Returns:
        The model (an ``nn.Module`` with ``gradcam_target_layers``).
    """
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist.")
        from her2mri.training.module import load_classifier

        source = load_classifier(path, map_location=map_location)
    inner = getattr(source, "model", None)
    if isinstance(inner, nn.Module) and hasattr(inner, "gradcam_target_layers"):
        return inner
    if isinstance(source, nn.Module) and hasattr(source, "gradcam_target_layers"):
        return source
    raise ValueError(
        "source must be a checkpoint path, a HER2Classifier or a her2mri model with "
        f"gradcam_target_layers(); got {type(source).__name__}."
    )


def gradcam_maps(model: nn.Module, images: Tensor, target_class: int = 1) -> GradCAMResult:
    """Grad-CAM maps of a batch, one per view (head).

    Args:
        model: a her2mri model (see :func:`load_model`); it is put in eval mode for the call and its
            previous mode is restored.
        images: ``(B, 3, H, W)`` for single-view models, ``(B, V, 3, H, W)`` for multi-view models.
        target_class: class whose logit is explained (1 = HER2-positive).

    Returns:
        A :class:`GradCAMResult`: ``maps`` ``(B, V, H, W)`` (``V = 1`` for single-view models), ``probs``
        (softmax probability of ``target_class``, ``(B,)``) and ``fusion_weights`` (``(B, V)`` or None).
    """
    from her2mri.extras import require

    require("pytorch_grad_cam", "Grad-CAM")
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = load_model(model)
    views = int(getattr(model, "num_views", 1))
    num_classes = int(getattr(model, "num_classes", 2))
    if isinstance(target_class, bool) or not 0 <= int(target_class) < num_classes:
        raise ValueError(f"target_class must be an integer in [0, {num_classes}); got {target_class!r}.")
    expected = 5 if views > 1 else 4
    if images.ndim != expected or (views > 1 and images.shape[1] != views):
        shape = "(B, V, 3, H, W)" if views > 1 else "(B, 3, H, W)"
        raise ValueError(
            f"images must have shape {shape} for a {views}-view model; got {tuple(images.shape)}."
        )
    device = next(model.parameters()).device
    images = images.to(device=device, dtype=torch.float32)
    x = images.flatten(1, 2) if views > 1 else images
    b = images.shape[0]
    reshape = model.gradcam_reshape_transform() if hasattr(model, "gradcam_reshape_transform") else None
    was_training = model.training
    # Only activation gradients are needed: freeze the weights for the call (halves the backward pass) and let
    # the graph start at the input instead; the previous requires_grad flags are restored afterwards.
    flags = [(p, p.requires_grad) for p in model.parameters()]
    x = x.detach().requires_grad_(True)
    cam = GradCAM(model=model, target_layers=model.gradcam_target_layers(), reshape_transform=reshape)
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with torch.enable_grad():
            maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(target_class))] * b)
        logits = cam.outputs.detach().float()
    finally:
        cam.activations_and_grads.release()
        for p, flag in flags:
            p.requires_grad_(flag)
        model.zero_grad(set_to_none=True)
    x = x.detach()
    if maps.shape[0] != b * views:
        raise ValueError(f"Grad-CAM returned {maps.shape[0]} maps for {b} samples of {views} views.")
    maps = np.asarray(maps, dtype=np.float32).reshape(b, views, *maps.shape[-2:])
    probs = torch.softmax(logits, dim=-1)[:, int(target_class)].cpu().numpy()
    weights = None
    if views > 1 and hasattr(model, "fusion_weights"):
        w = model.fusion_weights(x)
        weights = None if w is None else w.float().cpu().numpy()
    model.train(was_training)
    return GradCAMResult(maps=maps, probs=probs, fusion_weights=weights)


# ----------------------------------------------------------------------------------------------- gallery
def _batches(data: Any, split: str) -> Iterable[Mapping[str, Any]]:
    """Batches from a batch dict, a datamodule (``predict_dataloader(split)``) or any iterable of batches."""
    if isinstance(data, Mapping):
        return [data]
    if hasattr(data, "predict_dataloader"):
        return data.predict_dataloader(split)
    if hasattr(data, f"{split}_dataloader"):
        if hasattr(data, "setup"):
            data.setup("test" if split == "test" else "validate")
        return getattr(data, f"{split}_dataloader")()
    if isinstance(data, Iterable):
        return data
    raise ValueError(
        f"data must be a batch dict, a datamodule or an iterable of batches; got {type(data).__name__}."
    )


def _collect(data: Any, n: int, split: str, one_per_patient: bool) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    for batch in _batches(data, split):
        if "image" not in batch:
            raise ValueError(f"batch has no 'image' key; keys: {sorted(batch)}.")
        image = batch["image"]
        size = image.shape[0]
        pids = list(batch.get("pid") or [f"sample{len(items) + i}" for i in range(size)])
        for i in range(size):
            pid = str(pids[i])
            if one_per_patient and pid in seen:
                continue
            seen.add(pid)
            mask = batch.get("mask")
            label = batch.get("label")
            sidx = batch.get("slice_idx")
            items.append(
                {
                    "image": image[i],
                    "mask": None if mask is None else mask[i],
                    "pid": pid,
                    "label": None if label is None else int(label[i]),
                    "slice_idx": None if sidx is None else int(sidx[i]),
                }
            )
            if len(items) >= n:
                return items
    return items


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60] or "x"


def save_gradcam_gallery(
    source: Any,
    data: Any,
    out_dir: str | Path,
    n: int = 8,
    *,
    split: str = "test",
    target_class: int = 1,
    imagenet_norm: bool | None = None,
    contour_views: str = "centre",
    one_per_patient: bool = True,
    batch_size: int = 8,
    dpi: int = 110,
) -> list[Path]:
    """Grad-CAM overlays of ``n`` slices saved as PNGs, plus ``index.json`` describing them.

    Each PNG has, per view (3 for THDA-ResNet, 1 otherwise), the fused RGB slice (top) and its Grad-CAM
    overlay (bottom), with the tumour contour from the batch ``mask`` when present. ``index.json`` lists per
    PNG: ``file, pid, slice_idx, label, prob, target_class, views, fusion_weights``. The report
    (``her2mri-report``) shows the PNGs of a run's ``gradcam/`` folder as a gallery.

    Args:
        source: checkpoint path, ``HER2Classifier`` or her2mri model.
        data: a batch dict (``image``, optional ``mask``, ``pid``, ``label``, ``slice_idx``), a datamodule
            (slices of ``split``) or an iterable of batches.
        out_dir: folder to write (created), e.g. ``<run_dir>/gradcam``.
        n: number of slices (>= 1).
        split: split of a datamodule to draw from (``test``, ``val``...).
        target_class: class whose logit is explained (1 = HER2-positive).
        imagenet_norm: whether images are ImageNet-normalised; ``None`` reads the datamodule's
            ``imagenet_norm`` (default True).
        contour_views: views that get the tumour contour: ``centre`` (default: the batch mask belongs to the
            centre slice / scale, so only the centre view is outlined for sure), ``all`` (adjacent slices: the
            centre contour is an approximation on the neighbours) or ``none``.
        one_per_patient: take at most one slice per patient (the first in loader order).
        batch_size: slices per Grad-CAM pass.
        dpi: PNG resolution.

    Returns:
        The PNG paths, in order.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be an integer >= 1; got {n!r}.")
    if contour_views not in CONTOUR_VIEWS:
        raise ValueError(f"contour_views must be one of {list(CONTOUR_VIEWS)}; got {contour_views!r}.")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}.")
    if imagenet_norm is None:
        imagenet_norm = bool(getattr(data, "imagenet_norm", True))
    model = load_model(source)
    items = _collect(data, int(n), split, one_per_patient)
    if not items:
        raise ValueError(f"data yielded no slices (split={split!r}).")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    index: list[dict[str, Any]] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        res = gradcam_maps(model, torch.stack([it["image"] for it in chunk]), target_class)
        for j, it in enumerate(chunk):
            k = start + j
            views = res["maps"].shape[1]
            imgs = it["image"].reshape(views, 3, *it["image"].shape[-2:])
            rgbs = [to_display_rgb(imgs[v], imagenet_norm) for v in range(views)]
            mask = (
                None
                if it["mask"] is None
                else it["mask"].detach().float().cpu().numpy().reshape(rgbs[0].shape[:2])
            )
            centre = views // 2
            masks = [
                mask if contour_views == "all" or (contour_views == "centre" and v == centre) else None
                for v in range(views)
            ]
            weights = None if res["fusion_weights"] is None else res["fusion_weights"][j]
            titles = []
            for v in range(views):
                t = "Grad-CAM" if views == 1 else f"Grad-CAM head {v + 1}"
                titles.append(t if weights is None else f"{t} (w={weights[v]:.2f})")
            prob = float(res["probs"][j])
            label = "?" if it["label"] is None or it["label"] < 0 else str(it["label"])
            slice_txt = "" if it["slice_idx"] is None else f", slice {it['slice_idx']}"
            sup = f"{it['pid']}{slice_txt} | label {label} | p(class {target_class}) = {prob:.3f}"
            name = f"{k:03d}_{_safe(it['pid'])}" + ("" if it["slice_idx"] is None else f"_s{it['slice_idx']}")
            path = save_overlay_figure(
                out / f"{name}.png", rgbs, list(res["maps"][j]), masks, titles, sup, dpi
            )
            paths.append(path)
            index.append(
                {
                    "file": path.name,
                    "pid": it["pid"],
                    "slice_idx": it["slice_idx"],
                    "label": it["label"],
                    "prob": prob,
                    "target_class": int(target_class),
                    "views": int(views),
                    "fusion_weights": None if weights is None else [float(w) for w in weights],
                }
            )
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return paths
