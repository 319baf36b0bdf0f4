"""The ``ipar`` command, run as a user runs it: a real process per invocation."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import cluster_processes, ipar, wait_until

import ipar_widgets as ipp
from ipar_widgets import paths


def procs_of(profile: str) -> list[psutil.Process]:
    marker = f"profile_{profile}"
    return [p for p in cluster_processes() if marker in " ".join(p.cmdline())]


@pytest.fixture
def stop_after(profile: str):  # type: ignore[no-untyped-def]
    yield
    ipar("stop", "--profile", profile, check=False)
    for p in procs_of(profile):
        p.kill()


def wait_lines(stderr: str) -> list[str]:
    """The engine wait's lines of a command's stderr (not a terminal: whole lines, no
    carriage returns nor escape codes); each says ``engines: ``."""
    assert "\r" not in stderr and "\x1b" not in stderr, repr(stderr)
    lines = stderr.splitlines()
    assert lines and all(line.startswith("engines: ") for line in lines), lines
    # a log gets a line when what it says changes, never the same twice in a row
    said = [re.sub(r", \d+\.\d s", "", line) for line in lines]
    assert all(a != b for a, b in zip(said, said[1:])), lines
    return lines


def test_start_list_grow_shrink_stop(profile: str, stop_after: None) -> None:
    started = ipar("start", "-n", "2", "--profile", profile)
    out = started.stdout
    assert f"Cluster started in profile {profile!r}: 2 engine(s)" in out
    # the wait for the engines, on stderr: its last line says how it ended
    waited = wait_lines(started.stderr)
    assert re.fullmatch(
        r"engines: 2/2 registered, \d+\.\d s; local: 2/2 engines registered", waited[-1]
    ), waited
    for line in waited[:-1]:  # while waiting: fewer registered, the rest starting
        assert re.fullmatch(
            r"engines: ([01])/2 registered, \d+\.\d s; local: \1/2 engines registered "
            r"\([12] starting\)",
            line,
        ), waited
    assert f"Client(profile={profile!r})" in out

    security = paths.profile_dir(profile) / "security"
    for name in ("ipar-client.json", "ipar-engine.json", "ipar-cluster.json"):
        mode = stat.S_IMODE((security / name).stat().st_mode)
        assert mode == 0o600, f"{name} has mode {oct(mode)}"
    client_info = json.loads((security / "ipar-client.json").read_text())
    assert client_info["signature_scheme"] == "hmac-sha256"
    assert client_info["transport"] == "tcp" and client_info["ip"] == "127.0.0.1"
    assert set(client_info["ports"]) == {"client", "notify"} and len(client_info["key"]) == 64
    engine_info = json.loads((security / "ipar-engine.json").read_text())
    assert (
        set(engine_info["ports"]) == {"engine", "iopub"}
        and engine_info["key"] == client_info["key"]
    )

    listing = json.loads(ipar("list", "--json", "--profile", profile).stdout)
    assert len(listing) == 1
    entry = listing[0]
    assert (entry["profile"], entry["cluster_id"], entry["state"]) == (profile, "", "running")
    assert (entry["engines_registered"], entry["engines_requested"]) == (2, 2)
    assert entry["address"] == f"tcp://127.0.0.1:{client_info['ports']['client']}"
    table = ipar("list", "--profile", profile).stdout.splitlines()
    assert table[0].split() == [
        "PROFILE",
        "CLUSTER",
        "ID",
        "STATE",
        "ENGINES",
        "CONTROLLER",
        "PID",
        "UPTIME",
    ]
    assert table[1].split()[:4] == [profile, "-", "running", "2/2"]

    added = ipar("engines", "add", "-n", "2", "--profile", profile)
    assert "Added 2 engine(s)" in added.stdout
    assert re.fullmatch(
        r"engines: 4/4 registered, \d+\.\d s; local: 4/4 engines registered",
        wait_lines(added.stderr)[-1],
    ), added.stderr
    rc = ipp.Client(profile=profile)
    try:
        assert rc.ids == [0, 1, 2, 3]
        assert len(procs_of(profile)) == 5  # controller + 4 engines
        assert "Stopped engine(s) 3" in ipar("engines", "stop", "3", "--profile", profile).stdout
        wait_until(lambda: rc.ids == [0, 1, 2], 5, what="engine 3 to leave")
        wait_until(lambda: len(procs_of(profile)) == 4, 10, what="engine 3's process to exit")
        assert rc[:].apply_sync(lambda: 1) == [1, 1, 1]
    finally:
        rc.close()

    assert (
        f"Stopped the cluster in profile {profile!r}" in ipar("stop", "--profile", profile).stdout
    )
    assert procs_of(profile) == []
    assert not (security / "ipar-client.json").exists()
    assert not (security / "ipar-cluster.json").exists()


def test_errors_are_clear(profile: str, stop_after: None) -> None:
    missing = ipar("stop", "--profile", "no-such-profile", check=False)
    assert missing.returncode == 1
    assert "profile 'no-such-profile' does not exist" in missing.stderr
    assert "ipar start --profile no-such-profile" in missing.stderr

    bad = ipar("start", "--profile", "bad/name", check=False)
    assert bad.returncode == 1 and "invalid profile name 'bad/name'" in bad.stderr

    usage = ipar("start", "-n", "many", check=False)
    assert usage.returncode == 2 and "invalid int value" in usage.stderr

    ipar("start", "-n", "1", "--profile", profile)
    again = ipar("start", "-n", "1", "--profile", profile, check=False)
    assert again.returncode == 1
    assert f"a cluster is already running in profile {profile!r}" in again.stderr
    assert f"ipar stop --profile {profile}" in again.stderr

    with pytest.raises(OSError, match="No cluster found: profile 'nothing-here' does not exist"):
        ipp.Client(profile="nothing-here", timeout=0)
    with pytest.raises(OSError, match=f"No cluster 'other' found for profile {profile!r}"):
        ipp.Client(profile=profile, cluster_id="other", timeout=0)

    for cmd in (
        ["--help"],
        ["start", "--help"],
        ["engines", "add", "--help"],
        ["engines", "stop", "--help"],
    ):
        assert ipar(*cmd).stdout.startswith("usage: ipar")


def test_engines_that_fail_to_register_are_reported_with_their_log(
    profile: str, stop_after: None
) -> None:
    # an engine option that does not exist makes every engine exit at start-up
    env_args = ["--profile", profile, "-n", "1", "--engine-timeout", "30"]
    profile_path = paths.profile_dir(profile, create=True)
    (profile_path / "ipython_config.py").write_text(
        "raise SystemExit('broken engine configuration')\n"
    )
    try:
        result = ipar("start", *env_args, check=False)
    finally:
        (profile_path / "ipython_config.py").unlink()
    assert result.returncode == 1
    assert "the cluster did not start: engine 0 exited with code" in result.stderr
    # the wait's last line says what ended it, before the error says why
    waited = wait_lines(result.stderr.split("\nipar start: error: ")[0])
    assert re.fullmatch(
        r"engines: 0/1 registered, \d+\.\d s \[EngineStartFailed: engine 0 exited with code "
        r"1.*\]; local: 0/1 engines registered( \(1 starting\))?",
        waited[-1],
    ), waited
    assert "broken engine configuration" in result.stderr  # the tail of the engine's log
    assert procs_of(profile) == []


def test_foreground_stops_on_ctrl_c(profile: str, stop_after: None) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ipar_widgets",
            "start",
            "-n",
            "1",
            "--profile",
            profile,
            "--foreground",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 60
        while not any("press Ctrl-C" in line for line in lines):
            assert time.monotonic() < deadline, lines
            lines.append(proc.stdout.readline())
        assert len(procs_of(profile)) == 2
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert "Cluster stopped." in out
        assert procs_of(profile) == []
    finally:
        if proc.poll() is None:
            proc.kill()


def test_stop_kills_a_hung_controller(profile: str, stop_after: None) -> None:
    ipar("start", "-n", "1", "--profile", profile)
    data = paths.read_json(paths.cluster_file(paths.profile_dir(profile)))
    controller = psutil.Process(data["controller_pid"])
    controller.suspend()  # it cannot answer, nor exit on its own
    try:
        started = time.monotonic()
        out = ipar("stop", "--profile", profile, "--grace", "2").stdout
        assert time.monotonic() - started < 15
        assert "did not stop cleanly" in out
        assert procs_of(profile) == []
    finally:
        if controller.is_running():
            controller.kill()


def test_two_profiles_side_by_side(stop_after: None) -> None:
    names = ["side-a", "side-b"]
    try:
        for name in names:
            ipar("start", "-n", "1", "--profile", name)
        clients = [ipp.Client(profile=name) for name in names]
        pids = [c[0].apply_sync(os.getpid) for c in clients]
        assert pids[0] != pids[1]
        assert {e["profile"] for e in json.loads(ipar("list", "--json").stdout)} >= set(names)
        for c in clients:
            c.close()
    finally:
        for name in names:
            ipar("stop", "--profile", name, check=False)
    assert all(procs_of(name) == [] for name in names)


def test_python_m_and_console_script_agree() -> None:
    script = Path(sys.executable).parent / "ipar"
    if script.exists():
        version = subprocess.run(
            [str(script), "--version"], capture_output=True, text=True, timeout=30
        )
        assert version.stdout.strip() == f"ipar_widgets {ipp.__version__}"
    assert ipar("--version").stdout.strip() == f"ipar_widgets {ipp.__version__}"


def test_start_redraws_its_wait_line_on_a_terminal(profile: str, stop_after: None) -> None:
    """stderr a terminal (a pty): the wait's line is redrawn in place, then its last state
    is left on the line, ended by a newline."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ipar_widgets", "start", "-n", "2", "--profile", profile],
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
        )
        os.close(follower)
        follower = -1
        drawn = b""
        deadline = time.monotonic() + 60
        while True:  # until the command closes its end of the terminal
            assert time.monotonic() < deadline, drawn
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: no process holds the terminal any more
                break
            if not chunk:
                break
            drawn += chunk
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, drawn
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    assert f"Cluster started in profile {profile!r}: 2 engine(s)" in out
    text = drawn.decode()
    frames = text.split("\r")
    assert frames[0] == "" and len(frames) >= 3, repr(text)  # each frame starts with \r
    # the last frame stays, its "\n" made "\r\n" by the terminal; the one before blanked
    # the redrawn line
    assert frames[-1] == "\n" and frames[-3].strip() == "", repr(text)
    assert re.fullmatch(
        r"engines: 2/2 registered, \d+\.\d s; local: 2/2 engines registered", frames[-2]
    ), repr(text)
    assert re.match(r"engines: 0/2 registered, \d+\.\d s; local: 0/2 engines registered", frames[1])
    assert "\x1b" not in text
