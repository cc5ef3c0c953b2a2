"""The compiled modules are used only when built from the sources beside them, all or none."""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import logging
import os
import sys
from pathlib import Path

import pytest

from aster_studio_sdk import _native
from aster_studio_sdk.protocol import _codec

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def write_build(root: Path, manifest: dict[str, object]) -> None:
    (root / ".native").mkdir()
    (root / ".native" / "manifest.json").write_text(json.dumps(manifest))


def built_from(root: Path, sources: dict[str, str]) -> dict[str, object]:
    """A manifest for `sources` (module name: file text) as they are now, under `root`."""
    modules = {}
    for name, text in sources.items():
        path = root / f"{name}.py"
        path.write_text(text)
        modules[name] = [path.name, hashlib.sha256(text.encode()).hexdigest()]
    return {
        "python": sys.implementation.cache_tag,
        "suffix": SUFFIX,
        "runtime": f"abc__mypyc{SUFFIX}",
        "modules": modules,
    }


def test_a_checkout_never_built_runs_from_source_without_a_word(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert _native.load(tmp_path, "") == frozenset()
    assert caplog.records == []


def test_one_changed_source_turns_every_compiled_module_off_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = built_from(tmp_path, {"alpha": "A = 1\n", "beta": "B = 1\n"})
    write_build(tmp_path, manifest)
    (tmp_path / "beta.py").write_text("B = 2\n")
    with caplog.at_level(logging.WARNING):
        assert _native.load(tmp_path, "") == frozenset()
    assert "beta changed since built" in caplog.text
    assert "alpha" not in caplog.text


def test_a_build_for_another_python_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = built_from(tmp_path, {"alpha": "A = 1\n"})
    write_build(tmp_path, {**manifest, "python": "cpython-399"})
    with caplog.at_level(logging.WARNING):
        assert _native.load(tmp_path, "") == frozenset()
    assert "built for cpython-399" in caplog.text


def test_a_compiled_module_missing_from_the_build_turns_them_all_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_build(tmp_path, built_from(tmp_path, {"alpha": "A = 1\n", "beta": "B = 1\n"}))
    (tmp_path / ".native" / f"alpha{SUFFIX}").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        assert _native.load(tmp_path, "") == frozenset()
    assert "beta missing from" in caplog.text


def test_a_failed_build_says_why_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_build(tmp_path, {"error": "gcc: command not found"})
    with caplog.at_level(logging.WARNING):
        assert _native.load(tmp_path, "") == frozenset()
    assert "their build failed" in caplog.text
    assert "gcc: command not found" in caplog.text


def test_required_and_not_usable_is_an_import_error(tmp_path: Path) -> None:
    with pytest.raises(ImportError, match="not built"):
        _native.load(tmp_path, "1")
    write_build(tmp_path, {"error": "no compiler"})
    with pytest.raises(ImportError, match="no compiler"):
        _native.load(tmp_path, "1")


def test_turned_off_ignores_even_a_good_build(tmp_path: Path) -> None:
    write_build(tmp_path, built_from(tmp_path, {"alpha": "A = 1\n"}))
    assert _native.load(tmp_path, "0") == frozenset()


def test_this_process_runs_what_the_environment_asks_for() -> None:
    """Under `ASTER_STUDIO_NATIVE=1` (CI) the decoder is the compiled one; under 0 the source."""
    compiled = _codec.__file__ is not None and _codec.__file__.endswith(SUFFIX)
    assert compiled == ("aster_studio_sdk.protocol._codec" in _native.compiled_modules())
    mode = os.environ.get(_native.ENV, "")
    if mode in ("0", "1"):
        assert compiled == (mode == "1")
