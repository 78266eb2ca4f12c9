use super::*;
use crate::access::LogFormat;

fn policy(max_requests: u32, window_secs: u32, cooldown_secs: u32) -> Policy {
    Policy::new(PolicyConfig {
        max_requests,
        window_secs,
        cooldown_secs,
        ..PolicyConfig::default()
    })
    .unwrap()
}

const NONE: Vec<usize> = Vec::new();

fn yaml(text: &str) -> Result<PolicyConfig, String> {
    serde_saphyr::from_str::<PolicyConfig>(text).map_err(|e| e.to_string())
}

/// Feed `times` for one circuit; the indexes of the records that decided.
fn deciding(p: &mut Policy, circuit: u32, times: &[i64]) -> Vec<usize> {
    times
        .iter()
        .enumerate()
        .filter_map(|(i, &t)| p.observe(CircuitId(circuit), t).map(|_| i))
        .collect()
}

#[test]
fn defaults_by_name_and_an_empty_map_are_the_same() {
    let c = yaml("{}").unwrap();
    assert_eq!(c, PolicyConfig::default());
    assert_eq!(
        (c.max_requests, c.window_secs, c.cooldown_secs, c.action),
        (300, 60, 300, Action::Log)
    );
    assert!(!c.dry_run && !c.i_understand_closing_circuits && c.allow.is_empty());
    assert_eq!(c.max_tracked_circuits, 100_000);
    c.validate().unwrap();
}

#[test]
fn a_full_yaml_configuration_parses() {
    let c = yaml(
        "max_requests: 5\nwindow_secs: 10\naction: close\ni_understand_closing_circuits: true\n\
         allow: [17, 4294967295]\ncooldown_secs: 30\ndry_run: true\nmax_tracked_circuits: 9\n",
    )
    .unwrap();
    assert_eq!(c.action, Action::Close);
    assert_eq!(c.allow, vec![17, u32::MAX]);
    assert_eq!(
        (c.max_requests, c.window_secs, c.cooldown_secs),
        (5, 10, 30)
    );
    assert!(c.dry_run);
    c.validate().unwrap();
}

#[test]
fn unknown_fields_bad_actions_and_huge_ids_are_refused() {
    assert!(yaml("max_request: 5\n")
        .unwrap_err()
        .contains("max_request"));
    assert!(yaml("action: kill\n").is_err());
    assert!(yaml("action: Close\n").is_err());
    assert!(yaml("allow: [4294967296]\n").is_err());
    assert!(yaml("allow: [-1]\n").is_err());
    assert!(yaml("window_secs: -5\n").is_err());
}

#[test]
fn close_needs_explicit_opt_in() {
    let c = yaml("action: close\n").unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("i_understand_closing_circuits: true"), "{e}");
    assert!(Policy::new(c).is_err());
    // The opt-in alone does nothing and is harmless.
    yaml("i_understand_closing_circuits: true\n")
        .unwrap()
        .validate()
        .unwrap();
}

#[test]
fn out_of_range_values_are_refused_with_the_field_name() {
    for (text, field) in [
        ("max_requests: 0\n", "max_requests"),
        ("max_requests: 1000001\n", "max_requests"),
        ("window_secs: 0\n", "window_secs"),
        ("window_secs: 604801\n", "window_secs"),
        ("cooldown_secs: 0\n", "cooldown_secs"),
        ("max_tracked_circuits: 0\n", "max_tracked_circuits"),
        ("allow: [3, 0]\n", "allow"),
    ] {
        let e = yaml(text).unwrap().validate().unwrap_err().to_string();
        assert!(e.contains(field), "{text}: {e}");
    }
}

#[test]
fn the_request_after_max_requests_decides_once_per_window() {
    let mut p = policy(3, 10, 1);
    // Window [100, 110): the 4th request decides, the 5th does not again.
    assert_eq!(deciding(&mut p, 9, &[100, 101, 102, 109, 109]), vec![3]);
    // 110 starts a new window; its 4th request decides again (cool-down 1 s).
    assert_eq!(deciding(&mut p, 9, &[110, 110, 110, 110, 111]), vec![3]);
    assert_eq!(p.counters().decisions(Action::Log), 2);
    assert_eq!(p.counters().records, 10);
}

