//! Chat text as PROTOCOL.md defines it: cleaned, then checked.

/// Most Unicode scalar values in one chat message.
pub const MAX_CHAT_CHARS: usize = 500;

/// A chat message's text after cleaning: `\r\n` → `\n`, tabs → spaces, every other
/// control character (C0, DEL, C1) removed, surrounding white space trimmed;
/// never empty, at most [`MAX_CHAT_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatText(String);

/// Why a text is not a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatTextError {
    /// Nothing left after cleaning.
    Empty,
    /// Over [`MAX_CHAT_CHARS`] after cleaning.
    TooLong,
}

impl ChatText {
    /// Cleans and checks raw client text.
    pub fn parse(raw: &str) -> Result<Self, ChatTextError> {
        // Cheap bound before any work: 4 bytes per char is the UTF-8 maximum,
        // but a frame is at most 16 KiB anyway.
        let mut out = String::with_capacity(raw.len().min(4 * MAX_CHAT_CHARS + 64));
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                // `\r\n` becomes `\n` (the `\n` is pushed next); a lone `\r`
                // is a control character like any other and falls through
                // to removal below.
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' => out.push('\n'),
                '\t' => out.push(' '),
                c if c.is_control() => {}
                c => out.push(c),
            }
        }
        let trimmed = out.trim();
        if trimmed.is_empty() {
            return Err(ChatTextError::Empty);
        }
        if trimmed.chars().count() > MAX_CHAT_CHARS {
            return Err(ChatTextError::TooLong);
        }
        if trimmed.len() == out.len() {
            Ok(Self(out))
        } else {
            Ok(Self(trimmed.to_string()))
        }
    }

    /// The cleaned text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Takes the cleaned text.
    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning() {
        assert_eq!(
            ChatText::parse("  hi\r\nthere\t!  ").unwrap().as_str(),
            "hi\nthere !"
        );
        assert_eq!(
            ChatText::parse("a\u{0}b\u{7f}c\u{85}d\u{1b}")
                .unwrap()
                .as_str(),
            "abcd"
        );
        assert_eq!(ChatText::parse("<b>x</b>").unwrap().as_str(), "<b>x</b>");
    }

    /// Only `\r\n` is a line break; a lone `\r` is a C0 control like any
    /// other and is removed.
    #[test]
    fn lone_carriage_return_is_removed() {
        assert_eq!(ChatText::parse("a\rb").unwrap().as_str(), "ab");
        assert_eq!(ChatText::parse("a\r\rb\r").unwrap().as_str(), "ab");
        assert_eq!(ChatText::parse("a\r\r\nb").unwrap().as_str(), "a\nb");
        assert_eq!(ChatText::parse("a\n\rb").unwrap().as_str(), "a\nb");
    }

    #[test]
    fn empty_and_too_long() {
        assert_eq!(ChatText::parse(" \t\r\n\u{0} "), Err(ChatTextError::Empty));
        assert_eq!(ChatText::parse(""), Err(ChatTextError::Empty));
        assert!(ChatText::parse(&"é".repeat(500)).is_ok());
        assert_eq!(
            ChatText::parse(&"é".repeat(501)),
            Err(ChatTextError::TooLong)
        );
        // Trimmed white space does not count.
        assert!(ChatText::parse(&format!("  {}  ", "x".repeat(500))).is_ok());
    }
}
