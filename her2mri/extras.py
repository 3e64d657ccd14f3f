"""Optional dependencies: import a module of an extra, or fail with a message naming the extra to install.

The heavy or optional parts of her2mri are pip extras (``pyproject.toml``): ``sweeps`` (Hydra Optuna sweeper
and launchers), ``tracking`` (wandb, TensorBoard), ``cvt`` (Hugging Face ``transformers`` for ``cvt_13``),
``gradcam`` (``grad-cam``), ``radiomics`` (pyradiomics, LightGBM, XGBoost), ``dicom`` (pydicom),
``distributed`` (Dask) and ``all``. This module sits directly in ``her2mri/`` so every package may use it.
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["EXTRA_OF", "MissingExtraError", "require"]

#: top-level module -> the extra that installs it
EXTRA_OF: dict[str, str] = {
    "optuna": "sweeps",
    "hydra_plugins": "sweeps",
    "wandb": "tracking",
    "tensorboardX": "tracking",
    "transformers": "cvt",
    "pytorch_grad_cam": "gradcam",
    "radiomics": "radiomics",
    "lightgbm": "radiomics",
    "xgboost": "radiomics",
    "skimage": "radiomics",
    "pydicom": "dicom",
    "distributed": "distributed",
}


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the extra that installs it."""


def install_hint(extra: str) -> str:
    """``pip install 'her2mri[<extra>]'``."""
    return f"pip install 'her2mri[{extra}]'"


def require(module: str, what: str = "") -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming the extra that provides it.

    Args:
        module: a dotted module name (its top-level package decides the extra, :data:`EXTRA_OF`).
        what: the feature that needs it, for the message (e.g. ``"model=cvt_13"``).

    Returns:
        The imported module.

    Raises:
        MissingExtraError: the module (or one of its own dependencies) cannot be imported.
        ValueError: ``module`` belongs to no extra.

    Example:
        >>> require("json").__name__  # doctest: +SKIP
    """
    top = module.split(".")[0]
    if top not in EXTRA_OF:
        raise ValueError(f"module={module!r} belongs to no her2mri extra (known: {sorted(EXTRA_OF)})")
    try:
        # the import statement's own hook (not importlib.import_module, which returns a cached module
        # without asking it), so that a blocked or shadowed module is seen the same way as by `import`
        return __import__(module, fromlist=["__name__"])
    except ImportError as err:
        extra = EXTRA_OF[top]
        need = f"{what} needs" if what else "needs"
        raise MissingExtraError(
            f"{need} {top!r}, which is not installed ({err}): it comes with the her2mri extra [{extra}]; "
            f"install it with {install_hint(extra)} (or {install_hint('all')})"
        ) from err
