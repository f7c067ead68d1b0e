//! The bulk parser never panics, and accounts for every action it finds: each entry is either a
//! forwardable item or a failure, and items keep their lines byte for byte. Read with a scanner
//! (as `_bulk` reads sources), it finds the same items and failures, and every scanned source
//! answers each scanned path as the same source parsed whole does.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vigil::bulk::{parse, parse_with, Entry, Parsed};
use vigil::features::{Fields, Scanner, View};

const PATHS: [&str; 6] = ["a", "b.c", "event.category", "winlog.event_id", "user.name", "ml"];

fn scanner() -> &'static Scanner {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    SCANNER.get_or_init(|| Scanner::new(PATHS).expect("no path is a prefix of another").strict())
}

fuzz_target!(|data: &[u8]| {
    let body = bytes::Bytes::copy_from_slice(data);
    let whole = parse(&body, Some("default-index"));
    let scanned = parse_with(&body, Some("default-index"), Some(scanner()));
    let (whole, scanned) = match (whole, scanned) {
        (Ok(w), Ok(s)) => (w, s),
        (Err(a), Err(b)) => {
            assert_eq!(a, b);
            return;
        }
        (a, b) => panic!("whole {a:?} and scanned {b:?} reads disagree"),
    };
    assert_eq!(whole.len(), scanned.len());
    for (w, s) in whole.into_iter().zip(scanned) {
        match (w, s) {
            (Entry::Item(item), Entry::Item(other)) => {
                assert!(!item.index.is_empty());
                assert!(data
                    .windows(item.action_line.len().max(1))
                    .any(|w| w == &item.action_line[..]) || item.action_line.is_empty());
                assert_eq!(item.action_line, other.action_line);
                assert_eq!(item.source_line, other.source_line);
                if let (Some(Parsed::Whole(v)), Some(Parsed::Scanned(sc))) = (&item.source, &other.source) {
                    let view = View { scanner: scanner(), scanned: sc };
                    for p in PATHS {
                        assert_eq!(view.whole(p), v.whole(p), "{p}");
                        assert_eq!(view.first(p), v.first(p), "{p}");
                        assert_eq!(view.leaf(p), v.leaf(p), "{p}");
                    }
                    assert_eq!(view.has_key("ml"), v.has_key("ml"));
                    assert_eq!(sc.empty, v.as_object().is_some_and(|m| m.is_empty()));
                }
            }
            (Entry::Failed(a), Entry::Failed(b)) => assert_eq!(a, b),
            (a, b) => panic!("whole {a:?} and scanned {b:?} reads disagree"),
        }
    }
});
