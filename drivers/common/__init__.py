"""What drivers share: the device config base, serial opening, presence tracking, supervised children."""
