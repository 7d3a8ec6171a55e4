"""Generate service/generated from protos/: `python -m service.protogen [OUT_ROOT]`."""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parent.parent
PROTOS = REPO / "protos"
PACKAGE = "service/generated"
HEADER = '"""Generated from protos/ by `make protos`; do not edit."""\n'


def generate(out_root: Path) -> list[Path]:
    """Write the stubs under out_root/service/generated; return the files written."""
    sources = sorted(PROTOS.rglob("*.proto"))
    (out_root / PACKAGE).mkdir(parents=True, exist_ok=True)
    well_known = Path(protoc.__file__).parent / "_proto"
    # -I<package>=protos makes generated imports package-relative (service.generated.…).
    args = [
        "protoc",
        f"-I{PACKAGE}={PROTOS}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *(f"{PACKAGE}/{s.relative_to(PROTOS)}" for s in sources),
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {', '.join(map(str, sources))}")
    package_root = out_root / PACKAGE
    for folder in [package_root, *(p for p in package_root.rglob("*") if p.is_dir() and p.name != "__pycache__")]:
        (folder / "__init__.py").write_text(HEADER)
    return sorted(p for p in package_root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


if __name__ == "__main__":
    written = generate(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO)
    print(f"wrote {len(written)} files under {PACKAGE}")
