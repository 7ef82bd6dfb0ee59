"""docs/architecture.md names only files that exist, and the layering it
claims holds: outside rpc/ (and the cli/demo wiring) nothing imports grpc or
the generated stubs."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src" / "credfed"
DOC = REPO / "docs" / "architecture.md"

#: A file (``x.py``, ``a/b.sql``) or a directory (``crypto/``) the text names.
_PATH = re.compile(r"(?<![\w./-])((?:[\w-]+/)*[\w-]+\.(?:py|sql|proto|md)|(?:[\w-]+/)+)(?![\w/])")
_WIRING = {"cli.py", "demo.py"}
_EDGE_IMPORT = re.compile(
    r"^\s*(?:import grpc\b|from grpc[\w.]* "
    r"|from credfed\.(?:v1|rpc)\b|from credfed import (?:v1|rpc)\b)",
    re.M,
)
#: Named but not in this repository: the design (../shared/) and a node's
#: data directory (peers/<CC>.json).
_ELSEWHERE = {"DESIGN.md", "peers/"}


def _named_paths() -> set[str]:
    text = DOC.read_text(encoding="utf-8")
    return set(_PATH.findall(text)) - _ELSEWHERE


def _exists(name: str) -> bool:
    """Relative to the repository, to the package, or (a bare file name, as
    in 'federation/: descriptor.py, peers.py') to one of its subpackages."""
    if (REPO / name).exists() or (PACKAGE / name).exists():
        return True
    if "/" not in name.rstrip("/"):
        return any((sub / name).exists() for sub in PACKAGE.iterdir() if sub.is_dir())
    return False


def test_every_path_named_exists() -> None:
    named = _named_paths()
    assert len(named) > 40, sorted(named)  # the pattern still finds the paths
    for sample in ("src/credfed/rpc/", "federation/trust.py", "storage/migrations/"):
        assert sample in named
    missing = sorted(name for name in named if not _exists(name))
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_the_domain_imports_no_grpc() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in ("rpc", "v1") or str(relative) in _WIRING:
            continue
        if _EDGE_IMPORT.search(path.read_text(encoding="utf-8")):
            offenders.append(str(relative))
    assert not offenders, f"grpc or generated code imported outside rpc/: {offenders}"
    # The check sees such imports where they are allowed.
    assert _EDGE_IMPORT.search((PACKAGE / "rpc" / "server.py").read_text(encoding="utf-8"))
