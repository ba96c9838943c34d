//! Measures the time from SIGKILL of a tracked target to its restart
//! script starting, 20 times, and prints the median. Run with
//! `cargo test --release --test latency -- --ignored --nocapture`.
//! Not a pass/fail timing assertion: machines here are shared and noisy.

mod common;

use common::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[test]
#[ignore]
fn sigkill_to_restart_script_start() {
    let env = Env::new();
    let tok = token();
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        env.target_section(
            "lat",
            &tok,
            "retry.max = 100\nretry.window = \"1s\"\nretry.backoff = { initial = \"0s\", max = \"1s\" }",
        )
    ));
    let first = Proc::sleeper(&tok);
    let _d = env.start();
    let mut samples = Vec::new();
    let mut pid = env.wait_event(T, |e| e["id"] == "PW2001")["pid"]
        .as_u64()
        .unwrap() as u32;
    for n in 1..=20 {
        let t0 = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        kill(pid, libc::SIGKILL);
        let rec = env.wait_nth("PW2015", "lat", n, T);
        let attempt = rec["fields"]["attempt"].as_u64().unwrap();
        let start: u128 = std::fs::read_to_string(env.path(&format!("lat.env.start.{attempt}")))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        samples.push((start - t0) as f64 / 1e6);
        pid = rec["pid"].as_u64().unwrap() as u32;
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(first);
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = (samples[9] + samples[10]) / 2.0;
    println!(
        "SIGKILL -> restart script start, 20 samples: median {median:.2} ms, min {:.2} ms, max {:.2} ms",
        samples[0], samples[19]
    );
    assert_eq!(samples.len(), 20);
}
