"""Task labels (ipyparallel's ``label`` flag and keyword): they name tasks in their metadata
and travel to the controller in the request metadata, where the task records keep them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest


def test_map_labels_every_task(rc: Any) -> None:
    lv = rc.load_balanced_view()
    ar = lv.map_async(abs, [-1, -2, -3], label="mylabel_01")
    assert ar.get(timeout=30) == [1, 2, 3]
    assert [rc.metadata[m]["label"] for m in ar.msg_ids] == ["mylabel_01"] * 3
    assert ar.label == ["mylabel_01"] * 3
    assert lv.label is None  # the keyword labels this call only
    assert rc[:].map_sync(abs, [-4], label="direct") == [4]
    assert rc.metadata[rc.history[-1]]["label"] == "direct"
    assert lv.map(abs, [-5], block=True, label="blocking") == [5]
    assert rc.metadata[rc.history[-1]]["label"] == "blocking"


def test_the_label_flag_labels_apply_and_execute(rc: Any) -> None:
    dv = rc[:]
    assert dv.label is None
    with dv.temp_flags(label="flagged"):
        ar = dv.apply_async(os.getpid)
    assert dv.label is None
    ar.get(timeout=30)
    assert ar.label == ["flagged"] * 4
    lv = rc.load_balanced_view(label="lb")
    single = lv.apply_async(os.getpid)
    single.get(timeout=30)
    assert single.label == "lb"
    assert single.metadata.label == "lb"
    unlabelled = lv.apply_async(os.getpid)
    lv.label = None
    plain = lv.apply_async(os.getpid)
    plain.get(timeout=30)
    unlabelled.get(timeout=30)
    assert plain.label is None and unlabelled.label == "lb"


def test_execute_and_run_take_a_label(rc: Any, tmp_path: Path) -> None:
    dv = rc[:]
    ar = dv.execute("x_label = 1", block=False, label="cell")
    ar.get(timeout=30)
    assert ar.label == ["cell"] * 4
    script = tmp_path / "script.py"
    script.write_text("y_label = 2\n")
    ar = dv.run(str(script), block=False, label="script")
    ar.get(timeout=30)
    assert ar.label == ["script"] * 4
    assert dv.pull("y_label", block=True) == [2] * 4


def test_a_label_json_cannot_carry_is_refused_with_a_clear_error(rc: Any) -> None:
    dv = rc[:]
    with pytest.raises(TypeError, match=r"a task label must be a string .* found <object"):
        dv.label = object()
    with pytest.raises(TypeError, match="a task label must be a string"):
        dv.set_flags(label={1, 2})
    with pytest.raises(TypeError, match="a task label must be a string"):
        rc.load_balanced_view().map_async(abs, [1], label=object())
    assert dv.label is None
    dv.label = 7  # any JSON value will do
    try:
        ar = dv.apply_async(abs, -1)
        assert ar.get(timeout=30) == [1] * 4
        assert ar.label == [7] * 4
    finally:
        dv.label = None


def test_set_flags_returns_the_view_for_one_line_calls(rc: Any) -> None:
    # ipyparallel's test_label writes view.set_flags(label=...).apply_async(...)
    lv = rc.load_balanced_view()
    assert lv.set_flags(label="chained") is lv
    ar = lv.set_flags(label="chained-2").apply_async(abs, -3)
    assert ar.get(timeout=30) == 3
    assert ar.label == "chained-2"
    dv = rc[:]
    assert dv.set_flags(block=True) is dv
    dv.set_flags(block=False, label=None)
