"""The package as a server installs it (docs/operator-guide.md, "Install";
the Dockerfile's builder stage): a wheel built from the checkout, installed
on its own, must carry what the node needs at run time - the migrations,
the code lists, the console script - and work without the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=300, check=False, env=env, cwd=cwd
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, installed alone into a directory of its own (its
    dependencies come from this venv, as they would from the server's)."""
    work = tmp_path_factory.mktemp("wheel")
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check", "-q")
    # No build isolation: the venv has the build backend (setuptools), and
    # the test must not need more of the network than `make install` did.
    _run(*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(ROOT))
    (wheel,) = (work / "dist").glob("credfed-*.whl")
    _run(*pip, "install", "--no-deps", "--target", str(work / "site"), str(wheel))
    return work


def test_the_installed_wheel_runs_a_node_without_the_source_tree(installed: Path) -> None:
    # PYTHONPATH puts the installed copy ahead of the venv's editable one;
    # the working directory is outside the checkout.
    env = {**os.environ, "PYTHONPATH": str(installed / "site")}
    where = _run(
        sys.executable, "-c", "import credfed; print(credfed.__file__)", env=env, cwd=installed
    )
    assert Path(where.strip()).is_relative_to(installed / "site")
    script = installed / "site" / "bin" / "credfed"
    data = installed / "de"
    _run(str(script), "init", "--country", "DE", "--data-dir", str(data), env=env, cwd=installed)
    checked = _run(str(script), "config", "check", "--data-dir", str(data), env=env, cwd=installed)
    migrations = sorted((ROOT / "src/credfed/storage/migrations").glob("*.sql"))
    assert f"(schema version {len(migrations)})" in checked
    # The code lists ship as package data (ISCO-08, ESCO, their attribution).
    probe = (
        "from credfed import codelists; "
        "print(codelists.isco_label('7411'), len(codelists.esco_occupations('7411')))"
    )
    label, _, count = (
        _run(sys.executable, "-c", probe, env=env, cwd=installed).strip().rpartition(" ")
    )
    assert label == "Building and related electricians" and int(count) > 0
    assert (installed / "site" / "credfed" / "data" / "ATTRIBUTION.md").is_file()
