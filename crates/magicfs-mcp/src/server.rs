//! [`McpServer`]: the tools and resources of one volume.
//!
//! Every tool runs its volume call on a blocking thread (the volume reads
//! files, waits for models, maps files). A refused or failed call is a tool
//! result with `isError` and `{"error", "kind"}`, so the agent reads why;
//! arguments that do not match a tool's schema are a JSON-RPC
//! invalid-params error from the SDK.

use crate::args::*;
use base64::Engine as _;
use magicfs_volume::{ComputeRequest, Volume, VolumeError, WriteMode, URI_SCHEME};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, Implementation, ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};
use serde_json::json;
use std::sync::Arc;

/// The URI of the status resource.
pub const STATUS_URI: &str = "magicfs:///.magic/status";
/// Resources listed per page.
const PAGE: usize = 200;
/// Most files walked for a resource listing.
const MAX_RESOURCES: usize = 5000;

/// The tools that change the volume (left out of a read-only server).
pub const WRITING_TOOLS: [&str; 6] = ["write", "mkdir", "move", "delete", "chat", "generate"];

/// The MCP server over one volume.
#[derive(Clone)]
pub struct McpServer {
    vol: Arc<Volume>,
    tool_router: ToolRouter<McpServer>,
}

fn failure(e: &VolumeError) -> CallToolResult {
    CallToolResult::structured_error(json!({ "error": e.to_string(), "kind": e.kind() }))
}

fn answer<T: serde::Serialize>(r: Result<T, VolumeError>) -> Result<CallToolResult, ErrorData> {
    Ok(match r {
        Ok(v) => match serde_json::to_value(v) {
            Ok(v) => CallToolResult::structured(v),
            Err(e) => failure(&VolumeError::Io(e.to_string())),
        },
        Err(e) => failure(&e),
    })
}

/// Runs a volume call on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VolumeError> + Send + 'static,
) -> Result<T, VolumeError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(VolumeError::Io(format!("the call failed: {e}"))))
}

/// Sends progress notifications while a blocking call reports pieces.
struct Progress {
    ctx: RequestContext<RoleServer>,
}

impl Progress {
    /// Runs `f` on a blocking thread; each message it sends becomes a
    /// progress notification (when the client asked for them with a token).
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn FnMut(String)) -> Result<T, VolumeError> + Send + 'static,
    ) -> Result<T, VolumeError> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let job = tokio::task::spawn_blocking(move || {
            let mut send = |m: String| {
                let _ = tx.send(m);
            };
            f(&mut send)
        });
        let token = self.ctx.meta.get_progress_token();
        let mut n = 0.0;
        while let Some(message) = rx.recv().await {
            n += 1.0;
            if let Some(t) = &token {
                let p = ProgressNotificationParam::new(t.clone(), n).with_message(message);
                let _ = self.ctx.peer.notify_progress(p).await;
            }
        }
        job.await.unwrap_or_else(|e| Err(VolumeError::Io(format!("the call failed: {e}"))))
    }
}

fn decode(content: &str, encoding: Encoding) -> Result<Vec<u8>, VolumeError> {
    match encoding {
        Encoding::Auto | Encoding::Text => Ok(content.as_bytes().to_vec()),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(content.trim())
            .map_err(|e| VolumeError::BadArgument(format!("content is not valid base64: {e}"))),
    }
}

/// The bytes as text (when asked or when they are UTF-8) or base64.
fn encode(data: &[u8], encoding: Encoding) -> Result<(&'static str, String), VolumeError> {
    match encoding {
        Encoding::Base64 => Ok(("base64", base64::engine::general_purpose::STANDARD.encode(data))),
        Encoding::Text => match std::str::from_utf8(data) {
            Ok(s) => Ok(("text", s.to_string())),
            Err(e) => Err(VolumeError::BadArgument(format!(
                "the bytes are not UTF-8 text (at byte {}); read with encoding base64",
                e.valid_up_to()
            ))),
        },
        Encoding::Auto => match std::str::from_utf8(data) {
            Ok(s) => Ok(("text", s.to_string())),
            Err(_) => Ok(("base64", base64::engine::general_purpose::STANDARD.encode(data))),
        },
    }
}

