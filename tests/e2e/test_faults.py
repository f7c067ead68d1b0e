"""Fault tests with counts. Every document carries a unique `seq`; the client records what it was
told about each one (acked, failed per item with a status, or part of a whole request that
failed); afterwards Elasticsearch is counted (`seq` distinct vs total) and `check_counts` holds
Vigil to its invariants: nothing dropped silently, nothing acknowledged that is not indexed,
nothing indexed twice. Each test prints a `COUNTS` line (repeated in the session summary)."""

from __future__ import annotations

import http.server
import itertools
import json
import signal
import socketserver
import threading
import time

import urllib3

from harness import Ledger, check_counts, create_index, indexed_seqs, make_docs, report


class Stream:
    """Client threads sending bulks of fresh documents through Vigil until stopped, no retries."""

    def __init__(self, client, index, ledger, run_id, threads=3, batch=200, url_every=0):
        self.client, self.index, self.ledger, self.run_id = client, index, ledger, run_id
        self.batch, self.url_every = batch, url_every
        self.stop = threading.Event()
        self.seq = itertools.count(0, batch)
        self.lock = threading.Lock()
        self.log: list[tuple[float, float, object]] = []  # (start, end, status) per request
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        while not self.stop.is_set():
            with self.lock:
                start = next(self.seq)
            docs = make_docs(self.batch, self.run_id, start=start, url_every=self.url_every)
            t0 = time.monotonic()
            status = self.ledger.send_bulk(self.client, self.index, docs)
            with self.lock:
                self.log.append((t0, time.monotonic(), status))
            if status != 200:
                time.sleep(0.05)  # a failing request is not retried; do not spin either

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=90)
        assert not any(t.is_alive() for t in self.threads), "a client thread hung"

    def wait_acked(self, n, timeout=60):
        deadline = time.time() + timeout
        while len(self.ledger.seqs("acked")) < n and time.time() < deadline:
            time.sleep(0.05)
        assert len(self.ledger.seqs("acked")) >= n, f"fewer than {n} documents acked in {timeout}s"

    def in_flight_at(self, t):
        with self.lock:
            return [s for (a, b, s) in self.log if a < t < b]


# ------------------------------------------------------------------------------- (a) ES killed


def test_elasticsearch_killed_mid_stream(es_kill, vigils, run_id):
    es = es_kill.client()
    index = f"e2e-{run_id}"
    create_index(es, index, shards=2)
    vigil = vigils(es_kill.url)
    ledger = Ledger("elasticsearch SIGKILLed mid-stream")
    with Stream(vigil.client(request_timeout=60), index, ledger, run_id, threads=3) as stream:
        stream.wait_acked(1500)
        killed_at = time.monotonic()
        es_kill.sigkill()
        time.sleep(2)  # the clients keep sending into a dead Elasticsearch
    in_flight = stream.in_flight_at(killed_at)
    # Count only after the node is back on the same data dir: acknowledged writes were fsynced
    # (translog durability "request"), so they must all be there after the crash.
    es_kill.restart()
    es = es_kill.client()
    es.cluster.health(index=index, wait_for_status="green", timeout="120s")
    summary = check_counts(ledger, indexed_seqs(es, index))
    report(f"COUNTS elasticsearch SIGKILLed: requests in flight at the kill answered {in_flight}")
    assert summary["acked"] >= 1500
    assert summary["request_failed"] > 0, "no request failed although Elasticsearch was dead for 2 s"
    # Vigil stayed up: every failure is its answer, 503 (unreachable) or 502 (connection lost
    # mid-request) or 504, never a connection error to Vigil itself.
    assert set(summary["request_failed_by_status"]) <= {"502", "503", "504"}, summary
    assert "503" in summary["request_failed_by_status"], summary


# ------------------------------------------------------------------------ (b) ES answers 429


