//! A stand-in for the Lambda Runtime API that only notes when a runtime first asks for an
//! invocation. It never answers: by then the cold start is over, and the process is killed.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::Error;

/// The poll every runtime starts its loop with ("Next invocation", AWS Lambda Developer Guide,
/// https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html#runtimes-api-next).
const NEXT_INVOCATION: &str = "/2018-06-01/runtime/invocation/next";

/// A request line, with when its headers had been read.
#[derive(Debug)]
pub struct Request {
    pub at: Instant,
    pub method: String,
    pub path: String,
}

pub struct RuntimeApi {
    addr: SocketAddr,
    requests: Receiver<Request>,
}

impl RuntimeApi {
    /// Listens on a free loopback port; requests are read on a thread of their own, so that the
    /// time a request is noted at does not wait for the harness.
    pub fn start() -> Result<Self, Error> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(Error::Listen)?;
        let addr = listener.local_addr().map_err(Error::Listen)?;
        let (tx, requests) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let tx = tx.clone();
                // A connection per thread: a runtime may hold one open while it opens another.
                std::thread::spawn(move || read_requests(stream, tx));
            }
        });
        Ok(RuntimeApi { addr, requests })
    }

    /// What `AWS_LAMBDA_RUNTIME_API` is set to: host and port.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Forgets requests a previous run made (a killed process may have sent one late).
    pub fn drain(&self) {
        while self.requests.try_recv().is_ok() {}
    }

    /// Waits for the first `GET .../invocation/next`, until `deadline`. `exited` is asked
    /// between waits, so that a process that died during init fails the run at once rather
    /// than at the deadline; the wait itself is on the request.
    pub fn first_poll(
        &self,
        deadline: Instant,
        mut exited: impl FnMut() -> Option<String>,
    ) -> Result<Instant, Error> {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::NoPoll);
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            match self.requests.recv_timeout(wait) {
                Ok(request) if request.method == "GET" && request.path == NEXT_INVOCATION => {
                    return Ok(request.at)
                }
                Ok(request) => {
                    return Err(Error::UnexpectedRequest(format!(
                        "{} {}",
                        request.method, request.path
                    )))
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(status) = exited() {
                        return Err(Error::Exited(status));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Err(Error::ListenerGone),
            }
        }
    }
}

/// Reads request heads off one connection and reports each. Bodies are skipped by length;
/// nothing is ever answered.
fn read_requests(stream: TcpStream, tx: Sender<Request>) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (method, path) = (method.to_string(), path.to_string());
        let mut body = 0usize;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    body = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let at = Instant::now();
        if tx.send(Request { at, method, path }).is_err() {
            return;
        }
        if body > 0
            && std::io::copy(&mut (&mut reader).take(body as u64), &mut std::io::sink()).is_err()
        {
            return;
        }
    }
}
