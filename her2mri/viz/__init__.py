"""Interpretation figures: Grad-CAM per view / head and overlays on the fused RGB slice."""

from her2mri.viz.gradcam import gradcam_maps, load_model, save_gradcam_gallery
from her2mri.viz.overlay import draw_panel, overlay_heatmap, save_overlay_figure, to_display_rgb

__all__ = [
    "draw_panel",
    "gradcam_maps",
    "load_model",
    "overlay_heatmap",
    "save_gradcam_gallery",
    "save_overlay_figure",
    "to_display_rgb",
]
