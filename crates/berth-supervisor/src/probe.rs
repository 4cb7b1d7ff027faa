//! Readiness probes: TCP connect, HTTP GET, or a command that exits 0.

use std::process::Stdio;
use std::time::Duration;

use berth_supervisor_protocol::{Probe, Readiness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

use crate::process::{Launch, describe_exit};

/// First pause between failed attempts; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(50);
/// Longest pause between attempts.
const MAX_RETRY: Duration = Duration::from_millis(200);

/// Probe until the service answers or `readiness.timeout` passes.
///
/// The error says how long we waited and what the last attempt saw.
pub(crate) async fn wait_ready(readiness: Readiness, launch: Launch) -> Result<(), String> {
    let deadline = Instant::now() + readiness.timeout;
    let mut pause = FIRST_RETRY;
    loop {
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(50));
        let last = match timeout(budget, probe_once(&readiness.probe, &launch)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(err)) => err,
            Err(_) => "the probe did not finish in time".to_owned(),
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "readiness probe timed out after {} ({last})",
                humantime::format_duration(readiness.timeout)
            ));
        }
        sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_RETRY);
    }
}

async fn probe_once(probe: &Probe, launch: &Launch) -> Result<(), String> {
    match probe {
        Probe::Tcp { address } => TcpStream::connect(address.as_str())
            .await
            .map(drop)
            .map_err(|err| format!("tcp connect to {address}: {err}")),
        Probe::Http { url, status } => {
            let got = http_status(url).await?;
            let ok = match status {
                Some(expected) => got == *expected,
                None => got < 500,
            };
            if ok {
                Ok(())
            } else {
                Err(format!("GET {url} answered {got}"))
            }
        }
        Probe::Command { argv } => {
            let mut cmd = launch
                .with_argv(argv)
                .command()
                .map_err(|err| format!("readiness command: {err}"))?;
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            let status = cmd
                .status()
                .await
                .map_err(|err| format!("readiness command: {err}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!(
                    "readiness command ended with {}",
                    describe_exit(status)
                ))
            }
        }
    }
}

/// One attempt of `spec`'s readiness probe from outside the daemon (a container's
/// health check), its command started as the service would be, with
/// `BERTH_MAIN_PID` = `main_pid`; given at most `within`. A service without a probe is
/// ready.
///
/// # Errors
/// What the attempt saw, as a sentence.
pub fn probe_service_once(
    spec: &berth_supervisor_protocol::ServiceSpec,
    main_pid: Option<u32>,
    within: Duration,
) -> Result<(), String> {
    let Some(readiness) = &spec.readiness else {
        return Ok(());
    };
    let mut launch = Launch::service(spec);
    if let Some(pid) = main_pid {
        launch
            .env
            .insert("BERTH_MAIN_PID".to_owned(), pid.to_string());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("readiness probe: {err}"))?;
    rt.block_on(async {
        timeout(within, probe_once(&readiness.probe, &launch))
            .await
            .map_err(|_| {
                format!(
                    "the probe did not answer within {}",
                    humantime::format_duration(within)
                )
            })?
    })
}

/// One GET of `url` from outside the daemon (`berth up` waiting for the app's front
/// door): the request the readiness probe makes, given at most `within`.
///
/// # Errors
/// What went wrong, as a sentence naming the URL.
pub fn http_get_status(url: &str, within: Duration) -> Result<u16, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("GET {url}: {err}"))?;
    rt.block_on(async {
        timeout(within, http_status(url)).await.map_err(|_| {
            format!(
                "GET {url}: no answer within {}",
                humantime::format_duration(within)
            )
        })?
    })
}

/// Split `http://host[:port][/path]` into `host:port`, `host` and `/path`.
fn split_url(url: &str) -> Result<(String, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}` is not a plain http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    let address = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((address, authority.to_owned(), path.to_owned()))
}

/// A minimal HTTP/1.0 GET; returns the status code.
async fn http_status(url: &str) -> Result<u16, String> {
    let (address, host, path) = split_url(url)?;
    let mut stream = TcpStream::connect(address.as_str())
        .await
        .map_err(|err| format!("GET {url}: {err}"))?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: berth-supervisor\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|err| format!("GET {url}: {err}"))?;
    let mut head = Vec::with_capacity(128);
    let mut buf = [0_u8; 512];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|err| format!("GET {url}: {err}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line
        .lines()
        .next()
        .filter(|first| first.starts_with("HTTP/"))
        .and_then(|first| first.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok());
    status.ok_or_else(|| format!("GET {url}: the answer is not HTTP"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocking_get_reads_the_status_and_gives_up_in_time() {
        use std::io::{Read, Write};
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health?x=1", server.local_addr().unwrap());
        let answer = std::thread::spawn(move || {
            let (mut conn, _) = server.accept().unwrap();
            let mut req = [0_u8; 256];
            let n = conn.read(&mut req).unwrap();
            conn.write_all(b"HTTP/1.0 204 No Content\r\n\r\n").unwrap();
            // Silent on the second connection, which stays open past the client's limit.
            let (silent, _) = server.accept().unwrap();
            std::thread::sleep(Duration::from_secs(1));
            drop(silent);
            String::from_utf8_lossy(&req[..n]).into_owned()
        });
        assert_eq!(http_get_status(&url, Duration::from_secs(5)), Ok(204));
        let err = http_get_status(&url, Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("no answer within 200ms"), "{err}");
        assert!(
            answer
                .join()
                .unwrap()
                .starts_with("GET /health?x=1 HTTP/1.0\r\n")
        );
    }

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/health").unwrap(),
            (
                "127.0.0.1:8080".into(),
                "127.0.0.1:8080".into(),
                "/health".into()
            )
        );
        assert_eq!(
            split_url("http://localhost").unwrap(),
            ("localhost:80".into(), "localhost".into(), "/".into())
        );
        assert!(split_url("https://x").is_err());
    }

    #[tokio::test]
    async fn http_probe_against_a_tiny_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = [0_u8; 1024];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(b"HTTP/1.0 204 No Content\r\n\r\n").await;
            }
        });
        let url = format!("http://127.0.0.1:{port}/");
        assert_eq!(http_status(&url).await.unwrap(), 204);
        let launch = Launch {
            argv: vec![],
            env: std::collections::BTreeMap::default(),
            cwd: None,
            user: None,
        };
        let ready = Readiness {
            probe: Probe::Http {
                url: url.clone(),
                status: Some(200),
            },
            timeout: Duration::from_millis(200),
        };
        let err = wait_ready(ready, launch).await.unwrap_err();
        assert!(err.contains("answered 204"), "{err}");
    }
}
