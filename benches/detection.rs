//! How long after holdfast-sim completes an election does holdfast's
//! topology snapshot name the new primary? Steps the primary down 20 times
//! (and kills it 5 times) and prints p50/p99/max of the delay between the
//! sim's `election_completed_at` and the snapshot's `at`.
//!
//! Run: cargo bench -p holdfast-topology --bench detection

use std::time::Duration;

use holdfast_sim::{ReplicaSet, SimConfig};
use holdfast_topology::{Topology, TopologyConfig};

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rs = ReplicaSet::start(SimConfig {
        election_ms: 300,
        ..Default::default()
    })
    .await
    .unwrap();
    rs.wait_for_primary(Duration::from_secs(10)).await.unwrap();
    let topo = Topology::start(TopologyConfig::new(rs.uri()))
        .await
        .unwrap();
    topo.wait_for_primary(Duration::from_secs(10))
        .await
        .unwrap();
    let addrs: Vec<String> = rs.addrs().iter().map(|a| a.to_string()).collect();
    let mut sim_rx = rs.subscribe();
    let mut topo_rx = topo.subscribe();
    for (kind, rounds) in [("stepdown", 20), ("kill", 5)] {
        let mut delays = Vec::new();
        for _ in 0..rounds {
            let old = rs.wait_for_primary(Duration::from_secs(10)).await.unwrap();
            let term = sim_rx.borrow_and_update().term;
            if kind == "stepdown" {
                rs.step_down(1, true).await.unwrap();
            } else {
                rs.kill(old).await;
            }
            let st = sim_rx
                .wait_for(|s| {
                    s.term > term && s.primary.is_some() && s.election_completed_at.is_some()
                })
                .await
                .unwrap()
                .clone();
            let new = addrs[st.primary.unwrap()].clone();
            let done = st.election_completed_at.unwrap();
            let snap = tokio::time::timeout(
                Duration::from_secs(10),
                topo_rx.wait_for(|s| s.primary.as_deref() == Some(new.as_str())),
            )
            .await
            .expect("holdfast follows the election")
            .unwrap()
            .clone();
            let d = if snap.at > done {
                snap.at - done
            } else {
                Duration::ZERO
            };
            delays.push(d.as_secs_f64() * 1000.0);
            if kind == "kill" {
                rs.revive(old).await;
            }
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
        let n = delays.len();
        let max = delays.iter().cloned().fold(0.0, f64::max);
        println!(
            "detection after {kind} ({n} elections): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            pct(&mut delays, 0.5),
            pct(&mut delays, 0.99),
            max
        );
    }
    rs.shutdown();
}
