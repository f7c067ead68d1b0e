"""Real shippers through Vigil into the real Elasticsearch: the official Python client's bulk
helpers and rsyslog's omelasticsearch. The documents must land, and the routed ones scored."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time

from elasticsearch import helpers

from harness import E2EError, create_index, indexed_seqs, make_docs, report, tail

LOGIN = "ml.inference.login-risk"
URL = "ml.inference.url-phishing"


def _get(doc: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            # Field names may themselves contain dots (ml.inference.login-risk as one key).
            return None
        doc = doc[part]
    return doc


def _model_result(source: dict, target: str):
    ml = source.get("ml", {})
    inference = ml.get("inference", {}) if isinstance(ml, dict) else {}
    return inference.get(target.rsplit(".", 1)[-1])


def assert_scored(es, index: str, expected: int) -> dict:
    """Every document landed; authentication events carry login-risk's score, URL documents
    url-phishing's; none carries a vigil.error marker."""
    es.indices.refresh(index=index)
    total = es.count(index=index)["count"]
    assert total == expected, f"{expected} sent, {total} in Elasticsearch"
    auth = es.count(index=index, query={"term": {"event.category": "authentication"}})["count"]
    auth_scored = es.count(index=index, query={"bool": {"filter": [
        {"term": {"event.category": "authentication"}},
        {"exists": {"field": f"{LOGIN}.score"}}]}})["count"]
    urls = es.count(index=index, query={"exists": {"field": "url.original"}})["count"]
    urls_scored = es.count(index=index, query={"bool": {"filter": [
        {"exists": {"field": "url.original"}}, {"exists": {"field": f"{URL}.score"}}]}})["count"]
    errors = es.count(index=index, query={"exists": {"field": "vigil.error"}})["count"]
    assert auth > 0
    assert auth_scored == auth, f"{auth} authentication events, {auth_scored} with {LOGIN}.score"
    assert urls_scored == urls, f"{urls} URL documents, {urls_scored} with {URL}.score"
    assert errors == 0, f"{errors} documents carry vigil.error"
    hit = es.search(index=index, size=1, query={"term": {"event.category": "authentication"}})
    score = _model_result(hit["hits"]["hits"][0]["_source"], LOGIN)["score"]
    assert 0.0 <= score <= 1.0, score
    return {"total": total, "auth_scored": auth_scored, "urls_scored": urls_scored}


def test_python_client_helpers_bulk(es_main, vigils, run_id):
    es = es_main.client()
    vigil = vigils(es_main.url)
    client = vigil.client()
    index = f"e2e-{run_id}"
    create_index(es, index)
    n = 3000
    docs = make_docs(n, run_id, url_every=5)
    # helpers.bulk posts /{index}/_bulk; the client checks X-Elastic-Product on every answer.
    ok, errors = helpers.bulk(client, docs, index=index, chunk_size=500, stats_only=False)
    assert ok == n and errors == [], (ok, errors[:3])
    counts = indexed_seqs(es, index)
    assert set(counts) == set(range(n)) and max(counts.values()) == 1
    summary = assert_scored(es, index, n)
    report(f"COUNTS helpers.bulk: sent={n} acked={ok} {json.dumps(summary)}")


