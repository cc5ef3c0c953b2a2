"""Small REST helpers for tests: GET/PUT with the `{success, data}` envelope unwrapped."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def call(base: str, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    """Return (status, parsed JSON body) for a request; errors are returned, not raised."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def get(base: str, path: str) -> Any:
    """GET a route and return its `data`; fail loudly on an error envelope."""
    status, body = call(base, path)
    assert status == 200 and body["success"] is True, (status, body)
    return body["data"]
