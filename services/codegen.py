"""Generates the Python code for every contract under protos/.

    python -m services.codegen          # (re)generate next to the .proto files
    python -m services.codegen --check  # exit 1 if the committed code is stale

The output root is protos/ itself, so the generated import path equals the protobuf package
(`samhandling.storage.v1`). Generated files are never edited by hand.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from importlib import resources
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent.parent / "protos"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def _include_paths() -> list[str]:
    from google.type import date_pb2  # googleapis-common-protos ships its .proto files beside the code

    well_known = resources.files("grpc_tools") / "_proto"
    googleapis = Path(date_pb2.__file__).resolve().parents[2]
    return [str(well_known), str(googleapis)]


def proto_files(proto_root: Path = PROTO_ROOT) -> list[Path]:
    return sorted(proto_root.glob("samhandling/**/*.proto"))


def generate(out_dir: Path, proto_root: Path = PROTO_ROOT) -> None:
    from grpc_tools import protoc

    files = [str(path.relative_to(proto_root)) for path in proto_files(proto_root)]
    includes = [f"-I{proto_root}", *(f"-I{path}" for path in _include_paths())]
    outputs = [f"--{kind}_out={out_dir}" for kind in ("python", "grpc_python", "mypy", "mypy_grpc")]
    scripts = Path(sys.executable).parent  # mypy-protobuf installs its plugins beside the interpreter
    plugins = [f"--plugin=protoc-gen-{name}={scripts / f'protoc-gen-{name}'}" for name in ("mypy", "mypy_grpc")]
    exit_code = protoc.main(["protoc", *includes, *plugins, *outputs, *files])
    if exit_code != 0:
        raise SystemExit(f"protoc failed with exit code {exit_code}")
    _write_package_markers(out_dir, files)


def _write_package_markers(out_dir: Path, files: list[str]) -> None:
    """Regular packages (with __init__.py), so that setuptools finds and installs them."""
    for file in files:
        package = (out_dir / file).parent
        while package != out_dir:
            (package / "__init__.py").touch()
            package = package.parent


def generated_files(root: Path) -> set[Path]:
    found = set()
    for path in (root / "samhandling").rglob("*"):
        if path.name == "__init__.py" or path.name.endswith(GENERATED_SUFFIXES):
            found.add(path.relative_to(root))
    return found


def stale_files(proto_root: Path = PROTO_ROOT) -> list[str]:
    """Paths whose committed content differs from a fresh generation (missing, extra or changed)."""
    with tempfile.TemporaryDirectory() as scratch:
        fresh_root = Path(scratch)
        generate(fresh_root, proto_root)
        fresh, committed = generated_files(fresh_root), generated_files(proto_root)
        differing = fresh ^ committed
        for path in fresh & committed:
            if not filecmp.cmp(fresh_root / path, proto_root / path, shallow=False):
                differing.add(path)
        return sorted(str(path) for path in differing)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the committed generated code is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print("Generated code is stale; run `make proto`:", *stale, sep="\n  ", file=sys.stderr)
            return 1
        print("Generated code is up to date.")
        return 0
    for path in generated_files(PROTO_ROOT):
        if path.name != "__init__.py":
            (PROTO_ROOT / path).unlink()
    generate(PROTO_ROOT)
    print(f"Generated code for {len(proto_files())} proto files under {PROTO_ROOT}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
