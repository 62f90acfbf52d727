//! The small, blocking interface the remote cache needs from an object store, and its one
//! implementation on `object_store` (S3-compatible servers, a shared folder, memory for
//! tests). The async runtime lives here and nowhere else in the engine.

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// Why a remote operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The remote cannot be reached or refused the request: the run goes on locally.
    #[error("{0}")]
    Unavailable(String),
    #[error("`{url}` is not a remote this build can use: {message}")]
    BadUrl { url: String, message: String },
}

/// An object's name and size, from a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub modified: i64,
}

/// What creating an object found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Yes,
    /// Another writer created it first; it was left as it is.
    AlreadyExists,
}

/// Objects by name (relative to the remote's prefix), whole: every write is atomic, so a
/// reader sees an object complete or not at all.
pub trait Backend: Send + Sync {
    fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), BackendError>;
    /// Writes `name` only where it does not exist yet, atomically (the commit of an entry).
    fn create(&self, name: &str, bytes: Vec<u8>) -> Result<Created, BackendError>;
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, BackendError>;
    /// The size of `name`, `None` when absent.
    fn size(&self, name: &str) -> Result<Option<u64>, BackendError>;
    fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError>;
    fn delete(&self, name: &str) -> Result<(), BackendError>;
}

/// An [`ObjectStore`] under a prefix, driven by a runtime of its own.
pub struct ObjectBackend {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    runtime: tokio::runtime::Runtime,
}

fn unavailable(e: object_store::Error) -> BackendError {
    // The first line is the useful one; object_store chains retries and sources below it.
    let text = e.to_string();
    BackendError::Unavailable(text.lines().next().unwrap_or_default().to_string())
}

impl ObjectBackend {
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> ObjectBackend {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime needs no resources that can be missing");
        ObjectBackend {
            store,
            prefix: prefix.trim_matches('/').to_string(),
            runtime,
        }
    }

    /// `s3://bucket/prefix` (endpoint, region and credentials from the usual AWS variables)
    /// or `file:///path`.
    pub fn from_url(url: &str) -> Result<ObjectBackend, BackendError> {
        let bad = |message: String| BackendError::BadUrl {
            url: url.to_string(),
            message,
        };
        if let Some(path) = url.strip_prefix("file://") {
            std::fs::create_dir_all(path).map_err(|e| bad(e.to_string()))?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(path)
                .map_err(|e| bad(e.to_string()))?;
            return Ok(ObjectBackend::new(Arc::new(store), ""));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            return s3(rest).map_err(bad);
        }
        Err(bad("use s3://bucket/prefix or file:///path".into()))
    }

    fn path(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }
}

#[cfg(feature = "s3")]
fn s3(rest: &str) -> Result<ObjectBackend, String> {
    use object_store::aws::AmazonS3Builder;
    use object_store::{ClientOptions, RetryConfig};
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err("no bucket named".into());
    }
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        // A cache that waits minutes for a dead server helps nobody: fail fast, run locally.
        .with_retry(RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
            ..RetryConfig::default()
        })
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(3))
                .with_timeout(Duration::from_secs(120)),
        );
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        builder = builder.with_region("us-east-1");
    }
    if let Some(endpoint) = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .or_else(|| std::env::var("AWS_ENDPOINT").ok())
    {
        if endpoint.starts_with("http://") {
            builder = builder.with_allow_http(true);
        }
        builder = builder.with_endpoint(endpoint);
    }
    let store = builder.build().map_err(|e| e.to_string())?;
    Ok(ObjectBackend::new(Arc::new(store), prefix))
}

#[cfg(not(feature = "s3"))]
fn s3(_rest: &str) -> Result<ObjectBackend, String> {
    let _ = Duration::ZERO;
    Err("this build has no S3 support (feature `s3` of pipeline-engine)".into())
}

impl Backend for ObjectBackend {
    fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), BackendError> {
        let path = self.path(name);
        self.runtime
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(unavailable)
    }

    fn create(&self, name: &str, bytes: Vec<u8>) -> Result<Created, BackendError> {
        let path = self.path(name);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .runtime
            .block_on(self.store.put_opts(&path, PutPayload::from(bytes), opts))
        {
            Ok(_) => Ok(Created::Yes),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Created::AlreadyExists),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let path = self.path(name);
        self.runtime.block_on(async {
            match self.store.get(&path).await {
                Ok(got) => got.bytes().await.map(|b| Some(b.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
            .map_err(unavailable)
        })
    }

    fn size(&self, name: &str) -> Result<Option<u64>, BackendError> {
        let path = self.path(name);
        match self.runtime.block_on(self.store.head(&path)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        use futures::TryStreamExt;
        let path = self.path(prefix);
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let metas: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.store.list(Some(&path)).try_collect())
            .map_err(unavailable)?;
        Ok(metas
            .into_iter()
            .map(|m| Listed {
                name: m
                    .location
                    .as_ref()
                    .strip_prefix(&strip)
                    .unwrap_or(m.location.as_ref())
                    .to_string(),
                size: m.size,
                modified: m.last_modified.timestamp(),
            })
            .collect())
    }

    fn delete(&self, name: &str) -> Result<(), BackendError> {
        let path = self.path(name);
        match self.runtime.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}
