r"""OmegaConf resolvers of her2mri, registered by the CLIs before Hydra composes a config.

``${run_uid:}``: an identifier unique to this process (``p<pid>-<4 random hex digits>``), the same at
every call. The run and sweep folders end with it (``outputs/train/<date>_<time>_<run_uid>``), so runs
started in the same second never share a folder, also across machines that write to one shared disk.

``${job_device:N}``: the device index of the current Hydra multirun job on a machine with ``N`` devices,
``hydra.job.num % N`` (0 outside a multirun). With a parallel launcher on one multi-GPU machine it gives each
of ``N`` concurrent jobs its own GPU (one device per job)::

    her2mri-train -m experiment=paper_thda sweep=seeds hydra/launcher=joblib hydra.launcher.n_jobs=4 \
        'trainer.devices=[${job_device:4}]'
"""

from __future__ import annotations

import os
import secrets

from omegaconf import OmegaConf

_RUN_UID: str | None = None


def run_uid() -> str:
    """``p<pid>-<4 hex digits>``, drawn once per process (the same value at every call)."""
    global _RUN_UID
    if _RUN_UID is None or not _RUN_UID.startswith(f"p{os.getpid()}-"):  # a forked child draws its own
        _RUN_UID = f"p{os.getpid()}-{secrets.token_hex(2)}"
    return _RUN_UID


def job_device(n_devices: int | str) -> int:
    """``hydra.job.num % n_devices`` of the running Hydra job (0 when there is no multirun job number).

    Raises:
        ValueError: ``n_devices`` is not a positive integer.
    """
    try:
        n = int(n_devices)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ValueError(f"job_device: n_devices={n_devices!r} must be a positive integer")
    try:
        from hydra.core.hydra_config import HydraConfig

        num = HydraConfig.get().job.get("num") if HydraConfig.initialized() else None
    except Exception:  # noqa: BLE001 - no Hydra context
        num = None
    try:
        return int(num) % n if num is not None else 0
    except (TypeError, ValueError):
        return 0


def register_resolvers() -> None:
    """Register ``job_device`` and ``run_uid`` (idempotent)."""
    if not OmegaConf.has_resolver("job_device"):
        OmegaConf.register_new_resolver("job_device", job_device)
    if not OmegaConf.has_resolver("run_uid"):
        OmegaConf.register_new_resolver("run_uid", run_uid, use_cache=True)
