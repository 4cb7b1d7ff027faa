//! Did-you-mean suggestions for misspelt names.

/// The candidate closest to `name`, if it is close enough to be a likely typo.
///
/// Accepts a candidate when its Jaro-Winkler similarity is at least 0.8 (good for long
/// names with a slip, such as `wrokers`), or when it is at most a quarter of the name's
/// length (and at least one) edits away, counting a swap of two neighbours as one edit
/// (good for short names such as `wbe`). A case-insensitive match always counts.
pub fn closest<'a, I>(name: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = name.to_lowercase();
    let mut best: Option<(f64, &'a str)> = None;
    for candidate in candidates {
        if candidate == name {
            continue;
        }
        let other = candidate.to_lowercase();
        let score = if other == lower {
            1.0
        } else {
            strsim::jaro_winkler(&lower, &other)
        };
        let edits = strsim::osa_distance(&lower, &other);
        let close = score >= 0.8 || edits <= (lower.chars().count() / 4).max(1);
        if close && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// `` did you mean `x`? `` when a close candidate exists, else `` <what>: `a`, `b` ``
/// (or `there are no <what>` when there are no candidates at all).
#[allow(clippy::unnecessary_wraps)] // callers attach it with `with_help_opt`, like other hints
pub(crate) fn help<'a, I>(name: &str, candidates: I, what: &str) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
    I::IntoIter: Clone,
{
    let candidates = candidates.into_iter();
    if let Some(c) = closest(name, candidates.clone()) {
        return Some(format!("did you mean `{c}`?"));
    }
    let mut all: Vec<&str> = candidates.collect();
    all.sort_unstable();
    all.dedup();
    if all.is_empty() {
        Some(format!("there are no {what}"))
    } else {
        Some(format!("{what}: {}", backticked(all)))
    }
}

/// `` `a`, `b`, `c` ``.
pub(crate) fn backticked<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items
        .into_iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn suggests_close_names_only() {
        let keys = ["workers", "timeout", "listen_port"];
        assert_eq!(closest("wrokers", keys), Some("workers"));
        assert_eq!(closest("Workers", keys), Some("workers"));
        assert_eq!(closest("listen-port", keys), Some("listen_port"));
        assert_eq!(closest("database", keys), None);
        assert_eq!(closest("wbe", ["web", "redis"]), Some("web"));
        assert_eq!(closest("db", ["web", "redis"]), None);
        assert_eq!(closest("workers", keys), None);
    }
}
