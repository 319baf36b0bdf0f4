#!/usr/bin/env python3
"""Check that the committed prebuilt extension (ipar_widgets/labextension/) is what the
TypeScript source in labextension/ builds to.

It copies the source to a temporary folder (so it works the same from any clone, in any
folder), installs the locked dependencies (``jlpm install --immutable``: fails if yarn.lock
does not match package.json), runs ``jlpm build:prod`` there, and compares the result with
the committed files, byte for byte.  The build is reproducible across folders because
rspack.config.js numbers modules in order instead of hashing their absolute paths.

Run it with the Python of an environment where ``jlpm``/``jupyter-builder`` are installed
(``pip install -e .[test]`` brings them with jupyterlab) and node on PATH:

    python labextension/check_prebuilt.py [--keep]

Exit status: 0 fresh, 1 stale (the differences are listed), 2 the build itself failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
COMMITTED = REPO / "ipar_widgets" / "labextension"
SOURCES = [
    "package.json",
    "yarn.lock",
    ".yarnrc.yml",
    "tsconfig.json",
    "rspack.config.js",
    "src",
    "style",
    "schema",
]


def files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def compare(built: Path, committed: Path) -> list[str]:
    """The differences between two built extensions, as sentences."""
    new, old = files(built), files(committed)
    problems = [f"missing from the commit: {name}" for name in sorted(set(new) - set(old))]
    problems += [f"committed but no longer built: {name}" for name in sorted(set(old) - set(new))]
    problems += [
        f"differs: {name}" for name in sorted(set(new) & set(old)) if new[name] != old[name]
    ]
    return problems


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    print(f"$ {' '.join(cmd)}  (in {cwd})", flush=True)
    subprocess.run(cmd, cwd=cwd, env=env, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary build folder")
    args = parser.parse_args()
    if not (COMMITTED / "package.json").is_file():
        print(f"no prebuilt extension at {COMMITTED}: build it with `jlpm build:prod` in {HERE}")
        return 1
    env = dict(os.environ)
    # jlpm and jupyter-builder, which package.json's scripts call by name, live beside Python
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if (
        shutil.which("jlpm", path=env["PATH"]) is None
        or shutil.which("node", path=env["PATH"]) is None
    ):
        print("jlpm and node must be on PATH (jlpm comes with jupyterlab / jupyter_builder)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="ipar-labextension-check-"))
    started = time.monotonic()
    try:
        source = work / "labextension"
        source.mkdir()
        for name in SOURCES:
            src = HERE / name
            if src.is_dir():
                shutil.copytree(src, source / name)
            else:
                shutil.copy2(src, source / name)
        try:
            run(["jlpm", "install", "--immutable"], source, env)
            run(["jlpm", "build:prod"], source, env)
        except subprocess.CalledProcessError as exc:
            print(f"the build failed: {exc}")
            return 2
        problems = compare(work / "ipar_widgets" / "labextension", COMMITTED)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    took = time.monotonic() - started
    if problems:
        print(f"\nThe committed prebuilt extension does not match the source ({took:.0f} s):")
        for problem in problems:
            print(f"  - {problem}")
        print(
            f"Rebuild it with `jlpm build:prod` in {HERE.relative_to(REPO)}/ and commit "
            f"{COMMITTED.relative_to(REPO)}/."
        )
        return 1
    print(f"\nThe committed prebuilt extension matches the source ({took:.0f} s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
