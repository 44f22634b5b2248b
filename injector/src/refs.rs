//! `$(VAR)` references in the app's Redis URL. Kubernetes expands them from the earlier env
//! entries of the same container, so the sidecar gets copies of those entries (Secret
//! references included) placed before its `NEARCACHE_UPSTREAM`; a reference that cannot be
//! copied (set by `envFrom`, by a later entry, or not at all) is a reason not to inject.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::EnvVar;

/// What a value taken from a Secret or ConfigMap stands for when the URL is checked: the
/// injector cannot read it, and `1` is valid wherever it may stand (user, password, host,
/// port, db).
const UNKNOWN_VALUE: &str = "1";

/// The env entries to copy and the URL as Kubernetes will expand it (values the injector
/// cannot read replaced by a placeholder), for checking.
#[derive(Debug, Default)]
pub struct Resolved {
    /// Entries to put before `NEARCACHE_UPSTREAM`, in their original order.
    pub entries: Vec<EnvVar>,
    /// The expanded URL.
    pub expanded: String,
}

/// The names `text` references as `$(NAME)` (`$$` escapes a `$`), in order.
pub fn references(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    expand(text, &mut |name| {
        names.push(name.to_owned());
        None
    });
    names
}

/// Kubernetes' expansion: `$(NAME)` by `lookup`, kept as is when unknown; `$$` → `$`.
pub fn expand(text: &str, lookup: &mut dyn FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after
            .strip_prefix('(')
            .and_then(|a| a.split_once(')'))
            .filter(|(n, _)| !n.is_empty() && !n.contains(['(', '$']))
        {
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Resolves the references of `text` against `earlier` (the container's entries before the
/// URL's own); `container` names it in problems.
pub fn resolve(text: &str, earlier: &[EnvVar], container: &str) -> Result<Resolved, String> {
    let mut wanted: Vec<(String, usize)> = references(text)
        .into_iter()
        .map(|n| (n, earlier.len()))
        .collect();
    let mut taken = BTreeSet::new();
    while let Some((name, before)) = wanted.pop() {
        if name.starts_with("NEARCACHE_") {
            return Err(format!(
                "$({name}) would clash with the sidecar's own NEARCACHE_ settings"
            ));
        }
        let Some(j) = earlier[..before].iter().rposition(|e| e.name == name) else {
            return Err(format!(
                "$({name}) is not set by an earlier env entry of container {container:?} \
                 (envFrom and later entries cannot be copied into the sidecar)"
            ));
        };
        if !taken.insert(j) {
            continue;
        }
        let entry = &earlier[j];
        if entry
            .value_from
            .as_ref()
            .is_some_and(|f| f.resource_field_ref.is_some())
        {
            return Err(format!(
                "$({name}) is a resourceFieldRef, which means another value in the sidecar"
            ));
        }
        if let Some(v) = entry
            .value
            .as_deref()
            .filter(|_| entry.value_from.is_none())
        {
            wanted.extend(references(v).into_iter().map(|n| (n, j)));
        }
    }
    let mut known: BTreeMap<String, String> = BTreeMap::new();
    let mut entries = Vec::new();
    for j in taken {
        let e = &earlier[j];
        let value = match (&e.value_from, e.value.as_deref()) {
            (Some(_), _) => UNKNOWN_VALUE.to_owned(),
            (None, v) => expand(v.unwrap_or(""), &mut |n| known.get(n).cloned()),
        };
        known.insert(e.name.clone(), value);
        entries.push(e.clone());
    }
    let expanded = expand(text, &mut |n| known.get(n).cloned());
    Ok(Resolved { entries, expanded })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVarSource, SecretKeySelector};

    fn lit(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.to_owned(),
            value: Some(value.to_owned()),
            value_from: None,
        }
    }

    fn secret(name: &str) -> EnvVar {
        EnvVar {
            name: name.to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "redis".to_owned(),
                    key: "password".to_owned(),
                    optional: None,
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn references_and_expansion_follow_kubernetes() {
        assert_eq!(references("redis://:$(A)@$(B):1/$$(C)"), ["A", "B"]);
        assert_eq!(
            expand("$(A)-$$(A)-$(Z)-$", &mut |n| (n == "A").then(|| "a".into())),
            "a-$(A)-$(Z)-$"
        );
    }

    #[test]
    fn referenced_entries_are_copied_in_order_transitively() {
        let env = [
            lit("UNUSED", "x"),
            secret("PW"),
            lit("HOST", "redis.$(NS).svc"),
            lit("NS", "late"),
        ];
        let err = resolve("redis://:$(PW)@$(HOST)", &env[..3], "app").unwrap_err();
        assert!(err.contains("$(NS)"), "{err}");
        let env = [
            lit("NS", "shop"),
            secret("PW"),
            lit("HOST", "redis.$(NS).svc"),
        ];
        let r = resolve("redis://:$(PW)@$(HOST):6379", &env, "app").unwrap();
        let names: Vec<_> = r.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["NS", "PW", "HOST"]);
        assert_eq!(r.expanded, "redis://:1@redis.shop.svc:6379");
        assert!(resolve("redis://$(NEARCACHE_X)", &[lit("NEARCACHE_X", "h")], "app").is_err());
    }
}
