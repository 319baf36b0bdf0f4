"""Failed tasks grouped by what went wrong: the exception's type and its message's pattern.

A job whose inputs trip one bug fails the same way many times, each message differing only
in the numbers, ids and names it quotes ("bad input 17", "bad input 42").  The displays show
one line per *kind* of failure with a count (``ValueError: bad input <n> ×37``), so the
pattern folds what varies from task to task.  :func:`message_pattern` does it, in this order:

1. only the message's first line counts (a multi-line message's details vary);
2. quoted strings (``'...'``, ``"..."``) become ``<str>``;
3. UUIDs become ``<uuid>``; task ids (``5f3ca2b14e1f_17``, as an ``EngineError`` names the
   task its engine held) become ``<msg_id>``; ``0x``-prefixed hex numbers and bare hex strings of 8 or more
   characters that hold a digit and a letter (hashes, object ids) become ``<hex>``;
4. numbers (integers, decimals, exponents, with a sign) standing alone become ``<n>``
   (a digit inside a name, such as ``float64`` or ``x2``, stays);
5. runs of white space become one space, and the pattern is cut to
   :data:`PATTERN_LENGTH` characters.

The exception's type (``ename``) is never folded: a ``KeyError`` and a ``ValueError`` with the
same text are two groups.  :class:`FailureGroups` keeps the groups of one job up to date as
failures arrive and as retried tasks leave them; :class:`FailureGroup` is the immutable
picture a :class:`~ipar_widgets.progress.snapshot.Snapshot` carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "FailureGroup",
    "FailureGroups",
    "message_pattern",
    "groups_line",
    "ARGS_SHOWN",
    "PATTERN_LENGTH",
    "GROUPS_SHOWN",
]

#: characters of a message pattern kept (a longer one is cut, with "…")
PATTERN_LENGTH = 120
#: tasks per group whose arguments are fetched and shown
ARGS_SHOWN = 3
#: groups the widget and the static HTML list (the rest are counted in one line)
GROUPS_SHOWN = 10

_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")
_UUID = re.compile(
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
)
#: our msg_ids (session prefix, pid, counter: ``5f3ca2b14e1f_17``), as EngineError names them
_MSG_ID = re.compile(r"\b[0-9a-fA-F]{9,}_\d+\b")
_HEX = re.compile(
    r"\b0[xX][0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"
)
_NUMBER = re.compile(r"(?<![\w.<])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w>])")
_SPACE = re.compile(r"\s+")


def message_pattern(message: str) -> str:
    """The message with what varies between tasks folded (see the module docstring):
    ``"bad input 17"`` -> ``"bad input <n>"``, ``"'key-3'"`` -> ``"<str>"``."""
    first = message.strip().split("\n", 1)[0]
    text = _QUOTED.sub("<str>", first)
    text = _UUID.sub("<uuid>", text)
    text = _MSG_ID.sub("<msg_id>", text)
    text = _HEX.sub("<hex>", text)
    text = _NUMBER.sub("<n>", text)
    text = _SPACE.sub(" ", text).strip()
    if len(text) > PATTERN_LENGTH:
        text = text[: PATTERN_LENGTH - 1] + "…"
    return text


@dataclass(frozen=True)
class FailureGroup:
    """The failed tasks of a job that raised the same exception type with the same message
    pattern.

    ``count`` is how many tasks; ``engine_id``, ``evalue`` and ``traceback`` are those of the
    first of them to arrive; ``msg_ids`` the first :data:`ARGS_SHOWN` tasks'.  ``args`` are
    the reprs of those tasks' arguments (each at most 200 characters), in the same order,
    once fetched; ``args_note`` says why there are none ('' before they were asked for,
    "fetching arguments…" while they come, or the reason they cannot be had).
    """

    ename: str
    pattern: str
    count: int
    engine_id: int | None
    evalue: str
    traceback: str
    msg_ids: tuple[str, ...]
    args: tuple[str, ...] = ()
    args_note: str = ""

    @property
    def text(self) -> str:
        """``ValueError: bad input <n>`` (the type alone when the message is empty)."""
        return f"{self.ename}: {self.pattern}" if self.pattern else self.ename

    @property
    def label(self) -> str:
        """``ValueError: bad input <n> ×37``"""
        return f"{self.text} ×{self.count}"


def _describe(value: BaseException) -> tuple[str, str, str, int | None]:
    """(ename, evalue, traceback, engine id) of a task's failure, remote or local."""
    tb = getattr(value, "traceback", "") or ""
    engine_id = getattr(value, "engine_id", None)
    evalue = getattr(value, "evalue", None)  # a RemoteError's; '' is a message too
    return (
        str(getattr(value, "ename", None) or type(value).__name__),
        str(value) if evalue is None else str(evalue),
        tb if isinstance(tb, str) else "\n".join(tb),
        engine_id if isinstance(engine_id, int) else None,
    )


