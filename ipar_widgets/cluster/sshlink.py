"""The near end of an ssh engine launcher: runs ``ssh`` and holds its input open.

``python -m ipar_widgets.cluster.sshlink ssh [options] HOST COMMAND`` runs ssh with a pipe as
its input, writes the JSON line of environment variables that the far end
(``sshhost.py``) gives its engines (the variables this process got, named in
``IPAR_SSH_FORWARD``), and then keeps the pipe open for as long as it lives.  So:

- the launcher's process exiting (``ipar start`` returns) changes nothing: this process stays;
- SIGTERM here sends ``stop`` (the engines get SIGTERM, then this exits when ssh does);
- SIGINT, SIGUSR1, SIGUSR2 and SIGQUIT are forwarded to the engines (``signal N``);
- SIGKILL here closes the pipe, and the ssh client killed closes the session: either way the
  far end's input ends and it stops its engines, so a killed launcher leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from types import FrameType

__all__ = ["FORWARD_VARIABLE", "main"]

#: the environment variable naming (comma-separated) the variables to send to the engines
FORWARD_VARIABLE = "IPAR_SSH_FORWARD"

_FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT)


def main(argv: list[str] | None = None) -> None:
    command = sys.argv[1:] if argv is None else argv
    if not command:
        sys.exit("usage: python -m ipar_widgets.cluster.sshlink ssh [options] HOST COMMAND")
    names = [n for n in os.environ.get(FORWARD_VARIABLE, "").split(",") if n]
    payload = {name: os.environ[name] for name in names if name in os.environ}
    env = {k: v for k, v in os.environ.items() if k not in names and k != FORWARD_VARIABLE}
    ssh = subprocess.Popen(command, stdin=subprocess.PIPE, env=env)
    channel = ssh.stdin
    assert channel is not None

    def send(line: str) -> None:
        try:
            channel.write(line.encode() + b"\n")
            channel.flush()
        except (BrokenPipeError, ValueError):
            pass  # ssh is gone (or the channel closed): its exit ends this process too

    def on_term(signum: int, frame: FrameType | None) -> None:
        send("stop")

    def on_forwarded(signum: int, frame: FrameType | None) -> None:
        send(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    for signum in _FORWARDED_SIGNALS:
        signal.signal(signum, on_forwarded)
    send(json.dumps(payload))
    sys.exit(ssh.wait())


if __name__ == "__main__":
    main()
