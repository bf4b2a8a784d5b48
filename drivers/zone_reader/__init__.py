"""Zone base stations (MR7901 2.4 GHz active RFID, SPEC §4.1): casegate is the platform server."""
