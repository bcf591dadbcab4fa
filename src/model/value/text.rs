//! Inline short texts: `Currency` codes and `ReasonText`.

use std::str::FromStr;

use super::*;
use crate::ident::as_text;

/// A currency code of 1 to 8 ASCII uppercase letters or digits (`USDT`),
/// stored inline (`Copy`, 9 bytes). Serialized as a string.
///
/// # Examples
///
/// ```
/// use tradecache::model::Currency;
///
/// let usdt = Currency::new("USDT").unwrap();
/// assert_eq!(usdt, Currency::USDT);
/// assert_eq!(usdt.as_str(), "USDT");
/// assert!(Currency::new("usdt").is_err());
/// assert!(Currency::new("TOOLONGCODE").is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 8],
    len: u8,
}

impl Currency {
    /// US dollar.
    pub const USD: Currency = Currency::from_static("USD");
    /// Tether.
    pub const USDT: Currency = Currency::from_static("USDT");
    /// USD Coin.
    pub const USDC: Currency = Currency::from_static("USDC");
    /// Euro.
    pub const EUR: Currency = Currency::from_static("EUR");
    /// Bitcoin.
    pub const BTC: Currency = Currency::from_static("BTC");
    /// Ether.
    pub const ETH: Currency = Currency::from_static("ETH");

    // Unchecked: for `new` and the constants above (checked by a test).
    const fn from_static(code: &str) -> Currency {
        let b = code.as_bytes();
        let mut c = [0u8; 8];
        let mut i = 0;
        while i < b.len() && i < 8 {
            c[i] = b[i];
            i += 1;
        }
        Currency { code: c, len: i as u8 }
    }

    /// Validates and makes a currency code.
    ///
    /// # Errors
    ///
    /// When `code` is empty, longer than 8 bytes, or not made of ASCII
    /// uppercase letters and digits.
    pub fn new(code: &str) -> Result<Currency, ParseError> {
        if code.is_empty() || code.len() > 8 {
            return Err(perr(code, "currency codes are 1 to 8 characters"));
        }
        if !code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            return Err(perr(code, "currency codes are ASCII uppercase letters and digits"));
        }
        Ok(Currency::from_static(code))
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.code[..usize::from(self.len).min(8)]).unwrap_or("")
    }
}

impl FromStr for Currency {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Currency::new(s)
    }
}

/// Capacity of a [`ReasonText`], in bytes.
pub const REASON_CAPACITY: usize = 64;

/// A short free-text reason (why an order was rejected), stored inline: at
/// most [`REASON_CAPACITY`] bytes of UTF-8. Longer text is cut at the last
/// character boundary that fits; nothing allocates. Serialized as a string.
///
/// Equality and hashing look at the text only: whether it was cut is not
/// stored (it is serialized as the text), so a value compares equal to
/// itself after a round trip through Redis.
///
/// # Examples
///
/// ```
/// use tradecache::model::ReasonText;
///
/// let r = ReasonText::new("insufficient margin");
/// assert_eq!(r.as_str(), "insufficient margin");
/// let long = ReasonText::new(&"é".repeat(40)); // 80 bytes
/// assert_eq!(long.as_str().len(), 64);
/// assert!(long.is_truncated());
/// assert_eq!(long, ReasonText::new(long.as_str()));
/// ```
#[derive(Clone, Copy)]
pub struct ReasonText {
    buf: [u8; REASON_CAPACITY],
    // Length in bytes; the top bit records truncation.
    len: u8,
}

impl ReasonText {
    /// The text, cut at a character boundary to fit.
    pub fn new(text: &str) -> ReasonText {
        let mut end = text.len().min(REASON_CAPACITY);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut buf = [0u8; REASON_CAPACITY];
        buf[..end].copy_from_slice(&text.as_bytes()[..end]);
        let truncated = if end < text.len() { 0x80 } else { 0 };
        ReasonText { buf, len: end as u8 | truncated }
    }

    /// The (possibly truncated) text.
    pub fn as_str(&self) -> &str {
        let len = usize::from(self.len & 0x7f).min(REASON_CAPACITY);
        std::str::from_utf8(&self.buf[..len]).unwrap_or("")
    }

    /// Whether [`ReasonText::new`] had to cut the text.
    pub fn is_truncated(&self) -> bool {
        self.len & 0x80 != 0
    }
}

// The text only: see the type's docs (found by tests/it/fuzz.rs, a cut
// reason did not equal itself after a round trip).
impl PartialEq for ReasonText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ReasonText {}

impl std::hash::Hash for ReasonText {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Default for ReasonText {
    fn default() -> Self {
        ReasonText::new("")
    }
}

impl From<&str> for ReasonText {
    fn from(s: &str) -> Self {
        ReasonText::new(s)
    }
}

as_text! {
    Currency: "a currency code such as \"USDT\"", Currency::new, pad;
    ReasonText: "a reason text", |s| Ok::<_, std::convert::Infallible>(ReasonText::new(s)), pad;
}
