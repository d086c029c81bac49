#!/usr/bin/env python
"""Render executed notebooks to HTML (nbconvert) and screenshot each page with headless Chromium,
so a person can look at what a reader sees.

    python scripts/render_notebooks.py                       # outputs/runs/latest/*.ipynb -> outputs/screenshots/
    python scripts/render_notebooks.py path/to/*.ipynb --out shots/ --width 1280

Each notebook gives ``<out>/<stem>.html`` and ``<out>/<stem>.png`` (the full page; very long pages
are cut into ``<stem>.part1.png``, ``<stem>.part2.png``, ... of at most ``--tile`` pixels).
Chromium: Debian's ``chromium`` (``apt-get update && apt-get install -y chromium`` if missing).
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEIGHT_ID = "sflib-page-height"
# Written into the page after layout: the height a full-page screenshot needs.
HEIGHT_SCRIPT = (f'<script>window.addEventListener("load", function () {{ var d = document.createElement("div");'
                 f' d.id = "{HEIGHT_ID}"; d.textContent = String(Math.ceil(document.documentElement.scrollHeight));'
                 f' document.body.appendChild(d); }});</script>')


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("render_notebooks: no chromium found; install it with: apt-get update && apt-get install -y chromium")


def to_html(nb_path: Path, out_dir: Path) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(nb_path, as_version=4)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    html = out_dir / f"{nb_path.stem}.html"
    html.write_text(body, encoding="utf-8")
    return html


def _chromium(chrome: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [chrome, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
               "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def page_height(chrome: str, html: Path, width: int) -> int:
    """The rendered page's height at ``width`` (a script in a copy of the page writes it into the DOM)."""
    probe = html.with_name(f".{html.stem}.probe.html")
    probe.write_text(html.read_text(encoding="utf-8").replace("</body>", HEIGHT_SCRIPT + "</body>", 1), encoding="utf-8")
    try:
        res = _chromium(chrome, f"--window-size={width},1000", "--virtual-time-budget=10000", "--dump-dom",
                        probe.resolve().as_uri())
    finally:
        probe.unlink(missing_ok=True)
    m = re.search(rf'id="{HEIGHT_ID}">(\d+)<', res.stdout)
    if not m:
        raise RuntimeError(f"could not measure {html.name}: chromium said {res.stderr.strip()[-300:]!r}")
    return int(m.group(1))


def screenshot(chrome: str, html: Path, out_png: Path, width: int, height: int, tile: int) -> list[Path]:
    """Full-page screenshot(s): one PNG, or tiles of at most ``tile`` pixels for very long pages."""
    if height <= tile:
        offsets, names = [0], [out_png]
    else:
        offsets = list(range(0, height, tile))
        names = [out_png.with_name(f"{out_png.stem}.part{i + 1}.png") for i in range(len(offsets))]
    done = []
    text = html.read_text(encoding="utf-8")
    for off, name in zip(offsets, names):
        h = min(tile, height - off)
        page = html
        if off:
            page = html.with_name(f".{html.stem}.{off}.html")
            shift = f"<style>body {{ position: relative; top: -{off}px; }}</style>"
            page.write_text(text.replace("</head>", shift + "</head>", 1), encoding="utf-8")
        try:
            res = _chromium(chrome, f"--window-size={width},{h}", "--virtual-time-budget=10000",
                            f"--screenshot={name.resolve()}", page.resolve().as_uri())
        finally:
            if page != html:
                page.unlink(missing_ok=True)
        if not name.exists():
            raise RuntimeError(f"no screenshot of {html.name}: chromium said {res.stderr.strip()[-300:]!r}")
        done.append(name)
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", help="executed notebooks (default: outputs/runs/latest/*.ipynb)")
    ap.add_argument("--out", default=None, help="folder for the HTML and PNGs (default: outputs/screenshots/)")
    ap.add_argument("--width", type=int, default=1280, help="window width in pixels (default 1280)")
    ap.add_argument("--tile", type=int, default=12000, help="longest single screenshot in pixels (default 12000)")
    args = ap.parse_args(argv)

    outputs = Path(os.environ.get("SFLIB_OUTPUTS", ROOT / "outputs"))
    patterns = args.notebooks or [str(outputs / "runs" / "latest" / "*.ipynb")]
    notebooks = sorted({Path(p) for pat in patterns for p in (glob.glob(pat) or ([pat] if Path(pat).exists() else []))})
    if not notebooks:
        print(f"render_notebooks: no notebooks match {' '.join(patterns)} (run ./run_all.sh first)", file=sys.stderr)
        return 1
    out_dir = Path(args.out) if args.out else outputs / "screenshots"
    out_dir.mkdir(parents=True, exist_ok=True)
    chrome = find_chromium()
    failed = 0
    for nb in notebooks:
        try:
            html = to_html(nb, out_dir)
            height = page_height(chrome, html, args.width)
            shots = screenshot(chrome, html, out_dir / f"{nb.stem}.png", args.width, height, args.tile)
            print(f"{nb.name}: {height} px -> {', '.join(p.name for p in shots)}")
        except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
            failed += 1
            print(f"{nb.name}: not rendered: {e}", file=sys.stderr)
    print(f"{len(notebooks) - failed} of {len(notebooks)} notebooks rendered into {out_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
