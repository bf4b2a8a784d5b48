"""EM4100 frames (SPEC §4.2): the example vector, resync, the repeat filter."""
import pytest

from drivers.card_reader.protocol import CardParser, RepeatFilter, checksum, encode

EXAMPLE = b"\x02" + b"14008EC793" + b"CE" + b"\x03"


def _acct(p: CardParser):
    assert p.bytes_fed == 14 * p.frames + p.noise_bytes + p.dropped_bytes + p.pending


def test_spec_example():
    assert checksum(bytes.fromhex("14008EC793")) == 0xCE
    assert encode("14008EC793") == EXAMPLE
    assert encode("14008ec793") == EXAMPLE
    p = CardParser()
    assert p.feed(EXAMPLE) == ["14008EC793"]
    _acct(p)


def test_encode_rejects_bad_ids():
    with pytest.raises(ValueError):
        encode("1234")
    with pytest.raises(ValueError):
        encode("14008EC79G")


def test_byte_by_byte():
    p = CardParser()
    got = []
    for b in EXAMPLE + encode("0102030405"):
        got += p.feed(bytes([b]))
    assert got == ["14008EC793", "0102030405"]
    assert p.noise_bytes == 0 and p.pending == 0
    _acct(p)


def test_garbage_between_frames_counted():
    errs = []
    p = CardParser(on_error=lambda r, n: errs.append((r, n)))
    got = p.feed(b"\r\nxx" + EXAMPLE + b"\x03\xff" + encode("0102030405") + b"\r\n")
    assert got == ["14008EC793", "0102030405"]
    assert p.noise_bytes == 8
    assert sum(n for r, n in errs if r == "noise_bytes") == 8
    _acct(p)


def test_bad_checksum_counted_and_dropped():
    bad = encode("14008EC793", checksum_override=0xCF)
    errs = []
    p = CardParser(on_error=lambda r, n: errs.append(r))
    assert p.feed(bad + EXAMPLE) == ["14008EC793"]
    assert p.bad_checksum == 1 and errs == ["bad_checksum"]
    _acct(p)


def test_non_hex_digit():
    bad = b"\x02" + b"14008XC793" + b"CE" + b"\x03"
    p = CardParser()
    assert p.feed(bad + EXAMPLE) == ["14008EC793"]
    assert p.non_hex == 1
    _acct(p)


def test_lower_case_hex_accepted_and_upper_cased():
    p = CardParser()
    assert p.feed(b"\x02" + b"14008ec793" + b"ce" + b"\x03") == ["14008EC793"]


def test_truncated_frame_resyncs_on_next_stx():
    p = CardParser()
    assert p.feed(EXAMPLE[:7] + EXAMPLE) == ["14008EC793"]
    assert p.truncated == 1
    p2 = CardParser()
    assert p2.feed(EXAMPLE[:7] + b"\x03" + EXAMPLE) == ["14008EC793"]    # early ETX
    assert p2.truncated == 1
    _acct(p)
    _acct(p2)


def test_missing_etx():
    p = CardParser()
    assert p.feed(EXAMPLE[:13] + b"\x02" + EXAMPLE[1:]) == ["14008EC793"]
    assert p.no_etx == 1
    p2 = CardParser()
    assert p2.feed(EXAMPLE[:13] + b"Z" + EXAMPLE) == ["14008EC793"]
    assert p2.no_etx == 1 and p2.noise_bytes == 1
    _acct(p)
    _acct(p2)


def test_pending_is_bounded():
    p = CardParser()
    p.feed(b"\x02" + b"1" * 5)
    assert p.pending == 6
    p.feed(b"1" * 1000)
    assert p.pending < 14
    _acct(p)


def test_repeat_filter_slides():
    f = RepeatFilter(1000)
    assert f.accept("A", 0.0)
    assert not f.accept("A", 0.5)
    assert not f.accept("A", 1.4)     # still held: the window slides from the last frame
    assert f.accept("B", 1.5)
    assert f.accept("A", 2.5)         # removed for > 1 s, presented again
    z = RepeatFilter(0)
    assert z.accept("A", 0.0) and z.accept("A", 0.001)


def test_repeat_filter_bounded():
    f = RepeatFilter(1000)
    for i in range(5000):
        f.accept(f"{i:010X}", i * 2.0)
    assert len(f.last) <= 257
