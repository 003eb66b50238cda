//! Plain-text log lines (a file, a pipe, journald): the same text tracing-subscriber's default format
//! writes with colours off, written for less.
//!
//! [`PlainLines`] writes a line's frame (timestamp, level, target) and [`PlainFields`] its fields. The
//! default frame formats the timestamp through seven padded integer arguments and the level through
//! `Display` padding; here they are digits written into a buffer. With [`Addr`] for socket addresses,
//! the two lines of a session's life went from 19.4k to 9.4k instructions (callgrind, the bench's query
//! loop).
//!
//! The default formatter wraps every field name and `=` in colour styles even when colours are off, and
//! escapes the message one character at a time. For the lines an operator wants at `info` on every
//! session ("session opened", "session closed") that was about 7k instructions a line, a fifth of
//! everything the proxy did for the bench's query loop (callgrind). [`PlainFields`] writes the same
//! bytes: `message name=value ...`, values as `Debug` writes them, the message with terminal control
//! characters escaped, `r#` names unprefixed, `log.` fields (the `log` crate's metadata) left out, and an
//! error field followed by its `.sources`. A text chunk without control characters is written whole.
//!
//! One difference, on purpose: the default escapes terminal control characters in the message only, and
//! no character at all in a `%` (Display) value, where text from clients and backends lands (a refusal's
//! reason, a backend's error). Here every value is escaped like the message, and a line break in either
//! is written `\n` (`\r`): a client cannot end a log line and forge the next, or drive the terminal of
//! whoever reads the log.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter for plain-text logs ([`tracing_subscriber::fmt::SubscriberBuilder::event_format`]):
/// `2026-12-03T16:34:27.416439Z  INFO hs2_proxy::dispatch: ` and the fields, as the default `Full`
/// format writes them without colours. An event inside a span, and one that came from the `log` crate
/// (a dependency's), is handed to the default format, which writes the span's fields and the
/// `log` record's own target.
#[derive(Debug, Default)]
pub struct PlainLines {
    fallback: Format<Full>,
}

impl<S, N> FormatEvent<S, N> for PlainLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        if ctx.event_scope().is_some() || meta.fields().field("log.target").is_some() {
            return self.fallback.format_event(ctx, writer, event);
        }
        write_timestamp(&mut writer)?;
        writer.write_str(level_column(meta.level()))?;
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

/// The level as the default writes it without colours: five columns, right-aligned, and a space.
fn level_column(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE ",
        Level::DEBUG => "DEBUG ",
        Level::INFO => " INFO ",
        Level::WARN => " WARN ",
        Level::ERROR => "ERROR ",
    }
}

/// The first second of the year 10000: from there on RFC 3339 needs more than four digits of year, and
/// the default formatter's text is used.
const YEAR_10000: u64 = 253_402_300_800;

