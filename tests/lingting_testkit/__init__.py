"""What the tests share: servers started for them (servers), streaming
through the real client and reading its events (streams), the speech corpus
and its scoring (corpus), synthetic signals (synth), generated conversations
and radio callouts (conversations, callouts), random-weight FunASR models
(funasr_checkpoints), connection cycles (soak), VAD agreement (vad_agreement),
waiting for a condition (waiting), and a small recording engine for
in-process edge tests (inprocess). The benchmarks in bench/ use these too;
tests never import bench/. Named so that no installed package shadows it."""
