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
