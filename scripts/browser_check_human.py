#!/usr/bin/env python
"""A real browser check of the human-feedback notebook: JupyterLab + Debian's Chromium + Selenium.

The issue's "done when", end to end: starts JupyterLab headless on 127.0.0.1 (a random port, a random
token) in a temporary folder holding copies of ``notebooks/08_human_feedback.ipynb`` (so the repository's
notebook is never saved over; ``n_instructions = 3``: 15 responses to rate, 26 pair screens) with
``SFLIB_OUTPUTS`` pointing there (a fresh annotation store), opens it in headless Chromium, then:

1. annotator A (``browser-a``) runs all cells and answers 10 ratings and 10 pairs, half with the
   buttons and half typed into the *keys* box (one wrong click undone), the store checked after every
   action: exactly the answers given, for the task the widget showed (predicted from the queue);
2. the notebook tab is closed and its kernel shut down (REST API, as JupyterLab's "Shut Down");
3. JupyterLab opens the notebook again, runs all: both widgets resume at ``10 / N``; A answers the
   remaining 5 ratings and 6 more pairs, and the store holds every answer of both sessions;
4. annotator B (``browser-b``, a second copy of the notebook) answers 10 ratings and 10 pairs in B's own
   random order — an overlap with A — and re-runs the analysis cells: the agreement table and the
   humans-beside-the-AI-judge figure in the page;
5. outside the browser: ``sflib.human.consistency_beside_ai`` (which calls ``sflib.consistency.agreement.human_vs_ai``)
   and ``sflib.consistency.agreement.agreement_table`` on the store, printed, and the headline figure saved.

Answers are the recorded AI judge's (GPT-3.5-Turbo, vendored sample) with seeded noise, so the printed
consistency is a realistic one. A screenshot after each step. Exit status 0 when every check passed.

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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NOTEBOOK = "08_human_feedback.ipynb"
A, B = "browser-a", "browser-b"
N_INSTRUCTIONS, BOTH_ORDERS, SEED = 3, 0.2, 0
KEY = {"a": "a", "b": "b", "equal": "e"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def store_rows(path: Path, annotator: str, kind: str) -> list[tuple]:
    """(item_id, order, value, status) of an annotator's rows of one kind, oldest first."""
    if not path.exists():
        return []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tv = "human-rating-v1" if kind == "ratings" else "human-ranking-v1"
        rows = con.execute("SELECT value, status, meta FROM annotations WHERE judge = ? AND template_version = ? "
                           "ORDER BY created_at", (f"human:{annotator}", tv)).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()
    out = []
    for v, s, m in rows:
        m = json.loads(m)
        out.append((m["item_id"], m["order"], None if v is None else json.loads(v), s))
    return out


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Plan:
    """What the notebook shows each annotator (the same item selection and queue as its cells) and the
    answer to give: the recorded AI judge's, with seeded noise."""

    def __init__(self):
        from sflib import human

        self.human = human
        self.material = m = human.study_material("paper")
        pairs = human.ranking_items(m["pairs"])
        chosen = list(dict.fromkeys(pairs["instruction_id"]))[:N_INSTRUCTIONS]
        ratings = human.rating_items(m["responses"])
        self.items = {"ratings": human.make_items(ratings[ratings["instruction_id"].isin(chosen)], "ratings"),
                      "rankings": human.make_items(pairs[pairs["instruction_id"].isin(chosen)], "rankings")}
        ai_r = m["ai_ratings"].dropna(subset=["score"]).drop_duplicates("response_id")
        ai_k = m["ai_rankings"].dropna(subset=["decision"]).drop_duplicates(["response_id_1", "response_id_2"])
        self.score = dict(zip(ai_r["response_id"], ai_r["score"].astype(int)))
        self.decision = dict(zip(ai_k["response_id_1"] + "-" + ai_k["response_id_2"], ai_k["decision"]))
        self.rng = {A: np.random.default_rng(1), B: np.random.default_rng(2)}

    def queue(self, annotator: str, kind: str) -> list[tuple[str, str]]:
        q = self.human.annotator_queue(self.items[kind]["item_id"], annotator, kind, seed=SEED,
                                       both_orders=BOTH_ORDERS)
        return list(zip(q["item_id"].astype(str), q["order"].astype(str)))

    def total(self, annotator: str, kind: str) -> int:
        return len(self.queue(annotator, kind))

    def next_task(self, store: Path, annotator: str, kind: str) -> tuple[str, str]:
        done = {(i, o) for i, o, _, _ in store_rows(store, annotator, kind)}
        return next(t for t in self.queue(annotator, kind) if t not in done)

    def answer(self, annotator: str, kind: str, task: tuple[str, str]):
        """A rating 1-7, or the *position* to pick (a / b / equal) in the order shown."""
        rng = self.rng[annotator]
        if kind == "ratings":
            return int(np.clip(self.score.get(task[0], 4) + rng.choice([-1, 0, 0, 0, 1]), 1, 7))
        pref = self.decision.get(task[0], "equal")
        if rng.random() < 0.2:
            pref = str(rng.choice(["a", "b", "equal"]))
        from sflib.human.feedback import to_position

        return to_position(pref, task[1])


