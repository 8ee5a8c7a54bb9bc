"""The wire protocols, sans-I/O: protocol v1's messages and start options, webhook and
caption targets, the Codec contract and one codec per protocol (v1, FunASR, OpenAI
realtime, the phone platforms in telephony/), OpenAI's answers."""
