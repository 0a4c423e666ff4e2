//! `postgres://` URLs: parsed once, printed without the password.

use crate::error::PgError;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::config::Host;

/// A PostgreSQL connection URL (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?…]`).
///
/// `Display` never shows the password. A URL without a password takes it from
/// `PGPASSWORD`, as libpq does, so secrets can stay out of command lines.
#[derive(Clone)]
pub struct PgUrl {
    config: tokio_postgres::Config,
}

impl PgUrl {
    /// The driver configuration (with connect timeout and keepalives set).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The database name (`postgres` when the URL names none).
    pub fn dbname(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }

    /// The user name.
    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or("")
    }

    /// `HOST:PORT` of the first host, as used in messages.
    pub fn host_port(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}")
    }

    /// How messages name the service: `PostgreSQL at HOST:PORT`.
    pub fn service(&self) -> String {
        format!("PostgreSQL at {}", self.host_port())
    }

    /// The same server and credentials, another database.
    pub fn with_dbname(&self, db: &str) -> PgUrl {
        let mut config = self.config.clone();
        config.dbname(db);
        PgUrl { config }
    }
}

impl FromStr for PgUrl {
    type Err = PgError;

    fn from_str(s: &str) -> Result<PgUrl, PgError> {
        let s = s.trim();
        if !(s.starts_with("postgres://") || s.starts_with("postgresql://")) {
            return Err(PgError::BadUrl(format!(
                "expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, got {:?}",
                redact(s)
            )));
        }
        let mut config =
            tokio_postgres::Config::from_str(s).map_err(|e| PgError::BadUrl(format!("{}: {e}", redact(s))))?;
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        if config.get_password().is_none() {
            if let Ok(p) = std::env::var("PGPASSWORD") {
                config.password(p);
            }
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.keepalives(true).keepalives_idle(Duration::from_secs(10));
        config.application_name("magicfs");
        Ok(PgUrl { config })
    }
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self.user();
        let at = if user.is_empty() { String::new() } else { format!("{user}@") };
        write!(f, "postgres://{at}{}/{}", self.host_port(), self.dbname())
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({self})")
    }
}

/// `s` with any password between `://user:` and `@` replaced by `***`.
pub fn redact(s: &str) -> String {
    let Some(scheme_end) = s.find("://") else { return s.to_string() };
    let rest = &s[scheme_end + 3..];
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..auth_end].rfind('@') else { return s.to_string() };
    match rest[..at].find(':') {
        Some(colon) => format!("{}{}:***{}", &s[..scheme_end + 3], &rest[..colon], &rest[at..]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_print() {
        let u: PgUrl = "postgres://alice:s3cret@db.example:6543/vol".parse().unwrap();
        assert_eq!(u.to_string(), "postgres://alice@db.example:6543/vol");
        assert_eq!(format!("{u:?}"), "PgUrl(postgres://alice@db.example:6543/vol)");
        assert_eq!(u.service(), "PostgreSQL at db.example:6543");
        assert_eq!(u.with_dbname("other").dbname(), "other");
        assert_eq!(redact("postgres://alice:s3cret@h/db"), "postgres://alice:***@h/db");
        assert_eq!(redact("postgres://alice@h/db"), "postgres://alice@h/db");
    }

    #[test]
    fn other_schemes_are_explained() {
        let e = "mysql://root:pw@h/db".parse::<PgUrl>().unwrap_err().to_string();
        assert!(e.contains("expected postgres://"), "{e}");
        assert!(!e.contains("pw@"), "{e}");
    }

    #[test]
    fn defaults_fill_in() {
        let u: PgUrl = "postgresql://bob@localhost".parse().unwrap();
        assert_eq!(u.host_port(), "localhost:5432");
        assert_eq!(u.dbname(), "postgres");
    }
}
