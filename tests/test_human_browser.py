"""Notebook 08 in a real browser: JupyterLab on 127.0.0.1 driven by headless Debian Chromium (Selenium).

An annotator opens a copy of notebook 08 (3 instructions: 15 responses to rate, 26 pair screens), runs all
cells and annotates as a person would — buttons, the keys box, a fast burst of 10 keys, skip, revisit the
skipped item, undo twice — then closes the notebook (tab closed, kernel shut down), reopens it and goes on.
The annotation store is read after every step and must hold exactly the answers given, for the items the
widget showed (predicted from the annotator's queue), in order. Screenshots of the widget at 1280×800 and
1920×1080 go to ``$SFLIB_BROWSER_SHOTS`` (default: a temporary folder); at 1280×800 the instruction, the
response, the buttons and the progress must all be inside the window.

Needs ``apt-get install chromium chromium-driver`` (``.ci/run`` does it) and selenium (the ``test`` extra).
In CI (``CI`` set) a missing browser is a failure; elsewhere the test is skipped.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "08_human_feedback.ipynb"
WHO, N_INSTRUCTIONS, BOTH_ORDERS, SEED = "browser-a", 3, 0.2, 0
TIMEOUT = 120


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for exe in ("chromium", "chromedriver"):
        if not shutil.which(exe):
            return f"{exe} is not installed (apt-get install chromium chromium-driver; .ci/run does it)"
    return None


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def store_rows(path: Path, kind: str) -> list[tuple]:
    """(item_id, order, value, status, latency_s) of the annotator's rows of ``kind``, oldest first."""
    if not path.exists():
        return []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tv = "human-rating-v1" if kind == "ratings" else "human-ranking-v1"
        rows = con.execute("SELECT value, status, meta, latency_s FROM annotations WHERE judge = ? AND "
                           "template_version = ? ORDER BY created_at", (f"human:{WHO}", tv)).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()
    return [(json.loads(m)["item_id"], json.loads(m)["order"], None if v is None else json.loads(v), s, lat)
            for v, s, m, lat in rows]


