//! Replays the committed seed corpora (`fuzz/corpus/TARGET/seed-*`) through
//! the fuzz targets' entry points on the stable toolchain, as part of the
//! ordinary tests: the fuzzing smoke run CI can afford (fuzz/README.md).

use std::path::PathBuf;

fn replay(target: &str, entry: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable corpus directory").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"))
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 3, "{target}: only {} seeds", seeds.len());
    for seed in seeds {
        let data = std::fs::read(&seed).expect("a readable seed");
        // The entry point panics, naming the property, when one fails.
        eprintln!("{target}: {}", seed.display());
        entry(&data);
    }
}

#[test]
fn config_parser_seeds() {
    replay("config_parser", super::config_parser);
}

#[test]
fn path_normalizer_seeds() {
    replay("path_normalizer", super::path_normalizer);
}

#[test]
fn route_matcher_seeds() {
    replay("route_matcher", super::route_matcher);
}

#[test]
fn http1_head_seeds() {
    replay("http1_head", super::http1_head);
}

#[test]
fn http1_response_seeds() {
    replay("http1_response", super::http1_response);
}
