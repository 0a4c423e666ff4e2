//! Work one daemon does for a whole shared volume (answering a chat turn,
//! generating a file): claimed first, so that exactly one mount does it
//! (see `magicfs_store::claims`). On a private store every claim is granted.

use crate::Fs;
use magicfs_types::{FsError, FsResult};
use std::time::Duration;

impl Fs {
    /// Claims `key` of `kind` for this mount for `lease`; false while
    /// another mount holds it. Claiming again renews. One round trip on a
    /// shared volume (never call it on the request loop); none otherwise.
    pub fn claim(&self, kind: &str, key: &str, lease: Duration) -> FsResult<bool> {
        self.store.claim(kind, key, lease).map_err(|e| {
            log::error!("claiming {kind} {key}: {e}");
            FsError::Io
        })
    }

    /// Ends this mount's claim on `key` (a failure is logged: the claim
    /// then lapses with its lease).
    pub fn finish_claim(&self, kind: &str, key: &str) {
        if let Err(e) = self.store.finish_claim(kind, key) {
            log::warn!("ending the claim on {kind} {key}: {e}");
        }
    }
}
