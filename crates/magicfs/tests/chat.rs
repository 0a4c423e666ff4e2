//! Chat sessions through a real mount with the real GGUF model
//! (SmolLM2-135M-Instruct from scripts/models.sh): the CFS-Local shell
//! recipe, streaming seen by readers, per-session overrides,
//! concurrency, cancellation, bad input, and a daemon restart.

mod common;

use common::{roles, scratch, sentinel, sh, turns, Mount};
use magicfs_chat::transcript::TurnRole;
use std::path::Path;
use std::time::{Duration, Instant};

/// Waits until the session's sentinel is gone (and stays gone briefly).
fn wait_done(m: &Mount, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut absent_since = None;
    loop {
        if sentinel(m, id).exists() {
            absent_since = None;
        } else if absent_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_millis(300) {
            return;
        }
        assert!(Instant::now() < deadline, "session {id}: no complete reply within 300 s\n{}", m.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write(m: &Mount, id: &str, text: &[u8]) {
    std::fs::write(m.path(&format!("sessions/{id}")), text).unwrap();
}

fn append(m: &Mount, id: &str, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(m.path(&format!("sessions/{id}"))).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn size(m: &Mount, id: &str) -> u64 {
    std::fs::metadata(m.path(&format!("sessions/{id}"))).map(|a| a.len()).unwrap_or(0)
}

/// Waits until the file is longer than `n` bytes (the reply has begun).
fn wait_growth(m: &Mount, id: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while size(m, id) <= n {
        assert!(Instant::now() < deadline, "session {id}: no reply byte\n{}", m.log());
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn setxattr(p: &Path, name: &str, value: &str) {
    let out = std::process::Command::new("setfattr").args(["-n", name, "-v", value]).arg(p).output().unwrap();
    assert!(out.status.success(), "setfattr {name}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn cfs_local_recipe_and_streaming() {
    let tmp = scratch("chat-recipe");
    let m = Mount::start_chat(&tmp.path().join("m"), None, &["--max-tokens", "48"]);
    // The CFS-Local README recipe, as written.
    let out = sh(
        &m.dir,
        r#"
        echo "User: Hello" > sessions/chat1
        if [ -e sessions/.generating.chat1 ]; then echo "sentinel while generating"; fi
        while [ -f sessions/.generating.chat1 ]; do sleep 0.1; done
        cat sessions/chat1
        echo "User: What is the capital of France?" >> sessions/chat1
        if [ -e sessions/.generating.chat1 ]; then echo "sentinel while generating"; fi
        while [ -f sessions/.generating.chat1 ]; do sleep 0.1; done
        ls -a sessions
        cat sessions/chat1
        "#,
    );
    assert_eq!(out.matches("sentinel while generating").count(), 2, "{out}");
    assert!(!out.contains(".generating.chat1"), "sentinel left behind:\n{out}");
    let t = turns(&m, "chat1");
    assert_eq!(roles(&t), [TurnRole::User, TurnRole::Assistant, TurnRole::User, TurnRole::Assistant], "{t:?}");
    assert_eq!(t[0].text, "Hello");
    assert!(!t[1].text.trim().is_empty() && !t[3].text.trim().is_empty(), "{t:?}");
    let raw = std::fs::read_to_string(m.path("sessions/chat1")).unwrap();
    assert!(raw.ends_with('\n') && raw.starts_with("User: Hello\nAssistant: "), "{raw:?}");

    // Readers see the file grow while the reply streams (tail -f).
    append(&m, "grow", "");
    let tail = std::process::Command::new("tail")
        .args(["-f", "-s", "0.1", "-n", "+1"])
        .arg(m.path("sessions/grow"))
        .stdout(std::process::Stdio::piped())
        .spawn();
    setxattr(&m.path("sessions/grow"), "user.magic.max_tokens", "120");
    append(&m, "grow", "User: Count from one to thirty in words.\n");
    let mut sizes = vec![];
    while sentinel(&m, "grow").exists() {
        let s = size(&m, "grow");
        if sizes.last() != Some(&s) {
            sizes.push(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(sizes.len() >= 4, "the file did not grow in steps while generating: {sizes:?}");
    let full = std::fs::read_to_string(m.path("sessions/grow")).unwrap();
    if let Ok(mut tail) = tail {
        std::thread::sleep(Duration::from_millis(400));
        let _ = tail.kill();
        let out = tail.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), full, "tail -f saw something else than the file");
    }

    // `magicfs chat` one-shot: streams the reply to stdout.
    let out = common::magicfs(&["chat", "cli1", "--mount", m.dir.to_str().unwrap(), "-m", "Hi there!"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reply = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let t = turns(&m, "cli1");
    assert_eq!(roles(&t), [TurnRole::User, TurnRole::Assistant]);
    assert_eq!(reply, t[1].text);
    let st = m.status();
    assert_eq!(st["chat"]["backend"]["state"], "ready", "{st}");
    // chat1 twice, grow and cli1 (an empty session file asks nothing).
    assert!(st["chat"]["replies"].as_u64().unwrap() >= 4, "{st}");
}

#[test]
fn overrides_concurrency_and_cancellation() {
    let tmp = scratch("chat-ops");
    let m = Mount::start_chat(&tmp.path().join("m"), None, &["--max-tokens", "32"]);
    let prompt = "User: Write a long poem about the sea.\n";

    // Per-session overrides: max tokens and temperature (greedy is repeatable).
    for id in ["o1", "o2"] {
        write(&m, id, b"");
        setxattr(&m.path(&format!("sessions/{id}")), "user.magic.max_tokens", "6");
        setxattr(&m.path(&format!("sessions/{id}")), "user.magic.temperature", "0");
        append(&m, id, prompt);
        wait_done(&m, id);
        let st = m.status();
        assert_eq!(st["chat"]["last_reply"]["session"], id, "{st}");
        assert!(st["chat"]["last_reply"]["tokens"].as_u64().unwrap() <= 6, "{st}");
        assert_eq!(st["chat"]["last_reply"]["finish"], "length", "{st}");
    }
    let (a, b) = (turns(&m, "o1"), turns(&m, "o2"));
    assert_eq!(a[1].role, TurnRole::Assistant);
    assert_eq!(a[1].text, b[1].text, "temperature 0 is greedy: same prompt, same reply");
    // The system prompt override changes what the model is told.
    write(&m, "o3", b"");
    setxattr(&m.path("sessions/o3"), "user.magic.temperature", "0");
    setxattr(&m.path("sessions/o3"), "user.magic.max_tokens", "6");
    setxattr(&m.path("sessions/o3"), "user.magic.system", "Answer with one word only.");
    append(&m, "o3", prompt);
    wait_done(&m, "o3");
    assert_ne!(turns(&m, "o3")[1].text, a[1].text, "user.magic.system had no effect: {:?}", turns(&m, "o3"));
    // A model override that does not exist, and a bad value: error turns.
    write(&m, "o4", b"");
    setxattr(&m.path("sessions/o4"), "user.magic.model", "/nonexistent/other.gguf");
    append(&m, "o4", "User: hi\n");
    wait_done(&m, "o4");
    let t = turns(&m, "o4");
    assert_eq!(roles(&t), [TurnRole::User, TurnRole::Error]);
    assert!(t[1].text.starts_with("model: ") && t[1].text.contains("/nonexistent/other.gguf"), "{t:?}");
    // Nonsense values are refused when set (EINVAL), so a session never runs with them.
    write(&m, "o5", b"");
    for (name, value) in
        [("user.magic.temperature", "hot"), ("user.magic.temperature", "NaN"), ("user.magic.max_tokens", "-1")]
    {
        let out = std::process::Command::new("setfattr")
            .args(["-n", name, "-v", value])
            .arg(m.path("sessions/o5"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("Invalid argument"), "{name}={value}: {err}");
    }

    // Two sessions at once: the second queues behind the first (one worker), both are answered.
    write(&m, "c1", b"User: Tell me about cats.\n");
    write(&m, "c2", b"User: Tell me about dogs.\n");
    let st = m.status();
    let busy = format!("{} {}", st["chat"]["queued"], st["chat"]["generating"]);
    assert!(busy.contains("c1") && busy.contains("c2"), "both sessions should be queued or generating: {st}");
    assert!(sentinel(&m, "c1").exists() && sentinel(&m, "c2").exists());
    wait_done(&m, "c1");
    wait_done(&m, "c2");
    for id in ["c1", "c2"] {
        let t = turns(&m, id);
        assert_eq!(roles(&t), [TurnRole::User, TurnRole::Assistant], "{id}: {t:?}");
        assert!(!t[1].text.is_empty());
    }

    // A User turn appended while the reply streams is answered after it, never interleaved.
    write(&m, "c3", b"");
    setxattr(&m.path("sessions/c3"), "user.magic.max_tokens", "60");
    let first = "User: Tell me a story about a dragon.\n";
    append(&m, "c3", first);
    wait_growth(&m, "c3", first.len() as u64);
    append(&m, "c3", "User: Now tell me one about a knight.\n");
    wait_done(&m, "c3");
    let t = turns(&m, "c3");
    assert_eq!(roles(&t), [TurnRole::User, TurnRole::Assistant, TurnRole::User, TurnRole::Assistant], "{t:?}");
    assert_eq!(t[2].text, "Now tell me one about a knight.");

    // Deleting the sentinel cancels: the partial reply is marked incomplete.
    write(&m, "x1", b"");
    setxattr(&m.path("sessions/x1"), "user.magic.max_tokens", "400");
    let ask = "User: Write a very long essay about the history of Rome.\n";
    append(&m, "x1", ask);
    wait_growth(&m, "x1", ask.len() as u64 + 20);
    std::fs::remove_file(sentinel(&m, "x1")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(m.path("sessions/x1")).unwrap().ends_with("incomplete\n") {
        assert!(Instant::now() < deadline, "no cancellation turn:\n{}", m.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = turns(&m, "x1");
    assert_eq!(roles(&t), [TurnRole::User, TurnRole::Assistant, TurnRole::Error], "{t:?}");
    assert_eq!(t[2].text, "cancelled: the sentinel was removed; the reply above is incomplete");
    let settled = size(&m, "x1");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(size(&m, "x1"), settled, "generation went on after cancellation");

    // Deleting the session cancels too, and the next queued session goes on.
    write(&m, "x2", b"");
    setxattr(&m.path("sessions/x2"), "user.magic.max_tokens", "400");
    append(&m, "x2", ask);
    wait_growth(&m, "x2", ask.len() as u64 + 20);
    let before = m.status()["chat"]["cancelled"].as_u64().unwrap();
    std::fs::remove_file(m.path("sessions/x2")).unwrap();
    write(&m, "x3", b"User: Say hello.\n");
    wait_done(&m, "x3");
    assert_eq!(roles(&turns(&m, "x3")), [TurnRole::User, TurnRole::Assistant]);
    assert!(!m.path("sessions/x2").exists() && !sentinel(&m, "x2").exists());
    assert!(m.status()["chat"]["cancelled"].as_u64().unwrap() > before);
    // `>` starts over: a new conversation in the same file.
    write(&m, "c1", b"User: Hello again.\n");
    wait_done(&m, "c1");
    assert_eq!(roles(&turns(&m, "c1")), [TurnRole::User, TurnRole::Assistant]);
}

#[test]
fn bad_input_is_answered_with_error_turns_and_restart_continues() {
    let tmp = scratch("chat-bad");
    let data = tmp.path().join("data");
    let mut m = Mount::start_chat(&tmp.path().join("m"), Some(&data), &["--max-tokens", "24"]);
    // No role prefixes.
    write(&m, "b1", b"hello there\n");
    wait_done(&m, "b1");
    let raw = std::fs::read_to_string(m.path("sessions/b1")).unwrap();
    assert!(raw.starts_with("hello there\nError: input: no turns: start lines with 'User: '"), "{raw:?}");
    // Binary garbage.
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 0x80).collect();
    write(&m, "b2", &garbage);
    wait_done(&m, "b2");
    let raw = std::fs::read(m.path("sessions/b2")).unwrap();
    assert_eq!(&raw[..garbage.len()], &garbage[..], "the user's bytes were changed");
    let tail = String::from_utf8_lossy(&raw[garbage.len()..]).into_owned();
    assert!(
        tail.starts_with("\nError: input: the session is not UTF-8 text")
            || tail.starts_with("Error: input: the session is not UTF-8"),
        "{tail:?}"
    );
    // A 10 MiB User turn: refused, and the filesystem answers meanwhile.
    let mut big = b"User: ".to_vec();
    big.extend(std::iter::repeat_n(b"lorem ipsum ".as_slice(), 10 << 20 >> 4).flatten());
    big.push(b'\n');
    write(&m, "b3", &big);
    std::fs::write(m.path("other.txt"), b"still serving").unwrap();
    assert_eq!(std::fs::read(m.path("other.txt")).unwrap(), b"still serving");
    wait_done(&m, "b3");
    let raw = std::fs::read(m.path("sessions/b3")).unwrap();
    let tail = String::from_utf8_lossy(&raw[big.len()..]).into_owned();
    assert!(tail.starts_with("Error: request: the last turn is"), "{tail:?}");
    let st = m.status();
    assert!(st["chat"]["errors"].as_u64().unwrap() >= 3, "{st}");
    assert_eq!(st["chat"]["last_error"]["session"], "b3", "{st}");
    assert_eq!(st["chat"]["last_error"]["kind"], "request", "{st}");
    let log = m.log();
    assert!(log.contains("session b1: input: no turns") && log.contains("session b3: request:"), "{log}");

    // A conversation continued after a clean restart.
    write(&m, "r1", b"User: My name is Ada. Please remember it.\n");
    wait_done(&m, "r1");
    let first_prompt = m.status()["chat"]["backend"]["detail"]["last_request"]["prompt_tokens"].as_u64().unwrap();
    m.remount();
    append(&m, "r1", "User: What is my name?\n");
    wait_done(&m, "r1");
    let t = turns(&m, "r1");
    assert_eq!(roles(&t), [TurnRole::User, TurnRole::Assistant, TurnRole::User, TurnRole::Assistant], "{t:?}");
    let prompt = m.status()["chat"]["backend"]["detail"]["last_request"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt > first_prompt + 5, "the history was not sent after the restart ({prompt} vs {first_prompt})");

    // A daemon killed mid-reply: the turn is answered anew after the restart, with no partial text left.
    write(&m, "k1", b"");
    setxattr(&m.path("sessions/k1"), "user.magic.max_tokens", "300");
    let ask = "User: Write a long story about a lighthouse.\n";
    append(&m, "k1", ask);
    wait_growth(&m, "k1", ask.len() as u64 + 10);
    m.kill9();
    m.restart();
    wait_done(&m, "k1");
    let t = turns(&m, "k1");
    assert_eq!(roles(&t), [TurnRole::User, TurnRole::Assistant], "{t:?}");
    assert!(m.log().contains("session k1: its reply was not completed"), "{}", m.log());
}

#[test]
fn missing_or_corrupt_model_and_unreachable_server() {
    let tmp = scratch("chat-nomodel");
    let bad = tmp.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\0\0\0 this is not a model at all, just some bytes").unwrap();
    let notgguf = tmp.path().join("notgguf.gguf");
    std::fs::write(&notgguf, b"hello").unwrap();
    let cases: [(&str, Vec<String>, &str); 4] = [
        (
            "missing",
            vec!["--model-path".into(), "/nonexistent/model.gguf".into()],
            "model: /nonexistent/model.gguf: No such file",
        ),
        ("notgguf", vec!["--model-path".into(), notgguf.display().to_string()], "not a GGUF model file"),
        ("corrupt", vec!["--model-path".into(), bad.display().to_string()], "cannot load"),
        (
            "unreachable",
            vec!["--llm-url".into(), "http://127.0.0.1:9".into(), "--llm-model".into(), "x".into()],
            "backend: cannot connect to http://127.0.0.1:9",
        ),
    ];
    for (name, args, expect) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let m = Mount::start_chat(&tmp.path().join(name), None, &args);
        write(&m, "s", b"User: Hello\n");
        wait_done(&m, "s");
        let t = turns(&m, "s");
        assert_eq!(roles(&t), [TurnRole::User, TurnRole::Error], "{name}: {t:?}");
        assert!(format!("Error: {}", t[1].text).contains(expect), "{name}: {:?} lacks {expect:?}", t[1].text);
        let st = m.status();
        assert_eq!(st["chat"]["errors"], 1, "{name}: {st}");
        if name != "unreachable" {
            assert_eq!(st["chat"]["backend"]["state"], "failed", "{name}: {st}");
        }
        // The filesystem keeps serving.
        std::fs::write(m.path("f"), b"x").unwrap();
        assert_eq!(std::fs::read(m.path("f")).unwrap(), b"x");
        assert!(m.log().contains("session s: "), "{name}: {}", m.log());
    }
}
