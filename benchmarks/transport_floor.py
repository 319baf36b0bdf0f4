"""The transport's share of a task's round trip, measured beside the round trip itself.

A task sent to one engine crosses four zmq hops: client -> controller -> engine, and back.
This script times the same four hops with no Python work at all between them: a plain
pyzmq client sends a message shaped like an apply request (routing frame, delimiter,
signature, four JSON parts, two small buffers) through a forwarding process (ROUTER to
ROUTER, as the controller) to an echoing process (DEALER, as an engine).  In the same run it
times ``rc[0].apply_sync(noop)`` on a 1-engine ipar_widgets cluster.  The difference is what
the three processes' own work costs; the floor is what no implementation on this transport
and machine can go below.

Usage:  python benchmarks/transport_floor.py [--calls 500] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from typing import Any

import zmq

#: an apply request's frames, with the sizes ipar_widgets sends for ``apply_sync(noop)``
MESSAGE = [
    b"d0",
    b"<IDS|MSG>",
    b"0" * 64,
    b"h" * 180,
    b"{}",
    b"{}",
    b'{"fn_frames":1}',
    b"f" * 200,
    b"a" * 20,
]
WAIT_MS = 10_000  # no hop may take this long; a lost message fails the run instead of hanging


def forward(ports: Any) -> None:
    """The controller's part: requests to the engine, replies to their client."""
    ctx = zmq.Context()
    front, back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    back.router_mandatory = True  # until the echo has connected, a send fails: retry it
    ports.send([s.bind_to_random_port("tcp://127.0.0.1") for s in (front, back)])
    poller = zmq.Poller()
    poller.register(front, zmq.POLLIN)
    poller.register(back, zmq.POLLIN)
    while True:
        for sock, _ in poller.poll():
            frames = sock.recv_multipart()
            if sock is front:  # [client, route, ...] -> [engine, client, ...]
                for _ in range(1000):
                    try:
                        back.send_multipart([b"engine", frames[0], *frames[2:]])
                        break
                    except zmq.ZMQError:  # EHOSTUNREACH: the echo is not connected yet
                        time.sleep(0.01)
            else:  # [engine, client, ...] -> [client, ...]
                front.send_multipart(frames[1:])


def echo(back_url: str) -> None:
    """The engine's part: send every message straight back."""
    sock = zmq.Context().socket(zmq.DEALER)
    sock.identity = b"engine"
    sock.connect(back_url)
    while True:
        sock.send_multipart(sock.recv_multipart())


def round_trips(call: Any, calls: int, reps: int) -> list[float]:
    """Median microseconds of one call, for each of ``reps`` batches of ``calls``."""
    medians = []
    for _ in range(reps):
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        medians.append(statistics.median(times) * 1e6)
    return medians


def measure_floor(calls: int, reps: int) -> list[float]:
    ctx = zmq.Context()
    ports_out, ports_in = mp.Pipe()
    procs = [mp.Process(target=forward, args=(ports_in,), daemon=True)]
    procs[0].start()
    client = ctx.socket(zmq.DEALER)
    client.linger = 0

    def call() -> None:
        client.send_multipart(MESSAGE)
        if not client.poll(WAIT_MS):
            raise TimeoutError("the echo did not come back within 10 s")
        client.recv_multipart()

    try:
        if not ports_out.poll(WAIT_MS / 1000):
            raise TimeoutError("the forwarding process did not start within 10 s")
        front_port, back_port = ports_out.recv()
        procs.append(mp.Process(target=echo, args=(f"tcp://127.0.0.1:{back_port}",), daemon=True))
        procs[1].start()
        client.connect(f"tcp://127.0.0.1:{front_port}")
        for _ in range(200):  # until both connections are up and warm
            call()
        return round_trips(call, calls, reps)
    finally:
        for p in procs:
            p.kill()
            p.join(5)
        client.close()


def noop() -> None:
    return None


def measure_ipar_widgets(calls: int, reps: int) -> list[float]:
    import ipar_widgets as ipp

    with ipp.Cluster(n=1, profile="transport-floor") as rc:
        engine = rc[0]
        for _ in range(200):
            engine.apply_sync(noop)
        return round_trips(lambda: engine.apply_sync(noop), calls, reps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="calls per repetition")
    parser.add_argument("--reps", type=int, default=5, help="repetitions, alternating")
    args = parser.parse_args()
    floor: list[float] = []
    ours: list[float] = []
    for _ in range(2):  # alternate, so drift of the machine hits both alike
        floor += measure_floor(args.calls, max(1, args.reps // 2))
        ours += measure_ipar_widgets(args.calls, max(1, args.reps // 2))
    result = {
        "floor_us": round(statistics.median(floor)),
        "ipar_widgets_us": round(statistics.median(ours)),
        "floor_reps_us": [round(v) for v in floor],
        "ipar_widgets_reps_us": [round(v) for v in ours],
    }
    result["own_work_us"] = result["ipar_widgets_us"] - result["floor_us"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
