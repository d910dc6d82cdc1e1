"""TensorBoard as a user sees it: a run's dashboards rendered by headless Chromium, checked against the run.

    python benchmarks/check_tensorboard.py                     # a short demo search (4 trials), then the check
    python benchmarks/check_tensorboard.py --run runs/fm-bo    # an existing run directory (or any logdir)
    python benchmarks/check_tensorboard.py --run DIR --screenshots docs/img

It starts ``tensorboard --logdir`` on a free loopback port (127.0.0.1 only), opens the Scalars, Time Series,
HParams and Images pages in headless Chromium (``chromium``, Debian's package, started with
``--remote-debugging-pipe``: the DevTools protocol over two pipes, no network port), waits until each page has
rendered, reads its text through the shadow roots of TensorBoard's Polymer dashboards (``--dump-dom`` does not
see inside them), saves a screenshot of each, and checks that the pages hold what the run holds:

- Scalars (and Time Series): the search-level tags (``search/best_metric``, best so far by trial and by second,
  each trial's metric) and the per-trial epoch curves (``epoch/...``), and every trial run;
- HParams: one table row per finished trial (its session, ``trial-NNNN``), with the metric column;
- Images: every trial's ``architecture`` picture.

It exits 1, naming what is missing, when a dashboard is empty or lacks something ("No dashboards are active"
for an empty logdir), and 2 when Chromium or TensorBoard cannot be started.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from morphnas.storage.tensorboard import (  # noqa: E402
    ARCHITECTURE_IMAGE,
    BEST_BY_SECOND,
    BEST_BY_TRIAL,
    EPOCH_TAGS,
    HPARAM_METRIC,
    TRIAL_METRIC,
)

HOST = "127.0.0.1"  # loopback only
NO_DASHBOARDS = "No dashboards are active"  # an empty logdir (older TensorBoards)
# the text of a page, shadow roots included (TensorBoard's dashboards are Polymer elements)
DEEP_TEXT = """(() => {
  const out = [];
  const walk = (n) => {
    if (n.nodeType === 3) { out.push(n.textContent); return; }
    if (n.nodeType === 1) {
      const tag = n.tagName;
      if (tag === 'SCRIPT' || tag === 'STYLE') return;
      if (n.shadowRoot) walk(n.shadowRoot);
      if (tag === 'IFRAME') { try { walk(n.contentDocument.body); } catch (e) {} }
      if (tag === 'INPUT' && n.value) out.push(n.value);
      if (n.getAttribute && n.getAttribute('title')) out.push(n.getAttribute('title'));
    }
    for (const c of n.childNodes) walk(c);
  };
  walk(document.documentElement);
  return out.join(' ').replace(/\\s+/g, ' ');
})()"""


# ---------------------------------------------------------------------------------------------- the run
def demo_run(out: Path, trials: int) -> Path:
    """A short search on the packaged demo data with a tiny CNN; returns its run directory."""
    import morphnas

    run = morphnas.search(out=str(out), dataset="demo", max_trials=trials, max_epochs=2, batch_size=64, seed=3,
                          generator="cnn", generator_args={"filters": 8, "dense_units": 16}, max_params=30_000,
                          max_width=64, quiet=True)
    return run.path


def expected(logdir: Path) -> dict[str, Any]:
    """What the dashboards must show: trial runs (those with an hparams row), scalar tags, image tags."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer().AddRunsFromDirectory(str(logdir))
    mux.Reload()
    trials = sorted(r for r in mux.Runs() if Path(r).name.startswith("trial-"))
    scalar_tags = sorted({t for r in mux.Runs() for t in mux.Runs()[r].get("scalars", [])})
    images = sorted(r for r in trials if ARCHITECTURE_IMAGE in mux.Runs()[r].get("images", []))
    return {"trials": trials, "scalar_tags": scalar_tags, "image_runs": images}


