"""Open a report in headless Chromium: a PNG screenshot, or the DOM as the browser built it.

Chromium is not a Python dependency: install it from the system packages (Debian: ``apt-get install -y
chromium``). Every call uses a fresh, temporary user-data directory and flags that keep Chromium off the
network (no sync, no component updates, no background networking), so it works offline and leaves nothing
behind.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["CHROMIUM_NAMES", "chromium_flags", "dump_dom", "find_chromium", "screenshot"]

CHROMIUM_NAMES: tuple[str, ...] = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of the first Chromium-family browser on ``PATH`` (``None`` when there is none)."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_flags(user_data_dir: str | Path) -> list[str]:
    """Headless, offline, sandbox-free flags with the given throw-away profile folder."""
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={user_data_dir}",
    ]


def _run(extra: list[str], html: Path, timeout: float, browser: str | None) -> subprocess.CompletedProcess:
    exe = browser or find_chromium()
    if exe is None:
        raise FileNotFoundError(
            f"no Chromium browser found on PATH (tried {', '.join(CHROMIUM_NAMES)}); "
            "install it, e.g. `apt-get install -y chromium`."
        )
    html = Path(html).resolve()
    if not html.is_file():
        raise FileNotFoundError(f"{html}: report HTML not found.")
    with tempfile.TemporaryDirectory(prefix="her2mri-chromium-") as profile:
        cmd = [exe, *chromium_flags(profile), *extra, html.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{exe} exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


def screenshot(
    html: str | Path,
    out_png: str | Path,
    width: int = 1400,
    height: int = 4000,
    timeout: float = 120.0,
    browser: str | None = None,
) -> Path:
    """Render ``html`` in headless Chromium and save a ``width`` x ``height`` screenshot.

    Args:
        html: the report HTML file.
        out_png: PNG to write (parents are created).
        width: window width in pixels.
        height: window height in pixels (the page below it is cut).
        timeout: seconds before Chromium is stopped.
        browser: Chromium executable (default: :func:`find_chromium`).

    Returns:
        The PNG path.
    """
    if width < 100 or height < 100:
        raise ValueError(f"width and height must be >= 100 pixels; got {width} x {height}.")
    out = Path(out_png).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.unlink()
    _run([f"--screenshot={out}", f"--window-size={int(width)},{int(height)}"], Path(html), timeout, browser)
    if not out.is_file():
        raise RuntimeError(f"Chromium exited without writing {out}.")
    return out


def dump_dom(html: str | Path, timeout: float = 120.0, browser: str | None = None) -> str:
    """The page's DOM after Chromium has loaded and rendered it (``--dump-dom``), as HTML text."""
    return _run(["--dump-dom"], Path(html), timeout, browser).stdout
