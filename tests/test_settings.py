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
