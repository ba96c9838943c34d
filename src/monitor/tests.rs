//! Unit tests of the pure core with a fake clock (plain milliseconds).

use super::*;
use crate::config::{Failover, Matcher, Restart, Retry};
use std::time::Duration;

const S: Ms = 1000;
const H: Ms = 3600 * S;
const T0: Ms = 1_800_000_000_000;

/// A target found by `comm = "x"`, restarted by /bin/true.
pub(crate) fn spec(name: &str) -> TargetSpec {
    TargetSpec {
        name: name.into(),
        matcher: Matcher {
            exe: None,
            comm: Some("x".into()),
            cmdline: None,
            pidfile: None,
            uid: None,
        },
        count: None,
        children_min: None,
        success_exit: Vec::new(),
        restart: Restart {
            script: Some("/bin/true".into()),
            args: Vec::new(),
            timeout: Duration::from_secs(60),
            settle: Duration::from_secs(10),
            user: None,
        },
        retry: Retry {
            max: 3,
            window: Duration::from_secs(86_400),
            backoff_initial: Duration::ZERO,
            backoff_max: Duration::from_secs(300),
        },
        on_retry_over: OnRetryOver::Unmonitor,
        failover: None,
        stall: None,
        health: None,
        match_raw: Default::default(),
    }
}

fn mon(s: TargetSpec) -> Monitor {
    Monitor::new(vec![s], &BTreeMap::new(), 42)
}

fn p(pid: u32) -> ProcRef {
    ProcRef {
        pid,
        start: pid as u64 * 10,
    }
}

fn ids(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit(e) => Some(e.id),
            _ => None,
        })
        .collect()
}

fn found(m: &mut Monitor, pids: &[u32], now: Ms) -> Vec<Action> {
    m.handle(
        Input::Found {
            target: "a".into(),
            procs: pids.iter().map(|&x| p(x)).collect(),
        },
        now,
    )
}

fn killed(m: &mut Monitor, pid: u32, now: Ms) -> Vec<Action> {
    m.handle(
        Input::Exited {
            target: "a".into(),
            proc: p(pid),
            kind: ExitKind::Disappeared,
            status: None,
        },
        now,
    )
}

fn script(m: &mut Monitor, attempt: u32, code: i32, now: Ms) -> Vec<Action> {
    m.handle(
        Input::ScriptDone {
            target: "a".into(),
            attempt,
            outcome: ScriptOutcome::Exited {
                code,
                output: String::new(),
            },
        },
        now,
    )
}

fn arm(actions: &[Action]) -> (u64, Ms) {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Arm { token, at, .. } => Some((*token, *at)),
            _ => None,
        })
        .expect("an Arm action")
}

fn timer(m: &mut Monitor, token: u64, now: Ms) -> Vec<Action> {
    m.handle(
        Input::Timer {
            target: "a".into(),
            token,
        },
        now,
    )
}

fn phase(m: &Monitor) -> Phase {
    m.target("a").unwrap().phase.clone()
}

fn state(m: &Monitor) -> State {
    m.target("a").unwrap().phase.state()
}

/// Found, killed, restarted by a script that succeeds, found again.
fn crash_and_recover(m: &mut Monitor, pid: u32, now: Ms) -> u32 {
    let a = killed(m, pid, now);
    let attempt = a
        .iter()
        .find_map(|a| match a {
            Action::RunScript { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .expect("restart started");
    script(m, attempt, 0, now + 10);
    found(m, &[pid + 1], now + 20);
    assert_eq!(state(m), State::Up);
    attempt
}

#[test]
fn found_target_is_tracked() {
    let mut m = mon(spec("a"));
    let a = found(&mut m, &[100], T0);
    assert_eq!(ids(&a), vec![msg::TARGET_FOUND]);
    assert!(a.contains(&Action::Track {
        target: "a".into(),
        proc: p(100)
    }));
    assert_eq!(state(&m), State::Up);
    assert_eq!(
        m.scan_targets().count(),
        0,
        "a tracked single target needs no scan"
    );
}

#[test]
fn waiting_is_said_once() {
    let mut m = mon(spec("a"));
    assert_eq!(ids(&found(&mut m, &[], T0)), vec![msg::TARGET_WAITING]);
    assert!(ids(&found(&mut m, &[], T0 + S)).is_empty());
    assert_eq!(state(&m), State::Waiting);
}

#[test]
fn disappearance_restarts_at_once_and_recovers() {
    let mut m = mon(spec("a"));
    found(&mut m, &[100], T0);
    let a = killed(&mut m, 100, T0 + S);
    assert_eq!(
        ids(&a),
        vec![msg::PROCESS_DISAPPEARED, msg::RESTART_STARTED]
    );
    assert!(a.contains(&Action::RunScript {
        target: "a".into(),
        attempt: 1,
        reason: Reason::Disappeared,
        pid: Some(100),
        exit: None,
    }));
    let a = script(&mut m, 1, 0, T0 + 2 * S);
    assert_eq!(ids(&a), vec![msg::RESTART_SCRIPT_DONE]);
    let (_, at) = arm(&a);
    assert_eq!(at, T0 + 12 * S, "settle deadline");
    assert!(matches!(phase(&m), Phase::Settling { attempt: 1, .. }));
    let a = found(&mut m, &[200], T0 + 3 * S);
    assert_eq!(ids(&a), vec![msg::TARGET_RECOVERED]);
    assert_eq!(m.status(T0 + 3 * S)[0].restarts_in_window, 1);
}

#[test]
fn zombie_is_reported_as_zombie() {
    let mut m = mon(spec("a"));
    found(&mut m, &[100], T0);
    let a = m.handle(
        Input::Exited {
            target: "a".into(),
            proc: p(100),
            kind: ExitKind::Zombie { ppid: 7 },
            status: None,
        },
        T0 + S,
    );
    assert_eq!(ids(&a), vec![msg::PROCESS_ZOMBIE, msg::RESTART_STARTED]);
    assert!(a.iter().any(|x| matches!(
        x,
        Action::RunScript {
            reason: Reason::Zombie,
            ..
        }
    )));
}

#[test]
fn stale_exit_of_a_reused_pid_is_ignored() {
    let mut m = mon(spec("a"));
    found(&mut m, &[100], T0);
    let other = ProcRef {
        pid: 100,
        start: 999,
    };
    let a = m.handle(
        Input::Exited {
            target: "a".into(),
            proc: other,
            kind: ExitKind::Disappeared,
            status: None,
        },
        T0 + S,
    );
    assert!(a.is_empty());
    assert_eq!(state(&m), State::Up);
}

#[test]
fn settle_timeout_counts_as_failure_and_retries() {
    let mut m = mon(spec("a"));
    found(&mut m, &[100], T0);
    killed(&mut m, 100, T0);
    let a = script(&mut m, 1, 0, T0 + S);
    let (tok, at) = arm(&a);
    // Before the next attempt the target is looked for once more.
    let a = timer(&mut m, tok, at);
    assert_eq!(ids(&a), vec![msg::RESTART_NOT_SETTLED]);
    assert!(a.contains(&Action::ScanSoon));
    let a = found(&mut m, &[], at + 5);
    assert_eq!(ids(&a), vec![msg::RESTART_STARTED]);
    assert!(matches!(phase(&m), Phase::Restarting { attempt: 2, .. }));
}

#[test]
fn failing_script_retries_then_retry_over_unmonitors() {
    let mut m = mon(spec("a"));
    found(&mut m, &[100], T0);
    killed(&mut m, 100, T0);
    let a = script(&mut m, 1, 3, T0 + S);
    assert_eq!(ids(&a), vec![msg::RESTART_SCRIPT_FAILED]);
    let Action::Emit(ev) = &a[0] else { panic!() };
    assert_eq!(ev.fields["status"], "exit code 3");
    // No backoff (initial 0s): the target is looked for once more, then
    // the next attempt runs at once.
    assert!(a.contains(&Action::ScanSoon));
    assert_eq!(state(&m), State::Backoff);
    assert_eq!(ids(&found(&mut m, &[], T0 + S)), vec![msg::RESTART_STARTED]);
    script(&mut m, 2, 1, T0 + 2 * S);
    found(&mut m, &[], T0 + 2 * S);
    let a = script(&mut m, 3, 1, T0 + 3 * S);
    assert_eq!(ids(&a), vec![msg::RESTART_SCRIPT_FAILED, msg::RETRY_OVER]);
    assert_eq!(state(&m), State::RetryOver);
    assert!(a.contains(&Action::Persist));
    assert_eq!(m.scan_targets().count(), 0, "retry-over is not monitored");
}

#[test]
fn script_result_for_an_old_attempt_is_ignored() {
    let mut m = mon(spec("a"));
    found(&mut m, &[100], T0);
    killed(&mut m, 100, T0);
    assert!(script(&mut m, 7, 0, T0 + S).is_empty());
    assert!(matches!(phase(&m), Phase::Restarting { attempt: 1, .. }));
}

#[test]
fn sliding_window_forgets_old_attempts() {
    let mut m = mon(spec("a"));
    found(&mut m, &[100], T0);
    // Three crashes, each recovered, one hour apart.
    crash_and_recover(&mut m, 100, T0);
    crash_and_recover(&mut m, 101, T0 + H);
    crash_and_recover(&mut m, 102, T0 + 2 * H);
    // A fourth crash inside the window: retry-over.
    let mut m2 = Monitor::new(vec![spec("a")], &m.snapshot(), 1);
    found(&mut m2, &[103], T0 + 3 * H);
    let a = killed(&mut m2, 103, T0 + 3 * H);
    assert_eq!(ids(&a), vec![msg::PROCESS_DISAPPEARED, msg::RETRY_OVER]);
    // The same crash just after the first attempt left the window: restart.
    let a = killed(&mut m, 103, T0 + 24 * H);
    assert_eq!(
        ids(&a),
        vec![msg::PROCESS_DISAPPEARED, msg::RESTART_STARTED]
    );
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::RunScript { attempt: 3, .. })),
        "{a:?}"
    );
}

