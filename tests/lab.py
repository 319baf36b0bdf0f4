"""Real JupyterLab on 127.0.0.1 and headless Chromium (Debian's ``chromium``) via Playwright.

Fixtures (registered in conftest): ``lab`` (one server for the session), ``browser`` (one
Chromium), ``page`` (a fresh page per test, screenshot saved on failure).  Helpers drive the
notebook through ``window.jupyterapp`` commands, which JupyterLab exposes with
``expose_app_in_browser``.  A missing browser is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("IPAR_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def api(
        self,
        path: str,
        method: str = "GET",
        body: Any = None,
        token: bool = True,
        timeout: float = 30,
    ) -> tuple[int, Any]:
        """Call the server's REST API; returns (status, decoded JSON or text)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if token:
            req.add_header("Authorization", f"token {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read().decode()
                status = resp.status
        except urllib.error.HTTPError as err:
            raw = err.read().decode()
            status = err.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw


def start_lab(base: Path, app: str = "jupyterlab") -> Lab:
    """Start JupyterLab, or with ``app="notebook"`` Notebook 7 (the same server options,
    its own app's settings), and wait until it answers."""
    root = base / "root"
    settings = base / "settings"
    for d in (root, settings / "@jupyterlab" / "apputils-extension", base / "ws"):
        d.mkdir(parents=True, exist_ok=True)
    (
        settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    ).write_text(json.dumps({"fetchNews": "false"}))
    # Another parallel package installed beside us (ipyparallel, for the benchmarks) must not
    # take part: its server extension runs every profile's configuration inside the server.
    config_dir = Path(os.environ["JUPYTER_CONFIG_DIR"])
    (config_dir / "labconfig").mkdir(parents=True, exist_ok=True)
    (config_dir / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"ipyparallel-labextension": True}})
    )
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"ipyparallel": False}}})
    )
    token = secrets.token_hex(16)
    port = free_port()
    log = base / "server.log"
    cmd = [
        sys.executable,
        "-m",
        app,
        "--no-browser",
        "--allow-root",
        f"--IdentityProvider.token={token}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
    ]
    if app == "jupyterlab":
        cmd += [
            f"--LabApp.workspaces_dir={base / 'ws'}",
            f"--LabApp.user_settings_dir={settings}",
            "--LabApp.extension_manager=readonly",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.expose_app_in_browser=True",
        ]
    else:
        cmd += [
            f"--JupyterNotebookApp.workspaces_dir={base / 'ws'}",
            f"--JupyterNotebookApp.user_settings_dir={settings}",
            "--JupyterNotebookApp.expose_app_in_browser=True",
        ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=os.environ.copy(),
        )
    lab = Lab(f"http://127.0.0.1:{port}", token, root, proc, log)
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"JupyterLab exited with code {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            status, _ = lab.api("/api/status", timeout=2)
            if status == 200:
                return lab
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_lab(lab)
            raise RuntimeError(f"JupyterLab did not answer within 90 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def stop_lab(lab: Lab) -> None:
    try:
        os.killpg(lab.proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        lab.proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(lab.proc.pid, signal.SIGKILL)
        lab.proc.wait(5)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory, isolated_dirs: Path) -> Iterator[Lab]:
    server = start_lab(tmp_path_factory.mktemp("lab"))
    yield server
    stop_lab(server)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(server.log, ARTIFACTS / "jupyterlab-server.log")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium, one per test module.

    While a sync Playwright is open the main thread counts as running an asyncio loop, so
    ``asyncio.run()`` would fail in every later test; closing it with the module keeps that
    from leaking into tests that use asyncio.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: install Debian's chromium package "
            "(.ci/run does), the browser tests need it"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        try:
            pg.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"), full_page=True)
        except Exception:
            pass
    context.close()


def open_lab(page: Any, lab: Lab, theme: str | None = None) -> None:
    """Load JupyterLab with an empty workspace and wait until its commands are ready."""
    page.goto(f"{lab.url}/lab?reset&token={lab.token}")
    # the splash may not be attached yet when the page has loaded: wait for the app first
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=90_000)
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=90_000)
    page.evaluate("() => window.jupyterapp.restored")
    page.wait_for_function(
        "() => window.jupyterapp.commands.hasCommand('notebook:create-new')", timeout=60_000
    )
    if theme:
        page.evaluate(
            f"() => window.jupyterapp.commands.execute('apputils:change-theme', {{theme: {json.dumps(theme)}}})"
        )


def new_notebook(page: Any) -> str:
    """Create a notebook with a Python kernel; returns the CSS id of its panel."""
    panel_id = page.evaluate(
        """async () => {
            const w = await window.jupyterapp.commands.execute('notebook:create-new', {kernelName: 'python3'});
            await w.context.ready;
            await w.sessionContext.ready;
            const kernel = w.sessionContext.session.kernel;
            for (let i = 0; i < 600 && kernel.connectionStatus !== 'connected'; i++) {
                await new Promise(r => setTimeout(r, 100));
            }
            await kernel.info;
            return w.id;
        }"""
    )
    page.wait_for_selector(f"#{panel_id} .jp-Cell .cm-content")
    return str(panel_id)


def run_cell(page: Any, panel_id: str, code: str) -> None:
    """Type code into the last cell of the notebook and run it (Shift+Enter)."""
    cells = page.locator(f"#{panel_id} .jp-Cell .cm-content")
    cells.nth(cells.count() - 1).click()
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")


def save_screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