def comments(path: Path) -> dict[str, str]:
    """item_id -> the comment stored with the annotator's rating."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        metas = [json.loads(m) for (m,) in con.execute("SELECT meta FROM annotations WHERE judge = ?", (f"human:{WHO}",))]
    finally:
        con.close()
    return {m["item_id"]: m.get("comment", "") for m in metas}


def answers(path: Path, kind: str) -> list[tuple]:
    return [r[:4] for r in store_rows(path, kind)]


def prepare(work: Path) -> str:
    """A copy of notebook 08 for the test's annotator (quick, 3 instructions): its parameters set as papermill
    would, by a cell after the parameters cell."""
    nb = json.loads((ROOT / "notebooks" / NOTEBOOK).read_text())
    at = next(i for i, c in enumerate(nb["cells"]) if "parameters" in c.get("metadata", {}).get("tags", []))
    params = (f'annotator = "{WHO}"\nquick = True\nn_instructions = {N_INSTRUCTIONS}\n'
              f"both_orders = {BOTH_ORDERS}\nseed = {SEED}\n")
    nb["cells"].insert(at + 1, {"cell_type": "code", "id": "injected-parameters", "execution_count": None,
                                "metadata": {"tags": ["injected-parameters"]}, "outputs": [], "source": params})
    (work / NOTEBOOK).write_text(json.dumps(nb))
    return NOTEBOOK


class Lab:
    """JupyterLab on 127.0.0.1 (random port and token) in ``work``, and a headless Chromium on it."""

    def __init__(self, work: Path, shots: Path):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.work, self.shots = work, shots
        settings = work / "lab-user-settings" / "@jupyterlab"
        for ext, value in (("notebook-extension/tracker", {"windowingMode": "none"}),
                           ("apputils-extension/notification", {"fetchNews": "false", "checkForUpdates": False})):
            (settings / ext).parent.mkdir(parents=True, exist_ok=True)
            (settings / f"{ext}.jupyterlab-settings").write_text(json.dumps(value))
        env = dict(os.environ, SFLIB_OUTPUTS=str(work / "outputs"), SFLIB_FIGURES=str(work / "figures"),
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{port}"
        self.log = open(work / "jupyterlab.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={work}", "--allow-root",
             "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={work / 'lab-user-settings'}",
             f"--LabApp.workspaces_dir={work / 'workspaces'}"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.driver = None
        wait_for(self._up, 60, "JupyterLab to start", 0.5)
        opts = webdriver.ChromeOptions()
        opts.binary_location = shutil.which("chromium")
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                  "--window-size=1280,800"):
            opts.add_argument(a)
        self.driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
        self.viewport(1280, 800)

    def viewport(self, width: int, height: int) -> None:
        """The page's viewport exactly ``width``×``height`` CSS pixels (the size of a screen of that resolution)."""
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                    {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def _up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/api/status?token={self.token}", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, method: str, path: str):
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def js(self, code: str, *args):
        return self.driver.execute_script(code, *args)

    def close(self) -> None:
        if self.driver is not None:
            self.driver.quit()
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()

    def diagnose(self) -> None:
        """After a failure: a screenshot, the kernel's errors in widget handlers, each cell's output, the server log."""
        try:
            print("failure screenshot:", self.shot("failure"))
            for err in self.js("return window._kernel_errors || []"):
                print("kernel error in a widget handler:", err)
            cells = self.js("const w = jupyterapp.shell.currentWidget; return !w || !w.content ? [] : "
                            "w.content.widgets.filter(c => c.model.type === 'code')"
                            ".map(c => [c.model.executionCount, JSON.stringify(c.model.toJSON().outputs).slice(0, 400)])")
            for count, out in cells:
                print(f"cell [{count}]: {out}")
        except Exception as e:  # the browser itself may be the problem
            print("could not read the page:", e)
        self.log.flush()
        print("JupyterLab log (end):\n" + (self.work / "jupyterlab.log").read_text()[-3000:])

    # ------------------------------------------------------------------ the notebook
    def open_and_run_all(self, name: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.get(f"{self.base}/lab/tree/{name}?token={self.token}")
        wait_for(lambda: self.js("const w = window.jupyterapp && jupyterapp.shell.currentWidget; return !!(w && "
                                 f"w.context && w.context.path === '{name}' && w.sessionContext.session && "
                                 "w.sessionContext.session.kernel)"), TIMEOUT, f"{name} and its kernel")
        # keep the errors the kernel reports for widget messages (a key or click whose handler failed)
        self.js("window._kernel_errors = window._kernel_errors || [];"
                "jupyterapp.shell.currentWidget.sessionContext.session.kernel.iopubMessage.connect((_, m) => {"
                "if (m.header.msg_type === 'error' && (m.parent_header || {}).msg_type === 'comm_msg')"
                " window._kernel_errors.push(m.content.ename + ': ' + m.content.evalue); });")
        for attempt in range(3):
            self.driver.execute_async_script(
                "const done = arguments[arguments.length - 1]; const w = jupyterapp.shell.currentWidget;"
                "Promise.all([w.context.ready, w.sessionContext.ready]).then(() => done(true));")
            wait_for(lambda: self.js("return jupyterapp.shell.currentWidget.sessionContext.session.kernel.status")
                     == "idle", TIMEOUT, "an idle kernel")
            self.js("jupyterapp.commands.execute('notebook:run-all-cells')")
            try:
                wait_for(lambda: self.js("const c = jupyterapp.shell.currentWidget.content.widgets"
                                         ".filter(c => c.model.type === 'code')[1];"
                                         "return c.model.executionCount !== null || c.node.innerText.includes('[*]');"),
                         30, "the cells to start running")
                break
            except AssertionError:
                continue
        else:
            raise AssertionError("JupyterLab did not run the cells")
        for k in ("ratings", "rankings"):
            wait_for(lambda: self.driver.find_elements(By.CSS_SELECTOR, f".sf-annotator-{k} .sf-progress"),
                     TIMEOUT, f"the {k} widget")
        # the whole notebook ran (the analysis cells below the widgets too)
        wait_for(lambda: self.js("return jupyterapp.shell.currentWidget.sessionContext.session.kernel.status")
                 == "idle", TIMEOUT, "Run All to finish")

    def close_and_shut_down(self, name: str) -> None:
        self.js("const w = jupyterapp.shell.currentWidget; w.context.model.dirty = false; w.close();")
        wait_for(lambda: not self.js("return Array.from(jupyterapp.shell.widgets('main')).some("
                                     f"w => w.context && w.context.path === '{name}')"), 30, "the tab to close")
        sessions = [x for x in self.api("GET", "/api/sessions") if x["path"].endswith(name)]
        for x in sessions:
            self.api("DELETE", f"/api/sessions/{x['id']}")
        gone = {x["kernel"]["id"] for x in sessions}
        wait_for(lambda: not gone & {k["id"] for k in self.api("GET", "/api/kernels")}, 30, "the kernel to go")

    # ------------------------------------------------------------------ the widget
    def css(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def progress(self, kind: str) -> str:
        return self.css(f".sf-annotator-{kind} .sf-progress").text

    def message(self, kind: str) -> str:
        return self.css(f".sf-annotator-{kind} .sf-message").text

    def show(self, kind: str) -> None:
        """Scroll the notebook so the widget's top is at the top of the notebook area (as a person would)."""
        self.js("const el = arguments[0]; el.scrollIntoView({block: 'start'});"
                "const scroller = el.closest('.jp-WindowedPanel-outer'); if (scroller) scroller.scrollTop -= 12;",
                self.css(f".sf-annotator-{kind}"))
        time.sleep(0.3)

    def click(self, kind: str, cls: str) -> None:
        el = self.css(f".sf-annotator-{kind} .{cls}")
        wait_for(el.is_enabled, 10, f"{cls} enabled")
        el.click()

    def keys(self, kind: str, text: str) -> None:
        """Type ``text`` into the keys box in one go (Selenium sends the key events back to back)."""
        self.css(f".sf-annotator-{kind} .sf-keys").send_keys(text)

    def in_view(self, kind: str) -> dict:
        """Which parts of the widget lie wholly inside the notebook's visible area (no scrolling needed)."""
        return self.js(
            "const root = arguments[0]; const nb = jupyterapp.shell.currentWidget.content.node.getBoundingClientRect();"
            "const inside = (sel) => { const e = root.querySelector(sel); if (!e) return false;"
            "  const r = e.getBoundingClientRect();"
            "  return r.height > 0 && r.top >= nb.top && r.bottom <= nb.bottom && r.right <= nb.right; };"
            "return {instruction: inside('.sf-task-text'), response: inside('.sf-main'),"
            " buttons: inside('.sf-buttons'), skip_undo: inside('.sf-row'), comment: inside('.sf-comment'),"
            " progress: inside('.sf-progress')};", self.css(f".sf-annotator-{kind}"))

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the real-browser test cannot run in CI: {missing}")
        pytest.skip(missing)
    work = tmp_path_factory.mktemp("browser")
    shots = Path(os.environ.get("SFLIB_BROWSER_SHOTS") or work / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    prepare(work)
    lab = Lab(work, shots)
    try:
        yield lab
    finally:
        lab.close()


def _plan() -> dict:
    """Each kind's task queue, as the notebook's widget shows it (same items, annotator, seed, both_orders)."""
    from sflib import human

    items = human.notebook.select_items(human.study_material("paper"), N_INSTRUCTIONS)
    out = {}
    for kind in ("ratings", "rankings"):
        q = human.annotator_queue(items[kind]["item_id"], WHO, kind, seed=SEED, both_orders=BOTH_ORDERS)
        out[kind] = list(zip(q["item_id"].astype(str), q["order"].astype(str)))
    return out


def test_annotating_notebook_08_in_a_real_browser(lab, monkeypatch):
    try:
        _annotate_close_reopen(lab, monkeypatch)
    except Exception:
        lab.diagnose()
        raise


def _annotate_close_reopen(lab, monkeypatch):
    store = lab.work / "outputs" / "annotations.sqlite"
    monkeypatch.setenv("SFLIB_OUTPUTS", str(lab.work / "outputs"))  # the items the notebook's kernel sees
    queue = _plan()
    record = {}  # what was measured, written next to the screenshots
    R, K = queue["ratings"], queue["rankings"]
    assert len(R) == 15 and len(K) >= 20

    def expect(kind, rows, what):
        wait_for(lambda: answers(store, kind) == rows, 20, f"{what}: the store to hold {rows[-3:]}… ({len(rows)} rows)")

    lab.open_and_run_all(NOTEBOOK)
    wait_for(lambda: lab.progress("ratings") == "0 / 15 done (0 answered, 0 skipped)", 20, "the ratings widget")
    wait_for(lambda: "no answers yet — annotate above, then run the cells below" in
             lab.js("return document.body.innerText"), TIMEOUT, "the analysis cells' 'no answers yet'")

    # the screen: at 1280×800 the instruction, the response, the buttons and the progress without scrolling
    lab.show("ratings")
    seen = lab.in_view("ratings")
    lab.shot("1280x800_ratings")
    record["1280x800 ratings: inside the visible area"] = seen
    assert all(seen.values()), seen
    lab.show("rankings")
    seen_pair = lab.in_view("rankings")
    lab.shot("1280x800_rankings")
    record["1280x800 rankings: inside the visible area"] = seen_pair
    assert all(seen_pair.values()), seen_pair
    lab.viewport(1920, 1080)
    lab.show("ratings")
    assert all(lab.in_view("ratings").values())
    lab.shot("1920x1080_ratings")
    lab.show("rankings")
    lab.shot("1920x1080_rankings")
    lab.viewport(1280, 800)
    lab.show("ratings")

    # ratings: two clicks, a skip, one key, then a burst of 10 keys
    time.sleep(1.0)  # the first task is on screen a while: its latency is measured from when it was shown
    rows = []
    lab.click("ratings", "sf-rate-6")
    rows.append((R[0][0], "", 6, "ok"))
    expect("ratings", rows, "a click")
    record["first rating latency_s (answered after 1 s)"] = round(store_rows(store, "ratings")[0][4], 3)
    assert store_rows(store, "ratings")[0][4] >= 0.9  # latency: about the second it was on screen
    # the store is written before the widget's message reaches the browser: wait for the message too
    wait_for(lambda: lab.message("ratings").startswith(f"saved task 1 of 15 (item {R[0][0][:12]}): Score: 6"), 10,
             "the 'saved task 1' message")
    lab.css(".sf-annotator-ratings .sf-comment").send_keys("too long 1234 asub")  # typing here answers nothing
    time.sleep(0.3)
    assert answers(store, "ratings") == rows
    lab.click("ratings", "sf-rate-3")
    rows.append((R[1][0], "", 3, "ok"))
    expect("ratings", rows, "a second click, with a comment")
    assert comments(store)[R[1][0]] == "too long 1234 asub"
    wait_for(lambda: lab.css(".sf-annotator-ratings .sf-comment").get_attribute("value") == "", 10,
             "the comment box emptied")
    lab.click("ratings", "sf-skip")
    rows.append((R[2][0], "", None, "invalid"))
    expect("ratings", rows, "Skip")
    wait_for(lambda: "Revisit skipped" in lab.message("ratings"), 10, "the 'Revisit skipped' message")
    # after a click the keys box has the focus: keys typed now are answers
    wait_for(lambda: lab.js("return document.activeElement.classList.contains('sf-keys')"), 10,
             "the keys box to have the focus")
    lab.keys("ratings", "5")
    rows.append((R[3][0], "", 5, "ok"))
    expect("ratings", rows, "a key")
    burst = "1234567123"
    t0 = time.time()
    lab.keys("ratings", burst)
    typed = time.time() - t0
    rows += [(R[4 + i][0], "", int(k), "ok") for i, k in enumerate(burst)]
    expect("ratings", rows, "a burst of 10 keys")  # 10 answers, in order, each for the task it followed
    stored = store_rows(store, "ratings")[-10:]
    record["burst of 10 keys"] = {"keys": burst, "typed_in_s": round(typed, 3),
                                  "all_stored_after_s": round(time.time() - t0, 3),
                                  "stored_values_in_order": [r[2] for r in stored],
                                  "latency_s": [round(r[4], 3) for r in stored]}
    assert all(0 <= r[4] < 10 for r in stored)
    wait_for(lambda: lab.progress("ratings") == "14 / 15 done (13 answered, 1 skipped)", 10, "progress 14 / 15")

    # undo twice (key, then button): the two latest answers go, the latest task is back
    lab.keys("ratings", "u")
    expect("ratings", rows[:-1], "undo by key")
    lab.click("ratings", "sf-undo")
    expect("ratings", rows[:-2], "undo by button")
    wait_for(lambda: lab.message("ratings").startswith(f"undone task 13 of 15 (item {R[12][0][:12]})"), 10,
             "the 'undone task 13' message")
    rows = rows[:-2]
    lab.keys("ratings", "44")
    rows += [(R[12][0], "", 4, "ok"), (R[13][0], "", 4, "ok")]
    expect("ratings", rows, "answering again after undo")

    # revisit the skipped task (key r) and answer it: the skip is replaced
    lab.keys("ratings", "r")
    wait_for(lambda: "showing skipped task 3 of 15" in lab.message("ratings"), 10, "the skipped task shown again")
    lab.click("ratings", "sf-rate-2")
    rows = [r for r in rows if r[0] != R[2][0]] + [(R[2][0], "", 2, "ok")]
    expect("ratings", rows, "the revisited task answered")
    wait_for(lambda: lab.progress("ratings") == "14 / 15 done (14 answered, 0 skipped)", 10, "progress after revisit")
    lab.shot("1280x800_ratings_after_burst_undo_revisit")

    # rankings: clicks and keys
    lab.show("rankings")
    pairs = []
    for n, (via, value) in enumerate([("click", "a"), ("key", "b"), ("click", "equal"), ("key", "e"), ("key", "a")]):
        if via == "click":
            lab.click("rankings", f"sf-choice-{value}")
        else:
            lab.keys("rankings", value)
        pairs.append((K[n][0], K[n][1], {"e": "equal"}.get(value, value), "ok"))
        expect("rankings", pairs, f"pair {n + 1} ({via})")

    # close the notebook (tab closed, kernel shut down), reopen it: both widgets resume, nothing lost
    lab.close_and_shut_down(NOTEBOOK)
    assert answers(store, "ratings") == rows and answers(store, "rankings") == pairs
    lab.open_and_run_all(NOTEBOOK)
    wait_for(lambda: lab.progress("ratings") == "14 / 15 done (14 answered, 0 skipped)", 20, "ratings resumed")
    wait_for(lambda: lab.progress("rankings").startswith(f"5 / {len(K)} done"), 20, "rankings resumed")
    # the analysis reads the answers given (its cell runs after the widgets' cells: wait for its output)
    wait_for(lambda: "Analysed below: human annotators" in lab.js("return document.body.innerText"), TIMEOUT,
             "the analysis of the answers given")
    lab.show("ratings")
    lab.keys("ratings", "7")
    rows.append((R[14][0], "", 7, "ok"))
    expect("ratings", rows, "the last rating after reopening")
    wait_for(lambda: "All 15 tasks done" in lab.css(".sf-annotator-ratings").text, 10, "the done screen")
    lab.click("ratings", "sf-undo")  # undo reaches across the restart too
    expect("ratings", rows[:-1], "undo after reopening")
    lab.show("rankings")
    lab.keys("rankings", "ab")
    pairs += [(K[5][0], K[5][1], "a", "ok"), (K[6][0], K[6][1], "b", "ok")]
    expect("rankings", pairs, "pairs after reopening")
    lab.shot("1280x800_rankings_after_reopen")
    lab.close_and_shut_down(NOTEBOOK)
    assert answers(store, "ratings") == rows[:-1] and answers(store, "rankings") == pairs
    record["store at the end"] = {"ratings": len(rows) - 1, "rankings": len(pairs)}
    (lab.shots / "browser_check.json").write_text(json.dumps(record, indent=1))
