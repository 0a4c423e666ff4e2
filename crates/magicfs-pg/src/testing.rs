//! The services a test run uses (PostgreSQL, SeaweedFS's S3, moto, JuiceFS),
//! and throwaway databases.
//!
//! [`services`] takes them from the environment `scripts/cluster-up.sh`
//! prints (`scripts/test.sh` sources it); when `MAGICFS_TEST_PG` is not set,
//! it runs `scripts/cluster-up.sh` itself (once per machine at a time, under
//! a file lock), so a test never skips for want of a service.

use crate::{Pg, PgError, PgOptions, PgUrl};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Where the services of a test run listen, and how to log in.
#[derive(Clone, Debug)]
pub struct Services {
    /// An admin URL of the PostgreSQL server (database `postgres`).
    pub pg_admin: String,
    /// The SeaweedFS S3 endpoint.
    pub s3_endpoint: String,
    /// The S3 region.
    pub s3_region: String,
    /// The S3 access key.
    pub s3_key: String,
    /// The S3 secret key.
    pub s3_secret: String,
    /// The moto S3 endpoint (accepts any keys).
    pub moto_endpoint: String,
    /// The JuiceFS binary, for benchmarks.
    pub juicefs: Option<PathBuf>,
    /// The PostgreSQL binaries (pg_ctl, psql), for tests that stop and start the server.
    pub pg_bin: Option<PathBuf>,
}

impl Services {
    /// The environment a child process (a mount, a CLI command) needs to
    /// reach the SeaweedFS S3 service.
    pub fn s3_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.s3_endpoint.clone()),
            ("AWS_REGION", self.s3_region.clone()),
            ("AWS_ACCESS_KEY_ID", self.s3_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.s3_secret.clone()),
        ]
    }
}

fn from_vars(get: impl Fn(&str) -> Option<String>) -> Option<Services> {
    Some(Services {
        pg_admin: get("MAGICFS_TEST_PG")?,
        s3_endpoint: get("AWS_ENDPOINT_URL")?,
        s3_region: get("AWS_REGION").unwrap_or_else(|| "us-east-1".into()),
        s3_key: get("AWS_ACCESS_KEY_ID")?,
        s3_secret: get("AWS_SECRET_ACCESS_KEY")?,
        moto_endpoint: get("MAGICFS_TEST_MOTO")?,
        juicefs: get("MAGICFS_JUICEFS").map(PathBuf::from),
        pg_bin: get("MAGICFS_PG_BIN").map(PathBuf::from),
    })
}

/// Parses the `export NAME='value'` lines `cluster-up.sh` prints.
fn parse_exports(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts")
}

