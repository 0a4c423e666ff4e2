//! Hybrid search through the real mount with the real model
//! (all-MiniLM-L6-v2 from `scripts/models.sh`, found via MAGICFS_MODELS or
//! ~/.cache/magicfs/models): relevance of paraphrased and exact-term
//! queries, entry names that sort best first, chat transcripts left out,
//! freshness (mount files and a watched host directory, including changes
//! made while the daemon was down), and bad input. Tests run one at a time so that the timing checks
//! do not compete with each other for the two cores.

mod common;
mod search_corpus;

use common::{magicfs, scratch, wait_indexed, Mount};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn models_present() {
    let dir = std::env::var_os("MAGICFS_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/magicfs/models"));
    assert!(
        dir.join("minilm/model.safetensors").is_file(),
        "the search model is missing from {}: run scripts/models.sh",
        dir.display()
    );
}

/// Entry names of `search/<query>/` in listing order (best first), without
/// `.results.json`; checks that the order is also the names' sorted order.
fn ls_search(m: &Mount, query: &str) -> Vec<String> {
    let dir = m.path("search").join(query);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("ls {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".results.json")
        .collect();
    // readdir order is the ranking; the prefix is the distance from a
    // perfect match, so sorting the names keeps that order.
    let scores: Vec<f32> = names.iter().map(|n| n.split('_').next().unwrap().parse().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] <= w[1]), "not best first: {names:?}");
    let mut sorted = names.clone();
    sorted.sort();
    let firsts = |v: &[String]| v.iter().map(|n| n[..5].to_string()).collect::<Vec<_>>();
    assert_eq!(firsts(&sorted), firsts(&names), "sorted names do not follow the ranking");
    names.dedup();
    names
}

fn hit_names(m: &Mount, query: &str) -> Vec<String> {
    ls_search(m, query).into_iter().map(|n| n.split_once('_').unwrap().1.to_string()).collect()
}

fn search_status(m: &Mount) -> Value {
    m.status()["search"].clone()
}

