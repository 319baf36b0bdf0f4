"""Large buffers through shared memory: the area, the fast path, the fallbacks, the cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from conftest import wait_until

import ipar_widgets as ipp
from ipar_widgets.protocol import serialize
from ipar_widgets.protocol.sharedmem import SharedArea, SharedMemoryError
from ipar_widgets.protocol.wire import Wire

MB = 1 << 20


@ipp.interactive
def backing(x: Any) -> str:
    """What holds an array's memory: 'mmap' when it came through shared memory."""
    import numpy

    base = x
    while isinstance(base, numpy.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return type(base).__name__


def area_files(area: dict[str, str]) -> list[str]:
    """The files of a cluster's shared-memory area (``cluster._data["shm"]``)."""
    return sorted(p.name for p in Path(area["dir"]).glob(area["prefix"] + "*"))


def segments_of(area: dict[str, str]) -> list[str]:
    """The area's segment files (its marker file left out)."""
    return [name for name in area_files(area) if name != area["prefix"]]


# -- the area on its own ------------------------------------------------------------------------
def test_area_stages_maps_and_removes_segments(tmp_path: Path) -> None:
    created = SharedArea.create(str(tmp_path), threshold=1000)
    assert created is not None
    area, info = created
    assert sorted(info) == ["dir", "prefix", "threshold", "token"]
    assert (tmp_path / info["prefix"]).read_text() == info["token"]
    assert oct((tmp_path / info["prefix"]).stat().st_mode & 0o777) == "0o600"
    assert SharedArea.join(info) is not None
    assert SharedArea.join({**info, "token": "0" * 32}) is None  # another host's /dev/shm
    assert SharedArea.join(None) is None

    small, big = b"x" * 999, np.arange(1000, dtype=np.int64)
    buffers, segments = area.stage([small, memoryview(big)])
    assert buffers[0] is small and buffers[1] == b""
    [[index, name, nbytes]] = segments
    assert (index, nbytes) == (1, 8000)
    assert oct((tmp_path / name).stat().st_mode & 0o777) == "0o600"

    mapped = area.attach(buffers, segments)
    copy = np.frombuffer(mapped[1], dtype=np.int64)
    assert np.array_equal(copy, big)
    copy[0] = -1  # private and writable: the file keeps the original
    assert np.frombuffer((tmp_path / name).read_bytes(), dtype=np.int64)[0] == 0

    with pytest.raises(SharedMemoryError, match=r"holds 8000 bytes, expected 8"):
        area.map(name, 8)
    with pytest.raises(
        SharedMemoryError,
        match=rf"expected a segment name of the form {info['prefix']}-<32 hex digits>, found '../etc/passwd'",
    ):
        area.map("../etc/passwd", 10)
    with pytest.raises(
        SharedMemoryError,
        match=r"expected 'shm' to list \[index, name, nbytes\] triples, found \[\[0, 'x'\]\]",
    ):
        area.attach([b""], [[0, "x"]])
    area.unlink([name])
    with pytest.raises(SharedMemoryError, match=f"segment {name} is gone"):
        area.map(name, 8000)

    area.stage([b"y" * 5000])
    assert area.remove_all() == 2  # the marker and the segment just staged
    assert list(tmp_path.iterdir()) == []


def test_a_buffer_that_cannot_be_written_travels_in_its_frame(tmp_path: Path) -> None:
    # a file size limit makes the write fail the way a full /dev/shm does (an OSError)
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from pathlib import Path
        from ipar_widgets.protocol.sharedmem import SharedArea
        area, info = SharedArea.create({str(tmp_path)!r}, threshold=1000)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        data = b"z" * 100_000
        buffers, segments = area.stage([data])
        assert segments == [] and buffers[0] is data, (segments, buffers[0][:10])
        print(sorted(p.name == info["prefix"] for p in Path({str(tmp_path)!r}).iterdir()))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[True]"  # only the marker: the failed segment was removed


# -- through a cluster --------------------------------------------------------------------------
def test_big_buffers_go_through_shared_memory_and_are_removed_when_done(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=1)
    area = handle.cluster._data["shm"]
    rc = handle.rc
    assert json.loads(Path(rc.url_file).read_text())["shm"]["threshold"] == MB
    e0 = rc[0]
    big = np.arange(4 * MB // 8, dtype=np.int64)
    small = np.arange(MB // 16, dtype=np.int64)  # half the threshold

    e0.push({"big": big, "small": small}, block=True)
    assert segments_of(area) == []  # the request's segment went when the task finished
    # (References: the engines' own arrays, not copies sent along with the function)
    on_engine = ipp.Reference("big"), ipp.Reference("small")
    assert e0.apply_sync(lambda a, b: (backing(a), backing(b)), *on_engine) == ("mmap", "Frame")
    assert e0.apply_sync(lambda a: (a.flags.writeable, int(a[-1])), on_engine[0]) == (
        True,
        big[-1],
    )

    ar = e0.apply_async(lambda a: a * 2, on_engine[0])
    doubled = ar.get(timeout=30)
    assert backing(doubled) == "mmap" and np.array_equal(doubled, big * 2)
    [kept] = segments_of(area)  # the result's segment stays with its record
    assert e0.pull("small", block=True).tolist() == small.tolist()
    assert segments_of(area) == [kept]  # below the threshold: no segment

    later = ipp.Client(profile=handle.cluster.profile)  # another client fetches the record
    try:
        fetched = later.get_result(ar.msg_ids[0]).get(timeout=30)
        assert backing(fetched) == "mmap" and np.array_equal(fetched, big * 2)
    finally:
        later.close()
    rc.purge_everything()
    wait_until(lambda: segments_of(area) == [], 10, what="the purged result's segment to go")
    assert np.array_equal(doubled, big * 2)  # mapped memory outlives the file

    handle.stop()
    assert area_files(area) == []


def test_a_broadcast_shares_its_segments_between_its_parts(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=2)
    area = handle.cluster._data["shm"]
    rc = handle.rc
    big = np.arange(2 * MB // 8, dtype=np.int64)
    bv = rc.broadcast_view(is_coalescing=True)

    bv.push({"big": big}, block=True)  # written once, mapped by both engines
    assert segments_of(area) == []  # removed when the last part finished
    assert bv.apply_sync(backing, ipp.Reference("big")) == ["mmap", "mmap"]

    ar = bv.apply_async(lambda a: a * 2, ipp.Reference("big"))
    doubled = ar.get(timeout=30)  # one answer naming both engines' segments
    assert [backing(d) for d in doubled] == ["mmap", "mmap"]
    assert all(np.array_equal(d, big * 2) for d in doubled)
    assert len(segments_of(area)) == 2  # each part's record keeps its result's segment
    rc.purge_everything()  # the client said it mapped them: they go with the records
    wait_until(lambda: segments_of(area) == [], 10, what="the parts' segments to go")
    assert all(np.array_equal(d, big * 2) for d in doubled)


def test_peers_off_the_controllers_host_get_frames(make_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=1)  # engine 0 shares the host
    data = handle.cluster._data
    area = data["shm"]
    # A client and an engine that cannot see the area (another host's /dev/shm) are made
    # with connection files whose token does not match the marker.
    files = {}
    for kind in ("client", "engine"):
        info = json.loads(Path(data[f"{kind}_file"]).read_text())
        info["shm"]["token"] = uuid.uuid4().hex
        files[kind] = tmp_path / f"{kind}.json"
        files[kind].write_text(json.dumps(info))
    engine = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ipar_widgets.engine",
            f"--file={files['engine']}",
            f"--profile-dir={data['profile_dir']}",
            "--controller-timeout=5",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    remote = ipp.Client(url_file=str(files["client"]))
    try:
        rc = handle.rc
        rc.wait_for_engines(2, timeout=30)
        big = np.arange(2 * MB // 8, dtype=np.int64)
        here, there = rc[0], rc[1]

        there.push({"big": big}, block=True)  # the controller inlines the segment
        assert there.apply_sync(backing, ipp.Reference("big")) == "Frame"
        back = there.pull("big", block=True)  # the remote engine answers in frames
        assert backing(back) == "Frame" and np.array_equal(back, big)

        remote[0].push({"mine": big + 1}, block=True)  # a remote client sends frames
        assert here.apply_sync(backing, ipp.Reference("mine")) == "Frame"
        ar = remote[0].apply_async(lambda a: a * 3, ipp.Reference("mine"))
        result = ar.get(timeout=30)  # engine 0 staged it; the controller inlined it
        assert backing(result) == "Frame" and np.array_equal(result, (big + 1) * 3)
        assert len(segments_of(area)) == 1  # the record keeps its segment

        for client in (rc, remote):  # any engine, any client: the data arrives intact
            lb = client.load_balanced_view()
            sums = lb.map_sync(lambda a: int(a.sum()), [big * k for k in range(1, 9)])
            assert sums == [int(big.sum()) * k for k in range(1, 9)]

        # a broadcast: engine 1's part is inlined, engine 0's maps the segment
        rc.broadcast_view().push({"both": big}, block=True)
        assert rc.broadcast_view().apply_sync(backing, ipp.Reference("both")) == [
            "mmap",
            "Frame",
        ]
        # a gathered answer to a remote client carries every segment in its frames
        gathered = remote.broadcast_view(is_coalescing=True).pull("both", block=True)
        assert [backing(g) for g in gathered] == ["Frame", "Frame"]
        assert all(np.array_equal(g, big) for g in gathered)

        remote.purge_everything()  # no local receiver is mapping it: it goes at once
        wait_until(lambda: segments_of(area) == [], 10, what="the purged segment to go")
    finally:
        remote.close()
        engine.kill()
        engine.wait(10)


def test_bad_segment_names_are_refused_and_the_cluster_keeps_serving(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=1)
    data = handle.cluster._data
    wire = Wire(json.loads(Path(data["client_file"]).read_text())["key"].encode())
    content, buffers = serialize.pack_apply(serialize.pack_function(len), [b""], {})
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.identity = b"probe"
    sock.connect(f"tcp://127.0.0.1:{data['ports']['client']}")
    try:
        victim = Path(data["profile_dir"]) / "victim.txt"
        victim.write_text("keep me")
        metadata = {"shm": [[1, str(victim), 7]]}
        _, frames = wire.build(
            "apply_request", content, metadata=metadata, idents=[b"d0"], buffers=buffers
        )
        sock.send_multipart(frames)
        assert sock.poll(30_000), "no reply to the apply_request within 30 s"
        reply = wire.decode(sock.recv_multipart())
        prefix = data["shm"]["prefix"]
        assert reply.content["status"] == "error"
        assert reply.content["ename"] == "SharedMemoryError"
        assert reply.content["evalue"] == (
            f"expected a segment name of the form {prefix}-<32 hex digits>, found {str(victim)!r}"
        )
        assert reply.content["engine_info"]["engine_id"] == 0
        assert victim.read_text() == "keep me"  # the controller did not remove it either
        assert handle.rc[0].apply_sync(lambda: "still serving") == "still serving"
    finally:
        sock.close()


def test_a_killed_controllers_segments_are_removed_by_stop(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=1)
    area = handle.cluster._data["shm"]
    big = handle.rc[0].apply_sync(lambda: bytearray(2 * MB))
    assert len(big) == 2 * MB and len(segments_of(area)) == 1
    os.kill(handle.pid, signal.SIGKILL)
    handle.stop()
    assert area_files(area) == []


def test_shared_memory_can_be_turned_off(make_cluster) -> None:  # type: ignore[no-untyped-def]
    handle = make_cluster(n=1, controller_args=["--ControllerApp.shared_memory=False"])
    assert "shm" not in json.loads(Path(handle.rc.url_file).read_text())
    assert handle.cluster._data["shm"] is None
    big = np.arange(2 * MB // 8, dtype=np.int64)
    handle.rc[0].push({"big": big}, block=True)
    assert handle.rc[0].apply_sync(backing, ipp.Reference("big")) == "Frame"
    assert np.array_equal(handle.rc[0].pull("big", block=True), big)
