"""Settings in one place: defaults < TOML file < LINGTING_* variables < flags."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from lingting_server.settings import Settings, SettingsError, build_parser, load_settings, to_toml


def settings(argv=(), env=None) -> Settings:
    return load_settings(build_parser().parse_args(list(argv)), env or {})


def test_defaults_are_written_once_and_used():
    s = settings()
    assert s == Settings()
    assert (s.network.port, s.limits.max_connections, s.model.engine, s.history.db) == (8765, 64, "whisper", None)
    assert s.limits.max_file_bytes == 2048 << 20


def test_precedence_file_then_environment_then_flags(tmp_path):
    config = tmp_path / "lingting.toml"
    config.write_text('[network]\nport = 9000\nhost = "0.0.0.0"\n[limits]\nmax_connections = 10\n'
                      'idle_timeout_s = 5\n[access]\nallowed_origins = ["https://a.example"]\n'
                      '[history]\ndb = "/tmp/h.sqlite3"\n')
    s = settings(["--config", str(config)])
    assert (s.network.port, s.network.host, s.limits.max_connections, s.limits.idle_timeout_s) == (
        9000, "0.0.0.0", 10, 5.0)
    assert s.access.allowed_origins == ("https://a.example",) and s.history.db == "/tmp/h.sqlite3"
    env = {"LINGTING_PORT": "9100", "LINGTING_ALLOWED_ORIGIN": "https://b.example, https://c.example",
           "LINGTING_HISTORY_DB": "off"}
    s = settings(["--config", str(config)], env)
    assert s.network.port == 9100 and s.access.allowed_origins == ("https://b.example", "https://c.example")
    assert s.history.db == "off" and s.limits.max_connections == 10
    s = settings(["--config", str(config), "--port", "9200", "--allowed-origin", "https://d.example"], env)
    assert s.network.port == 9200 and s.access.allowed_origins == ("https://d.example",)
    # The file can also be named by the environment.
    assert settings([], {"LINGTING_CONFIG": str(config)}).network.port == 9000


@pytest.mark.parametrize("argv, env, toml, fragment", [
    ([], {"LINGTING_PORT": "eighty"}, "", "LINGTING_PORT: 'eighty' is not an integer"),
    ([], {"LINGTING_ENGINE": "kaldi"}, "", "LINGTING_ENGINE: 'kaldi' is not one of whisper, funasr"),
    ([], {}, "[limits]\nmax_connections = 1.5\n", "max_connections: 1.5 is not an integer"),
    ([], {}, "[limits]\nmax_conections = 5\n", "unknown setting(s) in [limits]: max_conections"),
    ([], {}, "[netwrok]\nport = 1\n", "unknown table(s) netwrok"),
    ([], {}, "[network\n", "not valid TOML"),
])
def test_bad_values_name_their_source(tmp_path, argv, env, toml, fragment):
    if toml:
        (tmp_path / "c.toml").write_text(toml)
        argv = [*argv, "--config", str(tmp_path / "c.toml")]
    with pytest.raises(SettingsError) as info:
        settings(argv, env)
    assert fragment in str(info.value)


def test_printed_config_reads_back_as_the_same_settings(tmp_path):
    s = settings(["--port", "0", "--allowed-host", "asr.example", "--max-errors", "3", "--log-format", "json"])
    text = to_toml(s)
    assert tomllib.loads(text)["network"]["port"] == 0
    (tmp_path / "printed.toml").write_text(text)
    assert settings(["--config", str(tmp_path / "printed.toml")]) == s


def test_the_server_prints_its_effective_config():
    result = subprocess.run([sys.executable, "-m", "lingting_server", "--print-config", "--max-connections", "7"],
                            capture_output=True, text=True, env={"LINGTING_IDLE_TIMEOUT_S": "42", "PATH": ""},
                            timeout=60)
    assert result.returncode == 0, result.stderr
    printed = tomllib.loads(result.stdout)
    assert printed["limits"]["max_connections"] == 7 and printed["limits"]["idle_timeout_s"] == 42.0
    bad = subprocess.run([sys.executable, "-m", "lingting_server", "--print-config"], capture_output=True, text=True,
                         env={"LINGTING_MAX_CONNECTIONS": "many", "PATH": ""}, timeout=60)
    assert bad.returncode == 2 and "LINGTING_MAX_CONNECTIONS: 'many' is not an integer" in bad.stderr


def test_model_settings_come_in_groups_and_old_model_keys_still_read(tmp_path):
    s = settings(["--max-batch-size", "4", "--online-model", "paraformer-zh-streaming", "--speaker-model", "off"],
                 {"LINGTING_MAX_WAIT_MS": "20"})
    assert (s.batching.max_batch_size, s.batching.max_wait_ms) == (4, 20.0)
    assert s.funasr.online_model == "paraformer-zh-streaming" and s.speakers.speaker_model == "off"
    # Before the groups had tables, all of them were keys of [model]: such a file reads as it did.
    (tmp_path / "old.toml").write_text('[model]\nengine = "funasr"\nmax_batch_size = 3\nmodel_hub = "hf"\n'
                                       'speaker_model = "off"\n')
    old = settings(["--config", str(tmp_path / "old.toml")])
    assert (old.model.engine, old.batching.max_batch_size, old.funasr.model_hub, old.speakers.speaker_model) == (
        "funasr", 3, "hf", "off")
    (tmp_path / "new.toml").write_text('[model]\nengine = "funasr"\n[batching]\nmax_batch_size = 3\n'
                                       '[funasr]\nmodel_hub = "hf"\n[speakers]\nspeaker_model = "off"\n')
    assert settings(["--config", str(tmp_path / "new.toml")]) == old
    (tmp_path / "both.toml").write_text('[model]\nmax_batch_size = 3\n[batching]\nmax_batch_size = 4\n')
    with pytest.raises(SettingsError, match=r"max_batch_size is set in both \[model\] and \[batching\]"):
        settings(["--config", str(tmp_path / "both.toml")])
    (tmp_path / "bad.toml").write_text('[model]\nmax_batch_size = "many"\n')
    with pytest.raises(SettingsError, match=r"\[model\] max_batch_size: 'many' is not an integer"):
        settings(["--config", str(tmp_path / "bad.toml")])


def test_the_worker_gets_its_engines_options_as_one_object():
    from lingting_server.assembly import worker_options
    whisper = worker_options(settings(["--final-beam-size", "3", "--device", "cpu"]), cpu_threads=2)
    assert (whisper.engine, whisper.device, whisper.options.final_beam_size, whisper.options.cpu_threads) == (
        "whisper", "cpu", 3, 2)
    assert whisper.on_cpu().device == "cpu" and worker_options(settings(["--engine", "ray"])).engine == "whisper"
    funasr = worker_options(settings(["--engine", "funasr", "--model", "paraformer-zh", "--model-language", "auto"]))
    assert (funasr.model, funasr.options.language, funasr.options.hub) == ("paraformer-zh", "auto", "ms")


@pytest.mark.parametrize("argv, fragment", [
    (["--tls-cert", "c.pem"], "--tls-cert and --tls-key go together"),
    (["--webhook", "https://h.example/x"], "--webhook needs --webhook-secret"),
    (["--webhook-secret", "short"], "at least 16 characters"),
    (["--webhook-event", "partial"], "unknown event(s) partial"),
    (["--webhook", "https://h.example/x", "--webhook-secret", "s" * 16, "--history-db", "off"],
     "--webhook needs the history database"),
    (["--engine", "funasr", "--model", "paraformer-zh", "--model-workers", "2"], "--model-workers above 1"),
    (["--engine", "funasr"], "the funasr engine needs --model"),
])
def test_validate_refuses_settings_that_contradict_each_other(argv, fragment):
    with pytest.raises(SettingsError) as info:
        settings(argv).validate()
    assert fragment in str(info.value)


def test_api_keys_and_the_fixed_delays_are_settings():
    s = settings([], {"LINGTING_API_KEYS": "ops:" + "o" * 16 + ",bare" + "b" * 16})
    assert s.access.api_keys == ("ops:" + "o" * 16, "bare" + "b" * 16)
    assert (s.network.last_frames_s, s.limits.finals_wait_s, s.cluster.replica_retry_s) == (0.5, 120.0, 60.0)
    assert (s.outputs.webhook_retry_first_s, s.outputs.webhook_retry_max_s, s.outputs.webhook_give_up_s) == (
        0.5, 30.0, 86400.0)
