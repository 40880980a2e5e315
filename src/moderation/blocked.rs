//! Blocked-term matching that sees through simple disguises.
//!
//! Both the term and the message are folded the same way (see [`super::fold`]:
//! NFKC, case, katakana as hiragana, invisible characters removed, Cyrillic
//! and Greek look-alikes and digits standing for letters mapped). Then:
//! - A term made of ASCII letters and digits matches whole words only. The
//!   message is split into words at every other character (spaces, dots, dashes,
//!   `*`, …), and runs of single letters are joined (`s p a m`, `s.p.a.m`,
//!   `S-P-A-M` all become `spam`). The term matches when it equals one word or
//!   several consecutive words joined (`buy followers` matches `buy.followers`
//!   and `BuyFollowers`), or that plus a plural `s`/`es`. `ass` therefore does
//!   not match `class`, and `spam` does not match `spammer`.
//! - A term with other characters (Japanese, for instance, written without
//!   spaces) matches anywhere in the message once separators are removed.

/// A term prepared for matching.
#[derive(Debug, Clone)]
pub struct BlockedTerm {
    /// As the moderator typed it.
    pub original: String,
    normalized: String,
    whole_words: bool,
}

/// Folded characters (see [`super::fold`]); `None` for separators.
fn normalize_chars(text: &str) -> impl Iterator<Item = Option<char>> {
    super::fold::fold_text(text)
        .chars()
        .map(|c| c.is_alphanumeric().then_some(c))
        .collect::<Vec<_>>()
        .into_iter()
}

/// Words of a message with runs of single letters joined.
fn words(text: &str) -> Vec<String> {
    let mut raw: Vec<String> = Vec::new();
    let mut cur = String::new();
    for c in normalize_chars(text) {
        match c {
            Some(c) => cur.push(c),
            None => {
                if !cur.is_empty() {
                    raw.push(std::mem::take(&mut cur));
                }
            }
        }
    }
    if !cur.is_empty() {
        raw.push(cur);
    }
    let mut out: Vec<String> = Vec::new();
    let mut run = String::new();
    let mut run_len = 0;
    for w in raw {
        if w.chars().count() == 1 {
            run.push_str(&w);
            run_len += 1;
            continue;
        }
        if !run.is_empty() {
            // A lone single letter is a word of its own ("a", "i").
            out.push(std::mem::take(&mut run));
            run_len = 0;
        }
        out.push(w);
    }
    if !run.is_empty() {
        let _ = run_len;
        out.push(run);
    }
    out
}

impl BlockedTerm {
    /// Prepares a term; `None` when nothing matchable is left.
    pub fn new(term: &str) -> Option<Self> {
        let normalized: String = normalize_chars(term).flatten().collect();
        if normalized.is_empty() {
            return None;
        }
        let whole_words = normalized.chars().all(|c| c.is_ascii_alphanumeric());
        Some(Self {
            original: term.to_string(),
            normalized,
            whole_words,
        })
    }
}

/// The first blocked term the message contains, if any.
pub fn find<'a>(terms: &'a [BlockedTerm], message: &str) -> Option<&'a BlockedTerm> {
    if terms.is_empty() {
        return None;
    }
    let words = words(message);
    let squeezed: String = normalize_chars(message).flatten().collect();
    terms.iter().find(|t| {
        if !t.whole_words {
            return squeezed.contains(&t.normalized);
        }
        for start in 0..words.len() {
            let mut joined = String::new();
            for w in &words[start..] {
                joined.push_str(w);
                if joined.len() > t.normalized.len() + 2 {
                    break;
                }
                let plural_s = joined.strip_suffix('s') == Some(t.normalized.as_str());
                let plural_es = joined.strip_suffix("es") == Some(t.normalized.as_str());
                if joined == t.normalized || plural_s || plural_es {
                    return true;
                }
            }
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(list: &[&str]) -> Vec<BlockedTerm> {
        list.iter().filter_map(|t| BlockedTerm::new(t)).collect()
    }

    #[test]
    fn catches_disguises() {
        let t = terms(&["spam", "buy followers", "バカ"]);
        for msg in [
            "spam",
            "SPAM!",
            "this is s p a m",
            "s.p.a.m",
            "S-P-A-M here",
            "sp4m",
            "$pam",
            "ｓｐａｍ",
            "spams",
            "buy followers now",
            "BUY.FOLLOWERS",
            "buy f o l l o w e r s",
            "お前はバカだ",
            "バ カ",
            "お前はばかだ", // hiragana for katakana
            "ﾊﾞｶ",           // half-width katakana
            "spаm",         // Cyrillic а
            "sp\u{200D}am", // zero-width joiner inside
            "SP\u{202E}AM", // bidi override inside
            "ＢＵＹ ＦＯＬＬＯＷＥＲＳ",
        ] {
            assert!(find(&t, msg).is_some(), "{msg} should match");
        }
    }

    // Same shape as catches_disguises: a table of messages, checked the other way.
    #[test]
    fn no_false_positives() {
        let t = terms(&["ass", "spam", "hell"]);
        for msg in [
            "what a class act",
            "spammer",
            "hello there",
            "a s i see",
            "this is a message",
            "I assume so",
            "Shell scripts",
        ] {
            assert!(find(&t, msg).is_none(), "{msg} should not match");
        }
        // Japanese text that merely shares kana with a term is not caught.
        let t = terms(&["バカ"]);
        for msg in ["ばんかい", "バターカレー", "ばっかり"] {
            assert!(find(&t, msg).is_none(), "{msg} should not match");
        }
        assert!(BlockedTerm::new("...").is_none());
    }
}
