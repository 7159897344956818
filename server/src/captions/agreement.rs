//! Which words of a growing transcription are final, Sans-IO: LocalAgreement-2, the policy of
//! whisper_streaming (Macháček et al., 2023).
//!
//! The captioner transcribes the current utterance again each time more audio has arrived.
//! A word is *committed* (sent to viewers, never taken back) once two consecutive
//! transcriptions agree on it and on everything before it. Words at the edge of the audio,
//! which whisper often gets wrong while they are being spoken, wait for the next pass; at the
//! end of an utterance everything left is committed. Words come with times, so text already
//! committed is recognised in the next pass (by time and by its last words) and never sent
//! twice.

/// One word of a transcription: its text (with no surrounding spaces) and when it was spoken,
/// in milliseconds on the captioner's sample clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Word {
    pub text: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// whisper's probability of the word's least likely token (0 if unknown).
    pub p: f32,
}

impl Word {
    pub fn new(text: &str, start_ms: i64, end_ms: i64) -> Self {
        Self {
            text: text.to_owned(),
            start_ms,
            end_ms,
            p: 0.0,
        }
    }
}

/// Words compare by their letters and digits only, case-insensitively, so "Hello," and
/// "hello" agree.
fn norm(w: &str) -> String {
    w.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// LocalAgreement-2 over one utterance (see the [module docs](self)).
#[derive(Clone, Debug, Default)]
pub struct LocalAgreement {
    /// Words committed in this utterance.
    committed: Vec<Word>,
    /// The uncommitted tail of the previous pass.
    previous: Vec<Word>,
    /// After a trim, the audio keeps a margin before the cut: the last word trimmed away, in
    /// case the next pass hears (the end of) it again at its start.
    ghost: Option<Word>,
}

/// How far back (ms) a new word may start and still be taken as new rather than committed.
const TIME_SLACK_MS: i64 = 100;
/// Words ending this close to the end of the audio wait for the next pass.
pub const EDGE_MS: i64 = 200;

impl LocalAgreement {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a new utterance.
    pub fn reset(&mut self) {
        self.committed.clear();
        self.previous.clear();
        self.ghost = None;
    }

    pub fn committed(&self) -> &[Word] {
        &self.committed
    }

    /// The last pass's words after the committed ones (not agreed on yet).
    pub fn pending(&self) -> &[Word] {
        &self.previous
    }

    /// End of the last committed word (ms), if any.
    pub fn committed_end_ms(&self) -> Option<i64> {
        self.committed.last().map(|w| w.end_ms)
    }

    /// Drops from `hyp` what is already committed. Each pass transcribes the utterance from
    /// its start, so the committed words normally open the hypothesis; if whisper now hears
    /// them a little differently, what follows the last committed word (found by text) is
    /// new; failing that, the words that start after the committed ones ended.
    fn new_part(&self, mut hyp: Vec<Word>) -> Vec<Word> {
        if let (Some(g), Some(first)) = (&self.ghost, hyp.first()) {
            // The trimmed word heard again in the margin (whole, or its tail).
            if norm(&first.text) == norm(&g.text) || first.end_ms <= g.end_ms {
                hyp.remove(0);
            }
        }
        let c = &self.committed;
        let Some(last) = c.last() else {
            return hyp;
        };
        let same = |a: &Word, b: &Word| norm(&a.text) == norm(&b.text);
        if hyp.len() >= c.len() && c.iter().zip(&hyp).all(|(a, b)| same(a, b)) {
            return hyp[c.len()..].to_vec();
        }
        let reach = (c.len() + 3).min(hyp.len());
        let found = (0..reach).rev().find(|&i| {
            same(&hyp[i], last) && (c.len() < 2 || i == 0 || same(&hyp[i - 1], &c[c.len() - 2]))
        });
        if let Some(i) = found {
            return hyp[i + 1..].to_vec();
        }
        let end = last.end_ms;
        hyp.into_iter()
            .filter(|w| w.start_ms > end - TIME_SLACK_MS)
            .collect()
    }

    /// The audio up to `shift_ms` was dropped: forget the committed words before index
    /// `keep` (keeping the last of them as the ghost the next pass may hear again) and move the
    /// times of the rest. Committed words from `keep` on are still in the audio: the next
    /// passes hear them again as left context and they are not sent again.
    pub fn trim(&mut self, keep: usize, shift_ms: i64) {
        let keep = keep.min(self.committed.len());
        let mut gone: Vec<Word> = self.committed.drain(..keep).collect();
        if let Some(g) = gone.pop() {
            self.ghost = Some(g);
        }
        for w in self
            .committed
            .iter_mut()
            .chain(self.previous.iter_mut())
            .chain(self.ghost.iter_mut())
        {
            w.start_ms -= shift_ms;
            w.end_ms -= shift_ms;
        }
    }

    /// A new transcription of the utterance so far, whose audio is `audio_ms` long. Returns
    /// the words it commits. A word ending in the last [`EDGE_MS`] of the audio is not
    /// committed yet, even if two passes agree: both may have heard only half of it.
    pub fn update(&mut self, hypothesis: Vec<Word>, audio_ms: i64) -> Vec<Word> {
        let limit = audio_ms - EDGE_MS;
        self.update_with(hypothesis, limit, limit, f32::INFINITY)
    }

    /// [`update`](Self::update) with explicit limits: a word two passes agree on is
    /// committed if it ends by `agree_limit_ms`; a word that the previous pass did not have
    /// (or had differently) is committed if whisper gave all its tokens a probability of at
    /// least `confident_p` and it ends by `confident_limit_ms`. Commits stop at the first
    /// word that is neither, so they are always a prefix of what is new.
    pub fn update_with(
        &mut self,
        hypothesis: Vec<Word>,
        agree_limit_ms: i64,
        confident_limit_ms: i64,
        confident_p: f32,
    ) -> Vec<Word> {
        if hypothesis.is_empty() {
            // Nothing whisper was sure of (its guards dropped the segment), in audio the VAD
            // calls speech: no news; the last pass's words are kept to agree with.
            return Vec::new();
        }
        let new = self.new_part(hypothesis);
        let agree = new
            .iter()
            .enumerate()
            .take_while(|(i, a)| {
                let same = self
                    .previous
                    .get(*i)
                    .is_some_and(|b| norm(&a.text) == norm(&b.text));
                (same && a.end_ms <= agree_limit_ms)
                    || (a.p >= confident_p && a.end_ms <= confident_limit_ms)
            })
            .count();
        let commit: Vec<Word> = new[..agree].to_vec();
        self.previous = new[agree..].to_vec();
        if agree > 0 {
            self.ghost = None;
        }
        self.committed.extend(commit.iter().cloned());
        commit
    }

    /// Commits the last pass's uncommitted words that end by `end_ms`: for an utterance that
    /// grew too long with nothing agreed on, better the last pass's words than none.
    pub fn commit_pending(&mut self, end_ms: i64) -> Vec<Word> {
        let n = self
            .previous
            .iter()
            .take_while(|w| w.end_ms <= end_ms)
            .count();
        let c: Vec<Word> = self.previous.drain(..n).collect();
        if !c.is_empty() {
            self.ghost = None;
        }
        self.committed.extend(c.iter().cloned());
        c
    }

    /// The last transcription of an utterance that has ended: everything new is committed.
    pub fn finish(&mut self, hypothesis: Vec<Word>) -> Vec<Word> {
        let new = self.new_part(hypothesis);
        self.committed.extend(new.iter().cloned());
        self.previous.clear();
        self.ghost = None;
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str, start: i64) -> Vec<Word> {
        s.split_whitespace()
            .enumerate()
            .map(|(i, w)| Word::new(w, start + 300 * i as i64, start + 300 * i as i64 + 250))
            .collect()
    }

    fn texts(w: &[Word]) -> String {
        w.iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn commits_the_agreed_prefix_once() {
        let mut la = LocalAgreement::new();
        assert_eq!(texts(&la.update(words("the quick brow", 0), 60_000)), "");
        // The second pass agrees on two words; "brown" differs from "brow".
        assert_eq!(
            texts(&la.update(words("The quick, brown fox", 0), 60_000)),
            "The quick,"
        );
        assert_eq!(
            texts(&la.update(words("the quick brown fox jumps", 0), 60_000)),
            "brown fox"
        );
        // The end of the utterance flushes what is left, without repeating anything.
        assert_eq!(
            texts(&la.finish(words("the quick brown fox jumps over", 0))),
            "jumps over"
        );
        assert_eq!(texts(la.committed()), "The quick, brown fox jumps over");
    }

    #[test]
    fn committed_words_are_recognised_when_times_shift() {
        let mut la = LocalAgreement::new();
        la.update(words("one two three", 0), 60_000);
        la.update(words("one two three four", 0), 60_000);
        assert_eq!(texts(la.committed()), "one two three");
        // The next pass starts its words 200 ms later (whisper's timestamps wobble): the
        // repeated "three" is caught by text, not by time.
        let mut hyp = words("two three four five", 500);
        hyp[0].start_ms = 400;
        let c = la.update(hyp, 60_000);
        assert_eq!(texts(&c), "four");
        assert_eq!(
            texts(&la.finish(words("three four five six", 700))),
            "five six"
        );
    }

    #[test]
    fn trimming_keeps_later_committed_words_recognisable() {
        let mut la = LocalAgreement::new();
        la.update(words("Hi there. How are", 0), 60_000);
        la.update(words("Hi there. How are you", 0), 60_000);
        assert_eq!(texts(la.committed()), "Hi there. How are");
        // The audio up to 150 ms before the end of "there." (550 ms) is dropped.
        la.trim(2, 400); // through committed word 1
        assert_eq!(la.committed()[0].start_ms, 600 - 400);
        // The next pass hears the end of "there." again, then "How are you doing": neither
        // is sent again.
        let mut hyp = words("there. How are you doing", 0);
        hyp[0].end_ms = 140;
        assert_eq!(texts(&la.update(hyp, 60_000)), "you");
    }

    #[test]
    fn words_at_the_edge_of_the_audio_wait() {
        let mut la = LocalAgreement::new();
        la.update(words("one two thr", 0), 850);
        // With 700 ms of audio, "two" (ends at 550 ms) is too close to the end: not yet.
        assert_eq!(texts(&la.update(words("one two three", 0), 700)), "one");
        assert_eq!(
            texts(&la.update(words("one two three four", 0), 1500)),
            "two three"
        );
    }

    #[test]
    fn a_sure_word_needs_no_second_pass() {
        let mut la = LocalAgreement::new();
        let mut hyp = words("mix flour water", 0);
        hyp[0].p = 0.95;
        hyp[1].p = 0.5;
        hyp[2].p = 0.99;
        // "mix" is sure; "flour" is not and has no previous pass to agree with, so it and
        // everything after it wait.
        assert_eq!(texts(&la.update_with(hyp, 59_800, 59_800, 0.8)), "mix");
        assert_eq!(
            texts(&la.update_with(words("mix flour water salt", 0), 59_800, 59_800, 0.8)),
            "flour water"
        );
    }

    #[test]
    fn left_context_is_heard_again_but_not_sent_again() {
        let mut la = LocalAgreement::new();
        la.update(words("a large bowl. Knead the", 0), 60_000);
        la.update(words("a large bowl. Knead the dough", 0), 60_000);
        assert_eq!(texts(la.committed()), "a large bowl. Knead the");
        // The audio before "large" (at 300 ms) goes; "large bowl. Knead the" stays as context.
        la.trim(1, 250);
        assert_eq!(la.committed()[0].start_ms, 50);
        assert_eq!(
            texts(&la.update(words("large bowl. Knead the dough for", 50), 60_000)),
            "dough"
        );
    }

    #[test]
    fn an_empty_pass_changes_nothing_and_a_long_stall_commits_the_last_pass() {
        let mut la = LocalAgreement::new();
        la.update(words("leave the dough for", 0), 60_000);
        assert!(la.update(Vec::new(), 60_000).is_empty());
        assert_eq!(
            texts(&la.update(words("leave the dough for ten", 0), 60_000)),
            "leave the dough for"
        );
        assert_eq!(
            texts(&la.update(words("leave the dough for tin minutes until", 0), 60_000)),
            ""
        );
        // "tin" (ends 1450 ms) and "minutes" (1750 ms) are pending; cut at 1800 ms.
        assert_eq!(texts(&la.commit_pending(1800)), "tin minutes");
        assert_eq!(
            texts(&la.update(words("leave the dough for ten minutes until it", 0), 60_000)),
            "until"
        );
    }

    #[test]
    fn disagreement_commits_nothing_and_reset_starts_over() {
        let mut la = LocalAgreement::new();
        la.update(words("hello world", 0), 60_000);
        assert!(la.update(words("yellow world", 0), 60_000).is_empty());
        la.reset();
        assert!(la.committed().is_empty());
        assert_eq!(texts(&la.finish(words("new start", 5000))), "new start");
    }
}