#[test]
fn backoff_grows_exponentially_with_cap_and_jitter() {
    let mut s = spec("a");
    s.retry.max = 10;
    s.retry.backoff_initial = Duration::from_secs(1);
    s.retry.backoff_max = Duration::from_secs(5);
    let mut m = mon(s);
    found(&mut m, &[100], T0);
    // The first restart is immediate; the ones after it back off.
    let a = killed(&mut m, 100, T0);
    assert_eq!(ids(&a).last(), Some(&msg::RESTART_STARTED));
    let mut now = T0 + 1;
    let mut a = script(&mut m, 1, 1, now);
    let expected = [1000u64, 2000, 4000, 5000, 5000];
    for (n, full) in expected.iter().enumerate() {
        assert_eq!(
            ids(&a).last(),
            Some(&msg::RESTART_DELAYED),
            "round {n}: {a:?}"
        );
        let (tok, at) = arm(&a);
        let delay = at - now;
        assert!(
            delay <= *full && delay >= full * 8 / 10,
            "round {n}: delay {delay} vs {full}"
        );
        now = at;
        let b = timer(&mut m, tok, now);
        assert!(ids(&b).is_empty() && b.contains(&Action::ScanSoon), "{b:?}");
        let b = found(&mut m, &[], now);
        assert_eq!(ids(&b), vec![msg::RESTART_STARTED]);
        now += 1;
        a = script(&mut m, n as u32 + 2, 1, now);
    }
}

#[test]
fn target_back_during_backoff_cancels_the_restart() {
    let mut s = spec("a");
    s.retry.backoff_initial = Duration::from_secs(5);
    let mut m = mon(s);
    found(&mut m, &[100], T0);
    crash_and_recover(&mut m, 100, T0);
    // A second end backs off; the target comes back by itself meanwhile.
    let a = killed(&mut m, 101, T0 + S);
    let (tok, at) = arm(&a);
    assert_eq!(
        ids(&found(&mut m, &[150], T0 + 2 * S)),
        vec![msg::TARGET_BACK]
    );
    assert!(timer(&mut m, tok, at).is_empty(), "stale timer");
    assert_eq!(state(&m), State::Up);
    assert_eq!(
        m.status(T0 + 3 * S)[0].restarts_in_window,
        1,
        "no second restart ran"
    );
}

/// A script that started the target but failed (exit 1): the target is
/// found before the next attempt, which never runs; it is reported as
/// recovered by that attempt.
#[test]
fn a_failed_script_whose_target_is_up_is_not_run_again() {
    let mut s = spec("a");
    s.retry.backoff_initial = Duration::from_secs(5);
    let mut m = mon(s);
    found(&mut m, &[100], T0);
    killed(&mut m, 100, T0);
    let a = script(&mut m, 1, 1, T0 + 1);
    let (tok, at) = arm(&a);
    // The backoff ends: look first; the scan finds what the script started.
    let a = timer(&mut m, tok, at);
    assert!(ids(&a).is_empty() && a.contains(&Action::ScanSoon), "{a:?}");
    let a = found(&mut m, &[150], at + 1);
    assert_eq!(ids(&a), vec![msg::TARGET_RECOVERED]);
    let Action::Emit(ev) = &a.iter().find(|x| matches!(x, Action::Emit(_))).unwrap() else {
        panic!()
    };
    assert_eq!(
        (ev.pid, &ev.fields["attempt"]),
        (Some(150), &serde_json::json!(1))
    );
    assert!(!a.iter().any(|x| matches!(x, Action::RunScript { .. })));
    assert_eq!(state(&m), State::Up);
    assert_eq!(m.status(at + 2)[0].restarts_in_window, 1);
    // Without a backoff (initial 0s) the same look comes at once.
    let mut m = mon(spec("a"));
    found(&mut m, &[100], T0);
    killed(&mut m, 100, T0);
    let a = script(&mut m, 1, 1, T0 + 1);
    assert!(!a.iter().any(|x| matches!(x, Action::RunScript { .. })));
    assert_eq!(
        ids(&found(&mut m, &[150], T0 + 2)),
        vec![msg::TARGET_RECOVERED]
    );
}

