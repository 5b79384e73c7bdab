//! Fieldless enums written on the command line as fixed words.
//!
//! [`keywords!`] gives such an enum `FromStr` (case-insensitive, every
//! listed word) and `Display` (a variant's first word) from one table, so
//! the words a flag accepts and the words a report prints cannot drift
//! apart, and a bad word gets the same error everywhere: what was being
//! read, the accepted words, and what came.

/// "a", "a or b", "a, b or c": the accepted words for an error message.
pub fn one_of(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [only] => (*only).to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// `keywords!(Type, "what" { Variant => "word" | "alias", ... })`.
macro_rules! keywords {
    ($ty:ty, $what:literal { $($variant:ident => $word:literal $(| $alias:literal)*),+ $(,)? }) => {
        impl std::str::FromStr for $ty {
            type Err = $crate::error::PredictorError;
            fn from_str(s: &str) -> $crate::error::Result<Self> {
                match s.to_ascii_lowercase().as_str() {
                    $($word $(| $alias)* => Ok(Self::$variant),)+
                    _ => Err($crate::error::PredictorError::input(
                        $what,
                        $crate::keywords::one_of(&[$($word),+]),
                        format!("`{s}`"),
                    )),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $(Self::$variant => $word,)+
                })
            }
        }
    };
}
pub(crate) use keywords;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Colour {
        Red,
        Blue,
    }
    keywords!(Colour, "colour" { Red => "red" | "r", Blue => "blue" });

    #[test]
    fn words_parse_print_and_fail_by_name() {
        assert_eq!("RED".parse::<Colour>().unwrap(), Colour::Red);
        assert_eq!("r".parse::<Colour>().unwrap(), Colour::Red);
        assert_eq!(Colour::Red.to_string(), "red");
        assert_eq!(
            Colour::Blue.to_string().parse::<Colour>().unwrap(),
            Colour::Blue
        );
        let err = "green".parse::<Colour>().unwrap_err().to_string();
        assert!(
            err.contains("colour") && err.contains("red or blue") && err.contains("`green`"),
            "{err}"
        );
        assert_eq!(super::one_of(&["a", "b", "c"]), "a, b or c");
        assert_eq!(super::one_of(&["a"]), "a");
    }
}
