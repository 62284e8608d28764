"""A JupyterLab server on a scratch folder and the browser steps the browser tests take in it.

The server runs from the project's environment (the Python running the tests) with the smoke
profile, a private checkpoint cache and results folder, and private Jupyter config/data folders
(no user settings, no saved workspaces, notebook windowing off so that every cell is in the page).
The browser is Debian's Chromium driven by Playwright's sync API; no browser is downloaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 # without these Chromium keeps trying to reach Google's servers
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
STDERR = "application/vnd.jupyter.stderr"


def chromium_path() -> str | None:
    """Debian's Chromium (package `chromium`), or None."""
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LabServer:
    """``python -m jupyter lab`` on ``root`` in its own process group; ``stop()`` always ends it."""

    root: Path
    scratch: Path
    repo: Path
    token: str = "browser-test-token"
    port: int = 0
    proc: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        # Nothing of the caller's Jupyter setup, matplotlib backend (Agg would hide every figure) or
        # course settings (a profile, a step cap) leaks in; TUTORIAL_DATA (fetched data) may.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("JUPYTER", "MPLBACKEND", "TUTORIAL_")) or k == "TUTORIAL_DATA"}
        jupyter = self.scratch / "jupyter"
        for name in ("config", "data", "runtime", "ipython"):
            (jupyter / name).mkdir(parents=True, exist_ok=True)
        for name in ("cache", "results"):
            (self.scratch / name).mkdir(parents=True, exist_ok=True)
        env.update({
            "TUTORIAL_PROFILE": "smoke", "CI": "1",
            "TUTORIAL_CACHE": str(self.scratch / "cache"),
            "TUTORIAL_RESULTS_DIR": str(self.scratch / "results"),
            # the caller's cache (make test: the smoke runs') is read, never written
            "TUTORIAL_SHARED_CACHE": os.environ.get("TUTORIAL_CACHE", ""),
            "PYTHONPATH": os.pathsep.join([str(self.repo)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])),
            "JUPYTER_CONFIG_DIR": str(jupyter / "config"),
            "JUPYTER_DATA_DIR": str(jupyter / "data"),
            "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"),
            "IPYTHONDIR": str(jupyter / "ipython"),
        })
        return env

    def _write_settings(self) -> None:
        config = self.scratch / "jupyter" / "config"
        # The news/update toast is noise in screenshots and wants the network.
        (config / "labconfig").mkdir(parents=True, exist_ok=True)
        (config / "labconfig" / "page_config.json").write_text(json.dumps(
            {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
        # Windowing off: every cell (and every widget view) is rendered, not only the visible ones.
        tracker = config / "lab" / "user-settings" / "@jupyterlab" / "notebook-extension"
        tracker.mkdir(parents=True, exist_ok=True)
        (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))

    def start(self, timeout: float = 120.0) -> "LabServer":
        self._write_settings()
        self.port = _free_port()
        self.log_path = self.scratch / "jupyterlab.log"
        log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={self.port}",
               "--ip=127.0.0.1", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--ServerApp.port_retries=0", "--ServerApp.terminals_enabled=False",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
            cmd.append("--allow-root")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=self.environment(), stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status")
                return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def api(self, method: str, path: str, timeout: float = 10.0):
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def kernels_idle(self) -> bool:
        kernels = self.api("GET", "/api/kernels")
        return bool(kernels) and all(k["execution_state"] == "idle" for k in kernels)

    def shutdown_kernels(self) -> None:
        for session in self.api("GET", "/api/sessions"):
            try:
                self.api("DELETE", f"/api/sessions/{session['id']}", timeout=30)
            except (OSError, urllib.error.HTTPError):
                pass

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:  # a clean shutdown also ends the kernels (they run in process groups of their own)
            self.shutdown_kernels()
            self.api("POST", "/api/shutdown")
            self.proc.wait(timeout=20)
        except (OSError, urllib.error.HTTPError, subprocess.TimeoutExpired):
            pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass


# ---------------------------------------------------------------------------------------------
# Page steps. `page` is a Playwright sync Page on /lab/tree/<notebook>.

# Prompt texts of the code cells: "[3]:", "[*]:" (queued or running), "[ ]:" (never run).
JS_PROMPTS = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
                      .map(p => p.textContent.trim())"""

# Tracebacks rendered anywhere in the notebook, including inside widget Output areas.
JS_TRACEBACKS = f"""() => [...document.querySelectorAll('.jp-Notebook [data-mime-type="{STDERR}"]')]
    .map(n => n.innerText).filter(t => /Traceback \\(most recent call last\\)|^\\w+(Error|Exception):/m.test(t))"""

# Rendered widget views per cell: top-level outputs (not inside another widget) holding a widget's DOM.
JS_WIDGET_VIEWS = """() => [...document.querySelectorAll('.jp-Notebook .jp-Cell')].map(cell =>
    [...cell.querySelectorAll('.jp-OutputArea-output')]
      .filter(n => !n.parentElement.closest('.jupyter-widgets'))
      .filter(n => n.querySelector(':scope > .jupyter-widgets') && !/Error displaying widget/.test(n.textContent)
                   && !n.querySelector('.jupyter-widgets-error-widget'))
      .length)"""

# Widgets that failed, by cell: "Error displaying widget" (no view) and ipywidgets 8's error widget
# (an icon standing for "Failed to load model/view class ... from module ..."; the details go to the
# browser console).
JS_WIDGET_ERRORS = """() => [...document.querySelectorAll('.jp-Notebook .jp-Cell')].flatMap((cell, i) => [
    ...[...cell.querySelectorAll('.jupyter-widgets-error-widget')]
       .map(() => `cell ${i}: ipywidgets error widget (the model or view class did not load)`),
    ...[...cell.querySelectorAll('.jp-OutputArea-output')].filter(n => /^Error displaying widget/.test(n.textContent.trim()))
       .map(n => `cell ${i}: ${n.textContent.trim()}`)])"""

# The explorer pattern: a VBox whose children are a box of controls (with a slider) and an Output.
# Marks the first one with data-browser-test="explorer"; returns how many there are.
JS_MARK_EXPLORER = """() => {
  const boxes = [...document.querySelectorAll('.jp-Notebook .widget-vbox')].filter(box => {
    const kids = [...box.children];
    const out = kids.find(k => k.classList.contains('widget-output'));
    const controls = kids.find(k => k !== out && k.querySelector('.noUi-handle'));
    return out && controls;
  });
  boxes.forEach((b, i) => { if (i === 0) b.setAttribute('data-browser-test', 'explorer'); });
  return boxes.length;
}"""


def prompts(page) -> list[str]:
    return page.evaluate(JS_PROMPTS)


def tracebacks(page) -> list[str]:
    return page.evaluate(JS_TRACEBACKS)


def widget_errors(page) -> list[str]:
    return page.evaluate(JS_WIDGET_ERRORS)


def widget_views(page) -> list[int]:
    return page.evaluate(JS_WIDGET_VIEWS)


def open_notebook(page, lab: LabServer, name: str, timeout_s: float = 120) -> None:
    """Open the notebook with a fresh workspace and wait until its kernel is connected and idle.

    (The toolbar's execution indicator reads "idle" before any kernel exists, and a Run All sent
    then asks for a kernel in a dialog: so wait for the server's session and the toolbar's kernel name.)
    """
    page.goto(f"{lab.url}/lab/tree/{name}?reset&token={lab.token}", wait_until="domcontentloaded")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(state="visible", timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        accept_kernel_dialog(page)
        states = [s["kernel"]["execution_state"] for s in lab.api("GET", "/api/sessions")
                  if s.get("path") == name and s.get("kernel")]
        kernel = page.locator(".jp-NotebookPanel .jp-Toolbar-kernelName").first
        shown = kernel.inner_text().strip() if kernel.count() else ""
        if states == ["idle"] and shown and shown != "No Kernel":
            return
        page.wait_for_timeout(500)
    raise TimeoutError(f"no idle kernel for {name} after {timeout_s:.0f} s:\n{lab.log_tail()}")


def accept_kernel_dialog(page) -> bool:
    """Answer JupyterLab's "Select Kernel" dialog with its default (the notebook's own kernel)."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    if dialog.count() and dialog.first.is_visible():
        dialog.first.locator("button.jp-mod-accept").click()
        return True
    return False


def run_all(page) -> None:
    """Menu Run → Run All Cells."""
    page.locator(".lm-MenuBar-item").filter(has_text=re.compile(r"^\s*Run\s*$")).first.click()
    menu = page.locator(".lm-Menu:visible").last
    menu.locator(".lm-Menu-item").filter(
        has=page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^\s*Run All Cells\s*$"))).first.click()


def wait_until_run(page, lab: LabServer, expected: int, timeout_s: float, start_s: float = 60) -> list[str]:
    """Wait until nothing is queued, the kernel is idle, and ``expected`` cells ran (or a cell failed).

    Returns the prompts. A failing cell stops Run All, so finished-with-an-error also ends the wait.
    """
    begin = time.monotonic()
    settled = 0
    while time.monotonic() - begin < timeout_s:
        now = prompts(page)
        ran = sum(p[1:-2].strip().isdigit() for p in now if p.startswith("["))
        busy = any("*" in p for p in now)
        if not busy and ran and lab.kernels_idle():
            settled += 1
            if ran >= expected or tracebacks(page) or settled >= 5:
                return now
        else:
            settled = 0
        if not busy and not ran and time.monotonic() - begin > start_s:
            raise TimeoutError(f"Run All did not start within {start_s:.0f} s; prompts: {now}")
        page.wait_for_timeout(1000)
    raise TimeoutError(f"Run All did not finish in {timeout_s:.0f} s; prompts: {prompts(page)}")


def save(page, path: Path, timeout_s: float = 60) -> dict:
    """Ctrl+S, then read the saved notebook back once the file on disk changed."""
    before = path.stat().st_mtime_ns
    page.locator(".jp-NotebookPanel .jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.stat().st_mtime_ns != before:
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:  # caught mid-write
                pass
        page.wait_for_timeout(500)
    raise TimeoutError(f"{path.name} was not saved within {timeout_s:.0f} s")


def saved_errors(nb: dict) -> list[str]:
    """`ename: evalue` of every error output in a saved notebook."""
    return [f"cell {i}: {o.get('ename')}: {o.get('evalue')}"
            for i, cell in enumerate(nb["cells"]) if cell["cell_type"] == "code"
            for o in cell.get("outputs", []) if o.get("output_type") == "error"]


def saved_widget_outputs(nb: dict) -> list[int]:
    """The number of widget outputs of every cell of a saved notebook."""
    return [sum(WIDGET_VIEW in o.get("data", {}) for o in cell.get("outputs", [])) for cell in nb["cells"]]


def unexecuted(nb: dict) -> list[int]:
    """Code cells with source but no execution count."""
    return [i for i, cell in enumerate(nb["cells"]) if cell["cell_type"] == "code"
            and "".join(cell["source"]).strip() and cell.get("execution_count") is None]


def code_cells_with_source(nb: dict) -> int:
    return sum(cell["cell_type"] == "code" and bool("".join(cell["source"]).strip()) for cell in nb["cells"])


def explorer_images(page) -> list[str]:
    return page.locator('[data-browser-test="explorer"] > .widget-output img').evaluate_all(
        "imgs => imgs.map(i => i.getAttribute('src'))")


def move_first_slider(page, timeout_s: float = 120) -> tuple[str, str, list[str], list[str]]:
    """Move the explorer's first slider one step with the keyboard; wait for a new image in its Output.

    Returns (readout before, readout after, image sources before, after). Raises TimeoutError when no
    new image appears.
    """
    box = page.locator('[data-browser-test="explorer"]')
    slider = box.locator(".widget-slider").first
    handle = slider.locator(".noUi-handle").first
    readout = slider.locator(".widget-readout").first
    handle.scroll_into_view_if_needed()
    before_imgs = explorer_images(page)
    before = readout.inner_text() if readout.count() else ""
    handle.focus()
    handle.press("ArrowRight")
    page.wait_for_timeout(300)
    after = readout.inner_text() if readout.count() else ""
    if after == before:  # already at the right end
        handle.press("ArrowLeft")
        page.wait_for_timeout(300)
        after = readout.inner_text() if readout.count() else ""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = explorer_images(page)
        if any(src not in before_imgs for src in now):
            return before, after, before_imgs, now
        if tracebacks(page):
            raise AssertionError(f"the redraw after moving the slider {before!r} -> {after!r} failed:\n"
                                 + "\n".join(tracebacks(page)))
        page.wait_for_timeout(500)
    raise TimeoutError(f"no new image in the widget's Output after moving the slider {before!r} -> {after!r}; "
                       f"tracebacks on the page: {tracebacks(page)}")


JS_NOTEBOOK_SCROLLER = "document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer')"


def screenshot_notebook(page, path: Path, part_height: int = 8000) -> list[Path]:
    """The whole notebook, top to bottom, in shots of at most `part_height` pixels.

    The viewport is made as tall as the notebook (or one part of it). Writes `path` and, for a
    notebook taller than one part, `<stem>-part2.png`, ...
    """
    size = page.viewport_size
    # The height of the cells (scrollHeight also counts the empty "scroll past end" space).
    measure = f"""() => {{ const p = {JS_NOTEBOOK_SCROLLER}; const cells = p ? p.querySelectorAll('.jp-Cell') : [];
        if (!cells.length) return [0, 0];
        const bottom = cells[cells.length - 1].getBoundingClientRect().bottom - p.getBoundingClientRect().top;
        return [Math.ceil(bottom + p.scrollTop), p.clientHeight]; }}"""
    total, visible = page.evaluate(measure)
    chrome = size["height"] - visible  # menu, tabs, toolbar, status bar
    chunk = part_height - chrome
    paths = []
    try:
        for i in range(max(1, -(-total // chunk))):
            height = min(chunk, total - i * chunk) + chrome + 20
            page.set_viewport_size({"width": size["width"], "height": max(400, int(height))})
            page.evaluate(f"top => {{ const p = {JS_NOTEBOOK_SCROLLER}; if (p) p.scrollTop = top; }}", i * chunk)
            page.wait_for_timeout(300)
            shot = path if i == 0 else path.with_name(f"{path.stem}-part{i + 1}{path.suffix}")
            page.screenshot(path=str(shot))
            paths.append(shot)
    finally:
        page.set_viewport_size(size)
    return paths


def screenshot_element(page, locator, path: Path, max_height: int = 4000) -> Path:
    """The JupyterLab window with `locator` (a cell, say) at the top of the notebook view, all of it
    in the shot when it is at most about `max_height` pixels tall."""
    size = page.viewport_size
    visible = page.evaluate(f"() => {{ const p = {JS_NOTEBOOK_SCROLLER}; return p ? p.clientHeight : 0; }}")
    chrome = size["height"] - visible
    box = locator.bounding_box() or {"height": 0}
    height = int(min(max_height, box["height"] + chrome + 40))
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], height)})
    try:
        locator.evaluate("n => n.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)
        page.screenshot(path=str(path))
    finally:
        page.set_viewport_size(size)
    return path
