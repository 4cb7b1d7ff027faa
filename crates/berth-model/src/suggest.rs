//! Did-you-mean suggestions for misspelt names.

/// The candidate closest to `name`, if it is close enough to be a likely typo.
///
/// Uses Jaro-Winkler similarity (good at transpositions such as `wrokers`) with a
/// threshold of 0.8, and also accepts a case-insensitive exact match.
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
        let score = if candidate.to_lowercase() == lower {
            1.0
        } else {
            strsim::jaro_winkler(&lower, &candidate.to_lowercase())
        };
        if score >= 0.8 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// `` did you mean `x`? `` when a close candidate exists, else `` expected one of `a`, `b` ``
/// (or `fallback` when there are no candidates at all).
pub(crate) fn help<'a, I>(name: &str, candidates: I, what: &str) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
    I::IntoIter: Clone,
{
    let candidates = candidates.into_iter();
    if let Some(c) = closest(name, candidates.clone()) {
        return Some(format!("did you mean `{c}`?"));
    }
    let all: Vec<&str> = candidates.collect();
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
        assert_eq!(closest("workers", keys), None);
    }
}
