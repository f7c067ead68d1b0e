"""End-to-end harness: real Elasticsearch nodes (tests/elasticsearch/start), real `vigil`
processes, test documents with a unique sequence number, and the bookkeeping the fault tests
count with.

Nothing here retries on its own: every whole-request failure a client sees is recorded as a
failure for all of that request's documents, so the counts show exactly what Vigil did.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import elasticsearch
from elasticsearch import Elasticsearch

REPO = Path(__file__).resolve().parents[2]
ES_START = REPO / "tests" / "elasticsearch" / "start"
ES_STOP = REPO / "tests" / "elasticsearch" / "stop"
VIGIL_BIN = Path(os.environ.get("VIGIL_BIN", REPO / "target" / "release" / "vigil"))
MODELS = REPO / "models"
DEFAULT_TOML = REPO / "sidecar" / "config" / "default.toml"
AUTH_SAMPLE = MODELS / "samples" / "auth-events.ndjson"
URL_SAMPLE = MODELS / "samples" / "urls.ndjson"
ES_START_TIMEOUT = int(os.environ.get("VIGIL_ES_START_TIMEOUT", "180"))

# Count lines shown again in the terminal summary, so the CI log has them in one place.
COUNT_LINES: list[str] = []


class E2EError(AssertionError):
    """A precondition of the end-to-end suite is missing: the test fails with this message."""


def report(line: str) -> None:
    print(line, flush=True)
    COUNT_LINES.append(line)


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError as e:
        return f"(cannot read {path}: {e})"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------------------------ Elasticsearch


class EsNode:
    """One real single-node Elasticsearch of the test harness, on its own port and run dir."""

    def __init__(self, name: str, port: int, extra_settings: str = "", logdir: Path | None = None):
        self.name = name
        self.port = port
        self.extra_settings = extra_settings
        self.run_dir = Path(f"/tmp/vigil-es-{port}")
        self.url = f"http://127.0.0.1:{port}"
        self.logdir = logdir or Path("/tmp")
        self._proc: subprocess.Popen | None = None
        self._log: Path | None = None
        self.started = False

    # The start script serialises on a lock file, prints the URL on stdout, logs on stderr.
    def _env(self) -> dict:
        env = dict(os.environ)
        env.pop("VIGIL_ES_RUN_DIR", None)
        env["VIGIL_ES_EXTRA_SETTINGS"] = self.extra_settings
        return env

    def launch(self) -> None:
        """Starts the node in the background (fresh run dir); `wait()` blocks until it is up."""
        if not ES_START.exists():
            raise E2EError(f"{ES_START} is missing")
        if os.environ.get("VIGIL_E2E_KEEP") == "1" and (self.run_dir / "es.pid").exists():
            self._start_proc()  # developer mode: reuse the node a previous session kept
            return
        # A node left over from an aborted run of this suite on the same port: remove it.
        subprocess.run([str(ES_STOP), "--port", str(self.port), "--clean"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        for p in (self.port, self.port + 100):
            if port_in_use(p):
                raise E2EError(
                    f"port {p} is taken by another process; the e2e suite needs ports "
                    f"{self.port} and {self.port + 100} for its '{self.name}' node "
                    f"(set VIGIL_E2E_ES_PORT to another base)")
        self._start_proc()

    def _start_proc(self) -> None:
        self._log = self.logdir / f"es-{self.name}-{self.port}-start.log"
        self._proc = subprocess.Popen(
            [str(ES_START), "--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=open(self._log, "ab"), env=self._env(), text=True)

    def wait(self) -> "EsNode":
        if self.started:
            return self
        assert self._proc is not None, "launch() first"
        try:
            out, _ = self._proc.communicate(timeout=ES_START_TIMEOUT + 60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            raise E2EError(f"Elasticsearch '{self.name}' did not start in time:\n{tail(self._log)}")
        if self._proc.returncode != 0:
            raise E2EError(
                f"tests/elasticsearch/start --port {self.port} failed (exit {self._proc.returncode}); "
                f"Elasticsearch is needed for the e2e tests:\n{tail(self._log)}")
        self.url = out.strip().splitlines()[-1]
        self.started = True
        return self

    def restart(self) -> "EsNode":
        """Starts the node again on the same run dir (data kept), blocking."""
        self.started = False
        self._start_proc()
        return self.wait()

    def pid(self) -> int:
        return int((self.run_dir / "es.pid").read_text().strip())

    def sigkill(self) -> None:
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.time() + 30
        while pid_alive(pid) and time.time() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            raise E2EError(f"Elasticsearch pid {pid} survived SIGKILL")
        self.started = False

    def stop(self, clean: bool = True) -> None:
        args = [str(ES_STOP), "--port", str(self.port)] + (["--clean"] if clean else [])
        subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        self.started = False

    def client(self, **kw) -> Elasticsearch:
        return Elasticsearch(self.url, request_timeout=60, **kw)


# -------------------------------------------------------------------------------------- Vigil


def vigil_toml(listen: str, es_url: str, server: dict | None = None,
               elasticsearch_: dict | None = None, bulk: dict | None = None) -> str:
    """A configuration for one test: the shipped routes of default.toml, the repo's bundles,
    loopback, and the overrides the test asks for."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        return json.dumps(str(v))

    sections = {
        "server": {"listen": listen, **(server or {})},
        "models": {"paths": None, "watch": False},
        "elasticsearch": {"url": es_url, **(elasticsearch_ or {})},
        "bulk": bulk or {},
    }
    lines = []
    for name, kv in sections.items():
        lines.append(f"[{name}]")
        for k, v in kv.items():
            if name == "models" and k == "paths":
                lines.append(f"paths = [{json.dumps(str(MODELS))}]")
            else:
                lines.append(f"{k} = {val(v)}")
        lines.append("")
    default = DEFAULT_TOML.read_text()
    routes = default[default.index("[[routes]]"):]
    return "\n".join(lines) + "\n# Routes as shipped in sidecar/config/default.toml\n" + routes


