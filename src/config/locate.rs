//! Maps between byte offsets in the TOML text and dotted key paths, so that
//! every error can name both the key and its line/column.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// 1-based line and column (in characters) of byte offset `pos`, as toml reports them.
pub fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = floor_char_boundary(text, pos);
    let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let line = text[..line_start].matches('\n').count() + 1;
    let column = text[line_start..pos].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, pos: usize) -> usize {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    pos
}

fn contains(span: &Range<usize>, pos: usize) -> bool {
    span.contains(&pos) || (span.is_empty() && span.start == pos)
}

/// Appends `key` to a dotted path, quoting it as TOML would when it is not a
/// bare key (an empty or spaced key must still be visible in the message).
fn join(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// A key found at an offset: its dotted path and the span of its value.
pub struct Hit {
    pub path: String,
    pub value_span: Range<usize>,
    pub is_table: bool,
}

/// The innermost key whose name or value covers `pos` (where toml points its
/// type and unknown-field errors).
pub fn key_at(root: &DeTable<'_>, pos: usize) -> Option<Hit> {
    find(root, pos, "")
}

fn find(table: &DeTable<'_>, pos: usize, prefix: &str) -> Option<Hit> {
    // A `[section]` table's span need not cover its entries, and a section
    // contains its entries' spans anyway: look at every child before settling
    // for a whole table.
    let mut table_hit = None;
    for (key, value) in table.iter() {
        let path = join(prefix, key.get_ref());
        let covers = contains(&key.span(), pos) || contains(&value.span(), pos);
        match value.get_ref() {
            DeValue::Table(inner) => {
                if let Some(hit) = find(inner, pos, &path) {
                    return Some(hit);
                }
                if covers && table_hit.is_none() {
                    table_hit = Some(Hit {
                        path,
                        value_span: value.span(),
                        is_table: true,
                    });
                }
            }
            _ if covers => {
                return Some(Hit {
                    path,
                    value_span: value.span(),
                    is_table: false,
                })
            }
            _ => {}
        }
    }
    table_hit
}

/// Span of the value at dotted `path`, if the document sets it.
pub fn value_span(root: &DeTable<'_>, path: &str) -> Option<Range<usize>> {
    let mut table = root;
    let mut segments = path.split('.').peekable();
    while let Some(segment) = segments.next() {
        let (_, value) = table.iter().find(|(k, _)| k.get_ref() == segment)?;
        if segments.peek().is_none() {
            return Some(value.span());
        }
        match value.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ => return None,
        }
    }
    None
}

/// The value as written, shortened for a one-line message.
pub fn snippet(text: &str, span: Range<usize>) -> String {
    const MAX_CHARS: usize = 60;
    let raw = text.get(span).unwrap_or("").trim();
    let one_line: String = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > MAX_CHARS {
        let cut: String = one_line.chars().take(MAX_CHARS).collect();
        format!("{cut}...")
    } else {
        one_line
    }
}

/// Best-effort key and value for a syntax error at `pos`: a document that does
/// not parse has no key tree, so read the offending line and the section
/// header above it.
pub fn syntax_context(text: &str, pos: usize) -> (String, String) {
    let pos = floor_char_boundary(text, pos);
    let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
    let line = &text[line_start..line_end];
    let section = text[..line_start].lines().rev().find_map(header_name);
    let section = section.as_deref().unwrap_or("");
    if let Some(header) = header_name(line) {
        return (header, snippet(line, 0..line.len()));
    }
    match line.split_once('=') {
        Some((key, value)) if looks_like_key(key) => {
            let key: String = key.chars().filter(|c| !c.is_whitespace()).collect();
            (join(section, &key), snippet(value, 0..value.len()))
        }
        _ if section.is_empty() => ("(document)".to_owned(), snippet(line, 0..line.len())),
        _ => (section.to_owned(), snippet(line, 0..line.len())),
    }
}

fn looks_like_key(key: &str) -> bool {
    let key = key.trim();
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-. \"'".contains(c))
}

/// `rate` for a `[rate]` or `[[rate]]` line (comments allowed after it).
fn header_name(line: &str) -> Option<String> {
    let line = line.trim();
    let inner = line.strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let (name, _) = inner.split_once(']')?;
    let name: String = name.chars().filter(|c| !c.is_whitespace()).collect();
    (!name.is_empty() && looks_like_key(&name)).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_from_one_in_chars() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_col(text, 9), (2, 3));
        assert_eq!(line_col(text, 1000), (3, 1));
    }

    #[test]
    fn keys_are_found_by_offset_and_by_path() {
        let text = "device_id = \"x\"\n[rate]\ngain = 3.0\n[mqtt]\nbroker = \"embedded\"\n";
        let doc = DeTable::parse(text).expect("valid TOML");
        let gain_at = text.find("3.0").expect("present");
        let hit = key_at(doc.get_ref(), gain_at).expect("found");
        assert_eq!(hit.path, "rate.gain");
        assert_eq!(snippet(text, hit.value_span), "3.0");
        let key_at_name = key_at(doc.get_ref(), text.find("broker").expect("present"));
        assert_eq!(key_at_name.map(|h| h.path).as_deref(), Some("mqtt.broker"));
        let span = value_span(doc.get_ref(), "mqtt.broker").expect("set");
        assert_eq!(snippet(text, span), "\"embedded\"");
        assert!(value_span(doc.get_ref(), "mqtt.port").is_none());
        assert!(value_span(doc.get_ref(), "device_id.x").is_none());
    }

    #[test]
    fn syntax_errors_name_the_line_key_under_its_section() {
        let text = "[rate]\n# comment\ngain = 3.0.1\n";
        let pos = text.find("3.0.1").expect("present");
        assert_eq!(
            syntax_context(text, pos),
            ("rate.gain".into(), "3.0.1".into())
        );
        let text = "[mqtt\nx = 1";
        assert_eq!(syntax_context(text, 5).0, "(document)");
        assert_eq!(syntax_context("[ spool ] # c\nbad line", 16).0, "spool");
    }
}
