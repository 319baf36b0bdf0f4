"""What the engines cost as the displays show it: CPU and memory per engine and in total.

The numbers are the engines' own usage reports (engine/usage.py), which the controller
keeps and puts in its status (``rc.status()["engines"][i]["cpu"]``, ``["costs"]``); the
progress display reads them with the placement it asks for anyway (placement.py), so
showing them costs no extra request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..enginedeath import format_bytes

__all__ = ["EngineCost", "format_bytes", "format_cpu", "total_line"]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


@dataclass(frozen=True)
class EngineCost:
    """One engine's (or the cluster's) usage: ``cpu`` in percent of one core over the last
    report interval, memory in bytes (``rss`` resident now, ``peak_rss`` the most it was,
    ``gpu_memory`` where nvidia-smi reports it).  None where not reported."""

    cpu: float | None = None
    rss: int | None = None
    peak_rss: int | None = None
    gpu_memory: int | None = None

    @classmethod
    def from_status(cls, info: Mapping[str, Any]) -> EngineCost | None:
        """From an engine's entry of the controller's status (or its ``costs`` totals);
        None when it reported nothing (reports off, or none yet)."""
        cpu, rss = _number(info.get("cpu")), _number(info.get("rss"))
        if cpu is None and rss is None:
            return None
        peak, gpu = _number(info.get("peak_rss")), _number(info.get("gpu_memory"))
        return cls(
            cpu=cpu,
            rss=int(rss) if rss is not None else None,
            peak_rss=int(peak) if peak is not None else None,
            gpu_memory=int(gpu) if gpu is not None else None,
        )

    @property
    def memory_text(self) -> str:
        """``312 MB`` (with ``, GPU 2.1 GB`` where there is GPU memory)."""
        text = format_bytes(self.rss) if self.rss is not None else ""
        if self.gpu_memory is not None:
            text += f", GPU {format_bytes(self.gpu_memory)}"
        return text


def format_cpu(cpu: float | None) -> str:
    """``97%`` of one core (``''`` when unknown); a multi-threaded engine can pass 100%."""
    return "" if cpu is None else f"{cpu:.0f}%"


def total_line(total: EngineCost | None, engines: int) -> str:
    """``cluster: 4 engines, CPU 153%, memory 1.2 GB (engines' peaks 1.5 GB)`` ('' without reports)."""
    if total is None:
        return ""
    parts = [f"cluster: {engines} engine{'s' if engines != 1 else ''}"]
    if total.cpu is not None:
        parts.append(f"CPU {format_cpu(total.cpu)}")
    if total.rss is not None:
        peak = (
            f" (engines' peaks {format_bytes(total.peak_rss)})"
            if total.peak_rss is not None
            else ""
        )
        parts.append(f"memory {format_bytes(total.rss)}{peak}")
    if total.gpu_memory is not None:
        parts.append(f"GPU memory {format_bytes(total.gpu_memory)}")
    return ", ".join(parts)