class Vigil:
    """One `vigil serve` process in front of `es_url`, on its own port."""

    def __init__(self, workdir: Path, es_url: str, name: str = "vigil", port: int | None = None,
                 **config):
        if not VIGIL_BIN.exists():
            raise E2EError(
                f"the vigil binary {VIGIL_BIN} is missing: run `cargo build --release` in {REPO} "
                f"(or set VIGIL_BIN)")
        self.workdir = workdir
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / f"{name}.toml"
        self.config_path.write_text(vigil_toml(f"127.0.0.1:{self.port}", es_url, **config))
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "Vigil":
        log = open(self.log, "ab")
        env = dict(os.environ, VIGIL_LOG=os.environ.get("VIGIL_LOG", "info"))
        env.pop("VIGIL_ES_URL", None)
        env.pop("VIGIL_CONFIG", None)
        env.pop("VIGIL_LISTEN", None)
        self.proc = subprocess.Popen([str(VIGIL_BIN), "serve", "--config", str(self.config_path)],
                                     stdout=log, stderr=log, cwd=self.workdir, env=env)
        deadline = time.time() + timeout
        import urllib3
        http = urllib3.PoolManager(retries=False, timeout=2)
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise E2EError(f"vigil exited with {self.proc.returncode}:\n{tail(self.log)}")
            try:
                r = http.request("GET", f"{self.url}/_vigil/health/ready")
                if r.status == 200:
                    return self
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise E2EError(f"vigil was not ready within {timeout}s:\n{tail(self.log)}")

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, **kw) -> Elasticsearch:
        """The official Python client pointed at Vigil, with its own retries off: a fault test
        must see every failure, not the client's second try."""
        kw.setdefault("request_timeout", 60)
        kw.setdefault("max_retries", 0)
        kw.setdefault("retry_on_timeout", False)
        kw.setdefault("retry_on_status", ())
        kw.setdefault("connections_per_node", 64)
        return Elasticsearch(self.url, **kw)


