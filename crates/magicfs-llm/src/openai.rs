//! The OpenAI-compatible backend: `POST /v1/chat/completions` with
//! `stream: true`, read as server-sent events so text reaches the sink as
//! the server produces it. Works with llama.cpp's server, llama-cpp-python,
//! Ollama, vLLM and OpenAI itself, over `http://` or `https://` (the
//! project's one HTTP client, `magicfs-net`: pooled connections, system
//! roots plus `--ca-file`, proxies from the environment).

use crate::{
    fit_history, BackendStatus, ChatMessage, Completion, FinishReason, GenParams, LlmBackend, LlmConfig, LlmError,
    ModelState,
};
use magicfs_net::sse::EventReader;
use magicfs_net::{Allowlist, Client, HttpUrl, NetError, Response, Timeouts};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::io::BufReader;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// Largest answer read whole (errors, the model list) and largest event.
const MAX_BODY: usize = 16 << 20;

/// A model served over HTTP.
pub struct OpenAiBackend {
    base: HttpUrl,
    text_url: String,
    client: Client,
    model: Mutex<Option<String>>,
    api_key: Option<String>,
    ctx: u32,
    last: Mutex<Value>,
}

impl OpenAiBackend {
    /// A backend for the server at `cfg.url` (nothing is contacted yet).
    pub fn new(cfg: &LlmConfig) -> Result<OpenAiBackend, LlmError> {
        let text_url = cfg.url.clone().ok_or_else(|| LlmError::Request("no server URL".into()))?;
        let url = HttpUrl::parse(&text_url).map_err(|e| LlmError::Request(format!("--llm-url {e}")))?;
        let base =
            if url.path().trim_end_matches('/').ends_with("/v1") { url.with_path("") } else { url.with_path("v1") };
        // The user named this server: any address but link-local and the like.
        let timeouts = Timeouts { connect: Duration::from_secs(10).min(cfg.timeout), io: cfg.timeout };
        Ok(OpenAiBackend {
            base,
            text_url,
            client: Client::with_timeouts(Allowlist::any(), timeouts),
            model: Mutex::new(cfg.model.clone()),
            api_key: cfg.api_key.clone(),
            ctx: cfg.ctx,
            last: Mutex::new(Value::Null),
        })
    }

    /// Sends one request to `path` under the server's `/v1`.
    fn send(&self, method: &str, path: &str, body: &[u8]) -> Result<Response, LlmError> {
        let auth = self.api_key.as_ref().map(|k| format!("Bearer {k}"));
        let mut headers = vec![("Content-Type", "application/json"), ("Accept", "text/event-stream")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        self.client.request(method, &self.base.with_path(path), &headers, body).map_err(net_error)
    }

    /// The model to ask for: configured, or the first the server lists.
    fn model_name(&self) -> Result<String, LlmError> {
        if let Some(m) = self.model.lock().clone() {
            return Ok(m);
        }
        let r = self.send("GET", "models", b"")?;
        let status = r.status;
        let body = text(r)?;
        if status != 200 {
            return Err(LlmError::Backend(format!(
                "{}/models answered {status}: {}",
                self.text_url,
                error_text(&body)
            )));
        }
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| LlmError::Backend(format!("{}/models: not JSON ({e})", self.text_url)))?;
        let id = v["data"][0]["id"]
            .as_str()
            .ok_or_else(|| LlmError::Backend(format!("{}/models lists no model", self.text_url)))?
            .to_string();
        *self.model.lock() = Some(id.clone());
        Ok(id)
    }

    fn post(&self, body: &Value) -> Result<Response, LlmError> {
        let bytes = serde_json::to_vec(body).map_err(|e| LlmError::Request(e.to_string()))?;
        self.send("POST", "chat/completions", &bytes)
    }
}

