"""Before the window starts on Linux: are the system libraries of Qt's X11 (xcb) plugin installed?

Without them Qt aborts the process (exit 134) with a note that names `xcb-cursor0` whatever was
really missing. Here the plugin's and libQt6XcbQpa's dependencies are resolved with `ldd` (or, where
`ldd` is missing, by loading them with ctypes, which names the first missing one), and the message
names the packages to install on Debian/Ubuntu and Fedora.

Nothing here imports Qt: it runs before any Qt library is loaded. The check runs only when the
platform will be xcb: not under QT_QPA_PLATFORM=offscreen or wayland, not on Windows or macOS.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

# soname -> (Debian/Ubuntu package, Fedora package)
PACKAGES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxcb-xinerama.so.0": ("libxcb-xinerama0", "libxcb"),
    "libxcb-xinput.so.0": ("libxcb-xinput0", "libxcb"),
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libXau.so.6": ("libxau6", "libXau"),
    "libXdmcp.so.6": ("libxdmcp6", "libXdmcp"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libGLX.so.0": ("libglx0", "libglvnd-glx"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
}
NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.M)
CANNOT_OPEN = re.compile(r"(\S+\.so[.\d]*): cannot open shared object file")


def platform_will_be_xcb(environ: dict[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether Qt will load its xcb plugin: Linux (or another X11 Unix), and neither QT_QPA_PLATFORM
    nor a Wayland session chooses something else."""
    env = os.environ if environ is None else environ
    platform = platform or sys.platform
    if platform.startswith(("win", "cygwin", "darwin")):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        return chosen.split(";")[0].split(":")[0] == "xcb"
    # Qt 6 prefers Wayland in a Wayland session and falls back to xcb only when that fails.
    return not (env.get("XDG_SESSION_TYPE") == "wayland" and env.get("WAYLAND_DISPLAY"))


def xcb_plugin_files() -> list[Path]:
    """The xcb platform plugin inside the installed PySide6 (found without importing it), else its Qt
    library libQt6XcbQpa. One is enough for ldd, which resolves the whole tree (the plugin needs
    libQt6XcbQpa, which needs the xcb libraries); launching pays for one ldd call (~20 ms)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return []
    qt = Path(list(spec.submodule_search_locations)[0]) / "Qt"
    files = [qt / "plugins" / "platforms" / "libqxcb.so", *sorted((qt / "lib").glob("libQt6XcbQpa.so*"))]
    return [f for f in files if f.is_file()][:1]


def ldd(path: Path) -> str:
    """`ldd PATH`'s output: every dependency, resolved through the whole tree, or `=> not found`.
    Raises OSError where there is no ldd."""
    return subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=20).stdout


def first_missing_by_loading(path: Path) -> list[str]:
    """Without ldd: load the library; the loader names the first dependency it cannot find."""
    import ctypes

    try:
        ctypes.CDLL(str(path))
    except OSError as exc:
        found = CANNOT_OPEN.search(str(exc))
        return [found.group(1)] if found else []
    return []


def missing_libraries(files: list[Path], resolve: Callable[[Path], str] | None = None) -> list[str]:
    """The sonames the files need that the dynamic loader cannot find, each once, in order."""
    missing: list[str] = []
    for path in files:
        try:
            names = NOT_FOUND.findall((resolve or ldd)(path))
        except (OSError, subprocess.SubprocessError):  # no ldd (musl, a minimal image): ask the loader
            names = first_missing_by_loading(path)
        missing += [n for n in dict.fromkeys(names) if n not in missing]
    return missing


def install_advice(missing: list[str]) -> list[str]:
    """The install commands for Debian/Ubuntu and Fedora, and a way to find the unknown ones."""
    debian, fedora, unknown = [], [], []
    for name in missing:
        if name in PACKAGES:
            deb, fed = PACKAGES[name]
            debian += [deb] if deb not in debian else []
            fedora += [fed] if fed not in fedora else []
        else:
            unknown.append(name)
    lines = []
    if debian:
        lines.append(f"  Debian/Ubuntu: sudo apt install {' '.join(debian)}")
        lines.append(f"  Fedora:        sudo dnf install {' '.join(fedora)}")
    for name in unknown:
        lines.append(f"  {name}: find its package with `apt-file search {name}` or `dnf provides '*/{name}'`")
    return lines


def xcb_problem(environ: dict[str, str] | None = None, platform: str | None = None,
                files: list[Path] | None = None, resolve: Callable[[Path], str] | None = None) -> str | None:
    """What to tell the user when the window cannot start on X11 for lack of system libraries."""
    if not platform_will_be_xcb(environ, platform):
        return None
    missing = missing_libraries(xcb_plugin_files() if files is None else files, resolve)
    if not missing:
        return None
    return "\n".join([
        f"error: the window cannot start: Qt's X11 (xcb) plugin needs {', '.join(missing)}, "
        "which this system does not have. Install:",
        *install_advice(missing),
        "  (The command line works without them; QT_QPA_PLATFORM=wayland uses Wayland instead of X11.)",
    ])


def import_problem(exc: ImportError) -> str:
    """An import of PySide6 that failed for a missing system library, with the package to install."""
    found = CANNOT_OPEN.search(str(exc))
    if not found:
        return f"error: the window cannot start: {exc}"
    name = found.group(1)
    return "\n".join([f"error: the window cannot start: Qt needs {name}, which this system does not have. Install:",
                      *install_advice([name])])
