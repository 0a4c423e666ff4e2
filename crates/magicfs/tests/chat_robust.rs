//! Chat sessions that never hang or corrupt, through a real mount with the
//! real model: a reply never starts while a writer at its own offset holds
//! the file open (a subshell keeping its descriptor, a 10 MB turn written in
//! pieces); a 10,000-turn transcript is answered within 10 s while another
//! session is served alongside; deleting a session cancels its work; a
//! reply that repeats itself is cut; unmounting during a reply finishes
//! within 5 s.

mod common;

use common::{roles, scratch, sentinel, sh, turns, Mount};
use magicfs_chat::transcript::TurnRole;
use std::io::Write;
use std::time::{Duration, Instant};

/// Waits until the session's reply is complete; returns when that was.
fn wait_done(m: &Mount, id: &str, limit: Duration) -> Instant {
    let deadline = Instant::now() + limit;
    while sentinel(m, id).exists() {
        assert!(Instant::now() < deadline, "session {id}: no complete reply within {limit:?}\n{}", m.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    Instant::now()
}

fn setxattr(m: &Mount, id: &str, name: &str, value: &str) {
    common::set_xattr(&m.path(&format!("sessions/{id}")), name, value);
}

#[test]
fn replies_wait_for_writers_and_long_histories_stay_fast() {
    let tmp = scratch("chat-robust");
    let mut m = Mount::start_chat(&tmp.path().join("m"), None, &["--max-tokens", "12", "--n-ctx", "1024"]);

    // A subshell keeps the descriptor open across `sleep` (whose exit
    // flushes it): the reply waits until the last writer is gone and is
    // never written over.
    let t = Instant::now();
    sh(&m.dir, "( printf 'User: Say one word.\\n'; sleep 2; printf 'User: And a second one.\\n' ) > sessions/r1");
    assert!(t.elapsed() >= Duration::from_secs(2));
    wait_done(&m, "r1", Duration::from_secs(120));
    let raw = std::fs::read_to_string(m.path("sessions/r1")).unwrap();
    assert!(raw.starts_with("User: Say one word.\nUser: And a second one.\nAssistant: "), "{raw:?}");
    assert_eq!(roles(&turns(&m, "r1")), [TurnRole::User, TurnRole::User, TurnRole::Assistant], "{raw:?}");

    // A 10 MB turn written in pieces by several processes: refused as too
    // long once the writers are done, never answered half-written.
    sh(&m.dir, "( printf 'User: '; head -c 10000000 /dev/zero | tr '\\0' a; sleep 1; echo ) > sessions/big");
    wait_done(&m, "big", Duration::from_secs(60));
    let raw = std::fs::read(m.path("sessions/big")).unwrap();
    let tail = String::from_utf8_lossy(&raw[10_000_007..]).into_owned();
    assert!(tail.starts_with("Error: request: the last turn is over"), "{tail:?}");

    // 10,000 turns: answered within 10 s (history cut to the context from
    // the end), and a short session written right after is served alongside.
    let mut history = String::from("System: You are terse.\n");
    for i in 0..5000 {
        history.push_str(&format!("User: Tell me fact number {i}.\nAssistant: Fact {i} is that {i} is a number.\n"));
    }
    history.push_str("User: What is the capital of France?\n");
    let t = Instant::now();
    std::fs::write(m.path("sessions/long"), &history).unwrap();
    std::fs::write(m.path("sessions/short"), b"User: Say hi.\n").unwrap();
    let short_done = wait_done(&m, "short", Duration::from_secs(60));
    let long_done = wait_done(&m, "long", Duration::from_secs(60));
    let took = long_done - t;
    assert!(took < Duration::from_secs(10), "a 10,000-turn transcript took {took:?}\n{}", m.log());
    let lt = turns(&m, "long");
    assert_eq!(lt.len(), 10_003, "system, 10,000 turns, question and the reply");
    assert_eq!(lt.last().unwrap().role, TurnRole::Assistant, "{:?}", lt.last());
    assert_eq!(roles(&turns(&m, "short")), [TurnRole::User, TurnRole::Assistant]);
    assert!(short_done <= long_done, "the short session waited for the long one");
    let st = m.status();
    assert!(st["chat"]["replies"].as_u64().unwrap() >= 3, "{st}");

    // Deleting a session cancels its work: the next one is answered at once.
    setxattr(&m, "long", "user.magic.max_tokens", "2000");
    let cancelled = st["chat"]["cancelled"].as_u64().unwrap();
    {
        let mut f = std::fs::OpenOptions::new().append(true).open(m.path("sessions/long")).unwrap();
        f.write_all(b"User: Write a very long essay about the history of Rome.\n").unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(m.path("sessions/long")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while m.status()["chat"]["generating"].to_string().contains("\"long\"") {
        assert!(Instant::now() < deadline, "the deleted session is still generating: {}", m.status());
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    std::fs::write(m.path("sessions/next"), b"User: Say hello.\n").unwrap();
    wait_done(&m, "next", Duration::from_secs(30));
    assert!(t.elapsed() < Duration::from_secs(15), "the deleted session's work went on: {:?}", t.elapsed());
    assert!(!sentinel(&m, "long").exists());
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.status()["chat"]["cancelled"].as_u64().unwrap() <= cancelled {
        assert!(Instant::now() < deadline, "no cancellation counted: {}", m.status());
        std::thread::sleep(Duration::from_millis(20));
    }

    // A reply that repeats itself is stopped and cut to one copy.
    std::fs::write(m.path("sessions/loop"), b"").unwrap();
    for (k, v) in [("temperature", "0"), ("repeat_penalty", "1"), ("dry_multiplier", "0"), ("max_tokens", "200")] {
        setxattr(&m, "loop", &format!("user.magic.{k}"), v);
    }
    std::fs::write(
        m.path("sessions/loop"),
        b"User: Write: I love disks. I love disks. I love disks. I love disks. I love disks. I love disks.\n",
    )
    .unwrap();
    wait_done(&m, "loop", Duration::from_secs(120));
    let reply = turns(&m, "loop").pop().unwrap();
    assert_eq!(reply.role, TurnRole::Assistant);
    assert!(magicfs_llm::find_loop(&reply.text).is_none(), "the reply still loops: {:?}", reply.text);
    let st = m.status();
    assert_eq!(st["chat"]["last_reply"]["finish"], "loop", "{st}\n{:?}", reply.text);
    assert!(reply.text.matches("disks").count() <= 2, "{:?}", reply.text);

    // Unmounting while a reply streams finishes within 5 s.
    std::fs::write(m.path("sessions/u"), b"").unwrap();
    setxattr(&m, "u", "user.magic.max_tokens", "3000");
    std::fs::write(m.path("sessions/u"), b"User: Write a very long story about a lighthouse keeper.\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(m.path("sessions/u")).unwrap().len() < 80 {
        assert!(Instant::now() < deadline, "no reply started\n{}", m.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = m.fusermount_and_wait(Duration::from_secs(5));
    assert!(took.is_some(), "the daemon did not exit within 5 s of fusermount3 -u\n{}", m.log());
}
