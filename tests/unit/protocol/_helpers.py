"""Small helpers shared by the protocol codec tests: encode a value, decode it, unwrap."""

from __future__ import annotations

import json
from typing import Any

from aster_studio_sdk.protocol import Batch, ClientMessage, Decoded, ProtocolError, decode


def frame(value: Any) -> str:
    """Return `value` as the text of one JSON frame."""
    return json.dumps(value)


def decoded(value: Any) -> Decoded:
    """Decode `value` sent as one JSON text frame."""
    return decode(frame(value))


def message(value: Any) -> ClientMessage | Batch:
    """Decode `value` and return the message, failing the test on a protocol error."""
    result = decoded(value).message
    assert not isinstance(result, ProtocolError), result
    return result


def error(value: Any) -> ProtocolError:
    """Decode `value` and return the protocol error, failing the test if it was accepted."""
    result = decoded(value).message
    assert isinstance(result, ProtocolError), result
    return result