/// Polls `search/<query>/` until `pred` holds on the hit names; returns the time it took.
fn until(m: &Mount, query: &str, within: Duration, what: &str, pred: impl Fn(&[String]) -> bool) -> Duration {
    let t = Instant::now();
    loop {
        let hits = hit_names(m, query);
        if pred(&hits) {
            return t.elapsed();
        }
        assert!(t.elapsed() < within, "{what}: not within {within:?}; hits for {query:?}: {hits:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn relevance_through_the_mount() {
    let _g = serial();
    models_present();
    let tmp = scratch("search-rel");
    let m = Mount::start(&tmp.path().join("mnt"), None, &[]);
    std::fs::create_dir(m.path("docs")).unwrap();
    let docs: Vec<&(&str, &str)> = search_corpus::DOCS.iter().chain(search_corpus::SIBLINGS).collect();
    for (name, text) in &docs {
        std::fs::write(m.path("docs").join(name), text).unwrap();
    }
    assert!(search_corpus::DOCS.len() >= 50 && search_corpus::QUERIES.len() >= 20);
    assert!(search_corpus::SIBLINGS.len() >= 20 && search_corpus::EXACT.len() >= 20);
    wait_indexed(&m, docs.len() as u64, Duration::from_secs(180));
    // Paraphrased questions (with the near-identical siblings mixed in) and
    // exact terms: every answer in the top 3, nearly all first.
    for (set, queries, want_first) in
        [("paraphrase", search_corpus::QUERIES, 0.9), ("exact-term", search_corpus::EXACT, 0.95)]
    {
        let mut first = 0;
        let mut report = Vec::new();
        for (query, want) in queries {
            let hits = hit_names(&m, query);
            let pos = hits.iter().position(|h| h == want);
            report.push(format!("{query:?}: {want} at {pos:?}; top {:?}", &hits[..hits.len().min(3)]));
            assert!(pos.is_some_and(|p| p < 3), "{set}: {want} not in the top 3 for {query:?}: {hits:?}");
            if pos == Some(0) {
                first += 1;
            }
        }
        eprintln!("{}\n{set}: first for {first}/{} queries", report.join("\n"), queries.len());
        let share = first as f64 / queries.len() as f64;
        assert!(share >= want_first, "{set}: intended document first for only {first} of {} queries", queries.len());
    }

    // The entries are symlinks to the files; .results.json has path, score and passage.
    let q = "how do I stop my log files from filling the disk";
    let top = ls_search(&m, q).remove(0);
    let link = m.path("search").join(q).join(&top);
    assert_eq!(std::fs::read_link(&link).unwrap(), PathBuf::from("../../docs/logrotate.md"));
    assert!(std::fs::read_to_string(&link).unwrap().contains("logrotate.d"));
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(m.path("search").join(q).join(".results.json")).unwrap())
            .unwrap();
    let r0 = &json["results"][0];
    assert_eq!(r0["path"], "docs/logrotate.md");
    assert_eq!(r0["name"], top.as_str());
    // A question in plain words is ranked by meaning alone: score = cos / 3.
    let (score, cos) = (r0["score"].as_f64().unwrap(), r0["similarity"].as_f64().unwrap());
    assert!(cos > 0.3 && (score - cos / 3.0).abs() < 1e-3, "{r0}");
    let distance: f64 = top.split('_').next().unwrap().parse().unwrap();
    assert!((distance - (1.0 - score)).abs() < 0.0006, "{top} for score {score}");
    assert!(r0["passage"].as_str().unwrap().contains("rotate 7"));
    // Top-k: at most 20 entries by default.
    assert!(ls_search(&m, "the").len() <= 20);
    // Text containing '/' is written %2F.
    let hits = hit_names(&m, "TCP%2FIP connection setup SYN");
    assert_eq!(hits[0], "tcp-handshake.md");
    // The CLI twin.
    let out =
        magicfs(&["search", "--mount", m.dir.to_str().unwrap(), "persist database files across container restarts"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().next().unwrap().ends_with("docs/docker-volumes.md"), "{text}");
    let out = magicfs(&["index", "status", m.dir.to_str().unwrap()]);
    let want = format!("{} files", docs.len());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&want), "{}", String::from_utf8_lossy(&out.stdout));

    // Plain `ls` (sorted by name) lists the best hit first.
    for (query, want) in search_corpus::EXACT.iter().chain(search_corpus::QUERIES).step_by(5) {
        let out = std::process::Command::new("ls").arg(m.path("search").join(query)).output().unwrap();
        let listed = String::from_utf8_lossy(&out.stdout);
        let first = listed.lines().next().unwrap_or("");
        assert_eq!(first, ls_search(&m, query)[0], "ls of {query:?}:\n{listed}");
        assert!(first.ends_with(&format!("_{want}")), "ls of {query:?} lists {first} first, not {want}");
    }
}

