"""Bad input through the real path (Vigil in front of the real Elasticsearch). The parser's unit
and fuzz tests live in the crate; here the point is what a client and the index end up with."""

from __future__ import annotations

import gzip
import json

import urllib3
from elasticsearch import Elasticsearch, helpers

from harness import create_index, indexed_seqs, make_docs, report

HTTP = urllib3.PoolManager(retries=False, timeout=60)


def post(url: str, body: bytes, **headers) -> urllib3.BaseHTTPResponse:
    h = {"content-type": "application/x-ndjson", "accept": "application/json"}
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    return HTTP.request("POST", url, body=body, headers=h)


def line(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def test_malformed_lines_fail_in_place_and_the_rest_lands(es_main, vigils, run_id):
    es = es_main.client()
    vigil = vigils(es_main.url)
    index = f"e2e-{run_id}"
    create_index(es, index)
    d = make_docs(8, run_id)
    body = b"".join([
        line({"index": {}}), line(d[0]),
        b'{"index":{}\n', line(d[1]),                       # action line cut short
        line({"index": {}}), b'{"seq":2,"event":\n',          # source line not JSON
        line({"index": {}}), line(d[3]),
        line({"bogus": {}}), line(d[4]),                    # unknown action
        line({"index": {}}), b'"just a string"\n',          # source not an object
        line({"index": {}}), b'{"seq":6,"user":{"name":"\xff\xfe"}}\n',  # not UTF-8
        line({"create": {}}), line(d[7]),
    ])
    r = post(f"{vigil.url}/{index}/_bulk", body)
    assert r.status == 200, r.data[:500]
    assert r.headers.get("x-elastic-product") == "Elasticsearch"
    answer = json.loads(r.data)
    statuses = [next(iter(i.values()))["status"] for i in answer["items"]]
    types = [next(iter(i.values())).get("error", {}).get("type") for i in answer["items"]]
    report(f"COUNTS malformed bulk: 8 items, statuses {statuses}, error types {types}")
    assert answer["errors"] is True
    assert statuses[0] == 201 and statuses[3] == 201 and statuses[7] == 201, statuses
    assert all(s == 400 for i, s in enumerate(statuses) if i not in (0, 3, 7)), statuses
    assert len(statuses) == 8
    counts = indexed_seqs(es, index)
    assert dict(counts) == {0: 1, 3: 1, 7: 1}

    # Framing errors fail the whole request, as Elasticsearch does, and index nothing.
    r = post(f"{vigil.url}/{index}/_bulk", line({"index": {}}) + line(d[5])[:-1])
    assert r.status == 400 and b"terminated by a newline" in r.data, r.data[:300]
    r = post(f"{vigil.url}/{index}/_bulk", b"\n\n")
    assert r.status == 400, r.data[:300]
    assert dict(indexed_seqs(es, index)) == {0: 1, 3: 1, 7: 1}


def test_gzip_bodies(es_main, vigils, run_id):
    es = es_main.client()
    vigil = vigils(es_main.url, server={"max_body_bytes": 1_000_000})
    index = f"e2e-{run_id}"
    create_index(es, index)
    # The official client compressing its requests (Content-Encoding: gzip).
    client = Elasticsearch(vigil.url, http_compress=True, max_retries=0, request_timeout=60)
    n = 1000
    ok, errors = helpers.bulk(client, make_docs(n, run_id, url_every=5), index=index, chunk_size=250,
                              stats_only=False)
    assert ok == n and not errors
    es.indices.refresh(index=index)
    scored = es.count(index=index, query={"exists": {"field": "ml.inference.login-risk.score"}})["count"]
    assert scored > 0
    # A raw gzip body, a broken one, and a small one that inflates past max_body_bytes.
    raw = b"".join(line({"index": {}}) + line(d) for d in make_docs(10, run_id, start=n))
    r = post(f"{vigil.url}/{index}/_bulk", gzip.compress(raw), content_encoding="gzip")
    assert r.status == 200 and json.loads(r.data)["errors"] is False, r.data[:300]
    r = post(f"{vigil.url}/{index}/_bulk", b"\x1f\x8bnot gzip at all", content_encoding="gzip")
    assert r.status == 400, (r.status, r.data[:300])
    bomb = gzip.compress(line({"index": {}}) + b'{"pad":"' + b"a" * 3_000_000 + b'"}\n')
    assert len(bomb) < 20_000
    r = post(f"{vigil.url}/{index}/_bulk", bomb, content_encoding="gzip")
    assert r.status == 413, (r.status, r.data[:300])
    assert json.loads(r.data)["error"]["type"] == "content_too_long_exception"
    counts = indexed_seqs(es, index)
    assert set(counts) == set(range(n + 10)) and max(counts.values()) == 1
    report(f"COUNTS gzip: {n} via http_compress + 10 raw gzip indexed, {scored} scored; "
           f"broken gzip -> 400, bomb of {len(bomb)} bytes -> 413")


def test_body_over_max_body_bytes_is_413(es_main, vigils, run_id):
    es = es_main.client()
    limit = 64 * 1024
    vigil = vigils(es_main.url, server={"max_body_bytes": limit})
    index = f"e2e-{run_id}"
    create_index(es, index)
    docs = make_docs(600, run_id)
    body = b"".join(line({"index": {}}) + line(d) for d in docs)
    assert len(body) > limit
    r = post(f"{vigil.url}/{index}/_bulk", body)
    assert r.status == 413, (r.status, r.data[:300])
    err = json.loads(r.data)
    assert err["status"] == 413 and err["error"]["type"] == "content_too_long_exception", err
    # The same through the official client: an ApiError with status 413, nothing retried.
    client = vigil.client()
    try:
        client.bulk(index=index, operations=[x for d in docs for x in ({"index": {}}, d)])
        raise AssertionError("expected 413")
    except Exception as e:  # elasticsearch.ApiError
        assert getattr(getattr(e, "meta", None), "status", None) == 413, repr(e)
    # Under the limit the same documents go through.
    small = b"".join(line({"index": {}}) + line(d) for d in docs[:50])
    assert len(small) < limit
    r = post(f"{vigil.url}/{index}/_bulk", small)
    assert r.status == 200 and json.loads(r.data)["errors"] is False
    counts = indexed_seqs(es, index)
    assert set(counts) == set(range(50))
    report(f"COUNTS max_body_bytes: body of {len(body)} bytes over {limit} -> 413, 0 indexed; "
           f"{len(small)} bytes -> 50 indexed")