/// The request: the conversation, the token limit, the sampling settings
/// (OpenAI's names where it has them; llama.cpp servers also read `top_k`,
/// `min_p`, `repeat_penalty`, `repeat_last_n` and the `dry_*` settings and
/// `grammar`, others ignore them) and the output constraint.
fn request_body(model: &str, messages: &[ChatMessage], params: &GenParams) -> Value {
    let s = &params.sampling;
    if params.server_sampling {
        return json!({"model": model, "messages": messages, "stream": true, "max_tokens": params.max_tokens});
    }
    let mut body = json!({
        "model": model,
        "messages": messages,
        "stream": true,
        "max_tokens": params.max_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "top_k": s.top_k,
        "min_p": s.min_p,
        "repeat_penalty": s.repeat_penalty,
        "repeat_last_n": s.repeat_last_n,
        "dry_multiplier": s.dry_multiplier,
        "dry_base": s.dry_base,
        "dry_allowed_length": s.dry_allowed_length,
        "dry_penalty_last_n": s.dry_last_n,
        "seed": s.seed_for(1),
    });
    if let Some(schema) = &params.json_schema {
        body["response_format"] =
            json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": true}});
    } else if let Some(g) = &params.grammar {
        body["grammar"] = json!(g);
    }
    body
}

/// The network layer's error as this layer's: a URL or setting that cannot
/// be used is the request's fault, anything else the server's.
fn net_error(e: NetError) -> LlmError {
    match e {
        NetError::BadUrl(m) | NetError::Config(m) => LlmError::Request(m),
        other => LlmError::Backend(other.to_string()),
    }
}

