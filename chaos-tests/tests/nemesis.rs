//! Random faults from the whole vocabulary (partitions of any split, the
//! leader on the minority side, a bridge master, message loss, latency and
//! jitter, crashes of up to a minority and restarts from disk, bounces,
//! membership changes during a partition) while clients read, write and
//! compare-and-swap registers, write distinct keys and watch; then heal, a
//! quiet period, and every invariant of `chaos_tests::scenario` checked.

use chaos_tests::run_seeded;
use chaos_tests::scenario::{run, Config};

#[test]
fn three_masters_keep_every_invariant_under_random_faults() {
    let cfg = Config::new("nemesis", 3, env!("CARGO_TARGET_TMPDIR"));
    run_seeded("nemesis", &[1, 2, 3, 4, 5, 6, 7, 8], |seed| run(seed, &cfg));
}

#[test]
fn five_masters_keep_every_invariant_under_random_faults() {
    let cfg = Config::new("nemesis", 5, env!("CARGO_TARGET_TMPDIR"));
    run_seeded("nemesis", &[101, 102, 103, 104], |seed| run(seed, &cfg));
}
