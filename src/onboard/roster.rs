//! The user ids of a cohort: numbered (`trainee-01` … `trainee-50`) or from a list of first
//! names, sanitised into valid, unique user ids.
//!
//! A valid user id is 1-128 characters of `A-Z a-z 0-9 - _ . : @` (see
//! `headers::is_well_formed_id`). Names are folded to lower case, accents dropped where
//! the letter is a plain Latin one underneath (`José` → `jose`), anything else becomes `-`;
//! a name left empty by that is numbered instead, and repeats get `-2`, `-3`….

use std::collections::BTreeSet;

use crate::headers;

/// Longest user id (the gateway's limit).
const MAX_ID_LEN: usize = 128;

/// `<prefix>-01` … `<prefix>-<count>`, numbers padded to the width of `count` (two at least).
pub fn numbered(prefix: &str, count: usize) -> Result<Vec<String>, String> {
    if count == 0 {
        return Err("--count must be at least 1".to_owned());
    }
    let prefix = valid_prefix(prefix)?;
    let width = count.to_string().len().max(2);
    let ids: Vec<String> = (1..=count)
        .map(|n| format!("{prefix}-{n:0width$}"))
        .collect();
    check_all(&ids)?;
    Ok(ids)
}

/// One id per non-empty line of `names` (a first name a line; `#` starts a comment line), with
/// `<prefix>-` in front when a prefix is given, so that `onboard revoke --prefix` can find
/// the cohort later.
pub fn from_names(names: &str, prefix: Option<&str>) -> Result<Vec<String>, String> {
    let prefix = prefix.map(valid_prefix).transpose()?;
    let mut taken = BTreeSet::new();
    let mut ids = Vec::new();
    for (n, name) in names
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .enumerate()
    {
        let mut base = sanitise(name);
        if base.is_empty() {
            base = format!("trainee-{:02}", n + 1);
        }
        if let Some(prefix) = prefix {
            base = format!("{prefix}-{base}");
        }
        base.truncate(MAX_ID_LEN - 4);
        let mut id = base.clone();
        let mut repeat = 1;
        while !taken.insert(id.clone()) {
            repeat += 1;
            id = format!("{base}-{repeat}");
        }
        ids.push(id);
    }
    if ids.is_empty() {
        return Err("the names file holds no names (one first name a line)".to_owned());
    }
    check_all(&ids)?;
    Ok(ids)
}

/// A first name as a user id: lower case ASCII, accents dropped, runs of anything else as one
/// `-`, no `-` at either end.
pub fn sanitise(name: &str) -> String {
    let mut id = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        match plain_letter(c) {
            Some(c) => id.push(c),
            None if !id.ends_with('-') => id.push('-'),
            None => {}
        }
    }
    id.trim_matches('-').to_owned()
}

/// `c` as a plain ASCII letter or digit (accented Latin letters lose their accent), or `None`.
fn plain_letter(c: char) -> Option<char> {
    if c.is_ascii_alphanumeric() {
        return Some(c);
    }
    let plain = match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => 'a',
        'ç' | 'ć' | 'č' => 'c',
        'ď' | 'đ' => 'd',
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => 'e',
        'ğ' => 'g',
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => 'i',
        'ł' | 'ľ' | 'ĺ' => 'l',
        'ñ' | 'ń' | 'ň' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => 'o',
        'ŕ' | 'ř' => 'r',
        'ś' | 'š' | 'ş' | 'ș' | 'ß' => 's',
        'ť' | 'ţ' | 'ț' => 't',
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' => 'u',
        'ý' | 'ÿ' => 'y',
        'ź' | 'ż' | 'ž' => 'z',
        _ => return None,
    };
    Some(plain)
}

/// A prefix must itself be a valid id that leaves room for a number or a name.
fn valid_prefix(prefix: &str) -> Result<&str, String> {
    if prefix.len() > 64 || !headers::is_well_formed_id(prefix.as_bytes()) {
        return Err(format!(
            "--prefix `{prefix}` must be 1-64 characters of A-Z a-z 0-9 - _ . : @"
        ));
    }
    Ok(prefix)
}

fn check_all(ids: &[String]) -> Result<(), String> {
    match ids
        .iter()
        .find(|id| !headers::is_well_formed_id(id.as_bytes()))
    {
        Some(bad) => Err(format!("`{bad}` is not a valid user id")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_ids_are_padded_to_the_count() {
        assert_eq!(
            numbered("trainee", 3).unwrap(),
            ["trainee-01", "trainee-02", "trainee-03"]
        );
        let ids = numbered("t", 120).unwrap();
        assert_eq!((ids[0].as_str(), ids[119].as_str()), ("t-001", "t-120"));
        assert!(numbered("trainee", 0).is_err());
        assert!(numbered("bad prefix", 2).is_err());
    }

    #[test]
    fn names_become_valid_unique_ids() {
        let names = "Ana\n\n# late sign-ups\nJosé María\nana\n  Zoë  \n李\nO'Brien\n";
        let ids = from_names(names, None).unwrap();
        assert_eq!(
            ids,
            ["ana", "jose-maria", "ana-2", "zoe", "trainee-05", "o-brien"]
        );
        for id in &ids {
            assert!(headers::is_well_formed_id(id.as_bytes()), "{id}");
        }
        let prefixed = from_names("Ana\nBo", Some("may")).unwrap();
        assert_eq!(prefixed, ["may-ana", "may-bo"]);
        assert!(from_names("\n# nobody\n", None).is_err());
    }

    #[test]
    fn very_long_names_are_cut_to_a_valid_length() {
        let long = "a".repeat(300);
        let ids = from_names(&format!("{long}\n{long}"), None).unwrap();
        assert!(ids.iter().all(|id| id.len() <= MAX_ID_LEN));
        assert_ne!(ids[0], ids[1]);
    }
}
