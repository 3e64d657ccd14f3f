"""Lightning's console handlers are folded into the root (Hydra) handlers: each message once, no adverts."""

from __future__ import annotations

import logging
import warnings

import lightning  # noqa: F401 - attaches Lightning's console handlers on import
import pytest

from her2mri.runs.train import route_lightning_logs


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def root_handler():
    root = logging.getLogger()
    saved = {
        n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate)
        for n in ("lightning", "lightning.pytorch", "lightning.fabric")
    }
    handler = _Collect()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old_level)
    for n, (handlers, propagate) in saved.items():
        logger = logging.getLogger(n)
        logger.handlers[:] = handlers
        logger.propagate = propagate


def test_lightning_messages_reach_the_root_once_and_adverts_are_dropped(root_handler):
    with warnings.catch_warnings():
        route_lightning_logs()
        route_lightning_logs()  # idempotent
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        assert not [h for h in logger.handlers if type(h) is logging.StreamHandler], name
        assert logger.propagate, name
    rz = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    rz.info("GPU available: False, used: False")
    rz.info("Tip: try installing [litlogger](https://pypi.org/project/litlogger/)")
    assert root_handler.messages == ["GPU available: False, used: False"]
