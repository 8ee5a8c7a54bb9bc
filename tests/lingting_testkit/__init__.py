"""What the tests share: servers started for them (servers), streaming
through the real client (streams), synthetic signals (synth), and a small
recording engine for in-process edge tests (recording). Benchmarks use the
server launcher too. Named so that no installed package shadows it."""
