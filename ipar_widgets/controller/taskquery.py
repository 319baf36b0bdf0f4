"""Queries over task records (``Client.db_query``): checked and normalised once, for every store.

A query is a dict of MongoDB-style tests, ``{field: value}`` (equal to) or
``{field: {"$op": value, ...}}`` (every test must hold), as ipyparallel's ``db_query`` takes
it.  :func:`parse_query` turns it into a :class:`Query`: a list of :class:`Condition`
(field, operator, value) with the dates parsed, which a store either evaluates itself
(:meth:`Query.matches`, for records in memory) or translates (a database store turns the
same conditions into its own query language).  Mistakes are refused here, with what was
expected, so no store has to guess what a malformed query meant.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from ..protocol.taskfields import BUFFER_FIELDS, DATE_FIELDS, DEFAULT_FIELDS, FIELDS, OPERATORS
from ..protocol.wire import parse_date

__all__ = ["BadQuery", "Condition", "Query", "parse_query", "parse_keys"]

_FIELDS = frozenset(FIELDS)
_ORDERED = {"$lt": operator.lt, "$gt": operator.gt, "$lte": operator.le, "$gte": operator.ge}
_LISTS = frozenset({"$in", "$nin"})


class BadQuery(ValueError):
    """A query or key selection that is not one; its text says what was expected."""


class Condition(NamedTuple):
    """One test of a record's field: ``op`` is one of ``OPERATORS``; a plain value is ``$eq``."""

    field: str
    op: str
    value: Any

    def holds(self, found: Any) -> bool:
        """Whether a record whose field is ``found`` passes this test.

        As in MongoDB, an ordering test never matches a field that is None or of another
        type than the value (``submitted < 5`` matches nothing, it does not fail).
        """
        op, value = self.op, self.value
        if op == "$eq":
            return bool(found == value)
        if op == "$ne":
            return bool(found != value)
        if op in _LISTS:
            if isinstance(value, str):  # a string operand: a substring test, as Python's `in`
                inside = isinstance(found, str) and found in value
            else:
                inside = found in value
            return inside if op == "$in" else not inside
        if op == "$exists":
            return (found is not None) is value
        if found is None:
            return False
        try:
            return bool(_ORDERED[op](found, value))
        except TypeError:
            return False


@dataclass(frozen=True)
class Query:
    """A checked query: every condition must hold."""

    conditions: tuple[Condition, ...]

    @property
    def fields(self) -> frozenset[str]:
        """The fields the conditions read (a store computes only these to match)."""
        return frozenset(c.field for c in self.conditions)

    @property
    def msg_ids(self) -> frozenset[str] | None:
        """The only msg_ids that can match, when a condition pins them (None: any may)."""
        chosen: frozenset[str] | None = None
        for c in self.conditions:
            if c.field != "msg_id":
                continue
            if c.op == "$eq":
                ids = frozenset([c.value]) if isinstance(c.value, str) else frozenset()
            elif c.op == "$in" and not isinstance(c.value, str):
                ids = frozenset(v for v in c.value if isinstance(v, str))
            else:
                continue
            chosen = ids if chosen is None else chosen & ids
        return chosen

    def matches(self, value_of: Callable[[str], Any]) -> bool:
        """Whether the record whose fields ``value_of(field)`` gives passes every condition."""
        for c in self.conditions:  # noqa: SIM110 (a loop, not all(): it runs once per record)
            if not c.holds(value_of(c.field)):
                return False
        return True


def _field(name: object) -> str:
    if not isinstance(name, str) or name not in _FIELDS:
        raise BadQuery(f"unknown task record field {name!r}; expected one of {', '.join(FIELDS)}")
    return name


def _date(field: str, value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            parsed = parse_date(value)
        except ValueError:
            pass
        else:
            assert parsed is not None
            return parsed
    raise BadQuery(
        f"{field!r} holds dates: expected a datetime or an ISO 8601 string to compare it "
        f"with, found {value!r}"
    )


def _condition(field: str, op: object, value: Any) -> Condition:
    if op not in OPERATORS:
        known = ", ".join(f"{k} ({v})" for k, v in OPERATORS.items())
        raise BadQuery(f"unknown operator {op!r} for {field!r}; expected one of: {known}")
    assert isinstance(op, str)
    if op in _LISTS:
        if isinstance(value, str) and field not in DATE_FIELDS:
            return Condition(field, op, value)  # ipyparallel evaluates `found in value`
        if not isinstance(value, (list, tuple)):
            raise BadQuery(
                f"{op} of {field!r} takes a list of values (or a string), found {value!r}"
            )
        if field in DATE_FIELDS:
            value = [_date(field, v) for v in value]
        return Condition(field, op, list(value))
    if op == "$exists":
        if not isinstance(value, bool):
            raise BadQuery(f"$exists of {field!r} takes true or false, found {value!r}")
        return Condition(field, op, value)
    if op in _ORDERED and value is None:
        raise BadQuery(f"{op} of {field!r} needs a value to compare with, found None")
    if field in DATE_FIELDS:
        value = _date(field, value)
    return Condition(field, op, value)


def parse_query(query: object) -> Query:
    """Check a ``db_query`` dict and normalise it (dates parsed, plain values as ``$eq``)."""
    if not isinstance(query, Mapping):
        raise BadQuery(
            "a query is a dict of {field: value} or {field: {'$op': value}}, "
            f"found {type(query).__name__} {query!r}"
        )
    conditions: list[Condition] = []
    for name, test in query.items():
        field = _field(name)
        if field in BUFFER_FIELDS:
            raise BadQuery(f"{field!r} holds binary frames and cannot be queried")
        if isinstance(test, Mapping) and any(str(k).startswith("$") for k in test):
            if not all(str(k).startswith("$") for k in test):
                raise BadQuery(
                    f"the test of {field!r} mixes operators and plain keys: {dict(test)!r}; "
                    "use either {'$op': value, ...} or a value to compare with"
                )
            conditions.extend(_condition(field, op, value) for op, value in test.items())
        else:
            conditions.append(_condition(field, "$eq", test))
    return Query(tuple(conditions))


def parse_keys(keys: object) -> tuple[str, ...]:
    """The fields to return: the given ones after ``msg_id`` (always there), or by default
    every field but the buffers."""
    if keys is None:
        return DEFAULT_FIELDS
    if isinstance(keys, str):
        keys = [keys]
    if not isinstance(keys, Sequence) or not keys:
        raise BadQuery(f"keys must be a field name or a non-empty list of them, found {keys!r}")
    chosen = ["msg_id"]
    for key in keys:
        field = _field(key)
        if field not in chosen:
            chosen.append(field)
    return tuple(chosen)
