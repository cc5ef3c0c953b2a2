"""Settings from the environment and from code."""

from __future__ import annotations

import pytest

from aster_studio_sdk import ConfigError, DeliveryOptions
from aster_studio_sdk._config import DEFAULT_URL, connect_url, redact_url, resolve

OPTS = DeliveryOptions()


def settings(env: dict[str, str], **kw: object) -> object:
    args: dict[str, object] = {"enabled": None, "url": None, "token": None, "strict": None}
    args.update(kw)
    return resolve(delivery=OPTS, environ=env, **args)  # type: ignore[arg-type]


def test_disabled_unless_enabled() -> None:
    assert settings({}).enabled is False  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "on"])
def test_enabled_by_environment(value: str) -> None:
    assert settings({"ASTER_STUDIO_ENABLED": value}).enabled is True  # type: ignore[attr-defined]


def test_unreadable_enabled_value_stays_off() -> None:
    assert settings({"ASTER_STUDIO_ENABLED": "maybe"}).enabled is False  # type: ignore[attr-defined]


def test_code_overrides_environment() -> None:
    s = settings(
        {"ASTER_STUDIO_ENABLED": "1", "ASTER_STUDIO_URL": "ws://a:1"}, enabled=False, url="ws://b:2"
    )
    assert s.enabled is False  # type: ignore[attr-defined]
    assert s.url == "ws://b:2/v1/remote-agents/connect"  # type: ignore[attr-defined]


def test_default_url_is_localhost_3032() -> None:
    assert DEFAULT_URL == "ws://localhost:3032"
    assert settings({}).url == "ws://localhost:3032/v1/remote-agents/connect"  # type: ignore[attr-defined]


def test_token_read_from_environment() -> None:
    assert settings({"ASTER_STUDIO_TOKEN": "t0k"}).token == "t0k"  # type: ignore[attr-defined]


def test_bad_url_in_environment_disables_instead_of_raising() -> None:
    s = settings({"ASTER_STUDIO_ENABLED": "1", "ASTER_STUDIO_URL": "ftp://x"})
    assert s.enabled is False  # type: ignore[attr-defined]


def test_bad_url_in_code_raises() -> None:
    with pytest.raises(ConfigError):
        settings({}, url="not a url")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://h:1", "ws://h:1/v1/remote-agents/connect"),
        ("http://h:1/", "ws://h:1/v1/remote-agents/connect"),
        ("https://h/base", "wss://h/base/v1/remote-agents/connect"),
        ("ws://h:1/v1/remote-agents/connect", "ws://h:1/v1/remote-agents/connect"),
    ],
)
def test_connect_url_adds_the_endpoint_path(url: str, expected: str) -> None:
    assert connect_url(url) == expected


def test_invalid_delivery_options_raise() -> None:
    with pytest.raises(ConfigError):
        DeliveryOptions(max_queue_size=0)
    with pytest.raises(ConfigError):
        DeliveryOptions(max_message_bytes=10, max_batch_bytes=5)


def test_drop_policy_given_by_name_becomes_the_enum() -> None:
    from aster_studio_sdk import DropPolicy

    assert DeliveryOptions(drop_policy="drop_oldest").drop_policy is DropPolicy.DROP_OLDEST  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "ws://[::1",
        "ws://[studio.internal]:3032",
        "ws://h:99999",
        "ws://h:abc",
        "ws://:3032",
        "ws://AGENTKEY@h:3032",  # a user without a password: websockets refused it at each try
        "ws://u:p%ff@h:3032",  # a password that is not UTF-8: an "internal error" at each try
    ],
)
def test_malformed_url_in_code_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        settings({}, url=url)


@pytest.mark.parametrize("enabled", ["1", None])
@pytest.mark.parametrize("url", ["ws://[::1", "ws://h:99999", "ws://h:abc"])
def test_malformed_url_in_environment_warns_and_leaves_reporting_off(
    url: str, enabled: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"ASTER_STUDIO_URL": url}
    if enabled is not None:
        env["ASTER_STUDIO_ENABLED"] = enabled
    s = settings(env)
    assert s.enabled is False  # type: ignore[attr-defined]
    assert "ASTER_STUDIO_URL" in caplog.text and "reporting is off" in caplog.text


