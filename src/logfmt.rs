//! The fields of a plain-text log line (a file, a pipe, journald): the same text tracing-subscriber's
//! default field formatter writes with colours off, written for less.
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

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;

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
                write!(self.writer, "{name}=")?;
            }
            write!(Escaping(&mut self.writer), "{value}")
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
