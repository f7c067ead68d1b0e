//! A bulk's scoring is split into jobs over the scoring pool's threads (`rewrite.rs`). Spread
//! over several threads, with a different job size, it must forward exactly the body one thread
//! forwards: every document's results (scores, explanations, behavioural features, which depend
//! on the events before it) in its own place, failed items where they were. And a scored
//! document is forwarded as the caller wrote it, with its results appended.

mod common;

use bytes::Bytes;
use common::sample_lines;
use serde_json::{json, Value};
use vigil::rewrite::{Scoring, Stats};

/// Authentication events (login-risk, with behavioural state) and URLs (url-phishing)
/// interleaved, with a malformed source, a delete and an update among them.
fn body() -> Bytes {
    let (auth, urls) = (
        sample_lines("auth-events.ndjson"),
        sample_lines("urls.ndjson"),
    );
    let mut out = String::new();
    for (i, event) in auth.iter().enumerate() {
        out.push_str("{\"index\":{\"_index\":\"logs-auth\"}}\n");
        out.push_str(event);
        out.push('\n');
        if i % 3 == 0 {
            out.push_str("{\"create\":{\"_index\":\"logs-url\"}}\n");
            out.push_str(&urls[i % urls.len()]);
            out.push('\n');
        }
        match i {
            100 => out.push_str("{\"index\":{\"_index\":\"logs-auth\"}}\n{\"not\": json\n"),
            200 => out.push_str("{\"delete\":{\"_index\":\"logs-auth\",\"_id\":\"1\"}}\n"),
            300 => out.push_str(
                "{\"update\":{\"_index\":\"logs-auth\",\"_id\":\"1\"}}\n{\"doc\":{\"a\":1}}\n",
            ),
            _ => {}
        }
    }
    Bytes::from(out)
}

/// The forwarded body, the answer slots and the counts, rewritten on a pool of `threads`, with a
/// fresh registry (so the behavioural state starts empty).
fn rewrite_on(threads: usize, body: &Bytes) -> (Vec<u8>, String, Stats) {
    let (config, registry) = common::shipped_defaults();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let out = pool.install(|| {
        Scoring::configured(&registry, &config)
            .rewrite(vigil::bulk::parse(body, None).expect("bulk frames"))
    });
    (out.chunks.concat(), format!("{:?}", out.slots), out.stats)
}

#[test]
fn several_threads_forward_exactly_what_one_thread_forwards() {
    let body = body();
    let (one, one_slots, one_stats) = rewrite_on(1, &body);
    let (four, four_slots, four_stats) = rewrite_on(4, &body);
    // The bulk is large enough to be split into several jobs per model either way.
    assert!(one_stats.scored > 1_500, "{one_stats:?}");
    assert_eq!(one_stats.items, one_stats.forwarded + 1, "{one_stats:?}");
    assert_eq!(one_stats, four_stats);
    assert_eq!(one_slots, four_slots);
    assert!(
        one == four,
        "the bodies differ from byte {}",
        one.iter().zip(&four).take_while(|(a, b)| a == b).count()
    );
    // And the results are the models' own: both routes scored, behaviour included.
    let text = String::from_utf8(one).expect("UTF-8");
    assert!(text.contains("\"ml\":{\"inference\":{\"login-risk\""));
    assert!(text.contains("\"ml\":{\"inference\":{\"url-phishing\""));
    let behavioural = [
        "hours_since_last_success",
        "events_1h",
        "failures_1h",
        "successes_from_ip_for_user_30d",
        "country_successes_for_user_30d",
    ];
    assert!(
        behavioural
            .iter()
            .any(|f| text.contains(&format!("\"feature_name\":\"{f}\""))),
        "behavioural features are among the explained ones"
    );
}

/// A scored document's line is forwarded as the caller wrote it (spacing, escapes), with the
/// results appended as a new key; a document that already has an `ml` object gets them merged
/// into it instead, and one whose `ml` is not an object is forwarded with the error marker.
#[test]
fn scored_lines_keep_the_callers_bytes_and_existing_keys_are_merged() {
    let event = sample_lines("auth-events.ndjson").remove(0);
    let parsed: Value = serde_json::from_str(&event).unwrap();
    // The same event as other clients write JSON: spaced out, a key escaped.
    let spaced = serde_json::to_string_pretty(&parsed)
        .unwrap()
        .replace('\n', " ");
    let escaped = event.replacen("\"@timestamp\"", "\"\\u0040timestamp\"", 1);
    assert_ne!(escaped, event);
    let mut with_ml = parsed.clone();
    with_ml["ml"] = json!({"other": 1});
    let mut bad_ml = parsed.clone();
    bad_ml["ml"] = json!("text");
    let action = "{\"index\":{\"_index\":\"logs-auth\"}}";
    let body = format!(
        "{action}\n{spaced}  \n{action}\n{escaped}\n{action}\n{with_ml}\n{action}\n{bad_ml}\n"
    );
    let (out, _, stats) = rewrite_on(1, &Bytes::from(body));
    assert_eq!((stats.scored, stats.scoring_failed), (3, 1), "{stats:?}");
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 8, "{out}");
    for (sent, got) in [(spaced.as_str(), lines[1]), (escaped.as_str(), lines[3])] {
        let kept = &sent[..sent.len() - 1];
        assert!(got.starts_with(kept), "the caller's bytes, as sent: {got}");
        assert!(
            got[kept.len()..].starts_with(",\"ml\":{\"inference\":{\"login-risk\":{"),
            "{got}"
        );
        let mut v: Value = serde_json::from_str(got).unwrap();
        let ml = v.as_object_mut().unwrap().remove("ml").unwrap();
        assert_eq!(v, parsed, "nothing but the results added");
        assert!(ml["inference"]["login-risk"]["score"].is_f64(), "{ml}");
    }
    let merged: Value = serde_json::from_str(lines[5]).unwrap();
    assert_eq!(merged["ml"]["other"], 1, "{merged}");
    assert!(merged["ml"]["inference"]["login-risk"]["score"].is_f64());
    let marked: Value = serde_json::from_str(lines[7]).unwrap();
    assert_eq!(
        marked["ml"], "text",
        "the caller's value is never overwritten"
    );
    assert_eq!(
        marked["vigil"]["error"]["type"],
        "document_parsing_exception"
    );
}
