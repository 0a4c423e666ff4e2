//! `LISTEN` on a connection of its own, reconnecting after failures.

use crate::error::words;
use crate::Pg;
use futures_util::future::poll_fn;
use std::sync::mpsc;
use std::time::Duration;
use tokio_postgres::AsyncMessage;

/// What a [`Listener`] hands over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// The listening connection is (again) up: notifications sent while it was
    /// down are lost, so the receiver catches up by reading state. Sent after
    /// the first connection too.
    Connected,
    /// A notification: its channel and payload.
    Notification {
        /// The channel it was sent on.
        channel: String,
        /// Its payload.
        payload: String,
    },
}

/// A running `LISTEN`. Notes arrive on [`Listener::notes`]; dropping the
/// listener stops it and closes its connection.
pub struct Listener {
    rx: mpsc::Receiver<Note>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// The notes, in arrival order.
    pub fn notes(&self) -> &mpsc::Receiver<Note> {
        &self.rx
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl Pg {
    /// Listens on `channels` until the returned listener is dropped.
    pub fn listen(&self, channels: &[&str]) -> Listener {
        let (tx, rx) = mpsc::channel();
        let config = self.url().config().clone();
        let service = self.service();
        let sql: String = channels.iter().map(|c| format!("LISTEN {};", quote_ident(c))).collect();
        let task = self.runtime().spawn(async move {
            let mut pause = Duration::from_millis(50);
            let mut down_logged = false;
            loop {
                match config.connect(tokio_postgres::NoTls).await {
                    Ok((client, mut conn)) => {
                        // The connection must be polled for the LISTEN to run.
                        let (msg_tx, mut msg_rx) = tokio::sync::mpsc::unbounded_channel();
                        let pump = tokio::spawn(async move {
                            loop {
                                match poll_fn(|cx| conn.poll_message(cx)).await {
                                    Some(Ok(m)) => {
                                        if msg_tx.send(m).is_err() {
                                            return;
                                        }
                                    }
                                    Some(Err(e)) => {
                                        log::debug!("listen connection failed: {e}");
                                        return;
                                    }
                                    None => return,
                                }
                            }
                        });
                        if client.batch_execute(&sql).await.is_ok() {
                            if down_logged {
                                log::info!("{service}: listening again");
                                down_logged = false;
                            }
                            pause = Duration::from_millis(50);
                            if tx.send(Note::Connected).is_err() {
                                pump.abort();
                                return;
                            }
                            while let Some(m) = msg_rx.recv().await {
                                if let AsyncMessage::Notification(n) = m {
                                    let note = Note::Notification {
                                        channel: n.channel().to_string(),
                                        payload: n.payload().to_string(),
                                    };
                                    if tx.send(note).is_err() {
                                        pump.abort();
                                        return;
                                    }
                                }
                            }
                        }
                        pump.abort();
                    }
                    Err(e) => {
                        if !down_logged {
                            log::warn!("{service}: cannot listen for changes ({}); retrying", words(&e));
                            down_logged = true;
                        }
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        });
        Listener { rx, task }
    }
}
