//! The PostgreSQL connection against real servers: the test run's shared one
//! and private ones that are stopped and started.

use magicfs_pg::testing::{services, PrivatePg, TestDb};
use magicfs_pg::{Migration, Note, Pg, PgError, PgOptions, PgUrl};
use std::time::{Duration, Instant};

fn quick() -> PgOptions {
    PgOptions { retry_for: Duration::from_secs(3), ..PgOptions::default() }
}

#[test]
fn queries_migrations_and_notifications() {
    let db = TestDb::create().unwrap();
    let pg = Pg::connect(&db.url, quick()).unwrap();
    let steps = [
        Migration { name: "001", sql: "CREATE TABLE t (k int PRIMARY KEY, v text)" },
        Migration { name: "002", sql: "ALTER TABLE t ADD COLUMN w int; CREATE INDEX ON t (w)" },
    ];
    assert_eq!(pg.migrate("demo", &steps).unwrap(), vec!["001", "002"]);
    assert!(pg.migrate("demo", &steps).unwrap().is_empty(), "a second run applies nothing");
    // Concurrent callers wait for each other and apply each step once.
    let more = [Migration { name: "003", sql: "ALTER TABLE t ADD COLUMN x int" }];
    let applied: Vec<usize> = std::thread::scope(|s| {
        let hs: Vec<_> =
            (0..4).map(|_| s.spawn(|| pg.migrate("demo", &[steps[0], steps[1], more[0]]).unwrap().len())).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(applied.iter().sum::<usize>(), 1, "{applied:?}");

    let n = pg
        .run(|c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                tx.execute("INSERT INTO t (k, v) VALUES (1, 'one'), (2, 'two')", &[]).await?;
                let n: i64 = tx.query_one("SELECT count(*) FROM t", &[]).await?.get(0);
                tx.commit().await?;
                Ok(n)
            })
        })
        .unwrap();
    assert_eq!(n, 2);

    let listener = pg.listen(&["changes"]);
    assert_eq!(listener.notes().recv_timeout(Duration::from_secs(10)).unwrap(), Note::Connected);
    pg.execute_batch("NOTIFY changes, 'seq 7'").unwrap();
    match listener.notes().recv_timeout(Duration::from_secs(10)).unwrap() {
        Note::Notification { channel, payload } => {
            assert_eq!((channel.as_str(), payload.as_str()), ("changes", "seq 7"))
        }
        other => panic!("unexpected {other:?}"),
    }

    // A value that does not convert is a client-side failure: not retried.
    let t = Instant::now();
    let e = pg
        .run(|c| Box::pin(async move { c.query_one("SELECT 'text'::text", &[]).await?.try_get::<_, i64>(0) }))
        .unwrap_err();
    assert!(matches!(e, PgError::Query { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2), "not retried: {:?}", t.elapsed());

    // A failed statement is not retried and says what the server said.
    let e = pg.execute_batch("SELECT * FROM no_such_table").unwrap_err();
    assert_eq!(e.code(), Some("42P01"), "{e}");
    assert!(e.to_string().contains("no_such_table"), "{e}");
}

#[test]
fn bad_logins_and_places_are_explained_at_once() {
    let admin: PgUrl = services().pg_admin.parse().unwrap();
    let wrong = format!("postgres://{}:wrong-password@{}/postgres", admin.user(), admin.host_port());
    let t = Instant::now();
    let e = Pg::connect(&wrong.parse().unwrap(), quick()).err().expect("a wrong password must fail");
    assert!(matches!(e, PgError::Auth { .. }), "{e}");
    assert!(e.to_string().contains("refused the login"), "{e}");
    assert!(!e.to_string().contains("wrong-password"), "the password must not be shown: {e}");
    assert!(t.elapsed() < Duration::from_secs(3), "not retried");

    let e = Pg::connect(&admin.with_dbname("magicfs_no_such_db"), quick()).err().expect("missing database");
    assert!(matches!(e, PgError::MissingDatabase { .. }), "{e}");
    assert!(e.to_string().contains("magicfs_no_such_db"), "{e}");

    // Nothing listens on this port: retried for the bounded time, then named.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url: PgUrl = format!("postgres://u:p@127.0.0.1:{port}/db").parse().unwrap();
    let t = Instant::now();
    let e = Pg::connect(&url, PgOptions { retry_for: Duration::from_secs(1), ..PgOptions::default() }).err().unwrap();
    assert!(e.is_unreachable(), "{e}");
    assert!(e.to_string().contains(&format!("PostgreSQL at 127.0.0.1:{port} is unreachable")), "{e}");
    assert!(t.elapsed() >= Duration::from_millis(500) && t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn calls_ride_out_a_server_restart() {
    let server = PrivatePg::start();
    let url: PgUrl = server.url_string().parse().unwrap();
    let pg = Pg::connect(&url, PgOptions { retry_for: Duration::from_secs(30), ..PgOptions::default() }).unwrap();
    pg.execute_batch("CREATE TABLE k (v int)").unwrap();
    let listener = pg.listen(&["c"]);
    assert_eq!(listener.notes().recv_timeout(Duration::from_secs(10)).unwrap(), Note::Connected);

    server.stop();
    let writer = std::thread::spawn({
        let pg = pg.clone();
        move || {
            let t = Instant::now();
            pg.execute_batch("INSERT INTO k VALUES (1)").map(|_| t.elapsed())
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    server.resume();
    let waited = writer.join().unwrap().expect("the insert succeeds once the server is back");
    assert!(waited >= Duration::from_secs(2), "it waited for the server: {waited:?}");
    let n = pg.run(|c| Box::pin(async move { Ok(c.query_one("SELECT count(*) FROM k", &[]).await?.get::<_, i64>(0)) }));
    assert_eq!(n.unwrap(), 1);
    // The listener reconnects and says so, so its owner can catch up.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match listener.notes().recv_timeout(Duration::from_secs(1)) {
            Ok(Note::Connected) => break,
            _ if Instant::now() > deadline => panic!("the listener did not reconnect"),
            _ => {}
        }
    }
    pg.execute_batch("NOTIFY c, 'after'").unwrap();
    let got = listener.notes().recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(got, Note::Notification { channel: "c".into(), payload: "after".into() });
}
