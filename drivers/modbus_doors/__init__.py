"""Door contacts on a Modbus TCP/RTU digital-input module (SPEC §4.3)."""
