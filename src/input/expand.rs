//! `~` and `$VARS` in the paths a plan names, as a shell would expand them — so one plan file
//! works for everyone (`kubeconfig: ~/.kube/prod`, `fixture: $FIXTURES/p4d.yaml`).

/// Expands a leading `~` (or `~/`) to `$HOME`, and `$NAME` / `${NAME}` to the variable; `$$`
/// is a `$`. A variable that is not set is an error that names it, never an empty string
/// (`$UNSET/kubeconfig` must not become `/kubeconfig`).
pub fn expand(text: &str) -> Result<String, String> {
    expand_with(text, |name| std::env::var(name).ok())
}

/// [`expand`] with the variables looked up by `var` (tests).
pub fn expand_with(text: &str, var: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    if rest == "~" || rest.starts_with("~/") {
        out.push_str(&var("HOME").ok_or("`~` needs $HOME, which is not set")?);
        rest = &rest[1..];
    }
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let after = &rest[i + 1..];
        let (name, used) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => return Err(format!("`${{` without `}}` in `{text}`")),
            }
        } else if after.starts_with('$') {
            out.push('$');
            chars.next();
            continue;
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() {
            out.push('$');
            continue;
        }
        match var(name) {
            Some(v) => out.push_str(&v),
            None => return Err(format!("`${name}` is not set")),
        }
        for _ in 0..used {
            chars.next();
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let env = |n: &str| match n {
            "HOME" => Some("/home/u".to_string()),
            "DIR" => Some("fixtures".to_string()),
            _ => None,
        };
        let rows = [
            ("~/.kube/config", Ok("/home/u/.kube/config")),
            ("~", Ok("/home/u")),
            ("a/~b", Ok("a/~b")),
            ("$DIR/p4d.yaml", Ok("fixtures/p4d.yaml")),
            ("${DIR}x/y", Ok("fixturesx/y")),
            ("cost$$", Ok("cost$")),
            ("a$", Ok("a$")),
            ("é$DIR", Ok("éfixtures")),
            ("$NOPE/k", Err("`$NOPE` is not set")),
            ("${DIR", Err("without")),
        ];
        for (text, want) in rows {
            match (expand_with(text, env), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "{text}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{text}: {e}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }
}