def test_client_with_malformed_url_in_environment_runs_with_reporting_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aster_studio_sdk import StudioClient

    monkeypatch.setenv("ASTER_STUDIO_ENABLED", "1")
    monkeypatch.setenv("ASTER_STUDIO_URL", "ws://[::1")
    client = StudioClient("agent-env")
    assert client.enabled is False
    client.text("x")
    assert client.close(0)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ws://user:pw@h:1/p", "ws://***@h:1/p"),
        ("ws://tok@h:1", "ws://***@h:1"),
        ("ws://h:1/p?token=s3cret&x=1", "ws://h:1/p?token=***&x=1"),
        ("ws://h:1/p", "ws://h:1/p"),
    ],
)
def test_redact_url_masks_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_config_error_for_a_bad_url_does_not_show_its_password() -> None:
    with pytest.raises(ConfigError) as info:
        settings({}, url="ws://user:pw@h:99999")
    assert "pw" not in str(info.value)


def test_a_connection_error_quoting_the_url_shows_no_credentials() -> None:
    """websockets' errors quote the URL whole: the key given as its user name was logged."""
    from websockets.exceptions import InvalidURI

    from aster_studio_sdk._transport import _scrub

    url = "ws://writer:SECRETPASS@studio:3032/v1/remote-agents/connect?token=TOKEN1234&agent=w"
    text = _scrub(InvalidURI(url, "no"), url)
    assert "SECRETPASS" not in text and "TOKEN1234" not in text and "writer" not in text
    assert "studio:3032" in text


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ws://exa mple:3032/v1", "a space"),
        ("ws://example:3032/a b", "a space"),
        ("ws://example:3032/?x=a b", "a space"),
        ("ws://example:3032/a\tb", "a control character"),
        ("ws://exa\nmple:3032", "a control character"),
        ("ws://example\x00:3032", "a control character"),
        ("ws://exa<mple:3032", "characters a host name cannot"),
        ("ws://exa%20mple:3032", "characters a host name cannot"),
        ("ws://[::zz]:3032", "malformed host"),
        ("ws://[::1:3032", "malformed host"),
    ],
)
def test_malformed_url_in_code_is_a_config_error_naming_the_problem(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        settings({}, url=url)


def test_client_with_a_space_in_its_url_fails_at_construction() -> None:
    from aster_studio_sdk import StudioClient

    with pytest.raises(ConfigError, match="a space"):
        StudioClient("a", enabled=True, url="ws://exa mple:3032/v1/remote-agents/connect")


def test_url_in_environment_with_a_space_leaves_reporting_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = settings({"ASTER_STUDIO_ENABLED": "1", "ASTER_STUDIO_URL": "ws://exa mple:3032"})
    assert s.enabled is False  # type: ignore[attr-defined]
    assert "a space" in caplog.text


def test_surrounding_whitespace_is_not_part_of_the_url() -> None:
    assert connect_url(" ws://h:1\n") == "ws://h:1/v1/remote-agents/connect"


@pytest.mark.parametrize(
    "url",
    [
        "ws://user:s3cr/et@h:3032",  # an unescaped / in the password: read as the port
        "ws://user:s3cr?et@h:3032",
        "ws:user:s3cret@h:3032",  # no //: not read as a user and password at all
        "ws//user:s3cret@h:3032",
        "user:s3cret@h:3032",
        "ws://user:s3 cret@h:3032",  # a space in the password
        "ws://user:s3cret@exa mple:3032",
        "ws://user:s3cret@[::1:3032",
        "ftp://user:s3cret@h",
        "ws://h:3032/a b?token=s3cret",
    ],
)
def test_config_error_for_a_malformed_url_never_shows_its_credentials(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings({}, url=url)
    assert "s3cr" not in str(info.value) and "cret" not in str(info.value)


def test_settings_show_the_url_masked_and_keep_the_real_one_to_connect() -> None:
    from aster_studio_sdk._config import target_url

    s = settings({}, url="ws://user:s3cret@h:1/?token=t0ken&x=1", token="bearer-t0ken")
    assert s.url == "ws://***@h:1/v1/remote-agents/connect?token=***&x=1"  # type: ignore[attr-defined]
    assert target_url(s) == "ws://user:s3cret@h:1/v1/remote-agents/connect?token=t0ken&x=1"  # type: ignore[arg-type]
    assert "s3cret" not in repr(s) and "t0ken" not in repr(s)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ws://user:p/w@h:1/p", "ws://***@h:1/p"),
        ("ws:user:pw@h:1", "***@h:1"),
        ("ws://h:1/p?x=1&Token=abc&api_key=k#frag", "ws://h:1/p?x=1&Token=***&api_key=***#frag"),
    ],
)
def test_redact_url_masks_credentials_urllib_does_not_read_as_such(url: str, shown: str) -> None:
    assert redact_url(url) == shown
