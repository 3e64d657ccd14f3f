"""Where the Hydra config directory ``conf/`` is: ``$HER2MRI_CONF``, else ``<repo root>/conf``.

The repository-root ``conf/`` sits two levels above this file in a clean clone and in an editable install.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "HER2MRI_CONF"


def config_dir() -> Path:
    """The config directory (absolute): ``$HER2MRI_CONF`` when set, else ``<repo root>/conf``.

    Returns:
        The path, which may not exist (see :func:`check_config_dir`).
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[2] / "conf"


def check_config_dir(config_name: str) -> Path:
    """Return :func:`config_dir` or raise a clear error when ``<dir>/<config_name>.yaml`` is missing.

    Args:
        config_name: primary config name (``train``, ``eval``).

    Raises:
        FileNotFoundError: the directory or the primary config is absent; the message says how to fix it.
    """
    path = config_dir()
    if not (path / f"{config_name}.yaml").is_file():
        raise FileNotFoundError(
            f"Hydra config {config_name}.yaml not found in {path}. her2mri reads its configs from the "
            f"repository's conf/ folder (an editable install of a clone); set {ENV_VAR}=/path/to/conf to "
            "use another folder."
        )
    return path
