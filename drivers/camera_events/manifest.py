"""Declares the camera_events driver to the registry (drivers/registry.py)."""
from drivers.camera_events.config import CameraEventsConfig
from drivers.registry import DriverSpec

DRIVER = DriverSpec(
    kind="camera_events",
    config=CameraEventsConfig,
    driver="drivers.camera_events.driver:CameraEventsDriver",
    emits=("camera.still", "camera.motion", "camera.tampered", "camera.snapshot", "device.online", "device.offline", "device.error"),
    summary="camera that analyses video itself: Hikvision ISAPI / Dahua / ONVIF events (motion, tamper)",
    example="""\
[[devices]]
id = "cam-wait1"
driver = "camera_events"
vendor = "hikvision"
url = "http://10.0.0.31"
username = "casegate"
password_file = "/etc/casegate/cam-wait1.password"
channels = { "1" = "waiting-1" }
""",
)
