//! `run --pushgateway URL`: the run's metrics pushed to a Prometheus Pushgateway, the way batch
//! jobs report when no node exporter collects a file: `PUT <URL>/metrics/job/gpuconform/plan/
//! <plan>`, which replaces the group of the previous run of the same plan. Plain `http://` only
//! (a Pushgateway inside the cluster); the request is small enough for one HTTP/1.1 exchange
//! over a socket, so no HTTP client library is needed.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Why a push did not land.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The URL is not `http://host[:port][/path]`.
    #[error("`{0}` is not an http:// URL (`http://pushgateway:9091`)")]
    Url(String),
    /// The connection or the exchange failed.
    #[error("push to {url}")]
    Io {
        /// Where.
        url: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The Pushgateway refused the metrics.
    #[error("push to {url}: {status}")]
    Refused {
        /// Where.
        url: String,
        /// Its status line and body.
        status: String,
    },
}

/// `(host:port, path prefix)` of an `http://` URL.
pub fn parse(url: &str) -> Result<(String, String), PushError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| PushError::Url(url.into()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(PushError::Url(url.into()));
    }
    let authority = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string()))
}

/// The grouping key's path segment: a plan name is a DNS label, so it needs no escaping.
pub fn group_path(prefix: &str, plan: &str) -> String {
    format!("{prefix}/metrics/job/gpuconform/plan/{plan}")
}

/// Pushes `text` for `plan`; the Pushgateway answers 200 or 202 when it took the metrics.
pub fn push(url: &str, plan: &str, text: &str) -> Result<(), PushError> {
    let (authority, prefix) = parse(url)?;
    let path = group_path(&prefix, plan);
    let io = |source| PushError::Io {
        url: url.to_string(),
        source,
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| io(std::io::Error::other("no address")))?;
    let timeout = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let request = format!(
        "PUT {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(io)?;
    let status = answer.lines().next().unwrap_or_default().to_string();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if code == "200" || code == "202" {
        Ok(())
    } else {
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
        Err(PushError::Refused {
            url: url.to_string(),
            status: format!("{status} {body}").trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_with_an_optional_port_and_prefix() {
        assert_eq!(
            parse("http://pgw:9091").expect("ok"),
            ("pgw:9091".into(), String::new())
        );
        assert_eq!(
            parse("http://pgw/prefix/").expect("ok"),
            ("pgw:80".into(), "/prefix".into())
        );
        for bad in ["https://pgw:9091", "pgw:9091", "http://", "http://u:p@pgw"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            group_path("", "local"),
            "/metrics/job/gpuconform/plan/local"
        );
    }

    /// A Pushgateway stand-in on loopback: it sees a PUT of the text to the plan's group, and
    /// a refusal comes back with its status.
    #[test]
    fn the_text_is_put_to_the_plans_group() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for answer in [
                "HTTP/1.1 200 OK\r\n\r\n",
                "HTTP/1.1 400 Bad Request\r\n\r\ntext format parsing error",
            ] {
                let (mut s, _) = listener.accept().expect("accept");
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                // Read the head, then the body its Content-Length announces.
                loop {
                    let n = s.read(&mut buf).expect("read");
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        if body.len() >= len || n == 0 {
                            break;
                        }
                    }
                }
                s.write_all(answer.as_bytes()).expect("answer");
                seen.push(String::from_utf8_lossy(&got).to_string());
            }
            seen
        });
        let url = format!("http://{addr}");
        push(
            &url,
            "nightly",
            "gpuconform_run_success{plan=\"nightly\"} 1\n",
        )
        .expect("pushed");
        let e = push(&url, "nightly", "x").expect_err("refused");
        assert!(
            e.to_string().contains("400") && e.to_string().contains("parsing error"),
            "{e}"
        );
        let seen = server.join().expect("server");
        assert!(
            seen[0].starts_with("PUT /metrics/job/gpuconform/plan/nightly HTTP/1.1\r\n"),
            "{}",
            seen[0]
        );
        assert!(
            seen[0].ends_with("gpuconform_run_success{plan=\"nightly\"} 1\n"),
            "{}",
            seen[0]
        );
    }
}
