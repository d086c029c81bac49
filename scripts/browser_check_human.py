#!/usr/bin/env python
"""The real-browser check of notebook 08, by hand: runs tests/test_human_browser.py (the same test CI runs) with
its screenshots kept.

JupyterLab on 127.0.0.1 + headless Debian Chromium (Selenium): an annotator opens notebook 08, annotates with
clicks and keys (a fast burst of 10 keys included), skips, revisits, undoes, closes and reopens it; the store
is checked after every step, and the widget is photographed at 1280×800 and 1920×1080.

Needs ``apt-get install -y chromium chromium-driver`` and the ``test`` extra (selenium). From the repository root::

    python scripts/browser_check_human.py --screenshots outputs/browser_check_human
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--screenshots", default=str(ROOT / "outputs" / "browser_check_human"),
                    help="folder for the PNG screenshots (default outputs/browser_check_human)")
    args = ap.parse_args()
    env = dict(os.environ, SFLIB_BROWSER_SHOTS=str(Path(args.screenshots).resolve()), CI="true",  # never skip
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    status = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              str(ROOT / "tests" / "test_human_browser.py")], cwd=ROOT, env=env)
    print(f"screenshots: {args.screenshots}")
    return status


if __name__ == "__main__":
    sys.exit(main())