#[tool_router]
impl McpServer {
    /// A server over `vol`; a read-only volume offers no writing tools.
    pub fn new(vol: Arc<Volume>) -> McpServer {
        let mut tool_router = Self::tool_router();
        if vol.limits().read_only {
            for name in WRITING_TOOLS {
                tool_router.remove_route(name);
            }
        }
        McpServer { vol, tool_router }
    }

    #[tool(
        description = "List a directory of the volume: name, kind (file, dir, symlink, other), size, mode, mtime of each entry; with metadata, their user.* attributes.",
        annotations(read_only_hint = true)
    )]
    async fn list(&self, Parameters(a): Parameters<ListArgs>) -> Result<CallToolResult, ErrorData> {
        let vol = self.vol.clone();
        let path = a.path.unwrap_or_else(|| "/".into());
        answer(
            blocking(move || {
                let (entries, truncated) = vol.list(&path, a.metadata)?;
                Ok(json!({ "path": magicfs_volume::VPath::parse(&path)?.display(), "entries": entries, "truncated": truncated }))
            })
            .await,
        )
    }

    #[tool(
        description = "Read a file: a byte range (offset, length), at most the server's read cap per call (capped=true says there is more; read again from offset+returned). Text comes back as text, other bytes as base64.",
        annotations(read_only_hint = true)
    )]
    async fn read(&self, Parameters(a): Parameters<ReadArgs>) -> Result<CallToolResult, ErrorData> {
        let vol = self.vol.clone();
        answer(
            blocking(move || {
                let r = vol.read(&a.path, a.offset, a.length)?;
                let (encoding, content) = encode(&r.data, a.encoding)?;
                let mut v = serde_json::to_value(&r).map_err(|e| VolumeError::Io(e.to_string()))?;
                v["length"] = json!(r.data.len());
                v["encoding"] = json!(encoding);
                v["content"] = json!(content);
                Ok(v)
            })
            .await,
        )
    }

    #[tool(
        description = "Write a file (overwrite, append or create_new), up to the server's write cap; parents creates missing directories. Content is text, or base64 with encoding=base64.",
        annotations(destructive_hint = true)
    )]
    async fn write(&self, Parameters(a): Parameters<WriteArgs>) -> Result<CallToolResult, ErrorData> {
        let vol = self.vol.clone();
        let mode = match a.mode {
            Mode::Overwrite => WriteMode::Overwrite,
            Mode::Append => WriteMode::Append,
            Mode::CreateNew => WriteMode::CreateNew,
        };
        answer(
            blocking(move || {
                let data = decode(&a.content, a.encoding)?;
                vol.write(&a.path, &data, mode, a.parents)
            })
            .await,
        )
    }

    #[tool(description = "Create a directory (parents: also the missing ones above it).")]
    async fn mkdir(&self, Parameters(a): Parameters<MkdirArgs>) -> Result<CallToolResult, ErrorData> {
        let vol = self.vol.clone();
        answer(blocking(move || vol.mkdir(&a.path, a.parents)).await)
    }

    #[tool(
        name = "move",
        description = "Move or rename a file or directory inside the volume (overwrite replaces what is at the destination).",
        annotations(destructive_hint = true)
    )]
    async fn move_entry(&self, Parameters(a): Parameters<MoveArgs>) -> Result<CallToolResult, ErrorData> {
        let vol = self.vol.clone();
        answer(blocking(move || vol.rename(&a.from, &a.to, a.overwrite)).await)
    }

    #[tool(
        description = "Delete a file, symlink or empty directory (recursive: a directory and everything in it).",
        annotations(destructive_hint = true)
    )]
    async fn delete(&self, Parameters(a): Parameters<DeleteArgs>) -> Result<CallToolResult, ErrorData> {
        let vol = self.vol.clone();
        answer(
            blocking(move || {
                let n = vol.delete(&a.path, a.recursive)?;
                Ok(json!({ "deleted": magicfs_volume::VPath::parse(&a.path)?.display(), "entries_removed": n }))
            })
            .await,
        )
    }

    #[tool(
        description = "Describe one entry: kind, size, mode, mtime, symlink target, and its user.* attributes (generation prompt and provenance, chat settings).",
        annotations(read_only_hint = true)
    )]
    async fn stat(&self, Parameters(a): Parameters<StatArgs>) -> Result<CallToolResult, ErrorData> {
        let vol = self.vol.clone();
        answer(blocking(move || vol.stat(&a.path)).await)
    }

    #[tool(
        description = "Search the volume's files by meaning: ranked paths with a score (cosine similarity) and the best-matching passage of each.",
        annotations(read_only_hint = true)
    )]
    async fn search(&self, Parameters(a): Parameters<SearchArgs>) -> Result<CallToolResult, ErrorData> {
        let vol = self.vol.clone();
        answer(
            blocking(move || {
                let hits = vol.search(&a.query, a.k)?;
                Ok(json!({ "query": a.query.trim(), "results": hits }))
            })
            .await,
        )
    }

    #[tool(
        description = "Send a message to the chat session sessions/<session> (a conversation kept as a file; created when new) and return the model's reply. With a progress token, the reply also streams as progress notifications, one per piece."
    )]
    async fn chat(
        &self,
        Parameters(a): Parameters<ChatArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let vol = self.vol.clone();
        let session = a.session.clone();
        let r = Progress { ctx }
            .run(move |send| vol.chat(&a.session, &a.message, &mut |piece| send(piece.to_string())))
            .await;
        answer(r.map(|reply| json!({ "session": format!("sessions/{session}"), "reply": reply })))
    }

    #[tool(
        description = "Generate from one sentence: kind=file writes a new file's content now with the language model; kind=tree plans a directory of files (each with its own prompt, written on first read, or now with fill=true; progress notifications per file)."
    )]
    async fn generate(
        &self,
        Parameters(a): Parameters<GenerateArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let vol = self.vol.clone();
        let r = match a.kind {
            GenerateKind::File => blocking(move || {
                let e = vol.generate_file(&a.path, &a.prompt)?;
                let preview = vol.read(&e.path, Some(0), Some(4096))?;
                Ok(json!({ "file": e, "preview": String::from_utf8_lossy(&preview.data) }))
            })
            .await,
            GenerateKind::Tree => {
                Progress { ctx }
                    .run(move |send| {
                        let files = vol.generate_tree(&a.path, &a.prompt, a.fill, &mut |done, total, path| {
                            if !path.is_empty() {
                                send(format!("writing {path} ({}/{total})", done + 1));
                            }
                        })?;
                        Ok(json!({ "dir": magicfs_volume::VPath::parse(&a.path)?.display(), "files": files, "filled": a.fill }))
                    })
                    .await
            }
        };
        answer(r)
    }

    #[tool(
        description = "Run a byte-window operation over a file, in place on all cores: counteq (count bytes equal to imm), xor, add, fnv (FNV-1a 64) or crc32c, over a range cut into windows; returns one value per window and the rate in GB/s.",
        annotations(read_only_hint = true)
    )]
    async fn compute(&self, Parameters(a): Parameters<ComputeArgs>) -> Result<CallToolResult, ErrorData> {
        let vol = self.vol.clone();
        let req =
            ComputeRequest { op: a.op.name().into(), imm: a.imm, offset: a.offset, length: a.length, window: a.window };
        answer(blocking(move || vol.compute(&a.path, &req)).await)
    }

    #[tool(
        description = "The volume's status: sizes, deduplication and compression, search index progress and model state, chat and generation counters, and the volume's limits.",
        annotations(read_only_hint = true)
    )]
    async fn status(&self) -> Result<CallToolResult, ErrorData> {
        let vol = self.vol.clone();
        answer(blocking(move || vol.status()).await)
    }
}

