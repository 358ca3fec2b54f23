//! Deserializing a TOML tree so that every bad key is reported, not only the first.
//!
//! serde stops at the first error. We record it with its dotted key path, remove the offending key
//! from the tree and try again, until the tree deserializes. Because every field of the raw model
//! is optional, removing a key never makes the tree invalid by itself.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use toml::Value;

/// Upper bound on retries: each retry removes one key, so this is more keys than any real file has.
const MAX_ATTEMPTS: usize = 500;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

/// `orgs[0].org_id` style rendering of a path.
pub(crate) fn render(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn steps(path: &serde_path_to_error::Path) -> Vec<Step> {
    path.iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

/// The text between the first pair of backticks.
fn quoted(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// A clearer message for an unknown key; points secrets at their `_file` form.
fn unknown_key_message(key: &str, serde_message: &str) -> String {
    let file_key = format!("`{key}_file`");
    if serde_message.contains(&file_key) {
        return format!(
            "unknown key `{key}`; secrets are given by reference: use {file_key} (a path or `cred:NAME`)"
        );
    }
    match serde_message.split_once(", expected ") {
        Some((_, expected)) => format!("unknown key `{key}`; expected {expected}"),
        None => format!("unknown key `{key}`"),
    }
}

fn remove(tree: &mut Value, path: &[Step]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = tree;
    for step in parents {
        node = match (step, node) {
            (Step::Key(k), Value::Table(t)) => match t.get_mut(k) {
                Some(n) => n,
                None => return false,
            },
            (Step::Index(i), Value::Array(a)) => match a.get_mut(*i) {
                Some(n) => n,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Step::Key(k), Value::Table(t)) => t.remove(k).is_some(),
        (Step::Index(i), Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
            true
        }
        _ => false,
    }
}

/// Deserializes `tree` into `T`, calling `report(key, message)` for each problem found.
///
/// Returns `None` only when the tree cannot be made to deserialize (a wrong type at the root).
pub(crate) fn deserialize_reporting<T: DeserializeOwned>(
    mut tree: Value,
    report: &mut dyn FnMut(String, String),
) -> Option<T> {
    let mut removed = BTreeSet::new();
    for _ in 0..MAX_ATTEMPTS {
        let err = match serde_path_to_error::deserialize::<_, T>(tree.clone()) {
            Ok(value) => return Some(value),
            Err(err) => err,
        };
        let mut path = steps(err.path());
        let inner = err.into_inner();
        let serde_message = inner.message().trim().to_owned();
        let message = if let Some(rest) = serde_message.strip_prefix("unknown field ") {
            let key = quoted(rest).unwrap_or_default().to_owned();
            if path.last() != Some(&Step::Key(key.clone())) {
                path.push(Step::Key(key.clone()));
            }
            unknown_key_message(&key, &serde_message)
        } else if let Some(rest) = serde_message.strip_prefix("missing field ") {
            // Only fields without `Option` can be missing; report once and give up on this tree.
            path.push(Step::Key(quoted(rest).unwrap_or_default().to_owned()));
            let key = render(&path);
            if !removed.contains(&key) {
                report(key, "missing required key".to_owned());
            }
            return None;
        } else {
            serde_message.replacen("unknown variant", "unknown value", 1)
        };
        // An error on an array element removes the whole array, so that the indices reported for
        // later elements stay true.
        if matches!(path.last(), Some(Step::Index(_))) {
            let key = render(&path);
            path.pop();
            report(key, message);
        } else {
            report(render(&path), message);
        }
        let key = render(&path);
        if path.is_empty() || !remove(&mut tree, &path) {
            return None;
        }
        removed.insert(key);
    }
    None
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        a: Option<u32>,
        secret_file: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Option<Inner>,
        list: Option<Vec<Inner>>,
        n: Option<u8>,
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let tree: Value = toml::from_str(
            r#"
            n = "x"
            typo = 1
            [inner]
            a = "nope"
            secret = "inline"
            [[list]]
            a = 1
            [[list]]
            b = 2
            "#,
        )
        .unwrap();
        let mut problems = Vec::new();
        let out: Option<Outer> = deserialize_reporting(tree, &mut |k, m| problems.push((k, m)));
        let out = out.unwrap();
        assert!(out.n.is_none() && out.inner.unwrap().a.is_none());
        assert_eq!(out.list.unwrap().len(), 2);
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["inner.a", "inner.secret", "list[1].b", "n", "typo"],
            "{problems:?}"
        );
        assert!(problems[1].1.contains("use `secret_file`"), "{problems:?}");
        assert!(
            problems[4].1.starts_with("unknown key `typo`; expected"),
            "{problems:?}"
        );
    }
}
