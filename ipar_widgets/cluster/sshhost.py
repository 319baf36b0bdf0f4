"""The far end of an ssh launcher: starts N engines (or a controller) on its host and watches
the session.

``ssh HOST python3 -m ipar_widgets.cluster.sshhost N [engine arguments]`` runs this for
engines, ``... sshhost --controller [controller arguments]`` for a controller (whose
``--announce`` line reaches the launcher on the session's output).  Its
first line of input is a JSON object of environment variables for the engines (the
controller's connection info, :data:`~ipar_widgets.paths.CONNECTION_INFO_VARIABLE`), so no file
is copied to the host and the key never shows in a process listing.  Later lines are
commands: ``signal NUMBER`` forwards a signal to every engine, ``stop`` stops them.

The session is the lifeline.  When the input ends (the ssh client was killed, the network
went, the launcher stopped it) or this process gets SIGTERM/SIGHUP, every engine gets
SIGTERM, then SIGKILL after a grace period: nothing is left running on the host.  When all
engines have exited by themselves, this process exits too, with the first non-zero exit code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

__all__ = ["main"]

#: seconds engines get between SIGTERM and SIGKILL
GRACE = 5.0
#: seconds a controller gets: it stops its own engines first (their grace is 5 s)
CONTROLLER_GRACE = 15.0


class EngineGroup:
    """The engines of one host and the ways they end."""

    def __init__(
        self, n: int, command: list[str], env: dict[str, str], grace: float = GRACE
    ) -> None:
        self.procs = [
            subprocess.Popen(command, stdin=subprocess.DEVNULL, env=env) for _ in range(n)
        ]
        self.grace = grace
        self.stopping = threading.Event()

    def signal(self, signum: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signum)
                except ProcessLookupError:
                    pass

    def stop(self) -> None:
        """SIGTERM to every process; SIGKILL to those still there after ``grace`` seconds."""
        self.stopping.set()
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for proc in self.procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def wait(self) -> int:
        """Wait until every engine exited; the first non-zero exit code (0 if none)."""
        codes = [proc.wait() for proc in self.procs]
        return next((c for c in codes if c != 0), 0)


def _follow_commands(group: EngineGroup) -> None:
    """Read commands until the input ends, then stop the engines: the session is gone."""
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["signal"] and len(words) == 2 and words[1].lstrip("-").isdigit():
            group.signal(int(words[1]))
        elif words == ["stop"]:
            break
        elif words:
            print(f"ipar sshhost: ignoring unknown command {line.strip()!r}", file=sys.stderr)
    if not group.stopping.is_set():
        group.stop()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    controller = args[:1] == ["--controller"]
    if not args or not (args[0].isdigit() or controller):
        sys.exit(
            "usage: python -m ipar_widgets.cluster.sshhost N [engine arguments] (or "
            "--controller [controller arguments]), with a JSON object of environment variables "
            "on the first line of input"
        )
    first = sys.stdin.readline()
    try:
        extra = json.loads(first) if first.strip() else {}
    except ValueError:
        sys.exit(
            "ipar sshhost: the first line of input must be a JSON object of environment "
            f"variables, found {first[:80]!r}"
        )
    env = {**os.environ, **{str(k): str(v) for k, v in extra.items()}}
    if controller:
        command = [sys.executable, "-m", "ipar_widgets.controller", *args[1:]]
        group = EngineGroup(1, command, env, CONTROLLER_GRACE)
        what = "the controller"
    else:
        n = int(args[0])
        group = EngineGroup(n, [sys.executable, "-m", "ipar_widgets.engine", *args[1:]], env)
        what = f"{n} engine(s)"
    print(
        f"ipar sshhost: started {what} on {os.uname().nodename}: "
        + " ".join(str(p.pid) for p in group.procs),
        file=sys.stderr,
        flush=True,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=group.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    threading.Thread(target=_follow_commands, args=(group,), daemon=True).start()
    sys.exit(group.wait())


if __name__ == "__main__":
    main()
