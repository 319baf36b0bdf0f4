"""The server extension's REST API (/ipar/...), against the session's real JupyterLab server.

Clusters started here are real controllers and engines in the session's IPYTHONDIR; each
test uses its own profile and stops whatever it started, even when it fails.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import ROOT, cluster_processes, wait_until
from lab import Lab

from ipar_widgets import paths
from ipar_widgets.cluster import control
from ipar_widgets.cluster.discovery import find_clusters

pytestmark = pytest.mark.timeout(120)


def request(
    lab: Lab,
    path: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    opener: urllib.request.OpenerDirector | None = None,
) -> tuple[int, Any]:
    """A raw request (lab.api always sends the token and JSON-encodes the body)."""
    req = urllib.request.Request(lab.url + path, data=body, method=method, headers=headers or {})
    try:
        with (opener or urllib.request.build_opener()).open(req, timeout=30) as resp:
            status, raw = resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read().decode()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw


def stop_profile_clusters(profile: str) -> None:
    for info in find_clusters([profile], query=False):
        control.stop_cluster(info.data, grace=5)


@pytest.fixture
def cleanup(profile: str) -> Iterator[str]:
    """The test's profile; every cluster in it is stopped afterwards."""
    yield profile
    stop_profile_clusters(profile)


def ipar_list() -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "ipar_widgets", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


# -- the extension is installed and answers ---------------------------------------------------
def test_list_answers_with_clusters_and_profiles(lab: Lab) -> None:
    import ipar_widgets

    status, data = lab.api("/ipar/clusters")
    assert status == 200, data
    assert data["version"] == ipar_widgets.__version__
    assert isinstance(data["clusters"], list)
    assert data["profiles"] == paths.list_profiles()


def jupyter(*args: str) -> str:
    """Run a ``jupyter`` subcommand with the session's Jupyter dirs; its output without colours."""
    out = subprocess.run(
        [sys.executable, "-m", "jupyter", *args], capture_output=True, text=True, timeout=60
    )
    return re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)


def test_extensions_are_listed_as_enabled() -> None:
    labext = jupyter("labextension", "list")
    assert re.search(
        r"^\s*ipar_widgets v[0-9.]+ enabled OK \(python, ipar_widgets\)$", labext, re.MULTILINE
    ), labext
    server = jupyter("server", "extension", "list")
    assert re.search(r"^\s*ipar_widgets\.server enabled$", server, re.MULTILINE), server
    assert re.search(r"^\s*ipar_widgets\.server [0-9.]+ OK$", server, re.MULTILINE), server


def test_labextension_is_built_for_this_version() -> None:
    import ipar_widgets

    built = json.loads((ROOT / "ipar_widgets" / "labextension" / "package.json").read_text())
    source = json.loads((ROOT / "labextension" / "package.json").read_text())
    assert built["name"] == source["name"] == "ipar_widgets"
    assert built["version"] == source["version"] == ipar_widgets.__version__
    load = built["jupyterlab"]["_build"]["load"]
    assert (ROOT / "ipar_widgets" / "labextension" / load).is_file()


