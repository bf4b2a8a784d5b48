"""Declares the camera driver to the registry (drivers/registry.py)."""
from drivers.camera.config import CameraConfig
from drivers.registry import DriverSpec

# A camera runs in its own process (process.py): dlib holds the interpreter lock for tens
# of ms per call, which would stall the journal writer.
DRIVER = DriverSpec(
    kind="camera",
    config=CameraConfig,
    driver="drivers.camera.process:CameraProcess",
    emits=("camera.headcount", "camera.still", "camera.face_recognized", "camera.face_unknown",
           "camera.snapshot", "camera.tampered", "device.online", "device.offline", "device.error"),
    summary="camera whose video casegate analyses itself (motion, headcount, faces)",
    example="""\
[[devices]]
id = "cam-int1"
driver = "camera"
url = "rtsp://10.0.0.21/stream1"
room = "interrogation-1"
""",
)
