"""Shared pytest fixtures: offline environment, paths to the shared real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("HER2MRI_SHARED", REPO_ROOT.parent / "shared"))
REAL_DIR = SHARED_DIR / "data" / "real"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """Path to ``../shared/data/real``; skips the test when it is absent (a user's clone)."""
    if not REAL_DIR.is_dir():
        pytest.skip(f"real data not available: {REAL_DIR} is absent (only present beside the dev checkout)")
    return REAL_DIR


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Path to the repository root."""
    return REPO_ROOT
