"""MR7901 framing (SPEC §4.1): byte-exact vectors and the stream parser."""
import struct

import pytest

from drivers.zone_reader import protocol as P

DEV = "861694034205896"


def _crc_ref(data: bytes) -> int:  # independent bitwise CRC-16/CCITT-FALSE
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def _manual_frame(cmd, seq, dev, content, ver=1):
    header = (28 + len(content)).to_bytes(2, "big") + cmd.to_bytes(2, "big") + seq.to_bytes(4, "big") \
        + ver.to_bytes(2, "big") + b"\0\0" + dev.encode("latin-1").ljust(16, b"\0")
    return b"\x55\xaa" + header + content + _crc_ref(header + content).to_bytes(2, "big")


# ---- byte-exact encoding ---------------------------------------------------------
def test_encode_frame_byte_exact():
    content = bytes.fromhex("000102030405")
    f = P.encode_frame(P.CMD_HEARTBEAT, 0x01020304, DEV, content)
    assert f == _manual_frame(0x0003, 0x01020304, DEV, content)
    assert f[:2] == b"\x55\xaa"
    assert f[2:4] == (28 + 6).to_bytes(2, "big")
    assert f[4:6] == b"\x00\x03"
    assert f[6:10] == b"\x01\x02\x03\x04"
    assert f[14:30] == DEV.encode() + b"\0"
    assert len(f) == 2 + 28 + 6 + 2


def test_tag_cc_spec_example():
    # SPEC: 20 E3 AF 22 32 -> FA
    assert P.tag_cc(0x20, 0xE3AF2232) == 0xFA
    assert (sum(bytes.fromhex("20E3AF2232FA")) & 0xFF) == 0


def test_tag_record_layout_and_decode():
    t6 = bytes([26, 11, 26, 20, 30, 3])
    v = P.tag_value(0xE3AF2232, in_range=True, antenna=3, tag_type=0x20, exciter=0x0102,
                    low_battery=True, sos=True, rssi=-71, t6=t6)
    assert len(v) == 17
    assert v == bytes([0x83, 0x20, 0xE3, 0xAF, 0x22, 0x32, 0xFA, 0x01, 0x02, 0x11, (-71) & 0xFF]) + t6
    r = P.decode_tag(v)
    assert (r.tag, r.in_range, r.void, r.antenna, r.tag_type, r.cc_ok, r.exciter, r.low_battery, r.sos, r.rssi) \
        == ("E3AF2232", True, False, 3, 0x20, True, 0x0102, True, True, -71)
    assert P.decode_time6(r.time) == (2026, 11, 26, 20, 30, 3)


def test_tag_channel_bits():
    base = bytearray(P.tag_value(0xE3AF2232))
    base[0] = 0x02                      # bit7 0: left the range
    r = P.decode_tag(bytes(base))
    assert not r.in_range and not r.void and r.antenna == 2
    base[0] = 0xC1                      # bit6: station stop, bit7 void
    assert P.decode_tag(bytes(base)).void


def test_wrong_cc_detected():
    v = bytearray(P.tag_value(0xE3AF2232))
    v[6] ^= 0x01
    assert not P.decode_tag(bytes(v)).cc_ok
    v = bytearray(P.tag_value(0xE3AF2232))
    v[3] ^= 0x10                        # id corrupted, cc unchanged
    assert not P.decode_tag(bytes(v)).cc_ok


def test_reader_and_wristband_tlvs():
    t6 = bytes([26, 1, 2, 3, 4, 5])
    rv = P.reader_value(0x11223344, 1, 0xE3AF2232, rssi=-40, t6=t6)
    assert len(rv) == 16 and rv[:1] == bytes([(-40) & 0xFF]) and rv[1:5] == bytes.fromhex("11223344")
    r = P.decode_reader(rv)
    assert (r.rssi, r.reader_id, r.removed, r.tag, r.time) == (-40, 0x11223344, True, "E3AF2232", t6)
    wv = P.wristband_value(0xE3AF2232, 1, 0x0102, rssi=-50, acq6=t6, recv6=t6)
    assert wv[5] == 1 and wv[6:8] == b"\x01\x02"          # kind, value u16 BE
    w = P.decode_wristband(wv)
    assert (w.tag, w.kind, w.value, w.acq_time, w.recv_time) == ("E3AF2232", 1, 258, t6, t6)
    # the 18-byte length SPEC states is accepted too (without the receive time)
    w18 = P.decode_wristband(wv[:18])
    assert (w18.tag, w18.kind, w18.value, w18.recv_time) == ("E3AF2232", 1, 258, None)
    with pytest.raises(P.TLVError):
        P.decode_wristband(wv[:7])


