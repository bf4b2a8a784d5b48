"""Pure parsers of drivers/camera_events on byte-exact samples of each vendor's stream."""
from __future__ import annotations

import pytest

from drivers.camera_events import dahua, hikvision, onvif
from drivers.camera_events.signals import COVERED, HEARTBEAT, IGNORED, MOTION, VIDEO_LOST, Multipart, boundary_of

HIK_VMD = (b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
           b'<EventNotificationAlert version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">\r\n'
           b'<ipAddress>10.0.0.31</ipAddress>\r\n<portNo>80</portNo>\r\n<protocol>HTTP</protocol>\r\n'
           b'<macAddress>44:19:b6:6d:24:85</macAddress>\r\n<channelID>1</channelID>\r\n'
           b'<dateTime>2026-11-26T20:30:03+08:00</dateTime>\r\n<activePostCount>3</activePostCount>\r\n'
           b'<eventType>VMD</eventType>\r\n<eventState>active</eventState>\r\n'
           b'<eventDescription>Motion alarm</eventDescription>\r\n</EventNotificationAlert>\r\n')
HIK_HEARTBEAT = (b'<?xml version="1.0" encoding="UTF-8"?>\n<EventNotificationAlert version="1.0" '
                 b'xmlns="http://www.hikvision.com/ver10/XMLSchema">\n<ipAddress>10.0.0.31</ipAddress>\n'
                 b'<portNo>80</portNo>\n<protocol>HTTP</protocol>\n<macAddress>44:19:b6:6d:24:85</macAddress>\n'
                 b'<channelID>1</channelID>\n<dateTime>2026-11-26T20:30:08+08:00</dateTime>\n'
                 b'<activePostCount>0</activePostCount>\n<eventType>videoloss</eventType>\n'
                 b'<eventState>inactive</eventState>\n<eventDescription>videoloss alarm</eventDescription>\n'
                 b'</EventNotificationAlert>\n')


def test_hikvision_alerts():
    [s] = hikvision.parse_alert(HIK_VMD)
    assert (s.channel, s.kind, s.active, s.source, s.expires) == ("1", MOTION, True, "vmd", True)
    assert hikvision.parse_alert(HIK_HEARTBEAT)[0].kind == HEARTBEAT
    lost = HIK_HEARTBEAT.replace(b"inactive", b"active").replace(b">0<", b">1<")
    assert hikvision.parse_alert(lost)[0].kind == VIDEO_LOST
    nvr = HIK_VMD.replace(b"<channelID>1</channelID>", b"<channelID>33</channelID><dynChannelID>2</dynChannelID>")
    assert hikvision.parse_alert(nvr)[0].channel == "2"
    cover = HIK_VMD.replace(b"VMD", b"shelteralarm")
    assert hikvision.parse_alert(cover)[0].kind == COVERED
    assert hikvision.parse_alert(HIK_VMD.replace(b"VMD", b"PIR"))[0].kind == IGNORED
    for bad in (b"<EventNotificationAlert><eventType>VMD", b"<other/>",
                HIK_VMD.replace(b"active</eventState>", b"maybe</eventState>")):
        with pytest.raises(ValueError):
            hikvision.parse_alert(bad)
    assert hikvision.snapshot_path("2") == "/ISAPI/Streaming/channels/201/picture"


@pytest.mark.parametrize("header,delim,eol,lengths", [
    ("multipart/mixed; boundary=boundary", b"--boundary", b"\r\n", True),
    ('multipart/mixed; boundary="--MIME_boundary"', b"--MIME_boundary", b"\r\n", True),
    ("multipart/mixed; boundary=MIME_boundary", b"--MIME_boundary", b"\n", False),
])
def test_hikvision_multipart_forms_byte_by_byte(header, delim, eol, lengths):
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00\r\n--not-a-delimiter\r\n" * 3 + b"\xff\xd9"
    parts = [("application/xml; charset=\"UTF-8\"", HIK_VMD), ("image/jpeg", jpeg), ("application/xml", HIK_HEARTBEAT)]
    stream = b""
    for ctype, body in parts:
        stream += delim + eol + f"Content-Type: {ctype}".encode() + eol
        if lengths:
            stream += f"Content-Length: {len(body)}".encode() + eol
        stream += eol + body + eol
    mp = Multipart(boundary_of(header))
    got = []
    for i in range(len(stream)):
        got += mp.feed(stream[i:i + 1])
    got += mp.feed(delim + eol)
    if lengths:
        assert [b for _, b in got] == [b for _, b in parts]
    else:   # without lengths a body ends at the line before the next delimiter
        assert [b.strip() for _, b in got] == [b.strip() for _, b in parts]
    decoded = [hikvision.decode_part(h, b) for h, b in got]
    assert decoded[0][0].kind == MOTION and decoded[1][0].image and decoded[2][0].kind == HEARTBEAT
    assert mp.junk_bytes == 0


