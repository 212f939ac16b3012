"""A full disk: said as "disk full at PATH (N MB free)", the failure recorded in the store (never left
`running`), checkpoints, the adapter and exports staged so that the old state survives, and the
retry works. ENOSPC is injected as OSError(ENOSPC) at named points; with GRPO_STUDIO_EXHAUSTIVE=1
(and unprivileged user namespaces) a real small tmpfs fills up under the real writers too."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap

import fault_runner
import pytest
from fault_checks import RUN_SETTINGS, assert_whole_run, leftovers

from grpo_studio import cli
from grpo_studio.engine import safe_files
from grpo_studio.engine.store import RunFolder, RunStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX test harness")
DISK_FULL = re.compile(r"disk full at (\S+) \((\d+) MB free\)")


def full_run(fault_project, folder, point):
    out = fault_runner.cli("train", str(fault_project), "--output", str(folder), *RUN_SETTINGS,
                           env={"GRPO_STUDIO_FAULT": f"enospc:{point}"})
    assert out.rc == 1, out
    assert "Traceback" not in out.err
    error = [line for line in out.err.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and DISK_FULL.search(error[0]), out
    with RunStore(folder / "run.db", readonly=True) as store:
        meta = store.meta()
    assert meta["status"] == "failed" and DISK_FULL.search(meta["failure"]), meta
    assert leftovers(RunFolder(folder)) == []  # the half-written staging is gone (it may be what filled the disk)
    return DISK_FULL.search(error[0]).group(1)


@pytest.mark.parametrize("point, at, then", [
    ("checkpoint_written:2", "checkpoints/checkpoint-4", "resuming from checkpoint-2"),
    ("store_write:3", "run.db", "resuming from checkpoint-2"),
    ("adapter_written:1", "adapter", "completing the final adapter from checkpoint-4"),
])
def test_disk_full_during_a_run_is_said_recorded_and_resumable(fault_project, tmp_path, point, at, then):
    folder = tmp_path / "run"
    path = full_run(fault_project, folder, point)
    assert path == str(folder / at)
    assert RunFolder(folder).newest_checkpoint()[0] == (4 if point == "adapter_written:1" else 2)
    resumed = fault_runner.cli("train", str(folder), "--resume")
    assert resumed.rc == 0, resumed
    assert then in resumed.out
    assert_whole_run(folder)


@pytest.mark.parametrize("kind", ["adapter", "merged", "gguf"])
def test_export_on_a_full_disk_leaves_nothing_and_the_retry_works(finished_run, tmp_path, capsys, monkeypatch, kind):
    if kind == "gguf":
        pytest.importorskip("gguf")
    flags = {"adapter": [], "merged": ["--merged"], "gguf": ["--gguf", "f16"]}[kind]
    dest = tmp_path / "out" / "export"
    monkeypatch.setenv("GRPO_STUDIO_FAULT", "enospc:export_written:1")
    assert cli.main(["export", str(finished_run), "--to", str(dest), *flags]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress lines
    assert err.startswith(f"error: export to {dest} failed: disk full at {dest} (")
    assert "nothing was left there, so the same command can be run again" in err
    assert list(dest.parent.iterdir()) == []  # no destination, no staging folder
    monkeypatch.delenv("GRPO_STUDIO_FAULT")
    assert cli.main(["export", str(finished_run), "--to", str(dest), *flags]) == 0
    if kind == "adapter":
        assert (dest / "adapter_model.safetensors").read_bytes() == (
            finished_run / "adapter" / "adapter_model.safetensors").read_bytes()
    else:
        assert any(p.suffix in (".safetensors", ".gguf") for p in dest.iterdir())


def test_disk_full_is_recognised_from_what_the_writers_raise(tmp_path, monkeypatch):
    assert safe_files.disk_full_message(OSError(errno.ENOSPC, "No space left", "/x/y"), tmp_path).startswith(
        "disk full at /x/y (")
    assert safe_files.disk_full_message(sqlite3.OperationalError("database or disk is full"), tmp_path)
    safetensors_error = RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert re.fullmatch(rf"disk full at {re.escape(str(tmp_path))} \(\d+ MB free\)",
                        safe_files.disk_full_message(safetensors_error, tmp_path))
    # PyTorch's zip writer loses the errno: a full disk only when the disk is in fact (nearly) full.
    torch_error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert safe_files.disk_full_message(torch_error, tmp_path) is None
    monkeypatch.setattr(safe_files, "free_bytes", lambda path: 3 * 2**20)
    assert safe_files.disk_full_message(torch_error, tmp_path) == f"disk full at {tmp_path} (3 MB free)"
    assert safe_files.disk_full_message(ValueError("bad value"), tmp_path) is None


# ---- a real small filesystem ---------------------------------------------------------------------

DRIVER = textwrap.dedent('''
    import json, os, shutil, subprocess, sys
    project, mount = sys.argv[1], sys.argv[2]
    def grpo(*args, fault=None):
        env = dict(os.environ, **({"GRPO_STUDIO_FAULT": fault} if fault else {}))
        p = subprocess.run([sys.executable, "-m", "grpo_studio.cli", *args], capture_output=True, text=True, env=env)
        return {"rc": p.returncode, "out": p.stdout[-3000:], "err": p.stderr[-3000:]}
    run = os.path.join(mount, "run")
    report = {"train": grpo("train", project, "--output", run, "--set", "grpo.max_steps=4", "--set",
                            "run.save_steps=2", fault="fill:checkpoint_begin:2")}
    import sqlite3
    con = sqlite3.connect(f"file:{run}/run.db?mode=ro", uri=True)
    report["status"] = dict(con.execute("SELECT key, value FROM meta"))
    con.close()
    report["leftovers"] = sorted(os.listdir(os.path.join(run, "checkpoints"))) + sorted(os.listdir(run))
    os.remove(os.path.join(run, "checkpoints", "FAULT_FILLER"))
    report["resume"] = grpo("train", run, "--resume")
    with open(os.path.join(mount, "filler"), "wb") as f:  # full again, then export
        try:
            while True:
                f.write(b"0" * 65536); f.flush()
        except OSError:
            pass
    report["export"] = grpo("export", run, "--to", os.path.join(mount, "export"))
    report["export_left"] = os.path.exists(os.path.join(mount, "export"))
    os.remove(os.path.join(mount, "filler"))
    report["export_retry"] = grpo("export", run, "--to", os.path.join(mount, "export"))
    print(json.dumps(report))
''')


def user_namespaces_work() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-r", "-m", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not os.environ.get("GRPO_STUDIO_EXHAUSTIVE"), reason="exhaustive: set GRPO_STUDIO_EXHAUSTIVE=1")
@pytest.mark.skipif(sys.platform != "linux" or not user_namespaces_work(),
                    reason="needs unprivileged user namespaces to mount a small tmpfs")
def test_a_real_small_filesystem_fills_up(fault_project, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    script = f"mount -t tmpfs -o size=16m tmpfs {mount} && exec {sys.executable} -c \"$DRIVER\" {fault_project} {mount}"
    done = subprocess.run(["unshare", "-r", "-m", "sh", "-c", script], capture_output=True, text=True,
                          env={**os.environ, "DRIVER": DRIVER}, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    train = report["train"]
    assert train["rc"] == 1 and DISK_FULL.search(train["err"]) and "Traceback" not in train["err"], train
    assert json.loads(report["status"]["status"]) == "failed", report["status"]
    assert ".staging" not in report["leftovers"] and ".space-reserve" not in report["leftovers"]
    assert report["resume"]["rc"] == 0, report["resume"]
    assert "finished 4 steps" in report["resume"]["out"]
    assert report["export"]["rc"] == 1 and DISK_FULL.search(report["export"]["err"]), report["export"]
    assert not report["export_left"]
    assert report["export_retry"]["rc"] == 0, report["export_retry"]
