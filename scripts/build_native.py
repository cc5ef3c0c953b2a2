"""Compile the server's per-event modules with mypyc into `.native/`, beside a manifest.

    python scripts/build_native.py SOURCE.py ...     (`make native`; `make install` runs it)

How the compiled modules are then used, and when they are not: `aster_studio_sdk/_native.py`.
The manifest is written last, so an interrupted build leaves no half-used build behind. A build
that fails (no C compiler, a mypyc error) records why in the manifest and exits 0: the Studio
then runs from source and says so at start. With `ASTER_STUDIO_NATIVE=1` it exits 1 instead.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".native"


def module_name(source: Path) -> str:
    """The dotted name of `source`, from the packages (folders with `__init__.py`) holding it."""
    parts = [source.stem]
    folder = source.parent
    while (folder / "__init__.py").exists():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(sources: list[Path], into: Path) -> dict[str, object]:
    """Compile `sources` as one mypyc group in `into`; return the manifest's fields."""
    modules = {module_name(s): s for s in sources}
    for name in modules:
        # mypyc copies each module beside its package folders in the working directory.
        into.joinpath(*name.split(".")[:-1]).mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mypyc", *map(str, sources)],
        cwd=into,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        lines = (done.stdout + done.stderr).strip().splitlines()
        errors = [line for line in lines if "error" in line.lower()] or lines
        raise RuntimeError("mypyc failed:\n" + "\n".join(errors[-8:]))
    shutil.rmtree(into / "build", ignore_errors=True)  # the generated C and object files
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    runtime = [p.name for p in into.glob(f"*__mypyc{suffix}")]
    missing = [n for n in modules if not into.joinpath(*n.split(".")).with_suffix(suffix).exists()]
    if len(runtime) != 1 or missing:
        raise RuntimeError(f"mypyc left no module for {missing or 'its runtime'}")
    return {
        "python": sys.implementation.cache_tag,
        "suffix": suffix,
        "runtime": runtime[0],
        "seconds": round(time.monotonic() - started, 1),
        "modules": {
            name: [str(source.relative_to(ROOT)), digest(source)]
            for name, source in modules.items()
        },
    }


def main(argv: list[str]) -> int:
    sources = [Path(a).resolve() for a in argv]
    staging = BUILD.with_name(".native.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        manifest = build(sources, staging)
    except (OSError, RuntimeError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        manifest = {"error": str(exc)}
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(BUILD, ignore_errors=True)
    staging.rename(BUILD)
    if "error" in manifest:
        print(f"native build failed; the Studio runs from source:\n{manifest['error']}")
        return 1 if os.environ.get("ASTER_STUDIO_NATIVE") == "1" else 0
    print(f"compiled {len(sources)} modules into {BUILD} in {manifest['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
