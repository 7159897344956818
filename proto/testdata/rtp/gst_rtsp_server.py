import sys, gi
gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0')
from gi.repository import Gst, GstRtspServer, GLib
Gst.init(None)
port = sys.argv[1]
server = GstRtspServer.RTSPServer(); server.set_service(port)
f = GstRtspServer.RTSPMediaFactory()
f.set_launch('( videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc tune=zerolatency key-int-max=15 speed-preset=ultrafast ! video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 config-interval=-1 aggregate-mode=zero-latency mtu=1200 '
              ' audiotestsrc is-live=true ! audio/x-raw,rate=48000,channels=2 ! opusenc ! rtpopuspay name=pay1 pt=97 )')
f.set_shared(True)
server.get_mount_points().add_factory('/test', f)
server.attach(None)
print('ready', flush=True)
GLib.MainLoop().run()
