"""Saving weights as an adversary meets it: symlinks, device nodes, FIFOs, folders, modes and
umasks, two writers at once, and Ctrl-C at each step of the write.

Whatever happens, the path holds the complete old file or the complete new one, a link stays
a link, anything that is not a regular file is never replaced, and no temporary is left.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import _atomic
from xpnet._atomic import atomic_write
from xpnet.errors import WeightsError
from xpnet.weights import load_weights, save_weights


def network(seed: int) -> xpnet.Network:
    return xpnet.init_network((6, 5, 3), seed=seed)


def same(path: Path, seed: int) -> bool:
    """Whether ``path`` loads as ``network(seed)`` exactly."""
    loaded, expected = load_weights(path).to_mapping(), network(seed).to_mapping()
    return all(np.array_equal(loaded[k], expected[k]) for k in expected)


def one_line(call, *args, **kwargs) -> str:
    with pytest.raises(WeightsError) as caught:
        call(*args, **kwargs)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def litter(*folders: Path) -> list[str]:
    return [name for folder in folders for name in os.listdir(folder) if name.startswith(".")]


# --- symlinks and things that are not regular files -----------------------------------------


def test_a_symlink_is_written_through_and_stays_a_link(tmp_path):
    real_folder, link_folder = tmp_path / "real", tmp_path / "links"
    real_folder.mkdir()
    link_folder.mkdir()
    target = real_folder / "weights.npz"
    save_weights(network(1), target)
    link = link_folder / "current.npz"
    link.symlink_to(target)
    save_weights(network(2), link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert same(target, 2)
    assert litter(real_folder, link_folder) == []


def test_a_dangling_symlink_gets_its_file(tmp_path):
    link = tmp_path / "link.npz"
    link.symlink_to(tmp_path / "made.npz")
    save_weights(network(3), link)
    assert link.is_symlink() and same(tmp_path / "made.npz", 3)


def test_a_fifo_is_refused_not_replaced(tmp_path):
    fifo = tmp_path / "out.npz"
    os.mkfifo(fifo)
    assert "not a regular file" in one_line(save_weights, network(1), fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.listdir(tmp_path) == ["out.npz"]


def test_a_symlink_to_a_device_is_refused_and_stays(tmp_path):
    link = tmp_path / "out.npz"
    link.symlink_to("/dev/null")
    assert "device, FIFO or socket" in one_line(save_weights, network(1), link)
    assert link.is_symlink() and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert os.listdir(tmp_path) == ["out.npz"]


def test_a_device_node_is_refused_not_replaced(tmp_path):
    node = tmp_path / "full"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 7))  # what /dev/full is
    except PermissionError:
        pytest.skip("making a device node needs root")
    assert "not a regular file" in one_line(save_weights, network(1), node)
    assert stat.S_ISCHR(os.lstat(node).st_mode)
    assert os.listdir(tmp_path) == ["full"]


def test_a_folder_and_a_link_loop_are_refused(tmp_path):
    (tmp_path / "dir.npz").mkdir()
    assert "a folder" in one_line(save_weights, network(1), tmp_path / "dir.npz")
    loop = tmp_path / "loop.npz"
    loop.symlink_to(loop)
    assert "not a regular file" in one_line(save_weights, network(1), loop)
    assert loop.is_symlink()
    assert litter(tmp_path) == []


# --- modes ------------------------------------------------------------------------------------


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664, 0o444])
def test_a_replaced_file_keeps_its_mode(tmp_path, mode):
    path = tmp_path / "w.npz"
    save_weights(network(1), path)
    path.chmod(mode)
    with umask(0o022):
        save_weights(network(2), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert same(path, 2)


@pytest.mark.parametrize("mask", [0o077, 0o002, 0o022])
def test_a_new_file_honours_the_umask(tmp_path, mask):
    path = tmp_path / "w.npz"
    with umask(mask):
        save_weights(network(1), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask


# --- two writers ---------------------------------------------------------------------------


def test_interleaved_writers_each_leave_a_whole_file_and_the_last_wins(tmp_path):
    path = tmp_path / "w.npz"
    save_weights(network(0), path)
    with atomic_write(path) as first:
        first.write(b"first, half")
        with atomic_write(path) as second:
            second.write(b"second, whole")
        assert path.read_bytes() == b"second, whole"
        first.write(b" and the rest")
    assert path.read_bytes() == b"first, half and the rest"
    assert os.listdir(tmp_path) == ["w.npz"]


SAVER = textwrap.dedent(
    """
    import sys
    import xpnet
    seed, path = int(sys.argv[1]), sys.argv[2]
    network = xpnet.init_network((6, 5, 3), seed=seed)
    for _ in range(40):
        xpnet.save_weights(network, path)
    """
)


def test_two_processes_saving_at_once_leave_one_whole_file(tmp_path):
    path = tmp_path / "w.npz"
    savers = [
        subprocess.Popen([sys.executable, "-c", SAVER, str(seed), str(path)]) for seed in (1, 2)
    ]
    assert [saver.wait(timeout=120) for saver in savers] == [0, 0]
    assert same(path, 1) or same(path, 2)
    assert os.listdir(tmp_path) == ["w.npz"]


# --- Ctrl-C at each step ---------------------------------------------------------------------


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def half_then_interrupt(file, **entries):
    file.write(b"PK\x03\x04 half an archive")
    raise KeyboardInterrupt


STEPS = {
    "create": (os, "open"),
    "keep-mode": (os, "fchmod"),
    "before-write": (np, "savez"),
    "during-write": (np, "savez"),
    "flush": (os, "fsync"),
    "before-rename": (os, "replace"),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_ctrl_c_at_each_step_leaves_the_old_file_whole_and_no_temporary(
    tmp_path, step, monkeypatch
):
    path = tmp_path / "w.npz"
    save_weights(network(1), path)
    before = path.read_bytes()
    owner, name = STEPS[step]
    fake = half_then_interrupt if step == "during-write" else interrupt
    if step == "create":
        real_open = os.open

        def fake(file, flags, *args, **kwargs):  # only the temporary's creation
            if str(file).endswith(_atomic.TEMP_SUFFIX):
                raise KeyboardInterrupt
            return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(owner, name, fake)
    with pytest.raises(KeyboardInterrupt):
        save_weights(network(2), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["w.npz"]


def test_ctrl_c_after_the_rename_leaves_the_whole_new_file(tmp_path, monkeypatch):
    path = tmp_path / "w.npz"
    save_weights(network(1), path)
    monkeypatch.setattr(_atomic, "_fsync_folder", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_weights(network(2), path)
    monkeypatch.undo()
    assert same(path, 2)
    assert os.listdir(tmp_path) == ["w.npz"]


def test_a_non_utf8_name_is_saved_through_its_link(tmp_path):
    folder = os.fsencode(tmp_path)
    target = Path(os.fsdecode(folder + b"/w\xff.npz"))
    link = Path(os.fsdecode(folder + b"/l\xfe.npz"))
    link.symlink_to(target)
    save_weights(network(4), link)
    assert link.is_symlink() and same(target, 4)
    assert litter(tmp_path) == []


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_loading_from_a_fifo_a_device_or_a_folder_is_refused_without_blocking(tmp_path, kind):
    path = tmp_path / "w.npz"
    if kind == "fifo":
        os.mkfifo(path)  # opening it to read would wait for a writer forever
    elif kind == "folder":
        path.mkdir()
    else:
        path = Path("/dev/zero")  # reading it would never end
    assert "not a regular file" in one_line(load_weights, path)


def test_without_replace_a_file_that_appeared_meanwhile_is_kept(tmp_path):
    target = tmp_path / "picture.png"
    with pytest.raises(FileExistsError), atomic_write(target, replace=False) as stream:
        stream.write(b"new")
        target.write_bytes(b"someone else's")  # appears while the write is under way
    assert target.read_bytes() == b"someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["picture.png"]


def test_without_replace_a_new_file_appears_whole_with_the_umask_mode(tmp_path):
    target = tmp_path / "picture.png"
    old = os.umask(0o027)
    try:
        with atomic_write(target, replace=False) as stream:
            stream.write(b"new")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["picture.png"]


def test_a_missing_folder_is_an_error_and_never_made_up(tmp_path):
    from xpnet.datasets.idx import write_idx

    missing = tmp_path / "no" / "such"
    with pytest.raises(WeightsError, match="no such folder to write the file into"):
        save_weights(network(1), missing / "w.npz")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        write_idx(missing / "labels.gz", np.arange(3, dtype=np.uint8))
    # A symlink to a missing folder is followed, and refused the same way.
    (tmp_path / "link").symlink_to(missing, target_is_directory=True)
    with pytest.raises(WeightsError, match="no such folder"):
        save_weights(network(1), tmp_path / "link" / "w.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link"]
    # xpnet's own cache folders are made where missing.
    with atomic_write(missing / "cached", make_folders=True) as stream:
        stream.write(b"kept")
    assert (missing / "cached").read_bytes() == b"kept"
