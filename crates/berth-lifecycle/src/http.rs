//! A minimal HTTP/1.0 GET, enough to wait for the app to answer through its front door.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// GET `url` (plain `http://` only) and return the status code.
pub fn get_status(url: &url::Url, timeout: Duration) -> std::io::Result<u16> {
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port_or_known_default().unwrap_or(80);
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("`{host}` does not resolve")))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: berth\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {line:?}")))
}

/// Wait until `url` answers with a status below 400, backing off from 100 ms to 2 s.
/// Returns the last status or error seen when the deadline passes.
pub fn wait_ok(url: &url::Url, deadline: Duration) -> Result<u16, String> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(100);
    let mut last;
    loop {
        match get_status(url, Duration::from_secs(5)) {
            Ok(code) if code < 400 => return Ok(code),
            Ok(code) => last = format!("HTTP {code}"),
            Err(e) => last = e.to_string(),
        }
        if start.elapsed() >= deadline {
            return Err(last);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}