fn mime_of(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "md" => "text/markdown",
        "json" => "application/json",
        "html" | "htm" => "text/html",
        "txt" | "rs" | "py" | "sh" | "c" | "h" | "toml" | "yaml" | "yml" | "csv" | "log" => "text/plain",
        _ => "application/octet-stream",
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        let ro = if self.vol.limits().read_only { " It is read-only." } else { "" };
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_resources().build())
            .with_server_info(Implementation::new("magicfs", env!("CARGO_PKG_VERSION")).with_title("MagicFS"))
            .with_instructions(format!(
                "MagicFS volume at {} ({}): files that chat, generate, search and compute. Paths are relative to the volume's root; \
                 '..' is refused and symlinks must stay inside. Files are also resources ({URI_SCHEME}/PATH); \
                 {STATUS_URI} is the live status.{ro}",
                self.vol.backend().root(),
                self.vol.backend().kind()
            ))
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let start: usize = match request.and_then(|r| r.cursor) {
            Some(c) => c.parse().map_err(|_| ErrorData::invalid_params(format!("bad cursor {c:?}"), None))?,
            None => 0,
        };
        let vol = self.vol.clone();
        let files = tokio::task::spawn_blocking(move || vol.files(MAX_RESOURCES)).await.unwrap_or_default();
        let mut out = Vec::new();
        if start == 0 {
            out.push(
                Resource::new(STATUS_URI, ".magic/status")
                    .with_description("Live status of the volume (JSON)")
                    .with_mime_type("application/json"),
            );
        }
        for e in files.iter().skip(start).take(PAGE) {
            out.push(
                Resource::new(format!("{URI_SCHEME}{}", e.path), e.path.trim_start_matches('/'))
                    .with_mime_type(mime_of(&e.name))
                    .with_size(e.size),
            );
        }
        let mut result = ListResourcesResult::with_all_items(out);
        if start + PAGE < files.len() {
            result.next_cursor = Some((start + PAGE).to_string());
        }
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let t = ResourceTemplate::new(format!("{URI_SCHEME}/{{+path}}"), "file")
            .with_description("Any file of the volume, by its path from the root");
        Ok(ListResourceTemplatesResult::with_all_items(vec![t]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.clone();
        if !uri.starts_with(URI_SCHEME) {
            return Err(ErrorData::invalid_params(
                format!("{uri}: resources of this server are {URI_SCHEME}/PATH"),
                None,
            ));
        }
        let vol = self.vol.clone();
        let u = uri.clone();
        let contents = blocking(move || {
            let p = magicfs_volume::VPath::parse(&u)?;
            if p.as_str() == ".magic/status" {
                let st = vol.status()?;
                let text = serde_json::to_string_pretty(&st).map_err(|e| VolumeError::Io(e.to_string()))?;
                return Ok(ResourceContents::text(text, u).with_mime_type("application/json"));
            }
            let r = vol.read(p.as_str(), None, None)?;
            if r.capped {
                return Err(VolumeError::TooLarge(format!(
                    "{} is {} bytes, over the read cap of {} bytes: use the read tool with offset and length",
                    r.path,
                    r.size,
                    vol.limits().max_read
                )));
            }
            let mime = mime_of(p.name());
            Ok(match String::from_utf8(r.data) {
                Ok(text) => ResourceContents::text(text, u).with_mime_type(mime),
                Err(e) => ResourceContents::blob(base64::engine::general_purpose::STANDARD.encode(e.as_bytes()), u)
                    .with_mime_type(mime),
            })
        })
        .await
        .map_err(|e| match e {
            VolumeError::NotFound(m) => ErrorData::resource_not_found(m, Some(json!({ "uri": uri }))),
            other => ErrorData::invalid_params(other.to_string(), Some(json!({ "uri": uri, "kind": other.kind() }))),
        })?;
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(encode(b"hi", Encoding::Auto).unwrap(), ("text", "hi".into()));
        assert_eq!(encode(&[0xff], Encoding::Auto).unwrap(), ("base64", "/w==".into()));
        assert!(encode(&[0xff], Encoding::Text).is_err());
        assert_eq!(decode("/w==", Encoding::Base64).unwrap(), vec![0xff]);
        assert!(decode("!!", Encoding::Base64).is_err());
    }
}
