"""Smart lockers: RS-485 lock boards and UHF inventory readers (SPEC §4.4, §4.5)."""
