"""Locker wire protocols: byte-exact vectors, parser robustness, fuzz."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.crc import crc16_mcrf4xx
from drivers.locker import protocol as p


# ---------------------------------------------------------------- byte-exact vectors
def test_board_sum_vectors():
    assert p.board_sum(b"\x02\x00\x30\x03") == 0x35
    assert p.status_command(0) == bytes.fromhex("0200300335")
    assert p.unlock_command(0, 1) == bytes.fromhex("0200310336")         # compartment 1 = lock 0
    assert p.unlock_command(1, 16) == bytes.fromhex("021F310355")        # board 1, lock 15
    assert p.unlock_command(15, 3) == bytes.fromhex("02F2310328")        # sum wraps: 0x128 & 0xFF
    # status reply: 02 00 35 L1 L2 S1 S2 03 SUM; compartment 1 = L1 bit0, 9 = L2 bit0
    assert p.status_reply(0, 0x0101, 0x8001) == bytes.fromhex("0200350101018003BD")
    assert p.unlock_reply(0, 2, True) == bytes.fromhex("0202311103" + "49")
    assert p.unlock_reply(0, 2, False) == bytes.fromhex("0202310003" + "38")


def test_inventory_command_vector():
    assert p.inventory_command() == bytes.fromhex("04FF011BB4")
    assert crc16_mcrf4xx(b"123456789") == 0x6F91
    assert crc16_mcrf4xx(bytes.fromhex("04FF01")) == 0xB41B


def test_status_reply_decoding():
    par = p.BoardParser("host")
    (r,) = par.feed(p.status_reply(3, 0b1000_0000_0000_0101, 0x0002))
    assert isinstance(r, p.StatusReply) and r.board == 3
    assert [c for c in range(1, 17) if r.is_open(c)] == [1, 3, 16]
    assert [c for c in range(1, 17) if r.is_occupied(c)] == [2]
    (u,) = par.feed(p.unlock_reply(3, 4, True))
    assert isinstance(u, p.UnlockReply) and u.compartment == 5 and u.opened
    (u,) = par.feed(p.unlock_reply(3, 4, False))
    assert not u.opened and u.st == 0


def test_board_parser_role_board_reads_commands():
    par = p.BoardParser("board")
    assert par.feed(p.status_command(2) + p.unlock_command(2, 7)) == [
        p.BoardCommand(2, 0, 0x30), p.BoardCommand(2, 6, 0x31)]


def test_board_parser_counts_and_resyncs():
    good = p.status_reply(0, 1, 0)
    bad_sum = good[:-1] + bytes([good[-1] ^ 1])
    truncated = good[:5]
    par = p.BoardParser("host")
    frames = par.feed(b"\xff\x00junk" + good + bad_sum + good + truncated + good + b"\x02\x00\x99" + good)
    assert len(frames) == 4
    assert par.bad["garbage"] >= 1
    assert par.bad["bad_sum"] == 1
    assert par.bad["bad_etx"] == 1          # the truncated frame, seen as 9 bytes running into the next
    assert par.bad["unknown_cmd"] == 1
    # byte by byte gives the same frames
    par2 = p.BoardParser("host")
    stream = b"\x03" + good + bad_sum + good
    out = []
    for b in stream:
        out += par2.feed(bytes([b]))
    assert len(out) == 2 and par2.bad["garbage"] == 1 and par2.bad["bad_sum"] == 1


def test_board_parser_resyncs_on_the_next_stx_inside_a_bad_frame():
    # a stray "02 00 35" makes the parser look at a 9-byte window that ends in 03
    # (L2 = 0x03) but has a wrong SUM: the real frame starting 3 bytes later must survive
    good = p.status_reply(0, 0x0301, 0x0000)
    par = p.BoardParser("host")
    frames = par.feed(b"\x02\x00\x35" + good)
    assert frames == [p.StatusReply(0, 0x0301, 0)]
    assert par.bad["bad_sum"] == 1


def test_board_parser_flush_counts_truncated():
    par = p.BoardParser("host")
    assert par.feed(p.status_reply(0, 0, 0)[:6]) == []
    par.flush()
    assert par.bad["truncated"] == 1 and par.buf == bytearray()


def test_inventory_single_and_multi_frame():
    epcs = [f"E28011700000020{i:09X}" for i in range(7)]
    frames = p.inventory_responses(0x00, epcs, max_frame_tags=3)
    assert len(frames) == 3
    assert [f[3] for f in frames] == [0x03, 0x03, 0x01]
    par = p.UhfParser()
    got = par.feed(b"".join(frames))
    invs = [p.decode_inventory(f) for f in got]
    assert [i.more for i in invs] == [True, True, False]
    assert [e for i in invs for e in i.epcs] == epcs
    # exact bytes of a one-tag answer: Len Adr 01 01 Num len EPC CRC
    (one,) = p.inventory_responses(0x00, ["E2000017221101441890ABCD"])
    body = bytes.fromhex("13" "00" "01" "01" "01" "0C" "E2000017221101441890ABCD")
    assert one[:-2] == body
    crc = crc16_mcrf4xx(body)
    assert one[-2:] == bytes([crc & 0xFF, crc >> 8])


def test_inventory_splits_on_frame_size():
    epcs = [f"{i:024X}" for i in range(40)]        # 40 x 13 bytes > 255
    frames = p.inventory_responses(0, epcs)
    assert len(frames) >= 3 and all(len(f) <= 256 for f in frames)
    par = p.UhfParser()
    assert [e for f in par.feed(b"".join(frames)) for e in p.decode_inventory(f).epcs] == epcs


def test_no_tag_and_ant_byte():
    (f,) = p.UhfParser().feed(p.inventory_responses(0, [])[0])
    inv = p.decode_inventory(f)
    assert inv.status == 0xFB and inv.epcs == () and not inv.more
    (f,) = p.UhfParser().feed(p.inventory_responses(0, ["AABB"], ant=0b0100)[0])
    inv = p.decode_inventory(f, ant_byte=True)
    assert inv.antennas == (3,) and inv.epcs == ("AABB",)


def test_decode_inventory_rejects_inconsistent_data():
    for data in (bytes([0x01, 2, 2, 0xAA, 0xBB]),       # Num 2, only one EPC
                 bytes([0x01, 1, 5, 0xAA]),             # EPC longer than the data
                 bytes([0x01, 1, 1, 0xAA, 0x00]),       # trailing byte
                 bytes([0x01, 1, 0]),                   # zero-length EPC
                 bytes([0x05]),                         # unknown status
                 b""):
        try:
            p.decode_inventory(p.UhfFrame(0, 1, data))
        except p.ProtocolError:
            continue
        raise AssertionError(f"accepted {data.hex()}")


def test_uhf_parser_bad_crc_truncated_garbage():
    good = p.inventory_responses(0, ["E200AABB"])[0]
    bad = good[:-1] + bytes([good[-1] ^ 0x55])
    par = p.UhfParser()
    frames = par.feed(b"\x00\x01" + good + bad + good)
    assert len(frames) == 2
    assert par.bad["bad_len"] == 1 and par.bad["bad_crc"] == 1
    # a noise byte that claims a long frame does not swallow the real one behind it
    par = p.UhfParser()
    frames = par.feed(b"\xF0" + good)
    assert len(frames) == 1 and par.bad["garbage"] == 1
    # truncated at the end: waits, then flush() counts it
    par = p.UhfParser()
    assert par.feed(good[:-3]) == []
    par.flush()
    assert par.bad["truncated"] == 1
    assert par.feed(good) and par.frames == 1


# ---------------------------------------------------------------- fuzz
@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 17))
def test_fuzz_board_parser_never_raises(data, chunk):
    for role in ("host", "board"):
        par = p.BoardParser(role)
        for i in range(0, len(data), chunk):
            for f in par.feed(data[i:i + chunk]):
                assert isinstance(f, (p.StatusReply, p.UnlockReply, p.BoardCommand))
        par.flush()
        assert len(par.buf) == 0


noise_st = st.binary(max_size=12).map(lambda b: b.replace(b"\x02", b""))
reply_st = st.one_of(
    st.builds(p.status_reply, st.integers(0, 15), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    st.builds(p.unlock_reply, st.integers(0, 15), st.integers(0, 15), st.booleans()))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(noise_st, reply_st), max_size=8), st.integers(1, 10))
def test_fuzz_board_parser_recovers_every_frame_after_garbage(parts, chunk):
    stream = b"".join(n + f for n, f in parts)
    par = p.BoardParser("host")
    got = []
    for i in range(0, len(stream), chunk):
        got += par.feed(stream[i:i + chunk])
    assert got == [p.BoardParser("host").feed(f)[0] for _, f in parts]
    assert par.bad.get("garbage", 0) <= sum(1 for n, _ in parts if n)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600), st.integers(1, 64), st.booleans())
def test_fuzz_uhf_parser_and_decoder_never_raise(data, chunk, ant):
    par = p.UhfParser()
    for i in range(0, len(data), chunk):
        for f in par.feed(data[i:i + chunk]):
            try:
                inv = p.decode_inventory(f, ant_byte=ant)
            except p.ProtocolError:
                continue
            assert all(e == e.upper() for e in inv.epcs)
    par.flush()
    assert len(par.buf) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=20), max_size=30), st.integers(1, 5),
       st.binary(max_size=3))
def test_fuzz_uhf_roundtrip_with_noise(epc_bytes, per_frame, noise):
    epcs = [b.hex().upper() for b in epc_bytes]
    stream = noise + b"".join(p.inventory_responses(0, epcs, per_frame))
    par = p.UhfParser()
    got = []
    for f in par.feed(stream):
        try:
            got += p.decode_inventory(f).epcs
        except p.ProtocolError:
            pass
    assert got == epcs