#[test]
fn continue_keeps_trying_at_the_cap_and_says_retry_over_once() {
    let mut s = spec("a");
    s.retry.max = 1;
    s.on_retry_over = OnRetryOver::Continue;
    let mut m = mon(s);
    found(&mut m, &[100], T0);
    killed(&mut m, 100, T0);
    let a = script(&mut m, 1, 1, T0 + S);
    assert_eq!(ids(&a), vec![msg::RESTART_SCRIPT_FAILED, msg::RETRY_OVER]);
    let (tok, at) = arm(&a);
    assert!(at - (T0 + S) >= 240 * S && at - (T0 + S) <= 300 * S);
    timer(&mut m, tok, at);
    let a = found(&mut m, &[], at);
    assert_eq!(ids(&a), vec![msg::RESTART_STARTED]);
    let a = script(&mut m, 2, 1, at + S);
    assert_eq!(
        ids(&a),
        vec![msg::RESTART_SCRIPT_FAILED, msg::RESTART_DELAYED]
    );
}

#[test]
fn failover_marks_failed_and_runs_the_command() {
    let mut s = spec("a");
    s.retry.max = 0;
    s.on_retry_over = OnRetryOver::Failover;
    s.failover = Some(Failover {
        command: vec!["/bin/true".into()],
        timeout: Duration::from_secs(5),
    });
    let mut m = mon(s);
    found(&mut m, &[100], T0);
    let a = killed(&mut m, 100, T0);
    assert_eq!(
        ids(&a),
        vec![
            msg::PROCESS_DISAPPEARED,
            msg::RETRY_OVER,
            msg::RETRY_OVER_COMMAND
        ]
    );
    assert!(a.contains(&Action::RunCommand {
        target: "a".into(),
        attempts: 0
    }));
    assert_eq!(state(&m), State::Failed);
    let a = m.handle(
        Input::CommandDone {
            target: "a".into(),
            outcome: ScriptOutcome::Exited {
                code: 0,
                output: String::new(),
            },
        },
        T0 + S,
    );
    assert_eq!(ids(&a), vec![msg::RETRY_OVER_COMMAND_DONE]);
    assert_eq!(m.snapshot()["a"].halted, Some(Halted::Failed));
}

#[test]
fn pause_resume_reset() {
    let mut m = mon(spec("a"));
    found(&mut m, &[100], T0);
    let a = m.command("a", Command::Pause, "root", T0).unwrap();
    assert_eq!(ids(&a), vec![msg::TARGET_PAUSED]);
    assert!(a.contains(&Action::UntrackAll { target: "a".into() }));
    assert!(m.command("a", Command::Pause, "root", T0).is_err());
    // An exit while paused is not ours any more.
    assert!(killed(&mut m, 100, T0 + S).is_empty());
    assert!(m.snapshot()["a"].paused);
    let a = m.command("a", Command::Resume, "root", T0 + 2 * S).unwrap();
    assert_eq!(ids(&a), vec![msg::TARGET_RESUMED]);
    assert_eq!(state(&m), State::Waiting);
    // Gone meanwhile, and it was up before: recover it.
    let a = found(&mut m, &[], T0 + 3 * S);
    assert_eq!(
        ids(&a),
        vec![msg::PROCESS_DISAPPEARED, msg::RESTART_STARTED]
    );
    assert!(m.command("nope", Command::Reset, "root", T0).is_err());
}

#[test]
fn reset_clears_counter_and_retry_over() {
    let mut s = spec("a");
    s.retry.max = 1;
    let mut m = mon(s);
    found(&mut m, &[100], T0);
    killed(&mut m, 100, T0);
    script(&mut m, 1, 1, T0 + S);
    assert_eq!(state(&m), State::RetryOver);
    let a = m.command("a", Command::Reset, "root", T0 + 2 * S).unwrap();
    assert_eq!(ids(&a), vec![msg::TARGET_RESET]);
    assert_eq!(state(&m), State::Waiting);
    assert_eq!(m.status(T0 + 2 * S)[0].restarts_in_window, 0);
    assert!(m.snapshot()["a"].halted.is_none());
}

#[test]
fn state_survives_a_restart_of_procward() {
    let mut s = spec("a");
    s.retry.max = 2;
    let mut m = mon(s.clone());
    found(&mut m, &[100], T0);
    crash_and_recover(&mut m, 100, T0);
    crash_and_recover(&mut m, 101, T0 + S);
    let saved = m.snapshot();
    assert_eq!(saved["a"].attempts.len(), 2);
    // procward restarts while the target is down: it is recovered, and
    // the old attempts still count (a crash loop cannot reset the window).
    let mut m = Monitor::new(vec![s.clone()], &saved, 7);
    let a = found(&mut m, &[], T0 + 10 * S);
    assert_eq!(ids(&a), vec![msg::PROCESS_DISAPPEARED, msg::RETRY_OVER]);
    // Paused and retry-over states persist too.
    let again = Monitor::new(vec![s], &m.snapshot(), 7);
    assert_eq!(again.target("a").unwrap().phase.state(), State::RetryOver);
}

#[test]
fn group_count_below_min_above_max_and_back() {
    let mut s = spec("a");
    s.count = Some((2, Some(3)));
    let mut m = mon(s);
    assert_eq!(
        ids(&found(&mut m, &[100], T0)),
        vec![msg::TARGET_WAITING],
        "one is not enough"
    );
    let a = found(&mut m, &[100, 101], T0 + S);
    assert_eq!(ids(&a), vec![msg::TARGET_FOUND]);
    assert_eq!(
        a.iter()
            .filter(|x| matches!(x, Action::Track { .. }))
            .count(),
        2
    );
    assert_eq!(
        m.scan_targets().count(),
        1,
        "group targets are scanned for new members"
    );
    assert_eq!(
        ids(&found(&mut m, &[100, 101, 102, 103], T0 + 2 * S)),
        vec![msg::COUNT_ABOVE_MAX]
    );
    assert!(
        ids(&found(&mut m, &[100, 101, 102, 103], T0 + 3 * S)).is_empty(),
        "said once"
    );
    assert_eq!(
        ids(&found(&mut m, &[100, 101, 102], T0 + 4 * S)),
        vec![msg::COUNT_NORMAL]
    );
    // Workers exit: 3 left, then 2, fine (said, no restart). Another:
    // below min.
    assert_eq!(
        ids(&killed(&mut m, 102, T0 + 5 * S)),
        vec![msg::MEMBER_EXITED]
    );
    assert_eq!(
        ids(&killed(&mut m, 103, T0 + 5 * S)),
        vec![msg::MEMBER_EXITED]
    );
    let a = killed(&mut m, 101, T0 + 6 * S);
    assert_eq!(ids(&a), vec![msg::COUNT_BELOW_MIN, msg::RESTART_STARTED]);
    assert!(a.iter().any(|x| matches!(
        x,
        Action::RunScript {
            reason: Reason::Count,
            ..
        }
    )));
}

#[test]
fn lost_children_fail_only_once_armed() {
    let mut s = spec("a");
    s.children_min = Some(2);
    let mut m = mon(s);
    found(&mut m, &[100], T0);
    let checks: Vec<(&str, u32)> = m.children_checks().map(|(t, p)| (t.as_str(), p)).collect();
    assert_eq!(checks, vec![("a", 100)]);
    let ch = |m: &mut Monitor, n, now| {
        m.handle(
            Input::Children {
                target: "a".into(),
                pid: 100,
                count: n,
            },
            now,
        )
    };
    assert!(ch(&mut m, 0, T0).is_empty(), "not armed while it starts up");
    assert!(ch(&mut m, 2, T0 + S).is_empty());
    let a = ch(&mut m, 1, T0 + 2 * S);
    assert_eq!(ids(&a), vec![msg::CHILDREN_LOST, msg::RESTART_STARTED]);
}

