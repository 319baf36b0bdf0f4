"""A stand-in for a batch scheduler's commands (sbatch, qstat, bjobs, condor_q...).

Run as ``fake_scheduler.py NAME ARGS...`` (tests put one small wrapper per NAME on PATH).
It appends ``{"name", "argv", "stdin"}`` as a JSON line to ``$FAKE_SCHEDULER_DIR/calls.jsonl``,
then prints ``NAME.out`` to stdout and ``NAME.err`` to stderr, and exits with the number in
``NAME.rc`` (0 when absent): the test writes those files to say what the scheduler answers.
Files named ``NAME+ARG.*`` answer instead when ARG is one of the arguments (``qstat+-x.out``
for ``qstat -x -f 123``), so one command can answer two questions differently.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from pathlib import Path


def main() -> int:
    name, argv = sys.argv[1], sys.argv[2:]
    here = Path(os.environ["FAKE_SCHEDULER_DIR"])
    stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    with open(here / "calls.jsonl", "a") as calls:
        calls.write(json.dumps({"name": name, "argv": argv, "stdin": stdin}) + "\n")

    key = next(
        (
            f"{name}+{a}"
            for a in argv
            if "/" not in a and list(here.glob(glob.escape(f"{name}+{a}") + ".*"))
        ),
        name,
    )

    def said(suffix: str) -> str:
        path = here / f"{key}.{suffix}"
        return path.read_text() if path.exists() else ""

    sys.stdout.write(said("out"))
    sys.stderr.write(said("err"))
    return int(said("rc").strip() or 0)


if __name__ == "__main__":
    sys.exit(main())