def test_elasticsearch_rejects_with_429(es_tinyq, vigils, run_id):
    es = es_tinyq.client()
    index = f"e2e-{run_id}"
    # Two shards: one bulk makes two shard-level writes, which one thread plus a queue of one
    # can take, so a single client is never rejected; twelve concurrent clients are.
    create_index(es, index, shards=2)
    vigil = vigils(es_tinyq.url)
    client = vigil.client()
    ledger = Ledger("elasticsearch 429 (write pool 1, queue 1)")
    threads, per_thread, batch = 12, 5, 100
    gate = threading.Barrier(threads)

    def worker(t):
        gate.wait()
        for b in range(per_thread):
            start = (t * per_thread + b) * batch
            ledger.send_bulk(client, index, make_docs(batch, run_id, start=start))

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    summary = check_counts(ledger, indexed_seqs(es, index), "elasticsearch 429, before retries")
    rejected = summary["item_failed_by_status"].get("429", 0) + summary["request_failed_by_status"].get("429", 0)
    assert rejected > 0, "the tiny write queue rejected nothing; no 429 reached the client"
    # Nothing else went wrong, and a 429 is definitive: not indexed, so the equation is exact.
    assert set(summary["item_failed_by_status"]) <= {"429"}, summary
    assert set(summary["request_failed_by_status"]) <= {"429"}, summary
    assert summary["indexed_despite_failure"] == 0
    assert summary["sent"] == summary["indexed_distinct"] + summary["item_failed"] + summary["request_failed"]

    # The shipper retries what was rejected, one request at a time: then everything is in.
    for attempt in range(20):
        failed = sorted(ledger.seqs("item_failed") | ledger.seqs("request_failed"))
        if not failed:
            break
        ledger.forget(failed)
        for i in range(0, len(failed), batch):
            chunk = failed[i:i + batch]
            docs = [make_docs(1, run_id, start=s)[0] for s in chunk]
            ledger.send_bulk(client, index, docs)
        time.sleep(0.2)
    summary = check_counts(ledger, indexed_seqs(es, index), "elasticsearch 429, after the client's retries")
    assert summary["acked"] == summary["sent"] == threads * per_thread * batch
    assert summary["indexed_distinct"] == summary["indexed_total"] == summary["sent"]


# --------------------------------------------------------------------- (c) a slow upstream