/// The services of this test run, started by `scripts/cluster-up.sh` when
/// the environment does not name them. Panics with the script's output if
/// they cannot be started (a test that needs them cannot go on).
pub fn services() -> &'static Services {
    static S: OnceLock<Services> = OnceLock::new();
    S.get_or_init(|| {
        if let Some(s) = from_vars(|k| std::env::var(k).ok()) {
            return s;
        }
        let out = Command::new("bash")
            .arg(scripts_dir().join("cluster-up.sh"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run scripts/cluster-up.sh: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "scripts/cluster-up.sh failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let vars = parse_exports(&stdout);
        from_vars(|k| vars.get(k).cloned())
            .unwrap_or_else(|| panic!("scripts/cluster-up.sh printed no service environment:\n{stdout}"))
    })
}

/// A database created for one test and dropped with this value.
pub struct TestDb {
    /// Its URL.
    pub url: PgUrl,
    admin: PgUrl,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    /// Creates an empty database on the test run's PostgreSQL server.
    pub fn create() -> Result<TestDb, PgError> {
        let admin: PgUrl = services().pg_admin.parse()?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos());
        let name = format!(
            "magicfs_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            nanos.unwrap_or(0)
        );
        let pg = Pg::connect(&admin, PgOptions { max_connections: 1, threads: 1, ..PgOptions::default() })?;
        pg.execute_batch(&format!("CREATE DATABASE {name}"))?;
        Ok(TestDb { url: admin.with_dbname(&name), admin })
    }

    /// The URL as a string, with its password, for child processes.
    pub fn url_string(&self) -> String {
        let s = &services().pg_admin;
        // The admin URL names database `postgres`; swap in ours.
        match s.rfind('/') {
            Some(i) if i > s.find("://").map_or(0, |j| j + 2) => format!("{}/{}", &s[..i], self.url.dbname()),
            _ => format!("{s}/{}", self.url.dbname()),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let opts = PgOptions {
            max_connections: 1,
            threads: 1,
            retry_for: std::time::Duration::from_secs(5),
            ..PgOptions::default()
        };
        let dropped = Pg::connect(&self.admin, opts)
            .and_then(|pg| pg.execute_batch(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.url.dbname())));
        if let Err(e) = dropped {
            eprintln!("could not drop test database {}: {e}", self.url.dbname());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_parse() {
        let v = parse_exports("cluster-up: x\nexport A='1'\nexport B='x=y'\n");
        assert_eq!(v["A"], "1");
        assert_eq!(v["B"], "x=y");
    }
}

/// A PostgreSQL server of a test's own (its own data directory and port),
/// for tests that stop and start the server without disturbing others.
pub struct PrivatePg {
    dir: tempfile_dir::Dir,
    port: u16,
    password: String,
}

mod tempfile_dir {
    use std::path::{Path, PathBuf};

    /// A directory removed on drop.
    pub struct Dir(pub PathBuf);

    impl Dir {
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The user the server runs as: initdb refuses root.
const PG_OS_USER: &str = "magicfs-pg";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

impl PrivatePg {
    /// Initialises and starts a new server (about two seconds).
    pub fn start() -> PrivatePg {
        let bin = services().pg_bin.clone().expect("MAGICFS_PG_BIN (scripts/cluster-up.sh sets it)");
        let root = std::env::var("MAGICFS_CLUSTER_RUN").unwrap_or_else(|_| "/var/tmp/magicfs-cluster".into());
        let dir =
            Path::new(&root).join(format!("private-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create private server directory");
        let dir = tempfile_dir::Dir(dir);
        let password = "private-test".to_string();
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, format!("{password}\n")).expect("write password file");
        let data = dir.path().join("data");
        let s = PrivatePg { dir, port: free_port(), password };
        s.chown(&[s.dir.path(), &pwfile]);
        s.as_pg(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "magicfs", "-A", "scram-sha-256", "--no-instructions", "-E", "UTF8"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .map(|o| assert!(o.status.success(), "initdb failed: {}", String::from_utf8_lossy(&o.stderr)))
            .expect("run initdb");
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nmax_connections = 100\n",
            s.port,
            data.display()
        );
        let mut old = std::fs::read_to_string(data.join("postgresql.conf")).unwrap_or_default();
        old.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), old).expect("write postgresql.conf");
        s.resume();
        s
    }

    fn chown(&self, paths: &[&Path]) {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        for p in paths {
            let _ = Command::new("chown").args(["-R", PG_OS_USER]).arg(p).status();
        }
    }

    fn as_pg(&self, program: &Path) -> Command {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let mut c = Command::new("setpriv");
            c.args([&format!("--reuid={PG_OS_USER}"), &format!("--regid={PG_OS_USER}"), "--clear-groups", "--"])
                .arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn pg_ctl(&self, args: &[&str]) {
        let bin = services().pg_bin.clone().expect("MAGICFS_PG_BIN");
        let data = self.dir.path().join("data");
        let log = data.join("server.log");
        let out = self.as_pg(&bin.join("pg_ctl")).arg("-D").arg(&data).arg("-l").arg(&log).args(args).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!("pg_ctl {args:?} failed: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => panic!("cannot run pg_ctl: {e}"),
        }
    }

    /// Stops the server (fast shutdown: sessions are disconnected).
    pub fn stop(&self) {
        self.pg_ctl(&["-m", "fast", "-w", "stop"]);
    }

    /// Stops the server as a crash would (immediate shutdown: no final
    /// flush of its log, recovery at the next start).
    pub fn crash(&self) {
        self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
    }

    /// Starts the server again.
    pub fn resume(&self) {
        self.pg_ctl(&["-w", "-t", "60", "start"]);
    }

    /// The admin URL (database `postgres`), with its password.
    pub fn url_string(&self) -> String {
        format!("postgres://magicfs:{}@127.0.0.1:{}/postgres", self.password, self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        if let Some(bin) = services().pg_bin.clone() {
            let data = self.dir.path().join("data");
            let _ =
                self.as_pg(&bin.join("pg_ctl")).arg("-D").arg(&data).args(["-m", "immediate", "-w", "stop"]).output();
        }
    }
}
