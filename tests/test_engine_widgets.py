"""Widgets made on engines, shown in the notebook of the client (ipyparallel's "Using widgets
in IPython Parallel" notebook): a real kernel hosts the client, a real cluster runs the
engines, and this test plays the notebook, reading the kernel's IOPub and sending a click on
its shell channel as JupyterLab would."""

from __future__ import annotations

import queue
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from ipar_widgets.client import comms

pytestmark = pytest.mark.timeout(180)


class Notebook:
    """A kernel and what it published, as a frontend sees them."""

    def __init__(self) -> None:
        self.km = KernelManager(kernel_name="python3")
        # the kernel runs this interpreter (and, through PYTHONPATH, this tree's package)
        self.km.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        self.km.start_kernel()
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.published: list[dict[str, Any]] = []

    def run(self, code: str, timeout: float = 60) -> list[dict[str, Any]]:
        """Execute a cell; return what the kernel published for it (until it went idle)."""
        msg_id = self.kc.execute(code)
        deadline = time.monotonic() + timeout
        mine: list[dict[str, Any]] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the cell did not finish within {timeout} s: {code!r}")
            try:
                msg = self.kc.get_iopub_msg(timeout=left)
            except queue.Empty:
                continue
            self.published.append(msg)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            mine.append(msg)
            if msg["msg_type"] == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return mine

    def comms_published(self) -> list[dict[str, Any]]:
        return [m for m in self.published if m["msg_type"].startswith("comm_")]

    def send_comm(self, msg_type: str, content: dict[str, Any]) -> None:
        self.kc.shell_channel.send(self.kc.session.msg(msg_type, content))

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture
def notebook() -> Iterator[Notebook]:
    nb = Notebook()
    try:
        yield nb
    finally:
        nb.close()


def opened(nb: Notebook, model: str) -> list[dict[str, Any]]:
    return [
        m
        for m in nb.comms_published()
        if m["msg_type"] == "comm_open"
        and m["content"]["data"]["state"].get("_model_name") == model
    ]


def test_engine_widgets_reach_the_notebook_and_its_clicks_reach_the_engine(
    make_cluster: Any, profile: str, notebook: Notebook
) -> None:
    make_cluster(n=2)
    notebook.run(
        "import ipar_widgets as ipp\n"
        f"rc = ipp.Client(profile={profile!r})\n"
        "rc.wait_for_engines(2, timeout=60)\n"
        "rc[:].scatter('rank', rc.ids, flatten=True, block=True)"
    )
    outputs = notebook.run(
        "%%px --block\n"
        "import ipywidgets as W\n"
        "from IPython.display import display\n"
        "clicks = []\n"
        "progress = W.IntProgress(max=5, description=f'rank {rank}')\n"
        "button = W.Button(description='step')\n"
        "def step(_):\n"
        "    clicks.append(1)\n"
        "    progress.value += 1\n"
        "button.on_click(step)\n"
        "display(W.HBox([button, progress]))\n"
        "progress.value = 2\n"
    )
    # each engine's three widgets (HBox, Button, IntProgress) were opened in the notebook ...
    bars = opened(notebook, "IntProgressModel")
    assert sorted(m["content"]["data"]["state"]["description"] for m in bars) == [
        "rank 0",
        "rank 1",
    ]
    assert len(opened(notebook, "HBoxModel")) == 2
    buttons = opened(notebook, "ButtonModel")
    assert len(buttons) == 2
    # ... the views the notebook draws name those models ...
    views = [
        m["content"]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
        for m in outputs
        if m["msg_type"] == "display_data"
        and "application/vnd.jupyter.widget-view+json" in m["content"]["data"]
    ]
    hboxes = {m["content"]["comm_id"] for m in opened(notebook, "HBoxModel")}
    assert sorted(views) == sorted(hboxes)
    # ... and the updates made in the task followed
    bar_ids = {m["content"]["comm_id"] for m in bars}
    updates = [
        m["content"]["data"]["state"]
        for m in notebook.comms_published()
        if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] in bar_ids
    ]
    assert updates.count({"value": 2}) == 2

    # a click on engine 0's button, sent to the kernel as JupyterLab sends it
    button_ids = [m["content"]["comm_id"] for m in buttons]
    first = button_ids[0]
    notebook.send_comm(
        "comm_msg",
        {"comm_id": first, "data": {"method": "custom", "content": {"event": "click"}}},
    )
    notebook.run(
        "import time\n"
        "deadline = time.monotonic() + 20\n"
        "while sum(map(len, rc[:].pull('clicks', block=True))) < 1:\n"
        "    assert time.monotonic() < deadline, 'the click never reached an engine'\n"
        "    time.sleep(0.05)\n"
        "assert sorted(map(len, rc[:].pull('clicks', block=True))) == [0, 1]\n"
        "assert sorted(rc[:].apply_sync(lambda: progress.value)) == [2, 3]"
    )
    # the engine's answer to the click (the bar moved) reached the notebook too
    later = [
        m["content"]["data"]["state"]
        for m in notebook.comms_published()
        if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] in bar_ids
    ]
    assert {"value": 3} in later

    # the notebook closes a widget: the engine's comm closes, and the stand-in is gone
    notebook.send_comm("comm_close", {"comm_id": first, "data": {}})
    notebook.run(
        f"assert {first!r} not in get_ipython().kernel.comm_manager.comms\n"
        "deadline = time.monotonic() + 20\n"
        "while not any(rc[:].apply_sync(lambda: button.comm._closed)):\n"
        "    assert time.monotonic() < deadline, 'the engine kept the closed comm'\n"
        "    time.sleep(0.05)"
    )
    # an engine closes one: the notebook is told, and the kernel forgets the stand-in
    second = button_ids[1]
    notebook.run("%px button.close()")
    closes = [m for m in notebook.comms_published() if m["msg_type"] == "comm_close"]
    assert second in [m["content"]["comm_id"] for m in closes]
    notebook.run(f"assert {second!r} not in get_ipython().kernel.comm_manager.comms\nrc.close()")


def test_outside_a_kernel_nothing_is_relayed(rc: Any) -> None:
    assert comms.relay_engine_comms(rc) is None
    relay = comms.EngineCommRelay(rc, kernel=None)
    # a comm message of no engine, or not a comm message, is not looked at
    relay.on_output(None, None, "comm_open", {"comm_id": "x"})
    relay.on_output(0, None, "stream", {"name": "stdout", "text": "hi"})
    assert relay.engine_of == {}
