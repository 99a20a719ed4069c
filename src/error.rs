//! The configuration error shared by every layer's builder.

use std::fmt;

/// A setting was rejected when a layer or key was built.
///
/// Every user-supplied value is checked once, when it is built, so the request path never has to
/// re-validate. The message says what was wrong and how to fix it; it never contains key
/// material (an API key is described by its problem, never quoted).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The API key is empty.
    EmptyApiKey,
    /// The API key holds a byte that cannot travel in an HTTP header as-is: a control character
    /// (CR, LF, NUL, TAB, ...), a space, or a non-ASCII byte.
    InvalidApiKey {
        /// The 0-based byte offset of the first offending byte (the byte itself is not shown).
        position: usize,
    },
    /// The API key is longer than [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) bytes.
    ApiKeyTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The environment variable that should hold the API key is not set.
    MissingEnvVar {
        /// The variable's name.
        name: String,
    },
    /// Several environment variables are not set (`from_env` names every one at once).
    MissingEnvVars {
        /// The variables' names.
        names: Vec<String>,
    },
    /// The environment variable that should hold the API key is not valid Unicode.
    NonUnicodeEnvVar {
        /// The variable's name.
        name: String,
    },
    /// A header name is not a valid HTTP header name.
    InvalidHeaderName {
        /// The rejected name.
        name: String,
    },
    /// A base URL or origin could not be used.
    InvalidOrigin {
        /// The rejected input.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A setting needs the API origin, and none was given (see
    /// [`AuthLayer::for_origin`](crate::AuthLayer::for_origin)).
    MissingOrigin,
    /// A numeric or duration setting is out of its allowed range.
    OutOfRange {
        /// The setting's name, as in the builder method.
        setting: &'static str,
        /// What the allowed range is.
        expected: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyApiKey => f.write_str("the API key is empty"),
            Self::InvalidApiKey { position } => write!(
                f,
                "the API key has a byte at offset {position} that is not visible ASCII \
                 (control character, CR/LF, space or non-ASCII); check for a stray newline \
                 or quote around the key"
            ),
            Self::ApiKeyTooLong { len } => write!(
                f,
                "the API key is {len} bytes long, more than the {} bytes allowed",
                crate::MAX_KEY_LEN
            ),
            Self::MissingEnvVar { name } => {
                write!(
                    f,
                    "the environment variable {name} is not set: set it to {}",
                    what_to_set(name)
                )
            }
            Self::MissingEnvVars { names } => {
                f.write_str("the environment variables ")?;
                for (i, name) in names.iter().enumerate() {
                    let sep = match i {
                        0 => "",
                        _ if i + 1 == names.len() => " and ",
                        _ => ", ",
                    };
                    write!(f, "{sep}{name}")?;
                }
                f.write_str(" are not set: ")?;
                for (i, name) in names.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "; " };
                    write!(f, "{sep}set {name} to {}", what_to_set(name))?;
                }
                Ok(())
            }
            Self::NonUnicodeEnvVar { name } => {
                write!(f, "the environment variable {name} is not valid Unicode")
            }
            Self::InvalidHeaderName { name } => {
                write!(f, "{name:?} is not a valid HTTP header name")
            }
            Self::InvalidOrigin { input, reason } => {
                write!(f, "{input:?} cannot be used as the API origin: {reason}")
            }
            Self::MissingOrigin => f.write_str(
                "a key guard needs the API origin: scope the AuthLayer with `for_origin` first",
            ),
            Self::OutOfRange { setting, expected } => {
                write!(f, "`{setting}` is out of range: expected {expected}")
            }
        }
    }
}

/// What a variable `from_env` reads should hold.
fn what_to_set(name: &str) -> &'static str {
    // The preset's `BASE_URL_ENV`, which builds without the preset do not have.
    if name == "INFOPLUG_BASE_URL" {
        "the API's base URL (or an emulator's, such as http://127.0.0.1:3000)"
    } else {
        "your InfoPlug API key (the emulator's is tower_infoplug_mock::TEST_KEY)"
    }
}

/// The sentence, as `Display` gives it: `fn main() -> Result<(), Box<dyn Error>>` prints an
/// error's `Debug`, and a missing variable should read as one.
impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_base_url_reads_as_a_sentence_in_debug_too() {
        let err = ConfigError::MissingEnvVar {
            name: "INFOPLUG_BASE_URL".into(),
        };
        let text = format!("{err:?}");
        assert_eq!(text, err.to_string());
        assert!(
            text.starts_with("the environment variable INFOPLUG_BASE_URL is not set: set it to"),
            "{text}"
        );
        let err = ConfigError::MissingEnvVar {
            name: "INFOPLUG_API_KEY".into(),
        };
        assert_eq!(
            format!("{err:?}"),
            "the environment variable INFOPLUG_API_KEY is not set: set it to your InfoPlug \
             API key (the emulator's is tower_infoplug_mock::TEST_KEY)"
        );
    }

    #[test]
    fn every_missing_variable_is_named_at_once_with_what_to_set() {
        let err = ConfigError::MissingEnvVars {
            names: vec!["INFOPLUG_API_KEY".into(), "INFOPLUG_BASE_URL".into()],
        };
        assert_eq!(
            err.to_string(),
            "the environment variables INFOPLUG_API_KEY and INFOPLUG_BASE_URL are not set: \
             set INFOPLUG_API_KEY to your InfoPlug API key (the emulator's is \
             tower_infoplug_mock::TEST_KEY); set INFOPLUG_BASE_URL to the API's base URL (or \
             an emulator's, such as http://127.0.0.1:3000)"
        );
    }
}