#[test]
fn decisions_carry_the_circuit_action_and_reason() {
    let mut p = Policy::new(PolicyConfig {
        max_requests: 2,
        window_secs: 60,
        action: Action::Close,
        i_understand_closing_circuits: true,
        ..PolicyConfig::default()
    })
    .unwrap();
    p.observe(CircuitId(u32::MAX), 1000);
    p.observe(CircuitId(u32::MAX), 1001);
    let d = p.observe(CircuitId(u32::MAX), 1003).unwrap();
    assert_eq!(d.circuit, CircuitId(u32::MAX));
    assert_eq!(d.action, Action::Close);
    assert_eq!((d.requests, d.time, d.dry_run), (3, 1003, false));
    assert!(d.should_close());
    assert_eq!(
        d.reason,
        "3 requests in 3 s, more than the 2 allowed per 60 s"
    );
    assert_eq!(p.counters().decisions(Action::Close), 1);
    assert_eq!(p.counters().decisions(Action::Log), 0);
}

#[test]
fn cooldown_suppresses_later_windows_and_counts_once_per_window() {
    let mut p = policy(1, 10, 25);
    assert_eq!(deciding(&mut p, 5, &[0, 1]), vec![1]); // acted at 1
    assert_eq!(deciding(&mut p, 5, &[10, 11, 12, 13]), NONE); // 11-1 < 25
    assert_eq!(p.counters().suppressed_by_cooldown, 1);
    // A later window still inside the cool-down, then one past it.
    assert_eq!(deciding(&mut p, 5, &[20, 25]), NONE);
    assert_eq!(deciding(&mut p, 5, &[30, 31]), vec![1]); // 31-1 >= 25
    assert_eq!(p.counters().suppressed_by_cooldown, 2);
    assert_eq!(p.counters().decisions(Action::Log), 2);
}

#[test]
fn allow_listed_circuits_and_circuit_zero_are_never_acted_on_nor_tracked() {
    let mut p = Policy::new(PolicyConfig {
        max_requests: 1,
        allow: vec![42],
        ..PolicyConfig::default()
    })
    .unwrap();
    assert_eq!(deciding(&mut p, 42, &[1, 1, 1, 1]), NONE);
    assert_eq!(deciding(&mut p, 0, &[1, 1, 1, 1]), NONE);
    assert_eq!(p.counters().records_allowed, 4);
    assert_eq!(p.counters().records_without_circuit, 4);
    assert_eq!(p.counters().tracked_circuits, 0);
    assert_eq!(deciding(&mut p, 43, &[1, 1]), vec![1]);
}

#[test]
fn dry_run_decides_and_counts_but_marks_the_decision() {
    let mut p = Policy::new(PolicyConfig {
        max_requests: 1,
        action: Action::Close,
        i_understand_closing_circuits: true,
        dry_run: true,
        ..PolicyConfig::default()
    })
    .unwrap();
    p.observe(CircuitId(3), 5);
    let d = p.observe(CircuitId(3), 5).unwrap();
    assert!(d.dry_run && !d.should_close());
    assert_eq!(p.counters().decisions(Action::Close), 1);
    assert_eq!(p.counters().dry_run_decisions, 1);
}

#[test]
fn time_going_backwards_counts_at_the_circuits_newest_time() {
    let mut p = policy(3, 10, 1000);
    // 1000, then lines from far in the past: they stay in the window
    // [1000, 1010) instead of opening new windows, and decide once.
    assert_eq!(deciding(&mut p, 1, &[1000, 5, -99_999, 1009, 3]), vec![3]);
    assert_eq!(p.counters().records_out_of_order, 3);
    // Another circuit is unaffected by circuit 1's clock.
    assert_eq!(deciding(&mut p, 2, &[7, 8, 9]), NONE);
    assert_eq!(deciding(&mut p, 2, &[17]), NONE); // new window at 17
}

