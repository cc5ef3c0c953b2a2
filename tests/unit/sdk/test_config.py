"""Settings from the environment and from code."""

from __future__ import annotations

import pytest

from aster_studio_sdk import ConfigError, DeliveryOptions
from aster_studio_sdk._config import DEFAULT_URL, connect_url, resolve

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
