//! The bulk parser never panics, and accounts for every action it finds: each entry is either a
//! forwardable item or a failure, and items keep their lines byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::bulk::{parse, Entry};

fuzz_target!(|data: &[u8]| {
    let body = bytes::Bytes::copy_from_slice(data);
    if let Ok(entries) = parse(&body, Some("default-index")) {
        for e in entries {
            if let Entry::Item(item) = e {
                assert!(!item.index.is_empty());
                assert!(data
                    .windows(item.action_line.len().max(1))
                    .any(|w| w == &item.action_line[..]) || item.action_line.is_empty());
            }
        }
    }
});
