"""A profile written for ipyparallel configures our engines: the profile's
``ipengine_config.py`` is read and ``c.IPEngine.startup_command`` / ``startup_script`` run on
every engine before it takes tasks (real engines started by a real controller)."""

from __future__ import annotations

from pathlib import Path

import pytest
from traitlets.config import Config

from ipar_widgets import paths
from ipar_widgets.engine.app import IPEngine

pytestmark = pytest.mark.timeout(120)


def test_the_profile_s_ipengine_config_runs_on_every_engine(  # type: ignore[no-untyped-def]
    make_cluster, profile: str, tmp_path: Path
) -> None:
    script = tmp_path / "engine_startup.py"
    script.write_text("import os\nfrom_script = ('script', os.getpid())\n")
    profile_dir = paths.profile_dir(profile, create=True)
    (profile_dir / "ipengine_config.py").write_text(
        "c = get_config()\n"
        "c.InteractiveShellApp.exec_lines = ['order = [\"exec_lines\"]']\n"
        f"c.IPEngine.startup_script = {str(script)!r}\n"
        "c.IPEngine.startup_command = 'order.append(\"startup_command\"); answer = 6 * 7'\n"
    )
    handle = make_cluster(n=2)
    rc = handle.rc
    rc.wait_for_engines(2, timeout=60)
    view = rc[:]
    assert view.pull("answer", block=True) == [42, 42]
    pids = view.apply_sync(__import__("os").getpid)
    assert view.pull("from_script", block=True) == [("script", pid) for pid in pids]
    # ipyparallel's order: the shell's startup code, then the script, then the command
    assert view.pull("order", block=True) == [["exec_lines", "startup_command"]] * 2


def test_a_failing_startup_command_is_logged_and_the_engine_runs(  # type: ignore[no-untyped-def]
    make_cluster, profile: str
) -> None:
    profile_dir = paths.profile_dir(profile, create=True)
    (profile_dir / "ipengine_config.py").write_text(
        "c.IPEngine.startup_command = 'raise ValueError(\"no data here\")'\n"
    )
    handle = make_cluster(n=1)
    rc = handle.rc
    rc.wait_for_engines(1, timeout=60)
    assert rc[0].apply_sync(lambda: 7) == 7
    logs = sorted(Path(handle.cluster._data["log_dir"]).glob("ipar-engine-*.log"))
    assert logs, "no engine log"
    text = "".join(log.read_text() for log in logs)
    assert "ValueError" in text and "no data here" in text, text[-2000:]


def test_ipyparallel_s_names_of_our_settings(capfd: pytest.CaptureFixture[str]) -> None:
    config = Config()
    config.IPEngine.sshserver = "gateway.example"  # ipyparallel's, meaningless here
    config.IPEngine.use_mpi = True
    config.IPEngine.url_file = "/somewhere/ipcontroller-engine.json"
    config.EngineApp.usage_interval = 2.0  # our own section still applies
    app = IPEngine(config=config)
    assert (app.mpi, app.file, app.usage_interval) == (
        True,
        "/somewhere/ipcontroller-engine.json",
        2.0,
    )
    assert app.config_file_name == "ipengine_config.py"
    said = capfd.readouterr().err
    assert "Config option `sshserver` not recognized by `IPEngine`." in said, said
