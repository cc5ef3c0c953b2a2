"""Check a JSON value against the OpenAPI document's schema for it (no jsonschema needed).

The subset the generated document uses: `$ref`, `type`, `const`, `enum`, `anyOf`,
`properties`, `required`, `additionalProperties` and `items`. Stricter than JSON Schema in
one way: an object that lists its `properties` and says nothing of others may hold no others,
so a field a route adds without documenting it fails the check.
"""

from __future__ import annotations

from typing import Any

TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, TYPES[kind])


def problems(
    value: Any, schema: dict[str, Any], document: dict[str, Any], at: str = "$"
) -> list[str]:
    """Every way `value` breaks `schema` (refs resolved in `document`); [] when it fits."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        return problems(value, document["components"]["schemas"][name], document, at)
    if "anyOf" in schema:
        tried = [problems(value, option, document, at) for option in schema["anyOf"]]
        return [] if any(not p for p in tried) else [p for found in tried for p in found]
    found: list[str] = []
    kind = schema.get("type")
    if kind is not None and not _is(value, kind):
        return [f"{at}: {value!r:.60} is not {kind}"]
    if "const" in schema and value != schema["const"]:
        found.append(f"{at}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{at}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        declared = schema.get("properties", {})
        found += [
            f"{at}: {name!r} is missing" for name in schema.get("required", ()) if name not in value
        ]
        extra = schema.get("additionalProperties", not declared)
        for name, item in value.items():
            if name in declared:
                found += problems(item, declared[name], document, f"{at}.{name}")
            elif extra is False:
                found.append(f"{at}: {name!r} is not in the schema")
            elif isinstance(extra, dict):
                found += problems(item, extra, document, f"{at}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += problems(item, schema["items"], document, f"{at}[{i}]")
    return found


def response_schema(
    document: dict[str, Any], method: str, path: str, status: int, media: str
) -> dict[str, Any]:
    """The schema the document gives a response (fails when it gives none)."""
    responses = document["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method} {path}: {status} not documented"
    content = responses[str(status)]["content"]
    assert media in content, f"{method} {path} {status}: {media} not in {list(content)}"
    schema: dict[str, Any] = content[media]["schema"]
    return schema
