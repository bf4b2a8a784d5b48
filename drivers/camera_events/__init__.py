"""Cameras' own events (SPEC §4.7, v2): Hikvision ISAPI alertStream, Dahua eventManager, ONVIF PullPoint.

casegate subscribes to the events the cameras compute themselves (motion, intrusion, cover,
video loss) instead of decoding video: one gateway then serves every camera of a center.
"""
