//! The object store behind a store URL (`object_store`: S3, a local
//! directory, memory), with bounded retries and errors that name the service.

use crate::error::{ObjectsError, ObjectsResult};
use crate::url::StoreUrl;
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// How long requests to the object store are retried before an operation
/// fails, unless `MAGICFS_S3_RETRY_SECS` says otherwise.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(20);

/// S3 settings from the standard environment variables.
#[derive(Clone, Debug)]
pub struct S3Settings {
    /// `AWS_ENDPOINT_URL` (AWS itself when unset).
    pub endpoint: Option<String>,
    /// `AWS_REGION` (`us-east-1` when unset).
    pub region: String,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY` (never printed).
    pub secret_key: Option<String>,
    /// How long a request is retried before it fails
    /// (`MAGICFS_S3_RETRY_SECS`, default [`DEFAULT_RETRY`]).
    pub retry: Duration,
}

impl S3Settings {
    /// Reads `AWS_ENDPOINT_URL`, `AWS_REGION` (or `AWS_DEFAULT_REGION`),
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    pub fn from_env() -> S3Settings {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        S3Settings {
            endpoint: var("AWS_ENDPOINT_URL"),
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".into()),
            access_key: var("AWS_ACCESS_KEY_ID"),
            secret_key: var("AWS_SECRET_ACCESS_KEY"),
            retry: var("MAGICFS_S3_RETRY_SECS")
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map_or(DEFAULT_RETRY, Duration::from_secs_f64),
        }
    }
}

/// An object store with the volume's key prefix.
#[derive(Clone)]
pub struct Backend {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    service: String,
    s3: Option<(String, S3Settings)>,
}

impl Backend {
    /// The object store a URL names. S3 settings come from the environment.
    pub fn open(url: &StoreUrl) -> ObjectsResult<Backend> {
        match url {
            StoreUrl::S3 { bucket, prefix } => Backend::s3(bucket, prefix, S3Settings::from_env()),
            StoreUrl::File(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| ObjectsError::Service {
                    service: url.service(),
                    what: "cannot create the directory".into(),
                    detail: e.to_string(),
                })?;
                let fs = LocalFileSystem::new_with_prefix(dir).map_err(|e| ObjectsError::Service {
                    service: url.service(),
                    what: "cannot open the directory".into(),
                    detail: e.to_string(),
                })?;
                Ok(Backend { store: Arc::new(fs), prefix: String::new(), service: url.service(), s3: None })
            }
            StoreUrl::Memory => Ok(Backend::memory(Arc::new(InMemory::new()))),
        }
    }

    /// A backend over objects in this process's memory (shared by clones).
    pub fn memory(store: Arc<InMemory>) -> Backend {
        Backend { store, prefix: String::new(), service: StoreUrl::Memory.service(), s3: None }
    }

    /// An S3 bucket, with explicit settings.
    pub fn s3(bucket: &str, prefix: &str, s: S3Settings) -> ObjectsResult<Backend> {
        crate::install_tls_provider();
        let url = StoreUrl::S3 { bucket: bucket.into(), prefix: prefix.into() };
        let service = match &s.endpoint {
            Some(e) => format!("S3 at {e} (bucket {bucket})"),
            None => format!("S3 (bucket {bucket}, region {})", s.region),
        };
        let window = s.retry;
        // Uploads are signed without hashing their bodies (UNSIGNED-PAYLOAD,
        // as JuiceFS sends for PutObject): a SHA-256 of every byte on the
        // client and again on the server cost a quarter of the daemon's CPU
        // in a sequential write and more on SeaweedFS. The request (method,
        // key, headers) stays signed; the bytes are protected by TLS on
        // https endpoints, and each chunk is named by its BLAKE3 hash,
        // which `magicfs fsck` checks.
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&s.region)
            .with_unsigned_payload(true)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: 1000,
                retry_timeout: window,
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(2))
                    .with_timeout(window.max(Duration::from_secs(30)))
                    .with_allow_http(true),
            );
        if let Some(e) = &s.endpoint {
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        if let (Some(k), Some(sec)) = (&s.access_key, &s.secret_key) {
            b = b.with_access_key_id(k).with_secret_access_key(sec);
        } else {
            b = b.with_skip_signature(true);
        }
        let store = b.build().map_err(|e| ObjectsError::BadUrl(format!("{url}: {e}")))?;
        Ok(Backend { store: Arc::new(store), prefix: prefix.to_string(), service, s3: Some((bucket.to_string(), s)) })
    }

    /// How long requests are retried before an operation fails.
    pub fn retry(&self) -> Duration {
        self.s3.as_ref().map_or(DEFAULT_RETRY, |(_, s)| s.retry)
    }

    /// The service, for log lines and errors.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The key of an object named `name` under the volume's prefix.
    pub fn key(&self, name: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(name)
        } else {
            ObjPath::from(format!("{}/{name}", self.prefix))
        }
    }

    fn fail(&self, what: impl Into<String>, e: object_store::Error) -> ObjectsError {
        let detail = e.to_string();
        let refused = ["SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "403 Forbidden"]
            .iter()
            .any(|c| detail.contains(c));
        match &e {
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                ObjectsError::Credentials { service: self.service.clone(), detail: s3_code(&detail) }
            }
            _ if refused => ObjectsError::Credentials { service: self.service.clone(), detail: s3_code(&detail) },
            _ if detail.contains("NoSuchBucket") => ObjectsError::NoBucket {
                service: self.service.clone(),
                bucket: self.s3.as_ref().map_or(String::new(), |(b, _)| b.clone()),
            },
            _ => ObjectsError::Service { service: self.service.clone(), what: what.into(), detail },
        }
    }

    /// Writes a new object; an object already there is left alone and
    /// reported as `Ok(false)`.
    pub async fn put_new(&self, key: &ObjPath, payload: PutPayload) -> ObjectsResult<bool> {
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.store.put_opts(key, payload, opts).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.fail(format!("cannot write {key}"), e)),
        }
    }

    /// The size of an object, `None` when there is none.
    pub async fn size(&self, key: &ObjPath) -> ObjectsResult<Option<u64>> {
        match self.store.head(key).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(format!("cannot look up {key}"), e)),
        }
    }

    /// Bytes `range` of an object.
    pub async fn get_range(&self, key: &ObjPath, range: Range<u64>) -> ObjectsResult<Bytes> {
        self.store.get_range(key, range).await.map_err(|e| self.fail(format!("cannot read {key}"), e))
    }

    /// Deletes an object (gone already is fine).
    pub async fn delete(&self, key: &ObjPath) -> ObjectsResult<()> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail(format!("cannot delete {key}"), e)),
        }
    }

    /// Every object under `dir` (a name under the prefix): its key's last
    /// part, its size and its age.
    pub async fn list(&self, dir: &str) -> ObjectsResult<Vec<(String, u64, Duration)>> {
        let key = self.key(dir);
        let mut s = self.store.list(Some(&key));
        let mut v = Vec::new();
        let now = std::time::SystemTime::now();
        while let Some(m) = s.next().await {
            let m = m.map_err(|e| self.fail(format!("cannot list {key}"), e))?;
            let age = now.duration_since(m.last_modified.into()).unwrap_or_default();
            if let Some(name) = m.location.filename() {
                v.push((name.to_string(), m.size, age));
            }
        }
        Ok(v)
    }

    /// Checks that the store answers and the bucket exists, with a clear
    /// error for a missing bucket or refused credentials.
    pub async fn check(&self) -> ObjectsResult<()> {
        let key = self.key("segments");
        self.store
            .list_with_delimiter(Some(&key))
            .await
            .map(|_| ())
            .map_err(|e| self.fail("cannot list the volume's objects", e))
    }

    /// Creates the bucket when it is missing (S3 only; object_store has no
    /// bucket calls, so this is a signed `HeadBucket`/`CreateBucket` made
    /// with `rusty-s3` and sent with `reqwest`).
    pub async fn ensure_bucket(&self) -> ObjectsResult<()> {
        let Some((bucket, s)) = &self.s3 else { return Ok(()) };
        let endpoint = s.endpoint.clone().unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", s.region));
        let fail = |what: &str, detail: String| ObjectsError::Service {
            service: self.service.clone(),
            what: what.to_string(),
            detail,
        };
        let base = endpoint.parse().map_err(|e| ObjectsError::BadUrl(format!("AWS_ENDPOINT_URL {endpoint:?}: {e}")))?;
        let b = rusty_s3::Bucket::new(base, rusty_s3::UrlStyle::Path, bucket.clone(), s.region.clone())
            .map_err(|e| ObjectsError::BadUrl(format!("bucket {bucket:?}: {e}")))?;
        let creds = match (&s.access_key, &s.secret_key) {
            (Some(k), Some(sec)) => Some(rusty_s3::Credentials::new(k.clone(), sec.clone())),
            _ => None,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| fail("cannot start an HTTP client", e.to_string()))?;
        use rusty_s3::S3Action;
        let head = rusty_s3::actions::HeadBucket::new(&b, creds.as_ref()).sign(Duration::from_secs(300));
        let r = client.head(head).send().await.map_err(|e| fail("cannot reach the service", e.to_string()))?;
        match r.status().as_u16() {
            200 => return Ok(()),
            404 => {}
            401 | 403 => {
                return Err(ObjectsError::Credentials {
                    service: self.service.clone(),
                    detail: format!("HeadBucket answered {}", r.status()),
                })
            }
            other => return Err(fail("cannot look up the bucket", format!("HeadBucket answered {other}"))),
        }
        let Some(creds) = creds.as_ref() else {
            return Err(fail(
                "cannot create the bucket",
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set".into(),
            ));
        };
        let create = rusty_s3::actions::CreateBucket::new(&b, creds);
        let body = create.body();
        let url = create.sign(Duration::from_secs(300));
        let r = client
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, body.len())
            .body(body)
            .send()
            .await
            .map_err(|e| fail("cannot create the bucket", e.to_string()))?;
        let status = r.status();
        if status.is_success() {
            log::info!("{}: created the bucket", self.service);
            return Ok(());
        }
        let text = r.text().await.unwrap_or_default();
        if text.contains("BucketAlreadyOwnedByYou") {
            return Ok(());
        }
        if status.as_u16() == 403 {
            return Err(ObjectsError::Credentials { service: self.service.clone(), detail: short(&text) });
        }
        Err(fail("cannot create the bucket", format!("{status}: {}", short(&text))))
    }
}

/// The S3 error code (`<Code>…</Code>`) of an answer, else its first line.
fn s3_code(s: &str) -> String {
    match (s.find("<Code>"), s.find("</Code>")) {
        (Some(a), Some(b)) if a + 6 < b => s[a + 6..b].to_string(),
        _ => short(s),
    }
}

/// The first line of a long service answer.
fn short(s: &str) -> String {
    let s = s.lines().next().unwrap_or("").trim();
    s.chars().take(300).collect()
}
