//! The metrics recorder must not keep every histogram sample until the next
//! scrape: holdfast records one per request, so without upkeep its memory
//! grows with traffic (for ever when nobody scrapes). Own test binary: it
//! measures this process's resident memory.

use std::time::Duration;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn histogram_samples_are_folded_away_without_scrapes() {
    holdfast_proxy::admin::prometheus().expect("recorder installed");
    let h = metrics::histogram!("holdfast_request_duration_seconds", "class" => "read");
    let round = || {
        for i in 0..2_000_000u32 {
            h.record(f64::from(i % 1000) * 1e-6);
        }
        // Upkeep runs on its own; give it time to fold the samples.
        std::thread::sleep(holdfast_proxy::admin::UPKEEP_INTERVAL * 2 + Duration::from_millis(200));
    };
    round();
    let after_first = rss_bytes();
    round();
    round();
    let after_third = rss_bytes();
    // Kept samples cost ≥ 8 bytes each: 4 M more would be ≥ 32 MB. Folded
    // ones free their blocks, which the next round reuses.
    let growth = after_third.saturating_sub(after_first);
    assert!(
        growth < 8 << 20,
        "resident memory grew by {growth} bytes over 4 M samples: histogram samples are being kept"
    );
}
