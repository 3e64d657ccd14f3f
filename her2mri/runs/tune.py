"""``her2mri-tune``: an Optuna search over training hyper-parameters with trial pruning, on any storage.

The driver behind ``her2mri-tune`` (config ``her2mri/conf/tune.yaml``: the ``train`` config plus a ``tune``
block). Each trial is one :func:`her2mri.runs.train.train` run in ``<run dir>/trial_<number>`` with the
trial's parameters applied to the composed config; an :class:`~her2mri.training.pruning.OptunaPruning`
callback reports ``tune.monitor`` after every validation epoch, and the pruner (median or successive halving)
stops the trials that fall behind the others at the same epoch.

- **Storage**: ``tune.storage`` is any SQLAlchemy URL that Optuna accepts: ``sqlite:///path.db`` for one
  machine (the default, under ``paths.log_dir``), ``postgresql://user:password@host:5432/db`` (needs the
  ``postgres`` extra: psycopg2) or ``mysql+pymysql://...`` for many processes on many machines. Every process
  started with the same ``study_name`` and ``storage`` joins the same study; Optuna's database transactions
  hand out the trials.
- **Resume**: the study is created with ``load_if_exists``; running the same command again adds
  ``tune.n_trials`` more trials to it (the TPE sampler then sees every finished trial). With
  ``tune.heartbeat_s`` set, the trials of a killed process that stay RUNNING are marked FAIL once their
  heartbeat is older than twice that interval.
- **Search space**: ``tune.params`` uses the Hydra Optuna sweeper's syntax (``interval(a, b)``,
  ``tag(log, interval(a, b))``, ``choice(a, b)``, ``range(a, b, step)``), so ``sweep=optuna_thda`` and
  ``her2mri-tune`` read the same lines. Only keys already in the config can be searched (no group choices).
- **Outputs** (in the run directory): ``tune_summary.json`` (study, storage with the password masked, trials
  per state, best trial), ``trials.csv`` (every trial of the study) and ``intermediate_values.png`` (the
  reported curves: pruned trials end early).
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError

from her2mri.io_utils import atomic_write, atomic_write_text

log = logging.getLogger(__name__)

PRUNERS: tuple[str, ...] = ("median", "successive_halving", "none")
DIRECTIONS: tuple[str, ...] = ("maximize", "minimize")


# ---------------------------------------------------------------------- study
def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and summaries)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).__to_string__(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy can parse: show it without its netloc secret
        return url.split("@")[-1] if "@" in url else url


def make_pruner(spec: Mapping[str, Any]) -> Any:
    """The Optuna pruner of ``tune.pruner`` (``name``: median | successive_halving | none).

    Raises:
        ValueError: an unknown pruner name.
    """
    import optuna

    name = str(spec.get("name", "median"))
    if name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=int(spec.get("n_startup_trials", 4)),
            n_warmup_steps=int(spec.get("n_warmup_steps", 1)),
            interval_steps=int(spec.get("interval_steps", 1)),
        )
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=spec.get("min_resource", "auto"),
            reduction_factor=int(spec.get("reduction_factor", 3)),
            min_early_stopping_rate=int(spec.get("min_early_stopping_rate", 0)),
        )
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"tune.pruner.name={name!r} is not valid. Valid: {', '.join(PRUNERS)}")


def make_storage(url: str, heartbeat_s: int | None = None) -> Any:
    """An Optuna RDB storage for the SQLAlchemy ``url`` (SQLite folders are created).

    Raises:
        ValueError: ``url`` is empty or names a database whose driver is not installed.
    """
    import optuna

    if not url:
        raise ValueError(f"tune.storage={url!r} must be an SQLAlchemy URL, e.g. sqlite:///optuna.db")
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if heartbeat_s:
        kwargs = {"heartbeat_interval": int(heartbeat_s), "grace_period": 2 * int(heartbeat_s)}
    try:
        return optuna.storages.RDBStorage(url, **kwargs)
    except ImportError as err:
        raise ValueError(
            f"tune.storage={mask_url(url)!r}: the database driver is not installed ({err}); for PostgreSQL "
            "install the postgres extra: pip install 'her2mri[sweeps,postgres]'"
        ) from err


def open_study(tune: Mapping[str, Any]) -> Any:
    """Create or load (``load_if_exists``) the study of the ``tune`` block; the sampler is TPE.

    The sampler's seed is ``tune.sampler.seed`` plus the number of trials already in the study, so a
    resumed search draws new start-up points instead of repeating the first invocation's.

    Raises:
        ValueError: a bad direction or pruner.
    """
    import optuna

    direction = str(tune.get("direction", "maximize"))
    if direction not in DIRECTIONS:
        raise ValueError(f"tune.direction={direction!r} is not valid. Valid: {', '.join(DIRECTIONS)}")
    storage = make_storage(str(tune["storage"]), tune.get("heartbeat_s"))
    study = optuna.create_study(
        study_name=str(tune["study_name"]),
        storage=storage,
        direction=direction,
        pruner=make_pruner(tune.get("pruner") or {}),
        load_if_exists=True,
    )
    if study.direction.name.lower() != direction:
        raise ValueError(
            f"tune.direction={direction!r} but the stored study {tune['study_name']!r} is "
            f"{study.direction.name.lower()}: use another study_name"
        )
    sampler_cfg = dict(tune.get("sampler") or {})
    seed = sampler_cfg.get("seed")
    if seed is not None:
        seed = int(seed) + len(study.trials)
    study.sampler = optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=int(sampler_cfg.get("n_startup_trials", 8))
    )
    return study


# ---------------------------------------------------------------------- search space
def search_space(params: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna distributions of ``tune.params`` (the Hydra Optuna sweeper's override syntax).

    Raises:
        ValueError: an entry that is not a sweep (a fixed value belongs in the config, not in params).
    """
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    space, fixed = create_params_from_overrides([f"{k}={v}" for k, v in params.items()])
    if fixed:
        raise ValueError(
            f"tune.params has fixed values {fixed!r}: give each key a sweep (interval, choice, range) or set "
            "it as an ordinary override"
        )
    return space