def test_python_client_streaming_bulk_and_single_docs(es_main, vigils, run_id):
    es = es_main.client()
    client = vigils(es_main.url).client()
    index = f"e2e-{run_id}"
    create_index(es, index)
    n = 1500
    actions = ({"_op_type": "create", "_index": index, "_id": f"doc-{d['seq']}", "_source": d}
               for d in make_docs(n, run_id, url_every=7))
    results = list(helpers.streaming_bulk(client, actions, chunk_size=300, raise_on_error=False))
    statuses = [info["create"]["status"] for ok, info in results]
    assert len(results) == n and all(s == 201 for s in statuses), sorted(set(statuses))
    # Sending the same ids again: Elasticsearch's 409 per item comes back through Vigil.
    again = ({"_op_type": "create", "_index": index, "_id": f"doc-{d['seq']}", "_source": d}
             for d in make_docs(10, run_id))
    conflicts = [info["create"]["status"]
                 for ok, info in helpers.streaming_bulk(client, again, raise_on_error=False)]
    assert conflicts == [409] * 10
    # Single-document writes go through /{index}/_doc and are scored the same way.
    one = make_docs(1, run_id, start=n)[0]
    r = client.index(index=index, document=one, refresh="wait_for")
    assert r["result"] == "created"
    got = es.get(index=index, id=r["_id"])["_source"]
    assert _model_result(got, LOGIN) is not None, got.keys()
    summary = assert_scored(es, index, n + 1)
    report(f"COUNTS streaming_bulk: sent={n}+1 single conflicts_409={len(conflicts)} {json.dumps(summary)}")


def test_rsyslog_omelasticsearch(es_main, vigils, run_id, tmp_path):
    rsyslogd = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    modules = "/usr/lib/x86_64-linux-gnu/rsyslog"
    if not shutil.os.path.exists(rsyslogd) or not shutil.os.path.exists(f"{modules}/omelasticsearch.so"):
        raise E2EError("rsyslog with omelasticsearch is needed: apt-get install rsyslog "
                       "rsyslog-elasticsearch (tests/setup.sh does this)")
    es = es_main.client()
    vigil = vigils(es_main.url)
    index = f"e2e-{run_id}"
    create_index(es, index)
    work = tmp_path / "rsyslog"
    work.mkdir()
    infile = work / "events.log"
    infile.write_text("")
    conf = work / "rsyslog.conf"
    # Our own instance: own config, pid file and work dir; the only input is a file of ours,
    # bound to a ruleset whose only action posts bulks to Vigil. No imuxsock, no system log.
    conf.write_text(f"""
global(workDirectory="{work}")
module(load="imfile")
module(load="omelasticsearch")
template(name="vigil-json" type="string" string="%msg%")
ruleset(name="to-vigil") {{
  action(type="omelasticsearch" server="127.0.0.1" serverport="{vigil.port}"
         searchIndex="{index}" searchType="" esVersion.major="8" bulkmode="on"
         template="vigil-json" errorFile="{work}/es-errors.json")
}}
input(type="imfile" file="{infile}" tag="vigil-e2e" ruleset="to-vigil")
""")
    check = subprocess.run([rsyslogd, "-N1", "-f", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, f"rsyslogd -N1 rejected the config:\n{check.stdout}{check.stderr}"
    log = work / "rsyslogd.out"
    proc = subprocess.Popen([rsyslogd, "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        n = 200
        docs = make_docs(n, run_id, url_every=4)
        time.sleep(1)  # imfile sets up its watch
        with open(infile, "a") as f:
            for d in docs:
                f.write(json.dumps(d, separators=(",", ":")) + "\n")
        deadline = time.time() + 60
        total = 0
        while time.time() < deadline:
            es.indices.refresh(index=index)
            total = es.count(index=index)["count"]
            if total >= n or proc.poll() is not None:
                break
            time.sleep(0.5)
        errors = (work / "es-errors.json").read_text() if (work / "es-errors.json").exists() else ""
        assert proc.poll() is None, f"rsyslogd exited ({proc.returncode}):\n{tail(log)}"
        assert total == n, (f"{n} lines fed, {total} documents in Elasticsearch; rsyslog output:\n"
                            f"{tail(log)}\nomelasticsearch errorFile:\n{errors[:2000]}\n"
                            f"vigil log:\n{tail(vigil.log)}")
        counts = indexed_seqs(es, index)
        assert max(counts.values()) == 1
        summary = assert_scored(es, index, n)
        report(f"COUNTS rsyslog omelasticsearch: lines={n} {json.dumps(summary)}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