/// Now, in UTC, as the default formatter writes it (RFC 3339, microseconds, `Z`), and a space.
fn write_timestamp(writer: &mut Writer<'_>) -> fmt::Result {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) if since.as_secs() < YEAR_10000 => {
            let text = timestamp_text(since.as_secs(), since.subsec_micros());
            // ASCII digits and punctuation: always UTF-8.
            writer.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
        }
        // Before 1970 or after 9999: the default's own text, as it writes it.
        _ => {
            if tracing_subscriber::fmt::time::SystemTime.format_time(writer).is_err() {
                writer.write_str("<unknown time>")?;
            }
            writer.write_char(' ')
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ ` for `secs` after the Unix epoch (below [`YEAR_10000`]).
fn timestamp_text(secs: u64, micros: u32) -> [u8; 28] {
    let (year, month, day) = civil_date(secs / 86_400);
    let in_day = secs % 86_400;
    let mut text = *b"0000-00-00T00:00:00.000000Z ";
    digits(&mut text[0..4], year);
    digits(&mut text[5..7], month);
    digits(&mut text[8..10], day);
    digits(&mut text[11..13], in_day / 3600);
    digits(&mut text[14..16], in_day / 60 % 60);
    digits(&mut text[17..19], in_day % 60);
    digits(&mut text[20..26], u64::from(micros));
    text
}

/// Writes `n`'s last `to.len()` decimal digits into `to`, zero-padded.
fn digits(to: &mut [u8], mut n: u64) {
    for d in to.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// The proleptic Gregorian (year, month, day) of a day counted from 1970-01-01. Eras of 400 years
/// (146,097 days) repeat exactly; within an era, years are counted from March, so that the leap day
/// is the era-year's last.
fn civil_date(days_since_epoch: u64) -> (u64, u64, u64) {
    // 1970-01-01 is day 719,468 counted from 0000-03-01.
    let days = days_since_epoch + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

/// A client's or backend's socket address in a log field (`%Addr(peer)`): an IPv4 address written from
/// its digits, not through `Ipv4Addr`'s four padded integer arguments (about 1.2k instructions in each
/// session-opened and session-closed line); IPv6 as the standard library writes it.
pub struct Addr(pub SocketAddr);

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let SocketAddr::V4(v4) = self.0 else {
            return fmt::Display::fmt(&self.0, f);
        };
        // "255.255.255.255:65535" is 21 bytes.
        let mut text = [0u8; 21];
        let mut len = 0;
        let mut push = |n: u64, sep: Option<u8>| {
            let width = match n {
                0..=9 => 1,
                10..=99 => 2,
                100..=999 => 3,
                1000..=9999 => 4,
                _ => 5,
            };
            digits(&mut text[len..len + width], n);
            len += width;
            if let Some(sep) = sep {
                text[len] = sep;
                len += 1;
            }
        };
        let [a, b, c, d] = v4.ip().octets();
        push(a.into(), Some(b'.'));
        push(b.into(), Some(b'.'));
        push(c.into(), Some(b'.'));
        push(d.into(), Some(b':'));
        push(v4.port().into(), None);
        f.write_str(std::str::from_utf8(&text[..len]).map_err(|_| fmt::Error)?)
    }
}

/// The field formatter for plain-text logs ([`tracing_subscriber::fmt::SubscriberBuilder::fmt_fields`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainFields;

impl<'writer> FormatFields<'writer> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = PlainVisitor { writer, first: true, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct PlainVisitor<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    fn field(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        if name.starts_with("log.") {
            return;
        }
        if !std::mem::take(&mut self.first) {
            self.result = self.writer.write_char(' ');
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = self.result.and_then(|()| {
            if name != "message" {
                self.writer.write_str(name)?;
                self.writer.write_char('=')?;
            }
            Escaping(&mut self.writer).write_fmt(value)
        });
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field, format_args!("{value}"));
        } else {
            self.field(field, format_args!("{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // `field` escapes the whole value: the error's text and its sources alike.
        let Some(source) = value.source() else {
            return self.field(field, format_args!("{value}"));
        };
        let name = field.name().strip_prefix("r#").unwrap_or(field.name());
        self.field(field, format_args!("{value} {name}.sources={}", Sources(source)));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, format_args!("{value:?}"));
    }
}

/// Writes text with the terminal control characters the default formatter escapes (ESC, BEL, BS, FF,
/// DEL and the C1 range) escaped as it escapes them, and line breaks as `\n` and `\r`; text without any
/// passes whole.
struct Escaping<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // C1 characters are 0xC2 0x80..=0x9F in UTF-8: a 0xC2 byte sends the chunk the slow way.
        if !s.bytes().any(|b| matches!(b, b'\n' | b'\r' | 0x1b | 0x07 | 0x08 | 0x0c | 0x7f | 0xc2)) {
            return self.0.write_str(s);
        }
        for ch in s.chars() {
            match ch {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\x1b' => self.0.write_str("\\x1b")?,
                '\x07' => self.0.write_str("\\x07")?,
                '\x08' => self.0.write_str("\\x08")?,
                '\x0c' => self.0.write_str("\\x0c")?,
                '\x7f' => self.0.write_str("\\x7f")?,
                c if ('\u{80}'..='\u{9f}').contains(&c) => write!(self.0, "\\u{{{:x}}}", c as u32)?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// An error's sources as a list: `[first, second]` (escaped with the value they are part of).
struct Sources<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Sources<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// One entry, written as `Debug` lists write entries: its text, unquoted.
        struct Entry<'a>(&'a (dyn std::error::Error + 'static));
        impl fmt::Debug for Entry<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self.0, f)
            }
        }
        let mut list = f.debug_list();
        let mut next = Some(self.0);
        while let Some(e) = next {
            list.entry(&Entry(e));
            next = e.source();
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer \x1b[31mfailure")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Every kind of field the proxy and its dependencies log, with hostile bytes in some of them.
    fn events() {
        let guid = crate::hs2::handle::Guid([7; 16]);
        let user: Option<String> = Some("alice".into());
        tracing::info!(session = %guid, backend = %"127.0.0.1:21050", user = %crate::routing::LogName(user.as_deref()),
            effective_user = ?user, client = %"10.0.0.1:5000", "session opened");
        tracing::warn!(r#type = "x", n = 3, ok = true, ratio = 0.5, name = "q\"uote\nd", "plain message");
        tracing::info!(text = ?"debug \x1b[2J with ESC", "message with \x1b[31m ESC \x07 and \u{9b} C1");
        tracing::error!(
            error = &Outer(std::io::Error::other("inner \x08 cause")) as &(dyn std::error::Error + 'static),
            "failed"
        );
        tracing::error!(error = &std::io::Error::other("no source") as &(dyn std::error::Error + 'static));
        tracing::info!("only a message, ünïcödé");
        tracing::info!(empty = "", "");
    }

    /// Text from the network in Display values and messages: where the two formatters differ on purpose.
    fn hostile_events() {
        tracing::info!(reason = %"bad\nINFO hs2_proxy: forged line", "refused");
        tracing::info!(text = %"clear \x1b[2J screen\r", "message\nwith a break");
    }

    fn render(plain: bool) -> String {
        render_events(plain, events)
    }

    /// Whole lines, timestamps included: the default format, or [`PlainLines`] with [`PlainFields`].
    fn render_lines(plain: bool, events: fn()) -> String {
        let out = Captured::default();
        let sink = out.clone();
        let builder = tracing_subscriber::fmt().with_writer(move || sink.clone()).with_ansi(false);
        if plain {
            let subscriber = builder.event_format(PlainLines::default()).fmt_fields(PlainFields).finish();
            tracing::subscriber::with_default(subscriber, events);
        } else {
            tracing::subscriber::with_default(builder.finish(), events);
        }
        let bytes = out.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Events of every level, one inside a span (the default format writes the span's name and fields).
    fn framed_events() {
        tracing::trace!(n = 1, "trace");
        tracing::debug!(n = 2, "debug");
        tracing::info!(client = %Addr("10.1.2.3:21050".parse().unwrap_or_else(|_| unreachable!())), "info");
        tracing::warn!("warn");
        tracing::error!("error");
        let span = tracing::info_span!("conn", peer = "p");
        span.in_scope(|| tracing::info!(inside = true, "in a span"));
    }

    #[test]
    fn plain_lines_write_what_the_default_format_writes() {
        // The two renderings are a moment apart: retried if a second boundary falls between them.
        for _ in 0..5 {
            let default = render_lines(false, framed_events);
            let plain = render_lines(true, framed_events);
            assert_eq!(default.lines().count(), 4, "the filter passes info and above: {default}");
            assert!(default.contains("conn{peer=\"p\"}: "), "{default}");
            let (d, p): (Vec<_>, Vec<_>) = (default.lines().collect(), plain.lines().collect());
            assert_eq!(d.len(), p.len(), "{default}\n{plain}");
            if d.iter().zip(&p).any(|(d, p)| d.get(..19) != p.get(..19)) {
                continue;
            }
            for (d, p) in d.iter().zip(&p) {
                // `YYYY-MM-DDTHH:MM:SS.ffffffZ `: the same to the second, the same text after it.
                assert_eq!(p.len(), d.len(), "{p}\n{d}");
                assert_eq!(p.as_bytes()[19], b'.', "{p}");
                assert!(p[20..26].bytes().all(|b| b.is_ascii_digit()), "{p}");
                assert_eq!(p[26..], d[26..]);
            }
            return;
        }
        panic!("five renderings in a row straddled a second");
    }

    #[test]
    fn timestamps_are_rfc3339_in_utc() {
        // Expected texts from `date -u -d @SECS +%Y-%m-%dT%H:%M:%S`.
        for (secs, micros, text) in [
            (0, 0, "1970-01-01T00:00:00.000000Z "),
            (951_782_400, 7, "2000-02-29T00:00:00.000007Z "),
            (951_955_199, 999_999, "2000-03-01T23:59:59.999999Z "),
            (1_709_164_800, 120_000, "2024-02-29T00:00:00.120000Z "),
            (1_796_315_667, 416_439, "2026-12-03T16:34:27.416439Z "),
            (4_107_542_399, 1, "2100-02-28T23:59:59.000001Z "),
            (4_107_542_400, 1, "2100-03-01T00:00:00.000001Z "),
            (YEAR_10000 - 1, 0, "9999-12-31T23:59:59.000000Z "),
        ] {
            let got = timestamp_text(secs, micros);
            assert_eq!(std::str::from_utf8(&got).ok(), Some(text), "{secs}");
        }
        // Every day of 400 years (one whole era) against a plain day-by-day count.
        let (mut year, mut month, mut day) = (1970, 1, 1);
        for n in 0..146_097 {
            assert_eq!(civil_date(n), (year, month, day), "day {n}");
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            let days_in_month = match month {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            day += 1;
            if day > days_in_month {
                (day, month) = (1, month + 1);
                if month > 12 {
                    (month, year) = (1, year + 1);
                }
            }
        }
    }

    #[test]
    fn addresses_are_written_as_the_standard_library_writes_them() {
        for text in [
            "0.0.0.0:0",
            "127.0.0.1:21050",
            "10.20.30.40:9",
            "255.255.255.255:65535",
            "[::1]:28000",
            "[fe80::1%2]:1",
            "1.2.3.4:65535",
        ] {
            let Ok(addr) = text.parse::<SocketAddr>() else { panic!("{text}") };
            assert_eq!(Addr(addr).to_string(), addr.to_string());
        }
    }

    fn render_events(plain: bool, events: fn()) -> String {
        let out = Captured::default();
        let sink = out.clone();
        let builder = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .without_time()
            .with_target(true);
        if plain {
            tracing::subscriber::with_default(builder.fmt_fields(PlainFields).finish(), events);
        } else {
            tracing::subscriber::with_default(builder.finish(), events);
        }
        let bytes = out.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn plain_fields_write_what_the_default_formatter_writes() {
        let default = render(false);
        let plain = render(true);
        assert_eq!(default.lines().count(), 7, "{default}");
        assert!(default.contains("\\x1b[31m"), "the default escapes the message: {default}");
        for (d, p) in default.lines().zip(plain.lines()) {
            assert_eq!(p, d);
        }
        assert_eq!(plain, default);
    }

    #[test]
    fn values_and_messages_from_the_network_cannot_break_a_line_or_reach_the_terminal() {
        let default = render_events(false, hostile_events);
        assert!(default.contains("reason=bad\nINFO"), "the default lets a value break the line: {default}");
        let plain = render_events(true, hostile_events);
        assert_eq!(plain.lines().count(), 2, "{plain}");
        assert!(plain.contains(" refused reason=bad\\nINFO hs2_proxy: forged line\n"), "{plain}");
        assert!(plain.contains(" message\\nwith a break text=clear \\x1b[2J screen\\r\n"), "{plain}");
        assert!(!plain.contains('\x1b') && !plain.contains('\r'), "{plain}");
    }
}
