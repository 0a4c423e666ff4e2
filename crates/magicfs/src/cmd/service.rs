//! Telling a service manager how a mount is doing (systemd's sd_notify
//! protocol, `Type=notify`): `READY=1` once the mount answers, `STATUS=`
//! lines, `STOPPING=1` when the unmount starts. Without `NOTIFY_SOCKET`
//! (not started by systemd) nothing is sent.

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("cannot notify the service manager: {e}");
    }
}

/// The mount is live.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The unmount has begun.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}