# ---------------------------------------------------------------------------------------------- tensorboard
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start_tensorboard(logdir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("tensorboard")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tensorboard.main"]
    proc = subprocess.Popen([*cmd, "--logdir", str(logdir), "--host", HOST, "--port", str(port),
                             "--reload_interval", "0"], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tensorboard exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/data/environment", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("tensorboard did not answer within 60 s")


# ---------------------------------------------------------------------------------------------- chromium
class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``)."""

    def __init__(self, width: int = 1400, height: int = 1000) -> None:
        exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
        if exe is None:
            raise RuntimeError("no chromium found (Debian: apt-get install chromium)")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        self._profile = tempfile.mkdtemp(prefix="morphnas-chromium-")

        def fds() -> None:  # the child's fd 3 reads our commands, fd 4 writes its answers
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [exe, "--headless", "--disable-gpu", "--no-sandbox", "--remote-debugging-pipe", "--no-first-run",
             "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={self._profile}",
             f"--window-size={width},{height}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next = 0
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.resize(width, height)

    def resize(self, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, self.session)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 60) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self._next:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    return answer.get("result", {})
            if time.monotonic() > deadline:
                raise TimeoutError(f"chromium did not answer {method} within {timeout} s")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed its pipe")
            self._buffer += chunk

    def open(self, url: str) -> None:
        self.call("Page.navigate", {"url": url}, self.session)

    def text(self) -> str:
        result = self.call("Runtime.evaluate", {"expression": DEEP_TEXT, "returnByValue": True}, self.session)
        return str(result.get("result", {}).get("value", ""))

    def run_js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, self.session)
        return result.get("result", {}).get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", {"format": "png"}, self.session)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)


def wait_for(browser: Chromium, needles: list[str], empty: list[str], timeout: float) -> str:
    """The page's text once every needle is in it (or it says one of ``empty``: no data), else after ``timeout``."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = browser.text()
        if all(n in text for n in needles) or any(m in text for m in empty):
            return text
        time.sleep(0.5)
    return text


# ---------------------------------------------------------------------------------------------- the checks
def check(logdir: Path, shots: Path | None, timeout: float) -> list[str]:
    """Render the dashboards of ``logdir`` and return what is missing (empty: all there)."""
    exp = expected(logdir)
    problems: list[str] = []
    if not exp["trials"]:
        problems.append(f"{logdir} holds no trial runs (trial-NNNN)")
    search_tags = [t for t in (BEST_BY_TRIAL, BEST_BY_SECOND, TRIAL_METRIC) if t in exp["scalar_tags"]]
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="morphnas-tb-") as tmp:
        tb = start_tensorboard(logdir, port, Path(tmp) / "tensorboard.log")
        browser = Chromium()
        try:
            base = f"http://{HOST}:{port}/"
            # (page, URL fragment, what must be rendered, what TensorBoard says when it has nothing to show there);
            # TensorBoard draws only the chart groups in view, so the search's group is checked filtered
            pages = {
                "scalars": ("#scalars", [*EPOCH_TAGS, *exp["trials"]], "No scalar data was found"),
                "scalars-search": ("#scalars&tagFilter=search", search_tags, "No scalar data was found"),
                "timeseries": ("#timeseries", [*EPOCH_TAGS], "No scalar data was found"),
                "hparams": ("#hparams", [HPARAM_METRIC, *exp["trials"]], "No hparams data was found"),
                "images": ("#images", [ARCHITECTURE_IMAGE, *exp["image_runs"]], "No image data was found"),
            }
            for name, (fragment, needles, empty) in pages.items():
                browser.open(base + fragment)
                text = wait_for(browser, needles, [empty, NO_DASHBOARDS], timeout)
                time.sleep(1.0)  # let the charts finish drawing before the screenshot
                if shots is not None:
                    browser.screenshot(shots / f"tensorboard-{name}.png")
                said = [m for m in (empty, NO_DASHBOARDS) if m in text]
                if said:
                    problems.append(f"{name}: TensorBoard shows an empty page ({said[0]!r})")
                    continue
                missing = [n for n in needles if n not in text]
                if missing:
                    problems.append(f"{name}: not rendered: {', '.join(missing)}")
                if name == "hparams":
                    rows = hparams_rows(browser)
                    if rows is not None and rows != len(exp["trials"]):
                        problems.append(f"hparams: the table has {rows} rows, the run {len(exp['trials'])} trials")
        finally:
            browser.close()
            tb.terminate()
            tb.wait(timeout=10)
    return problems


def hparams_rows(browser: Chromium) -> int | None:
    """Rows of the HParams table view, counted by their session links (``trial-NNNN``); None if not found."""
    count = browser.run_js("""(() => {
      const names = new Set();
      const walk = (n) => {
        if (n.nodeType === 1 && n.shadowRoot) walk(n.shadowRoot);
        if (n.nodeType === 3) { const m = n.textContent.match(/trial-\\d{4}/g); if (m) m.forEach(x => names.add(x)); }
        for (const c of n.childNodes) walk(c);
      };
      const tables = [];
      const find = (n) => {
        if (n.nodeType === 1 && n.tagName === 'TF-HPARAMS-TABLE-VIEW') tables.push(n);
        if (n.shadowRoot) find(n.shadowRoot);
        for (const c of n.childNodes) find(c);
      };
      find(document.documentElement);
      if (!tables.length) return null;
      tables.forEach(walk);
      return names.size;
    })()""")
    return None if count is None else int(count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a run directory (its tb/ is shown) or a TensorBoard logdir; default: a new "
                                      "demo search")
    parser.add_argument("--trials", type=int, default=4, help="trials of the demo search (default 4)")
    parser.add_argument("--screenshots", help="write tensorboard-<page>.png screenshots into this folder")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for a page to render")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="morphnas-check-tb-") as tmp:
        if args.run:
            run = Path(args.run)
        else:
            print(f"running a {args.trials}-trial demo search ...", flush=True)
            run = demo_run(Path(tmp) / "demo", args.trials)
        logdir = run / "tb" if (run / "tb").is_dir() else run
        if not logdir.is_dir():
            print(f"check_tensorboard: {logdir} is not a directory", file=sys.stderr)
            return 2
        try:
            problems = check(logdir, Path(args.screenshots) if args.screenshots else None, args.timeout)
        except (RuntimeError, TimeoutError, OSError) as exc:
            print(f"check_tensorboard: {exc}", file=sys.stderr)
            return 2
    if problems:
        print("TensorBoard does not show the run:\n  " + "\n  ".join(problems))
        return 1
    print(f"TensorBoard shows {logdir}: scalars, hparams rows, per-trial curves and architecture images all rendered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
