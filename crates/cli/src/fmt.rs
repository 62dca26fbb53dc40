//! How numbers and names appear in the command line's output, the same in every command:
//! counts with thousands separators and the noun in the right number (`1 image`, `4,000
//! images`); text from outside (file names, messages quoting them) with its control
//! characters escaped, so a file named with terminal escapes cannot drive the terminal.

/// `text` with every control character (C0, DEL, C1: ESC, CR, BEL, …) written as `\u{…}`.
pub fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// `n` with a comma every three digits: `4000` → `4,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `n` and `noun`, plural unless `n` is 1: `count(1, "file")` → `1 file`.
pub fn count(n: u64, noun: &str) -> String {
    let plural = if n == 1 {
        noun.to_owned()
    } else if noun.ends_with('s') || noun.ends_with('x') {
        format!("{noun}es")
    } else {
        format!("{noun}s")
    };
    format!("{} {plural}", thousands(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escaped("cat.1.jpg"), "cat.1.jpg");
        assert_eq!(
            escaped("a\u{1b}]0;pwned\u{7}\rb\u{9b}c"),
            "a\\u{1b}]0;pwned\\u{7}\\u{d}b\\u{9b}c"
        );
        assert_eq!(escaped("chat é ✓"), "chat é ✓");
    }

    #[test]
    fn counts_read_as_english() {
        assert_eq!(count(1, "file"), "1 file");
        assert_eq!(count(0, "shard"), "0 shards");
        assert_eq!(count(4000, "image"), "4,000 images");
        assert_eq!(count(1_000_000, "record"), "1,000,000 records");
        assert_eq!(count(2, "class"), "2 classes");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(12_345), "12,345");
    }
}
