"""Fixtures of the end-to-end suite: real Elasticsearch nodes, one `vigil` process per test.

Nodes (ports from VIGIL_E2E_ES_PORT, default 9381; transport = port + 100):
  main   base + 0  shared by the tests that leave Elasticsearch alone; each uses its own indices
  kill   base + 1  the node the ES-killed test SIGKILLs and restarts on the same data dir
  tinyq  base + 2  thread_pool.write.size 1, queue_size 1: rejects writes with 429

The nodes the selected tests need are started in parallel when the session begins (a start
takes 20-100 s here) and stopped with --clean when it ends. Anything missing (the vigil binary,
Java, rsyslog) fails the test with a message saying what to install; nothing is skipped.
"""

from __future__ import annotations

import logging
import os
import uuid

import pytest

import harness
from harness import EsNode, Vigil

# The client logs every failed request and node "timeout"; the ledgers count them instead.
logging.getLogger("elastic_transport").setLevel(logging.ERROR)

BASE = int(os.environ.get("VIGIL_E2E_ES_PORT", "9381"))
NODES = {
    "es_main": ("main", BASE, ""),
    "es_kill": ("kill", BASE + 1, ""),
    "es_tinyq": ("tinyq", BASE + 2, "thread_pool.write.size: 1\nthread_pool.write.queue_size: 1"),
}


@pytest.fixture(scope="session")
def logdir(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e-logs")


@pytest.fixture(scope="session", autouse=True)
def _es_pool(request, logdir):
    """Launches every node the selected tests use, in parallel, before the first test."""
    wanted = set()
    for item in request.session.items:
        wanted |= set(getattr(item, "fixturenames", ())) & set(NODES)
    pool = {}
    errors = {}
    for fixture in sorted(wanted):
        name, port, extra = NODES[fixture]
        node = EsNode(name, port, extra, logdir)
        try:
            node.launch()
        except harness.E2EError as e:
            errors[fixture] = str(e)
        pool[fixture] = node
    request.session.e2e_pool = (pool, errors)
    yield pool
    if os.environ.get("VIGIL_E2E_KEEP") == "1":
        return  # developer mode: leave the nodes running for the next session
    for node in pool.values():
        node.stop(clean=True)


def _node(request, fixture: str) -> EsNode:
    pool, errors = request.session.e2e_pool
    if fixture in errors:
        pytest.fail(errors[fixture], pytrace=False)
    try:
        return pool[fixture].wait()
    except harness.E2EError as e:
        errors[fixture] = str(e)
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def es_main(request) -> EsNode:
    return _node(request, "es_main")


@pytest.fixture
def es_kill(request) -> EsNode:
    return _node(request, "es_kill")


@pytest.fixture
def es_tinyq(request) -> EsNode:
    return _node(request, "es_tinyq")


@pytest.fixture
def run_id(request) -> str:
    """A unique, index-name-safe id per test."""
    return f"{request.node.name.lower().replace('_', '-')[:40]}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def vigils(tmp_path):
    """Starts `vigil` processes for a test (`vigils(es_url, **config)`) and stops them after."""
    started: list[Vigil] = []

    def make(es_url: str, name: str = "vigil", start: bool = True, **config) -> Vigil:
        v = Vigil(tmp_path, es_url, name=name, **config)
        started.append(v)
        if start:
            v.start()
        return v

    yield make
    for v in started:
        v.kill()
    # Vigil's own log is part of the test's report when a test fails.
    for v in started:
        if v.log.exists():
            print(f"--- {v.log} (last lines)\n{harness.tail(v.log, 15)}")


def pytest_terminal_summary(terminalreporter):
    if harness.COUNT_LINES:
        terminalreporter.section("e2e counts")
        for line in harness.COUNT_LINES:
            terminalreporter.write_line(line)
