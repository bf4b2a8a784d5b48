"""Property-based fuzzing of the MR7901 stream parser and the frame handler."""
from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.base import PrintContext
from drivers.zone_reader import protocol as P
from drivers.zone_reader.driver import ZoneReaderDriver
from gateway.config import ZoneReaderConfig

FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

dev_ids = st.one_of(st.text(alphabet="0123456789ABCDEF", min_size=1, max_size=16),
                    st.binary(min_size=1, max_size=16).map(lambda b: b.replace(b"\0", b"1").decode("latin-1")))
tag_tlv = st.builds(lambda tid, inr, st_, exc, low, sos, rssi: P.tlv(P.TLV_TAG, P.tag_value(
    tid, in_range=inr, stop=st_, exciter=exc, low_battery=low, sos=sos, rssi=rssi)),
    st.integers(0, 0xFFFFFFFF), st.booleans(), st.booleans(), st.sampled_from([0, 12, 99]),
    st.booleans(), st.booleans(), st.integers(-128, 127))
contents = st.one_of(st.binary(max_size=120), st.lists(tag_tlv, max_size=6).map(b"".join))
frames = st.builds(lambda cmd, seq, dev, content: P.encode_frame(cmd, seq, dev, content),
                   st.sampled_from([1, 3, 4, 8, 0x8004, 0x1234]), st.integers(0, 0xFFFFFFFF), dev_ids, contents)
garbage_no_sync = st.binary(max_size=40).map(lambda b: b.replace(b"\x55", b"\x54"))


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    pos = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for c in pos + [len(data)]:
        out.append(data[prev:c])
        prev = c
    return out


@FUZZ
@given(st.lists(st.tuples(garbage_no_sync, frames), max_size=8), st.lists(st.integers(0, 10_000), max_size=30))
def test_valid_frames_always_recovered_whatever_the_split(parts, cuts):
    stream = b"".join(g + f for g, f in parts)
    p = P.FrameParser()
    got = []
    for c in _chunks(stream, cuts):
        got += p.feed(c)
    expected = P.FrameParser().feed(b"".join(f for _, f in parts))
    assert got == expected and len(got) == len(parts)
    assert p.noise_bytes == sum(len(g) for g, _ in parts)
    assert p.bad_crc == p.bad_length == p.truncated == 0
    assert p.bytes_fed == p.frame_bytes + p.noise_bytes + p.pending


@st.composite
def mutated_streams(draw):
    parts = draw(st.lists(st.one_of(frames, st.binary(max_size=64)), max_size=10))
    data = bytearray(b"".join(parts))
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "drop", "insert", "sync"]))
        if op == "flip":
            data[i] ^= draw(st.integers(1, 255))
        elif op == "drop":
            del data[i]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            data[i:i] = b"\x55\xaa" + draw(st.binary(max_size=4))
    return bytes(data)


@FUZZ
@given(mutated_streams(), st.lists(st.integers(0, 10_000), max_size=30))
def test_mutated_streams_never_raise_and_account_for_every_byte(stream, cuts):
    errors: dict[str, int] = {}
    p = P.FrameParser(on_error=lambda r, n: errors.__setitem__(r, errors.get(r, 0) + n))
    got = []
    for c in _chunks(stream, cuts):
        got += p.feed(c)
        assert p.bytes_fed == p.frame_bytes + p.noise_bytes + p.pending
        assert p.pending <= P.MAX_LEN + 4
    assert p.frames == len(got)
    assert errors.get("noise_bytes", 0) == p.noise_bytes
    assert errors.get("bad_crc", 0) == p.bad_crc and errors.get("bad_length", 0) == p.bad_length
    for f in got:     # everything that comes out re-encodes to a CRC-valid frame
        assert P.FrameParser().feed(P.encode_frame(f.cmd, f.seq, f.dev_id, f.content, f.ver, f.sec_flag))


_drv = None


def _driver() -> ZoneReaderDriver:
    global _drv
    if _drv is None:
        cfg = ZoneReaderConfig(id="z", driver="zone_reader", listen="127.0.0.1:0", stations={"S": "r1"},
                               exciters={"12": "exit"}, presence_timeout_s=5)
        _drv = ZoneReaderDriver(cfg, PrintContext("z"))
    return _drv


tlv_any = st.one_of(
    tag_tlv,
    st.builds(lambda t, v: P.tlv(t, v), st.sampled_from([P.TLV_TAG, P.TLV_DOOR, P.TLV_READER, P.TLV_WRISTBAND, 7]),
              st.binary(max_size=24)),
    st.builds(lambda k, v: P.tlv(P.TLV_WRISTBAND, P.wristband_value(0xE3AF2232, k, v)),
              st.integers(0, 255), st.integers(0, 0xFFFF)),
    st.builds(lambda s: P.tlv(P.TLV_READER, P.reader_value(1, s, 0xE3AF2232)), st.integers(0, 255)),
)


@FUZZ
@given(st.sampled_from([1, 3, 4, 8, 0x77, 0x8003]), st.integers(0, 0xFFFFFFFF), st.sampled_from(["S", "X", "S\xf4\x80"]),
       st.one_of(st.lists(tlv_any, max_size=8).map(b"".join), st.binary(max_size=64)), st.floats(0, 100))
def test_frame_handler_never_raises(cmd, seq, dev, content, dt):
    drv = _driver()
    before = drv.health.frames_ok
    reply = drv._handle(None, P.Frame(cmd, seq, dev, content), 1000.0 + dt, time.time())
    if cmd & P.REPLY:
        assert reply is None
    else:
        assert drv.health.frames_ok == before + 1
        (r,) = P.FrameParser().feed(reply)
        assert (r.cmd, r.seq, r.dev_id) == (cmd | P.REPLY, seq, dev)
        assert len(r.content) == (41 if cmd == P.CMD_REGISTER else 7)
    drv.tick(1000.0 + dt, time.time())
    for t, d in drv.ctx.events[-20:]:
        if t.startswith("presence.") or t == "tag.status":
            assert len(d["tag"]) == 8 and d["tag"] == d["tag"].upper()