def suggest(trial: Any, space: Mapping[str, Any]) -> dict[str, Any]:
    """Draw every parameter of ``space`` from ``trial`` through the public ``suggest_*`` API."""
    from optuna import distributions as d

    out: dict[str, Any] = {}
    for name, dist in space.items():
        if isinstance(dist, d.CategoricalDistribution):
            out[name] = trial.suggest_categorical(name, list(dist.choices))
        elif isinstance(dist, d.LogUniformDistribution):
            out[name] = trial.suggest_float(name, dist.low, dist.high, log=True)
        elif isinstance(dist, d.UniformDistribution):
            out[name] = trial.suggest_float(name, dist.low, dist.high)
        elif isinstance(dist, d.DiscreteUniformDistribution):
            out[name] = trial.suggest_float(name, dist.low, dist.high, step=dist.q)
        elif isinstance(dist, d.IntLogUniformDistribution):
            out[name] = trial.suggest_int(name, dist.low, dist.high, log=True)
        elif isinstance(dist, d.IntUniformDistribution):
            out[name] = trial.suggest_int(name, dist.low, dist.high, step=dist.step)
        else:  # pragma: no cover - every distribution the sweeper syntax makes is handled above
            raise ValueError(f"tune.params.{name}: unsupported distribution {dist!r}")
    return out


def trial_config(cfg: DictConfig, params: Mapping[str, Any], output_dir: Path) -> DictConfig:
    """A copy of ``cfg`` with the trial's ``params`` set and ``paths.output_dir`` = ``output_dir``.

    Raises:
        ValueError: a parameter key that is not in the config.
    """
    tcfg = copy.deepcopy(cfg)
    for key, value in params.items():
        try:
            OmegaConf.update(tcfg, key, value, merge=False)
        except (ConfigKeyError, AttributeError) as err:
            raise ValueError(f"tune.params key {key!r} is not in the config: {err}") from err
    OmegaConf.update(tcfg, "paths.output_dir", str(output_dir), merge=False)
    return tcfg


# ---------------------------------------------------------------------- driver
def objective_value(metrics: Mapping[str, Any], name: str) -> float:
    """The trial's objective ``metrics[name]``.

    Raises:
        ValueError: the metric is missing or not finite (the trial is recorded as FAIL).
    """
    value = metrics.get(name)
    if value is None or not math.isfinite(float(value)):
        raise ValueError(f"optimized_metric={name!r} is {value!r} in this trial; metrics: {sorted(metrics)}")
    return float(value)


