#!/usr/bin/env python3
"""Screenshot a her2mri report in headless Chromium: ``tools/screenshot_report.py REPORT_HTML OUT_PNG``.

Needs a Chromium browser on PATH (Debian: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import sys

from her2mri.report.screenshot import screenshot


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("html", help="report.html")
    p.add_argument("out_png", help="screenshot PNG to write")
    p.add_argument("--width", type=int, default=1400, help="window width in px (default 1400)")
    p.add_argument("--height", type=int, default=4000, help="window height in px (default 4000)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds before Chromium is stopped")
    args = p.parse_args(argv)
    try:
        out = screenshot(args.html, args.out_png, args.width, args.height, args.timeout)
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        print(f"screenshot_report: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
