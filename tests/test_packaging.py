"""The sdist and the wheel hold what users and the sdist's own tests need, and describe xpnet
in words a package index can show.

The sdist and the wheel are built once, without build isolation (no network), from a copy of
the source tree; the tests skip, saying why, where ``build`` or a build requirement of
pyproject.toml (at a version it allows) is missing. The ``build`` nox session builds them with
isolation and installs the wheel; the description is also checked in the metadata of an
installed xpnet (the wheel there, an editable install in the other sessions).
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import warnings
import zipfile
from pathlib import Path

import pytest
from realdata import REPO

import xpnet

CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text())


def missing_build_requirements() -> list[str]:
    """The build requirements of pyproject.toml not installed here at a version they allow."""
    from packaging.requirements import Requirement

    missing = []
    for line in CONFIG["build-system"]["requires"]:
        requirement = Requirement(line)
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(line)
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            missing.append(f"{line} (found {installed})")
    return missing


def test_the_build_requirement_can_build_the_metadata_used():
    """``license = "MIT"`` (an SPDX expression) and ``license-files`` need hatchling 1.27;
    the readme is made by hatch-fancy-pypi-readme."""
    requires = [line.replace(" ", "") for line in CONFIG["build-system"]["requires"]]
    assert requires == ["hatchling>=1.27", "hatch-fancy-pypi-readme>=25.1"]
    assert CONFIG["build-system"]["build-backend"] == "hatchling.build"
    assert CONFIG["project"]["license"] == "MIT AND CC-BY-SA-3.0"
    assert CONFIG["project"]["license-files"] == ["LICENSE", f"{MNIST_TEST}/LICENSE.md"]
    assert "readme" in CONFIG["project"]["dynamic"] and "readme" not in CONFIG["project"]
    hook = CONFIG["tool"]["hatch"]["metadata"]["hooks"]["fancy-pypi-readme"]
    assert hook["fragments"] == [{"path": "README.md"}]
    assert hook["content-type"] == "text/markdown"


def test_no_project_url_is_given_as_xpnet_has_no_public_address():
    """A URL to an address xpnet does not own would send users to someone else's project."""
    assert "urls" not in CONFIG["project"]
    assert "urls" not in CONFIG["project"].get("dynamic", [])


MNIST_TEST = "xpnet/datasets/mnist_test"
"""The MNIST test split that ships in the package, with its CC BY-SA 3.0 notice."""
MNIST_TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def test_the_embedded_mnist_files_carry_their_attribution_and_licence():
    text = (REPO / MNIST_TEST / "LICENSE.md").read_text()
    for words in ("Yann LeCun", "Corinna Cortes", "NIST", "CC BY-SA 3.0", *MNIST_TEST_FILES):
        assert words in text


