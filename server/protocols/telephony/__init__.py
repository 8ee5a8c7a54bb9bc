"""Bridges for phone platforms: each a sans-I/O codec (codec.py's contract:
the platform's frames in, Lingting messages out; events in, the platform's
replies out), so a call is an ordinary session with its tenant, limits and
history. Twilio Media Streams, Genesys AudioHook and FreeSWITCH mod_audio_fork
come over WebSockets (edge/telephony.py); Asterisk AudioSocket over TCP."""
