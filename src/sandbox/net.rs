//! The listener the emulators serve on: a handler can cut its own connection (the documented
//! "connection reset" failure) by pulling the connection's [`KillSwitch`].

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    extract::connect_info,
    serve::{IncomingStream, Listener},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinHandle,
};

/// Pulled by a handler to close its connection without answering.
#[derive(Debug, Clone, Default)]
pub(crate) struct KillSwitch(Arc<AtomicBool>);

impl KillSwitch {
    /// Closes the connection: its next read or write fails.
    pub(crate) fn pull(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn pulled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A TCP listener whose connections carry a [`KillSwitch`].
pub(crate) struct KillableListener(pub(crate) TcpListener);

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = KillSwitch;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let kill = KillSwitch::default();
                    return (
                        KillableStream {
                            inner: stream,
                            kill: kill.clone(),
                        },
                        kill,
                    );
                }
                Err(e) => {
                    tracing::debug!(error = %e, "emulator: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr().map(|_| KillSwitch::default())
    }
}

impl connect_info::Connected<IncomingStream<'_, KillableListener>> for KillSwitch {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A connection that fails once its switch is pulled.
pub(crate) struct KillableStream {
    inner: TcpStream,
    kill: KillSwitch,
}

fn killed() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "disconnect injected")
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.kill.pulled() {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.kill.pulled() {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.kill.pulled() {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How long an emulator's shutdown waits for its server before aborting it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// A running emulator server: its address, and how to stop it.
#[derive(Debug)]
pub(crate) struct Running {
    addr: SocketAddr,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Running {
    /// Spawns `serve` on `listener`; it should stop serving when its receiver fires.
    pub(crate) fn spawn<Fut>(
        listener: TcpListener,
        serve: impl FnOnce(TcpListener, oneshot::Receiver<()>) -> Fut,
    ) -> io::Result<Self>
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, stop_rx));
        Ok(Self {
            addr,
            stop: Mutex::new(Some(stop_tx)),
            task: Mutex::new(Some(task)),
        })
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server and waits for it (at most a few seconds).
    pub(crate) async fn shutdown(&self) {
        if let Some(stop) = self.stop.lock().expect("emulator lock").take() {
            let _ = stop.send(());
        }
        let task = self.task.lock().expect("emulator lock").take();
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }
}
