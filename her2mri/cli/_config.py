"""Where the Hydra config directory is: ``$HER2MRI_CONF``, else the package's own ``her2mri/conf``.

The configs ship inside the package (package data), so an editable install, a wheel and a clean clone all
find them with :func:`importlib.resources.files`. Importing this module also stores the structured configs
the YAML files build on in Hydra's ConfigStore (:func:`register_schemas`: ``preprocess/base``), so every
Hydra CLI and every caller of ``hydra.compose`` that finds the config folder here composes the same configs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

ENV_VAR = "HER2MRI_CONF"


def register_schemas() -> None:
    """Store her2mri's structured configs in Hydra's ConfigStore (idempotent; done when this module loads)."""
    from her2mri.data.preprocess_config import register_preprocess_schema

    register_preprocess_schema()


def package_config_dir() -> Path:
    """The ``conf`` folder shipped inside the installed ``her2mri`` package (absolute)."""
    return Path(str(files("her2mri").joinpath("conf"))).resolve()


def config_dir() -> Path:
    """The config directory (absolute): ``$HER2MRI_CONF`` when set, else :func:`package_config_dir`.

    Returns:
        The path, which may not exist (see :func:`check_config_dir`).
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    return package_config_dir()


def check_config_dir(config_name: str) -> Path:
    """Return :func:`config_dir` or raise a clear error when ``<dir>/<config_name>.yaml`` is missing.

    Args:
        config_name: primary config name (``train``, ``eval``, ``radiomics``).

    Raises:
        FileNotFoundError: the directory or the primary config is absent; the message says how to fix it.
    """
    path = config_dir()
    if not (path / f"{config_name}.yaml").is_file():
        raise FileNotFoundError(
            f"Hydra config {config_name}.yaml not found in {path}. her2mri reads its configs from the "
            f"her2mri/conf folder of the installed package; set {ENV_VAR}=/path/to/conf to use another "
            "folder (an install without the package data needs it)."
        )
    return path


#: override fragments that need a Hydra plugin of the ``sweeps`` extra -> the plugin's module
SWEEP_PLUGINS: dict[str, str] = {
    "optuna": "hydra_plugins.hydra_optuna_sweeper",
    "launcher=joblib": "hydra_plugins.hydra_joblib_launcher",
    "launcher=submitit": "hydra_plugins.hydra_submitit_launcher",
}


def check_sweep_extras(argv: Sequence[str]) -> None:
    """Fail early, naming the ``sweeps`` extra, when an override needs a Hydra plugin that is missing.

    Without it Hydra reports only ``Could not find 'hydra/sweeper/optuna'``.

    Args:
        argv: the command-line overrides.

    Raises:
        MissingExtraError: an override needs the Optuna sweeper or the joblib/submitit launcher and the
            plugin cannot be found.
    """
    from importlib.util import find_spec

    from her2mri.extras import MissingExtraError, install_hint

    for arg in argv:
        for fragment, module in SWEEP_PLUGINS.items():
            if fragment in arg and find_spec(module) is None:
                raise MissingExtraError(
                    f"{arg!r} needs the Hydra plugin {module}, which is not installed: it comes with the "
                    f"her2mri extra [sweeps]; install it with {install_hint('sweeps')}"
                )


register_schemas()
