"""drivers/crc.py against the published CRC catalogue check values."""
import random

from drivers.crc import (CCITT_FALSE_CHECK, MCRF4XX_CHECK, _crc16_ccitt_false_py,
                         crc16_ccitt_false, crc16_mcrf4xx)


def _bitwise_ccitt_false(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def _bitwise_mcrf4xx(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def test_check_values():
    assert crc16_ccitt_false(b"123456789") == 0x29B1 == CCITT_FALSE_CHECK
    assert crc16_mcrf4xx(b"123456789") == 0x6F91 == MCRF4XX_CHECK
    assert _crc16_ccitt_false_py(b"123456789") == 0x29B1


def test_empty_is_init():
    assert crc16_ccitt_false(b"") == 0xFFFF
    assert crc16_mcrf4xx(b"") == 0xFFFF


def test_incremental_and_buffer_types():
    assert crc16_ccitt_false(b"56789", crc16_ccitt_false(b"1234")) == 0x29B1
    assert crc16_mcrf4xx(b"56789", crc16_mcrf4xx(b"1234")) == 0x6F91
    assert crc16_ccitt_false(bytearray(b"123456789")) == 0x29B1
    assert crc16_mcrf4xx(memoryview(b"123456789")) == 0x6F91


def test_uhf_inventory_command_vector():
    # SPEC §4.5: inventory command 04 FF 01 | 1B B4 (CRC low byte first)
    assert crc16_mcrf4xx(bytes([0x04, 0xFF, 0x01])).to_bytes(2, "little") == bytes([0x1B, 0xB4])


def test_against_bitwise_reference():
    rng = random.Random(7)
    for _ in range(300):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
        assert crc16_ccitt_false(data) == _bitwise_ccitt_false(data) == _crc16_ccitt_false_py(data)
        assert crc16_mcrf4xx(data) == _bitwise_mcrf4xx(data)