#[test]
fn extreme_times_never_overflow() {
    let mut p = policy(2, 604_800, 31_536_000);
    let times = [
        i64::MIN,
        i64::MIN,
        i64::MAX,
        i64::MAX,
        i64::MAX,
        0,
        i64::MIN,
    ];
    // MIN, MIN (2 requests), MAX starts a new window (1), MAX, MAX decides.
    assert_eq!(deciding(&mut p, 77, &times), vec![4]);
    let mut p = policy(1, 1, 1);
    assert_eq!(deciding(&mut p, 78, &[i64::MAX, i64::MAX]), vec![1]);
    assert_eq!(deciding(&mut p, 79, &[i64::MIN, i64::MIN]), vec![1]);
    // Saturating: MIN → MAX is "a long time later", so a new window and the
    // cool-down is over.
    assert_eq!(deciding(&mut p, 79, &[i64::MAX, i64::MAX]), vec![1]);
}

#[test]
fn many_circuits_stay_within_the_cap_and_an_active_abuser_is_not_evicted() {
    let mut p = Policy::new(PolicyConfig {
        max_requests: 50,
        window_secs: 600,
        max_tracked_circuits: 100,
        ..PolicyConfig::default()
    })
    .unwrap();
    let mut decided = Vec::new();
    for i in 0..20_000u32 {
        // A flood of one-request circuits, with the abuser in between.
        let c = if i % 100 == 0 { 7 } else { 1_000 + i };
        if let Some(d) = p.observe(CircuitId(c), 1_000) {
            decided.push(d.circuit.0);
        }
        assert!(p.circuits.len() <= 100 && p.recency.len() == p.circuits.len());
    }
    assert_eq!(decided, vec![7]); // its 51st request, despite the flood
    assert_eq!(p.counters().tracked_circuits, 100);
    assert_eq!(p.counters().evicted_circuits, 19_800 - 100 + 1);
}

#[test]
fn idle_circuits_are_forgotten_once_their_window_and_cool_down_are_over() {
    // One new circuit a second for 10,000 s (as scripts/soak sends), the
    // abuser 7 acted on at 2 and back during its cool-down at 250.
    let mut p = policy(2, 60, 300);
    assert_eq!(deciding(&mut p, 7, &[0, 1, 2]), vec![2]);
    for t in 3..10_000i64 {
        if t == 250 {
            // Still remembered: suppressed, not decided again.
            assert_eq!(deciding(&mut p, 7, &[250, 250, 250]), NONE);
        }
        p.observe(CircuitId(1_000 + t as u32), t);
        assert!(p.recency.len() == p.circuits.len());
        // Only the circuits of the last window (and 7 until its cool-down
        // ends at 550) are kept, far below max_tracked_circuits.
        assert!(
            p.circuits.len() <= 64,
            "{} tracked at {t}",
            p.circuits.len()
        );
    }
    assert_eq!(p.counters().suppressed_by_cooldown, 1);
    assert!(!p.circuits.contains_key(&7));
    assert_eq!(p.counters().evicted_circuits, 0);
    assert!(p.counters().tracked_circuits <= 64);
}

#[test]
fn hostile_sequences_never_panic_and_never_decide_twice_per_window() {
    // A small deterministic generator: ids from a tiny and a huge range,
    // times jumping anywhere.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut p = policy(3, 5, 1);
    let mut per_circuit_window: HashSet<(u32, i64)> = HashSet::new();
    for _ in 0..50_000 {
        let r = next();
        let id = if r & 1 == 0 {
            (r >> 8) as u32 % 16
        } else {
            (r >> 8) as u32
        };
        let t = match (r >> 4) % 8 {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => (r >> 20) as i64,
            _ => ((r >> 40) % 30) as i64,
        };
        if let Some(d) = p.observe(CircuitId(id), t) {
            assert_eq!(d.requests, 4);
            let s = &p.circuits[&u64::from(id)];
            assert!(
                per_circuit_window.insert((id, s.window_start)),
                "two decisions for circuit {id} in one window"
            );
        }
    }
    assert!(p.circuits.len() <= 100_000);
}

#[test]
fn replaying_the_same_records_gives_the_same_decisions() {
    let run = || {
        let mut p = policy(2, 3, 4);
        let mut out = Vec::new();
        for i in 0..500i64 {
            let c = CircuitId((i * 7 % 3) as u32 + 1);
            if let Some(d) = p.observe(c, i / 6) {
                out.push((d.circuit, d.time, d.reason));
            }
        }
        out
    };
    let a = run();
    assert!(!a.is_empty());
    assert_eq!(a, run());
}

