"""Engines that wait for a go file before they start: a test sees a cluster's start while
its engines are still missing, then lets them register.

The gate is a ``sitecustomize`` module on ``PYTHONPATH``: every Python process started with
that environment (the kernel, the controller, the engines it spawns) imports it, and only
an engine process (``python -m ipar_widgets.engine``) waits, for at most ``LIMIT`` seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

__all__ = ["gate_engines", "LIMIT"]

#: how long a gated engine waits for the go file at most
LIMIT = 60.0

SITECUSTOMIZE = f"""
import os, sys, time

_go = os.environ.get("IPAR_TEST_ENGINE_GATE")
if _go and "ipar_widgets.engine" in sys.orig_argv:
    _deadline = time.monotonic() + {LIMIT}
    while not os.path.exists(_go) and time.monotonic() < _deadline:
        time.sleep(0.02)
"""


def gate_engines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Set this process's environment (inherited by what it starts) so engines wait for the
    returned go file; creating it lets them go.  The monkeypatch restores the environment."""
    site = tmp_path / "engine-gate"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    go = tmp_path / "engines-go"
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(site) + (os.pathsep + path if path else ""))
    monkeypatch.setenv("IPAR_TEST_ENGINE_GATE", str(go))
    return go
