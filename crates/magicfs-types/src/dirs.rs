//! Where MagicFS keeps things on this machine, after the XDG Base Directory
//! specification: stores under `$XDG_DATA_HOME/magicfs`, models under
//! `$XDG_CACHE_HOME/magicfs/models` (or `$MAGICFS_MODELS`), settings under
//! `$XDG_CONFIG_HOME/magicfs`, logs of background mounts under
//! `$XDG_STATE_HOME/magicfs`.
//!
//! An `XDG_*` variable counts only when it holds an absolute path (as the
//! specification says). Without it the home directory is used: `$HOME` when it
//! is an absolute path, else the home of the user's password entry. A process
//! with no home at all (a service account without one) gets the system
//! locations `/var/lib`, `/var/cache`, `/etc` and `/var/log`.

use std::path::{Path, PathBuf};

/// System-wide configuration file, read before the user's.
pub const SYSTEM_CONFIG: &str = "/etc/magicfs/config.toml";

fn absolute(v: Option<std::ffi::OsString>) -> Option<PathBuf> {
    v.map(PathBuf::from).filter(|p| p.is_absolute())
}

/// The user's home directory: `$HOME` if it is an absolute path, else the
/// password entry's; `None` when neither names one.
pub fn home() -> Option<PathBuf> {
    absolute(std::env::var_os("HOME")).or_else(|| {
        // `HOME` unset or unusable: std falls back to getpwuid_r.
        #[allow(deprecated)]
        absolute(std::env::home_dir().map(PathBuf::into_os_string))
    })
}

/// `$VAR` if absolute, else `~/under`, else `system`.
fn base(var: &str, under: &str, system: &str) -> PathBuf {
    absolute(std::env::var_os(var)).or_else(|| home().map(|h| h.join(under))).unwrap_or_else(|| PathBuf::from(system))
}

/// `$XDG_DATA_HOME/magicfs` (`~/.local/share/magicfs`).
pub fn data_dir() -> PathBuf {
    base("XDG_DATA_HOME", ".local/share", "/var/lib").join("magicfs")
}

/// The store `magicfs mount` uses without `--data`: [`data_dir`]`/default`.
pub fn default_store() -> PathBuf {
    data_dir().join("default")
}

/// `$XDG_CACHE_HOME/magicfs` (`~/.cache/magicfs`): models, virtual
/// environments, tools.
pub fn cache_dir() -> PathBuf {
    base("XDG_CACHE_HOME", ".cache", "/var/cache").join("magicfs")
}

/// The models directory `scripts/models.sh` fills: `$MAGICFS_MODELS`, else
/// [`cache_dir`]`/models`.
pub fn models_dir() -> PathBuf {
    match std::env::var_os("MAGICFS_MODELS").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => cache_dir().join("models"),
    }
}

/// `$XDG_CONFIG_HOME/magicfs` (`~/.config/magicfs`).
pub fn config_dir() -> PathBuf {
    base("XDG_CONFIG_HOME", ".config", "/etc").join("magicfs")
}

/// The configuration files read when `--config` is not given, in the order
/// they apply (a later file's settings win): [`SYSTEM_CONFIG`], then
/// [`config_dir`]`/config.toml`.
pub fn config_files() -> Vec<PathBuf> {
    let user = config_dir().join("config.toml");
    let mut files = vec![PathBuf::from(SYSTEM_CONFIG)];
    if user != Path::new(SYSTEM_CONFIG) {
        files.push(user);
    }
    files
}

/// `$XDG_STATE_HOME/magicfs` (`~/.local/state/magicfs`): logs of background
/// mounts that have no data directory.
pub fn state_dir() -> PathBuf {
    base("XDG_STATE_HOME", ".local/state", "/var/log").join("magicfs")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The environment is process-wide: one test changes it, start to end.
    #[test]
    fn xdg_variables_home_and_fallbacks() {
        let vars = ["HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "MAGICFS_MODELS"];
        let saved: Vec<_> = vars.iter().map(|v| (v, std::env::var_os(v))).collect();
        for v in vars {
            std::env::remove_var(v);
        }
        std::env::set_var("HOME", "/home/ada");
        assert_eq!(data_dir(), Path::new("/home/ada/.local/share/magicfs"));
        assert_eq!(default_store(), Path::new("/home/ada/.local/share/magicfs/default"));
        assert_eq!(models_dir(), Path::new("/home/ada/.cache/magicfs/models"));
        assert_eq!(config_dir(), Path::new("/home/ada/.config/magicfs"));
        assert_eq!(state_dir(), Path::new("/home/ada/.local/state/magicfs"));
        assert_eq!(config_files(), [Path::new(SYSTEM_CONFIG), Path::new("/home/ada/.config/magicfs/config.toml")]);

        std::env::set_var("XDG_CACHE_HOME", "/fast/cache");
        std::env::set_var("XDG_DATA_HOME", "relative/is/ignored");
        std::env::set_var("XDG_CONFIG_HOME", "/cfg");
        assert_eq!(models_dir(), Path::new("/fast/cache/magicfs/models"));
        assert_eq!(data_dir(), Path::new("/home/ada/.local/share/magicfs"));
        assert_eq!(config_dir(), Path::new("/cfg/magicfs"));
        std::env::set_var("MAGICFS_MODELS", "/models");
        assert_eq!(models_dir(), Path::new("/models"));

        // No usable HOME: the password entry's home, the same for every directory.
        std::env::set_var("HOME", "");
        let pw = home();
        assert!(pw.as_ref().is_none_or(|h| h.is_absolute()), "{pw:?}");
        let expect = pw.map(|h| h.join(".local/share/magicfs")).unwrap_or_else(|| PathBuf::from("/var/lib/magicfs"));
        assert_eq!(data_dir(), expect);

        for (v, old) in saved {
            match old {
                Some(o) => std::env::set_var(v, o),
                None => std::env::remove_var(v),
            }
        }
    }
}