#[test]
fn without_a_script_the_target_is_down_until_it_returns() {
    let mut s = spec("a");
    s.restart.script = None;
    let mut m = mon(s);
    found(&mut m, &[100], T0);
    assert_eq!(
        ids(&killed(&mut m, 100, T0)),
        vec![msg::PROCESS_DISAPPEARED]
    );
    assert_eq!(state(&m), State::Down);
    assert_eq!(ids(&found(&mut m, &[120], T0 + S)), vec![msg::TARGET_BACK]);
}

#[test]
fn reload_keeps_state_of_unchanged_targets() {
    let mut m = mon(spec("a"));
    found(&mut m, &[100], T0);
    crash_and_recover(&mut m, 100, T0);
    let a = m.reconfigure(vec![spec("a"), spec("b")], T0);
    assert!(!a.iter().any(|x| matches!(x, Action::UntrackAll { .. })));
    assert_eq!(state(&m), State::Up);
    assert_eq!(m.status(T0 + S)[0].restarts_in_window, 1);
    assert_eq!(m.target("b").unwrap().phase.state(), State::Waiting);
    let a = m.reconfigure(vec![spec("b")], T0);
    assert!(a.contains(&Action::UntrackAll { target: "a".into() }));
    assert!(m.target("a").is_none());
}

/// The messages `every_emitted_event_renders_in_both_languages` must see.
const EXERCISED: &[&str] = &[
    msg::MEMBER_EXITED,
    msg::START_SCRIPT_STARTED,
    msg::START_FAILED,
    msg::START_SCRIPT_DONE,
    msg::STARTED_BY_SCRIPT,
    msg::TARGET_WAITING,
    msg::TARGET_FOUND,
    msg::COUNT_ABOVE_MAX,
    msg::COUNT_NORMAL,
    msg::CHILDREN_LOST,
    msg::RESTART_DELAYED,
    msg::RESTART_STARTED,
    msg::RESTART_SCRIPT_TIMEOUT,
    msg::RETRY_OVER,
    msg::RETRY_OVER_COMMAND,
    msg::RETRY_OVER_COMMAND_FAILED,
    msg::TARGET_RESET,
    msg::TARGET_PAUSED,
    msg::TARGET_RESUMED,
    msg::PROCESS_ZOMBIE,
];

/// Events of a group member's end, and of an operator's start that fails
/// then works, from `at0` on.
fn group_and_start_events(at0: u64) -> Vec<Action> {
    const S2: Duration = Duration::from_secs(2);
    let mut all = Vec::new();
    let mut g = spec("a");
    g.count = Some((1, None));
    let mut m = mon(g);
    all.extend(found(&mut m, &[300, 301], at0));
    all.extend(killed(&mut m, 301, at0 + 7));
    all.extend(
        m.command("a", Command::Stop { timeout: S2 }, "root", at0 + 8)
            .unwrap(),
    );
    all.extend(found(&mut m, &[], at0 + 8)); // nothing left: stopped
    all.extend(m.command("a", Command::Start, "root", at0 + 9).unwrap());
    all.extend(found(&mut m, &[], at0 + 9));
    all.extend(script(&mut m, 0, 1, at0 + 10));
    all.extend(
        m.command("a", Command::Stop { timeout: S2 }, "root", at0 + 11)
            .unwrap(),
    );
    all.extend(found(&mut m, &[], at0 + 11));
    all.extend(m.command("a", Command::Start, "root", at0 + 12).unwrap());
    all.extend(found(&mut m, &[], at0 + 12));
    all.extend(script(&mut m, 0, 0, at0 + 13));
    all.extend(found(&mut m, &[400], at0 + 14));
    all
}

/// Every event the core emits renders with the catalog: its ID exists and
/// its fields cover what the texts name (strict templates).
#[test]
fn every_emitted_event_renders_in_both_languages() {
    use crate::catalog::render::Renderer;
    use crate::catalog::Catalog;
    use crate::model::Lang;
    let r = Renderer::new(std::sync::Arc::new(Catalog::embedded()), None, "h").unwrap();
    let mut all = Vec::new();
    let mut s = spec("a");
    s.retry.max = 2;
    s.retry.backoff_initial = Duration::from_secs(1);
    s.on_retry_over = OnRetryOver::Failover;
    s.count = Some((1, Some(1)));
    s.matcher.pidfile = Some("/run/a.pid".into());
    s.children_min = Some(1);
    s.failover = Some(Failover {
        command: vec!["/bin/true".into()],
        timeout: Duration::from_secs(5),
    });
    let mut m = mon(s);
    all.extend(found(&mut m, &[], T0));
    all.extend(found(&mut m, &[100], T0));
    all.extend(found(&mut m, &[100, 101], T0));
    all.extend(found(&mut m, &[100], T0));
    all.extend(m.handle(
        Input::Children {
            target: "a".into(),
            pid: 100,
            count: 1,
        },
        T0,
    ));
    all.extend(m.handle(
        Input::Children {
            target: "a".into(),
            pid: 100,
            count: 0,
        },
        T0,
    ));
    let timed_out = |m: &mut Monitor, attempt, now| {
        m.handle(
            Input::ScriptDone {
                target: "a".into(),
                attempt,
                outcome: ScriptOutcome::TimedOut { output: "x".into() },
            },
            now,
        )
    };
    let delayed = timed_out(&mut m, 1, T0 + 1);
    let (tok, at) = arm(&delayed);
    all.extend(delayed);
    all.extend(timer(&mut m, tok, at));
    all.extend(found(&mut m, &[], at)); // looked for once more: absent
    all.extend(timed_out(&mut m, 2, at + 1));
    all.extend(m.handle(
        Input::CommandDone {
            target: "a".into(),
            outcome: ScriptOutcome::Signaled {
                signal: 9,
                output: String::new(),
            },
        },
        at + 2,
    ));
    all.extend(m.command("a", Command::Reset, "root", at + 3).unwrap());
    all.extend(m.command("a", Command::Pause, "root", at + 3).unwrap());
    all.extend(m.command("a", Command::Resume, "root", at + 3).unwrap());
    all.extend(found(&mut m, &[200], at + 4));
    all.extend(m.handle(
        Input::Exited {
            target: "a".into(),
            proc: p(200),
            kind: ExitKind::Zombie { ppid: 1 },
            status: None,
        },
        at + 5,
    ));
    all.extend(group_and_start_events(at + 6));
    let ids_seen = ids(&all);
    for &id in EXERCISED {
        assert!(ids_seen.contains(&id), "{id} not exercised: {ids_seen:?}");
    }
    for a in &all {
        if let Action::Emit(ev) = a {
            for lang in [Lang::En, Lang::Ja] {
                r.text(ev.id, &ev.fields, lang)
                    .unwrap_or_else(|e| panic!("{} {lang:?}: {e} ({:?})", ev.id, ev.fields));
            }
        }
    }
}

fn with_stall(action: crate::config::StallAction) -> TargetSpec {
    let mut s = spec("a");
    s.stall = Some(Box::new(crate::config::Stall {
        probe: crate::config::Probe::State {
            max_duration: Duration::from_secs(1),
        },
        interval: Duration::from_secs(10),
        failures: 3,
        action,
        stop_timeout: Duration::from_secs(5),
        signal_group: false,
    }));
    s
}

