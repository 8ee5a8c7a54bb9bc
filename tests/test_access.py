"""API keys, origins and per-key limits (pure logic, synthetic headers)."""

import pytest
from starlette.datastructures import Headers

from lingting_server.__main__ import access_policy
from lingting_server.settings import build_parser, load_settings
from lingting_server.services.access import AccessDenied, AccessPolicy, ApiKey, client_ip, load_keys

SECRET = "k" * 24


def test_keys_from_toml_and_environment(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text(f'[[keys]]\nname = "agents"\nkey = "{SECRET}"\nmax_streams = 3\naudio_minutes_per_day = 90\n')
    keys = load_keys(str(path), env="ops:" + "o" * 20 + ", " + "b" * 16)
    assert keys == [ApiKey("agents", SECRET, 3, 90.0), ApiKey("ops", "o" * 20), ApiKey("env1", "b" * 16)]
    assert "o" * 20 not in repr(keys)                    # secrets stay out of logs
    with pytest.raises(ValueError, match="16 characters"):
        load_keys(env="short")
    with pytest.raises(ValueError, match="twice"):
        load_keys(env=f"{SECRET},{SECRET}")
    path.write_text('[[keys]]\nkey = "tiny"\n')
    with pytest.raises(ValueError, match="keys\\[0\\]"):
        load_keys(str(path), env="")


@pytest.mark.parametrize("path, hdrs", [
    ("/v1/stream", {"Authorization": f"Bearer {SECRET}"}),
    ("/v1/stream", {"X-API-Key": SECRET}),
    ("/v1/stream", {"Sec-WebSocket-Protocol": f"lingting.v1.json, lingting.key.{SECRET}"}),
    (f"/v1/stream?api_key={SECRET}", {}),
])
def test_a_key_is_accepted_in_every_place_a_client_can_put_it(path, hdrs):
    policy = AccessPolicy([ApiKey("agents", SECRET)])
    assert policy.authenticate(path, Headers(hdrs)).name == "agents"


def test_missing_or_wrong_keys_are_refused():
    policy = AccessPolicy([ApiKey("agents", SECRET)])
    for hdrs in ({}, {"Authorization": "Bearer nope"}, {"X-API-Key": SECRET + "x"}):
        with pytest.raises(AccessDenied) as info:
            policy.authenticate("/v1/stream", Headers(hdrs))
        assert info.value.status == 401
    assert AccessPolicy().authenticate("/v1/stream", Headers()) is None      # no keys: open


def test_origins():
    same = {"Host": "asr.local:8765", "Origin": "http://asr.local:8765"}
    AccessPolicy().check_origin(Headers(same))                 # our own page
    AccessPolicy().check_origin(Headers({"Host": "asr.local:8765"}))   # not a browser
    with pytest.raises(AccessDenied) as info:
        AccessPolicy().check_origin(Headers({"Host": "asr.local:8765", "Origin": "https://evil.example"}))
    assert info.value.status == 403 and "--allowed-origin https://evil.example" in info.value.message
    allowed = AccessPolicy(allowed_origins=["https://app.example.com/"])
    allowed.check_origin(Headers({"Host": "x", "Origin": "https://app.example.com"}))
    with pytest.raises(AccessDenied):
        allowed.check_origin(Headers(same))                    # a list replaces same-host
    AccessPolicy(allowed_origins=["*"]).check_origin(Headers({"Host": "x", "Origin": "https://any.where"}))


def test_per_key_streams_and_daily_audio_quota():
    now = [86400 * 100 + 3600.0]
    policy = AccessPolicy([], clock=lambda: now[0])
    key = ApiKey("agents", SECRET, max_streams=2, audio_minutes_per_day=1)
    policy.admit(key)
    policy.opened(key)
    policy.opened(key)
    with pytest.raises(AccessDenied) as info:
        policy.admit(key)
    assert (info.value.status, info.value.code) == (429, "key_limit")
    policy.closed(key)
    policy.admit(key)
    assert policy.use_audio(key, 50) and not policy.use_audio(key, 15)
    with pytest.raises(AccessDenied) as info:
        policy.admit(key)
    assert info.value.code == "quota_exceeded" and info.value.retry_after == 86400 - 3600 + 1
    now[0] += 86400                                        # a new UTC day
    policy.admit(key)
    assert policy.quota_left(key) == 60


def test_without_keys_the_server_binds_to_loopback_only(caplog):
    policy, host = access_policy(load_settings(build_parser().parse_args(["--host", "0.0.0.0"]), {}))
    assert policy.open and host == "127.0.0.1"
    assert "no API keys configured: binding to 127.0.0.1 instead of 0.0.0.0" in caplog.text
    keyed = load_settings(build_parser().parse_args(["--host", "0.0.0.0"]), {"LINGTING_API_KEYS": SECRET})
    policy, host = access_policy(keyed)
    assert not policy.open and host == "0.0.0.0"


def test_client_address_behind_a_trusted_proxy():
    forwarded = Headers({"X-Forwarded-For": "203.0.113.7, 10.0.0.2"})
    assert client_ip("198.51.100.1", forwarded) == "198.51.100.1"              # not a proxy: its word is ignored
    assert client_ip("10.0.0.1", forwarded, frozenset({"10.0.0.1"})) == "10.0.0.2"
    assert client_ip("10.0.0.1", forwarded, frozenset({"10.0.0.1", "10.0.0.2"})) == "203.0.113.7"
    assert client_ip("10.0.0.1", Headers(), frozenset({"10.0.0.1"})) == "10.0.0.1"


def test_a_keyless_server_answers_only_to_loopback_and_allowed_host_names():
    open_policy = AccessPolicy(allowed_hosts=["Captions.Example"])
    for host in ("localhost", "localhost:8765", "127.0.0.1:1", "[::1]:8765", "[::1]", "captions.example:443"):
        open_policy.check_host(Headers({"Host": host}))
    for hdrs in (Headers({"Host": "attacker.example:8765"}), Headers({"Host": "localhost.attacker.example"}),
                 Headers(), Headers(raw=[(b"host", b"localhost"), (b"host", b"attacker.example")])):
        with pytest.raises(AccessDenied) as info:
            open_policy.check_host(hdrs)
        assert info.value.status == 421 and info.value.code == "forbidden_host"
    keyed = AccessPolicy([ApiKey("agents", SECRET)])
    keyed.check_host(Headers({"Host": "asr.example.com"}))     # keys guard it; no list given
    with pytest.raises(AccessDenied):
        AccessPolicy([ApiKey("agents", SECRET)], allowed_hosts=["asr.example.com"]).check_host(
            Headers({"Host": "other.example.com"}))


def test_tenants_and_admin_keys(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text(f'[[keys]]\nname = "ops"\nkey = "{SECRET}"\nadmin = true\n')
    [ops] = load_keys(str(path), env="agents:" + "a" * 20)[:1]
    agents = load_keys(env="agents:" + "a" * 20)[0]
    assert ops.admin and not agents.admin
    assert AccessPolicy.tenant(agents) == "agents"
    assert AccessPolicy.tenant(ops) is None and AccessPolicy.tenant(None) is None    # all sessions
    path.write_text(f'[[keys]]\nname = "ops"\nkey = "{SECRET}"\nadmin = "yes"\n')
    with pytest.raises(ValueError, match="admin"):
        load_keys(str(path), env="")
    with pytest.raises(ValueError, match="same name"):
        load_keys(env="a:" + "x" * 20 + ",a:" + "y" * 20)
