//! Decompressing an archive's tar stream on a thread of its own, so that decompression
//! overlaps with hashing and writing the entries. The same thread hashes the compressed
//! bytes as they are read from the file, for the digest the signed index records.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::writer::BUF_SIZE;

/// How many decompressed chunks may wait for the reader.
const QUEUE: usize = 4;

/// Why decompression stopped early.
#[derive(Debug)]
pub(crate) struct StreamFailure {
    pub error: io::Error,
    /// About where in the file it happened.
    pub at: u64,
    /// Whether reading the file failed, as opposed to its content being bad.
    pub io: bool,
}

/// What was read of the file: every byte up to the limit given to
/// [`Decompressed::spawn`], whether the decompressor used it or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawDigest {
    /// How many bytes were read.
    pub len: u64,
    /// Their SHA-256.
    pub sha256: [u8; 32],
}

enum Msg {
    Data(Vec<u8>, usize),
    End { consumed: u64, raw: RawDigest },
    Failed(StreamFailure),
}

/// The decompressed content of the first `len` bytes of a file, as a reader.
pub(crate) struct Decompressed {
    rx: Option<Receiver<Msg>>,
    recycle: SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    len: usize,
    pos: usize,
    failure: Option<StreamFailure>,
    consumed: Option<u64>,
    raw: Option<RawDigest>,
    thread: Option<JoinHandle<()>>,
}

impl Decompressed {
    /// Starts decompressing `file` (read from its current position) up to `len` bytes.
    pub fn spawn(file: File, len: u64) -> io::Result<Self> {
        let counting = Counting {
            inner: file.take(len),
            count: 0,
            failed: false,
            hasher: Sha256::new(),
        };
        let decoder =
            zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(BUF_SIZE, counting))?;
        let (tx, rx) = sync_channel(QUEUE);
        let (recycle, recycled) = sync_channel(QUEUE + 2);
        let thread = std::thread::Builder::new()
            .name("berth-decompress".to_owned())
            .spawn(move || pump(decoder, &tx, &recycled))?;
        Ok(Self {
            rx: Some(rx),
            recycle,
            chunk: Vec::new(),
            len: 0,
            pos: 0,
            failure: None,
            consumed: None,
            raw: None,
            thread: Some(thread),
        })
    }

    /// Why decompression failed, once a read returned an error because of it.
    pub fn take_failure(&mut self) -> Option<StreamFailure> {
        self.failure.take()
    }

    /// How many bytes of the file the decompressor used, once the end of the stream was
    /// reached.
    pub fn consumed(&self) -> Option<u64> {
        self.consumed
    }

    /// The length and SHA-256 of the bytes read from the file, once the end of the
    /// stream was reached: all of them up to the limit, including any the decompressor
    /// left unused.
    pub fn raw_digest(&self) -> Option<RawDigest> {
        self.raw
    }
}

impl Read for Decompressed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.len {
                let n = buf.len().min(self.len - self.pos);
                buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if let Some(failure) = &self.failure {
                return Err(io::Error::new(failure.error.kind(), "decompression failed"));
            }
            let Some(rx) = &self.rx else {
                return Ok(0);
            };
            if !self.chunk.is_empty() {
                let _ = self.recycle.try_send(std::mem::take(&mut self.chunk));
            }
            match rx.recv() {
                Ok(Msg::Data(chunk, len)) => {
                    self.chunk = chunk;
                    self.len = len;
                    self.pos = 0;
                }
                Ok(Msg::End { consumed, raw }) => {
                    self.consumed = Some(consumed);
                    self.raw = Some(raw);
                    self.rx = None;
                }
                Ok(Msg::Failed(failure)) => {
                    let kind = failure.error.kind();
                    self.failure = Some(failure);
                    self.rx = None;
                    return Err(io::Error::new(kind, "decompression failed"));
                }
                Err(_) => {
                    // The thread ended without a word: it panicked.
                    self.rx = None;
                    return Err(io::Error::other("the decompression thread failed"));
                }
            }
        }
    }
}

impl Drop for Decompressed {
    fn drop(&mut self) {
        // Closing the channel makes a thread blocked on sending give up.
        self.rx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Decoder = zstd::stream::read::Decoder<'static, BufReader<Counting<io::Take<File>>>>;

fn pump(mut decoder: Decoder, tx: &SyncSender<Msg>, recycled: &Receiver<Vec<u8>>) {
    loop {
        let mut chunk = match recycled.try_recv() {
            Ok(chunk) => chunk,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => vec![0; BUF_SIZE],
        };
        let mut filled = 0;
        while filled < chunk.len() {
            match decoder.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    let reader = decoder.get_ref();
                    let counting = reader.get_ref();
                    let failure = StreamFailure {
                        error,
                        at: counting.count - reader.buffer().len() as u64,
                        io: counting.failed,
                    };
                    let _ = tx.send(Msg::Failed(failure));
                    return;
                }
            }
        }
        let end = filled < chunk.len();
        if filled > 0 && tx.send(Msg::Data(chunk, filled)).is_err() {
            return;
        }
        if end {
            let reader = decoder.get_mut();
            let consumed = reader.get_ref().count - reader.buffer().len() as u64;
            // Whatever the decompressor left unread is read (and hashed) too: the digest
            // covers every byte up to the limit, not only those that decompressed.
            let counting = reader.get_mut();
            if let Err(error) = io::copy(counting, &mut io::sink()) {
                let failure = StreamFailure {
                    error,
                    at: counting.count,
                    io: true,
                };
                let _ = tx.send(Msg::Failed(failure));
                return;
            }
            let raw = RawDigest {
                len: counting.count,
                sha256: counting.hasher.finalize_reset().into(),
            };
            let _ = tx.send(Msg::End { consumed, raw });
            return;
        }
    }
}

/// Counts and hashes the bytes read from the archive file, and remembers whether reading
/// it failed, so errors coming out of the decompressor can be told apart and located.
struct Counting<R> {
    inner: R,
    count: u64,
    failed: bool,
    hasher: Sha256,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.count += n as u64;
                self.hasher.update(&buf[..n]);
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.failed = true;
                }
                Err(e)
            }
        }
    }
}
