//! `magicfs push` and `magicfs pull`: files moved as recipes of chunk hashes.

use crate::cli::{PullArgs, PushArgs};
use magicfs_remote::transfer::TransferReport;
use magicfs_remote::{Allowlist, Client};

fn client() -> Client {
    // The peer is named by the user; link-local and similar addresses stay refused.
    Client::new(Allowlist::any())
}

/// A bar over the chunk bytes that travel, and the callback that moves it.
fn progress(what: &str) -> (indicatif::ProgressBar, impl Fn(u64, u64)) {
    let bar = crate::progress::bytes(what, 0);
    let b = bar.clone();
    (bar, move |done, total| {
        b.set_length(total);
        b.set_position(done);
    })
}

fn print(what: &str, r: &TransferReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        println!(
            "{what} {}: {} logical bytes, {} bytes on the wire, {} of {} chunks sent ({} bytes before compression), ratio {:.1}, {:.2} s",
            r.path, r.logical_bytes, r.wire_bytes, r.chunks_sent, r.chunks, r.chunk_bytes_sent, r.ratio, r.elapsed_secs
        );
    }
    Ok(())
}

pub fn push(a: PushArgs) -> anyhow::Result<i32> {
    let token = a.token.filter(|t| !t.is_empty());
    let (bar, on) = progress(&format!("push {}", a.path.display()));
    let r = magicfs_remote::transfer::push(&a.path, &a.peer, token.as_deref(), &client(), &on)?;
    bar.finish_and_clear();
    print("pushed", &r, a.json)?;
    Ok(0)
}

pub fn pull(a: PullArgs) -> anyhow::Result<i32> {
    let token = a.token.filter(|t| !t.is_empty());
    let (bar, on) = progress(&format!("pull {}", a.remote_path));
    let r = magicfs_remote::transfer::pull(&a.peer, &a.remote_path, &a.local_path, token.as_deref(), &client(), &on)?;
    bar.finish_and_clear();
    print("pulled", &r, a.json)?;
    Ok(0)
}
