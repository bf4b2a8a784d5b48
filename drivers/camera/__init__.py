"""Infrared/colour cameras (SPEC §4.6): motion-gated headcount, face recognition, snapshots."""
