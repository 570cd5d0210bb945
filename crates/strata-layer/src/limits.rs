//! How far a layer may expand: one bound for every path that unpacks one (pull, load, import,
//! build's ADD of archives, cp of a tar stream), so a decompression bomb is refused the same
//! way wherever it comes in.
//!
//! A layer may decompress to at most `max_bytes`, and once `ratio_grace_bytes` have come out
//! of a compressed stream, to at most `max_ratio` times the compressed bytes read so far.
//! Defaults: 1 TiB, 1000:1 after 64 MiB (gzip cannot exceed ≈1032:1; real layers stay under
//! 20:1; a bomb is stopped after 64 MiB whatever its ratio). `STRATA_LAYER_MAX_SIZE` (bytes,
//! or with a unit: `50g`) and `STRATA_LAYER_MAX_RATIO` override them for the process; they
//! are read here and nowhere else.

use std::sync::OnceLock;

/// Bounds on a layer's decompressed size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecompressionLimits {
    pub max_bytes: u64,
    pub max_ratio: u64,
    pub ratio_grace_bytes: u64,
}

impl DecompressionLimits {
    pub const DEFAULT: DecompressionLimits =
        DecompressionLimits { max_bytes: 1 << 40, max_ratio: 1000, ratio_grace_bytes: 64 << 20 };

    /// The defaults with the environment's overrides (read once).
    pub fn configured() -> DecompressionLimits {
        static CONFIGURED: OnceLock<DecompressionLimits> = OnceLock::new();
        *CONFIGURED.get_or_init(|| {
            let mut limits = DecompressionLimits::DEFAULT;
            if let Some(size) = std::env::var("STRATA_LAYER_MAX_SIZE").ok().and_then(|v| parse_size(&v)) {
                limits.max_bytes = size;
            }
            if let Some(ratio) = std::env::var("STRATA_LAYER_MAX_RATIO").ok().and_then(|v| v.trim().parse().ok()) {
                limits.max_ratio = ratio;
            }
            limits
        })
    }

    /// Why `total` decompressed bytes from `compressed` read are too many (`compressed_input`:
    /// the stream is compressed at all), or `None`.
    pub fn exceeded(&self, total: u64, compressed: u64, compressed_input: bool) -> Option<String> {
        if total > self.max_bytes {
            return Some(format!(
                "layer larger than {} bytes uncompressed (STRATA_LAYER_MAX_SIZE raises the limit)",
                self.max_bytes
            ));
        }
        if compressed_input && total > self.ratio_grace_bytes && total / compressed.max(1) > self.max_ratio {
            return Some(format!(
                "decompression bomb: {total} bytes from {compressed} compressed, over {}:1 (STRATA_LAYER_MAX_RATIO raises the limit)",
                self.max_ratio
            ));
        }
        None
    }
}

/// `123`, `64k`, `50m`, `2g`, `1t` (powers of 1024).
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim().to_ascii_lowercase();
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let multiplier: u64 = match &text[digits.len()..] {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bombs_and_big_layers_are_named() {
        let limits = DecompressionLimits::DEFAULT;
        assert_eq!(limits.exceeded(10 << 20, 1, true), None, "any ratio within the grace");
        assert!(limits.exceeded(100 << 20, 50_000, true).is_some_and(|m| m.contains("decompression bomb")));
        assert_eq!(limits.exceeded(100 << 20, 200_000, true), None, "524:1 is fine");
        assert_eq!(limits.exceeded(100 << 20, 1, false), None, "no ratio for a plain tar");
        assert!(limits.exceeded((1 << 40) + 1, 1 << 40, false).is_some_and(|m| m.contains("STRATA_LAYER_MAX_SIZE")));
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("x"), None);
    }
}
