//! Chat in a call: what the person streaming types, sent as real-time text (T.140, RFC 4103)
//! on a text track of its own, labelled `chat` in the SDP so players tell it from captions.
//!
//! Each message goes out at once as one T.140 block ending in a line separator (U+2028), in an
//! RFC 2198 `red` packet; [`CHAT_RED_GENERATIONS`] later packets (300 ms apart) carry it again,
//! so a message is lost only if four packets in a row are (at 5 % random loss: 6 in a million).

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::SystemTime;

use anyhow::Context;
use livecast_proto::codec::t140::LINE_SEPARATOR;

use crate::captions::{text_sender, CaptionText};
use crate::track::Track;

/// Redundant copies of each chat block (RFC 4103 recommends 2; text typed by a person is
/// worth one more packet of protection).
pub const CHAT_RED_GENERATIONS: usize = 3;
/// Longest block sent at once: RFC 2198 block lengths are 10 bits (1023 bytes). Longer
/// messages go out in several blocks.
pub const MAX_BLOCK_BYTES: usize = 1000;
/// Longest message accepted.
pub const MAX_MESSAGE_CHARS: usize = 4000;

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    #[error("empty message")]
    Empty,
    #[error("message too long ({0} characters, at most {MAX_MESSAGE_CHARS})")]
    TooLong(usize),
    #[error("chat is not running (the server has stopped)")]
    Stopped,
    #[error("chat is sending too fast; message dropped")]
    Busy,
}

/// The sending end of the chat track.
#[derive(Clone)]
pub struct ChatInput {
    tx: SyncSender<CaptionText>,
}

impl ChatInput {
    /// Sends one message (line breaks become spaces; other control characters are removed).
    /// Never blocks. Returns the text as sent.
    pub fn send(&self, text: &str) -> Result<String, ChatError> {
        let clean = sanitize(text);
        if clean.is_empty() {
            return Err(ChatError::Empty);
        }
        let n = clean.chars().count();
        if n > MAX_MESSAGE_CHARS {
            return Err(ChatError::TooLong(n));
        }
        let mut line = clean.clone();
        line.push(LINE_SEPARATOR);
        let now = SystemTime::now();
        for block in split_blocks(&line, MAX_BLOCK_BYTES) {
            let t = CaptionText {
                capture: now,
                text: block.to_owned(),
            };
            match self.tx.try_send(t) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => return Err(ChatError::Busy),
                Err(TrySendError::Disconnected(_)) => return Err(ChatError::Stopped),
            }
        }
        Ok(clean)
    }
}

/// Starts the sender thread for the chat track.
pub fn start(track: Arc<Track>) -> anyhow::Result<ChatInput> {
    let (tx, rx) = sync_channel::<CaptionText>(256);
    thread::Builder::new()
        .name("chat-sender".into())
        .spawn(move || text_sender(rx, track, CHAT_RED_GENERATIONS))
        .context("spawn chat sender")?;
    Ok(ChatInput { tx })
}

fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\r' | '\n' | '\t' | '\u{2028}' | '\u{2029}' => out.push(' '),
            c if c.is_control() || c == '\u{feff}' => {}
            c => out.push(c),
        }
    }
    out.trim().to_owned()
}

/// Splits `s` into pieces of at most `max` bytes, at character boundaries.
fn split_blocks(s: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_and_split() {
        assert_eq!(sanitize("  hi\r\nthere\u{7}\u{feff} "), "hi  there");
        assert_eq!(sanitize("\n\t "), "");
        let s = "é".repeat(700); // 1400 bytes
        let parts = split_blocks(&s, MAX_BLOCK_BYTES);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.len() <= MAX_BLOCK_BYTES));
        assert_eq!(parts.concat(), s);
    }

    #[test]
    fn send_queues_a_line_per_message_and_reports_errors() {
        let (tx, rx) = sync_channel(2);
        let chat = ChatInput { tx };
        assert_eq!(chat.send(" hello\n"), Ok("hello".into()));
        assert_eq!(rx.recv().unwrap().text, "hello\u{2028}");
        assert_eq!(chat.send(" \n"), Err(ChatError::Empty));
        assert_eq!(
            chat.send(&"x".repeat(MAX_MESSAGE_CHARS + 1)),
            Err(ChatError::TooLong(MAX_MESSAGE_CHARS + 1))
        );
        chat.send("a").unwrap();
        chat.send("b").unwrap();
        assert_eq!(chat.send("c"), Err(ChatError::Busy));
        drop(rx);
        assert_eq!(chat.send("d"), Err(ChatError::Stopped));
    }
}
