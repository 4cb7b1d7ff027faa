//! What a component says its licence is, as an SPDX expression where it can be known
//! and as the component's own words where it cannot: a guess would be worse than
//! saying "not known" (a licence policy acts on it).

/// A component's licence.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Licence {
    /// The SPDX expression, in canonical form, when the component declares one (or a
    /// name that maps to exactly one SPDX licence).
    pub expression: Option<String>,
    /// The component's own words when they are not an SPDX expression (`BSD License`).
    pub declared_as: Option<String>,
    /// Where the licence came from: `License-Expression`, `License`, `Classifier`,
    /// `Cargo.toml`, `copyright`.
    pub source: Option<String>,
    /// The licence the vendor concluded from the licence text (the manifest's
    /// `[licences.components.<name>] concluded`), an SPDX expression.
    pub concluded: Option<String>,
    /// The vendor's reason for that conclusion.
    pub conclusion: Option<String>,
    /// The licence texts the component ships.
    #[serde(skip)]
    pub texts: Vec<LicenceText>,
}

/// One licence file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LicenceText {
    /// Its name as the component ships it (`LICENSE`, `licenses/AUTHORS`).
    pub file: String,
    /// Its text.
    pub text: String,
}

/// `text` as a canonical SPDX expression, if it is one: strict SPDX syntax, or the
/// common spellings the `spdx` crate accepts leniently (`Apache 2.0`, `GPLv2+`,
/// `MIT/Apache-2.0`). One line at most: a field holding a whole licence text is not
/// an expression.
pub fn expression(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() || text.contains('\n') || text.len() > 200 {
        return None;
    }
    if spdx::Expression::parse(text).is_ok() {
        return Some(text.to_owned());
    }
    // Lenient, but only to an expression that then parses strictly.
    let canonical = spdx::Expression::canonicalize(text).ok()??;
    spdx::Expression::parse(&canonical).ok()?;
    // "BSD" alone names no one BSD licence: not an expression.
    if is_ambiguous(text) {
        return None;
    }
    Some(canonical)
}

/// Names that several licences answer to.
fn is_ambiguous(text: &str) -> bool {
    let t = text.trim().to_ascii_lowercase();
    [
        "bsd",
        "bsd license",
        "gpl",
        "lgpl",
        "apache",
        "mpl",
        "dual license",
    ]
    .contains(&t.as_str())
}