#[test]
fn records_are_observed_by_their_circuit_and_log_time() {
    let format = LogFormat::combined();
    let mut p = policy(1, 60, 300);
    let lines: [&[u8]; 4] = [
        br#"fc00:dead:beef:4dad::0:30 - - [11/Jan/2024:17:08:43 +0000] "GET / HTTP/1.1" 200 5 "-" "c""#,
        br#"127.0.0.1 - - [11/Jan/2024:17:08:44 +0000] "GET / HTTP/1.1" 200 5 "-" "c""#,
        br#"fc00:dead:beef:4dad::30 - - [11/Jan/2024:17:08:45 +0000] "GET / HTTP/1.1" 200 5 "-" "c""#,
        br#"fc00:dead:beef:4dad::31 - - [11/Jan/2024:17:08:45 +0000] "GET / HTTP/1.1" 200 5 "-" "c""#,
    ];
    let decisions: Vec<Decision> = lines
        .iter()
        .filter_map(|l| p.observe_record(&format.parse(l).unwrap()))
        .collect();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].circuit, CircuitId(0x30));
    assert_eq!(decisions[0].time, 1_704_992_925);
    assert_eq!(p.counters().records_without_circuit, 1);
    assert_eq!(p.counters().records, 3);
    let mut no_time = format.parse(lines[0]).unwrap();
    no_time.time = None;
    assert!(p.observe_record(&no_time).is_none());
    assert_eq!(p.counters().records_without_time, 1);
}

#[test]
fn prometheus_text_has_action_labels_and_no_circuit_ids() {
    let mut p = policy(1, 60, 300);
    p.observe(CircuitId(123_456), 1);
    p.observe(CircuitId(123_456), 1);
    let render = |project| {
        onionwatch_metrics::render(
            &p.counters().to_families(project),
            onionwatch_metrics::Format::Prometheus,
        )
    };
    let text = render(Some("shop"));
    assert!(text.contains(
        "# TYPE onionwatch_log_abusive_circuits_total counter\n\
         onionwatch_log_abusive_circuits_total{project=\"shop\",action=\"log\"} 1\n\
         onionwatch_log_abusive_circuits_total{project=\"shop\",action=\"alert\"} 0\n\
         onionwatch_log_abusive_circuits_total{project=\"shop\",action=\"close\"} 0\n"
    ));
    assert!(text.contains("onionwatch_log_policy_tracked_circuits{project=\"shop\"} 1\n"));
    assert!(!text.contains("123456"), "{text}");
    let bare = render(None);
    assert!(bare.contains("onionwatch_log_abusive_circuits_dry_run_total 0\n"));
    for line in bare.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("onionwatch_log_"), "{line}");
    }
}

#[test]
fn load_reads_checks_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    let load = |text: &str| {
        std::fs::write(&path, text).unwrap();
        PolicyConfig::load(&path)
    };
    assert_eq!(load("max_requests: 5\n").unwrap().max_requests, 5);
    let e = load("max_request: 5\n").unwrap_err();
    assert!(matches!(e, PolicyLoadError::Parse { .. }), "{e}");
    let e = load("action: close\n").unwrap_err();
    assert!(matches!(e, PolicyLoadError::Invalid { .. }), "{e}");
    assert!(e.to_string().contains("policy.yaml"), "{e}");
    let e = PolicyConfig::load(&dir.path().join("missing.yaml")).unwrap_err();
    assert!(matches!(e, PolicyLoadError::Read { .. }), "{e}");
}

fn closing(trust_circuit_header: bool) -> Policy {
    Policy::new(PolicyConfig {
        max_requests: 5,
        window_secs: 60,
        action: Action::Close,
        i_understand_closing_circuits: true,
        trust_circuit_header,
        ..PolicyConfig::default()
    })
    .unwrap()
}

