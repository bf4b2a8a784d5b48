"""Property-based fuzzing of the EM4100 parser."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.card_reader.protocol import CardParser, encode

FUZZ = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

cards = st.binary(min_size=5, max_size=5).map(lambda b: b.hex().upper())
noise = st.binary(max_size=20).map(lambda b: b.replace(b"\x02", b"\x01"))


def _chunks(data, cuts):
    pos = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for c in pos + [len(data)]:
        out.append(data[prev:c])
        prev = c
    return out


@FUZZ
@given(st.lists(st.tuples(noise, cards), max_size=10), noise, st.lists(st.integers(0, 1000), max_size=20))
def test_valid_frames_recovered_whatever_the_split(parts, tail, cuts):
    stream = b"".join(n + encode(c) for n, c in parts) + tail
    p = CardParser()
    got = []
    for ch in _chunks(stream, cuts):
        got += p.feed(ch)
    assert got == [c for _, c in parts]
    assert p.noise_bytes == sum(len(n) for n, _ in parts) + len(tail)
    assert p.bad_checksum == p.non_hex == p.truncated == p.no_etx == p.dropped_bytes == 0


@st.composite
def mutated(draw):
    data = bytearray(b"".join(draw(st.lists(st.one_of(cards.map(encode), st.binary(max_size=30)), max_size=10))))
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "drop", "insert", "stx"]))
        if op == "flip":
            data[i] ^= draw(st.integers(1, 255))
        elif op == "drop":
            del data[i]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=5))
        else:
            data[i:i] = b"\x02"
    return bytes(data)


@FUZZ
@given(mutated(), st.lists(st.integers(0, 1000), max_size=20))
def test_mutations_never_raise_and_counters_are_consistent(stream, cuts):
    errs: dict[str, int] = {}
    p = CardParser(on_error=lambda r, n: errs.__setitem__(r, errs.get(r, 0) + n))
    got = []
    for ch in _chunks(stream, cuts):
        got += p.feed(ch)
        assert p.bytes_fed == 14 * p.frames + p.noise_bytes + p.dropped_bytes + p.pending
        assert p.pending < 14
    assert len(got) == p.frames
    assert errs.get("noise_bytes", 0) == p.noise_bytes
    for r in ("bad_checksum", "non_hex", "truncated", "no_etx"):
        assert errs.get(r, 0) == getattr(p, r)
    for c in got:
        assert len(c) == 10 and c == c.upper() and encode(c) in stream.upper()
