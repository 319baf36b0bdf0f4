"""The engine death report, and replacing local engines that died: real clusters, real
deaths (SIGKILL, os._exit, the kernel's OOM killer in a memory cgroup), bounded waits."""

from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import wait_until
from enginetasks import hold_memory
from memcgroup import MemoryCgroup, writable_hierarchy
from traitlets import TraitError

import ipar_widgets as ipp
from ipar_widgets import paths
from ipar_widgets.enginedeath import EngineDeath, format_bytes
from ipar_widgets.progress import ProgressTracker
from ipar_widgets.server.operations import deaths_json
from ipar_widgets.widgets.html import progress_html, progress_text

MB = 1_000_000
#: the memory cgroup hierarchy the OOM tests use (v1 or v2), or why there is none
MEMORY_CGROUPS, NO_MEMORY_CGROUPS = writable_hierarchy()
needs_memory_cgroups = pytest.mark.skipif(
    MEMORY_CGROUPS is None, reason=f"needs a writable memory cgroup hierarchy: {NO_MEMORY_CGROUPS}"
)


@ipp.interactive
def killed_by_sigkill(nbytes: int, go: str) -> None:
    """Hold ``nbytes``, say so, wait for the file ``go`` (the test makes it once a usage
    report named this function), then die."""
    import os
    import signal
    import sys
    import time

    block = bytearray(nbytes)
    for i in range(0, nbytes, 4096):
        block[i] = 1
    print("holding the memory; about to die")
    sys.stdout.flush()
    deadline = time.monotonic() + 30
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the test did not create {go} within 30 s")
        time.sleep(0.02)
    os.kill(os.getpid(), signal.SIGKILL)


@ipp.interactive
def exits_with_3() -> None:
    import os

    os._exit(3)


@ipp.interactive
def eats_memory_in_cgroup(cgroup: str, nbytes: int, go: str) -> None:
    """Move into a memory cgroup, wait for the file ``go`` (the test makes it once a usage
    report came from there), outgrow the cgroup's limit."""
    import os
    import sys
    import time

    with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
    print("in the small cgroup now")
    sys.stdout.flush()
    deadline = time.monotonic() + 30
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the test did not create {go} within 30 s")
        time.sleep(0.02)
    block = bytearray(nbytes)
    for i in range(0, nbytes, 4096):
        block[i] = 1


def reported(rc: ipp.Client, engine_id: int, **fields: object) -> bool:
    """Whether the controller's latest usage report of an engine has these values."""
    [info] = [e for e in rc.status()["engines"] if e["id"] == engine_id]
    return all(info[key] == value for key, value in fields.items())


def go_once_reported(
    rc: ipp.Client,
    ar: ipp.AsyncResult,
    go: Path,
    output: str | None,
    engine_id: int = 0,
    **fields: object,
) -> None:
    """Let a task on ``engine_id`` go on (create ``go``) once the controller has what the
    death report relies on: the task's printed ``output`` (the client got it from the
    controller, which records it first) and a usage report from the engine with ``fields``
    (the function it ran, its cgroup, that cgroup's OOM kills)."""
    if output is not None:
        wait_until(lambda: output in ar.stdout, 10, 0.02, f"the task's {output!r}")
    wait_until(
        lambda: reported(rc, engine_id, **fields),
        10,
        0.05,
        f"a usage report of engine {engine_id} with {fields}",
    )
    go.touch()


def engine_error_of(ar: ipp.AsyncResult) -> ipp.EngineError:
    with pytest.raises(ipp.EngineError) as info:
        ar.get(timeout=60)
    return info.value


