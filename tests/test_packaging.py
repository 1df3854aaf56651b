"""The sdist and the wheel hold what users and the sdist's own tests need.

The sdist and the wheel are built once, without build isolation (no network), from a copy of
the source tree; the tests skip, saying why, where ``build`` or a setuptools new enough for
the metadata (77: ``license`` as an SPDX expression, ``license-files``) is missing. The
``build`` nox session builds them with isolation and installs the wheel.
"""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from realdata import REPO

import xpnet

CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text())


def setuptools_major() -> int:
    try:
        import setuptools
    except ImportError:
        return 0
    return int(setuptools.__version__.split(".")[0])


def test_the_build_requirement_can_build_the_metadata_used():
    """``license = "MIT"`` (an SPDX expression) and ``license-files`` need setuptools 77."""
    (requirement,) = CONFIG["build-system"]["requires"]
    assert requirement.replace(" ", "") == "setuptools>=77"
    assert CONFIG["build-system"]["build-backend"] == "setuptools.build_meta"
    assert CONFIG["project"]["license"] == "MIT"
    assert CONFIG["project"]["license-files"] == ["LICENSE"]


def test_the_license_file_is_mit_and_names_the_copyright_holder():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the xpnet developers\n")
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel built from a copy of this tree (the wheel from the sdist)."""
    pytest.importorskip("build", reason="building needs the package 'build'")
    if setuptools_major() < 77:
        pytest.skip("building without isolation needs setuptools 77 or newer here")
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".nox", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(work / "dist")],
        cwd=source,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (sdist,) = (work / "dist").glob("xpnet-*.tar.gz")
    (wheel,) = (work / "dist").glob("xpnet-*.whl")
    return sdist, wheel


def test_the_wheel_has_py_typed_the_license_and_the_bundled_weights(built):
    _, wheel = built
    version = xpnet.__version__
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"xpnet-{version}.dist-info"
        metadata = email.parser.Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        license_text = archive.read(f"{info}/licenses/LICENSE").decode()
    assert {"xpnet/py.typed", "xpnet/__main__.py", "xpnet/pretrained/mnist_5k.npz"} <= names
    assert license_text == (REPO / "LICENSE").read_text()
    assert not any(name.startswith(("tests/", "benchmarks/", "xpnet/bench")) for name in names)
    assert metadata["Version"] == version
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["Requires-Python"] == ">=3.11"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert "Typing :: Typed" in metadata.get_all("Classifier")
    urls = dict(line.split(", ", 1) for line in metadata.get_all("Project-URL"))
    assert set(urls) >= {"Homepage", "Source", "Issues"}
    assert all(url.startswith("https://") for url in urls.values())
    assert "xpnet = xpnet.cli:main" in entry_points


def test_the_sdist_carries_everything_its_tests_need(built):
    sdist, _ = built
    with tarfile.open(sdist) as archive:
        root = f"xpnet-{xpnet.__version__}/"
        names = {name.removeprefix(root) for name in archive.getnames()}
    wanted = {"LICENSE", "README.md", "pyproject.toml", "noxfile.py", "docs/cli.md"}
    wanted |= {str(path.relative_to(REPO)) for path in (REPO / "tests").glob("*.py")}
    wanted |= {str(path.relative_to(REPO)) for path in (REPO / "scripts").glob("*.py")}
    wanted |= {str(path.relative_to(REPO)) for path in (REPO / "benchmarks").glob("*.py")}
    wanted |= {str(path.relative_to(REPO)) for path in (REPO / "xpnet").rglob("*.py")}
    wanted |= {"xpnet/py.typed", "xpnet/pretrained/mnist_5k.npz"}
    assert {"tests/conftest.py", "tests/realdata.py", "tests/reference.py"} <= wanted
    assert wanted - names == set()
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_the_package_holds_no_benchmark_and_reads_no_system_files():
    """Benchmarks live in the checkout's ``benchmarks/``; nothing a user imports reads
    ``/proc`` or ``/sys`` or exports a benchmark."""
    import xpnet.scaleout

    sources = {p: p.read_text(encoding="utf-8") for p in (REPO / "xpnet").rglob("*.py")}
    assert sources and not [p for p, text in sources.items() if "/proc" in text or "/sys/" in text]
    assert not (REPO / "xpnet" / "bench").exists()
    assert not [name for name in xpnet.scaleout.__all__ if "throughput" in name.lower()]
    assert not hasattr(xpnet.scaleout, "measure_dask_throughput")
