//! The AI features on a cluster volume, each done once cluster-wide:
//! chat turns answered by one daemon (the real small model), files
//! indexed once into the volume's shared pgvector index, generated files
//! generated once.

use super::{eventually, Volume, SECOND};
use crate::common::{set_xattr, smollm2, wait_indexed, Mount};
use magicfs_chat::transcript::{parse, TurnRole};
use std::io::Write;
use std::time::{Duration, Instant};

impl Volume {
    /// A mount that answers chat sessions with the real small model.
    fn mount_chat(&self, name: &str, extra: &[&str]) -> Mount {
        let cache = self.tmp.path().join(format!("{name}-cache"));
        let model = smollm2();
        let mut args = vec!["--cache-dir", cache.to_str().unwrap(), "--model-path", model.to_str().unwrap()];
        args.extend_from_slice(extra);
        Mount::cluster_chat(&self.tmp.path().join(name), &self.url, &args)
    }

    /// Runs one query in the volume's database.
    fn count(&self, sql: &'static str) -> i64 {
        let url: magicfs_pg::PgUrl = self.url.parse().expect("url");
        let pg = magicfs_pg::Pg::connect(&url, magicfs_pg::PgOptions::default()).expect("connect");
        pg.run(|c| Box::pin(async move { Ok(c.query_one(sql, &[]).await?.get::<_, i64>(0)) })).expect(sql)
    }
}