/// Chat transcripts under `sessions/` stay out of search by default (a real
/// conversation with the chat model), and come in with `--search-sessions`.
#[test]
fn transcripts_stay_out_of_search_by_default() {
    let _g = serial();
    models_present();
    let tmp = scratch("search-sessions");
    let (mnt, data) = (tmp.path().join("mnt"), tmp.path().join("data"));
    let mut m = Mount::start_chat(&mnt, Some(&data), &[]);
    std::fs::create_dir(m.path("docs")).unwrap();
    std::fs::write(
        m.path("docs/passport.md"),
        "Renewing a passport: fill in the renewal form, add a photo and mail both.",
    )
    .unwrap();
    std::fs::write(m.path("sessions/travel"), "User: My passport number is X93718245. Remind me to renew it.\n")
        .unwrap();
    let end = Instant::now() + Duration::from_secs(300);
    while m.path("sessions/.generating.travel").exists() {
        assert!(Instant::now() < end, "no reply within 300 s\n{}", m.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let transcript = std::fs::read_to_string(m.path("sessions/travel")).unwrap();
    assert!(transcript.contains("Assistant:"), "{transcript}");
    wait_indexed(&m, 1, Duration::from_secs(60));
    let s = search_status(&m);
    assert_eq!((s["files_indexed"].as_u64(), &s["include_sessions"]), (Some(1), &Value::Bool(false)), "{s}");
    for q in ["X93718245", "remind me to renew my passport"] {
        let json = std::fs::read_to_string(m.path("search").join(q).join(".results.json")).unwrap();
        let v: Value = serde_json::from_str(&json).unwrap();
        let paths: Vec<&str> = v["results"].as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap()).collect();
        assert!(paths.iter().all(|p| !p.starts_with("sessions/")), "{q:?}: {paths:?}");
    }
    assert_eq!(hit_names(&m, "renew my passport").first().map(String::as_str), Some("passport.md"));
    m.stop();

    // Asked for, the transcript is indexed (at start-up) and found by the number in it.
    let m = Mount::start(&mnt, Some(&data), &["--search-sessions"]);
    wait_indexed(&m, 2, Duration::from_secs(60));
    assert_eq!(hit_names(&m, "X93718245").first().map(String::as_str), Some("travel"));
    assert_eq!(search_status(&m)["include_sessions"], true);
}

#[test]
fn freshness_of_mount_files_and_restart() {
    let _g = serial();
    models_present();
    let tmp = scratch("search-fresh");
    let data = tmp.path().join("data");
    let mut m = Mount::start(&tmp.path().join("mnt"), Some(&data), &[]);
    std::fs::write(m.path("other.md"), "Notes about knitting scarves with wool yarn and circular needles.").unwrap();
    wait_indexed(&m, 1, Duration::from_secs(60));
    let q = "volcanic eruptions and lava flows";
    assert!(!hit_names(&m, q).contains(&"volcano.md".to_string()));

    // New file: found within 2 s of close.
    std::fs::write(m.path("volcano.md"), "Volcanoes erupt when magma rises; lava flows and ash clouds follow.")
        .unwrap();
    let took =
        until(&m, q, Duration::from_secs(2), "new file", |h| h.first().map(String::as_str) == Some("volcano.md"));
    eprintln!("new mount file found after {took:?}");

    // Modified so it no longer matches: drops out.
    std::fs::write(m.path("volcano.md"), "Recipe: whisk eggs with sugar, fold in flour, bake the sponge cake.")
        .unwrap();
    until(&m, q, Duration::from_secs(5), "modified file", |h| !h.contains(&"volcano.md".to_string()));
    until(&m, "baking a sponge cake", Duration::from_secs(5), "new text", |h| {
        h.first().map(String::as_str) == Some("volcano.md")
    });

    // Renamed: the link follows the new name.
    std::fs::rename(m.path("volcano.md"), m.path("cake.md")).unwrap();
    until(&m, "baking a sponge cake", Duration::from_secs(5), "renamed file", |h| {
        h.first().map(String::as_str) == Some("cake.md")
    });

    // Deleted: disappears.
    std::fs::remove_file(m.path("cake.md")).unwrap();
    until(&m, "baking a sponge cake", Duration::from_secs(5), "deleted file", |h| !h.contains(&"cake.md".to_string()));

    // Restart: nothing is embedded again, results are there at once.
    m.remount();
    wait_indexed(&m, 1, Duration::from_secs(60));
    let s = search_status(&m);
    assert_eq!(s["passages_embedded"], 0, "unchanged files were re-embedded: {s}");
    let hits = hit_names(&m, "knitting a wool scarf");
    let json = std::fs::read_to_string(m.path("search/knitting a wool scarf/.results.json")).unwrap();
    assert_eq!(hits.first().map(String::as_str), Some("other.md"), "{json}\n{s}");
    assert!(data.join("search.redb").is_file());
}

#[test]
fn freshness_of_a_watched_directory() {
    let _g = serial();
    models_present();
    let tmp = scratch("search-watch");
    let host = tmp.path().join("notes");
    std::fs::create_dir_all(host.join("sub")).unwrap();
    std::fs::write(host.join("bees.txt"), "Honey bees dance to tell the hive where the flowers are.").unwrap();
    std::fs::write(host.join("sub/tides.txt"), "The pull of the Moon raises the ocean tides twice a day.").unwrap();
    std::fs::write(host.join("stay.txt"), "Chess players study openings such as the Sicilian defence.").unwrap();
    let data = tmp.path().join("data");
    let hs = host.to_str().unwrap();
    let mut m = Mount::start(&tmp.path().join("mnt"), Some(&data), &["--watch", hs]);
    wait_indexed(&m, 3, Duration::from_secs(60));
    // Absolute links to host files.
    let top = ls_search(&m, "why does the sea rise and fall").remove(0);
    assert_eq!(top.split_once('_').unwrap().1, "tides.txt");
    let link = std::fs::read_link(m.path("search/why does the sea rise and fall").join(&top)).unwrap();
    assert_eq!(link, host.join("sub/tides.txt").canonicalize().unwrap());

    // Create.
    std::fs::write(host.join("comet.txt"), "A comet grows a glowing tail of gas and dust near the Sun.").unwrap();
    let q = "icy visitor with a bright tail near the sun";
    let took =
        until(&m, q, Duration::from_secs(2), "new host file", |h| h.first().map(String::as_str) == Some("comet.txt"));
    eprintln!("new host file found after {took:?}");
    // Modify.
    std::fs::write(host.join("comet.txt"), "Tax forms are due in April; keep your receipts.").unwrap();
    until(&m, q, Duration::from_secs(5), "modified host file", |h| !h.contains(&"comet.txt".to_string()));
    // Rename.
    std::fs::rename(host.join("bees.txt"), host.join("pollinators.txt")).unwrap();
    until(&m, "insects that make honey", Duration::from_secs(5), "renamed host file", |h| {
        h.first().map(String::as_str) == Some("pollinators.txt") && !h.contains(&"bees.txt".to_string())
    });
    // Delete.
    std::fs::remove_file(host.join("sub/tides.txt")).unwrap();
    until(&m, "why does the sea rise and fall", Duration::from_secs(5), "deleted host file", |h| {
        !h.contains(&"tides.txt".to_string())
    });

    // Changes while the daemon is down are reconciled at start-up.
    m.stop();
    std::fs::write(host.join("glacier.txt"), "Glaciers are rivers of ice that carve valleys as they slide.").unwrap();
    std::fs::write(host.join("comet.txt"), "A comet grows a glowing tail of gas and dust near the Sun.").unwrap();
    std::fs::remove_file(host.join("pollinators.txt")).unwrap();
    m.restart();
    wait_indexed(&m, 3, Duration::from_secs(60));
    assert_eq!(hit_names(&m, "slow moving ice carving mountains")[0], "glacier.txt");
    assert_eq!(hit_names(&m, q)[0], "comet.txt");
    assert!(!hit_names(&m, "insects that make honey").contains(&"pollinators.txt".to_string()));
    let s = search_status(&m);
    // Only the two changed files were embedded; the comet passage was embedded before.
    assert!(s["passages_embedded"].as_u64().unwrap() <= 2, "{s}");
    assert!(s["watch"][0]["state"] == "watching", "{s}");
}

fn errno_of(r: std::io::Result<std::fs::ReadDir>) -> i32 {
    r.err().and_then(|e| e.raw_os_error()).unwrap_or(0)
}

#[test]
fn bad_input_has_defined_answers() {
    let _g = serial();
    models_present();
    let tmp = scratch("search-bad");
    let host = tmp.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("good.txt"), "Instructions for repotting a root-bound houseplant.").unwrap();
    std::fs::write(host.join("blob.bin"), [0u8, 159, 146, 150, 0, 1, 2, 3].repeat(1000)).unwrap();
    let huge = std::fs::File::create(host.join("huge.txt")).unwrap();
    huge.set_len(64 << 20).unwrap();
    drop(huge);
    let fifo = common::cpath(&host.join("pipe"));
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    std::os::unix::fs::symlink(host.join("nowhere"), host.join("dangling")).unwrap();
    std::fs::write(host.join("secret.txt"), "unreadable for others").unwrap();
    std::fs::set_permissions(host.join("secret.txt"), std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    // A web page: read in one pass, scripts left out, numeric entities decoded.
    let script = "<script>var id = 'CVE-2024-9999';</script>".repeat(2000);
    std::fs::write(
        host.join("page.html"),
        format!(
            "<html><head>{script}</head><body><p>Patch CVE&#45;2024&#x2D;4417 in caf&#233; routers.</p></body></html>"
        ),
    )
    .unwrap();
    let m = Mount::start(&tmp.path().join("mnt"), None, &["--watch", host.to_str().unwrap()]);
    wait_indexed(&m, 2, Duration::from_secs(60));
    let json = std::fs::read_to_string(m.path("search/CVE-2024-4417/.results.json")).unwrap();
    let r0 = &serde_json::from_str::<Value>(&json).unwrap()["results"][0];
    assert!(r0["path"].as_str().unwrap().ends_with("/page.html"), "{json}");
    let passage = r0["passage"].as_str().unwrap();
    assert!(passage.contains("Patch CVE-2024-4417 in café routers.") && !passage.contains("9999"), "{passage}");
    let s = search_status(&m);
    assert_eq!(s["skipped"]["binary"], 1, "{s}");
    assert_eq!(s["skipped"]["too_large"], 1, "{s}");
    assert_eq!(s["skipped"]["not_regular"], 1, "{s}");
    assert_eq!(hit_names(&m, "repotting plants")[0], "good.txt");

    // Empty (all-blank) query: no entries; .results.json says why.
    let blank = m.path("search").join("   ");
    let names: Vec<_> = std::fs::read_dir(&blank).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, [".results.json"]);
    let j: Value = serde_json::from_str(&std::fs::read_to_string(blank.join(".results.json")).unwrap()).unwrap();
    assert_eq!(j["error"], "empty query");
    // A query is one path component: over 255 bytes is ENAMETOOLONG
    // (the kernel passes up to 1024 bytes to FUSE; the mount refuses them).
    for len in [256, 300, 1024] {
        let q = "x".repeat(len);
        assert_eq!(errno_of(std::fs::read_dir(m.path("search").join(&q))), libc::ENAMETOOLONG, "{len} bytes");
    }
    let q = format!("repotting plants {}", "x".repeat(255 - 17));
    assert_eq!(q.len(), 255);
    assert!(std::fs::read_dir(m.path("search").join(&q)).is_ok(), "a 255-byte query is listed");
    let long = "lava ".repeat(820);
    assert_eq!(errno_of(std::fs::read_dir(m.path("search").join(&long))), libc::ENAMETOOLONG);
    // The CLI takes it (cut to one path component) and answers.
    let out = magicfs(&["search", "--mount", m.dir.to_str().unwrap(), &long]);
    assert_ne!(out.status.code(), Some(101), "{}", String::from_utf8_lossy(&out.stderr));
    let out = magicfs(&["search", "--mount", m.dir.to_str().unwrap(), "  "]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("empty"));
    // search/ is read-only.
    assert!(std::fs::write(m.path("search/x/new.txt"), "no").is_err());
    assert!(std::fs::create_dir(m.path("search/y/z")).is_err());
    assert!(std::fs::write(m.path("search"), "no").is_err());

    // The watched directory disappears: its files leave the index, the mount stays up.
    std::fs::set_permissions(host.join("secret.txt"), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::remove_dir_all(&host).unwrap();
    until(&m, "repotting plants", Duration::from_secs(5), "vanished dir", |h| !h.contains(&"good.txt".to_string()));
    let end = Instant::now() + Duration::from_secs(5);
    while search_status(&m)["watch"][0]["state"] != "missing" {
        assert!(Instant::now() < end, "{}", search_status(&m));
        std::thread::sleep(Duration::from_millis(50));
    }
    // It comes back: scanned and watched again.
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("again.txt"), "Instructions for repotting a root-bound houseplant.").unwrap();
    until(&m, "repotting plants", Duration::from_secs(10), "returned dir", |h| h.contains(&"again.txt".to_string()));
    assert!(Path::new(&m.dir).join(".magic/status").exists());
}