def test_multipart_counts_junk_and_resynchronises():
    mp = Multipart("myboundary")
    got = mp.feed(b"garbage line\r\n--myboundary\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\n"
                  b"Heartbeat\r\n\r\n")
    assert got == [({"content-type": "text/plain", "content-length": "9"}, b"Heartbeat")]
    assert mp.junk_bytes == len(b"garbage line")


DAHUA = (b"--myboundary\r\nContent-Type: text/plain\r\nContent-Length: 95\r\n\r\n"
         b'Code=VideoMotion;action=Start;index=1;data={\n   "Id" : [ 0 ],\n   "RegionName" : [ "Region1" ]\n}\n'
         b"\r\n\r\n")


def test_dahua_records():
    mp = Multipart("myboundary")
    [(h, body)] = mp.feed(DAHUA + b"--myboundary\r\n")
    [s] = dahua.decode_part(h, body)
    assert (s.channel, s.kind, s.active, s.source, s.expires) == ("2", MOTION, True, "VideoMotion", False)
    assert dahua.parse_text("Heartbeat")[0].kind == HEARTBEAT
    stop, blind = dahua.parse_text("Code=VideoMotion;action=Stop;index=0\r\nCode=VideoBlind;action=Start;index=0")
    assert (stop.active, blind.kind, blind.active) == (False, COVERED, True)
    assert dahua.parse_text("Code=CrossLineDetection;action=Pulse;index=0;data={\"a\";1}")[0].expires
    assert dahua.parse_text("Code=VideoLoss;action=Start;index=3")[0].kind == VIDEO_LOST
    for bad in ("Code=VideoMotion;action=Maybe;index=0", "hello", "x Code=VideoMotion;action=Start;index=0"):
        with pytest.raises(ValueError):
            dahua.parse_text(bad)
    with pytest.raises(ValueError):
        dahua.decode_part({"content-type": "text/plain"}, b"\xff\xfe\x00")


ONVIF_PULL = b"""<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" xmlns:tt="http://www.onvif.org/ver10/schema"
 xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" xmlns:tev="http://www.onvif.org/ver10/events/wsdl"
 xmlns:tns1="http://www.onvif.org/ver10/topics"><SOAP-ENV:Body><tev:PullMessagesResponse>
<tev:CurrentTime>2026-11-26T12:30:03Z</tev:CurrentTime><tev:TerminationTime>2026-11-26T12:31:03Z</tev:TerminationTime>
<wsnt:NotificationMessage><wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">tns1:RuleEngine/CellMotionDetector/Motion</wsnt:Topic>
<wsnt:Message><tt:Message UtcTime="2026-11-26T12:30:03Z" PropertyOperation="Changed"><tt:Source>
<tt:SimpleItem Name="VideoSourceConfigurationToken" Value="VideoSourceToken"/>
<tt:SimpleItem Name="VideoAnalyticsConfigurationToken" Value="VideoAnalyticsToken"/>
<tt:SimpleItem Name="Rule" Value="MyMotionDetectorRule"/></tt:Source>
<tt:Data><tt:SimpleItem Name="IsMotion" Value="true"/></tt:Data></tt:Message></wsnt:Message></wsnt:NotificationMessage>
<wsnt:NotificationMessage><wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">tns1:VideoSource/GlobalSceneChange/ImagingService</wsnt:Topic>
<wsnt:Message><tt:Message UtcTime="2026-11-26T12:30:04Z" PropertyOperation="Initialized"><tt:Source>
<tt:SimpleItem Name="Source" Value="VideoSource_2"/></tt:Source>
<tt:Data><tt:SimpleItem Name="State" Value="false"/></tt:Data></tt:Message></wsnt:Message></wsnt:NotificationMessage>
</tev:PullMessagesResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>"""


def test_onvif_pull_messages():
    motion, scene = onvif.parse_pull_response(ONVIF_PULL)
    assert (motion.channel, motion.kind, motion.active) == ("VideoSourceToken", MOTION, True)
    assert (scene.channel, scene.kind, scene.active) == ("VideoSource_2", COVERED, False)
    assert onvif.channel_number("VideoSource_2") == "2" and onvif.channel_number("VideoSourceToken") is None
    assert onvif.topic_path("tns1:VideoSource/MotionAlarm") == "VideoSource/MotionAlarm"
    with pytest.raises(ValueError):
        onvif.parse_pull_response(ONVIF_PULL.replace(b'Value="true"', b'Value="perhaps"'))
    with pytest.raises(ValueError):
        onvif.parse_pull_response(b"<not xml")
