"""A local Ray that dies with its driver, even after ``kill -9``.

``ray.init()`` starts the GCS, a raylet, agents and workers below the driver. When the
driver ends normally it shuts them down; killed with ``kill -9`` it cannot, and some of
Ray's processes (its dashboard and runtime-env agents) outlive it, holding memory and
ports until someone notices. The driver therefore starts this watcher as a small
separate process (its own session, so a Ctrl-C of the driver's terminal does not reach
it) holding one end of a pipe: the kernel closes the pipe when the driver dies, however
it dies. Until then the watcher notes every few seconds the processes below the driver
(pid and kernel start time); once the pipe closes and the driver is gone it kills those
still alive (never a recycled pid: the start time must match). A driver that ends
normally closes the pipe itself while still alive, and the watcher just exits.

``nas search --resume`` still reaps what a dead driver left (``RunDir.reap_stale_ray``),
for runs whose watcher was killed too (a reboot, ``kill -9`` of the whole process group).

Run as ``python -m nas.run.reaper DRIVER_PID DRIVER_START``.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

from .rundir import descendants, kill_processes, process_alive, process_start

#: seconds between snapshots of the driver's process tree.
POLL_S = 2.0


def start_reaper() -> subprocess.Popen | None:
    """Start the watcher for this process; None if it cannot start (never fatal)."""
    pid = os.getpid()
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "nas.run.reaper", str(pid), str(process_start(pid))],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True)
    except OSError:
        return None


def stop_reaper(proc: subprocess.Popen | None) -> None:
    """The driver is ending normally: close the pipe; the watcher exits without acting."""
    if proc is None:
        return
    try:
        proc.stdin.close()
        proc.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()


def watch(driver: int, driver_start: int | None) -> list[int]:
    """Block until the pipe on stdin closes; then kill the driver's leftover processes
    if the driver is gone. Returns the pids killed."""
    me = os.getpid()
    seen: dict[int, int] = {}
    fd = sys.stdin.fileno()
    while True:
        for proc in descendants(driver):
            if proc["pid"] != me:
                seen[proc["pid"]] = proc["start"]
        ready, _, _ = select.select([fd], [], [], POLL_S)
        if ready and not os.read(fd, 4096):
            break
    time.sleep(0.2)  # the kernel closes the pipe a moment before the pid is reaped
    if process_alive(driver, driver_start):
        return []  # a normal end: the driver shut its Ray down itself
    return kill_processes(seen.items())


if __name__ == "__main__":
    start = sys.argv[2] if len(sys.argv) > 2 else "None"
    watch(int(sys.argv[1]), None if start == "None" else int(start))
