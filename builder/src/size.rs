//! The one grammar for the sizes users write — `--shm-size`, `RUN --mount=type=tmpfs,size=`, Compose `shm_size`,
//! `prune --keep-storage` — so that what one accepts the others accept: a number (a decimal fraction allowed) and
//! an optional unit `b`, `k`/`kb`/`kib`, `m`/`mb`/`mib`, `g`/`gb`/`gib`, `t`/`tb`/`tib`, `p`/`pb`/`pib`, in any
//! case, with or without a space between; powers of 1024, as Docker's `RAMInBytes`. Arithmetic is checked: a size
//! that does not fit in 64 bits is an error, never a wrapped number.

/// A size that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("invalid size {0:?}: expected a number and an optional unit, e.g. 64m, 1gb, 1.5GiB or 4096")]
    Invalid(String),
    #[error("size {0:?} is too large (at most 16 EiB)")]
    TooLarge(String),
}

/// Bytes in `s`.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let invalid = || SizeError::Invalid(s.to_string());
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let shift = match unit.trim_start() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        _ => return Err(invalid()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.contains('.') || fraction.len() > 18 {
        return Err(invalid());
    }
    let whole: u128 = whole.parse().map_err(|_| SizeError::TooLarge(s.to_string()))?;
    let fraction_bytes = match fraction {
        "" => 0,
        f => {
            let digits: u128 = f.parse().map_err(|_| invalid())?;
            (digits << shift) / 10u128.pow(f.len() as u32)
        }
    };
    let bytes =
        whole.checked_shl(shift).filter(|b| b >> shift == whole).ok_or_else(|| SizeError::TooLarge(s.into()))?;
    u64::try_from(bytes + fraction_bytes).map_err(|_| SizeError::TooLarge(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::{SizeError, parse_size};

    #[test]
    fn every_user_facing_form_reads_the_same() {
        for (text, bytes) in [
            ("4096", 4096),
            ("64m", 64 << 20),
            ("64M", 64 << 20),
            ("1gb", 1 << 30),
            ("1GB", 1 << 30),
            ("1 GiB", 1 << 30),
            ("2g", 2 << 30),
            ("512kb", 512 << 10),
            ("10b", 10),
            ("1.5g", 3 << 29),
            ("0.5k", 512),
            ("1tb", 1 << 40),
            (" 32m ", 32 << 20),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn bad_and_huge_sizes_are_errors() {
        for text in ["", "lots", "1x", "m", "1..5m", "1.2.3", "-1", "1e9"] {
            assert_eq!(parse_size(text), Err(SizeError::Invalid(text.to_string())), "{text}");
        }
        for text in ["16384pb", "99999999999999999999999", "20000000000000000000"] {
            assert_eq!(parse_size(text), Err(SizeError::TooLarge(text.to_string())), "{text}");
        }
        assert_eq!(parse_size("15pib"), Ok(15 << 50));
    }
}