fn probe(m: &mut Monitor, pid: u32, ok: bool, now: Ms) -> Vec<Action> {
    m.handle(
        Input::Probe {
            target: "a".into(),
            pid,
            ok,
            detail: if ok {
                String::new()
            } else {
                "no answer".into()
            },
        },
        now,
    )
}

#[test]
fn stall_restart_stops_then_restarts_with_reason_stalled() {
    let mut m = mon(with_stall(crate::config::StallAction::Restart));
    found(&mut m, &[100], T0);
    assert_eq!(m.probe_targets().count(), 1);
    assert!(probe(&mut m, 100, false, T0).is_empty());
    assert!(
        probe(&mut m, 100, true, T0).is_empty(),
        "a pass resets the count"
    );
    assert!(probe(&mut m, 100, false, T0).is_empty());
    assert!(probe(&mut m, 100, false, T0).is_empty());
    assert_eq!(m.status(T0)[0].probe_failures, 2);
    let a = probe(&mut m, 100, false, T0);
    assert_eq!(ids(&a), vec![msg::TARGET_STALLED]);
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::Stop { proc, group: false, .. } if proc.pid == 100)));
    assert_eq!(
        phase(&m),
        Phase::Stopping {
            reason: Reason::Stalled
        }
    );
    assert_eq!(m.probe_targets().count(), 0, "no probes while stopping");
    // The stopped process exits: no disappearance event, a restart.
    let a = killed(&mut m, 100, T0 + S);
    assert_eq!(ids(&a), vec![msg::RESTART_STARTED]);
    assert!(a.iter().any(|x| matches!(
        x,
        Action::RunScript {
            reason: Reason::Stalled,
            ..
        }
    )));
}

#[test]
fn stall_stop_that_never_ends_gives_up_at_the_timer() {
    let mut m = mon(with_stall(crate::config::StallAction::Restart));
    found(&mut m, &[100], T0);
    for _ in 0..2 {
        probe(&mut m, 100, false, T0);
    }
    let a = probe(&mut m, 100, false, T0);
    let (tok, at) = arm(&a);
    assert_eq!(at, T0 + 10 * S, "stop-timeout + 5 s");
    let a = timer(&mut m, tok, at);
    assert_eq!(ids(&a), vec![msg::RESTART_STARTED]);
}

#[test]
fn stall_notify_says_once_and_clears() {
    let mut m = mon(with_stall(crate::config::StallAction::Notify));
    found(&mut m, &[100], T0);
    for _ in 0..2 {
        probe(&mut m, 100, false, T0);
    }
    let a = probe(&mut m, 100, false, T0);
    assert_eq!(ids(&a), vec![msg::TARGET_STALLED]);
    let Action::Emit(ev) = &a[0] else { panic!() };
    assert_eq!(ev.fields["action"], "notify");
    assert!(probe(&mut m, 100, false, T0).is_empty(), "said once");
    assert_eq!(state(&m), State::Stalled, "up, but stalled");
    assert_eq!(ids(&probe(&mut m, 100, true, T0)), vec![msg::STALL_CLEARED]);
    assert_eq!(state(&m), State::Up);
    assert_eq!(m.status(T0)[0].probe.as_deref(), Some("ok"));
    // A result for another pid is ignored.
    assert!(probe(&mut m, 999, false, T0).is_empty());
}

#[test]
fn stop_then_start_is_not_counted() {
    let mut m = mon(spec("a"));
    found(&mut m, &[100], T0);
    let a = m
        .command(
            "a",
            Command::Stop {
                timeout: Duration::from_secs(5),
            },
            "hacluster",
            T0,
        )
        .unwrap();
    assert_eq!(ids(&a), vec![msg::TARGET_STOPPED]);
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::Stop { proc, .. } if proc.pid == 100)));
    // Stopping until a scan finds nothing left of it (the process it
    // signalled is not signalled twice).
    assert_eq!(state(&m), State::Stopping);
    assert_eq!(m.snapshot()["a"].halted, Some(Halted::Stopped));
    assert!(!found(&mut m, &[100], T0)
        .iter()
        .any(|x| matches!(x, Action::Stop { .. })));
    found(&mut m, &[], T0);
    assert_eq!(state(&m), State::Stopped);
    assert!(
        killed(&mut m, 100, T0).is_empty(),
        "its end is not a failure"
    );
    assert!(m
        .command(
            "a",
            Command::Stop {
                timeout: Duration::from_secs(5)
            },
            "x",
            T0
        )
        .unwrap()
        .is_empty());
    assert_eq!(m.snapshot()["a"].halted, Some(Halted::Stopped));
    let a = m.command("a", Command::Start, "hacluster", T0 + S).unwrap();
    assert_eq!(ids(&a), vec![msg::TARGET_STARTED]);
    // The scan finds nothing: the script runs, attempt 0, not counted.
    let a = found(&mut m, &[], T0 + S);
    assert_eq!(ids(&a), vec![msg::START_SCRIPT_STARTED]);
    assert!(a.iter().any(|x| matches!(
        x,
        Action::RunScript {
            attempt: 0,
            reason: Reason::Manual,
            ..
        }
    )));
    assert_eq!(
        ids(&script(&mut m, 0, 0, T0 + 2 * S)),
        vec![msg::START_SCRIPT_DONE]
    );
    assert_eq!(
        ids(&found(&mut m, &[300], T0 + 3 * S)),
        vec![msg::STARTED_BY_SCRIPT]
    );
    assert_eq!(m.status(T0 + 3 * S)[0].restarts_in_window, 0);
    // Start while up: nothing to do.
    assert!(m.command("a", Command::Start, "x", T0).unwrap().is_empty());
}

/// `stop` while the restart script runs: the script's group is ended,
/// what it started (found by the next scans) is stopped, and only then
/// is the target stopped; the script's end is not a failure.
#[test]
fn stop_during_a_restart_ends_the_script_and_what_it_started() {
    let mut m = mon(spec("a"));
    found(&mut m, &[100], T0);
    killed(&mut m, 100, T0);
    let script_proc = p(900);
    m.handle(
        Input::ScriptStarted {
            target: "a".into(),
            attempt: 1,
            proc: script_proc,
        },
        T0,
    );
    let stop = Command::Stop {
        timeout: Duration::from_secs(3),
    };
    let a = m.command("a", stop, "hacluster", T0 + 1).unwrap();
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::KillScript { proc, .. } if *proc == script_proc)));
    assert_eq!(state(&m), State::Stopping);
    // The script's app shows up while the script is being ended.
    let a = found(&mut m, &[150], T0 + 2);
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::Stop { proc, .. } if proc.pid == 150)));
    assert!(found(&mut m, &[], T0 + 3).is_empty(), "nothing new to stop");
    assert!(m.fast_scan(), "scanned at the settling pace while halting");
    assert_eq!(state(&m), State::Stopping, "the script still runs");
    let a = script(&mut m, 1, 143, T0 + 4);
    assert!(ids(&a).is_empty(), "its end is not a failure: {a:?}");
    found(&mut m, &[], T0 + 5);
    assert_eq!(state(&m), State::Stopped);
    // Stopped during a backoff: the timer is stale, nothing runs.
    let mut s = spec("a");
    s.retry.backoff_initial = Duration::from_secs(5);
    let mut m = mon(s);
    found(&mut m, &[100], T0);
    killed(&mut m, 100, T0);
    let (tok, at) = arm(&script(&mut m, 1, 1, T0 + 1));
    m.command(
        "a",
        Command::Stop {
            timeout: Duration::from_secs(3),
        },
        "x",
        T0 + 2,
    )
    .unwrap();
    found(&mut m, &[], T0 + 3);
    assert_eq!(state(&m), State::Stopped);
    assert!(timer(&mut m, tok, at).is_empty());
}