def test_the_license_file_is_mit_and_names_the_copyright_holder():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the xpnet developers\n")
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel built from a copy of this tree (the wheel from the sdist)."""
    pytest.importorskip("build", reason="building needs the package 'build'")
    if missing := missing_build_requirements():
        pytest.skip(f"building without isolation needs {', '.join(missing)} installed here")
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
        data_license = archive.read(f"{info}/licenses/{MNIST_TEST}/LICENSE.md").decode()
        embedded = {name: archive.read(f"{MNIST_TEST}/{name}") for name in MNIST_TEST_FILES}
    assert {"xpnet/py.typed", "xpnet/__main__.py", "xpnet/pretrained/mnist_5k.npz"} <= names
    assert license_text == (REPO / "LICENSE").read_text()
    assert data_license == (REPO / MNIST_TEST / "LICENSE.md").read_text()
    assert embedded == {name: (REPO / MNIST_TEST / name).read_bytes() for name in embedded}
    assert wheel.stat().st_size < 5_000_000
    assert not any(name.startswith(("tests/", "benchmarks/", "xpnet/bench")) for name in names)
    assert metadata["Version"] == version
    assert metadata["License-Expression"] == "MIT AND CC-BY-SA-3.0"
    assert metadata.get_all("License-File") == ["LICENSE", f"{MNIST_TEST}/LICENSE.md"]
    assert metadata["Requires-Python"] == ">=3.11"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert "Typing :: Typed" in metadata.get_all("Classifier")
    assert metadata.get_all("Project-URL") is None and metadata["Home-page"] is None
    assert "xpnet = xpnet.cli:main" in entry_points


def test_the_sdist_carries_everything_its_tests_need(built):
    sdist, _ = built
    with tarfile.open(sdist) as archive:
        root = f"xpnet-{xpnet.__version__}/"
        names = {name.removeprefix(root) for name in archive.getnames()}
    wanted = {"LICENSE", "README.md", "pyproject.toml", "noxfile.py", "docs/cli.md"}
    # The documents and pictures the README points to, which its description names as text.
    wanted |= set(relative_targets((REPO / "README.md").read_text(encoding="utf-8")))
    assert {"docs/performance.md", "docs/images/confusion_matrix.png"} <= wanted
    wanted |= {str(path.relative_to(REPO)) for path in (REPO / "tests").glob("*.py")}
    wanted |= {str(path.relative_to(REPO)) for path in (REPO / "scripts").glob("*.py")}
    wanted |= {str(path.relative_to(REPO)) for path in (REPO / "benchmarks").glob("*.py")}
    wanted |= {str(path.relative_to(REPO)) for path in (REPO / "xpnet").rglob("*.py")}
    wanted |= {"xpnet/py.typed", "xpnet/pretrained/mnist_5k.npz", f"{MNIST_TEST}/LICENSE.md"}
    wanted |= {f"{MNIST_TEST}/{name}" for name in MNIST_TEST_FILES}
    assert {"tests/conftest.py", "tests/realdata.py", "tests/reference.py"} <= wanted
    assert wanted - names == set()
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


# The description a package index shows -----------------------------------------------------

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[`~]*[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.DOTALL)
INLINE_TARGET = re.compile(r"(!?)\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^\s)>]*)")
REFERENCE_TARGET = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)", re.MULTILINE)
HTML_TARGET = re.compile(r"""\b(href|src)\s*=\s*["']?([^"'\s>]*)""", re.IGNORECASE)
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
ABSOLUTE = ("https://", "http://", "mailto:")
# Paths that only mean something on the machine the package was built on: this project's
# folders (/work/..., ../shared/...), any path above the source tree, local files.
LOCAL_PATHS = ("/work/", "../", "file://")


def prose(markdown: str) -> str:
    """``markdown`` without its code blocks and code spans, where no link is a link."""
    return CODE_SPAN.sub("", FENCE.sub("", markdown))


def targets(markdown: str) -> list[tuple[bool, str]]:
    """``(is an image, target)`` of every link and picture: inline, reference and HTML."""
    text = prose(markdown)
    found = [(bang == "!", target) for bang, target in INLINE_TARGET.findall(text)]
    found += [(False, target) for target in REFERENCE_TARGET.findall(text)]
    found += [(attr.lower() == "src", target) for attr, target in HTML_TARGET.findall(text)]
    return found


def relative_targets(markdown: str) -> list[str]:
    """The targets that are paths in the source tree: neither absolute nor a ``#`` anchor."""
    return [t for _, t in targets(markdown) if not t.startswith((*ABSOLUTE, "#"))]


def headings(markdown: str) -> list[str]:
    return [title for _, title in HEADING.findall(FENCE.sub("", markdown))]


def slug(title: str) -> str:
    """The anchor a package index (and GitHub) gives a heading."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def body(metadata_text: str) -> str:
    """The long description in core metadata: the message body (or, before metadata 2.1,
    the ``Description`` field)."""
    message = email.parser.Parser().parsestr(metadata_text)
    assert message["Description-Content-Type"] == "text/markdown"
    return str(message.get_payload() or message["Description"] or "")


@pytest.fixture(params=["wheel", "sdist", "installed"])
def description(request: pytest.FixtureRequest) -> str:
    """The long description in the built wheel's METADATA, the sdist's PKG-INFO, or the
    metadata of the xpnet installed here (skipped where none is)."""
    version = xpnet.__version__
    if request.param == "installed":
        try:
            installed = importlib.metadata.distribution("xpnet")
        except importlib.metadata.PackageNotFoundError:
            pytest.skip("xpnet is not installed here (the built wheel and sdist are checked)")
        if installed.version != version:
            pytest.skip(f"the xpnet installed here is {installed.version}, not this {version}")
        return body(installed.read_text("METADATA") or "")
    sdist, wheel = request.getfixturevalue("built")
    if request.param == "wheel":
        with zipfile.ZipFile(wheel) as archive:
            return body(archive.read(f"xpnet-{version}.dist-info/METADATA").decode())
    with tarfile.open(sdist) as archive:
        member = archive.extractfile(f"xpnet-{version}/PKG-INFO")
        assert member is not None
        return body(member.read().decode())


def test_the_description_links_nowhere_a_package_index_lacks_and_keeps_the_readme(description):
    """An index shows the description without the source tree: every link is absolute or an
    anchor of one of its own headings, every picture absolute, and no path of the machine
    that built it is left. Every section of README.md is there, in its order, and each
    document or picture the README pointed to is still named by its path (the sdist
    carries them)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    pointed_to = relative_targets(readme)
    assert pointed_to, "README.md links into the source tree no more: renew this test"
    found = targets(description)
    anchors = {slug(title) for title in headings(description)}
    assert [t for _, t in found if not t.startswith(ABSOLUTE) and t[1:] not in anchors] == []
    assert [t for image, t in found if image and not t.startswith("https://")] == []
    assert [path for path in LOCAL_PATHS if path in description] == []

    sections = headings(readme)
    assert len(sections) > 2
    assert headings(description) == sections
    text = prose(description)
    assert [path for path in pointed_to if path not in text] == []
    assert [path for path in pointed_to if not (REPO / path).is_file()] == []


def test_the_description_renders_as_a_package_index_renders_it(description):
    """readme_renderer (what PyPI renders descriptions with) renders it, and each link of the
    result is absolute or an anchor it defines; skipped where it is not installed with its
    Markdown renderer (``twine check`` renders no Markdown)."""
    with warnings.catch_warnings():  # it warns on import where its renderer is missing
        warnings.simplefilter("ignore")
        markdown = pytest.importorskip("readme_renderer.markdown", reason="needs readme_renderer")
    if not getattr(markdown, "variants", True):
        pytest.skip("readme_renderer renders no Markdown here: install readme_renderer[md]")
    html = markdown.render(description)
    assert html, "readme_renderer could not render the description"
    ids = set(re.findall(r'\bid="([^"]+)"', html))
    links = re.findall(r'\b(?:href|src)="([^"]*)"', html)
    assert links and [t for t in links if not t.startswith(ABSOLUTE) and t[1:] not in ids] == []
    assert not re.search(r'<img\b[^>]*\bsrc="(?!https://)', html)


def test_the_package_holds_no_benchmark_and_reads_no_system_files():
    """Benchmarks live in the checkout's ``benchmarks/``; nothing a user imports reads
    ``/proc`` or ``/sys`` or exports a benchmark."""
    import xpnet.scaleout

    sources = {p: p.read_text(encoding="utf-8") for p in (REPO / "xpnet").rglob("*.py")}
    assert sources and not [p for p, text in sources.items() if "/proc" in text or "/sys/" in text]
    assert not (REPO / "xpnet" / "bench").exists()
    assert not [name for name in xpnet.scaleout.__all__ if "throughput" in name.lower()]
    assert not hasattr(xpnet.scaleout, "measure_dask_throughput")
