//! `_bulk` reads index/create sources with a scanner (`rewrite::reader`): only the fields the
//! routes, normalisation's recognition and the routed models read, not the whole document.
//! Read that way, a bulk must forward exactly what it forwards with every source parsed whole:
//! the same bytes (scores, explanations, behavioural features, normalised events, error markers,
//! results merged into a key the document already has), the same answer slots, the same counts.
//! The bulk mixes the shipped samples with the shapes where the two could part: vendor events
//! normalisation rewrites, dotted and escaped keys, arrays and duplicates on the way to a field
//! (the scanner gives up on those), `null`s, wrong types, non-objects and invalid UTF-8.

mod common;

use bytes::Bytes;
use common::sample_lines;
use vigil::bulk::{Entry, Item, Parsed};
use vigil::rewrite::{Scoring, Stats};

const T: &str = "2026-05-01T11:58:00.000Z";

/// Sources where a scanned read and a whole parse could disagree, each sent to `logs-auth`.
fn edge_cases() -> Vec<Vec<u8>> {
    let auth = format!(
        r#""@timestamp":"{T}","event":{{"category":["authentication"],"outcome":"failure","action":"user_login"}},"source":{{"ip":"192.0.2.7"}}"#
    );
    let mut cases: Vec<Vec<u8>> = [
        // Vendor events normalisation maps (then scored as authentication events).
        format!(r#"{{"uuid":"e1","published":"{T}","eventType":"user.session.start","actor":{{"id":"00u1","alternateId":"alice@corp.example"}},"client":{{"ipAddress":"203.0.113.5","geographicalContext":{{"country":"France","geolocation":{{"lat":48.85,"lon":2.35}}}}}},"outcome":{{"result":"FAILURE"}},"securityContext":{{"asNumber":9009}}}}"#),
        format!(r#"{{"time":"{T}","category":"SignInLogs","properties":{{"userPrincipalName":"bob@corp.example","ipAddress":"198.51.100.4","createdDateTime":"{T}","status":{{"errorCode":50126}}}}}}"#),
        format!(r#"{{"userPrincipalName":"c@corp.example","createdDateTime":"{T}","status":{{"errorCode":0}}}}"#),
        format!(r#"{{"@timestamp":"{T}","winlog":{{"event_id":4625,"event_data":{{"TargetUserName":"alice","IpAddress":"192.0.2.7","LogonType":"3"}}}}}}"#),
        format!(r#"{{"@timestamp":"{T}","process":{{"name":"sshd"}},"message":"Failed password for root from 192.0.2.9 port 2222 ssh2"}}"#),
        format!(r#"{{"@timestamp":"{T}","program":"sshd","message":"Accepted publickey for deploy from 192.0.2.10 port 50000 ssh2"}}"#),
        // Recognised, but missing essentials: left as sent.
        format!(r#"{{"eventType":"user.session.start","actor":{{"id":1}},"published":"{T}","event":{{"category":"authentication"}}}}"#),
        r#"{"eventType":null,"actor":null,"event":{"category":"authentication"},"user":{"name":"n"}}"#.to_string(),
        // Recognition reads every element of an array, lookup only the first: the scanner gives up.
        format!(r#"{{"@timestamp":"{T}","winlog":[{{"provider_name":"x"}},{{"event_id":4625,"event_data":{{"TargetUserName":"bob","IpAddress":"192.0.2.8"}}}}]}}"#),
        format!(r#"{{"category":["x","SignInLogs"],{auth},"user":{{"name":"arr"}}}}"#),
        format!(r#"{{"event":[{{"category":"authentication"}},{{"category":"other"}}],"user":{{"name":"first"}},"@timestamp":"{T}"}}"#),
        // A result key the document already has: merged into the parsed document.
        format!(r#"{{{auth},"user":{{"name":"has-ml"}},"ml":{{"other":1}}}}"#),
        format!(r#"{{{auth},"user":{{"name":"dotted-ml"}},"ml.inference.other":1}}"#),
        // Dotted, mixed and escaped keys.
        format!(r#"{{"@timestamp":"{T}","event.category":"authentication","event.outcome":"success","user.name":"dot","source":{{"geo.country_iso_code":"FR","as.number":9009}}}}"#),
        format!(r#"{{"@timestamp":"{T}","ev\u0065nt":{{"category":"authentication"}},"user":{{"n\u0061me":"esc\u00e9"}}}}"#),
        // Duplicates: the parsed map keeps the last value; the scanner gives up.
        format!(r#"{{{auth},"user":{{"name":"a"}},"user":{{"name":"b"}}}}"#),
        format!(r#"{{{auth},"user.name":"flat","user":{{"name":"nested"}}}}"#),
        // Wrong types (a feature error: fail-open forwards the marker), nulls, empty objects.
        format!(r#"{{{auth},"user":{{"name":["x","y"]}},"source":{{"as":{{"number":"not a number"}},"geo":{{"location":"95,0"}}}}}}"#),
        format!(r#"{{{auth},"user":null,"user_agent":{{"original":null}}}}"#),
        r#"{"url":{"original":12345}}"#.to_string(),
        r#"{"url":{"full":"http://example.test/login?x=1"}}"#.to_string(),
        "{}".to_string(),
        "{ }".to_string(),
        r#"{"event":{"category":"authentication"}}"#.to_string(),
        // Not objects, not JSON: failed items in place.
        "[1,2]".to_string(),
        r#"{"event":{"category":"authentication"},"x":tru}"#.to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    let mut invalid = br#"{"event":{"category":"authentication"},"user":{"name":""#.to_vec();
    invalid.extend_from_slice(b"\xff\xfe\"}}");
    cases.push(invalid);
    cases
}

/// The shipped samples (authentication events with behavioural state, URLs), interleaved with
/// the edge cases, a delete and an update.
fn body() -> Bytes {
    let (auth, urls, edges) = (
        sample_lines("auth-events.ndjson"),
        sample_lines("urls.ndjson"),
        edge_cases(),
    );
    let mut out: Vec<u8> = Vec::new();
    for (i, event) in auth.iter().enumerate() {
        out.extend_from_slice(b"{\"index\":{\"_index\":\"logs-auth\"}}\n");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
        if i % 3 == 0 {
            out.extend_from_slice(b"{\"create\":{\"_index\":\"logs-url\"}}\n");
            out.extend_from_slice(urls[i % urls.len()].as_bytes());
            out.push(b'\n');
        }
        if i % 7 == 0 {
            out.extend_from_slice(b"{\"index\":{\"_index\":\"logs-auth\"}}\n");
            out.extend_from_slice(&edges[(i / 7) % edges.len()]);
            out.push(b'\n');
        }
        if i == 200 {
            out.extend_from_slice(b"{\"delete\":{\"_index\":\"logs-auth\",\"_id\":\"1\"}}\n");
            out.extend_from_slice(
                b"{\"update\":{\"_index\":\"logs-auth\",\"_id\":\"1\"}}\n{\"doc\":{\"a\":1}}\n",
            );
        }
    }
    Bytes::from(out)
}

struct Run {
    forwarded: Vec<u8>,
    slots: String,
    stats: Stats,
    scanned: usize,
}

/// The bulk through a fresh registry (empty behavioural state) on one thread, its sources
/// scanned or parsed whole.
fn run(body: &Bytes, scan: bool) -> Run {
    let (config, registry) = common::shipped_defaults();
    let mut scoring = Scoring::configured(&registry, &config);
    assert!(
        scoring.scanner.is_some(),
        "the default routes and models can be scanned"
    );
    if !scan {
        scoring.scanner = None;
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    pool.install(|| {
        let entries = scoring.parse(body, None).expect("bulk frames");
        let scanned = entries
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Entry::Item(Item {
                        source: Some(Parsed::Scanned(_)),
                        ..
                    })
                )
            })
            .count();
        let out = scoring.rewrite(entries);
        Run {
            forwarded: out.chunks.concat(),
            slots: format!("{:?}", out.slots),
            stats: out.stats,
            scanned,
        }
    })
}

#[test]
fn scanned_sources_forward_exactly_what_sources_parsed_whole_forward() {
    let body = body();
    let (whole, scanned) = (run(&body, false), run(&body, true));
    assert_eq!(whole.scanned, 0);
    let auth = sample_lines("auth-events.ndjson").len();
    assert!(
        scanned.scanned >= auth,
        "the samples are scanned, not parsed: {} of at least {auth}",
        scanned.scanned
    );
    assert!(
        scanned.scanned < scanned.stats.items - 2,
        "some edge cases are parsed whole ({} scanned of {} items)",
        scanned.scanned,
        scanned.stats.items
    );
    let (a, b) = (
        String::from_utf8_lossy(&whole.forwarded),
        String::from_utf8_lossy(&scanned.forwarded),
    );
    for (n, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        assert_eq!(x, y, "forwarded line {} differs", n + 1);
    }
    assert_eq!(whole.forwarded, scanned.forwarded);
    assert_eq!(whole.slots, scanned.slots);
    assert_eq!(whole.stats, scanned.stats);
    // The bulk reaches every kind of outcome.
    let s = whole.stats;
    assert!(
        s.scored > auth && s.scoring_failed > 0 && s.forwarded < s.items,
        "{s:?}"
    );
    for normalised in ["alice@corp.example", "bob@corp.example", "\"deploy\""] {
        assert!(a.contains(normalised), "{normalised} is normalised");
    }
    assert!(a.contains("\"vigil\":{\"error\""), "a marker is forwarded");
}
