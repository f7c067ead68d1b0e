"""Shared helpers for the benchmark scripts: start/stop servers (optionally pinned with
taskset), run wrk with a Lua script that posts one fixed body, parse its numbers, and report
the CPU time each process used so a saturated load generator is visible.

Benchmarks only ever talk to 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIDECAR = HERE.parents[1]
REPO = SIDECAR.parent
VENV_PY = REPO / ".venv" / "bin" / "python"


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    return (["taskset", "-c", cpus] + cmd) if cpus else cmd


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of a process and its reaped children (/proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    tick = os.sysconf("SC_CLK_TCK")
    # fields[0] is state (field 3); utime=14, stime=15, cutime=16, cstime=17
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / tick


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of pid and every live descendant (uvicorn workers, the JVM's threads are in-process)."""
    total = cpu_seconds(pid)
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    except OSError:
        out = []
    for child in out:
        total += tree_cpu_seconds(int(child))
    return total


class Server:
    """A child process started in its own process group, stopped by its own pid."""

    def __init__(self, name: str, cmd: list[str], health_url: str, cwd: Path = REPO,
                 env: dict | None = None, cpus: str | None = None, timeout: float = 120.0):
        self.name = name
        self.cmd = pinned(cmd, cpus)
        # A server left over from another run would answer the health check and be measured instead.
        where = urllib.parse.urlsplit(health_url)
        with socket.socket() as probe:
            if probe.connect_ex((where.hostname, where.port)) == 0:
                raise RuntimeError(f"something already listens on {where.netloc}: stop it first")
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(self.cmd, cwd=cwd, env=full_env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}; log: {self.log.name}\n"
                                   + Path(self.log.name).read_text()[-2000:])
            try:
                with urllib.request.urlopen(health_url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                self.stop()
                raise RuntimeError(f"{name} not healthy at {health_url} after {timeout} s; log: {self.log.name}")
            time.sleep(0.2)
        log(f"[bench] {name} up (pid {self.proc.pid}): {' '.join(self.cmd)}")

    def cpu(self) -> float:
        return tree_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if not wrk:
        sys.exit("wrk is needed: apt-get install -y wrk")
    return wrk


# Prints the BENCH line run_wrk parses; appended to every wrk script. `response` (lua_report with a
# check) counts failed responses (non-200, or the check's match) in the threads' Lua states; `done`
# runs in wrk's main Lua state and reads each thread's `bad` through `setup`'s handles. Without a
# check there is no `response`, so wrk does not copy each answer into Lua (non-2xx answers are still
# counted, by wrk itself): the answers are then checked on the server (score_api.py reads Vigil's
# counters), which leaves the load generator's CPU to the server it shares the machine with.
LUA_RESPONSE = """
response = function(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
  {check}
end
"""

LUA_DONE = """
local threads = {}
setup = function(thread) table.insert(threads, thread) end
bad = 0
done = function(summary, latency, requests)
  local failed = 0
  for _, t in ipairs(threads) do failed = failed + (t:get("bad") or 0) end
  io.write(string.format("BENCH requests=%d errors_status=%d p50_us=%d p90_us=%d p99_us=%d mean_us=%.1f bad=%d\\n",
    summary.requests, summary.errors.status, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, failed))
end
"""


def lua_report(check: str | None) -> str:
    """The Lua appended to a wrk script: the report, and with `check` (a Lua statement from
    lua_check, or "" for the status alone) a `response` function counting failed answers."""
    return LUA_DONE + ("" if check is None else LUA_RESPONSE.replace("{check}", check))


LUA = """
local f = assert(io.open("{body}", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "{ctype}"
"""


def lua_check(check_substring: str | None, within: int | None = None) -> str:
    """Lua counting a response whose body contains check_substring as bad (string.find, plain).
    within: search only the body's first bytes, where the answer's flag is (searching a 100 kB answer
    whole costs wrk a fifth of a core at 1,500 answers/s, taken from the server when nothing is pinned)."""
    if not check_substring:
        return ""
    searched = f"string.sub(body, 1, {within})" if within else "body"
    return f'if body and string.find({searched}, {lua_str(check_substring)}, 1, true) then bad = bad + 1 end'


def write_lua(body: bytes, ctype: str, check_substring: str | None = None,
              within: int | None = None, in_lua: bool = True) -> tuple[Path, Path]:
    """A body file and a wrk script posting it. check_substring: a response containing it (in its first
    `within` bytes, if given) counts as bad (e.g. '"errors":true' for _bulk). in_lua=False: no Lua
    per response at all (the caller checks the answers on the server; wrk counts non-2xx)."""
    d = Path(tempfile.mkdtemp(prefix="bench-wrk-"))
    bp = d / "body"
    bp.write_bytes(body)
    lp = d / "post.lua"
    lp.write_text(LUA.format(body=bp, ctype=ctype)
                  + lua_report(lua_check(check_substring, within) if in_lua else None))
    return bp, lp


def lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_wrk(url: str, lua: Path, seconds: float, connections: int = 8, threads: int = 1,
            cpus: str | None = None, server: Server | None = None, allow_bad: bool = False,
            env: dict[str, str] | None = None) -> dict:
    """One wrk run; returns requests/s, latency percentiles (ms), and the CPU share used by wrk and
    the server during the run (1.0 = one core busy)."""
    wrk = require_wrk()
    cmd = pinned([wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--timeout", "30s",
                  "-s", str(lua), url], cpus)
    s0 = server.cpu() if server else float("nan")
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, **env} if env else None)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    out, err = p.stdout.read(), p.stderr.read()
    p.stdout.close(), p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"wrk failed: {err}\n{out}")
    m = re.search(r"^BENCH (.*)$", out, re.M)
    if not m:
        raise RuntimeError(f"wrk output without BENCH line:\n{out}\n{err}")
    kv = {k: float(v) for k, v in (x.split("=") for x in m.group(1).split())}
    rps = re.search(r"Requests/sec:\s*([\d.]+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    if (kv["bad"] and not allow_bad) or kv["errors_status"] or sock:
        raise RuntimeError(f"failed responses during the run (bad={kv['bad']:.0f}, "
                           f"non-2xx={kv['errors_status']:.0f}, {sock.group(0) if sock else ''}):\n{out}")
    server_cpu = (server.cpu() - s0) / wall if server else float("nan")
    return {
        "rps": float(rps.group(1)) if rps else kv["requests"] / seconds,
        "requests": kv["requests"],
        "p50_ms": kv["p50_us"] / 1e3, "p90_ms": kv["p90_us"] / 1e3, "p99_ms": kv["p99_us"] / 1e3,
        "mean_ms": kv["mean_us"] / 1e3,
        "wrk_cpu": (ru.ru_utime + ru.ru_stime) / wall,
        "server_cpu": server_cpu,
        "bad": kv["bad"],
    }


def median_runs(runs: list[dict]) -> dict:
    """Median of every numeric field over rounds (each field separately)."""
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def post_json(url: str, body: bytes, ctype: str = "application/json") -> bytes:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype}, method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()


def vigil_binary() -> Path:
    """`target/release/vigil`, or the binary named by VIGIL_BIN (e.g. a dev build, reported as such)."""
    if os.environ.get("VIGIL_BIN"):
        return Path(os.environ["VIGIL_BIN"])
    b = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release" / "vigil"
    if not b.exists():
        sys.exit(f"{b} missing: run `cargo build --release` in {REPO} first")
    return b
