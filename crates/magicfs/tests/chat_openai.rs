//! The OpenAI-compatible backend against a real server on loopback:
//! llama-cpp-python's server (the venv `scripts/llm-server.sh` builds and
//! caches) serving the same GGUF model — sessions through the mount,
//! streaming, and schema-constrained JSON through the backend API; and the
//! same server behind TLS with a certificate from a CA made in the test.

mod common;
mod pki;

use common::{scratch, sh, Mount};
use magicfs_chat::transcript::{parse, TurnRole};
use magicfs_llm::{ChatMessage, GenParams, LlmBackend, LlmConfig, OpenAiBackend, Purpose, Role, Sampling};
use magicfs_net::{Allowlist, Client, HttpUrl, Timeouts};
use std::net::TcpListener;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn models() -> PathBuf {
    std::env::var_os("MAGICFS_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/magicfs/models"))
}

/// Starts the server on a free port, over https with `tls` (certificate
/// files, and the CA file the readiness check trusts) when given.
fn start_server(tls: Option<(&pki::ServerCert, &Path)>) -> Server {
    let venv = std::env::var_os("MAGICFS_LLM_SERVER_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/magicfs/llm-server-venv"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/llm-server.sh first (builds llama-cpp-python[server] once)",
        python.display()
    );
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let model = models().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut cmd = Command::new(python);
    if let Some((cert, _)) = tls {
        cmd.arg("-m").arg("llama_cpp.server").arg("--ssl_certfile").arg(&cert.cert).arg("--ssl_keyfile").arg(&cert.key);
    } else {
        cmd.args(["-m", "llama_cpp.server"]);
    }
    let child = cmd
        .args(["--host", "127.0.0.1", "--n_ctx", "2048", "--n_threads", "1", "--verbose", "false"])
        .arg("--port")
        .arg(port.to_string())
        .arg("--model")
        .arg(&model)
        .arg("--model_alias")
        .arg("smollm2")
        // The server loads its own llama.cpp: not the one `cargo test` puts on the library path.
        .env_remove("LD_LIBRARY_PATH")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start llama-cpp-python server");
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut server = Server { child, url: format!("{scheme}://127.0.0.1:{port}") };
    let timeouts = Timeouts { connect: Duration::from_secs(2), io: Duration::from_secs(10) };
    let client = match tls {
        Some((_, ca)) => Client::with_ca_file(Allowlist::loopback(), timeouts, ca).unwrap(),
        None => Client::with_timeouts(Allowlist::loopback(), timeouts),
    };
    let models = HttpUrl::parse(&format!("{}/v1/models", server.url)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if client.request("GET", &models, &[], b"").is_ok_and(|r| r.status == 200) {
            return server;
        }
        if let Ok(Some(st)) = server.child.try_wait() {
            panic!("the llama-cpp-python server exited: {st}");
        }
        assert!(Instant::now() < deadline, "the llama-cpp-python server did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One reply through the backend API, and the number of pieces it came in.
fn streamed(b: &OpenAiBackend, msgs: &[ChatMessage], params: &GenParams) -> (magicfs_llm::Completion, u32) {
    let mut pieces = 0;
    let c = b
        .chat(msgs, params, &mut |_| {
            pieces += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    (c, pieces)
}

/// Writes one `User:` turn into a new session and returns the session once answered.
fn one_turn(m: &Mount) -> String {
    sh(
        &m.dir,
        r#"
        echo "User: Hello" > sessions/s
        while [ -f sessions/.generating.s ]; do sleep 0.1; done
        cat sessions/s
        "#,
    )
}

#[test]
fn sessions_and_json_through_a_real_openai_compatible_server() {
    let server = start_server(None);
    // Schema-constrained JSON and streaming through the backend API.
    let cfg = LlmConfig { url: Some(server.url.clone()), ..LlmConfig::default() };
    let b = OpenAiBackend::new(&cfg).unwrap();
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"]
    });
    let greedy = Sampling { temperature: 0.0, ..Sampling::defaults(Purpose::Chat) };
    let params = GenParams { json_schema: Some(schema), max_tokens: 64, sampling: greedy, ..GenParams::default() };
    let msgs = [ChatMessage { role: Role::User, content: "Describe a person called Bob who is 42, as JSON.".into() }];
    let (c, pieces) = streamed(&b, &msgs, &params);
    let v: serde_json::Value =
        serde_json::from_str(c.text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {}", c.text));
    assert!(v["name"].is_string() && v["age"].is_i64(), "{v}");
    assert!(pieces > 1, "the answer did not stream ({pieces} pieces)");
    assert!(b.model_id().contains("smollm2"), "{}", b.model_id());

    // Sessions through the mount, answered by the server.
    let tmp = scratch("chat-openai");
    let m = Mount::start_chat(&tmp.path().join("m"), None, &["--llm-url", &server.url, "--max-tokens", "40"]);
    let out = sh(
        &m.dir,
        r#"
        echo "User: Hello" > sessions/chat1
        [ -e sessions/.generating.chat1 ] && echo queued
        while [ -f sessions/.generating.chat1 ]; do sleep 0.1; done
        echo "User: What is two plus two?" >> sessions/chat1
        while [ -f sessions/.generating.chat1 ]; do sleep 0.1; done
        cat sessions/chat1
        "#,
    );
    assert!(out.starts_with("queued\n"), "{out}");
    let t = parse(out.trim_start_matches("queued\n").as_bytes()).unwrap();
    let roles: Vec<_> = t.iter().map(|t| t.role).collect();
    assert_eq!(roles, [TurnRole::User, TurnRole::Assistant, TurnRole::User, TurnRole::Assistant], "{out}");
    assert!(!t[1].text.is_empty() && !t[3].text.is_empty(), "{out}");
    let st = m.status();
    assert!(st["chat"]["backend"]["model"].as_str().unwrap().starts_with("openai:smollm2@"), "{st}");
    assert_eq!(st["chat"]["replies"], 2, "{st}");
}

#[test]
fn the_backend_over_https_with_a_private_ca() {
    let pki = pki::Pki::new("llm");
    // The in-process backend below trusts the test CA (set before any https request).
    magicfs_net::tls::set_ca_file(Some(&pki.ca)).unwrap();
    let cert = pki.server("llm", &[]);
    let server = start_server(Some((&cert, &pki.ca)));
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let ca = pki.ca.to_str().unwrap();

    // A mount without the CA: the reply is an Error: turn that says what to do.
    let tmp = scratch("chat-openai-tls");
    let m = Mount::start_chat(&tmp.path().join("m"), None, &["--llm-url", &server.url, "--max-tokens", "24"]);
    let out = one_turn(&m);
    assert!(out.contains("Error:") && out.contains("certificate") && out.contains("--ca-file"), "{out}");
    drop(m);

    // With --ca-file, sessions are answered over https.
    let m2 = Mount::start_chat(
        &tmp.path().join("m2"),
        None,
        &["--llm-url", &server.url, "--max-tokens", "24", "--ca-file", ca],
    );
    let out = one_turn(&m2);
    let t = parse(out.as_bytes()).unwrap();
    let roles: Vec<_> = t.iter().map(|t| t.role).collect();
    assert_eq!(roles, [TurnRole::User, TurnRole::Assistant], "{out}");
    assert!(!t[1].text.is_empty(), "{out}");
    drop(m2);

    // In process: the answer streams in pieces over TLS.
    let b = OpenAiBackend::new(&LlmConfig { url: Some(server.url.clone()), ..LlmConfig::default() }).unwrap();
    let greedy = Sampling { temperature: 0.0, ..Sampling::defaults(Purpose::Chat) };
    let params = GenParams { max_tokens: 24, sampling: greedy, ..GenParams::default() };
    let msgs = [ChatMessage { role: Role::User, content: "Name three colours.".into() }];
    let (c, pieces) = streamed(&b, &msgs, &params);
    assert!(!c.text.is_empty() && pieces > 1, "{pieces} pieces: {:?}", c.text);
    assert!(b.model_id().contains("smollm2") && b.model_id().contains("https://"), "{}", b.model_id());
}