/// A line as nginx writes it with the circuit header after `combined`.
fn header_line(addr: &str, header: &str) -> String {
    format!(r#"{addr} - - [11/Jan/2024:17:08:43 +0000] "GET / HTTP/1.1" 200 5 "-" "c" "{header}""#)
}

fn header_format() -> LogFormat {
    LogFormat::compile(r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_onion_circuitid""#).unwrap()
}

#[test]
fn a_forged_circuit_header_never_names_the_circuit_to_close() {
    // The issue's reproduction: six requests on tor circuit 48 (0x30) that
    // carry `X-Onion-CircuitID: 7` are circuit 48's, and it is 48 that is
    // closed; circuit 7 is never named.
    let format = header_format();
    let mut p = closing(false);
    let decisions: Vec<Decision> = (0..6)
        .filter_map(|_| {
            let line = header_line("fc00:dead:beef:4dad::0:30", "7");
            p.observe_record(&format.parse(line.as_bytes()).unwrap())
        })
        .collect();
    assert_eq!(decisions.len(), 1);
    let d = &decisions[0];
    assert_eq!(
        (d.circuit, d.source, d.closable),
        (CircuitId(48), CircuitSource::Address, true)
    );
    assert!(d.should_close());
    assert_eq!(p.counters().records_from_header, 0);

    // With no id in the address, the header is used, but its decision is
    // not to be executed, and its counts stay apart from circuit 7's own.
    let mut p = closing(false);
    for _ in 0..5 {
        let line = header_line("127.0.0.1", "7");
        assert!(p
            .observe_record(&format.parse(line.as_bytes()).unwrap())
            .is_none());
    }
    assert!(
        p.observe(CircuitId(7), 1_704_992_923).is_none(),
        "forged header requests counted against the real circuit 7"
    );
    let line = header_line("127.0.0.1", "7");
    let d = p
        .observe_record(&format.parse(line.as_bytes()).unwrap())
        .unwrap();
    assert_eq!(
        (d.circuit, d.source, d.action),
        (CircuitId(7), CircuitSource::Header, Action::Close)
    );
    assert!(!d.closable && !d.should_close());
    let c = p.counters();
    assert_eq!((c.records_from_header, c.untrusted_not_closed), (6, 1));
    assert_eq!((c.decisions(Action::Close), c.tracked_circuits), (1, 2));
    let text = onionwatch_metrics::render(
        &c.to_families(Some("shop")),
        onionwatch_metrics::Format::Prometheus,
    );
    assert!(
        text.contains("onionwatch_log_abusive_circuits_untrusted_total{project=\"shop\"} 1\n"),
        "{text}"
    );
}

#[test]
fn a_trusted_circuit_header_is_closed_and_counted_with_tors_ids() {
    let c = yaml("trust_circuit_header: true\n").unwrap();
    assert!(c.trust_circuit_header);
    assert!(!PolicyConfig::default().trust_circuit_header);
    let mut p = closing(true);
    for t in 0..5 {
        assert!(p
            .observe_from(CircuitId(7), CircuitSource::Header, t)
            .is_none());
    }
    let d = p.observe(CircuitId(7), 5).unwrap();
    assert!(d.closable && d.should_close());
    assert_eq!(p.counters().untrusted_not_closed, 0);
    assert_eq!(p.counters().tracked_circuits, 1);
}

#[test]
fn the_same_circuit_id_on_two_workers_is_two_circuits() {
    let mut p = policy(2, 60, 300);
    let addr = CircuitSource::Address;
    // Worker 1's circuit 48 and worker 2's circuit 48: two requests each,
    // under the limit, where one merged circuit would be over it.
    for t in 0..2 {
        assert!(p.observe_on(1, CircuitId(48), addr, t).is_none());
        assert!(p.observe_on(2, CircuitId(48), addr, t).is_none());
    }
    assert_eq!(p.counters().tracked_circuits, 2);
    let d = p.observe_on(2, CircuitId(48), addr, 3).unwrap();
    assert_eq!((d.worker, d.circuit, d.requests), (2, CircuitId(48), 3));
    // Worker 1's circuit is still at two requests, in its own window.
    let d = p.observe_on(1, CircuitId(48), addr, 3).unwrap();
    assert_eq!(d.worker, 1);
    // The largest worker number stays apart from the header bit and others.
    assert!(p.observe_on(u32::MAX, CircuitId(48), addr, 0).is_none());
    assert_eq!(p.counters().tracked_circuits, 3);
}
