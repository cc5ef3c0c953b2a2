"""Use the modules `make native` compiled with mypyc, when they were built from these sources.

The Studio server runs the same few modules for every event (the protocol's decoder, the
ingest step, the live bus, the store's writer). `make native` (part of `make install`)
compiles them with mypyc into `.native/` at the checkout's root, with a manifest of their
sources' SHA-256 (`scripts/build_native.py`). A package holding such modules puts
`compiled_path(__name__)` in front of its `__path__` before importing anything, so the import
system finds the compiled module before the source.

The compiled modules are one unit (mypyc calls between them directly, not through imports),
so they are used all together or not at all: if any source differs from the one compiled, all
run from source and a warning says so. `ASTER_STUDIO_NATIVE=0` turns them off; `=1` makes not
using them an error (CI, so the tests run the code users run). An installed wheel has no
`.native/`, and runs from source without a word. Standard library only, as `protocol/` is.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["ENV", "compiled_modules", "compiled_path", "describe", "load"]

log = logging.getLogger(__name__)

ENV = "ASTER_STUDIO_NATIVE"
# sdk/src/aster_studio_sdk/_native.py: the checkout is three folders up.
_ROOT = Path(__file__).resolve().parents[3]


def load(root: Path, mode: str) -> frozenset[str]:
    """The compiled modules of `root/.native` that are usable here, or none ("0": none wanted).

    Loads their shared runtime when they are; raises ImportError in mode "1" when they are not.
    """
    if mode == "0":
        return frozenset()
    build = root / ".native"
    reason: str | None
    if not (build / "manifest.json").exists():
        if mode != "1":
            return frozenset()  # an installed package, or a checkout never built: no news
        reason = "not built (`make native`)"
    else:
        try:
            manifest = json.loads((build / "manifest.json").read_text())
            reason = _unusable(root, manifest)
            if reason is None:
                _load_runtime(build / manifest["runtime"])
                return frozenset(manifest["modules"])
        except (OSError, ValueError, KeyError, TypeError, ImportError) as exc:
            reason = f"their build in {build} is unreadable: {exc!r}"
    if mode == "1":
        raise ImportError(f"compiled modules required ({ENV}=1) but not usable: {reason}")
    log.warning("running from source, not the compiled modules: %s", reason)
    return frozenset()


def _unusable(root: Path, manifest: dict[str, Any]) -> str | None:
    if "error" in manifest:
        return f"their build failed (`rm -r .native; make native` tries again): {manifest['error']}"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    if manifest["python"] != sys.implementation.cache_tag or manifest["suffix"] != suffix:
        return f"built for {manifest['python']}, this is {sys.implementation.cache_tag}"
    changed = [
        name
        for name, (source, digest) in manifest["modules"].items()
        if hashlib.sha256((root / source).read_bytes()).hexdigest() != digest
    ]
    if changed:
        return f"{', '.join(sorted(changed))} changed since built; `make native` rebuilds them"
    # One missing would be imported from source beside its compiled twin: two copies of it.
    build = root / ".native"
    missing = [
        n
        for n in manifest["modules"]
        if not build.joinpath(*n.split(".")).with_suffix(suffix).exists()
    ]
    if missing:
        return f"{', '.join(sorted(missing))} missing from {build}; `make native` rebuilds them"
    return None


def _load_runtime(path: Path) -> None:
    """Import the group's shared library by path, so the compiled modules find it by name."""
    name = path.name.split(".", 1)[0]
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module


@cache
def compiled_modules() -> frozenset[str]:
    """The modules this process runs compiled (decided once, at the first import that asks)."""
    return load(_ROOT, os.environ.get(ENV, ""))


def compiled_path(package: str) -> list[str]:
    """The folder to put before `package`'s `__path__`: [] when none of its modules is compiled."""
    prefix = package + "."
    for name in compiled_modules():
        if name.startswith(prefix) and "." not in name[len(prefix) :]:
            return [str(_ROOT.joinpath(".native", *package.split(".")))]
    return []


def describe() -> str:
    """What this process runs, for banners and benchmark reports."""
    count = len(compiled_modules())
    return f"{count} modules compiled (mypyc)" if count else "from source"
