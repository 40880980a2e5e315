//! Folding text for term lists, `unique_chat` and search: both sides of a
//! comparison are folded the same way, so a term still matches under the
//! usual disguises. Per character, after Unicode NFKC (full-width and
//! half-width forms, ligatures, circled and styled letters to plain ones):
//! - zero-width and bidirectional control characters are removed (U+200B–U+200F,
//!   U+202A–U+202E, U+2060–U+2064, U+2066–U+2069, U+FEFF, U+00AD, U+061C);
//! - case is folded (Unicode lower case, then ß/ẞ → ss and final ς → σ, as
//!   full case folding does);
//! - katakana become hiragana (ア→あ), so either script matches the other;
//! - Cyrillic (with its supplement) and Greek letters that look like Latin
//!   ones become those (Unicode's confusables, UTS #39: а→a, ο→o, р→p, Ι→i,
//!   ԁ→d, ԛ→q, ԝ→w…);
//! - digits and signs standing for letters become them: 0→o 1→i 3→e 4→a 5→s
//!   7→t @→a $→s (`h3ll0` → `hello`).
//!
//! Not folded: other scripts' look-alikes, letters doubled or spaced out (the
//! matcher in [`super::blocked`] handles spacing), and kanji.

use unicode_normalization::UnicodeNormalization;

/// True for the invisible characters that are removed.
fn invisible(c: char) -> bool {
    matches!(c as u32,
        0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x2069 | 0xFEFF | 0x00AD
        | 0x061C)
}

/// A Cyrillic or Greek letter that looks like a Latin one, as that letter.
fn latin_lookalike(c: char) -> Option<char> {
    // Greek and Coptic (U+0370..), Cyrillic and its supplement (..U+052F).
    if !(0x0370..=0x052F).contains(&(c as u32)) {
        return None;
    }
    let mut buf = [0u8; 4];
    let mut skeleton = unicode_security::confusable_detection::skeleton(c.encode_utf8(&mut buf));
    let first = skeleton.next()?;
    (skeleton.next().is_none() && first.is_ascii_alphabetic()).then(|| first.to_ascii_lowercase())
}

/// One character after NFKC, folded (it may become several when lower-cased).
fn fold_into(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(ascii(c.to_ascii_lowercase()));
        return;
    }
    // Look-alikes are mapped in their own case (Greek Β is B; its lower
    // case β is not b).
    if let Some(l) = latin_lookalike(c) {
        out.push(l);
        return;
    }
    for c in c.to_lowercase() {
        match c {
            // Where full case folding differs from lower case.
            'ß' => out.push_str("ss"),
            'ς' => out.push(latin_lookalike('σ').unwrap_or('σ')),
            // Katakana (ァ..ヶ) to hiragana.
            '\u{30A1}'..='\u{30F6}' => out.push(char::from_u32(c as u32 - 0x60).unwrap_or(c)),
            c if c.is_ascii() => out.push(ascii(c)),
            c => out.push(latin_lookalike(c).unwrap_or(c)),
        }
    }
}

/// Digits and signs that stand for letters.
fn ascii(c: char) -> char {
    match c {
        '0' => 'o',
        '1' => 'i',
        '3' => 'e',
        '4' => 'a',
        '5' => 's',
        '7' => 't',
        '@' => 'a',
        '$' => 's',
        c => c,
    }
}

/// A text folded (white space and punctuation kept).
pub fn fold_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.nfkc().filter(|c| !invisible(*c)) {
        fold_into(c, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_disguise_folds_to_the_plain_form() {
        for (disguised, plain) in [
            ("ＳＰＡＭ", "spam"),     // full-width
            ("Spam", "spam"),         // case
            ("spаm", "spam"),         // Cyrillic а
            ("САРЕ", "cape"),         // Cyrillic capitals
            ("sp\u{200D}am", "spam"), // zero-width joiner
            ("s\u{202E}pam", "spam"), // bidi override
            ("h3ll0", "hello"),       // digits for letters
            ("バカ", "ばか"),         // katakana to hiragana
            ("ﾊﾞｶ", "ばか"),           // half-width katakana
            ("ΒΟΤ", "bot"),           // Greek capitals
            ("ԁog", "dog"),           // Cyrillic Supplement ԁ
            ("ԝin", "win"),           // Cyrillic Supplement ԝ
            ("sp\u{061C}am", "spam"), // Arabic letter mark (bidi)
            ("STRAẞE", "strasse"),    // capital sharp s
            ("straße", "strasse"),    // sharp s
        ] {
            assert_eq!(fold_text(disguised), plain, "{disguised}");
        }
    }

    #[test]
    fn final_sigma_is_sigma() {
        assert_eq!(fold_text("λόγος"), fold_text("λόγοσ"));
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in [
            "hello world",
            "こんにちは",
            "ライブ配信",
            "日本語のテキスト",
        ] {
            let folded = fold_text(text);
            assert_eq!(folded.chars().count(), text.chars().count(), "{text}");
        }
        assert_eq!(fold_text("こんにちは"), "こんにちは");
        // Cyrillic words keep the letters that do not look Latin.
        assert!(fold_text("Привет").contains('и'));
    }

    /// One way to disguise each letter of a Latin term.
    fn disguise(c: char, how: u8) -> String {
        match how % 5 {
            0 => c.to_ascii_uppercase().to_string(),
            1 => char::from_u32(c as u32 + 0xFEE0).unwrap().to_string(), // full-width
            2 => format!("{c}\u{200B}"),
            3 => match c {
                'a' => "а".into(), // Cyrillic
                'e' => "е".into(),
                'o' => "о".into(),
                'p' => "р".into(),
                'c' => "с".into(),
                'x' => "х".into(),
                _ => c.to_string(),
            },
            _ => match c {
                'o' => "0".into(),
                'e' => "3".into(),
                'a' => "4".into(),
                's' => "5".into(),
                't' => "7".into(),
                _ => c.to_string(),
            },
        }
    }

    proptest! {
        #[test]
        fn a_latin_term_survives_any_disguise(
            term in "[a-z]{3,10}",
            hows in proptest::collection::vec(any::<u8>(), 10),
        ) {
            // Digits stand for letters both ways: compare folded forms.
            let disguised: String = term
                .chars()
                .zip(hows.iter().cycle())
                .map(|(c, h)| disguise(c, *h))
                .collect();
            prop_assert_eq!(fold_text(&disguised), fold_text(&term));
        }

        #[test]
        fn a_kana_term_matches_in_either_script(term in "[ぁ-ゖ]{2,8}") {
            let katakana: String = term
                .chars()
                .map(|c| char::from_u32(c as u32 + 0x60).unwrap())
                .collect();
            prop_assert_eq!(fold_text(&katakana), fold_text(&term));
        }
    }
}
