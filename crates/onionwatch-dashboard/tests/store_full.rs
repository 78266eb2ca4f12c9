//! A full disk under the dashboard history store: saves fail while it is
//! full and work again, with every change kept meanwhile, once there is
//! space (redb refuses every transaction after a failed write until the
//! file is opened again). "Full" is RLIMIT_FSIZE, which needs no root and
//! fails writes like a full disk; it binds the whole process, hence one
//! test in this binary.

use onionwatch_dashboard::history::{History, Store};

/// Set the soft file size limit; returns the previous one.
fn set_file_size_limit(limit: libc::rlim_t) -> libc::rlim_t {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut r), 0);
        let previous = r.rlim_cur;
        r.rlim_cur = limit;
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &r), 0);
        previous
    }
}

#[test]
fn saves_work_again_with_every_change_once_the_disk_has_space() {
    // Writes beyond the limit fail with EFBIG instead of killing the process.
    // SAFETY: ignoring a signal, no handler.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard.redb");
    let store = Store::open(&path).unwrap();
    let mut history = History::new(100, 300, 0, 100_000);
    history.record("first", 1, 1.0);
    store.save(&mut history).unwrap();

    let size = std::fs::metadata(&path).unwrap().len();
    let unlimited = set_file_size_limit(size as libc::rlim_t);
    for i in 0..5_000 {
        for t in 0..50 {
            history.record(&format!("series-{i}"), t, t as f64);
        }
    }
    let full = store.save(&mut history);
    let still_full = store.save(&mut history);
    set_file_size_limit(unlimited);
    assert!(full.is_err(), "a save that must grow the file failed");
    assert!(still_full.is_err(), "and again while full");

    store
        .save(&mut history)
        .expect("the first save with space again works");
    drop(store);
    let mut loaded = History::new(100, 300, 0, 100_000);
    Store::open(&path).unwrap().load(&mut loaded).unwrap();
    assert_eq!(loaded.len(), 5_001);
    assert_eq!(loaded.points("series-4999").len(), 50);
    assert_eq!(loaded.points("first"), vec![(1, 1.0)]);
}