class SlowStandIn(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A STAND-IN for Elasticsearch, not Elasticsearch: a real node cannot be made slow on
    demand. It proxies every request to the real node behind it, but holds `_bulk` requests that
    contain a document of one of `slow_batches` for `delay` seconds first (and proxies them
    anyway afterwards, as a slow Elasticsearch would still index them). It counts how many times
    it received each batch, which shows whether Vigil retried."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, es_url, slow_batches, delay):
        self.es_url, self.slow_batches, self.delay = es_url, set(slow_batches), delay
        self.received: dict[int, int] = {}
        self.lock = threading.Lock()
        self.http = urllib3.PoolManager(retries=False, timeout=60)
        super().__init__(("127.0.0.1", 0), _StandInHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()


class _StandInHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length", 0)))

    def _handle(self):
        srv: SlowStandIn = self.server
        body = self._body()
        batches = set()
        if self.path.split("?")[0].endswith("/_bulk"):
            for line in body.splitlines():
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                if isinstance(doc, dict) and "batch" in doc:
                    batches.add(doc["batch"])
        with srv.lock:
            for b in batches:
                srv.received[b] = srv.received.get(b, 0) + 1
        if batches & srv.slow_batches:
            time.sleep(srv.delay)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() in ("content-type", "accept")}
        r = srv.http.request(self.command, srv.es_url + self.path, body=body or None, headers=headers)
        try:
            self.send_response(r.status)
            for k in ("content-type", "x-elastic-product"):
                if k in r.headers:
                    self.send_header(k, r.headers[k])
            self.send_header("content-length", str(len(r.data)))
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(r.data)
        except OSError:
            pass  # Vigil gave up waiting and closed the connection
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle


def test_slow_upstream_times_out_with_504(es_main, vigils, run_id):
    es = es_main.client()
    index = f"e2e-{run_id}"
    create_index(es, index)
    slow = {2, 5, 8}
    standin = SlowStandIn(es_main.url, slow_batches=slow, delay=4.0)
    try:
        vigil = vigils(standin.url, elasticsearch_={"timeout_ms": 2000})
        client = vigil.client(request_timeout=30)
        ledger = Ledger("slow upstream (stand-in, timeout_ms 2000, delay 4 s)")
        statuses = {}
        batches, batch = 10, 100
        for b in range(batches):
            docs = make_docs(batch, run_id, start=b * batch, url_every=6, batch=b)
            statuses[b] = ledger.send_bulk(client, index, docs)
        # Let the stand-in finish proxying the held requests, then count.
        time.sleep(standin.delay + 1)
        standin.shutdown()
        standin.server_close()
        summary = check_counts(ledger, indexed_seqs(es, index))
    finally:
        standin.shutdown()
    report(f"COUNTS slow upstream: status per batch {statuses}; stand-in received per batch {standin.received}")
    assert {b for b, s in statuses.items() if s == 504} == slow, statuses
    assert all(s == 200 for b, s in statuses.items() if b not in slow), statuses
    assert summary["request_failed_by_status"] == {"504": len(slow) * batch}
    # Vigil sent each bulk once: it did not retry after the timeout.
    assert standin.received == {b: 1 for b in range(batches)}, standin.received
    # 504 means "not acknowledged", not "not indexed": the held bulks reached Elasticsearch
    # after Vigil had given up, so their documents are there although the client was told 504.
    assert summary["indexed_despite_failure"] == len(slow) * batch
    assert summary["indexed_total"] == summary["indexed_distinct"] == batches * batch


# ---------------------------------------------------------------- (d) Vigil restarted mid-stream


def test_vigil_restarted_mid_stream(es_main, vigils, run_id):
    es = es_main.client()
    vigil = vigils(es_main.url)
    port = vigil.port

    # SIGTERM: in-flight requests are drained, then the process exits; we start it again.
    index = f"e2e-{run_id}-term"
    create_index(es, index, shards=2)
    ledger = Ledger("vigil SIGTERM + restart")
    with Stream(vigil.client(request_timeout=60), index, ledger, run_id, threads=4) as stream:
        stream.wait_acked(1000)
        t_term = time.monotonic()
        vigil.signal(signal.SIGTERM)
        rc = vigil.wait_exit(timeout=60)
        down = time.monotonic() - t_term
        vigil.start()
        stream.wait_acked(len(ledger.seqs("acked")) + 1000)
    in_flight = stream.in_flight_at(t_term)
    summary = check_counts(ledger, indexed_seqs(es, index))
    report(f"COUNTS vigil SIGTERM: exit code {rc}, down {down:.2f}s; requests in flight at SIGTERM answered {in_flight}")
    assert rc == 0
    assert vigil.port == port
    # Drained, not cut: a request Vigil had started on completed (200); one that only met a
    # closing or refused connection failed at the client and never reached Elasticsearch.
    assert set(in_flight) <= {200, "ConnectionError"}, in_flight
    assert summary["indexed_despite_failure"] == 0
    assert set(summary["request_failed_by_status"]) <= {"ConnectionError"}, summary

    # SIGKILL: requests in flight are cut; the client sees a connection error for them.
    index = f"e2e-{run_id}-kill"
    create_index(es, index, shards=2)
    ledger = Ledger("vigil SIGKILL + restart")
    with Stream(vigil.client(request_timeout=60), index, ledger, run_id, threads=4) as stream:
        stream.wait_acked(1000)
        t_kill = time.monotonic()
        vigil.kill()
        time.sleep(0.5)
        vigil.start()
        stream.wait_acked(len(ledger.seqs("acked")) + 1000)
    in_flight = stream.in_flight_at(t_kill)
    summary = check_counts(ledger, indexed_seqs(es, index))
    report(f"COUNTS vigil SIGKILL: requests in flight at the kill answered {in_flight}")
    assert set(summary["request_failed_by_status"]) <= {"ConnectionError", "ConnectionTimeout"}, summary
    assert summary["request_failed"] > 0


# --------------------------------------------------------------------------- (e) overload


def test_overload_answers_429_and_retries_succeed(es_main, vigils, run_id):
    es = es_main.client()
    index = f"e2e-{run_id}"
    create_index(es, index, shards=2)
    vigil = vigils(es_main.url, server={"max_concurrent_requests": 2})
    client = vigil.client()
    ledger = Ledger("overload (max_concurrent_requests 2, 16 clients)")
    threads, per_thread, batch = 16, 4, 100
    gate = threading.Barrier(threads)
    rejected = []
    lock = threading.Lock()

    def worker(t):
        gate.wait()
        for b in range(per_thread):
            docs = make_docs(batch, run_id, start=(t * per_thread + b) * batch, url_every=9)
            for attempt in range(200):
                status = ledger.send_bulk(client, index, docs)
                if status != 429:
                    break
                # Vigil refused the whole request before reading it: the client's retry is safe.
                with lock:
                    rejected.append(t)
                ledger.forget([d["seq"] for d in docs])
                time.sleep(0.02 * (1 + attempt % 5))

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=180)
    summary = check_counts(ledger, indexed_seqs(es, index))
    report(f"COUNTS overload: {len(rejected)} requests answered 429 by Vigil and retried by the client")
    assert rejected, "16 concurrent clients against max_concurrent_requests = 2 saw no 429"
    assert summary["acked"] == summary["sent"] == threads * per_thread * batch
    assert summary["indexed_distinct"] == summary["indexed_total"] == summary["sent"]
