#!/usr/bin/env python
"""A real browser check of the human-feedback notebook: JupyterLab + Debian's Chromium + Selenium.

Starts JupyterLab headless on 127.0.0.1 (a random port, a random token) in a temporary folder that
holds a copy of ``notebooks/08_human_feedback.ipynb`` (so the repository's notebook is never saved
over) with ``SFLIB_OUTPUTS`` pointing there (so the annotation store is a fresh temporary file), opens
the notebook in headless Chromium, runs all cells, then:

1. clicks the rating buttons 5 and 3, checking after each click that the answer is in the store;
2. clicks Undo (the 3 must leave the store) and types ``6`` in the keys box (a keyboard answer);
3. clicks "Output (a) is better" on the first pair and Equal on the second;
4. restarts the kernel, runs all cells again and checks the widget resumes (progress ``2 / N``);

taking a screenshot after each step. Exit status 0 when every check passed.

Needs: ``apt-get install -y chromium chromium-driver`` and ``pip install selenium`` (the ``browser``
extra). Run from the repository root::

    python scripts/browser_check_human.py --screenshots outputs/browser_check_human
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "08_human_feedback.ipynb"
JUDGE = "human:browser-check"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def store_rows(path: Path, kind: str) -> list[tuple]:
    """(value, status, order) of the check annotator's rows of one kind, oldest first."""
    if not path.exists():
        return []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tv = "human-rating-v1" if kind == "ratings" else "human-ranking-v1"
        rows = con.execute("SELECT value, status, meta FROM annotations WHERE judge = ? AND template_version = ? "
                           "ORDER BY created_at", (JUDGE, tv)).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()
    return [(None if v is None else json.loads(v), s, json.loads(m)["order"]) for v, s, m in rows]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--screenshots", default=str(ROOT / "outputs" / "browser_check_human"),
                    help="folder for the PNG screenshots (default outputs/browser_check_human)")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--chromedriver", default=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    ap.add_argument("--timeout", type=float, default=180, help="seconds to wait for the notebook to run")
    args = ap.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    shots = Path(args.screenshots)
    shots.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sflib-browser-"))
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, work / NOTEBOOK)
    # the check's annotator name, a small item list, few bootstrap resamples: edit the parameters cell
    nb = json.loads((work / NOTEBOOK).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    src = "".join(cell["source"])
    src = src.replace('annotator = "annotator-1"', f'annotator = "{JUDGE.split(":")[1]}"').replace(
        "quick = False", "quick = True")
    cell["source"] = src
    (work / NOTEBOOK).write_text(json.dumps(nb))
    store = work / "outputs" / "annotations.sqlite"
    # JupyterLab settings for the check: render every cell (no virtual scrolling), no news pop-up
    settings = work / "lab-user-settings" / "@jupyterlab"
    for ext, value in (("notebook-extension/tracker", {"windowingMode": "none"}),
                       ("apputils-extension/notification", {"fetchNews": "false", "checkForUpdates": False})):
        (settings / ext).parent.mkdir(parents=True, exist_ok=True)
        (settings / f"{ext}.jupyterlab-settings").write_text(json.dumps(value))
    env = dict(os.environ, SFLIB_OUTPUTS=str(work / "outputs"), SFLIB_FIGURES=str(work / "figures"),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    port, token = free_port(), secrets.token_hex(16)
    log = open(work / "jupyterlab.log", "w")
    lab = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
                            "--LabApp.expose_app_in_browser=True", "--allow-root",
                            f"--LabApp.user_settings_dir={work / 'lab-user-settings'}"],
                           env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    driver = None
    results: list[str] = []
    n = {"shot": 0}

    def shot(name: str) -> None:
        n["shot"] += 1
        path = shots / f"{n['shot']:02d}_{name}.png"
        driver.save_screenshot(str(path))
        results.append(f"screenshot {path}")

    def js(code: str):
        return driver.execute_script(code)

    def run_all() -> None:
        """Run all cells once the notebook, its session and its kernel are ready (retried if nothing ran)."""
        wait_for(lambda: js("return !!(window.jupyterapp && jupyterapp.shell.currentWidget && "
                            "jupyterapp.shell.currentWidget.sessionContext && "
                            "jupyterapp.shell.currentWidget.sessionContext.session && "
                            "jupyterapp.shell.currentWidget.sessionContext.session.kernel)"), args.timeout,
                 "the notebook and its kernel")
        for attempt in range(3):
            driver.execute_async_script(
                "const done = arguments[arguments.length - 1]; const w = jupyterapp.shell.currentWidget;"
                "Promise.all([w.context.ready, w.sessionContext.ready]).then(() => done(true));")
            wait_for(lambda: js("return jupyterapp.shell.currentWidget.sessionContext.session.kernel.status")
                     == "idle", args.timeout, "an idle kernel")
            js("jupyterapp.commands.execute('notebook:run-all-cells')")
            try:  # the first code cell after the parameters has run (or is running)
                wait_for(lambda: js("const c = jupyterapp.shell.currentWidget.content.widgets"
                                    ".filter(c => c.model.type === 'code')[1];"
                                    "return c.model.executionCount !== null || c.node.innerText.includes('[*]');"),
                         30, "the cells to start running")
                return
            except AssertionError:
                results.append(f"run-all attempt {attempt + 1} did not start; retrying")
        raise AssertionError("JupyterLab did not run the cells")

    def dismiss_toasts() -> None:
        for b in driver.find_elements(By.XPATH, "//div[contains(@class,'Toastify')]//button[normalize-space()='No']"):
            try:
                b.click()
            except Exception:
                pass

    def css(selector: str):
        return driver.find_element(By.CSS_SELECTOR, selector)

    def click(selector: str) -> None:
        el = wait_for(lambda: (driver.find_elements(By.CSS_SELECTOR, selector) or [None])[0], 30, selector)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
        wait_for(lambda: el.is_enabled(), 10, f"{selector} enabled")
        el.click()

    def progress(kind: str) -> str:
        return css(f".sf-annotator-{kind} .sf-progress").text

    try:
        wait_for(lambda: _up(f"{base}/api/status?token={token}"), 60, "JupyterLab to start")
        opts = webdriver.ChromeOptions()
        opts.binary_location = args.chromium
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1600",
                  "--disable-gpu"):
            opts.add_argument(a)
        driver = webdriver.Chrome(service=Service(args.chromedriver), options=opts)
        driver.get(f"{base}/lab/tree/{NOTEBOOK}?token={token}")
        run_all()
        wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".sf-annotator-ratings .sf-rate-5"), args.timeout,
                 "the ratings widget to render")
        wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".sf-annotator-rankings .sf-choice-a"), 30,
                 "the rankings widget to render")
        dismiss_toasts()
        total = progress("ratings").split("/")[1].split()[0]
        assert progress("ratings").startswith("0 /"), progress("ratings")
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", css(".sf-annotator-ratings"))
        shot("ratings_widget_rendered")

        click(".sf-annotator-ratings .sf-rate-5")
        wait_for(lambda: store_rows(store, "ratings") == [(5, "ok", "")], 20, "rating 5 in the store")
        results.append("click 5 -> store has [5]")
        click(".sf-annotator-ratings .sf-rate-3")
        wait_for(lambda: [r[0] for r in store_rows(store, "ratings")] == [5, 3], 20, "rating 3 in the store")
        results.append("click 3 -> store has [5, 3]")
        wait_for(lambda: progress("ratings").startswith("2 /"), 10, "progress 2")
        shot("after_two_ratings")
        click(".sf-annotator-ratings .sf-undo")
        wait_for(lambda: [r[0] for r in store_rows(store, "ratings")] == [5], 20, "undo removing the 3")
        results.append("undo -> store has [5]")
        keys = css(".sf-annotator-ratings .sf-keys input")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", keys)
        keys.click()
        keys.send_keys("6")
        wait_for(lambda: [r[0] for r in store_rows(store, "ratings")] == [5, 6], 20, "key 6 in the store")
        results.append("key '6' typed in the keys box -> store has [5, 6]")
        shot("after_undo_and_key_6")

        click(".sf-annotator-rankings .sf-choice-a")
        wait_for(lambda: [r[0] for r in store_rows(store, "rankings")] == ["a"], 20, "pair choice a in the store")
        click(".sf-annotator-rankings .sf-choice-equal")
        wait_for(lambda: [r[0] for r in store_rows(store, "rankings")] == ["a", "equal"], 20, "equal in the store")
        orders = [r[2] for r in store_rows(store, "rankings")]
        results.append(f"pair clicks a, equal -> store has ['a', 'equal'] (shown in orders {orders})")
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", css(".sf-annotator-rankings"))
        shot("after_two_pair_choices")

        # restart the kernel and run everything again: the widgets resume where they were
        js("jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()")
        time.sleep(3)
        run_all()
        wait_for(lambda: (driver.find_elements(By.CSS_SELECTOR, ".sf-annotator-ratings .sf-progress") or [None])[0]
                 and progress("ratings").startswith("2 /"), args.timeout, "the ratings widget to resume at 2")
        wait_for(lambda: progress("rankings").startswith("2 /"), 30, "the rankings widget to resume at 2")
        results.append(f"kernel restart + run all -> ratings '{progress('ratings')}', rankings '{progress('rankings')}'")
        click(".sf-annotator-ratings .sf-rate-7")
        wait_for(lambda: [r[0] for r in store_rows(store, "ratings")] == [5, 6, 7], 20, "rating 7 after restart")
        results.append("click 7 after the restart -> store has [5, 6, 7]")
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", css(".sf-annotator-ratings"))
        shot("resumed_after_restart")
        png = work / "figures" / "08_human_vs_ai.png"
        wait_for(lambda: png.exists(), args.timeout, "the analysis cells to write the figure")
        results.append(f"analysis ran in the browser's kernel: figure {png.name} written")
        # JupyterLab renders only the cells in view: bring the figure cell into view for the screenshot
        js("const nb = jupyterapp.shell.currentWidget.content; const i = nb.widgets.findIndex("
           "c => c.model.sharedModel.getSource().includes('save_figure')); nb.activeCellIndex = i;"
           "nb.scrollToCell(nb.widgets[i]);")
        figure = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".jp-RenderedImage img"), 30,
                          "the figure in the page")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", figure[0])
        time.sleep(1)
        shot("analysis_figure")
        print(f"OK: all browser checks passed ({total} ratings tasks shown)")
        status = 0
    except Exception as e:  # report, keep a screenshot of the state, fail
        print(f"FAILED: {type(e).__name__}: {e}")
        if driver is not None:
            shot("failure")
            try:  # what each cell did, for the report
                cells = js("return jupyterapp.shell.currentWidget.content.widgets.filter(c => c.model.type === 'code')"
                           ".map(c => [c.model.executionCount, JSON.stringify(c.model.toJSON().outputs).slice(0, 600)])")
                for count, out in cells:
                    print(f"   cell [{count}]: {out}")
            except Exception as e2:
                print("   (could not read the cells:", e2, ")")
        status = 1
    finally:
        for line in results:
            print(" -", line)
        if driver is not None:
            driver.quit()
        os.killpg(lab.pid, signal.SIGTERM)
        try:
            lab.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
        log.close()
        print(f"store: {store}\nJupyterLab log: {work / 'jupyterlab.log'}\nscreenshots: {shots}")
    return status


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