def test_iter_tlvs_and_overrun():
    a = P.tlv(P.TLV_TAG, P.tag_value(1))
    b = P.tlv(0x1234, b"xy")
    assert [(t, len(v)) for t, v in P.iter_tlvs(a + b)] == [(0x8B01, 17), (0x1234, 2)]
    with pytest.raises(P.TLVError):
        list(P.iter_tlvs(a + struct.pack(">HH", 0x8B01, 40) + b"short"))
    with pytest.raises(P.TLVError):
        list(P.iter_tlvs(a + b"\x8b"))


def test_register_reply_layout_port_little_endian():
    t6 = bytes([26, 11, 26, 8, 0, 0])
    c = P.register_reply_content(0, t6, "10.0.0.5", 4501)
    assert len(c) == 1 + 6 + 32 + 2
    assert c[0] == 0 and c[1:7] == t6
    assert c[7:39] == b"10.0.0.5".ljust(32, b"\0")
    assert c[39:41] == bytes([0x95, 0x11])              # 4501 = 0x1195, little-endian
    assert P.decode_register_reply(c) == (0, t6, "10.0.0.5", 4501)


def test_request_contents():
    assert P.register_content(0x7901, 123456) == bytes.fromhex("7901") + (123456).to_bytes(4, "big")
    assert P.login_content(0x0106, 0xBEEF) == bytes.fromhex("0106BEEF")
    hb = P.heartbeat_content((7 << 8) | 0x20, 1, 2, 3, bytes(6))
    info = P.decode_heartbeat(hb)
    assert info.battery == 7 and info.external_power_lost and len(hb) == 14


# ---- the stream parser ---------------------------------------------------------
def _frames(n=3):
    return [P.encode_frame(P.CMD_DATA, i + 1, DEV, P.tlv(P.TLV_TAG, P.tag_value(0x1000 + i))) for i in range(n)]


def _check_accounting(p: P.FrameParser):
    assert p.bytes_fed == p.frame_bytes + p.noise_bytes + p.pending


def test_decode_one_frame():
    raw = _manual_frame(0x0004, 42, DEV, b"abc")
    p = P.FrameParser()
    (f,) = p.feed(raw)
    assert (f.cmd, f.seq, f.dev_id, f.content, f.ver, f.sec_flag) == (4, 42, DEV, b"abc", 1, 0)
    _check_accounting(p)


def test_split_byte_by_byte():
    frames = _frames(3)
    p = P.FrameParser()
    got = []
    for b in b"".join(frames):
        got += p.feed(bytes([b]))
    assert [f.seq for f in got] == [1, 2, 3]
    assert p.noise_bytes == 0 and p.pending == 0
    _check_accounting(p)


def test_garbage_between_frames():
    a, b, c = _frames(3)
    errors = []
    p = P.FrameParser(on_error=lambda r, n: errors.append((r, n)))
    stream = b"\x00\x55\x13garbage" + a + b"\xff\x55\x55" + b + b"\xaa\xaa" + c + b"\x55"
    got = p.feed(stream)
    assert [f.seq for f in got] == [1, 2, 3]
    assert p.pending == 1                      # a trailing 0x55 might start a sync word
    assert p.noise_bytes == len(b"\x00\x55\x13garbage") + 3 + 2
    assert sum(n for r, n in errors if r == "noise_bytes") == p.noise_bytes
    _check_accounting(p)


