//! "Did you mean …?" for a misspelt name: the closest candidate by edit
//! distance, when it is close enough to be a typo rather than another word.

/// The candidate nearest `input` (ignoring case), if it is within a third
/// of the input's length in edits (at least one, at most three).
pub fn closest<'a, I>(input: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let input = input.to_lowercase();
    let limit = (input.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (distance(&input, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// ` did you mean "x"?` to append to a message, or nothing.
pub fn hint<'a, I>(input: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    closest(input, candidates).map_or_else(String::new, |c| format!(" did you mean {c:?}?"))
}

/// Levenshtein distance over characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_word_and_other_words_find_nothing() {
        let words = ["real_time_protection", "scan_archives", "pua_protection"];
        assert_eq!(
            closest("real_time_protecton", words),
            Some("real_time_protection")
        );
        assert_eq!(closest("Scan_Archive", words), Some("scan_archives"));
        assert_eq!(closest("firewall_enabled", words), None);
        assert_eq!(closest("blok", ["off", "audit", "block"]), Some("block"));
        assert_eq!(closest("xyz", ["off", "audit", "block"]), None);
        assert_eq!(hint("audi", ["audit"]), " did you mean \"audit\"?");
        assert_eq!(hint("zzz", ["audit"]), "");
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
    }
}
