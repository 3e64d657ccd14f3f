"""her2mri model zoo: a timm-style registry of THDA-ResNet and its baselines.

>>> from her2mri.models import create_model, list_models
>>> model = create_model("thda_resnet34", num_classes=2)

Every model has the API of :class:`her2mri.models.base.Her2Model` (see ``docs/models.md``).
"""

from her2mri.models import cvt, resnet, thda, timm_backbones, vit, volume3d  # noqa: F401  (registers the models)
from her2mri.models.base import Her2Model
from her2mri.models.registry import create_model, is_model, list_models, register_model
from her2mri.models.weights import LoadReport, build_model, load_weights, read_state_dict

__all__ = [
    "Her2Model",
    "LoadReport",
    "build_model",
    "create_model",
    "is_model",
    "list_models",
    "load_weights",
    "read_state_dict",
    "register_model",
]
