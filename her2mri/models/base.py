"""Common base class giving every her2mri model the same API.

The LightningModule, Grad-CAM and embedding export use only this API, so they never branch on the model
type:

- ``forward(x)`` returns logits ``(B, num_classes)`` (never a tuple);
- ``forward_features(x)`` returns the model's unpooled representation (its shape is model-specific);
- ``forward_head(features, pre_logits=False)`` pools it; with ``pre_logits=True`` it returns the embedding
  ``(B, num_features)``, otherwise dropout + the linear classifier ``head`` give the logits;
- ``num_features``, ``num_classes``, ``num_views`` (1: input ``(B, C, H, W)``; 3: ``(B, 3, C, H, W)``);
- ``reset_classifier(num_classes)``;
- ``attention_maps(x)``: spatial attention maps for plotting (``{}`` when the model has none);
- ``gradcam_target_layers()`` and ``gradcam_reshape_transform()`` for pytorch-grad-cam.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor, nn

__all__ = ["Her2Model", "check_drop_rate", "check_num_classes"]


def check_num_classes(num_classes: int) -> int:
    """Validate ``num_classes`` (an integer >= 1) and return it."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    return num_classes


def check_drop_rate(drop_rate: float, name: str = "drop_rate") -> float:
    """Validate a dropout probability in [0, 1) and return it as a float."""
    if isinstance(drop_rate, bool) or not isinstance(drop_rate, int | float) or not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {drop_rate!r}")
    return float(drop_rate)


class Her2Model(nn.Module):
    """Base class of all her2mri classifiers (see the module docstring for the API).

    Subclasses build ``self.head_drop`` and ``self.head`` through :meth:`_init_head` and implement
    :meth:`forward_features`, :meth:`pool_features` and :meth:`gradcam_target_layers`.
    """

    num_views: int = 1
    num_classes: int
    num_features: int
    head: nn.Linear
    head_drop: nn.Dropout

    def _init_head(self, num_features: int, num_classes: int, drop_rate: float) -> None:
        """Create the dropout and the linear classifier on top of ``num_features`` features."""
        self.num_features = int(num_features)
        self.num_classes = check_num_classes(num_classes)
        self.drop_rate = check_drop_rate(drop_rate)
        self.head_drop = nn.Dropout(self.drop_rate)
        self.head = nn.Linear(self.num_features, self.num_classes)

    # -- forward -------------------------------------------------------------------------------------------
    def forward_features(self, x: Tensor) -> Tensor:
        """Unpooled features of ``x`` (model-specific shape)."""
        raise NotImplementedError

    def pool_features(self, features: Tensor) -> Tensor:
        """Reduce the output of :meth:`forward_features` to the embedding ``(B, num_features)``."""
        raise NotImplementedError

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool the features and apply the classifier.

        Args:
            features: output of :meth:`forward_features`.
            pre_logits: return the embedding ``(B, num_features)`` instead of the logits.

        Returns:
            Logits ``(B, num_classes)``, or the embedding when ``pre_logits`` is true.
        """
        pooled = self.pool_features(features)
        if pre_logits:
            return pooled
        return self.head(self.head_drop(pooled))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` for the batch ``x``."""
        return self.forward_head(self.forward_features(x))

    # -- classifier ----------------------------------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        """The final linear classifier."""
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a freshly initialised one with ``num_classes`` outputs.

        The new layer is created on the device and with the dtype of the old one.
        """
        num_classes = check_num_classes(num_classes)
        old = self.head.weight
        self.head = nn.Linear(self.num_features, num_classes, device=old.device, dtype=old.dtype)
        self.num_classes = num_classes

    # -- interpretation ------------------------------------------------------------------------------------
    def attention_maps(self, x: Tensor) -> dict[str, Tensor]:
        """Spatial attention maps for plotting; models without spatial attention return ``{}``."""
        return {}

    def gradcam_target_layers(self) -> list[nn.Module]:
        """Modules whose activations and gradients Grad-CAM should use (the last stage / block)."""
        raise NotImplementedError

    def gradcam_reshape_transform(self) -> Callable[[Tensor], Tensor] | None:
        """Function turning the target layer's output into ``(N, C, h, w)`` maps; ``None`` for CNNs."""
        return None

    # -- weights -------------------------------------------------------------------------------------------
    def remap_state_dict(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Translate a foreign state dict (e.g. a plain timm/torchvision backbone) to this model's keys.

        The default returns it unchanged; models that wrap a backbone override it.
        """
        return dict(state_dict)

    def _prefix_foreign_keys(
        self, state_dict: Mapping[str, Tensor], prefix: str, renames: Mapping[str, str] | None = None
    ) -> dict[str, Tensor]:
        """Add ``prefix`` to keys of a bare backbone state dict, unless it already uses this model's keys.

        Args:
            state_dict: the loaded state dict.
            prefix: prefix of the wrapped backbone (``"backbone."``).
            renames: key prefixes to rename instead (``{"fc.": "head."}``); a value of ``""`` drops the key.

        Returns:
            The translated state dict (unchanged when any key already carries ``prefix``).
        """
        if any(k.startswith(prefix) for k in state_dict):
            return dict(state_dict)
        renames = dict(renames or {})
        out: dict[str, Tensor] = {}
        for key, value in state_dict.items():
            for old, new in renames.items():
                if key.startswith(old):
                    if new:
                        out[new + key[len(old) :]] = value
                    break
            else:
                out[prefix + key] = value
        return out

    def extra_repr(self) -> str:
        """Summary line shown by ``print(model)``."""
        return f"num_classes={self.num_classes}, num_features={self.num_features}, num_views={self.num_views}"
