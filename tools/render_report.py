"""Render a report.html in headless Chromium to a PNG and check the page is not blank.

    python tools/render_report.py runs/c10/report.html /tmp/c10.png --window-size 1300,4000

Chromium comes from the system packages (Debian: `apt-get install -y chromium`). The page is loaded
from a file:// URL with networking off, so a report that needed anything from the web would show
broken images here. Exit 0: rendered and not blank; 1: blank; 2: bad input or no browser.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def render(html: Path, png: Path, window_size: str = "1300,4000", browser: str | None = None,
           timeout: float = 120.0) -> Path:
    """Screenshot ``html`` into ``png`` with headless Chromium; returns ``png``."""
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError(f"no headless browser found (tried {', '.join(BROWSERS)})")
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--no-first-run", "--disable-extensions", "--proxy-server=127.0.0.1:9",  # no network
               f"--window-size={window_size}", f"--screenshot={png.resolve()}", html.resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if not png.is_file():
        raise RuntimeError(f"{browser} wrote no screenshot (exit {done.returncode}): {done.stderr[-800:]}")
    return png


def blankness(png: Path) -> dict[str, float]:
    """Share of pixels that are not near-white, and the grey-level spread of the screenshot."""
    import matplotlib.image

    pixels = matplotlib.image.imread(str(png))[..., :3].astype(np.float64)  # floats in [0, 1]
    grey = pixels.mean(axis=2)
    return {"height": float(grey.shape[0]), "width": float(grey.shape[1]),
            "ink": float((grey < 0.9).mean()), "std": float(grey.std()),
            "colour": float((pixels.max(axis=2) - pixels.min(axis=2) > 0.2).mean())}


def is_blank(stats: dict[str, float]) -> bool:
    # A rendered report has text, table borders and coloured plot markers; a failed load is one flat colour.
    return stats["ink"] < 0.01 or stats["std"] < 0.02 or stats["colour"] < 0.0005


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--window-size", default="1300,4000", help="WIDTH,HEIGHT of the page screenshot")
    args = parser.parse_args(argv)
    if not args.html.is_file():
        print(f"error: {args.html}: expected a report HTML file; file not found", file=sys.stderr)
        return 2
    try:
        render(args.html, args.png, args.window_size)
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stats = blankness(args.png)
    verdict = "blank" if is_blank(stats) else "not blank"
    print(f"{args.png}: {int(stats['width'])}x{int(stats['height'])}, ink {stats['ink']:.3f}, "
          f"std {stats['std']:.3f}, colour {stats['colour']:.4f}: {verdict}")
    return 1 if is_blank(stats) else 0


if __name__ == "__main__":
    raise SystemExit(main())