def run_tune(cfg: DictConfig) -> dict[str, Any]:
    """Run ``tune.n_trials`` trials of the study of ``cfg.tune``; returns the summary (also written).

    Args:
        cfg: composed ``tune`` config (``paths.output_dir`` is the run directory).
    """
    import optuna

    from her2mri.runs.train import train
    from her2mri.training.pruning import OptunaPruning

    tune = OmegaConf.to_container(cfg.tune, resolve=True)
    if not isinstance(tune, dict):
        raise ValueError(f"tune must be a mapping, got {tune!r}")
    n_trials = int(tune.get("n_trials", 0))
    if n_trials < 1:
        raise ValueError(f"tune.n_trials={n_trials!r} must be >= 1")
    metric = str(cfg.get("optimized_metric") or "")
    if not metric:
        raise ValueError("optimized_metric is not set: name the metric the study optimises")
    out_dir = Path(str(cfg.paths.output_dir)).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    space = search_space(tune.get("params") or {})
    study = open_study(tune)
    log.info(
        "study %r in %s: %d trials so far; running %d more (pruner %s)",
        study.study_name,
        mask_url(str(tune["storage"])),
        len(study.trials),
        n_trials,
        (tune.get("pruner") or {}).get("name", "median"),
    )

    def objective(trial: Any) -> float:
        params = suggest(trial, space)
        tdir = out_dir / f"trial_{trial.number:04d}"
        trial.set_user_attr("output_dir", str(tdir))
        pruning = OptunaPruning(trial, monitor=str(tune.get("monitor", "val/auroc_patient")))
        metrics = train(trial_config(cfg, params, tdir), extra_callbacks=[pruning])
        if pruning.pruned_epoch is not None:
            trial.set_user_attr("pruned_epoch", pruning.pruned_epoch)
            raise optuna.TrialPruned(f"pruned after epoch {pruning.pruned_epoch}")
        return objective_value(metrics, metric)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n_trials, catch=(Exception,), gc_after_trial=True)
    summary = write_outputs(study, out_dir, str(tune["storage"]))
    print(format_tune_summary(summary), flush=True)  # noqa: T201 - final summary for the user
    return summary


def write_outputs(study: Any, out_dir: Path, storage: str) -> dict[str, Any]:
    """``tune_summary.json``, ``trials.csv`` and ``intermediate_values.png`` in ``out_dir`` (atomically)."""
    states: dict[str, int] = {}
    for t in study.trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    best = None
    if complete:
        b = study.best_trial
        best = {"number": b.number, "value": b.value, "params": b.params, **b.user_attrs}
    summary = {
        "study_name": study.study_name,
        "storage": mask_url(storage),
        "direction": study.direction.name.lower(),
        "n_trials": len(study.trials),
        "states": states,
        "best": best,
    }
    atomic_write_text(out_dir / "tune_summary.json", json.dumps(summary, indent=2, default=str))
    df = study.trials_dataframe()
    atomic_write_text(out_dir / "trials.csv", df.to_csv(index=False))
    _plot_intermediate(study, out_dir / "intermediate_values.png")
    return summary


def _plot_intermediate(study: Any, path: Path) -> None:
    """Reported value per epoch of every trial; pruned trials dashed (they end early)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for t in study.trials:
        if not t.intermediate_values:
            continue
        steps = sorted(t.intermediate_values)
        style = "--" if t.state.name == "PRUNED" else "-"
        ax.plot(steps, [t.intermediate_values[s] for s in steps], style, marker="o", label=f"{t.number}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("reported value")
    ax.set_title(f"{study.study_name}: dashed = pruned")
    if len(study.trials) <= 20:
        ax.legend(title="trial", fontsize=7, ncol=2)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


def format_tune_summary(summary: Mapping[str, Any]) -> str:
    """A short human-readable summary of the study."""
    states = ", ".join(f"{k.lower()} {v}" for k, v in sorted(summary["states"].items()))
    lines = [f"== her2mri-tune: study {summary['study_name']} ({summary['storage']}) ==", f"trials: {states}"]
    best = summary.get("best")
    if best:
        lines.append(f"best: trial {best['number']} value {best['value']:.4f} params {best['params']}")
    return "\n".join(lines)