/// The whole body as text (at most [`MAX_BODY`] bytes).
fn text(r: Response) -> Result<String, LlmError> {
    let body = r.read_body(MAX_BODY).map_err(net_error)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The message of an error answer (`{"error":{"message":…}}` or plain text).
fn error_text(body: &str) -> String {
    let v: Option<Value> = serde_json::from_str(body).ok();
    let msg = v.as_ref().and_then(|v| {
        v["error"]["message"]
            .as_str()
            .or_else(|| v["error"].as_str())
            .or_else(|| v["detail"].as_str())
            .map(String::from)
    });
    let msg = msg.or_else(|| v.as_ref().map(|v| v["detail"].to_string())).unwrap_or_else(|| body.to_string());
    msg.chars().take(500).collect()
}

impl LlmBackend for OpenAiBackend {
    fn model_id(&self) -> String {
        match self.model.lock().as_deref() {
            Some(m) => format!("openai:{m}@{}", self.text_url),
            None => format!("openai:{}", self.text_url),
        }
    }

    fn status(&self) -> BackendStatus {
        BackendStatus { state: ModelState::Ready, model: self.model_id(), detail: self.last.lock().clone() }
    }

    fn chat(
        &self,
        messages: &[ChatMessage],
        params: &GenParams,
        sink: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Completion, LlmError> {
        let model = match &params.model {
            Some(m) => m.clone(),
            None => self.model_name()?,
        };
        // The server's tokenizer is not known here: estimate 3 bytes a token.
        let budget = (self.ctx.saturating_sub(params.max_tokens) as usize).max(64);
        let estimate = |m: &ChatMessage| m.content.len() / 3 + 4;
        let (messages, dropped) =
            fit_history(messages, budget, |m| Ok(estimate(m)), |ms| Ok(ms.iter().map(estimate).sum()))?;
        if dropped > 0 {
            log::warn!("dropped the {dropped} oldest turns to fit the context of {} tokens", self.ctx);
        }
        let mut body = request_body(&model, &messages, params);
        let started = Instant::now();
        let mut resp = self.post(&body)?;
        if resp.status != 200 && params.json_schema.is_some() && resp.status >= 400 {
            // Servers that predate `json_schema` take the schema with `json_object`.
            log::info!(
                "{} refused response_format json_schema ({}); retrying with json_object",
                self.text_url,
                resp.status
            );
            body["response_format"] = json!({"type": "json_object", "schema": params.json_schema});
            resp = self.post(&body)?;
        }
        if resp.status != 200 {
            let status = resp.status;
            let text = text(resp).unwrap_or_default();
            let msg = format!("{}/chat/completions answered {status}: {}", self.text_url, error_text(&text));
            return Err(if (400..500).contains(&status) { LlmError::Request(msg) } else { LlmError::Backend(msg) });
        }
        let mut text = String::new();
        let mut pieces = 0u32;
        let mut finish = None;
        let mut usage = None;
        let mut first = None;
        let mut events = EventReader::new(BufReader::new(resp.into_reader(u64::MAX)), MAX_BODY);
        loop {
            let event = events.next_event().map_err(|e| {
                LlmError::Backend(format!("the stream from {} broke after {pieces} pieces: {e}", self.text_url))
            })?;
            let Some(event) = event else { break };
            let data = event.data.trim();
            if data == "[DONE]" {
                break;
            }
            let v: Value = serde_json::from_str(data)
                .map_err(|e| LlmError::Backend(format!("bad event from {}: {e}: {data:.200}", self.text_url)))?;
            if !v["error"].is_null() {
                return Err(LlmError::Backend(format!("{} reported: {}", self.text_url, error_text(data))));
            }
            if v["usage"].is_object() {
                usage = Some(v["usage"].clone());
            }
            let choice = &v["choices"][0];
            if let Some(piece) = choice["delta"]["content"].as_str() {
                if !piece.is_empty() {
                    first.get_or_insert_with(|| started.elapsed());
                    pieces += 1;
                    text.push_str(piece);
                    if sink(piece).is_break() {
                        // Dropping the connection tells the server to stop.
                        return Ok(Completion {
                            text,
                            finish: FinishReason::Cancelled,
                            prompt_tokens: 0,
                            completion_tokens: pieces,
                        });
                    }
                }
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                finish = Some(if f == "length" { FinishReason::Length } else { FinishReason::Stop });
            }
        }
        let Some(finish) = finish else {
            return Err(LlmError::Backend(format!(
                "the stream from {} ended without a finish reason after {pieces} pieces",
                self.text_url
            )));
        };
        let prompt_tokens = usage.as_ref().and_then(|u| u["prompt_tokens"].as_u64()).unwrap_or(0) as u32;
        let completion_tokens =
            usage.as_ref().and_then(|u| u["completion_tokens"].as_u64()).map(|n| n as u32).unwrap_or(pieces);
        let secs = started.elapsed().as_secs_f64();
        *self.last.lock() = json!({
            "last_request": {
                "session": params.session, "completion_tokens": completion_tokens, "seconds": secs,
                "first_piece_ms": first.map(|d| d.as_millis() as u64), "dropped_turns": dropped,
            }
        });
        Ok(Completion { text, finish, prompt_tokens, completion_tokens })
    }
}

#[cfg(test)]
mod tests {
    //! Protocol tests against a small in-process server on loopback; the
    //! real server (llama-cpp-python) is exercised by the magicfs tests.
    use super::*;
    use crate::Role;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// Serves `answers` one connection each; returns the URL and the requests' bodies.
    fn serve(answers: Vec<String>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let mut bodies = Vec::new();
            for a in answers {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                // Read the head, then Content-Length bytes.
                loop {
                    let n = s.read(&mut tmp).unwrap();
                    buf.extend_from_slice(&tmp[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                            .unwrap_or(0);
                        while buf.len() < i + 4 + len {
                            let n = s.read(&mut tmp).unwrap();
                            buf.extend_from_slice(&tmp[..n]);
                        }
                        bodies.push(String::from_utf8_lossy(&buf[i + 4..]).into_owned());
                        break;
                    }
                }
                // One answer per connection: say so, or the client may send
                // its next request on this connection as it closes.
                let a = a.replacen("\r\n", "\r\nConnection: close\r\n", 1);
                let _ = s.write_all(a.as_bytes());
            }
            bodies
        });
        (url, h)
    }

    fn sse(events: &[&str]) -> String {
        let mut body = String::new();
        for e in events {
            let chunk = format!("data: {e}\n\n");
            body.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
        }
        body.push_str("0\r\n\r\n");
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
    }

    fn cfg(url: &str) -> LlmConfig {
        LlmConfig { url: Some(url.into()), model: Some("m".into()), ..LlmConfig::default() }
    }

    fn user(s: &str) -> Vec<ChatMessage> {
        vec![ChatMessage { role: Role::User, content: s.into() }]
    }

    #[test]
    fn streams_pieces_and_sends_the_schema() {
        let (url, h) = serve(vec![sse(&[
            r#"{"choices":[{"delta":{"role":"assistant"}}]}"#,
            r#"{"choices":[{"delta":{"content":"Hel"}}]}"#,
            r#"{"choices":[{"delta":{"content":"lo"},"finish_reason":null}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
            "[DONE]",
        ])]);
        let b = OpenAiBackend::new(&cfg(&url)).unwrap();
        let mut got = Vec::new();
        let params = GenParams { json_schema: Some(json!({"type": "object"})), ..GenParams::default() };
        let c = b
            .chat(&user("hi"), &params, &mut |p| {
                got.push(p.to_string());
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(got, ["Hel", "lo"]);
        assert_eq!((c.text.as_str(), c.finish, c.completion_tokens), ("Hello", FinishReason::Stop, 2));
        let bodies = h.join().unwrap();
        let sent: Value = serde_json::from_str(&bodies[0]).unwrap();
        assert_eq!(sent["stream"], true);
        let s = crate::Sampling::defaults(crate::Purpose::Chat);
        assert_eq!(sent["min_p"].as_f64().unwrap() as f32, s.min_p);
        assert_eq!(sent["repeat_penalty"].as_f64().unwrap() as f32, s.repeat_penalty);
        assert!(sent["grammar"].is_null(), "the schema wins over a grammar");
        let g = GenParams { grammar: Some("root ::= \"a\"".into()), ..GenParams::default() };
        assert_eq!(request_body("m", &[], &g)["grammar"], "root ::= \"a\"");
        assert_eq!(sent["model"], "m");
        assert_eq!(sent["messages"][0]["role"], "user");
        assert_eq!(sent["response_format"]["type"], "json_schema");
        assert_eq!(sent["response_format"]["json_schema"]["schema"]["type"], "object");
    }

    #[test]
    fn events_with_multi_line_data_are_joined() {
        // One JSON object spread over three data: lines, CRLF line ends.
        let body = "data: {\"choices\":[{\"delta\":\r\ndata: {\"content\":\"multi\"},\r\ndata: \"finish_reason\":\"stop\"}]}\r\n\r\ndata: [DONE]\r\n\r\n";
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (url, _h) = serve(vec![resp]);
        let b = OpenAiBackend::new(&cfg(&url)).unwrap();
        let c = b.chat(&user("hi"), &GenParams::default(), &mut |_| ControlFlow::Continue(())).unwrap();
        assert_eq!((c.text.as_str(), c.finish), ("multi", FinishReason::Stop));
    }

    #[test]
    fn errors_are_reported_with_the_server_message() {
        let body = r#"{"error":{"message":"model not found"}}"#;
        let resp = format!("HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let (url, _h) = serve(vec![resp]);
        let b = OpenAiBackend::new(&cfg(&url)).unwrap();
        let e = b.chat(&user("hi"), &GenParams::default(), &mut |_| ControlFlow::Continue(())).unwrap_err();
        assert!(matches!(e, LlmError::Request(_)), "{e}");
        assert!(e.to_string().contains("model not found"), "{e}");
    }

    #[test]
    fn a_stream_cut_short_is_an_error_not_a_reply() {
        let cut = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hal\"}}]}\n\n".to_string();
        let (url, _h) = serve(vec![cut]);
        let b = OpenAiBackend::new(&cfg(&url)).unwrap();
        let e = b.chat(&user("hi"), &GenParams::default(), &mut |_| ControlFlow::Continue(())).unwrap_err();
        assert!(e.to_string().contains("without a finish reason"), "{e}");
    }

    #[test]
    fn cancel_stops_reading() {
        let (url, _h) = serve(vec![sse(&[
            r#"{"choices":[{"delta":{"content":"a"}}]}"#,
            r#"{"choices":[{"delta":{"content":"b"}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
        ])]);
        let b = OpenAiBackend::new(&cfg(&url)).unwrap();
        let c = b.chat(&user("hi"), &GenParams::default(), &mut |_| ControlFlow::Break(())).unwrap();
        assert_eq!((c.text.as_str(), c.finish), ("a", FinishReason::Cancelled));
    }

    #[test]
    fn unreachable_server() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let b = OpenAiBackend::new(&cfg(&url)).unwrap();
        let e = b.chat(&user("hi"), &GenParams::default(), &mut |_| ControlFlow::Continue(())).unwrap_err();
        assert!(e.to_string().contains("cannot connect"), "{e}");
    }

    #[test]
    fn model_is_taken_from_the_listing() {
        let list = r#"{"object":"list","data":[{"id":"smol","object":"model"}]}"#;
        let (url, _h) = serve(vec![
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{list}", list.len()),
            sse(&[r#"{"choices":[{"delta":{"content":"x"},"finish_reason":"length"}]}"#]),
        ]);
        let b = OpenAiBackend::new(&LlmConfig { url: Some(url.clone()), ..LlmConfig::default() }).unwrap();
        let c = b.chat(&user("hi"), &GenParams::default(), &mut |_| ControlFlow::Continue(())).unwrap();
        assert_eq!(c.finish, FinishReason::Length);
        assert!(b.model_id().starts_with("openai:smol@"), "{}", b.model_id());
    }
}