fn append(m: &Mount, id: &str, text: &str) {
    let path = m.path(&format!("sessions/{id}"));
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// The roles of session `id`'s turns as mount `m` reads it.
fn roles(m: &Mount, id: &str) -> Vec<TurnRole> {
    let bytes = std::fs::read(m.path(&format!("sessions/{id}"))).unwrap_or_default();
    parse(&bytes).map(|t| t.iter().map(|t| t.role).collect()).unwrap_or_default()
}

/// True while mount `m` sees the sentinel of session `id`.
fn generating(m: &Mount, id: &str) -> bool {
    m.path(&format!("sessions/.generating.{id}")).exists()
}

/// Waits until every mount reads session `id` with `turns` turns, the last
/// an Assistant turn, and no sentinel (steady for 300 ms).
fn wait_answered(mounts: &[&Mount], id: &str, turns: usize) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut steady = None;
    loop {
        let done = mounts.iter().all(|m| {
            let r = roles(m, id);
            !generating(m, id) && r.len() == turns && r.last() == Some(&TurnRole::Assistant)
        });
        if !done {
            steady = None;
        } else if steady.get_or_insert_with(Instant::now).elapsed() > Duration::from_millis(300) {
            return;
        }
        let logs: String = mounts.iter().map(|m| m.log()).collect();
        assert!(Instant::now() < deadline, "session {id}: not answered on every mount within 300 s\n{logs}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn replies(m: &Mount) -> u64 {
    let st = m.status();
    st["chat"]["replies"].as_u64().unwrap_or_else(|| panic!("no chat replies in {st}"))
}

#[test]
fn one_reply_per_chat_turn_cluster_wide() {
    let v = Volume::new("cluster-chat");
    let opts = ["--no-search", "--max-tokens", "24", "--temperature", "0", "--llm-workers", "2"];
    let ms: Vec<Mount> = ["a", "b", "c"].iter().map(|n| v.mount_chat(n, &opts)).collect();
    let all: Vec<&Mount> = ms.iter().collect();
    // Six sessions started at once, two from each mount. Every daemon sees
    // every sentinel, so all three compete for each turn.
    let ids: Vec<String> = (0..6).map(|i| format!("s{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        append(&ms[i % 3], id, &format!("User: Name a colour for room {i}.\n"));
    }
    for id in &ids {
        wait_answered(&all, id, 2);
    }
    // A follow-up to each, from another mount than the first turn's.
    for (i, id) in ids.iter().enumerate() {
        append(&ms[(i + 1) % 3], id, "User: And a second one?\n");
    }
    for id in &ids {
        wait_answered(&all, id, 4);
    }
    // Every mount reads the same transcripts: each turn answered once.
    for id in &ids {
        let texts: Vec<Vec<u8>> =
            ms.iter().map(|m| std::fs::read(m.path(&format!("sessions/{id}"))).unwrap()).collect();
        assert!(texts.windows(2).all(|w| w[0] == w[1]), "session {id} differs between mounts");
        assert_eq!(
            roles(&ms[0], id),
            [TurnRole::User, TurnRole::Assistant, TurnRole::User, TurnRole::Assistant],
            "session {id}:\n{}",
            String::from_utf8_lossy(&texts[0])
        );
    }
    // And by one daemon each: the daemons' replies add up to the turns.
    let counted: Vec<u64> = ms.iter().map(replies).collect();
    assert_eq!(counted.iter().sum::<u64>(), 12, "replies per daemon: {counted:?}");

    // A longer reply streams: another mount reads it growing before it ends.
    let long = "long";
    std::fs::File::create(ms[0].path(&format!("sessions/{long}"))).unwrap();
    set_xattr(&ms[0].path(&format!("sessions/{long}")), "user.magic.max_tokens", "160");
    append(&ms[0], long, "User: Tell me a long story about a dragon who guards a library.\n");
    let mut partial = 0;
    let t = Instant::now();
    while roles(&ms[1], long).last() != Some(&TurnRole::Assistant) || generating(&ms[1], long) {
        // Seen on the mounts that did not write it, mid-reply.
        for m in &ms[1..] {
            if generating(m, long) && roles(m, long).last() == Some(&TurnRole::Assistant) {
                partial += 1;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(300), "the long reply did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(partial > 0, "no other mount saw the reply before it was complete");
    wait_answered(&all, long, 2);
    assert_eq!(ms.iter().map(replies).sum::<u64>(), 13);
}

fn embedded(m: &Mount) -> u64 {
    m.status()["search"]["passages_embedded"].as_u64().expect("passages_embedded")
}

/// Names of the hits of `search/<query>/` on `m`.
fn hits(m: &Mount, query: &str) -> Vec<String> {
    std::fs::read_dir(m.path("search").join(query))
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.split_once('_').map(|(_, n)| n.to_string())).collect())
        .unwrap_or_default()
}

#[test]
fn one_index_entry_per_file_cluster_wide() {
    let v = Volume::new("cluster-index");
    let (a, b) = (v.mount("a"), v.mount("b"));
    let topics = [
        "Honey bees dance to tell the hive where the flowers are.",
        "The pull of the Moon raises the ocean tides twice a day.",
        "Chess players study openings such as the Sicilian defence.",
        "A comet grows a glowing tail of gas and dust near the Sun.",
        "Sourdough bread rises slowly because of wild yeast.",
        "Glaciers carve deep valleys as they creep down mountains.",
    ];
    for (i, text) in topics.iter().enumerate() {
        let m = if i % 2 == 0 { &a } else { &b };
        std::fs::write(m.path(&format!("note{i}.txt")), text).unwrap();
    }
    eventually("the notes on both mounts", SECOND, || (0..6).all(|i| a.path(&format!("note{i}.txt")).exists()));
    wait_indexed(&a, 6, Duration::from_secs(180));
    wait_indexed(&b, 6, Duration::from_secs(180));
    // A third mount starts on an indexed volume: nothing to embed.
    let c = v.mount("c");
    wait_indexed(&c, 6, Duration::from_secs(180));
    // One record per file in the volume's database, each passage embedded once across the mounts.
    assert_eq!(v.count("SELECT count(*) FROM search_docs WHERE NOT removed"), 6);
    let passages = v.count("SELECT count(*) FROM search_passages");
    let per_mount = [embedded(&a), embedded(&b), embedded(&c)];
    assert_eq!(per_mount.iter().sum::<u64>(), passages as u64, "passages embedded per mount: {per_mount:?}");
    assert_eq!(per_mount[2], 0, "the third mount embedded again what was indexed");
    // Every mount finds what the others wrote.
    for m in [&a, &b, &c] {
        eventually("a hit from the shared index", Duration::from_secs(10), || {
            hits(m, "why does the sea rise and fall").first().map(String::as_str) == Some("note1.txt")
        });
        eventually("a hit from the shared index", Duration::from_secs(10), || {
            hits(m, "insects communicating by dancing").first().map(String::as_str) == Some("note0.txt")
        });
    }
    drop((a, b, c));
    v.fsck();
}

#[test]
fn generated_files_are_generated_once_cluster_wide() {
    let v = Volume::new("cluster-gen");
    let model = smollm2();
    let args = ["--no-search", "--model-path", model.to_str().unwrap(), "--gen-max-tokens", "48"];
    let (a, b) = (v.mount_chat("a", &args), v.mount_chat("b", &args));
    let names = ["poem.txt", "story.txt", "list.txt"];
    for n in names {
        std::fs::write(a.path(n), "").unwrap();
        set_xattr(&a.path(n), "user.magic.prompt", &format!("a few words about {n}"));
    }
    for n in names {
        eventually("the prompt on the other mount", SECOND, || {
            crate::common::get_xattr(&b.path(n), "user.magic.prompt").is_some()
        });
    }
    // Both mounts read every file at once: each is generated by one of them.
    let read = |m: &Mount| names.map(|n| std::fs::read(m.path(n)).unwrap());
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| read(&a));
        let tb = s.spawn(|| read(&b));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    for (i, n) in names.iter().enumerate() {
        assert!(!ra[i].is_empty(), "{n} is empty");
        assert_eq!(ra[i], rb[i], "{n} differs between the mounts");
    }
    // Each file was generated by one mount, and the model was asked once per
    // file (answers checked, less the retries of invalid ones).
    let generated = |m: &Mount| m.status()["generation"]["generated"].as_u64().expect("generated");
    let counts = [generated(&a), generated(&b)];
    assert_eq!(counts.iter().sum::<u64>(), 3, "files generated per mount: {counts:?}");
    let asked = |m: &Mount| {
        let st = m.status()["generation"].clone();
        let checked: u64 = st["validation"]
            .as_object()
            .map(|o| o.values().map(|c| c["valid"].as_u64().unwrap_or(0) + c["invalid"].as_u64().unwrap_or(0)).sum())
            .unwrap_or(0);
        checked - st["retries"].as_u64().unwrap_or(0)
    };
    let asked = [asked(&a), asked(&b)];
    assert_eq!(asked.iter().sum::<u64>(), 3, "generations started per mount: {asked:?}");
}
