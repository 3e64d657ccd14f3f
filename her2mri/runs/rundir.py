"""The one reader of a run directory (ARCHITECTURE.md section 6), shared by her2mri-summarize and the report.

A run directory is written by ``her2mri-train`` / ``her2mri-eval``: ``metrics.json`` (``metrics``, ``config``,
``status``, ``error``, ``ckpt_path``, ``locked_threshold``...), ``predictions/`` and Hydra's ``.hydra/``
(``config.yaml``, ``overrides.yaml``, ``hydra.yaml``). :func:`read_run_dir` reads all of it once into a
:class:`RunDir`; a missing file is an empty value, an unreadable ``metrics.json`` is recorded in
``read_error`` (summaries list it as a failed run; the report refuses it with :meth:`RunDir.require_ok`).
This module imports nothing heavy (no torch), so the report can use it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from her2mri.data.errors import DataError

__all__ = ["RunDir", "parse_override", "read_metrics_json", "read_run_dir"]


def read_metrics_json(path: str | Path) -> dict[str, Any]:
    """Read a ``metrics.json`` (or any JSON object).

    Raises:
        DataError: the file cannot be read, is not JSON, or is not a JSON object (the message names it).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}.")
    return data


def _load_yaml(path: Path) -> Any:
    """A Hydra side file as plain data, None when absent or broken (side files never stop a reader)."""
    if not path.is_file():
        return None
    try:
        import yaml

        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - a broken side file must not stop a summary or a report
        return None


def parse_override(text: str) -> tuple[str, str] | None:
    """``"+a.b=3"`` -> ``("a.b", "3")``; ``"~a"`` -> ``("a", "(deleted)")``; None when not ``key=value``."""
    text = str(text).strip()
    if text.startswith("~"):
        return text[1:].split("=", 1)[0], "(deleted)"
    text = text.lstrip("+")
    if "=" not in text:
        return None
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


@dataclass
class RunDir:
    """One run directory, read once.

    Attributes:
        path: the directory.
        payload: the parsed ``metrics.json`` (empty when absent or unreadable).
        has_metrics: ``metrics.json`` exists.
        read_error: why ``metrics.json`` could not be read ("" when it could, or when it is absent).
        hydra_config: ``.hydra/config.yaml`` (plain data, None when absent).
        overrides: ``.hydra/overrides.yaml`` as ``key -> value``.
        choices: the Hydra group choices of ``.hydra/hydra.yaml`` (``experiment``, ``model``...).
    """

    path: Path
    payload: dict[str, Any] = field(default_factory=dict)
    has_metrics: bool = False
    read_error: str = ""
    hydra_config: Any = None
    overrides: dict[str, str] = field(default_factory=dict)
    choices: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics_path(self) -> Path:
        """``<run>/metrics.json``."""
        return self.path / "metrics.json"

    @property
    def status(self) -> str:
        """``ok``, ``failed`` (or another recorded status), or ``missing`` without ``metrics.json``."""
        if not self.has_metrics:
            return "missing"
        if self.read_error:
            return "failed"
        return str(self.payload.get("status", "ok"))

    @property
    def error(self) -> str:
        """The recorded or reading error of a run that is not ``ok`` ("" for an ok run)."""
        if not self.has_metrics:
            return "no metrics.json (killed, or still running)"
        if self.read_error:
            return self.read_error
        return str(self.payload.get("error") or "") if self.status != "ok" else ""

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config of ``metrics.json``, else ``.hydra/config.yaml``, else ``{}``."""
        cfg = self.payload.get("config")
        if isinstance(cfg, Mapping) and cfg:
            return dict(cfg)
        return dict(self.hydra_config) if isinstance(self.hydra_config, Mapping) else {}

    @property
    def metrics(self) -> dict[str, Any]:
        """``metrics.json``'s ``metrics`` (``stage/name -> value``)."""
        m = self.payload.get("metrics")
        return dict(m) if isinstance(m, Mapping) else {}

    @property
    def experiment(self) -> str | None:
        """The ``experiment=`` choice of the run (Hydra choices, else the override), or None."""
        choice = self.choices.get("experiment")
        if choice not in (None, "null", ""):
            return str(choice)
        value = self.overrides.get("experiment")
        return value if value not in (None, "null", "") else None

    @property
    def locked_threshold(self) -> float | None:
        """``locked_threshold.value`` of ``metrics.json`` (None when absent or not chosen)."""
        locked = self.payload.get("locked_threshold")
        if isinstance(locked, Mapping) and isinstance(locked.get("value"), int | float):
            return float(locked["value"])
        return None

    @property
    def ckpt_path(self) -> Path | None:
        """The checkpoint the run wrote or scored (``ckpt_path``, relative paths taken from the run)."""
        ckpt = self.payload.get("ckpt_path") or self.config.get("ckpt_path")
        if not isinstance(ckpt, str) or not ckpt:
            return None
        path = Path(ckpt)
        return path if path.is_absolute() else (self.path / path).resolve()

    def require_ok(self) -> None:
        """Raise unless ``metrics.json`` exists, reads, and says ``status: ok``.

        Raises:
            DataError: unreadable ``metrics.json``, or a status other than ``ok`` (the message names the file
                and the recorded error).
        """
        if self.read_error:
            raise DataError(self.read_error)
        if self.status != "ok":
            raise DataError(
                f"{self.metrics_path}: status is {self.payload.get('status')!r}, not 'ok' "
                f"({self.payload.get('error') or 'no error recorded'}): the predictions of a failed or "
                "unfinished run are not reported. Re-run it, or pass a predictions CSV file explicitly to "
                "report it anyway."
            )


def read_run_dir(run_dir: str | Path) -> RunDir:
    """Read ``metrics.json`` and the Hydra side files of a run directory.

    Args:
        run_dir: a directory holding ``metrics.json`` and/or ``.hydra/``.

    Returns:
        The :class:`RunDir` (never raises for missing or broken files; see ``read_error``).
    """
    path = Path(run_dir)
    run = RunDir(path=path)
    if run.metrics_path.is_file():
        run.has_metrics = True
        try:
            run.payload = read_metrics_json(run.metrics_path)
        except DataError as exc:
            run.read_error = str(exc)
    hydra_dir = path / ".hydra"
    run.hydra_config = _load_yaml(hydra_dir / "config.yaml")
    for item in _load_yaml(hydra_dir / "overrides.yaml") or []:
        parsed = parse_override(item)
        if parsed is not None:
            run.overrides[parsed[0]] = parsed[1]
    hydra_cfg = _load_yaml(hydra_dir / "hydra.yaml")
    if isinstance(hydra_cfg, Mapping):
        choices = ((hydra_cfg.get("hydra") or {}).get("runtime") or {}).get("choices") or {}
        run.choices = dict(choices) if isinstance(choices, Mapping) else {}
    return run