def test_wrong_crc_counted_and_dropped():
    a, b, c = _frames(3)
    bad = bytearray(b)
    bad[-1] ^= 0xFF
    errors = []
    p = P.FrameParser(on_error=lambda r, n: errors.append(r))
    got = p.feed(a + bytes(bad) + c)
    assert [f.seq for f in got] == [1, 3]
    assert p.bad_crc == 1 and errors.count("bad_crc") == 1
    _check_accounting(p)


def test_corrupted_content_byte():
    a, b, c = _frames(3)
    bad = bytearray(b)
    bad[40] ^= 0x04
    p = P.FrameParser()
    assert [f.seq for f in p.feed(a + bytes(bad) + c)] == [1, 3]
    assert p.bad_crc == 1


@pytest.mark.parametrize("length", [0, 1, 27, P.MAX_LEN + 1, 0xFFFF])
def test_wrong_length_field_resyncs_at_once(length):
    a, b = _frames(2)
    bogus = bytearray(a)
    bogus[2:4] = length.to_bytes(2, "big")
    p = P.FrameParser()
    got = p.feed(bytes(bogus) + b)
    # the bogus header is rejected without waiting for (or allocating) `length` bytes
    assert [f.seq for f in got] == [2]
    assert p.bad_length == 1
    assert p.pending == 0
    _check_accounting(p)


def test_length_too_short_but_plausible_gives_bad_crc():
    a, b = _frames(2)
    bogus = bytearray(a)
    bogus[2:4] = (len(a) - 4 - 5).to_bytes(2, "big")   # claims 5 bytes less than it has
    p = P.FrameParser()
    assert [f.seq for f in p.feed(bytes(bogus) + b)] == [2]
    assert p.bad_crc == 1


def _long_frame():
    return P.encode_frame(P.CMD_DATA, 1, DEV, b"".join(P.tlv(P.TLV_TAG, P.tag_value(i)) for i in range(10)))


def test_truncated_frame_then_good_frame():
    a, b = _long_frame(), _frames(2)[1]
    p = P.FrameParser()
    got = p.feed(a[:25] + b)      # a cut short; its length field claims bytes that never come
    assert [f.seq for f in got] == [2]
    assert p.truncated == 1 and p.pending == 0
    _check_accounting(p)


def test_truncated_frame_then_good_frame_in_pieces():
    a, b = _long_frame(), _frames(2)[1]
    p = P.FrameParser()
    got = p.feed(a[:25])
    assert got == [] and p.pending == 25
    for i in range(len(b)):
        got += p.feed(b[i:i + 1])
    assert [f.seq for f in got] == [2]
    assert p.truncated == 1 and p.bad_crc == 0
    _check_accounting(p)


def test_cut_frame_overlapping_the_next_is_a_crc_error():
    a, b = _frames(2)
    p = P.FrameParser()
    assert [f.seq for f in p.feed(a[:25] + b)] == [2]   # a's length is covered by b's bytes
    assert p.bad_crc == 1
    _check_accounting(p)


def test_pending_is_bounded():
    p = P.FrameParser()
    a = _frames(1)[0]
    big = bytearray(a)
    big[2:4] = P.MAX_LEN.to_bytes(2, "big")
    p.feed(bytes(big))
    p.feed(b"\x00" * 10000)
    assert p.pending <= P.MAX_LEN + 4
    _check_accounting(p)


def test_reply_frames_echo_seq_and_dev():
    req = P.Frame(P.CMD_LOGIN, 77, DEV, P.login_content(1, 2), ver=3)
    raw = P.encode_reply(req, P.simple_reply_content(0, bytes(6)))
    (f,) = P.FrameParser().feed(raw)
    assert (f.cmd, f.seq, f.dev_id, f.ver, f.content) == (0x8001, 77, DEV, 3, bytes(7))
    assert f.name == "login-reply"


def test_reply_echoes_a_non_ascii_dev_id_byte_for_byte():
    dev_raw = bytes([0x53, 0x31, 0xF4, 0x80, 0x7F])
    req = _manual_frame(0x0003, 9, dev_raw.decode("latin-1"), b"")
    assert req[14:19] == dev_raw
    (f,) = P.FrameParser().feed(req)
    reply = P.encode_reply(f, P.simple_reply_content(0, bytes(6)))
    assert reply[14:30] == req[14:30]
