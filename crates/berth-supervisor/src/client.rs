//! The synchronous client side of the control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_supervisor_protocol::{Request, Response, Target};

use crate::error::SupervisorError;

/// How long [`Client::request`] waits for an answer by default. `Start` answers only
/// once services are ready, which may take minutes for a database with a long recovery.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_mins(15);

/// How long [`is_running`] waits for the supervisor to answer.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to a running supervisor: one JSON line out, one JSON line back.
#[derive(Debug)]
pub struct Client {
    socket: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connect to the supervisor listening on `socket`.
    pub fn connect(socket: &Path) -> Result<Self, SupervisorError> {
        let connect_err = |source| SupervisorError::Connect {
            socket: socket.to_path_buf(),
            source,
        };
        let stream = UnixStream::connect(socket).map_err(connect_err)?;
        let writer = stream.try_clone().map_err(connect_err)?;
        let client = Self {
            socket: socket.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
        };
        client.set_timeout(DEFAULT_REQUEST_TIMEOUT)?;
        Ok(client)
    }

    /// Change how long to wait for each answer (and for each write).
    pub fn set_timeout(&self, timeout: Duration) -> Result<(), SupervisorError> {
        let stream = self.reader.get_ref();
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .map_err(|source| self.exchange_err(source))
    }

    fn exchange_err(&self, source: std::io::Error) -> SupervisorError {
        SupervisorError::Exchange {
            socket: self.socket.clone(),
            source,
        }
    }

    /// Send `req` and wait for its answer.
    ///
    /// A [`Response::Error`] is a successful exchange: the caller decides what it means.
    pub fn request(&mut self, req: &Request) -> Result<Response, SupervisorError> {
        let mut line = serde_json::to_vec(req).map_err(|source| SupervisorError::Protocol {
            socket: self.socket.clone(),
            source,
        })?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .map_err(|source| self.exchange_err(source))?;
        let mut answer = String::new();
        let read = self
            .reader
            .read_line(&mut answer)
            .map_err(|source| self.exchange_err(source))?;
        if read == 0 {
            return Err(SupervisorError::NoAnswer {
                socket: self.socket.clone(),
            });
        }
        serde_json::from_str(&answer).map_err(|source| SupervisorError::Protocol {
            socket: self.socket.clone(),
            source,
        })
    }
}

impl Client {
    /// Freeze `target` until the returned [`Paused`] is resumed or dropped, or until
    /// `deadline` passes, whichever comes first.
    ///
    /// The pause belongs to this connection: the supervisor resumes the services as
    /// soon as it closes, so a caller that dies (even by `SIGKILL`) cannot leave them
    /// frozen. An error answer is [`SupervisorError::Refused`]; the supervisor has then
    /// resumed whatever the request had paused.
    pub fn pause(mut self, target: Target, deadline: Duration) -> Result<Paused, SupervisorError> {
        let timeout_ms = u64::try_from(deadline.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        match self.request(&Request::Pause {
            target: target.clone(),
            timeout_ms,
        })? {
            Response::Ok => Ok(Paused {
                client: self,
                target,
            }),
            Response::Error { message } => Err(SupervisorError::Refused {
                socket: self.socket.clone(),
                message,
            }),
            _ => Err(SupervisorError::Refused {
                socket: self.socket.clone(),
                message: "it answered a pause request with something else than `ok`".to_owned(),
            }),
        }
    }
}

/// Services paused by [`Client::pause`]; they stay frozen while this value lives.
///
/// Dropping it closes the connection, and the supervisor resumes them;
/// [`Paused::resume`] does the same and reports whether the supervisor answered.
#[derive(Debug)]
#[must_use = "dropping it resumes the services at once"]
pub struct Paused {
    client: Client,
    target: Target,
}

impl Paused {
    /// Which services this pause is about.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Resume the services and wait for the supervisor's answer.
    pub fn resume(mut self) -> Result<(), SupervisorError> {
        let target = self.target.clone();
        match self.client.request(&Request::Resume { target })? {
            Response::Ok => Ok(()),
            Response::Error { message } => Err(SupervisorError::Refused {
                socket: self.client.socket.clone(),
                message,
            }),
            _ => Err(SupervisorError::Refused {
                socket: self.client.socket.clone(),
                message: "it answered a resume request with something else than `ok`".to_owned(),
            }),
        }
    }
}

/// Whether a supervisor answers a `Status` request on `socket` (within 2 s).
pub fn is_running(socket: &Path) -> bool {
    let Ok(mut client) = Client::connect(socket) else {
        return false;
    };
    if client.set_timeout(PING_TIMEOUT).is_err() {
        return false;
    }
    matches!(
        client.request(&Request::Status),
        Ok(Response::Status { .. })
    )
}
