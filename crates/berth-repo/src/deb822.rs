//! Debian control data (deb822): paragraphs of `Name: value` fields, continuation
//! lines starting with a space, paragraphs separated by empty lines. The field order
//! of a paragraph is kept.

use crate::RepoError;

/// One paragraph: its fields in order; a value holds its continuation lines after
/// `\n`, each with its leading space.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paragraph {
    fields: Vec<(String, String)>,
}

impl Paragraph {
    /// The value of `name` (field names are case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` to `value`, in its place if the paragraph has it, else at the end.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        if let Some(field) = self
            .fields
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            field.1 = value;
        } else {
            self.fields.push((name.to_owned(), value));
        }
    }

    /// Removes `name` and gives its value back.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let at = self
            .fields
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))?;
        Some(self.fields.remove(at).1)
    }

    /// The fields, in order.
    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    /// The paragraph as text, each field on its line(s), ending in a newline.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, value) in &self.fields {
            out.push_str(name);
            out.push(':');
            if !value.is_empty() && !value.starts_with('\n') {
                out.push(' ');
            }
            out.push_str(value);
            out.push('\n');
        }
        out
    }
}

/// The paragraphs of `text`; `source` names it in errors, with the line.
pub fn parse(text: &str, source: &str) -> Result<Vec<Paragraph>, RepoError> {
    let mut out = Vec::new();
    let mut current = Paragraph::default();
    let error = |line: usize, what: &str| RepoError::Format {
        file: source.to_owned(),
        line,
        what: what.to_owned(),
    };
    for (n, line) in text.lines().enumerate() {
        let number = n + 1;
        if line.trim().is_empty() {
            if !current.fields.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let Some(last) = current.fields.last_mut() else {
                return Err(error(number, "a continuation line before any field"));
            };
            last.1.push('\n');
            last.1.push_str(line);
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(error(number, "expected `Name: value`"));
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_graphic() && c != ':') {
            return Err(error(number, "a field name is printable ASCII with no `:`"));
        }
        if current.get(name).is_some() {
            return Err(error(number, &format!("the field `{name}` appears twice")));
        }
        current
            .fields
            .push((name.to_owned(), value.trim().to_owned()));
    }
    if !current.fields.is_empty() {
        out.push(current);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_read_back_as_written() {
        let text = "Package: demo\nVersion: 1.0\nDescription: short\n long one\n .\n more\n\n\
                    Package: other\nVersion: 2\n";
        let ps = parse(text, "Packages").unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(
            ps[0].get("description"),
            Some("short\n long one\n .\n more")
        );
        assert_eq!(
            ps.iter()
                .map(Paragraph::render)
                .collect::<Vec<_>>()
                .join("\n"),
            text
        );
        let e = parse("Package: a\nbroken\n", "Packages")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Packages:2"), "{e}");
        assert!(parse(" x\n", "p").is_err());
        assert!(parse("A: 1\na: 2\n", "p").is_err());
    }
}
