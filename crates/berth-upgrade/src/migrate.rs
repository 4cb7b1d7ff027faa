//! `berth config migrate`: the site config rewritten for renamed settings, keeping the
//! administrator's comments, order and layout (only the moved lines change).

use toml_edit::{DocumentMut, Item, Key, Table};

/// Why the site config cannot be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrateError {
    /// The site config is not TOML (it is checked before, so this is rare).
    #[error("the site config is not valid TOML: {0}")]
    Syntax(String),
    /// Both the old and the new name are set.
    #[error(
        "`{old}` was renamed to `{new}`, and both are set: remove one of them from the site config, then run `berth config migrate` again"
    )]
    BothSet {
        /// The old name.
        old: String,
        /// The new name.
        new: String,
    },
    /// A name is not `group.key` or its group is not a `[group]` table.
    #[error(
        "`{0}` cannot be moved: its group is not a `[group]` table in the site config (write it as one)"
    )]
    NotATable(String),
}

/// `text` with each `(old, new)` rename applied in order: the value, with the comments
/// above it and after it, moves from `[old-group] old-key` to `[new-group] new-key`
/// (the group is made when missing, and an old group left empty is removed). Returns the
/// new text and the renames that applied (an old name the site config does not set is
/// skipped).
pub fn migrate_site(
    text: &str,
    renames: &[(String, String)],
) -> Result<(String, Vec<(String, String)>), MigrateError> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| MigrateError::Syntax(e.to_string()))?;
    let mut done = Vec::new();
    for (old, new) in renames {
        let (Some((og, ok)), Some((ng, nk))) = (old.split_once('.'), new.split_once('.')) else {
            return Err(MigrateError::NotATable(old.clone()));
        };
        let Some(old_table) = doc.get_mut(og) else {
            continue;
        };
        let old_table = old_table
            .as_table_like_mut()
            .ok_or_else(|| MigrateError::NotATable(old.clone()))?;
        if !old_table.contains_key(ok) {
            continue;
        }
        if doc
            .get(ng)
            .and_then(Item::as_table_like)
            .is_some_and(|t| t.contains_key(nk))
        {
            return Err(MigrateError::BothSet {
                old: old.clone(),
                new: new.clone(),
            });
        }
        let old_table = doc
            .get_mut(og)
            .and_then(Item::as_table_mut)
            .ok_or_else(|| MigrateError::NotATable(old.clone()))?;
        let mut new_key = Key::new(nk);
        if og == ng {
            // Renamed within its group: rebuilt in the same order, so it keeps its line.
            let names: Vec<String> = old_table.iter().map(|(k, _)| k.to_owned()).collect();
            for name in names {
                let (key, item) = old_table.remove_entry(&name).expect("listed just now");
                if name == ok {
                    *new_key.leaf_decor_mut() = key.leaf_decor().clone();
                    old_table.insert_formatted(&new_key, item);
                } else {
                    old_table.insert_formatted(&key, item);
                }
            }
            done.push((old.clone(), new.clone()));
            continue;
        }
        let (key, item) = old_table.remove_entry(ok).expect("the key was just found");
        *new_key.leaf_decor_mut() = key.leaf_decor().clone();
        if old_table.is_empty() {
            doc.remove(og);
        }
        if doc.get(ng).is_none() {
            doc.insert(ng, Item::Table(Table::new()));
        }
        let new_table = doc
            .get_mut(ng)
            .and_then(Item::as_table_mut)
            .ok_or_else(|| MigrateError::NotATable(new.clone()))?;
        new_table.insert_formatted(&new_key, item);
        done.push((old.clone(), new.clone()));
    }
    Ok((doc.to_string(), done))
}

#[cfg(test)]
mod tests {
    use super::{MigrateError, migrate_site};

    fn renames(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    const SITE: &str = "\
# The administrator's notes stay where they are.
external_url = \"http://netbox.example.com/\"

[web]
# Slow reports need more time.
timeout = 300  # seconds
workers = 5

[nginx]
listen = \"0.0.0.0\"
";

    #[test]
    fn a_renamed_key_moves_with_its_comments() {
        let (text, done) =
            migrate_site(SITE, &renames(&[("web.timeout", "web.request_timeout")])).unwrap();
        assert_eq!(done.len(), 1);
        insta::assert_snapshot!(text);
    }

    #[test]
    fn a_key_moves_to_another_group_and_an_emptied_group_goes() {
        let site = "[old]\n# why\nkey = 1\n\n[web]\nworkers = 2\n";
        let (text, _) = migrate_site(site, &renames(&[("old.key", "web.new_key")])).unwrap();
        assert_eq!(text, "\n[web]\nworkers = 2\n# why\nnew_key = 1\n");
        let (text, _) = migrate_site(site, &renames(&[("old.key", "fresh.key")])).unwrap();
        assert_eq!(text, "\n[web]\nworkers = 2\n\n[fresh]\n# why\nkey = 1\n");
    }

    #[test]
    fn what_is_not_set_is_left_and_both_set_is_refused() {
        let (text, done) =
            migrate_site(SITE, &renames(&[("web.threads", "web.thread_count")])).unwrap();
        assert_eq!((text.as_str(), done.len()), (SITE, 0));
        let site = "[web]\ntimeout = 1\nrequest_timeout = 2\n";
        assert_eq!(
            migrate_site(site, &renames(&[("web.timeout", "web.request_timeout")])).unwrap_err(),
            MigrateError::BothSet {
                old: "web.timeout".into(),
                new: "web.request_timeout".into()
            }
        );
        assert!(matches!(
            migrate_site("[web\n", &[]).unwrap_err(),
            MigrateError::Syntax(_)
        ));
    }
}
