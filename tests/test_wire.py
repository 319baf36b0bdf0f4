"""The wire codec: signing, verifying, and agreement with jupyter_client's Session."""

from __future__ import annotations

import hashlib
import hmac

import pytest
import zmq
from jupyter_client.session import Session

from ipar_widgets.protocol.wire import (
    DELIM,
    HmacSha256,
    InvalidMessage,
    Wire,
    parse_date,
    utcnow,
)

KEY = b"0123456789abcdef0123456789abcdef"


def test_build_and_decode_round_trip() -> None:
    wire = Wire(KEY)
    header, frames = wire.build(
        "apply_request", {"x": 1}, metadata={"m": "é"}, idents=[b"route"], buffers=[b"raw"]
    )
    assert frames[0] == b"route" and frames[1] == DELIM
    msg = wire.decode(frames)
    assert msg.idents == [b"route"]
    assert msg.header == header
    assert msg.content == {"x": 1}
    assert msg.metadata == {"m": "é"}
    assert [bytes(b) for b in msg.buffers] == [b"raw"]


@pytest.mark.parametrize("as_frame", [bytes, zmq.Frame], ids=["bytes", "zmq-frame"])
def test_a_reply_can_carry_the_request_header_frame_as_its_parent(as_frame) -> None:  # type: ignore[no-untyped-def]
    wire = Wire(KEY)
    request_header, request = wire.build("apply_request", {"x": 1})
    reply_header, reply = wire.build("apply_reply", {"status": "ok"}, parent=as_frame(request[2]))
    msg = wire.decode(reply)
    assert msg.parent_header == request_header
    assert msg.header == reply_header


@pytest.mark.parametrize("key_length", [0, 1, 32, 36, 63, 64, 65, 200])
def test_prepared_hmac_matches_the_standard_library(key_length: int) -> None:
    key = bytes(range(256))[:key_length]
    parts = [b'{"msg_id": "a"}', b"", b"\x00\xff" * 40, memoryview(b"tail")]
    expected = hmac.new(key, b"".join(bytes(p) for p in parts), hashlib.sha256).hexdigest()
    signer = HmacSha256(key)
    assert signer.hexdigest(parts) == expected.encode()
    assert signer.hexdigest(parts) == expected.encode()  # the prepared state is not consumed


@pytest.mark.parametrize(
    "tamper",
    [
        lambda f: f.__setitem__(2, b"0" * 64),  # wrong signature
        lambda f: f.__setitem__(2, b""),  # unsigned
        lambda f: f.__setitem__(6, b'{"x": 2}'),  # content changed after signing
    ],
    ids=["wrong-signature", "unsigned", "tampered-content"],
)
def test_tampered_messages_are_rejected(tamper) -> None:  # type: ignore[no-untyped-def]
    wire = Wire(KEY)
    _, frames = wire.build("apply_request", {"x": 1}, idents=[b"r"])
    tamper(frames)
    with pytest.raises(InvalidMessage, match="signature"):
        wire.decode(frames)


def test_other_key_is_rejected() -> None:
    _, frames = Wire(b"another key").build("execute_request", {"code": "1"})
    with pytest.raises(InvalidMessage, match="signature"):
        Wire(KEY).decode(frames)


@pytest.mark.parametrize(
    "frames",
    [[b"garbage"], [DELIM, b"sig"], [b"x", DELIM, b"s", b"{", b"{}", b"{}", b"{}"]],
    ids=["no-delimiter", "too-short", "bad-json"],
)
def test_malformed_messages_are_rejected(frames: list[bytes]) -> None:
    with pytest.raises(InvalidMessage):
        Wire(b"").decode(frames)


def test_jupyter_client_session_reads_our_messages_and_we_read_its() -> None:
    session = Session(key=KEY)
    wire = Wire(KEY)
    _, frames = wire.build("execute_request", {"code": "1+1"}, idents=[b"id"])
    idents, rest = session.feed_identities(frames)
    msg = session.deserialize(rest)
    assert idents == [b"id"]
    assert msg["content"] == {"code": "1+1"}
    assert msg["header"]["msg_type"] == "execute_request"

    theirs = session.serialize(session.msg("status", {"execution_state": "idle"}), ident=b"topic")
    decoded = wire.decode(theirs)
    assert decoded.content == {"execution_state": "idle"}
    assert decoded.idents == [b"topic"]
    assert parse_date(decoded.header["date"]).tzinfo is not None


def test_message_ids_are_unique_per_session() -> None:
    a, b = Wire(KEY), Wire(KEY)
    ids = {a.new_msg_id() for _ in range(1000)} | {b.new_msg_id() for _ in range(1000)}
    assert len(ids) == 2000


def test_parse_date_accepts_z_suffix() -> None:
    now = utcnow()
    assert parse_date(now.isoformat().replace("+00:00", "Z")) == now