#[test]
fn start_finds_a_running_target_without_the_script() {
    let mut m = mon(spec("a"));
    found(&mut m, &[100], T0);
    m.command("a", Command::Pause, "x", T0).unwrap();
    m.command("a", Command::Start, "x", T0).unwrap();
    let a = found(&mut m, &[100], T0 + S);
    assert_eq!(ids(&a), vec![msg::TARGET_FOUND]);
    assert!(!a.iter().any(|x| matches!(x, Action::RunScript { .. })));
}

/// How a process ended reaches PW2003's fields and the restart script.
#[test]
fn the_exit_status_is_reported_and_passed_to_the_script() {
    let mut m = mon(spec("a"));
    found(&mut m, &[100], T0);
    let segv = ExitStatus::from_wait(11 | 0x80);
    assert_eq!(segv.signal_name().as_deref(), Some("SIGSEGV"));
    assert!(segv.core_dumped);
    let a = m.handle(
        Input::Exited {
            target: "a".into(),
            proc: p(100),
            kind: ExitKind::Disappeared,
            status: Some(segv),
        },
        T0 + S,
    );
    let ev = a
        .iter()
        .find_map(|x| match x {
            Action::Emit(e) if e.id == msg::PROCESS_DISAPPEARED => Some(e.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(ev.fields["exit"], "killed by SIGSEGV, core dumped");
    assert_eq!(ev.fields["signal"], "SIGSEGV");
    assert_eq!(ev.fields["core_dumped"], true);
    assert!(!ev.fields.contains_key("exit_code"));
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::RunScript { exit: Some(e), .. } if *e == segv)));
    assert_eq!(m.status(T0 + S)[0].last_exit, Some(segv));
    let env = ExitStatus::env(Some(&ExitStatus::from_wait(3 << 8)));
    assert!(env.contains(&("PROCWARD_EXIT_CODE".into(), "3".into())));
    assert!(env.contains(&("PROCWARD_EXIT_SIGNAL".into(), String::new())));
    assert!(ExitStatus::env(None).iter().all(|(_, v)| v.is_empty()));
}

/// success-exit: an exit status the operator calls normal is said
/// (PW2019) and not restarted; another status is a failure.
#[test]
fn a_success_exit_status_is_not_a_failure() {
    let mut sp = spec("a");
    sp.success_exit = vec![0];
    let mut m = mon(sp);
    found(&mut m, &[100], T0);
    let a = m.handle(
        Input::Exited {
            target: "a".into(),
            proc: p(100),
            kind: ExitKind::Disappeared,
            status: Some(ExitStatus::from_wait(0)),
        },
        T0 + S,
    );
    assert_eq!(ids(&a), vec![msg::ENDED_NORMALLY]);
    assert_eq!(m.status(T0 + S)[0].state, State::Waiting);
    found(&mut m, &[101], T0 + 2 * S);
    let a = m.handle(
        Input::Exited {
            target: "a".into(),
            proc: p(101),
            kind: ExitKind::Disappeared,
            status: Some(ExitStatus::from_wait(3 << 8)),
        },
        T0 + 3 * S,
    );
    assert_eq!(
        ids(&a),
        vec![msg::PROCESS_DISAPPEARED, msg::RESTART_STARTED]
    );
}

fn with_check(
    what: crate::config::Resource,
    above: f64,
    hold: crate::config::Hold,
    action: crate::config::CheckAction,
) -> TargetSpec {
    let mut s = spec("a");
    s.health_mut().checks.push(crate::config::Check {
        name: "leak".into(),
        test: crate::config::Test::Resource {
            what,
            scope: crate::config::Scope::Tree,
            above: Some(above),
            below: None,
        },
        interval: Duration::from_secs(10),
        hold,
        action,
        stop_timeout: Duration::from_secs(5),
        signal_group: false,
    });
    s
}

fn reading(m: &mut Monitor, pid: u32, v: Option<f64>, now: Ms) -> Vec<Action> {
    m.handle(
        Input::Check {
            target: "a".into(),
            check: 0,
            pid,
            reading: Reading::Value(v),
        },
        now,
    )
}