def test_importing_the_server_module_does_not_import_jupyter_server() -> None:
    code = (
        "import sys, ipar_widgets.server as s; "
        "assert s._jupyter_server_extension_points() == [{'module': 'ipar_widgets.server'}]; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jupyter_server', 'tornado')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def test_listing_never_runs_profile_configuration(lab: Lab, profile: str) -> None:
    # Only cluster files are read: a profile whose config would stop any process that
    # loads it leaves the server unharmed.
    config = paths.profile_dir(profile, create=True) / "ipython_config.py"
    config.write_text("raise SystemExit('this profile must never be executed')\n")
    try:
        status, data = lab.api("/ipar/clusters")
        assert status == 200 and profile in data["profiles"], data
        assert lab.proc.poll() is None
    finally:
        config.unlink()  # other tools (ipyparallel's panel) do run it


# -- authentication ----------------------------------------------------------------------------
ENDPOINTS = [
    ("GET", "/ipar/clusters"),
    ("POST", "/ipar/clusters"),
    ("GET", "/ipar/clusters/x"),
    ("DELETE", "/ipar/clusters/x"),
    ("POST", "/ipar/clusters/x/engines"),
    ("DELETE", "/ipar/clusters/x/engines/0"),
    ("GET", "/ipar/clusters/x/activity"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_requests_without_the_token_are_refused(lab: Lab, method: str, path: str) -> None:
    body = b'{"profile": "x", "n": 1}' if method == "POST" else None
    assert request(lab, path, method, body)[0] == 403
    wrong = {"Authorization": "token not-the-token"}
    assert request(lab, path, method, body, headers=wrong)[0] == 403


def test_a_browser_session_needs_the_xsrf_token(lab: Lab) -> None:
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    assert request(lab, f"/lab?token={lab.token}", opener=browser)[0] == 200
    xsrf = next(c.value for c in jar if c.name == "_xsrf")
    # the login cookie alone lets a page read...
    assert request(lab, "/ipar/clusters", opener=browser)[0] == 200
    # ...but not change anything without the XSRF token (a forged cross-site form)
    body = b'{"profile": "t-xsrf", "n": -1}'
    status, _ = request(lab, "/ipar/clusters", "POST", body, opener=browser)
    assert status == 403
    status, data = request(
        lab, "/ipar/clusters", "POST", body, opener=browser, headers={"X-XSRFToken": xsrf}
    )
    assert status == 400 and "'n'" in data["message"]  # authenticated; refused for the -1


# -- bad input -----------------------------------------------------------------------------------
BAD = [
    # (method, path, body, status, words in the message)
    ("POST", "/ipar/clusters", {"profile": "bad name", "n": 1}, 400, "invalid profile name"),
    ("POST", "/ipar/clusters", {"profile": "../up", "n": 1}, 400, "invalid profile name"),
    ("POST", "/ipar/clusters", {"profile": "", "n": 1}, 400, "invalid profile name"),
    ("POST", "/ipar/clusters", {"profile": 7, "n": 1}, 400, "'profile' must be a string"),
    ("POST", "/ipar/clusters", {"profile": "t-bad", "n": -1}, 400, "from 0 to 256, found -1"),
    ("POST", "/ipar/clusters", {"profile": "t-bad", "n": 100000}, 400, "from 0 to 256"),
    ("POST", "/ipar/clusters", {"profile": "t-bad", "n": "two"}, 400, "whole number of engines"),
    ("POST", "/ipar/clusters", {"profile": "t-bad", "n": 1.5}, 400, "whole number of engines"),
    ("POST", "/ipar/clusters", {"profile": "t-bad", "n": True}, 400, "whole number of engines"),
    ("POST", "/ipar/clusters", {"profile": "t-bad"}, 400, "missing field(s) n"),
    (
        "POST",
        "/ipar/clusters",
        {"profile": "t-bad", "n": 1, "engines": 2},
        400,
        "unexpected field(s) engines",
    ),
    (
        "POST",
        "/ipar/clusters",
        {"profile": "t-bad", "n": 1, "cluster_id": "a b"},
        400,
        "invalid cluster id",
    ),
    ("POST", "/ipar/clusters", [1, 2], 400, "must be a JSON object"),
    ("POST", "/ipar/clusters", "not json", 400, "not valid JSON"),
    ("GET", "/ipar/clusters/bad%20name", None, 400, "invalid profile name"),
    ("GET", "/ipar/clusters/t-none?cluster_id=a%2Fb", None, 400, "invalid cluster id"),
    ("GET", "/ipar/clusters/t-none", None, 404, "no cluster found for profile 't-none'"),
    ("GET", "/ipar/clusters/t-none?cluster_id=c1", None, 404, "cluster 'c1' of profile 't-none'"),
    ("DELETE", "/ipar/clusters/t-none", None, 404, "no cluster found"),
    ("GET", "/ipar/clusters/t-none/activity", None, 404, "no cluster found"),
    ("POST", "/ipar/clusters/t-none/engines", {"n": 1}, 404, "no cluster found"),
    ("POST", "/ipar/clusters/t-none/engines", {"n": 0}, 400, "from 1 to 256, found 0"),
    ("POST", "/ipar/clusters/t-none/engines", {"n": -2}, 400, "from 1 to 256, found -2"),
    ("DELETE", "/ipar/clusters/t-none/engines/x", None, 400, "engine id is a whole number"),
    ("DELETE", "/ipar/clusters/t-none/engines/-1", None, 400, "whole number >= 0"),
    ("DELETE", "/ipar/clusters/t-none/engines/3", None, 404, "no cluster found"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    BAD,
    ids=[f"{m} {p} {b!r}" for m, p, b, _, _ in BAD],
)
def test_bad_input_gets_a_4xx_with_a_clear_message(
    lab: Lab, method: str, path: str, body: Any, status: int, words: str
) -> None:
    raw = (
        None
        if body is None
        else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
    )
    got, data = request(lab, path, method, raw, headers={"Authorization": f"token {lab.token}"})
    assert got == status, data
    assert isinstance(data, dict) and words in data["message"], data
    assert "Traceback" not in json.dumps(data) and not data.get("traceback")
    assert not paths.profile_dir("t-bad").exists()  # refused before anything was created


# -- clusters ----------------------------------------------------------------------------------------
def test_a_cluster_started_through_the_api_is_an_ordinary_cluster(lab: Lab, cleanup: str) -> None:
    import ipar_widgets as ipp

    profile = cleanup
    status, cluster = lab.api("/ipar/clusters", "POST", {"profile": profile, "n": 1})
    assert status == 201, cluster
    assert cluster["state"] == "running" and cluster["engines_registered"] == 1
    assert cluster["activity"]["tasks"]["done"] == 0
    controller_pid = cluster["controller_pid"]

    # the CLI sees it, and a Client connects to it
    listed = [c for c in ipar_list() if c["profile"] == profile]
    assert [c["controller_pid"] for c in listed] == [controller_pid]
    rc = ipp.Client(profile=profile)
    try:
        rc.wait_for_engines(1, timeout=30)
        # starting it again is refused while it runs
        status, data = lab.api("/ipar/clusters", "POST", {"profile": profile, "n": 1})
        assert status == 409 and "already running" in data["message"], data

        # scale up: add an engine; the API waits until it registered
        status, data = lab.api(f"/ipar/clusters/{profile}/engines", "POST", {"n": 1})
        assert status == 200, data
        assert data["cluster"]["engines_registered"] == 2 and len(data["launched"]) == 1

        # activity: the controller's records show the work done through the client
        pids = rc[:].apply_sync(os.getpid)
        status, activity = lab.api(f"/ipar/clusters/{profile}/activity")
        assert status == 200, activity
        assert activity["tasks"]["done"] == 2 and activity["tasks"]["failed"] == 0, activity
        assert {e["pid"] for e in activity["engines"]} == set(pids)
        assert {e["state"] for e in activity["engines"]} == {"idle"}
        assert sum(e["completed"] for e in activity["engines"]) == 2

        # scale down: stop engine 0; an unknown engine is a 404 that lists the real ones
        status, data = lab.api(f"/ipar/clusters/{profile}/engines/7", "DELETE")
        assert status == 404 and "its engines are 0, 1" in data["message"], data
        status, data = lab.api(f"/ipar/clusters/{profile}/engines/0", "DELETE")
        assert status == 200 and data["stopped"] == [0], data
        wait_until(lambda: rc.ids == [1], timeout=30, what="engine 0 to unregister")
        status, one = lab.api(f"/ipar/clusters/{profile}")
        assert status == 200 and one["engines_registered"] == 1, one
    finally:
        rc.close()

    status, data = lab.api(f"/ipar/clusters/{profile}", "DELETE")
    assert status == 200 and data["stopped"] is True, data
    assert not control.pid_alive(controller_pid)
    assert not [p for p in cluster_processes() if profile in " ".join(p.cmdline())]
    assert lab.api(f"/ipar/clusters/{profile}")[0] == 404
    assert not [c for c in ipar_list() if c["profile"] == profile]


def test_concurrent_requests_on_one_cluster_are_serialized(lab: Lab, cleanup: str) -> None:
    profile = cleanup
    cid = "c1"
    base = f"/ipar/clusters/{profile}"

    def start(_: int) -> tuple[int, Any]:
        return lab.api("/ipar/clusters", "POST", {"profile": profile, "n": 1, "cluster_id": cid})

    def actions_while_starting() -> set[tuple[str, str | None]]:
        """What the list shows of the cluster while it starts (state, action)."""
        seen = set()
        while not starts.done():
            _, listing = lab.api("/ipar/clusters")
            seen |= {
                (c["state"], c["action"]) for c in listing["clusters"] if c["profile"] == profile
            }
        return seen

    with ThreadPoolExecutor(5) as pool:  # 3 starts, their caller, the watcher
        starts = pool.submit(lambda: list(pool.map(start, range(3))))
        seen = pool.submit(actions_while_starting).result(timeout=90)
        answers = starts.result()
    codes = sorted(status for status, _ in answers)
    assert codes == [201, 409, 409], answers
    # other panels see that it is being started
    assert {("starting", "starting"), ("running", "starting")} & seen, seen
    assert len([c for c in find_clusters([profile]) if c.state == "running"]) == 1

    # two "add one engine" at once: both happen, one after the other
    def add(_: int) -> tuple[int, Any]:
        return lab.api(f"{base}/engines?cluster_id={cid}", "POST", {"n": 1})

    with ThreadPoolExecutor(2) as pool:
        added = list(pool.map(add, range(2)))
    assert [s for s, _ in added] == [200, 200], added
    status, cluster = lab.api(f"{base}?cluster_id={cid}")
    assert cluster["engines_registered"] == 3 and cluster["engines_requested"] == 3, cluster
    # the default cluster of the profile is another cluster, which does not exist
    assert lab.api(base)[0] == 404

    # two stops at once: one stops it, the other finds nothing left
    def stop(_: int) -> tuple[int, Any]:
        return lab.api(f"{base}?cluster_id={cid}", "DELETE")

    with ThreadPoolExecutor(2) as pool:
        stopped = sorted(s for s, _ in pool.map(stop, range(2)))
    assert stopped == [200, 404]
    assert not find_clusters([profile], query=False)
    assert not [p for p in cluster_processes() if profile in " ".join(p.cmdline())]


def test_a_cluster_that_does_not_answer_is_shown_and_not_touched(lab: Lab, cleanup: str) -> None:
    profile = cleanup
    # a cluster file whose "controller" is alive but answers nothing (this very process)
    profile_path = paths.profile_dir(profile, create=True)
    fake = {
        "controller_pid": os.getpid(),
        "profile": profile,
        "profile_dir": str(profile_path),
        "cluster_id": "",
        "client_file": str(paths.client_file(profile_path)),
        "n": 0,
        "started": 0,
        "location": "127.0.0.1",
        "ports": {"client": 1},
    }
    paths.write_private_json(
        paths.client_file(profile_path),
        {"key": "k", "location": "127.0.0.1", "ports": {"client": 1}},
    )
    paths.write_private_json(paths.cluster_file(profile_path), fake)
    try:
        status, listing = lab.api("/ipar/clusters")
        mine = [c for c in listing["clusters"] if c["profile"] == profile]
        assert [(c["state"], c["activity"]) for c in mine] == [("unresponsive", None)], mine
        status, data = lab.api("/ipar/clusters", "POST", {"profile": profile, "n": 1})
        assert status == 409 and "already unresponsive" in data["message"], data
        status, data = lab.api(f"/ipar/clusters/{profile}/engines", "POST", {"n": 1})
        assert status == 409 and "does not answer" in data["message"], data
    finally:
        paths.remove_quietly(paths.cluster_file(profile_path), paths.client_file(profile_path))


def test_a_failed_start_says_why_in_words(lab: Lab, cleanup: str) -> None:
    profile = cleanup
    # a profile whose security folder is a file: nothing can be written there
    profile_path = paths.ipython_dir() / f"profile_{profile}"
    profile_path.mkdir(parents=True)
    (profile_path / "security").write_text("not a folder")
    status, data = lab.api("/ipar/clusters", "POST", {"profile": profile, "n": 1})
    assert status == 500, data
    assert data["message"].startswith(f"the cluster of profile {profile!r} did not start"), data
    assert "security" in data["message"] and "Traceback" not in data["message"]
    assert not [p for p in cluster_processes() if profile in " ".join(p.cmdline())]