class _Group:
    __slots__ = ("ename", "pattern", "members", "order")

    def __init__(self, ename: str, pattern: str, order: int) -> None:
        self.ename = ename
        self.pattern = pattern
        #: msg_id -> (failure, engine id), in order of arrival
        self.members: dict[str, tuple[BaseException, int | None]] = {}
        self.order = order  # when the group first appeared


class FailureGroups:
    """The failure groups of one job, updated one task at a time (not thread-safe: the
    :class:`~ipar_widgets.progress.snapshot.ProgressTracker` calls it under its lock).

    Each failure is classified once, when it arrives (a few regular expressions over its
    message's first line); :meth:`groups` rebuilds the immutable tuple only after a change.
    """

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], _Group] = {}
        self._of: dict[str, tuple[str, str]] = {}  # msg_id -> its group's key
        self._seen = 0
        self._cache: tuple[FailureGroup, ...] | None = ()
        #: msg_id -> its arguments' repr, or None where they could not be had
        self._args: dict[str, str | None] = {}
        self._args_notes: dict[str, str] = {}  # msg_id -> why it has no repr (yet)

    def __len__(self) -> int:
        return len(self._of)

    def add(self, msg_id: str, value: BaseException, engine_id: int | None = None) -> None:
        """Count a task's failure in its group (once per msg_id)."""
        if msg_id in self._of:
            return
        ename, evalue, _, remote_engine = _describe(value)
        key = (ename, message_pattern(evalue))
        group = self._groups.get(key)
        if group is None:
            self._seen += 1
            group = self._groups[key] = _Group(ename, key[1], self._seen)
        group.members[msg_id] = (value, engine_id if engine_id is not None else remote_engine)
        self._of[msg_id] = key
        self._cache = None

    def remove(self, msg_id: str) -> bool:
        """Take a task out of its group (it was retried); False if it was in none."""
        key = self._of.pop(msg_id, None)
        if key is None:
            return False
        group = self._groups[key]
        del group.members[msg_id]
        if not group.members:
            del self._groups[key]
        self._args.pop(msg_id, None)
        self._args_notes.pop(msg_id, None)
        self._cache = None
        return True

    def failure_of(self, msg_id: str) -> tuple[BaseException, int | None] | None:
        """The failure and engine id of a grouped task (None if it is in no group)."""
        key = self._of.get(msg_id)
        return None if key is None else self._groups[key].members[msg_id]

    # -- arguments -----------------------------------------------------------------------------
    def wanting_arguments(self) -> list[str]:
        """The shown tasks (the first :data:`ARGS_SHOWN` of the first :data:`GROUPS_SHOWN`
        groups) whose arguments were not asked for yet."""
        return [
            msg_id
            for group in self.groups()[:GROUPS_SHOWN]
            for msg_id in group.msg_ids
            if msg_id not in self._args and msg_id not in self._args_notes
        ]

    def note_arguments(self, msg_ids: list[str], note: str) -> None:
        """Say why these tasks show no arguments now ("fetching arguments…", an error)."""
        for msg_id in msg_ids:
            if msg_id in self._of and msg_id not in self._args:
                self._args_notes[msg_id] = note
        self._cache = None

    def set_arguments(self, reprs: dict[str, str | None], note: str = "") -> None:
        """The fetched reprs (None: not available for that task, ``note`` says why)."""
        for msg_id, text in reprs.items():
            if msg_id not in self._of:
                continue  # retried meanwhile
            self._args[msg_id] = text
            if text is None:
                self._args_notes[msg_id] = note or "arguments not available"
            else:
                self._args_notes.pop(msg_id, None)
        self._cache = None

    # -- the picture ---------------------------------------------------------------------------
    def groups(self) -> tuple[FailureGroup, ...]:
        """The groups, most frequent first (ties: the one seen first)."""
        if self._cache is not None:
            return self._cache
        out = []
        for group in sorted(self._groups.values(), key=lambda g: (-len(g.members), g.order)):
            shown = list(group.members)[:ARGS_SHOWN]
            first_value, first_engine = group.members[shown[0]]
            _, evalue, traceback, _ = _describe(first_value)
            args = tuple(t for m in shown if (t := self._args.get(m)) is not None)
            notes = [self._args_notes[m] for m in shown if m in self._args_notes]
            out.append(
                FailureGroup(
                    ename=group.ename,
                    pattern=group.pattern,
                    count=len(group.members),
                    engine_id=first_engine,
                    evalue=evalue,
                    traceback=traceback,
                    msg_ids=tuple(shown),
                    args=args,
                    args_note="" if args and not notes else (notes[0] if notes else ""),
                )
            )
        self._cache = tuple(out)
        return self._cache


def groups_line(groups: tuple[FailureGroup, ...], limit: int = 3) -> str:
    """``ValueError: bad input <n> ×37, MemoryError ×2`` (the first ``limit`` groups, then
    "+k more")."""
    text = ", ".join(g.label for g in groups[:limit])
    if len(groups) > limit:
        text += f", +{len(groups) - limit} more"
    return text