fn event<'a>(a: &'a [Action], id: &str) -> &'a EventSpec {
    a.iter()
        .find_map(|x| match x {
            Action::Emit(e) if e.id == id => Some(e),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {id} in {a:?}"))
}

#[test]
fn a_notify_check_degrades_the_target_until_it_passes_again() {
    use crate::config::{CheckAction, Hold, Resource};
    let gib = (1u64 << 30) as f64;
    let mut m = mon(with_check(
        Resource::Memory,
        2.0 * gib,
        Hold::Count(3),
        CheckAction::Notify,
    ));
    found(&mut m, &[100], T0);
    assert_eq!(m.status(T0)[0].checks[0].state, "pending");
    assert!(reading(&mut m, 100, Some(gib), T0).is_empty());
    assert_eq!(m.status(T0)[0].checks[0].state, "ok");
    assert!(reading(&mut m, 100, Some(3.0 * gib), T0 + 10 * S).is_empty());
    assert!(reading(&mut m, 100, Some(3.0 * gib), T0 + 20 * S).is_empty());
    assert_eq!(m.status(T0)[0].checks[0].state, "failing");
    assert_eq!(m.status(T0)[0].state, State::Up, "not for long enough yet");
    let a = reading(&mut m, 100, Some(2.5 * gib), T0 + 30 * S);
    assert_eq!(ids(&a), vec![msg::CHECK_FAILED]);
    let e = event(&a, msg::CHECK_FAILED);
    assert_eq!(e.fields["value"], "2.5GiB");
    assert_eq!(e.fields["limit"], "at most 2.0GiB");
    assert_eq!(e.fields["held"], "3 checks in a row");
    assert_eq!(e.fields["action"], "notify");
    assert_eq!(e.fields["check"], "leak");
    let st = &m.status(T0 + 30 * S)[0];
    assert_eq!(st.state, State::Degraded);
    assert_eq!(
        st.state.ocf(),
        crate::model::state::ocf::SUCCESS,
        "degraded runs"
    );
    assert_eq!(st.checks[0].state, "failed");
    assert_eq!(st.checks[0].value.as_deref(), Some("2.5GiB"));
    assert!(
        reading(&mut m, 100, Some(3.0 * gib), T0 + 40 * S).is_empty(),
        "said once"
    );
    assert!(
        reading(&mut m, 100, None, T0 + 45 * S).is_empty(),
        "no reading: no judgement"
    );
    let a = reading(&mut m, 100, Some(gib), T0 + 50 * S);
    assert_eq!(ids(&a), vec![msg::CHECK_PASSES]);
    assert_eq!(event(&a, msg::CHECK_PASSES).fields["duration"], "40s");
    assert_eq!(m.status(T0)[0].state, State::Up);
    // A reading of another process (an old one) is ignored.
    assert!(reading(&mut m, 99, Some(9.0 * gib), T0 + 60 * S).is_empty());
    // Failed again, then the process is replaced (killed, restarted) and
    // its successor fails too: the failure still open is not said again.
    for k in 0..3 {
        reading(&mut m, 100, Some(3.0 * gib), T0 + (70 + k) * S);
    }
    killed(&mut m, 100, T0 + 80 * S);
    script(&mut m, 1, 0, T0 + 81 * S);
    found(&mut m, &[200], T0 + 82 * S);
    for k in 0..3 {
        let a = reading(&mut m, 200, Some(3.0 * gib), T0 + (90 + k) * S);
        assert!(!ids(&a).contains(&msg::CHECK_FAILED), "{a:?}");
    }
    assert_eq!(m.status(T0)[0].state, State::Degraded);
    let a = reading(&mut m, 200, Some(gib), T0 + 100 * S);
    assert_eq!(ids(&a), vec![msg::CHECK_PASSES]);
}

#[test]
fn a_check_held_for_a_duration_fails_once_that_long() {
    use crate::config::{CheckAction, Hold, Resource};
    let mut m = mon(with_check(
        Resource::Cpu,
        80.0,
        Hold::For(Duration::from_secs(60)),
        CheckAction::Notify,
    ));
    found(&mut m, &[100], T0);
    for k in 0..6 {
        assert!(
            reading(&mut m, 100, Some(99.0), T0 + k * 10 * S).is_empty(),
            "{k}"
        );
    }
    let a = reading(&mut m, 100, Some(99.0), T0 + 60 * S);
    assert_eq!(event(&a, msg::CHECK_FAILED).fields["held"], "1m");
    assert_eq!(event(&a, msg::CHECK_FAILED).fields["value"], "99.0%");
}

#[test]
fn a_restart_check_stops_then_restarts_through_the_retry_window() {
    use crate::config::{CheckAction, Hold, Resource};
    let mut m = mon(with_check(
        Resource::Threads,
        100.0,
        Hold::Count(1),
        CheckAction::Restart,
    ));
    found(&mut m, &[100], T0);
    let a = reading(&mut m, 100, Some(150.0), T0);
    assert_eq!(ids(&a), vec![msg::CHECK_FAILED]);
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::Stop { proc, .. } if proc.pid == 100)));
    assert_eq!(
        phase(&m),
        Phase::Stopping {
            reason: Reason::Check
        }
    );
    let a = killed(&mut m, 100, T0 + S);
    assert_eq!(ids(&a), vec![msg::RESTART_STARTED]);
    assert!(a.iter().any(|x| matches!(
        x,
        Action::RunScript {
            reason: Reason::Check,
            attempt: 1,
            ..
        }
    )));
    script(&mut m, 1, 0, T0 + 2 * S);
    found(&mut m, &[200], T0 + 3 * S);
    assert_eq!(m.status(T0)[0].checks[0].state, "pending");
    // The new process passes: the failure said before is closed.
    let a = reading(&mut m, 200, Some(20.0), T0 + 10 * S);
    assert_eq!(ids(&a), vec![msg::CHECK_PASSES]);
    assert_eq!(event(&a, msg::CHECK_PASSES).fields["duration"], "10s");
    assert!(
        reading(&mut m, 200, Some(20.0), T0 + 20 * S).is_empty(),
        "once"
    );
}

#[test]
fn a_stop_check_stops_the_target_and_an_exec_check_runs_its_command() {
    use crate::config::{CheckAction, Hold, Resource};
    let mut m = mon(with_check(
        Resource::Fds,
        10.0,
        Hold::Count(1),
        CheckAction::Stop,
    ));
    found(&mut m, &[100], T0);
    let a = reading(&mut m, 100, Some(11.0), T0);
    assert_eq!(ids(&a), vec![msg::CHECK_FAILED, msg::TARGET_STOPPED]);
    assert_eq!(event(&a, msg::TARGET_STOPPED).fields["by"], "check leak");
    let argv = vec!["/bin/true".to_string()];
    let mut m = mon(with_check(
        Resource::Fds,
        10.0,
        Hold::Count(1),
        CheckAction::Exec(argv),
    ));
    found(&mut m, &[100], T0);
    let a = reading(&mut m, 100, Some(11.0), T0);
    assert!(a.iter().any(|x| matches!(
        x,
        Action::RunCheckCommand {
            check: 0,
            pid: 100,
            ..
        }
    )));
    assert_eq!(m.status(T0)[0].state, State::Degraded);
}

#[test]
fn a_failed_probe_check_says_why() {
    let mut s = spec("a");
    s.health_mut().checks.push(crate::config::Check {
        name: "port".into(),
        test: crate::config::Test::Probe(crate::config::Probe::Tcp {
            address: "127.0.0.1:1".into(),
            timeout: Duration::from_secs(1),
        }),
        interval: Duration::from_secs(10),
        hold: crate::config::Hold::Count(2),
        action: crate::config::CheckAction::Notify,
        stop_timeout: Duration::from_secs(5),
        signal_group: false,
    });
    let mut m = mon(s);
    found(&mut m, &[100], T0);
    let probe = |m: &mut Monitor, r: Result<(), String>, now| {
        m.handle(
            Input::Check {
                target: "a".into(),
                check: 0,
                pid: 100,
                reading: Reading::Probe(r),
            },
            now,
        )
    };
    assert!(probe(&mut m, Err("refused".into()), T0).is_empty());
    let a = probe(&mut m, Err("refused".into()), T0 + 10 * S);
    let e = event(&a, msg::CHECK_FAILED);
    assert_eq!(e.fields["value"], "refused");
    assert_eq!(e.fields["limit"], "a pass");
    assert_eq!(e.fields["kind"], "tcp");
    let a = probe(&mut m, Ok(()), T0 + 20 * S);
    assert_eq!(event(&a, msg::CHECK_PASSES).fields["value"], "passed");
}

fn chain() -> Monitor {
    let db = spec("db");
    let mut web = spec("web");
    web.health_mut().depends_on = vec!["db".into()];
    let mut app = spec("app");
    app.health_mut().depends_on = vec!["web".into()];
    Monitor::new(vec![db, web, app], &BTreeMap::new(), 42)
}

fn found_t(m: &mut Monitor, t: &str, pids: &[u32], now: Ms) -> Vec<Action> {
    m.handle(
        Input::Found {
            target: t.into(),
            procs: pids.iter().map(|&x| p(x)).collect(),
        },
        now,
    )
}

fn killed_t(m: &mut Monitor, t: &str, pid: u32, now: Ms) -> Vec<Action> {
    m.handle(
        Input::Exited {
            target: t.into(),
            proc: p(pid),
            kind: ExitKind::Disappeared,
            status: None,
        },
        now,
    )
}

fn script_t(m: &mut Monitor, t: &str, attempt: u32, now: Ms) -> Vec<Action> {
    m.handle(
        Input::ScriptDone {
            target: t.into(),
            attempt,
            outcome: ScriptOutcome::Exited {
                code: 0,
                output: String::new(),
            },
        },
        now,
    )
}

fn state_of(m: &Monitor, t: &str) -> State {
    m.status(T0)
        .into_iter()
        .find(|s| s.target == t)
        .unwrap()
        .state
}

