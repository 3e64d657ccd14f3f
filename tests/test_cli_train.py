"""The real console scripts, as subprocesses: her2mri-train debug=fdr, and the config-dir override."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from her2mri.cli._config import ENV_VAR, check_config_dir, config_dir


def _script(name: str) -> list[str]:
    exe = Path(sys.executable).parent / name
    if exe.is_file():
        return [str(exe)]
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"console script {name} is not installed (pip install -e .)")
    return [found]


def test_config_dir_env_override(tmp_path, monkeypatch):
    assert (config_dir() / "train.yaml").is_file()
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert config_dir() == tmp_path.resolve()
    with pytest.raises(FileNotFoundError, match="train.yaml not found"):
        check_config_dir("train")


def test_her2mri_train_fdr_subprocess(synthetic_cohort, tmp_path):
    root, csv = synthetic_cohort
    run_dir = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    cmd = [
        *_script("her2mri-train"),
        "debug=fdr",
        "data=breastdcedl",
        f"data.root={root}",
        f"data.metadata_csv={csv}",
        "data.progress=false",
        "model=resnet34",
        "preprocess.image_size=32",
        "preprocess.crop_size=32",
        "preprocess.n_slices=2",
        "num_threads=1",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "her2mri-train: resnet34" in proc.stdout
    payload = json.loads((run_dir / "metrics.json").read_text())
    assert payload["status"] == "ok"
    assert "test/auroc_patient" in payload["metrics"]
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "predictions" / "test_patients.csv").is_file()
