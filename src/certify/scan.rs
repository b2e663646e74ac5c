//! The credential scan: a bundle goes to a reviewer, maybe to a public pull request, so no key,
//! token or password may be in it. `certify` refuses to seal a bundle the scan finds one in,
//! and `verify` reports one. Each finding names the file and line, never the secret itself.

use std::path::Path;

/// What is looked for, and what it is called in a finding. Matched case-sensitively, as the
/// formats write them.
const MARKERS: &[(&str, &str)] = &[
    ("PRIVATE KEY-----", "a PEM private key"),
    ("client-key-data:", "a kubeconfig client key"),
    ("\"client-key-data\"", "a kubeconfig client key"),
    ("aws_secret_access_key", "an AWS secret key"),
    ("AWS_SECRET_ACCESS_KEY=", "an AWS secret key"),
    ("AWS_SESSION_TOKEN=", "an AWS session token"),
    ("x-amz-security-token", "an AWS session token"),
    ("Authorization: Bearer ", "a bearer token"),
    ("\"authorization\":\"Bearer ", "a bearer token"),
];

/// Finds an AWS access key id (`AKIA` or `ASIA` and 16 upper-case letters or digits).
fn aws_key_id(line: &str) -> bool {
    let b = line.as_bytes();
    b.windows(20).enumerate().any(|(i, w)| {
        (w.starts_with(b"AKIA") || w.starts_with(b"ASIA"))
            && w[4..]
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            && b.get(i + 20).is_none_or(|c| !c.is_ascii_alphanumeric())
    })
}

/// Finds a JSON Web Token, the form of Kubernetes service-account tokens: three base64url
/// parts, the first of them `{"alg":…` encoded (`eyJhbGci`).
fn jwt(line: &str) -> bool {
    line.match_indices("eyJhbGci").any(|(i, _)| {
        let token: String = line[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        token.split('.').count() == 3 && token.len() > 40
    })
}

/// The findings in one text: `line N: <what>`.
pub fn text(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, line) in body.lines().enumerate() {
        let mut what: Vec<&str> = MARKERS
            .iter()
            .filter(|(m, _)| line.contains(m))
            .map(|(_, w)| *w)
            .collect();
        if aws_key_id(line) {
            what.push("an AWS access key id");
        }
        if jwt(line) {
            what.push("a token (JWT)");
        }
        what.dedup();
        for w in what {
            out.push(format!("line {}: {w}", i + 1));
        }
    }
    out
}

/// The findings in every file under `dir`: `<relative path> line N: <what>`. Binary files
/// (a `.tar.gz`) are read as text where they can be; the bundle has none of its own.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
            for f in text(&String::from_utf8_lossy(&bytes)) {
                out.push(format!("{rel} {f}: a credential must not be in a bundle"));
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_found_and_look_alikes_are_not() {
        let found = [
            "-----BEGIN EC PRIVATE KEY-----",
            "    client-key-data: LS0tLS1CRUdJTi",
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "key AKIAIOSFODNN7EXAMPLE in a log",
            "token: eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJpc3MiOiJrdWJlcm5ldGVzIn0.c2lnbmF0dXJlX2hlcmU",
            "Authorization: Bearer abc.def",
        ];
        for f in found {
            assert_eq!(text(f).len(), 1, "{f}: {:?}", text(f));
        }
        let clean = [
            "-----BEGIN PUBLIC KEY-----",
            "image: nvcr.io/nvidia/driver@sha256:0f1e2d",
            "AKIAshort",
            "XAKIAIOSFODNN7EXAMPLEX",
            "eyJhbGciOi but no token",
            "client-certificate-data is public",
        ];
        for c in clean {
            assert!(text(c).is_empty(), "{c}: {:?}", text(c));
        }
        assert_eq!(
            text("a\nb\n-----BEGIN RSA PRIVATE KEY-----"),
            ["line 3: a PEM private key"]
        );
    }

    #[test]
    fn a_tree_names_file_and_line() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(tmp.path().join("diagnostics/x")).expect("dir");
        std::fs::write(tmp.path().join("ok.txt"), "nothing\n").expect("write");
        std::fs::write(
            tmp.path().join("diagnostics/x/pod.yaml"),
            "a: 1\nuser:\n  client-key-data: LS0t\n",
        )
        .expect("write");
        assert_eq!(
            tree(tmp.path()),
            [
                "diagnostics/x/pod.yaml line 3: a kubeconfig client key: a credential must not be in a bundle"
            ]
        );
    }
}