def test_sigkill_report_in_error_client_widget_and_panel(make_cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rc = make_cluster(n=2).rc
    rc.wait_for_engines(2, timeout=30)
    go = tmp_path / "go"
    ar = rc[0].apply_async(killed_by_sigkill, 150 * 1024 * 1024, str(go))
    go_once_reported(rc, ar, go, "holding the memory; about to die", function="killed_by_sigkill")
    err = engine_error_of(ar)
    msg_id = ar.msg_ids[0]
    text = str(err)
    assert text.startswith(
        f"[0:apply] EngineError: engine 0 died while it held task {msg_id} (running "
        "killed_by_sigkill): killed by SIGKILL; pid "
    )
    assert "holding the memory; about to die" in text  # its last printed line
    death = err.death
    assert death is not None
    assert (err.signal, err.exit_code, err.oom) == ("SIGKILL", None, False)
    assert death.task == msg_id and death.function == "killed_by_sigkill"
    assert death.local and death.peak_rss_source == "wait4"
    assert err.peak_rss is not None and err.peak_rss >= 150 * 1024 * 1024
    assert f"peak memory {format_bytes(err.peak_rss)} (exact, from wait4)" in text
    assert err.output_tail == ("holding the memory; about to die",)
    assert death.log_path.endswith(".log") and death.log_tail  # the engine's own log, too

    # the client keeps it (from the reply; the notice may come a moment later)
    assert rc.engine_deaths[0] == death
    wait_until(lambda: rc.ids == [1], 5, what="the engine_unregistered notice")
    assert rc.engine_deaths[0] == death

    # the widget's row of the dead engine
    snap = ProgressTracker(ar).snapshot()
    [row] = snap.engines
    summary = f"died: killed by SIGKILL, peak {format_bytes(err.peak_rss)}"
    assert (row.engine_id, row.failed, row.death, row.replaced_by) == (0, 1, summary, None)
    html = progress_html(snap, style=False)
    assert '<tr class="ipar-dead">' in html
    assert f"killed by SIGKILL, peak {format_bytes(err.peak_rss)}</td>" in html
    assert f"killed by SIGKILL, peak {format_bytes(err.peak_rss)}" in progress_text(snap)

    # the lab panel's server side
    [shown] = deaths_json(rc.status())
    assert shown["engine_id"] == 0 and shown["summary"] == summary
    assert shown["report"] == death.describe()


def test_exit_code_is_reported(make_cluster) -> None:  # type: ignore[no-untyped-def]
    rc = make_cluster(n=1).rc
    rc.wait_for_engines(1, timeout=30)
    ar = rc[0].apply_async(exits_with_3)
    err = engine_error_of(ar)
    assert f"engine 0 died while it held task {ar.msg_ids[0]}: exited with code 3; pid " in str(err)
    assert (err.exit_code, err.signal, err.oom) == (3, None, False)
    assert err.death is not None and err.death.how == "exit"


@needs_memory_cgroups
def test_the_kernels_oom_killer_is_named(make_cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A real OOM kill: the engine moves into a memory cgroup limited to 150 MiB and
    allocates 400 MiB; the kernel kills it, and the cgroup's oom_kill count rises."""
    assert MEMORY_CGROUPS is not None
    with MemoryCgroup(MEMORY_CGROUPS, 150 << 20) as memory:
        cgroup = memory.path
        rc = make_cluster(n=1).rc
        rc.wait_for_engines(1, timeout=30)
        go = tmp_path / "go"
        ar = rc[0].apply_async(eats_memory_in_cgroup, str(cgroup), 400 << 20, str(go))
        go_once_reported(rc, ar, go, "in the small cgroup now", cgroup=str(cgroup), oom_kills=0)
        err = engine_error_of(ar)
        text = str(err)
        assert "killed by the kernel's OOM killer (SIGKILL)" in text
        evidence = f"evidence: the oom_kill count of its memory cgroup {cgroup} rose from 0 to 1"
        assert evidence in text
        assert f"limit {format_bytes(150 << 20)} (the memory limit of its cgroup {cgroup})" in text
        assert "in the small cgroup now" in text
        assert err.oom and err.signal == "SIGKILL"
        assert memory.oom_kills() == 1
        wait_until(lambda: 0 in rc.engine_deaths, 5, what="the death notice")
        assert rc.engine_deaths[0].cause == "killed by the kernel's OOM killer (SIGKILL)"


def test_restart_engines_replaces_dead_local_engines_up_to_the_limit(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=2, restart_engines=True, max_engine_restarts=1)
    cluster, rc = handle.cluster, handle.rc
    assert cluster.replace_dead_engines is True and cluster.max_engine_restarts == 1
    rc.wait_for_engines(2, timeout=30)
    ar = rc[0].apply_async(exits_with_3)
    err = engine_error_of(ar)
    assert "a replacement is starting" in str(err)
    wait_until(lambda: rc.ids == [1, 2], 30, 0.05, "the replacement engine 2")
    wait_until(
        lambda: 0 in rc.engine_deaths and rc.engine_deaths[0].replaced_by == 2,
        5,
        what="the death record naming the replacement",
    )
    assert len(rc.ids) == 2
    [row] = ProgressTracker(ar).snapshot().engines
    assert (
        row.death
        == "died: exited with code 3, peak "
        + format_bytes(rc.engine_deaths[0].peak_rss)
        + ", replaced by engine 2"
    )
    assert row.replaced_by == 2
    assert "replaced by engine 2</td>" in progress_html(ProgressTracker(ar).snapshot())
    assert rc[2].apply_sync(lambda: 6 * 7) == 42  # the replacement works

    # the restart is used up: the next dead engine is not replaced
    err = engine_error_of(rc[2].apply_async(exits_with_3))
    assert "not replaced: max_engine_restarts reached" in str(err)
    wait_until(lambda: 2 in rc.engine_deaths, 5, what="the second death notice")
    assert rc.engine_deaths[2].replacement == "limit" and rc.engine_deaths[2].restarts_left == 0
    status = rc.status()
    assert status["engines_starting"] == 0 and rc.ids == [1]

    # an engine stopped on purpose leaves no death record and gets no replacement
    cluster.stop_engine_sync(1)
    wait_until(lambda: rc.ids == [], 30, 0.05, "engine 1 stopped")
    assert 1 not in rc.engine_deaths and rc.status()["engines_starting"] == 0


def test_a_replacement_that_never_registers_is_reported(make_cluster, profile) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=1, restart_engines=True, max_engine_restarts=2)
    rc = handle.rc
    rc.wait_for_engines(1, timeout=30)
    # from now on an engine process exits at start-up (the profile's config is read by each)
    config = paths.profile_dir(profile) / "ipython_config.py"
    config.write_text("raise SystemExit('broken engine configuration')\n")
    ar = rc[0].apply_async(exits_with_3)
    assert "a replacement is starting" in str(engine_error_of(ar))
    wait_until(
        lambda: 0 in rc.engine_deaths and rc.engine_deaths[0].replacement == "failed",
        30,
        0.05,
        "the notice that the replacement failed",
    )
    death = rc.engine_deaths[0]
    assert re.fullmatch(
        r"its process exited with code 1 before registering \(log: \S+\.log\)",
        death.replacement_error,
    ), death.replacement_error
    words = f"its replacement failed: {death.replacement_error}"
    assert death.replacement_words == words
    [row] = ProgressTracker(ar).snapshot().engines
    assert row.death.endswith(", " + words) and row.replaced_by is None
    # the controller's own record (what the lab panel and late clients read) says the same
    [shown] = deaths_json(rc.status())
    assert shown["engine_id"] == 0 and shown["summary"].endswith(", " + words), shown
    assert rc.ids == [] and rc.status()["engines_starting"] == 0  # not started again


def test_restart_engines_keyword_and_method() -> None:
    cluster = ipp.Cluster(restart_engines=True, load_profile=False)
    assert cluster.replace_dead_engines is True
    assert callable(cluster.restart_engines)  # ipyparallel's method keeps its name
    assert ipp.Cluster(load_profile=False).replace_dead_engines is False
    with pytest.raises(TraitError) as info:
        ipp.Cluster(restart_engines="yes", load_profile=False)
    assert str(info.value) == (
        "Cluster(restart_engines=...): expected True or False (replace local engines that "
        "die), found 'yes'"
    )
    with pytest.raises(TraitError) as info:
        ipp.Cluster(restart_engines=True, max_engine_restarts=-1, load_profile=False)
    assert str(info.value) == (
        "Cluster.max_engine_restarts: expected a number of restarts (0 or more), found -1"
    )


def test_an_engine_the_controller_did_not_start(make_cluster) -> None:  # type: ignore[no-untyped-def]
    """An engine started elsewhere (here by the test: as an ssh or batch launcher would)
    is not the controller's child: the report says what the controller saw."""
    handle = make_cluster(n=0)
    rc = handle.rc
    engine_file = handle.cluster._data["engine_file"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ipar_widgets.engine", f"--file={engine_file}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        rc.wait_for_engines(1, timeout=30)
        [engine_id] = rc.ids
        wait_until(
            lambda: rc.status()["engines"][0]["peak_rss"] is not None, 5, what="a usage report"
        )
        ar = rc[engine_id].apply_async(time.sleep, 30)
        wait_until(lambda: rc.status()["engines"][0]["running"] == ar.msg_ids[0], 10)
        os.kill(proc.pid, signal.SIGKILL)
        err = engine_error_of(ar)
        death = err.death
        assert isinstance(death, EngineDeath)
        assert not death.local and death.how == "connection" and death.signal is None
        assert death.peak_rss_source == "usage reports" and death.peak_rss is not None
        assert death.peak_rss > 10 * MB
        assert f"died while it held task {ar.msg_ids[0]}: its connection closed" in str(err)
        assert f"peak memory {format_bytes(death.peak_rss)} (usage reports)" in str(err)
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.browser
@pytest.mark.timeout(240)
def test_the_lab_panel_shows_costs_and_deaths(make_cluster, page, lab, profile, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """In JupyterLab's "Parallel Clusters" panel: CPU and memory per engine with the
    cluster's total, and the engine that died with its report (light and dark)."""
    from lab import open_lab, save_screenshot

    rc = make_cluster(n=2).rc
    rc.wait_for_engines(2, timeout=30)
    rc[1].apply_sync(hold_memory, 200 * 1024 * 1024)
    go = tmp_path / "go"
    ar = rc[0].apply_async(killed_by_sigkill, 50 * 1024 * 1024, str(go))
    go_once_reported(rc, ar, go, "holding the memory; about to die", function="killed_by_sigkill")
    err = engine_error_of(ar)
    assert err.death is not None
    wait_until(lambda: rc.ids == [1], 5, what="engine 0 gone")

    open_lab(page, lab)
    page.click('.jp-SideBar.jp-mod-left li[data-id="ipar-clusters"]')
    card = page.locator(f'#ipar-clusters li.ipar-cluster[data-profile="{profile}"]')
    usage = card.locator('tr.ipar-engine[data-engine-id="1"] td.ipar-usage')
    usage.wait_for(timeout=60_000)
    assert card.locator("th.ipar-usage-col").inner_text() == "CPU/mem"
    memory = usage.locator(".ipar-memory").inner_text()
    value, unit = memory.split()
    assert unit == "MB" and int(value) >= 200 * 1.048  # 200 MiB held, in decimal MB
    cpu = usage.locator(".ipar-cpu").inner_text()
    assert cpu.endswith("%") and 0 <= int(cpu[:-1]) < 50  # it holds memory, it is idle
    total = card.locator("tfoot tr.ipar-costs-total")
    assert total.locator("th").inner_text() == "Cluster total"
    assert total.locator("td.ipar-usage .ipar-memory").inner_text() == memory  # one engine
    assert total.locator("td.ipar-usage .ipar-cpu").inner_text() == cpu

    death = card.locator('li.ipar-death[data-engine-id="0"]')
    summary = f"Engine 0 died: killed by SIGKILL, peak {format_bytes(err.peak_rss)}"
    assert death.locator("summary").inner_text() == summary
    assert death.get_attribute("data-oom") == "false"
    death.locator("summary").click()
    report = death.locator("pre.ipar-death-report").inner_text()
    assert report == err.death.describe()
    assert f"task {ar.msg_ids[0]} (running killed_by_sigkill): killed by SIGKILL" in report
    # the card's background is the theme's --jp-layout-color0: white, then Dark's #111
    background = """sel => {
        const card = document.querySelector(sel);
        return card === null ? null : getComputedStyle(card).backgroundColor;
    }"""
    selector = f'#ipar-clusters li.ipar-cluster[data-profile="{profile}"]'
    assert page.evaluate(background, selector) == "rgb(255, 255, 255)"
    save_screenshot(page, "panel-engine-costs-and-death-light")
    page.evaluate(
        "() => window.jupyterapp.commands.execute('apputils:change-theme', "
        "{theme: 'JupyterLab Dark'})"
    )
    page.wait_for_selector('body[data-jp-theme-name="JupyterLab Dark"]', state="attached")
    # the attribute changes before the theme's CSS applies: wait for the colour itself
    page.wait_for_function(
        f"sel => ({background})(sel) === 'rgb(17, 17, 17)'", arg=selector, timeout=15_000
    )
    save_screenshot(page, "panel-engine-costs-and-death-dark")


@ipp.interactive
def killed_near_the_cgroup_limit(cgroup: str, nbytes: int, go: str) -> None:
    """Move into a memory cgroup, fill most of its limit (not beyond), wait for the file
    ``go`` (the test makes it once a usage report named the cgroup), then die by SIGKILL."""
    import os
    import signal
    import time

    with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
    block = bytearray(nbytes)
    for i in range(0, nbytes, 4096):
        block[i] = 1
    deadline = time.monotonic() + 30
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the test did not create {go} within 30 s")
        time.sleep(0.02)
    os.kill(os.getpid(), signal.SIGKILL)


@needs_memory_cgroups
def test_a_sigkill_near_the_memory_limit_counts_as_oom_evidence(make_cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The other evidence path: no OOM kill is counted, but the engine was SIGKILLed with its
    peak memory (wait4) at 90% or more of its cgroup's limit.  (This is the heuristic: a
    deliberate SIGKILL that close to the limit is reported as the OOM killer's too.)"""
    assert MEMORY_CGROUPS is not None
    limit = 300 << 20
    with MemoryCgroup(MEMORY_CGROUPS, limit) as memory:
        cgroup = memory.path
        rc = make_cluster(n=1).rc
        rc.wait_for_engines(1, timeout=30)
        go = tmp_path / "go"
        ar = rc[0].apply_async(killed_near_the_cgroup_limit, str(cgroup), 250 << 20, str(go))
        go_once_reported(rc, ar, go, None, cgroup=str(cgroup), oom_kills=0)
        err = engine_error_of(ar)
        death = err.death
        assert death is not None and death.oom and err.signal == "SIGKILL"
        assert memory.oom_kills() == 0
        assert death.peak_rss is not None and death.peak_rss >= 0.9 * limit
        assert death.oom_evidence == (
            f"its peak memory {format_bytes(death.peak_rss)} reached "
            f"{death.peak_rss / limit:.0%} of the memory limit of its cgroup {cgroup}, "
            f"{format_bytes(limit)}"
        )
        assert pickle.loads(pickle.dumps(err)).death == death  # the record survives pickling
