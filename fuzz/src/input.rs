//! Choices a target reads from its input's leading control bytes: scanner limits, capture lists and the
//! points where a byte stream is split into socket reads. Deterministic: the same file replays the same.

use hs2_proxy::thrift::scanner::FieldPath;
use hs2_proxy::thrift::Limits;

/// Splits `data` into `N` control bytes and the rest; short inputs are padded with zeros.
pub fn control<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut ctl = [0u8; N];
    let n = data.len().min(N);
    ctl[..n].copy_from_slice(&data[..n]);
    (ctl, &data[n..])
}

/// The scanner limits chosen by one control byte: the proxy's two defaults, or small ones that the
/// fuzzer can actually reach with short inputs.
pub fn limits(b: u8) -> Limits {
    match b & 3 {
        0 => Limits::REQUEST,
        1 => Limits::REPLY,
        _ => Limits {
            max_message_bytes: [24, 100, 512, 4096][(b >> 2 & 3) as usize],
            max_depth: 1 + (b >> 4 & 7) as usize,
            max_container_len: [0, 1, 3, 64][(b >> 7) as usize * 2 + (b >> 3 & 1) as usize],
        },
    }
}

/// Limits for the reference decoder: loose enough that it accepts whatever the scanner accepted under
/// `l` (the decoder counts depth per value, the scanner per frame), bounded by the input anyway.
pub fn lenient(l: &Limits) -> Limits {
    Limits { max_message_bytes: u64::MAX, max_depth: l.max_depth * 2 + 4, max_container_len: u32::MAX }
}

/// Paths the scanner target captures: the method table's shapes (handles, status, statement) and a few
/// oddities (the body's own fields, a negative id).
pub static CAPTURE_POOL: &[FieldPath] = &[
    &[0, 1, 1],
    &[0, 1, 5],
    &[0, 2, 1, 1],
    &[0, 2, 1, 2],
    &[0, 3, 1, 1],
    &[0, 3, 1, 2],
    &[1, 1, 1, 1],
    &[1, 1, 1, 2],
    &[1, 2],
    &[1, 2, 1, 1],
    &[1, 1, 1, 1, 1],
    &[0, 3],
    &[0, 8],
    &[1],
    &[0],
    &[-1],
    &[2, 2],
];

/// A window of [`CAPTURE_POOL`] chosen by one control byte (possibly empty).
pub fn captures(b: u8) -> &'static [FieldPath] {
    let start = (b & 15) as usize % CAPTURE_POOL.len();
    let end = (start + (b >> 4) as usize % 8).min(CAPTURE_POOL.len());
    &CAPTURE_POOL[start..end]
}

/// Read sizes for feeding a stream piecewise, from a 16-bit seed: tiny reads, medium ones or mixed, with
/// an empty read now and then (a spurious wake-up must be harmless).
pub struct Splits {
    state: u32,
    max: u32,
}

impl Splits {
    pub fn new(seed: u16) -> Splits {
        let max = [1, 2, 3, 7, 16, 64, 1000, 4096][(seed & 7) as usize];
        Splits { state: u32::from(seed).wrapping_mul(2_654_435_761) | 1, max }
    }

    /// The next read size, in `0..=max`.
    pub fn next_size(&mut self) -> usize {
        // xorshift32: cheap, and the same on every platform.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        (self.state % (self.max + 1)) as usize
    }

    /// `data` cut into consecutive pieces; the concatenation is `data` again.
    pub fn pieces(mut self, data: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let n = self.next_size().min(rest.len());
            out.push(&rest[..n]);
            rest = &rest[n..];
        }
        out
    }
}

/// True when `needle` occurs in `hay` (short needles; the fuzz inputs are a few KiB).
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}
