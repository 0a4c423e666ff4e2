//! Times the embedder: one short query, and batches of long passages.
//! `cargo run --release -p magicfs-embed --example embed_speed`

use std::time::Instant;

/// CPU time of the process so far, in seconds.
fn cpu() -> f64 {
    let mut t = libc_timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime with a valid clock id and out pointer.
    unsafe { clock_gettime(2, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

#[repr(C)]
struct libc_timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    fn clock_gettime(clk: i32, tp: *mut libc_timespec) -> i32;
}

fn main() {
    let emb =
        magicfs_embed::Embedder::load(&magicfs_embed::default_model_dir()).expect("model (run scripts/models.sh)");
    for _ in 0..3 {
        let (t, c) = (Instant::now(), cpu());
        emb.embed_one("how do I rotate logs every night");
        println!("short query: {:.2} ms wall, {:.2} ms CPU", t.elapsed().as_secs_f64() * 1e3, (cpu() - c) * 1e3);
    }
    let text = "The quick brown fox jumps over the lazy dog near the river bank today. ".repeat(16);
    let ids: Vec<Vec<u32>> = (0..16).map(|_| emb.tokenizer().encode(&text, 256)).collect();
    for threads in [1, 2] {
        let (t, c) = (Instant::now(), cpu());
        emb.embed_ids(&ids, threads);
        let s = t.elapsed().as_secs_f64();
        let n = ids.len() as f64;
        println!(
            "{threads} thread(s): {} x {} tokens: {:.1} passages/s wall, {:.1} per CPU-second",
            ids.len(),
            ids[0].len(),
            n / s,
            n / (cpu() - c)
        );
    }
}