# ---------------------------------------------------------------------------------- documents


def _lines(path: Path) -> list[str]:
    if not path.exists():
        raise E2EError(f"sample file {path} is missing")
    return [l for l in path.read_text().splitlines() if l.strip()]


_AUTH: list[str] | None = None
_URLS: list[str] | None = None


def make_docs(n: int, run: str, start: int = 0, url_every: int = 0, **extra) -> list[dict]:
    """`n` documents with unique `seq` values start..start+n-1: the sample authentication events
    repeated (scored by login-risk), and every `url_every`-th one a sample URL document (scored by
    url-phishing)."""
    global _AUTH, _URLS
    if _AUTH is None:
        _AUTH, _URLS = _lines(AUTH_SAMPLE), _lines(URL_SAMPLE)
    docs = []
    for i in range(n):
        seq = start + i
        if url_every and seq % url_every == 0:
            doc = json.loads(_URLS[seq % len(_URLS)])
        else:
            doc = json.loads(_AUTH[seq % len(_AUTH)])
        doc["seq"] = seq
        doc["run"] = run
        doc.update(extra)
        docs.append(doc)
    return docs


def create_index(es: Elasticsearch, index: str, shards: int = 1) -> None:
    """Created directly on Elasticsearch (the ground-truth channel), green on one node."""
    es.indices.create(index=index, settings={"number_of_shards": shards, "number_of_replicas": 0},
                      mappings={"properties": {"seq": {"type": "long"}, "batch": {"type": "long"},
                                               "run": {"type": "keyword"}}})
    es.cluster.health(index=index, wait_for_status="green", timeout="60s")


def indexed_seqs(es: Elasticsearch, index: str) -> collections.Counter:
    """How many times each `seq` is in the index (exact: a composite aggregation, paged)."""
    es.indices.refresh(index=index)
    counts: collections.Counter = collections.Counter()
    after = None
    while True:
        comp = {"size": 5000, "sources": [{"seq": {"terms": {"field": "seq"}}}]}
        if after:
            comp["after"] = after
        r = es.search(index=index, size=0, aggs={"s": {"composite": comp}})
        agg = r["aggregations"]["s"]
        for b in agg["buckets"]:
            counts[int(b["key"]["seq"])] += b["doc_count"]
        after = agg.get("after_key")
        if not agg["buckets"] or not after:
            break
    total = es.count(index=index)["count"]
    assert sum(counts.values()) == total, f"{total} documents but {sum(counts.values())} carry seq"
    return counts


# --------------------------------------------------------------------------- per-document ledger


