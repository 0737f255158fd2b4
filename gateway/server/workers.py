"""``mqttgate serve --workers N``: N gateway processes sharing one port (SO_REUSEPORT).

The kernel spreads new connections over the workers. Worker 0 serves the admin
listener on the configured port and speaks for the fleet: ``/metrics`` gathers every
worker's counters with a ``worker`` label, ``/admin/sessions`` lists all sessions, and a
policy put through the admin API is written to the policy file and then applied by
every worker at once (each also watches the file). Workers 1..N-1 serve their own admin
listener on loopback only, at the configured port plus their index, for worker 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from types import FrameType

WORKER_INDEX_ENV = "MQTTGATE_WORKER_INDEX"
WORKERS_ENV = "MQTTGATE_WORKERS"

# A worker that dies is restarted, unless workers die faster than this: then the
# supervisor stops (a crash loop is a bug to read about, not to hide).
RESTART_WINDOW_S = 10.0
MAX_RESTARTS_IN_WINDOW = 5


@dataclass(frozen=True, slots=True)
class WorkerRole:
    index: int
    count: int

    @property
    def leader(self) -> bool:
        return self.index == 0

    def admin_port(self, base: int) -> int:
        return base + self.index

    def peer_admin_ports(self, base: int) -> list[int]:
        return [base + i for i in range(1, self.count)]


def role_from_env() -> WorkerRole | None:
    index = os.environ.get(WORKER_INDEX_ENV)
    count = os.environ.get(WORKERS_ENV)
    if index is None or count is None:
        return None
    return WorkerRole(int(index), int(count))


def supervise(argv: list[str], workers: int) -> int:
    """Run ``workers`` copies of ``mqttgate serve``; forward signals; restart the dead."""
    procs: dict[int, subprocess.Popen[bytes]] = {}
    stopping = False
    restarts: list[float] = []

    def spawn(i: int) -> None:
        env = {**os.environ, WORKER_INDEX_ENV: str(i), WORKERS_ENV: str(workers)}
        procs[i] = subprocess.Popen([sys.executable, "-m", "gateway", *argv], env=env)

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    for i in range(workers):
        spawn(i)
    code = 0
    while procs:
        time.sleep(0.2)
        for i, p in list(procs.items()):
            rc = p.poll()
            if rc is None:
                continue
            del procs[i]
            if stopping:
                # A worker stopped by the forwarded signal before it could install its
                # own handler ends with -SIGTERM: that is a clean stop too.
                if rc not in (0, -signal.SIGTERM, -signal.SIGINT):
                    code = code or rc
                continue
            now = time.monotonic()
            restarts[:] = [t for t in restarts if now - t < RESTART_WINDOW_S] + [now]
            if len(restarts) > MAX_RESTARTS_IN_WINDOW:
                print(
                    f"mqttgate: workers keep dying (worker {i}: exit {rc}); stopping",
                    file=sys.stderr,
                )
                forward(signal.SIGTERM, None)
                code = 1
                continue
            spawn(i)
    return code
