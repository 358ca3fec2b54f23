//! The systemd notification protocol (`sd_notify(3)`), written here: one datagram to the socket
//! `$NOTIFY_SOCKET` names. Outside systemd (no `NOTIFY_SOCKET`) every call does nothing.
//!
//! byocd sends `READY=1` once migrations ran, the configuration is synced, the listeners are bound
//! and the Pub/Sub subscriptions are started; `RELOADING=1` … `READY=1` around a SIGHUP reload;
//! `STOPPING=1` when it begins to drain; `WATCHDOG=1` every half `WatchdogSec` while the state
//! store answers; and a one-line `STATUS=` that `systemctl status` shows.

use std::{
    os::unix::net::{SocketAddr, UnixDatagram},
    time::Duration,
};

/// Where notifications go, if anywhere.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for (a path, or `@name` for an abstract socket).
    /// A socket that cannot be opened is reported once and ignored: byocd runs on.
    pub fn from_env() -> Self {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Self { target: None };
        };
        let name = name.to_string_lossy().into_owned();
        let target = address(&name).and_then(|addr| {
            let socket = UnixDatagram::unbound().map_err(|e| e.to_string())?;
            Ok((socket, addr))
        });
        match target {
            Ok(target) => Self {
                target: Some(target),
            },
            Err(e) => {
                tracing::warn!(notify_socket = %name, error = %e, "systemd: cannot use NOTIFY_SOCKET; readiness will not be reported");
                Self { target: None }
            }
        }
    }

    /// Whether systemd listens.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (newline-separated `KEY=value` lines). Failures are logged, not returned:
    /// a daemon does not stop because its supervisor's socket is gone.
    pub fn notify(&self, state: &str) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        if let Err(e) = socket.send_to_addr(state.as_bytes(), addr) {
            tracing::warn!(error = %e, "systemd: notification not sent");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={status}"));
    }

    /// `RELOADING=1`: a reload has begun; [`Notifier::ready`] ends it.
    pub fn reloading(&self) {
        self.notify("RELOADING=1\nSTATUS=reloading the configuration");
    }

    /// `STOPPING=1`: draining before exit.
    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=stopping: draining work in flight");
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.notify("WATCHDOG=1");
    }
}

/// The interval at which to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when it is set and
/// `$WATCHDOG_PID` (if set) is this process.
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

fn address(name: &str) -> Result<SocketAddr, String> {
    if let Some(abstract_name) = name.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(abstract_name.as_bytes()).map_err(|e| e.to_string())
    } else if name.starts_with('/') {
        SocketAddr::from_pathname(name).map_err(|e| e.to_string())
    } else {
        Err("NOTIFY_SOCKET is neither an absolute path nor @abstract".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                address(path.to_str().unwrap()).unwrap(),
            )),
        };
        notifier.ready("ready");
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=ready");
    }

    #[test]
    fn relative_socket_names_are_refused() {
        assert!(address("notify.sock").is_err());
        assert!(address("@byocd-test").is_ok());
    }
}