def prepare(work: Path, annotator: str) -> str:
    """A copy of notebook 08 for ``annotator`` (quick mode, 3 instructions) in ``work``; its file name."""
    name = NOTEBOOK.replace(".ipynb", f"_{annotator}.ipynb")
    nb = json.loads((ROOT / "notebooks" / NOTEBOOK).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    src = "".join(cell["source"])
    for old, new in (('annotator = "annotator-1"', f'annotator = "{annotator}"'), ("quick = False", "quick = True"),
                     ("n_instructions = 2", f"n_instructions = {N_INSTRUCTIONS}"),
                     ("both_orders = 0.2", f"both_orders = {BOTH_ORDERS}")):
        assert old in src, f"the parameters cell of {NOTEBOOK} has no {old!r}"
        src = src.replace(old, new)
    cell["source"] = src
    (work / name).write_text(json.dumps(nb))
    return name


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
    for old in shots.glob("*.png"):
        old.unlink()
    work = Path(tempfile.mkdtemp(prefix="sflib-browser-"))
    nb_a, nb_b = prepare(work, A), prepare(work, B)
    store = work / "outputs" / "annotations.sqlite"
    os.environ["SFLIB_OUTPUTS"] = str(work / "outputs")  # the items the notebook's kernel sees, here too
    plan = Plan()
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
                            f"--LabApp.user_settings_dir={work / 'lab-user-settings'}",
                            f"--LabApp.workspaces_dir={work / 'workspaces'}"],
                           env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    driver = None
    results: list[str] = []
    n = {"shot": 0}
    expected: dict[tuple[str, str], list[tuple]] = {(w, k): [] for w in (A, B) for k in ("ratings", "rankings")}

    def shot(name: str) -> None:
        n["shot"] += 1
        path = shots / f"{n['shot']:02d}_{name}.png"
        driver.save_screenshot(str(path))
        results.append(f"screenshot {path.name}")

    def js(code: str):
        return driver.execute_script(code)

    def api(method: str, path: str):
        req = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def open_notebook(name: str) -> None:
        driver.get(f"{base}/lab/tree/{name}?token={token}")
        wait_for(lambda: js("return !!(window.jupyterapp && jupyterapp.shell.currentWidget && "
                            "jupyterapp.shell.currentWidget.context && "
                            f"jupyterapp.shell.currentWidget.context.path === '{name}' && "
                            "jupyterapp.shell.currentWidget.sessionContext.session && "
                            "jupyterapp.shell.currentWidget.sessionContext.session.kernel)"), args.timeout,
                 f"{name} and its kernel")
        # keep the errors the kernel reports for widget messages (a click or key whose callback failed)
        js("window._kernel_errors = window._kernel_errors || [];"
           "jupyterapp.shell.currentWidget.sessionContext.session.kernel.iopubMessage.connect((_, m) => {"
           "if (m.header.msg_type === 'error' && (m.parent_header || {}).msg_type === 'comm_msg')"
           " window._kernel_errors.push(m.content.ename + ': ' + m.content.evalue); });")

    def run_all() -> None:
        """Run all cells once the notebook, its session and its kernel are ready (retried if nothing ran)."""
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
                break
            except AssertionError:
                results.append(f"run-all attempt {attempt + 1} did not start; retrying")
        else:
            raise AssertionError("JupyterLab did not run the cells")
        for k in ("ratings", "rankings"):
            wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, f".sf-annotator-{k} .sf-progress"), args.timeout,
                     f"the {k} widget to render")
        for b in driver.find_elements(By.XPATH, "//div[contains(@class,'Toastify')]//button[normalize-space()='No']"):
            try:
                b.click()
            except Exception:
                pass

    def close_and_shut_down(name: str) -> None:
        """Close the notebook's tab (discarding unsaved outputs) and shut its kernel down."""
        js("const w = jupyterapp.shell.currentWidget; w.context.model.dirty = false; w.close();")
        wait_for(lambda: not js("return Array.from(jupyterapp.shell.widgets('main')).some("
                                f"w => w.context && w.context.path === '{name}')"), 30, f"{name}'s tab to close")
        sessions = [x for x in api("GET", "/api/sessions") if x["path"].endswith(name)]
        for x in sessions:
            api("DELETE", f"/api/sessions/{x['id']}")
        gone = {x["kernel"]["id"] for x in sessions}
        wait_for(lambda: not gone & {k["id"] for k in api("GET", "/api/kernels")}, 30, "the kernel to shut down")
        results.append(f"{name}: tab closed, kernel {', '.join(sorted(gone))[:8]}... shut down")

    def css(selector: str):
        return driver.find_element(By.CSS_SELECTOR, selector)

    def progress(kind: str) -> str:
        return css(f".sf-annotator-{kind} .sf-progress").text

    def act(who: str, kind: str, value, via: str) -> None:
        """Give ``value`` (a score, or a position a / b / equal) with a button click or the keys box."""
        if via == "click":
            cls = f"sf-rate-{value}" if kind == "ratings" else f"sf-choice-{value}"
            el = css(f".sf-annotator-{kind} .{cls}")
        else:
            el = css(f".sf-annotator-{kind} .sf-keys input")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
        wait_for(lambda: el.is_enabled(), 10, "an enabled control")
        el.click()
        if via == "key":
            el.send_keys(str(value) if kind == "ratings" else KEY[value])

    def annotate(who: str, kind: str, count: int) -> None:
        """``count`` answers, alternating buttons and keys; the store checked after each."""
        rows = expected[(who, kind)]
        for i in range(count):
            task = plan.next_task(store, who, kind)
            value = plan.answer(who, kind, task)
            act(who, kind, value, "click" if i % 2 == 0 else "key")
            rows.append((task[0], task[1], value, "ok"))
            wait_for(lambda: store_rows(store, who, kind) == rows, 20,
                     f"{who}'s {kind} answer {len(rows)} ({value!r} for {task}) in the store")
            wait_for(lambda: progress(kind).startswith(f"{len(rows)} /"), 10, f"the widget to show {len(rows)} done")
        done = len(rows)
        wait_for(lambda: progress(kind).startswith(f"{done} /"), 10, f"{kind} progress {done}")
        results.append(f"{who} {kind}: {count} answers ({(count + 1) // 2} clicks, {count // 2} keys) -> store "
                       f"has {done}; widget '{progress(kind)}'")

    def undo_check(who: str, kind: str) -> None:
        """A wrong click, then Undo: the store is back to what it was."""
        before = store_rows(store, who, kind)
        task = plan.next_task(store, who, kind)
        wrong = 1 if kind == "ratings" else "equal"
        act(who, kind, wrong, "click")
        wait_for(lambda: len(store_rows(store, who, kind)) == len(before) + 1, 20, "the wrong answer in the store")
        el = css(f".sf-annotator-{kind} .sf-undo")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
        el.click()
        wait_for(lambda: store_rows(store, who, kind) == before, 20, "undo removing the wrong answer")
        assert plan.next_task(store, who, kind) == task
        results.append(f"{who} {kind}: wrong click {wrong!r} then Undo -> store back to {len(before)} answers")

    def view(selector: str) -> None:
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", css(selector))
        time.sleep(0.5)

    totals = {k: plan.total(A, k) for k in ("ratings", "rankings")}
    try:
        wait_for(lambda: _up(f"{base}/api/status?token={token}"), 60, "JupyterLab to start")
        opts = webdriver.ChromeOptions()
        opts.binary_location = args.chromium
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1600",
                  "--disable-gpu"):
            opts.add_argument(a)
        driver = webdriver.Chrome(service=Service(args.chromedriver), options=opts)

        # 1. annotator A: 10 ratings and 10 pairs
        open_notebook(nb_a)
        run_all()
        assert progress("ratings") == f"0 / {totals['ratings']} done (0 answered, 0 skipped)", progress("ratings")
        view(".sf-annotator-ratings")
        shot("A_ratings_widget_rendered")
        annotate(A, "ratings", 4)
        undo_check(A, "ratings")
        annotate(A, "ratings", 6)
        view(".sf-annotator-ratings")
        shot("A_after_10_ratings")
        annotate(A, "rankings", 10)
        view(".sf-annotator-rankings")
        shot("A_after_10_pairs")

        # 2. close the tab, shut the kernel down; 3. reopen: the widgets resume, A continues
        close_and_shut_down(nb_a)
        open_notebook(nb_a)
        run_all()
        wait_for(lambda: progress("ratings").startswith(f"10 / {totals['ratings']}"), args.timeout,
                 "ratings to resume at 10")
        wait_for(lambda: progress("rankings").startswith(f"10 / {totals['rankings']}"), 30, "rankings to resume at 10")
        assert all(store_rows(store, A, k) == expected[(A, k)] for k in ("ratings", "rankings"))
        results.append(f"reopened + run all -> ratings '{progress('ratings')}', rankings '{progress('rankings')}'; "
                       "store unchanged (every earlier answer kept)")
        view(".sf-annotator-ratings")
        shot("A_reopened_resumes_at_10")
        annotate(A, "ratings", totals["ratings"] - 10)
        annotate(A, "rankings", 6)
        assert "All" in css(".sf-annotator-ratings").text and "tasks done" in css(".sf-annotator-ratings").text
        view(".sf-annotator-rankings")
        shot("A_continued_ratings_done_16_pairs")
        close_and_shut_down(nb_a)

        # 4. annotator B: an overlapping set, then the notebook's own analysis cells again
        open_notebook(nb_b)
        run_all()
        annotate(B, "ratings", 10)
        annotate(B, "rankings", 10)
        view(".sf-annotator-rankings")
        shot("B_after_10_ratings_10_pairs")
        png = work / "figures" / "08_human_vs_ai.png"
        wait_for(lambda: png.exists(), args.timeout, "the first run's figure")
        t0 = png.stat().st_mtime
        js("const nb = jupyterapp.shell.currentWidget.content; nb.activeCellIndex = nb.widgets.findIndex("
           "c => c.model.sharedModel.getSource().includes('annotator_summary(store)'));"
           "jupyterapp.commands.execute('notebook:run-all-below');")
        wait_for(lambda: png.exists() and png.stat().st_mtime > t0, args.timeout, "the analysis cells to run again")
        wait_for(lambda: "Analysed below: human annotators" in driver.find_element(By.TAG_NAME, "body").text, 30,
                 "the analysis of the human answers (not the simulated ones)")
        page = driver.find_element(By.TAG_NAME, "body").text
        assert "SIMULATED" not in page.split("Analysed below")[1][:200], "the analysis used simulated answers"
        results.append("B's notebook re-ran the analysis: 'Analysed below: human annotators' (browser-a, browser-b)")
        js("const nb = jupyterapp.shell.currentWidget.content; const i = nb.widgets.findIndex("
           "c => c.model.sharedModel.getSource().includes('agreement.agreement_table')); nb.activeCellIndex = i;"
           "nb.scrollToCell(nb.widgets[i]);")
        time.sleep(1)
        shot("B_notebook_agreement_table")
        js("const nb = jupyterapp.shell.currentWidget.content; const i = nb.widgets.findIndex("
           "c => c.model.sharedModel.getSource().includes('save_figure')); nb.activeCellIndex = i;"
           "nb.scrollToCell(nb.widgets[i]);")
        figure = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".jp-RenderedImage img"), 30,
                          "the figure in the page")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", figure[-1])
        time.sleep(1)
        shot("B_notebook_humans_vs_ai_figure")
        close_and_shut_down(nb_b)
        for who in (A, B):
            for k in ("ratings", "rankings"):
                assert store_rows(store, who, k) == expected[(who, k)], f"{who} {k}: the store differs"
        results.append("store holds every answer: " + ", ".join(
            f"{w} {k} {len(expected[(w, k)])}" for w in (A, B) for k in ("ratings", "rankings")))
        status = 0
    except Exception as e:  # report, keep a screenshot of the state, fail
        print(f"FAILED: {type(e).__name__}: {e}")
        if driver is not None:
            shot("failure")
            for err in js("return window._kernel_errors || []"):  # errors of widget callbacks in the kernel
                print("   kernel error:", err)
            try:  # what each cell did, for the report
                cells = js("return jupyterapp.shell.currentWidget.content.widgets.filter(c => c.model.type === 'code')"
                           ".map(c => [c.model.executionCount, JSON.stringify(c.model.toJSON().outputs).slice(0, 600)])")
                for count, out in cells:
                    print(f"   cell [{count}]: {out}")
            except Exception as e2:
                print("   (could not read the cells:", e2, ")")
        status = 1
    finally:
        if driver is not None:
            driver.quit()
        os.killpg(lab.pid, signal.SIGTERM)
        try:
            lab.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
        log.close()
    for line in results:
        print(" -", line)
    if status == 0:
        status = report(store, plan, shots)
    print(f"store: {store}\nJupyterLab log: {work / 'jupyterlab.log'}\nscreenshots: {shots}")
    return status


