"""Packaging: the extras, the message naming a missing extra, declared imports, and a non-editable install."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from her2mri.cli._config import check_sweep_extras, package_config_dir
from her2mri.extras import EXTRA_OF, MissingExtraError, require

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: import name -> distribution name, where they differ
DIST_OF = {
    "yaml": "pyyaml",
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "SimpleITK": "simpleitk",
    "pytorch_grad_cam": "grad-cam",
    "radiomics": "pyradiomics-bhklab",
    "xgboost": "xgboost-cpu",
    "lightning": "lightning",
    "hydra": "hydra-core",
    "hydra_plugins": "hydra-optuna-sweeper",
    "distributed": "dask",
    "huggingface_hub": "huggingface-hub",
}
#: imported only inside an opt-in code path that names its own install command, not an her2mri extra
NOT_AN_EXTRA = {"ray"}  # extraction.backend=ray: pip install "ray[default]"


def _name(req: str) -> str:
    for sep in "<>=;[ !~":
        req = req.split(sep)[0]
    return req.strip().lower().replace("_", "-")  # PEP 503 normalised name


def _declared() -> set[str]:
    project = PYPROJECT["project"]
    names = {_name(r) for r in project["dependencies"]}
    for reqs in project["optional-dependencies"].values():
        names |= {_name(r) for r in reqs}
    return names


def test_extras_exist_and_all_holds_every_one():
    extras = PYPROJECT["project"]["optional-dependencies"]
    wanted = {"sweeps", "tracking", "cvt", "gradcam", "radiomics", "dicom"}
    assert wanted <= set(extras)
    assert set(EXTRA_OF.values()) <= set(extras)
    (all_req,) = extras["all"]
    assert set(all_req.split("[")[1].rstrip("]").split(",")) >= wanted


def test_core_dependencies():
    deps = PYPROJECT["project"]["dependencies"]
    names = {_name(r) for r in deps}
    assert not names & {"einops", "pynrrd"}, "never imported by her2mri"
    assert {"joblib", "safetensors", "pyyaml"} <= names, "imported by her2mri"
    pandas = next(r for r in deps if _name(r) == "pandas")
    assert "<3" in pandas
    heavy = {"wandb", "transformers", "grad-cam", "optuna", "lightgbm", "xgboost-cpu", "pyradiomics-bhklab"}
    assert not names & heavy, "heavy parts are extras"
    radiomics = PYPROJECT["project"]["optional-dependencies"]["radiomics"]
    assert any(r.startswith("xgboost-cpu") and "Darwin" in r for r in radiomics)
    assert any(r.startswith("xgboost>") and "Darwin" in r for r in radiomics)


def test_every_imported_distribution_is_declared():
    stdlib = set(sys.stdlib_module_names)
    found: set[str] = set()
    for path in (ROOT / "her2mri").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    third = {m for m in found if m not in stdlib and m not in ("her2mri", "__future__")} - NOT_AN_EXTRA
    declared = _declared()
    missing = sorted(m for m in third if _name(DIST_OF.get(m, m)) not in declared)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_require_names_the_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.split(".")[0] == "transformers":
            raise ModuleNotFoundError("No module named 'transformers'", name="transformers")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(
        MissingExtraError, match=r"model=cvt_13 needs 'transformers'.*\[cvt\].*her2mri\[cvt\]"
    ):
        require("transformers", "model=cvt_13")
    with pytest.raises(ValueError, match="module='json' belongs to no her2mri extra"):
        require("json")
    assert require("pydicom").__name__ == "pydicom"


def test_sweep_plugin_missing_names_the_extra(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(MissingExtraError, match=r"\[sweeps\]"):
        check_sweep_extras(["-m", "sweep=optuna_thda"])
    check_sweep_extras(["model=resnet34", "debug=fdr"])  # nothing to check


def test_configs_are_package_data():
    conf = package_config_dir()
    assert conf.parent == (ROOT / "her2mri").resolve() or conf.parent.name == "her2mri"
    assert (conf / "train.yaml").is_file() and (conf / "experiment" / "main_job.yaml").is_file()
    data = PYPROJECT["tool"]["setuptools"]["package-data"]["her2mri"]
    assert "conf/**/*.yaml" in data


@pytest.mark.slow
def test_non_editable_install_runs_a_debug_job(tmp_path, synthetic_cohort):
    """A wheel-style install (no source tree on the path) composes its packaged configs and trains."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copytree(ROOT / "her2mri", src / "her2mri", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target"]
    subprocess.run([*pip, str(target), str(src)], check=True, timeout=300, capture_output=True)
    assert (target / "her2mri" / "conf" / "train.yaml").is_file()
    root, csv = synthetic_cohort
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HER2MRI_CONF")}
    env.update(PYTHONPATH=str(target), HF_HUB_OFFLINE="1", WANDB_MODE="offline", OMP_NUM_THREADS="1")
    run = tmp_path / "run"
    code = (
        "import sys, her2mri; print('HER2MRI_FILE', her2mri.__file__, flush=True); "
        "from her2mri.cli.train import main; sys.argv[0] = 'her2mri-train'; main()"
    )
    args = [
        "debug=fdr", "data=breastdcedl", f"data.root={root}", f"data.metadata_csv={csv}",
        "data.progress=false", "model=resnet34", "preprocess.image_size=32", "preprocess.crop_size=32",
        "preprocess.n_slices=2", "num_threads=1", f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run}",
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"HER2MRI_FILE {target}" in proc.stdout  # the installed copy, not the source tree
    assert (run / "metrics.json").is_file()