@dataclass
class Ledger:
    """What the client was told about every document it sent.

    acked: the item came back 2xx. item_failed: the item came back with an error status (a
    definitive "not indexed"). request_failed: the whole request failed (error status, connection
    error, timeout); the client does not know whether Elasticsearch indexed those documents.
    """

    name: str
    sent: int = 0
    outcome: dict = field(default_factory=dict)  # seq -> (kind, status)
    requests: collections.Counter = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _set(self, seq: int, kind: str, status) -> None:
        if seq in self.outcome:
            raise AssertionError(f"seq {seq} got two outcomes: {self.outcome[seq]} and {(kind, status)}")
        self.outcome[seq] = (kind, status)

    def send_bulk(self, client: Elasticsearch, index: str, docs: list[dict], op: str = "index"):
        """One `_bulk` through the client, recorded item by item. Returns the HTTP status (or the
        exception's name for a transport failure)."""
        ops = []
        for d in docs:
            ops.append({op: {}})
            ops.append(d)
        seqs = [d["seq"] for d in docs]
        with self.lock:
            self.sent += len(docs)
        try:
            resp = client.bulk(index=index, operations=ops)
        except elasticsearch.UnsupportedProductError as e:
            # The client refused a 2xx without X-Elastic-Product: a Vigil bug, not a fault.
            raise AssertionError(f"the client's product check failed through Vigil: {e}")
        except elasticsearch.ApiError as e:
            status = e.meta.status
            self.record_request_failure(seqs, status)
            return status
        except elasticsearch.TransportError as e:  # connection refused/reset, timeout
            status = type(e).__name__
            self.record_request_failure(seqs, status)
            return status
        items = resp["items"]
        if len(items) != len(seqs):
            raise AssertionError(f"{len(seqs)} items sent, {len(items)} answered")
        with self.lock:
            self.requests[resp.meta.status] += 1
            for seq, item in zip(seqs, items):
                (result,) = item.values()
                st = result["status"]
                self._set(seq, "acked" if 200 <= st < 300 else "item_failed", st)
        return resp.meta.status

    def record_request_failure(self, seqs, status) -> None:
        with self.lock:
            self.requests[status] += 1
            for s in seqs:
                self._set(s, "request_failed", status)

    def forget(self, seqs) -> None:
        """Before a deliberate retry of these documents (the shipper's retry, not Vigil's)."""
        with self.lock:
            for s in seqs:
                del self.outcome[s]
            self.sent -= len(seqs)

    def seqs(self, kind: str, status=None) -> set:
        return {s for s, (k, st) in self.outcome.items()
                if k == kind and (status is None or st == status)}

    def statuses(self, kind: str) -> dict:
        c = collections.Counter(str(st) for k, st in self.outcome.values() if k == kind)
        return dict(sorted(c.items()))


def check_counts(ledger: Ledger, counts: collections.Counter, label: str | None = None) -> dict:
    """The invariants every fault test holds Vigil to, and one printed line of counts.

    - every document sent has exactly one outcome at the client (nothing dropped silently);
    - no document is in Elasticsearch twice (Vigil duplicated nothing) and none appears that
      was not sent;
    - every acknowledged document is in Elasticsearch (nothing acknowledged early);
    - no document whose item came back failed is in Elasticsearch;
    - so: sent = indexed + reported failed - (documents of whole-request failures that
      Elasticsearch indexed anyway), and the last term is printed as `indexed_despite_failure`.
    """
    sent = set(ledger.outcome)
    acked = ledger.seqs("acked")
    item_failed = ledger.seqs("item_failed")
    request_failed = ledger.seqs("request_failed")
    indexed = set(counts)
    dups = {s: n for s, n in counts.items() if n > 1}
    despite = indexed & request_failed
    summary = {
        "sent": ledger.sent,
        "acked": len(acked),
        "item_failed": len(item_failed),
        "item_failed_by_status": ledger.statuses("item_failed"),
        "request_failed": len(request_failed),
        "request_failed_by_status": ledger.statuses("request_failed"),
        "requests_by_status": dict(sorted((str(k), v) for k, v in ledger.requests.items())),
        "indexed_distinct": len(indexed),
        "indexed_total": sum(counts.values()),
        "indexed_despite_failure": len(despite),
    }
    report(f"COUNTS {label or ledger.name}: " + json.dumps(summary))
    assert ledger.sent == len(sent), f"{ledger.sent} documents sent but {len(sent)} have an outcome"
    assert not dups, f"documents indexed more than once (seq: count): {dict(list(dups.items())[:20])}"
    assert indexed <= sent, f"documents indexed that were never sent: {sorted(indexed - sent)[:20]}"
    lost = acked - indexed
    assert not lost, f"{len(lost)} acknowledged documents are not in Elasticsearch: {sorted(lost)[:20]}"
    wrong = item_failed & indexed
    assert not wrong, f"{len(wrong)} documents reported failed per item are in Elasticsearch: {sorted(wrong)[:20]}"
    assert len(sent) == len(indexed) + len(item_failed) + len(request_failed) - len(despite)
    return summary
