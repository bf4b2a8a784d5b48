"""125 kHz EM4100 card readers on a serial port (SPEC §4.2)."""