fn runs_script(a: &[Action], t: &str) -> bool {
    a.iter()
        .any(|x| matches!(x, Action::RunScript { target, .. } if &**target == t))
}

#[test]
fn a_restart_waits_while_a_dependency_does_not_run() {
    let mut m = chain();
    for (t, pid) in [("db", 100), ("web", 200), ("app", 300)] {
        found_t(&mut m, t, &[pid], T0);
    }
    assert!(runs_script(&killed_t(&mut m, "db", 100, T0 + S), "db"));
    let a = killed_t(&mut m, "web", 200, T0 + S);
    assert!(!runs_script(&a, "web"), "db is being restarted");
    assert_eq!(
        ids(&a),
        vec![msg::PROCESS_DISAPPEARED, msg::DEPENDENCY_WAIT]
    );
    let e = event(&a, msg::DEPENDENCY_WAIT);
    assert_eq!(e.fields["dependency"], "db");
    assert_eq!(e.fields["state"], "restarting");
    assert_eq!(state_of(&m, "web"), State::Blocked);
    let st = m
        .status(T0)
        .into_iter()
        .find(|s| s.target == "web")
        .unwrap();
    assert_eq!(st.waits_for.as_deref(), Some("db"));
    assert_eq!(st.restarts_in_window, 0, "a wait is not an attempt");
    script_t(&mut m, "db", 1, T0 + 2 * S);
    let a = found_t(&mut m, "db", &[101], T0 + 2 * S);
    assert_eq!(ids(&a)[0], msg::TARGET_RECOVERED);
    assert!(
        runs_script(&a, "web"),
        "db runs: web's restart goes on: {a:?}"
    );
    assert_eq!(state_of(&m, "web"), State::Restarting);
}

#[test]
fn a_dependency_down_for_good_stops_its_dependents_and_starts_them_after_it() {
    let mut m = chain();
    for (t, pid) in [("db", 100), ("web", 200), ("app", 300)] {
        found_t(&mut m, t, &[pid], T0);
    }
    // db gives up (RETRY-OVER after its retries).
    let mut now = T0;
    let mut pid = 100;
    let mut all = Vec::new();
    for attempt in 1..=4 {
        now += 10 * S;
        all = killed_t(&mut m, "db", pid, now);
        if attempt == 4 {
            break;
        }
        script_t(&mut m, "db", attempt, now);
        pid += 1;
        found_t(&mut m, "db", &[pid], now);
    }
    assert_eq!(state_of(&m, "db"), State::RetryOver);
    let stops: Vec<&str> = all
        .iter()
        .filter_map(|x| match x {
            Action::Emit(e) if e.id == msg::TARGET_STOPPED => e.target.as_deref(),
            _ => None,
        })
        .collect();
    assert_eq!(stops, vec!["app", "web"], "the deepest first: {all:?}");
    assert_eq!(
        event(&all, msg::TARGET_STOPPED).fields["by"],
        "dependency db"
    );
    found_t(&mut m, "web", &[], now);
    found_t(&mut m, "app", &[], now);
    assert_eq!(state_of(&m, "web"), State::Stopped);
    assert_eq!(state_of(&m, "app"), State::Stopped);
    // An operator starts db: web follows once db runs, then app.
    m.command("db", Command::Start, "root", now).unwrap();
    found_t(&mut m, "db", &[150], now + S);
    assert_eq!(state_of(&m, "web"), State::Waiting, "web started");
    assert_eq!(state_of(&m, "app"), State::Stopped, "app waits for web");
    let a = found_t(&mut m, "web", &[250], now + 2 * S);
    assert_eq!(event(&a, msg::TARGET_STARTED).fields["by"], "dependency db");
    found_t(&mut m, "app", &[350], now + 3 * S);
    assert_eq!(state_of(&m, "app"), State::Up);
}

#[test]
fn an_operator_stop_stops_the_dependents_first() {
    let mut m = chain();
    for (t, pid) in [("db", 100), ("web", 200), ("app", 300)] {
        found_t(&mut m, t, &[pid], T0);
    }
    let a = m
        .command(
            "db",
            Command::Stop {
                timeout: Duration::from_secs(2),
            },
            "root",
            T0,
        )
        .unwrap();
    let stops: Vec<(&str, &str)> = a
        .iter()
        .filter_map(|x| match x {
            Action::Emit(e) if e.id == msg::TARGET_STOPPED => Some((
                e.target.as_deref().unwrap(),
                e.fields["by"].as_str().unwrap(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        stops,
        vec![
            ("app", "dependency db"),
            ("web", "dependency db"),
            ("db", "root")
        ]
    );
}

#[test]
fn a_reload_that_drops_the_dependency_lets_a_blocked_restart_go_on() {
    let mut m = chain();
    for (t, pid) in [("db", 100), ("web", 200), ("app", 300)] {
        found_t(&mut m, t, &[pid], T0);
    }
    killed_t(&mut m, "db", 100, T0 + S);
    killed_t(&mut m, "web", 200, T0 + S);
    assert_eq!(state_of(&m, "web"), State::Blocked);
    let a = m.reconfigure(vec![spec("db"), spec("web"), spec("app")], T0 + 2 * S);
    assert!(runs_script(&a, "web"), "{a:?}");
    // An operator's stop of a target stopped for its dependency makes it
    // the operator's: it is not started with the dependency.
    let mut m = chain();
    for (t, pid) in [("db", 100), ("web", 200), ("app", 300)] {
        found_t(&mut m, t, &[pid], T0);
    }
    m.command(
        "db",
        Command::Stop {
            timeout: Duration::from_secs(2),
        },
        "root",
        T0,
    )
    .unwrap();
    for t in ["app", "web", "db"] {
        found_t(&mut m, t, &[], T0 + S);
    }
    m.command(
        "app",
        Command::Stop {
            timeout: Duration::from_secs(2),
        },
        "root",
        T0 + S,
    )
    .unwrap();
    m.command("db", Command::Start, "root", T0 + 2 * S).unwrap();
    found_t(&mut m, "db", &[150], T0 + 3 * S);
    found_t(&mut m, "web", &[250], T0 + 4 * S);
    assert_eq!(state_of(&m, "web"), State::Up);
    assert_eq!(
        state_of(&m, "app"),
        State::Stopped,
        "stopped by the operator"
    );
    // An operator's start of a dependent while its dependency is stopped
    // waits for it (blocked), and goes on once it runs.
    let stop = Command::Stop {
        timeout: Duration::from_secs(2),
    };
    m.command("web", stop, "root", T0 + 5 * S).unwrap();
    found_t(&mut m, "web", &[], T0 + 6 * S);
    m.command("app", Command::Start, "root", T0 + 7 * S)
        .unwrap();
    let a = found_t(&mut m, "app", &[], T0 + 7 * S);
    assert_eq!(ids(&a), vec![msg::DEPENDENCY_WAIT]);
    assert_eq!(state_of(&m, "app"), State::Blocked);
    m.command("web", Command::Start, "root", T0 + 8 * S)
        .unwrap();
    found_t(&mut m, "web", &[], T0 + 8 * S);
    script_t(&mut m, "web", 0, T0 + 9 * S);
    let a = found_t(&mut m, "web", &[260], T0 + 9 * S);
    assert!(runs_script(&a, "app"), "{a:?}");
}
