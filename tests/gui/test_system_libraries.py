"""The window's start on Linux: missing xcb libraries are named with their packages, before Qt aborts.

Nothing is uninstalled: the dependency resolver (ldd) is replaced by one that reports libraries
as missing, the way `ldd` prints them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from grpo_studio.gui import system_libraries as libs

ROOT = Path(__file__).resolve().parents[2]
LDD_TWO_MISSING = """\
\tlinux-vdso.so.1 (0x00007ffd5a9e6000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007f3e1c000000)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f3e1bf00000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f3e1be00000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
"""


@pytest.mark.parametrize("environ, platform, expected", [
    ({}, "linux", True),
    ({"QT_QPA_PLATFORM": "xcb"}, "linux", True),
    ({"QT_QPA_PLATFORM": "offscreen"}, "linux", False),
    ({"QT_QPA_PLATFORM": "wayland;xcb"}, "linux", False),
    ({"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}, "linux", False),
    ({"XDG_SESSION_TYPE": "x11", "DISPLAY": ":0"}, "freebsd14", True),
    ({}, "win32", False),
    ({}, "darwin", False),
])
def test_the_check_runs_only_where_qt_will_load_xcb(environ, platform, expected):
    assert libs.platform_will_be_xcb(environ, platform) is expected


def test_missing_libraries_are_named_with_their_debian_and_fedora_packages():
    message = libs.xcb_problem({}, "linux", files=[Path("libqxcb.so")], resolve=lambda path: LDD_TWO_MISSING)
    assert message is not None
    first, debian, fedora = message.splitlines()[:3]
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1," in first and first.count("icccm") == 1
    assert "xcb-cursor" not in message  # installed: not blamed, as Qt's own note does
    assert debian.split(": ", 1)[1].strip() == "sudo apt install libxcb-icccm4 libxcb-keysyms1"
    assert fedora.split(": ", 1)[1].strip() == "sudo dnf install xcb-util-wm xcb-util-keysyms"


def test_nothing_missing_or_another_platform_says_nothing():
    def never(path):
        raise AssertionError("resolved dependencies although the platform is not xcb")

    assert libs.xcb_problem({}, "linux", files=[Path("libqxcb.so")], resolve=lambda p: "\tlibc.so.6 => /lib/libc.so.6\n") is None
    assert libs.xcb_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux", files=[Path("x")], resolve=never) is None
    assert libs.xcb_problem({}, "win32", files=[Path("x")], resolve=never) is None


def test_an_unknown_library_gets_a_way_to_find_its_package_and_ldd_missing_falls_back_to_the_loader(tmp_path):
    advice = libs.install_advice(["libfoo.so.3"])
    assert advice == ["  libfoo.so.3: find its package with `apt-file search libfoo.so.3` or `dnf provides '*/libfoo.so.3'`"]

    def no_ldd(path):
        raise FileNotFoundError("ldd")

    not_a_library = tmp_path / "libqxcb.so"
    not_a_library.write_bytes(b"not an ELF file")
    assert libs.missing_libraries([not_a_library], resolve=no_ldd) == []  # loaded, failed, but nothing "missing"


def test_an_import_that_fails_for_a_system_library_names_the_package():
    exc = ImportError("libEGL.so.1: cannot open shared object file: No such file or directory")
    assert libs.import_problem(exc).splitlines()[1:] == ["  Debian/Ubuntu: sudo apt install libegl1",
                                                          "  Fedora:        sudo dnf install libglvnd-egl"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb plugin exists on Linux only")
def test_grpo_studio_exits_2_with_the_packages_before_qt_aborts(tmp_path):
    """The real start (`grpo-studio` with no arguments) on an X11 display that lacks two libraries."""
    script = ("import grpo_studio.gui.system_libraries as libs, sys\n"
              f"libs.ldd = lambda path: {LDD_TWO_MISSING!r}\n"
              "from grpo_studio.cli import main\n"
              "sys.exit(main([]))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=":99", PYTHONPATH=str(ROOT), GRPO_STUDIO_SETTINGS=str(tmp_path / "s.ini"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "sudo apt install libxcb-icccm4 libxcb-keysyms1" in proc.stderr
    assert "sudo dnf install xcb-util-wm xcb-util-keysyms" in proc.stderr