/// The licence a Python distribution declares: `License-Expression` (metadata 2.4),
/// else a `License` field that is an SPDX expression, else the trove classifiers that
/// name exactly one SPDX licence (several are all required: `AND`, the reading that
/// never understates an obligation), else the `License` field's or classifiers' own
/// words.
pub fn declared(
    license_expression: Option<&str>,
    license: Option<&str>,
    classifiers: &[String],
) -> Licence {
    if let Some(e) = license_expression {
        return match expression(e) {
            Some(expr) => Licence {
                expression: Some(expr),
                source: Some("License-Expression".to_owned()),
                ..Licence::default()
            },
            None => Licence {
                declared_as: Some(e.trim().to_owned()),
                source: Some("License-Expression".to_owned()),
                ..Licence::default()
            },
        };
    }
    if let Some(expr) = license.and_then(expression) {
        return Licence {
            expression: Some(expr),
            source: Some("License".to_owned()),
            ..Licence::default()
        };
    }
    let named: Vec<&str> = classifiers
        .iter()
        .filter_map(|c| c.strip_prefix("License :: "))
        .map(|c| c.rsplit(" :: ").next().unwrap_or(c).trim())
        .collect();
    let mapped: Vec<Option<&str>> = named.iter().map(|n| classifier_id(n)).collect();
    if !mapped.is_empty() && mapped.iter().all(Option::is_some) {
        let mut ids: Vec<&str> = mapped.into_iter().flatten().collect();
        ids.sort_unstable();
        ids.dedup();
        let expr = if ids.len() == 1 {
            ids[0].to_owned()
        } else {
            ids.iter()
                .map(|id| {
                    if id.contains(' ') {
                        format!("({id})")
                    } else {
                        (*id).to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        return Licence {
            expression: Some(expr),
            source: Some("Classifier".to_owned()),
            ..Licence::default()
        };
    }
    // The component's own words: a short License field, else the classifiers'.
    let words = license
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('\n') && l.len() <= 200)
        .map(|l| (l.to_owned(), "License"))
        .or_else(|| (!named.is_empty()).then(|| (named.join(", "), "Classifier")));
    Licence {
        declared_as: words.as_ref().map(|(w, _)| w.clone()),
        source: words.map(|(_, s)| s.to_owned()),
        ..Licence::default()
    }
}

/// The SPDX identifier of a trove licence classifier's last part, for those that name
/// exactly one licence. `BSD License`, `Apache Software License` (1.1 or 2.0?) and
/// the like name several and map to nothing.
fn classifier_id(name: &str) -> Option<&'static str> {
    Some(match name {
        "MIT License" => "MIT",
        "MIT No Attribution License (MIT-0)" => "MIT-0",
        "ISC License (ISCL)" => "ISC",
        "Python Software Foundation License" => "PSF-2.0",
        "Mozilla Public License 1.1 (MPL 1.1)" => "MPL-1.1",
        "Mozilla Public License 2.0 (MPL 2.0)" => "MPL-2.0",
        "GNU General Public License v2 (GPLv2)" => "GPL-2.0-only",
        "GNU General Public License v2 or later (GPLv2+)" => "GPL-2.0-or-later",
        "GNU General Public License v3 (GPLv3)" => "GPL-3.0-only",
        "GNU General Public License v3 or later (GPLv3+)" => "GPL-3.0-or-later",
        "GNU Lesser General Public License v2 (LGPLv2)" => "LGPL-2.0-only",
        "GNU Lesser General Public License v2 or later (LGPLv2+)" => "LGPL-2.0-or-later",
        "GNU Lesser General Public License v3 (LGPLv3)" => "LGPL-3.0-only",
        "GNU Lesser General Public License v3 or later (LGPLv3+)" => "LGPL-3.0-or-later",
        "GNU Affero General Public License v3" => "AGPL-3.0-only",
        "GNU Affero General Public License v3 or later (AGPLv3+)" => "AGPL-3.0-or-later",
        "Apache Software License 2.0 (Apache-2.0)" => "Apache-2.0",
        "The Unlicense (Unlicense)" => "Unlicense",
        "zlib/libpng License" => "Zlib",
        "Historical Permission Notice and Disclaimer (HPND)" => "HPND",
        "Eclipse Public License 1.0 (EPL-1.0)" => "EPL-1.0",
        "Eclipse Public License 2.0 (EPL-2.0)" => "EPL-2.0",
        "European Union Public Licence 1.2 (EUPL 1.2)" => "EUPL-1.2",
        "Boost Software License 1.0 (BSL-1.0)" => "BSL-1.0",
        "CC0 1.0 Universal (CC0 1.0) Public Domain Dedication" => "CC0-1.0",
        "Universal Permissive License (UPL)" => "UPL-1.0",
        "PostgreSQL License" => "PostgreSQL",
        // `Zope Public License`, `Academic Free License (AFL)`, `BSD License`, …
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classifiers(names: &[&str]) -> Vec<String> {
        names
            .iter()
            .map(|n| format!("License :: OSI Approved :: {n}"))
            .collect()
    }

    #[test]
    fn an_expression_wins_then_the_license_field_then_classifiers() {
        let l = declared(Some("Apache-2.0 OR BSD-3-Clause"), Some("BSD"), &[]);
        assert_eq!(l.expression.as_deref(), Some("Apache-2.0 OR BSD-3-Clause"));
        assert_eq!(l.source.as_deref(), Some("License-Expression"));
        let l = declared(None, Some("MIT"), &classifiers(&["BSD License"]));
        assert_eq!(l.expression.as_deref(), Some("MIT"));
        let l = declared(None, None, &classifiers(&["MIT License"]));
        assert_eq!(
            (l.expression.as_deref(), l.source.as_deref()),
            (Some("MIT"), Some("Classifier"))
        );
        let l = declared(
            None,
            Some("UNKNOWN text\nof a whole licence"),
            &classifiers(&["MIT License", "ISC License (ISCL)"]),
        );
        assert_eq!(l.expression.as_deref(), Some("ISC AND MIT"));
    }

    #[test]
    fn ambiguous_names_stay_words_not_guesses() {
        let l = declared(None, Some("BSD"), &classifiers(&["BSD License"]));
        assert_eq!(l.expression, None);
        assert_eq!(l.declared_as.as_deref(), Some("BSD"));
        let l = declared(None, None, &classifiers(&["BSD License"]));
        assert_eq!(
            (l.declared_as.as_deref(), l.source.as_deref()),
            (Some("BSD License"), Some("Classifier"))
        );
        // One mapped and one not: not an expression either.
        let l = declared(None, None, &classifiers(&["MIT License", "BSD License"]));
        assert_eq!(l.expression, None);
        let l = declared(None, None, &[]);
        assert_eq!(l, Licence::default());
        assert_eq!(expression("Apache 2.0").as_deref(), Some("Apache-2.0"));
        assert_eq!(
            expression("MIT/Apache-2.0").as_deref(),
            Some("MIT OR Apache-2.0")
        );
        assert_eq!(
            expression("Copyright (c) someone, all rights reserved"),
            None
        );
        // A declared expression that is not SPDX is kept as the vendor's words.
        let l = declared(Some("Proprietary-Thing"), None, &[]);
        assert_eq!(l.declared_as.as_deref(), Some("Proprietary-Thing"));
    }
}