def report(store: Path, plan: Plan, shots: Path) -> int:
    """5. The headline table and the agreement from the store, as notebook 04 shows them."""
    import pandas as pd

    from sflib.consistency import agreement
    from sflib import human, plots

    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    m = plan.material
    table, fig, note = human.consistency_beside_ai(store, m["ai_ratings"], m["ai_rankings"], ai_name=m["ai_name"],
                                                   bootstrap=1000, seed=0)
    print("\nhuman.consistency_beside_ai(store, ai_ratings, ai_rankings)  [calls agreement.human_vs_ai]:")
    print(table[["judge", "who", "pairs", "n_compared", "consistency", "ci_low", "ci_high", "kappa"]]
          .round(3).to_string(index=False))
    print("\nagreement on the overlap (A · B):")
    print(table.attrs["agreement"].round(3).to_string(index=False))
    print("\nnote:\n" + note)
    humans = table[table["who"] == "human"]
    ok = {A, B} <= set(humans["judge"]) and (humans["n_compared"] > 0).all()
    agree = table.attrs["agreement"]
    ok = ok and len(agree) > 0 and (agree["n_items"] > 0).all() and fig is not None and len(fig.axes) == 2
    saved = plots.save_figure(fig, f"{len(list(shots.glob('*.png'))) + 1:02d}_consistency_beside_ai", shots)
    print("figure:", saved[0].name)
    print("OK: every browser check passed" if ok else "FAILED: the headline table or the agreement is missing")
    return 0 if ok else 1


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
