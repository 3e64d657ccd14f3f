"""Overlays for interpretation figures: de-normalised fused RGB slices, heat maps and tumour contours.

All drawing uses matplotlib's object API (:class:`matplotlib.figure.Figure` with the Agg canvas), so it needs
no pyplot state and no display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: ImageNet mean and std per RGB channel (as her2mri.data.dataset; repeated to keep this module light)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "draw_panel",
    "overlay_heatmap",
    "save_overlay_figure",
    "to_display_rgb",
]


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def to_display_rgb(image: Any, imagenet_norm: bool = True) -> np.ndarray:
    """Turn one fused slice ``(3, H, W)`` (R = pre, G = early, B = late) into a displayable ``(H, W, 3)``.

    Args:
        image: tensor or array ``(3, H, W)``, ImageNet-normalised when ``imagenet_norm``, else in [0, 1].
        imagenet_norm: undo the ImageNet normalisation (``x * std + mean``) first.

    Returns:
        float array ``(H, W, 3)`` clipped to [0, 1].
    """
    arr = _to_numpy(image)
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise ValueError(f"image must have shape (3, H, W); got {arr.shape}.")
    if imagenet_norm:
        arr = arr * np.asarray(IMAGENET_STD)[:, None, None] + np.asarray(IMAGENET_MEAN)[:, None, None]
    return np.clip(np.transpose(arr, (1, 2, 0)), 0.0, 1.0)


def overlay_heatmap(rgb: np.ndarray, cam: np.ndarray, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Blend a heat map in [0, 1] over an RGB image: ``(1 - alpha) * rgb + alpha * cmap(cam)``.

    Args:
        rgb: ``(H, W, 3)`` in [0, 1].
        cam: ``(H, W)`` in [0, 1] (same size as ``rgb``).
        alpha: weight of the heat map, in [0, 1].
        cmap: matplotlib colormap name.

    Returns:
        ``(H, W, 3)`` in [0, 1].
    """
    from matplotlib import colormaps

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha!r}.")
    cam = np.asarray(cam, dtype=np.float64)
    if cam.shape != rgb.shape[:2]:
        raise ValueError(f"cam has shape {cam.shape} but the image is {rgb.shape[:2]}.")
    heat = colormaps[cmap](np.clip(cam, 0.0, 1.0))[..., :3]
    return np.clip((1.0 - alpha) * rgb + alpha * heat, 0.0, 1.0)


def draw_panel(
    ax: Axes,
    rgb: np.ndarray,
    cam: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    title: str | None = None,
    alpha: float = 0.45,
    contour_color: str = "lime",
) -> None:
    """Draw one image panel: the RGB slice, optionally a heat map over it and the tumour contour.

    Args:
        ax: matplotlib axes.
        rgb: ``(H, W, 3)`` in [0, 1].
        cam: optional ``(H, W)`` heat map in [0, 1].
        mask: optional ``(H, W)`` tumour mask; its 0.5 iso-line is drawn (nothing when the mask is empty).
        title: panel title.
        alpha: heat-map weight.
        contour_color: colour of the tumour contour.
    """
    ax.imshow(overlay_heatmap(rgb, cam, alpha) if cam is not None else rgb, interpolation="nearest")
    if mask is not None:
        m = np.asarray(mask, dtype=np.float64)
        if m.shape != rgb.shape[:2]:
            raise ValueError(f"mask has shape {m.shape} but the image is {rgb.shape[:2]}.")
        if m.max() > 0.5 > m.min():
            ax.contour(m, levels=[0.5], colors=[contour_color], linewidths=1.2)
    if title:
        ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def save_overlay_figure(
    path: str | Path,
    rgb_views: Sequence[np.ndarray],
    cams: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    view_titles: Sequence[str],
    suptitle: str | None = None,
    dpi: int = 110,
) -> Path:
    """Save per view the fused RGB slice (top row) and its Grad-CAM overlay (bottom row).

    With a single view the two panels stand side by side.

    Args:
        path: PNG file to write (parents are created).
        rgb_views: per view ``(H, W, 3)`` in [0, 1].
        cams: per view ``(H, W)`` heat map in [0, 1].
        masks: per view the mask to outline, or ``None``.
        view_titles: per view a title for the overlay panel.
        suptitle: figure title.
        dpi: resolution.

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure

    n = len(rgb_views)
    if not n or not (len(cams) == len(masks) == len(view_titles) == n):
        raise ValueError(
            f"rgb_views, cams, masks and view_titles must have the same non-zero length; got "
            f"{n}, {len(cams)}, {len(masks)}, {len(view_titles)}."
        )
    if n == 1:  # one view: image and overlay side by side
        fig = Figure(figsize=(5.6, 3.2))
        axes = fig.subplots(1, 2, squeeze=False).T  # axes[0, 0] image, axes[1, 0] overlay
    else:
        fig = Figure(figsize=(2.7 * n, 6.0))
        axes = fig.subplots(2, n, squeeze=False)
    for v in range(n):
        draw_panel(
            axes[0, v], rgb_views[v], None, masks[v], "fused RGB" if n == 1 else f"fused RGB, view {v + 1}"
        )
        draw_panel(axes[1, v], rgb_views[v], cams[v], masks[v], view_titles[v])
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
