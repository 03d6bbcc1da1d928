"""The installed distribution carries the entry points and the start-up files where Python reads them."""
import site
from importlib import metadata
from pathlib import Path

import pytest

DIST = "mindcv-halonet"


def _site_dirs():
    return {Path(p).resolve() for p in site.getsitepackages() + [site.getusersitepackages()]}


@pytest.fixture(scope="module")
def dist():
    """The installed distribution (not an ``*.egg-info`` that a build left in the source tree)."""
    for candidate in metadata.distributions(name=DIST):
        if Path(candidate.locate_file("")).resolve() in _site_dirs():
            return candidate
    pytest.fail(f"{DIST} is not installed in this environment: run `pip install -e .` (scripts/test.sh does)")


def _entry_points(dist, group):
    return {ep.name: ep.value for ep in dist.entry_points if ep.group == group}


def test_entry_points_are_declared(dist):
    assert _entry_points(dist, "mindcv.models") == {"halonet": "mindcv_halonet.models.halonet"}
    layers = _entry_points(dist, "mindcv.layers")
    assert layers["HaloAttention"] == "mindcv_halonet.layers:HaloAttention"
    assert _entry_points(dist, "console_scripts") == {
        "mindcv-halonet-convert": "mindcv_halonet.commands.convert:main",
        "mindcv-halonet-check": "mindcv_halonet.commands.check:main",
        "mindcv-halonet-export": "mindcv_halonet.commands.export:main",
    }


def test_dependencies_are_loose(dist):
    requires = {r.split(";")[0].replace(" ", "") for r in dist.requires or []}
    assert {"mindspore>=2.3.1", "mindcv>=0.3.0"} <= requires
    assert not any("==" in r for r in requires), requires


@pytest.mark.parametrize("name", ["mindcv_halonet_autoload.pth", "mindcv_halonet_autoload.start"])
def test_startup_file_is_at_the_root_of_a_site_directory(dist, name):
    recorded = [f for f in dist.files or [] if str(f) == name]
    assert recorded, f"{name} is not in the RECORD of {DIST}"
    path = Path(dist.locate_file(recorded[0])).resolve()
    assert path.is_file()
    assert path.parent in _site_dirs(), f"{path} is not in a site directory {sorted(map(str, _site_dirs()))}"


def test_startup_files_only_install_the_hook(dist):
    pth = Path(dist.locate_file("mindcv_halonet_autoload.pth")).read_text().splitlines()
    assert pth == ["import mindcv_halonet_autoload; mindcv_halonet_autoload.install()"]
    start = Path(dist.locate_file("mindcv_halonet_autoload.start")).read_text().split()
    assert start == ["mindcv_halonet_autoload:install"]
