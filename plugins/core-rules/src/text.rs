//! Shared text helpers: normalisation, word tokenising, sentence and step detection, and
//! the small phrase-pattern language every lexicon of this pack is written in.
//!
//! # Words
//!
//! [`Text::new`] lower-cases the input, folds typographic quotes, dashes and bullets to
//! ASCII, drops zero-width characters, and splits it into words and sentences. Contractions
//! are expanded so that lexicons only need one spelling: "can't" and "cannot" become
//! `can not`, "I'm" becomes `i am`, "gonna" becomes `going to`; a possessive `'s` is dropped
//! ("women's" is `women`). Numbers are single words ("3.5", "1,000") and a number glued to
//! a unit is split ("200g" is `200 g`); "°" reads as `degrees`.
//!
//! Sentences end at `.`, `!`, `?` (except after a one-letter word or a title such as "Dr")
//! and at every line break. A line starting with a list marker (`1.`, `2)`, `-`, `*`, a
//! bullet, `Step 3:`) is a list item. Words between a pair of double quotes on one line are
//! marked as quoted, so rules can tell quoting from saying.
//!
//! # Pattern language
//!
//! A pattern is a space-separated list of slots matched against consecutive words of one
//! sentence:
//!
//! - `word` matches that word exactly; `word*` matches any word starting with `word`;
//! - `a|b|c*` matches any of the alternatives;
//! - a trailing `?` makes a slot optional (`a|an?`);
//! - `~N` skips up to N arbitrary words;
//! - `@class` matches any word of a class registered with [`Lexicon::class`];
//! - a leading `^` anchors the pattern at the start of a sentence.
//!
//! Patterns are constants written by the rule authors; a malformed one panics when its
//! lexicon is built, which every rule's unit tests exercise.

use std::any::Any;
use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;
use std::sync::LazyLock;

/// Folds a string for matching: lower case, ASCII quotes/dashes/bullets, no zero-width
/// characters, `°` spelled `degrees`.
pub fn normalize(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 8);
    let mut rest = raw;
    while !rest.is_empty() {
        // Fast path: copy a run of ASCII at once.
        let ascii = rest.bytes().take_while(u8::is_ascii).count();
        if ascii > 0 {
            let start = out.len();
            out.push_str(&rest[..ascii]);
            out[start..].make_ascii_lowercase();
            rest = &rest[ascii..];
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        rest = &rest[c.len_utf8()..];
        match c {
            '\u{2018}' | '\u{2019}' | '\u{201B}' | '\u{2032}' | '\u{02BC}' => out.push('\''),
            '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' | '\u{00AB}' | '\u{00BB}' => out.push('"'),
            '\u{2010}'..='\u{2015}' | '\u{2212}' => out.push('-'),
            '\u{2022}' | '\u{2023}' | '\u{2043}' | '\u{25CF}' | '\u{25E6}' | '\u{00B7}' => out.push('*'),
            '\u{00B0}' => out.push_str(" degrees "),
            '\u{2026}' => out.push_str("..."),
            '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => {}
            '\u{2028}' | '\u{2029}' => out.push('\n'),
            c if c.is_whitespace() => out.push(' '),
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

#[derive(Clone, Copy, Debug)]
struct Token {
    start: usize,
    end: usize,
    /// The spelling to match instead of the text (contraction expansions).
    alias: Option<&'static str>,
    sentence: usize,
    quoted: bool,
}

/// One sentence: a range of word indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sentence {
    pub words: Range<usize>,
    /// The sentence is (part of) a line that starts with a list marker.
    pub list_item: bool,
    /// The sentence ends with a question mark.
    pub question: bool,
}

/// A normalised, tokenised text.
pub struct Text {
    norm: String,
    tokens: Vec<Token>,
    /// [`word_hash`] of every word, for lexicon lookups.
    hashes: Vec<u64>,
    sentences: Vec<Sentence>,
    list_items: usize,
    /// Analyses derived from this text, one per type (see [`Text::memo`]).
    memo: RefCell<Vec<Rc<dyn Any>>>,
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Text").field("norm", &self.norm).field("words", &self.len()).finish_non_exhaustive()
    }
}

/// How many recently analysed texts [`Text::shared`] keeps, and how many bytes of source
/// text in all (an analysis takes roughly ten times its source): plugins run in a sandbox
/// with a small memory limit. Larger texts are analysed but not kept.
const SHARED_TEXTS: usize = 32;
const SHARED_BYTES: usize = 512 * 1024;
const SHARED_MAX_TEXT: usize = 128 * 1024;

thread_local! {
    /// Recently analysed texts with their source. The engine evaluates every rule of a
    /// pack on the same sample in turn, so the rules share one analysis of it.
    static SHARED: RefCell<Vec<(String, Rc<Text>)>> = const { RefCell::new(Vec::new()) };
}

/// Titles and the like after which a full stop does not end a sentence.
const ABBREVIATIONS: &[&str] = &["mr", "mrs", "ms", "dr", "st", "vs", "jr", "sr", "approx", "prof"];

/// Stems whose `'s` is a contracted "is" (or "us") rather than a possessive.
const IS_CONTRACTIONS: &[&str] =
    &["it", "that", "what", "there", "here", "he", "she", "who", "where", "how", "let", "this"];

/// Contractions written without an apostrophe, and other spellings read as two words.
fn bare_contraction(word: &str) -> Option<&'static [&'static str]> {
    Some(match word {
        "cannot" | "cant" => &["can", "not"],
        "dont" => &["do", "not"],
        "doesnt" => &["does", "not"],
        "didnt" => &["did", "not"],
        "isnt" => &["is", "not"],
        "arent" => &["are", "not"],
        "wasnt" => &["was", "not"],
        "werent" => &["were", "not"],
        "wont" => &["will", "not"],
        "wouldnt" => &["would", "not"],
        "shouldnt" => &["should", "not"],
        "couldnt" => &["could", "not"],
        "havent" => &["have", "not"],
        "hasnt" => &["has", "not"],
        "im" => &["i", "am"],
        "ive" => &["i", "have"],
        "youre" => &["you", "are"],
        "theyre" => &["they", "are"],
        "thats" => &["that", "is"],
        "gonna" => &["going", "to"],
        "wanna" => &["want", "to"],
        "gotta" => &["got", "to"],
        "u" => &["you"],
        "ur" => &["your"],
        _ => return None,
    })
}

struct Builder<'a> {
    norm: &'a str,
    tokens: Vec<Token>,
    sentences: Vec<Sentence>,
    sentence_start: usize,
    list_item: bool,
    list_items: usize,
    quote_open: Option<usize>,
}

impl Builder<'_> {
    fn push(&mut self, start: usize, end: usize, alias: Option<&'static str>) {
        self.tokens.push(Token {
            start,
            end,
            alias,
            sentence: self.sentences.len(),
            quoted: self.quote_open.is_some(),
        });
    }

    fn push_word(&mut self, start: usize, end: usize) {
        let word = &self.norm[start..end];
        if let Some(apostrophe) = word.find('\'') {
            let (stem, suffix) = (&word[..apostrophe], &word[apostrophe + 1..]);
            let split = start + apostrophe;
            let expansion = match suffix {
                "t" if stem.len() > 1 && stem.ends_with('n') => {
                    let base = &stem[..stem.len() - 1];
                    let alias = match base {
                        "ca" => Some("can"),
                        "wo" => Some("will"),
                        "sha" => Some("shall"),
                        "ai" => Some("is"),
                        _ => None,
                    };
                    self.push(start, split - 1, alias);
                    self.push(split - 1, end, Some("not"));
                    return;
                }
                "m" => Some("am"),
                "re" => Some("are"),
                "ll" => Some("will"),
                "ve" => Some("have"),
                "d" => Some("would"),
                "s" if stem == "let" => Some("us"),
                "s" if IS_CONTRACTIONS.contains(&stem) => Some("is"),
                "s" => None,
                _ => {
                    self.push(start, end, None);
                    return;
                }
            };
            self.push(start, split, None);
            if let Some(alias) = expansion {
                self.push(split, end, Some(alias));
            }
        } else if let Some(words) = bare_contraction(word) {
            for alias in words {
                self.push(start, end, Some(alias));
            }
        } else {
            self.push(start, end, None);
        }
    }

    fn end_sentence(&mut self, question: bool) {
        if self.tokens.len() > self.sentence_start {
            self.sentences.push(Sentence {
                words: self.sentence_start..self.tokens.len(),
                list_item: self.list_item,
                question,
            });
            self.sentence_start = self.tokens.len();
        }
    }

    fn end_line(&mut self) {
        self.end_sentence(false);
        // A quote left open at the end of a line was not a quotation after all.
        if let Some(open) = self.quote_open.take() {
            for token in &mut self.tokens[open..] {
                token.quoted = false;
            }
        }
        self.list_item = false;
    }

    fn toggle_quote(&mut self) {
        self.quote_open = match self.quote_open {
            Some(_) => None,
            None => Some(self.tokens.len()),
        };
    }

    /// Whether the full stop at byte `at` follows an abbreviation ("Dr.", "e.g.").
    fn after_abbreviation(&self, at: usize) -> bool {
        self.tokens.last().is_some_and(|t| {
            let word = &self.norm[t.start..t.end];
            t.end == at
                && ((word.len() == 1 && word.as_bytes()[0].is_ascii_alphabetic()) || ABBREVIATIONS.contains(&word))
        })
    }
}

/// The length of a list marker at the start of `line` (including the space after it).
fn list_marker(line: &[u8]) -> Option<usize> {
    let is_space = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    let digits = line.iter().take_while(|b| b.is_ascii_digit()).count();
    if (1..=2).contains(&digits)
        && matches!(line.get(digits), Some(b'.' | b')' | b':'))
        && is_space(line.get(digits + 1))
    {
        return Some(digits + 2);
    }
    if matches!(line.first(), Some(b'-' | b'*' | b'+')) && is_space(line.get(1)) {
        return Some(2);
    }
    if line.starts_with(b"step ") {
        let digits = line[5..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 {
            let mut end = 5 + digits;
            if matches!(line.get(end), Some(b'.' | b')' | b':')) {
                end += 1;
            }
            return Some(end);
        }
    }
    None
}

/// Where the word starting at byte `start` of `norm` ends.
fn word_end(norm: &str, start: usize) -> usize {
    let bytes = norm.as_bytes();
    if bytes[start].is_ascii_digit() {
        let mut end = start;
        while end < bytes.len() {
            let decimal_mark = matches!(bytes[end], b'.' | b',') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit);
            if bytes[end].is_ascii_digit() || decimal_mark {
                end += 1;
            } else {
                break;
            }
        }
        return end;
    }
    let mut end = start;
    // Fast path for ASCII letters and digits.
    while end < bytes.len() && bytes[end].is_ascii_alphanumeric() {
        end += 1;
    }
    let at_boundary = bytes.get(end).is_none_or(|&b| b.is_ascii() && b != b'\'');
    if end > start && at_boundary {
        return end;
    }
    let mut chars = norm[start..].char_indices().peekable();
    while let Some((offset, c)) = chars.next() {
        if c.is_alphanumeric() {
            end = start + offset + c.len_utf8();
        } else if c == '\'' && chars.peek().is_some_and(|&(_, next)| next.is_alphabetic()) {
            continue;
        } else {
            break;
        }
    }
    end
}

impl Text {
    /// Normalises and tokenises `raw`.
    pub fn new(raw: &str) -> Text {
        let norm = normalize(raw);
        let mut b = Builder {
            norm: &norm,
            tokens: Vec::with_capacity(norm.len() / 5 + 1),
            sentences: Vec::new(),
            sentence_start: 0,
            list_item: false,
            list_items: 0,
            quote_open: None,
        };
        let bytes = norm.as_bytes();
        let mut i = 0;
        let mut line_start = true;
        while i < bytes.len() {
            if line_start {
                line_start = false;
                while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\r') {
                    i += 1;
                }
                if let Some(marker) = list_marker(&bytes[i..]) {
                    b.list_item = true;
                    b.list_items += 1;
                    i += marker;
                }
                continue;
            }
            match bytes[i] {
                b'\n' => {
                    b.end_line();
                    line_start = true;
                    i += 1;
                }
                b'.' | b'!' | b'?' => {
                    let run = bytes[i..].iter().take_while(|b| matches!(b, b'.' | b'!' | b'?')).count();
                    let question = bytes[i..i + run].contains(&b'?');
                    if !(run == 1 && bytes[i] == b'.' && b.after_abbreviation(i)) {
                        b.end_sentence(question);
                    }
                    i += run;
                }
                b'"' => {
                    b.toggle_quote();
                    i += 1;
                }
                _ => {
                    let Some(c) = norm[i..].chars().next() else {
                        break;
                    };
                    if c.is_alphanumeric() {
                        let end = word_end(&norm, i);
                        b.push_word(i, end);
                        i = end;
                    } else {
                        i += c.len_utf8();
                    }
                }
            }
        }
        b.end_line();
        let (tokens, sentences, list_items) = (b.tokens, b.sentences, b.list_items);
        let mut text = Text { norm, tokens, hashes: Vec::new(), sentences, list_items, memo: RefCell::default() };
        text.hashes = (0..text.len()).map(|i| word_hash(text.word(i))).collect();
        text
    }

    /// Like [`Text::new`], but reuses the analysis of a recently seen identical string
    /// (the rules of a pack all read the same sample), together with its memos.
    pub fn shared(raw: &str) -> Rc<Text> {
        SHARED.with(|cache| {
            let mut cache = cache.borrow_mut();
            // Most recently used first: the sample being judged is at the end.
            if let Some(at) = cache.iter().rposition(|(source, _)| source == raw) {
                let hit = cache.remove(at);
                let text = Rc::clone(&hit.1);
                cache.push(hit);
                return text;
            }
            let text = Rc::new(Text::new(raw));
            if raw.len() <= SHARED_MAX_TEXT {
                let mut bytes: usize = cache.iter().map(|(source, _)| source.len()).sum::<usize>() + raw.len();
                while !cache.is_empty() && (cache.len() >= SHARED_TEXTS || bytes > SHARED_BYTES) {
                    bytes -= cache.remove(0).0.len();
                }
                cache.push((raw.to_string(), Rc::clone(&text)));
            }
            text
        })
    }

    /// A value derived from this text, computed once per type and then reused (e.g. the
    /// [`Procedure`] or a rule's analysis).
    pub fn memo<T: Any>(&self, compute: impl FnOnce(&Text) -> T) -> Rc<T> {
        let found = self.memo.borrow().iter().find_map(|value| Rc::clone(value).downcast::<T>().ok());
        if let Some(value) = found {
            return value;
        }
        let value = Rc::new(compute(self));
        self.memo.borrow_mut().push(value.clone());
        value
    }

    /// The step structure of the text (memoised [`procedure`]).
    pub fn procedure(&self) -> Rc<Procedure> {
        self.memo(procedure)
    }

    /// The normalised text.
    pub fn norm(&self) -> &str {
        &self.norm
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Word `i` as matched by patterns (contractions expanded).
    #[inline]
    pub fn word(&self, i: usize) -> &str {
        let t = &self.tokens[i];
        t.alias.unwrap_or(&self.norm[t.start..t.end])
    }

    pub fn words(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.word(i))
    }

    pub fn sentences(&self) -> &[Sentence] {
        &self.sentences
    }

    /// The index of the sentence that word `i` belongs to.
    pub fn sentence_of(&self, i: usize) -> usize {
        self.tokens[i].sentence
    }

    /// Whether word `i` stands between a pair of double quotes.
    pub fn is_quoted(&self, i: usize) -> bool {
        self.tokens[i].quoted
    }

    /// Number of lines that start with a list marker.
    pub fn list_items(&self) -> usize {
        self.list_items
    }

    /// The character right after word `i` in the normalised text (e.g. `%`).
    pub fn char_after(&self, i: usize) -> Option<char> {
        self.norm[self.tokens[i].end..].chars().next()
    }

    /// Words `range` joined by spaces, for rationales.
    pub fn phrase(&self, range: Range<usize>) -> String {
        let words: Vec<&str> = range.map(|i| self.word(i)).collect();
        words.join(" ")
    }

    /// Whether any word in `range` negates ("not", "never", "no", ...).
    pub fn has_negation(&self, range: Range<usize>) -> bool {
        range.into_iter().any(|i| matches!(self.word(i), "not" | "never" | "no" | "nor" | "neither" | "hardly"))
    }

    /// Whether the words `range` are negated: a negating word inside them, or "not" /
    /// "never" among the two words before them in the same sentence ("don't cut yourself").
    pub fn negated(&self, range: Range<usize>) -> bool {
        if range.is_empty() {
            return false;
        }
        let sentence_start = self.sentences[self.sentence_of(range.start)].words.start;
        let before = range.start.saturating_sub(2).max(sentence_start)..range.start;
        self.has_negation(range) || before.into_iter().any(|i| matches!(self.word(i), "not" | "never"))
    }

    /// Word `i` read as a number: digits ("1,000", "2.5") or a small number word.
    pub fn number(&self, i: usize) -> Option<f32> {
        let word = self.word(i);
        if word.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            return word.replace(',', "").parse().ok();
        }
        let value = match word {
            "half" => 0.5,
            "a" | "an" | "one" => 1.0,
            "two" | "couple" => 2.0,
            "three" => 3.0,
            "four" => 4.0,
            "five" => 5.0,
            "six" => 6.0,
            "seven" => 7.0,
            "eight" => 8.0,
            "nine" => 9.0,
            "ten" => 10.0,
            "eleven" => 11.0,
            "twelve" | "dozen" => 12.0,
            "thirteen" => 13.0,
            "fourteen" => 14.0,
            "fifteen" => 15.0,
            "sixteen" => 16.0,
            "seventeen" => 17.0,
            "twenty" => 20.0,
            _ => return None,
        };
        Some(value)
    }
}

// ---------------------------------------------------------------------------------------
// Patterns and lexicons
// ---------------------------------------------------------------------------------------

/// FNV-1a hash of a word (lexicon index key).
fn word_hash(word: &str) -> u64 {
    word.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// An open-addressing hash table from words to lists of lexicon entries. The table
/// itself is a compact array of key numbers, so that the common case, a word that
/// starts no pattern, touches a single small slot.
#[derive(Clone, Debug, Default)]
struct FirstWordIndex {
    /// 0 = empty, otherwise 1 + an index into `keys`.
    slots: Vec<u32>,
    /// (hash, word, range into `entries`).
    keys: Vec<(u64, &'static str, u32, u32)>,
    entries: Vec<usize>,
}

impl FirstWordIndex {
    fn build(words: &std::collections::BTreeMap<&'static str, Vec<usize>>) -> FirstWordIndex {
        let capacity = (2 * words.len()).next_power_of_two().max(8);
        let mut index = FirstWordIndex { slots: vec![0; capacity], keys: Vec::new(), entries: Vec::new() };
        for (&word, entries) in words {
            let hash = word_hash(word);
            let mut slot = hash as usize & (capacity - 1);
            while index.slots[slot] != 0 {
                slot = (slot + 1) & (capacity - 1);
            }
            let start = index.entries.len() as u32;
            index.entries.extend_from_slice(entries);
            index.keys.push((hash, word, start, index.entries.len() as u32));
            index.slots[slot] = index.keys.len() as u32;
        }
        index
    }

    #[inline]
    fn get(&self, word: &str, hash: u64) -> &[usize] {
        if self.slots.is_empty() {
            return &[];
        }
        let mask = self.slots.len() - 1;
        let mut slot = hash as usize & mask;
        loop {
            let key = self.slots[slot];
            if key == 0 {
                return &[];
            }
            let (h, w, start, end) = self.keys[key as usize - 1];
            if h == hash && w == word {
                return &self.entries[start as usize..end as usize];
            }
            slot = (slot + 1) & mask;
        }
    }
}

/// A set of word patterns: exact words (sorted, for binary search) and prefixes (`word*`).
#[derive(Clone, Debug, Default)]
struct WordSet {
    exact: Vec<&'static str>,
    prefixes: Vec<&'static str>,
}

impl WordSet {
    fn insert(&mut self, raw: &'static str) {
        match raw.strip_suffix('*') {
            Some(prefix) => self.prefixes.push(prefix),
            None => self.exact.push(raw),
        }
    }

    fn extend(&mut self, other: &WordSet) {
        self.exact.extend_from_slice(&other.exact);
        self.prefixes.extend_from_slice(&other.prefixes);
    }

    fn finish(&mut self) {
        self.exact.sort_unstable();
        self.exact.dedup();
        self.prefixes.sort_unstable();
        self.prefixes.dedup();
    }

    fn matches(&self, word: &str) -> bool {
        if self.exact.binary_search(&word).is_ok() {
            return true;
        }
        // Only prefixes sharing the word's first byte can match; they are contiguous.
        let Some(&first) = word.as_bytes().first() else { return false };
        let from = self.prefixes.partition_point(|p| p.as_bytes()[0] < first);
        self.prefixes[from..].iter().take_while(|p| p.as_bytes()[0] == first).any(|p| word.starts_with(p))
    }
}

#[derive(Clone, Debug)]
enum Slot {
    Word { words: WordSet, optional: bool },
    Gap(usize),
}

#[derive(Clone, Debug)]
struct Pattern {
    anchored: bool,
    slots: Vec<Slot>,
}

impl Pattern {
    /// Matches the rest of the pattern, given that its first slot matched word `start`.
    fn match_after_first(&self, text: &Text, start: usize) -> Option<usize> {
        let sentence = &text.sentences[text.sentence_of(start)];
        if self.anchored && sentence.words.start != start {
            return None;
        }
        self.match_from(text, 1, start + 1, sentence.words.end)
    }

    fn match_from(&self, text: &Text, slot: usize, at: usize, limit: usize) -> Option<usize> {
        let Some(current) = self.slots.get(slot) else {
            return Some(at);
        };
        match current {
            Slot::Word { words, optional } => {
                let here = at < limit && words.matches(text.word(at));
                let consumed = if here { self.match_from(text, slot + 1, at + 1, limit) } else { None };
                match consumed {
                    Some(end) => Some(end),
                    None if *optional => self.match_from(text, slot + 1, at, limit),
                    None => None,
                }
            }
            Slot::Gap(max) => (0..=*max)
                .take_while(|skip| at + skip <= limit)
                .find_map(|skip| self.match_from(text, slot + 1, at + skip, limit)),
        }
    }
}

/// One lexicon entry: a pattern with its category tag and weight.
#[derive(Clone, Debug)]
struct Entry {
    tag: &'static str,
    weight: f32,
    pattern: Pattern,
    /// Drop matches that contain a negating word ("is not illegal").
    negatable: bool,
}

/// A match of a lexicon entry: words `start..end`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    pub tag: &'static str,
    pub weight: f32,
    pub start: usize,
    pub end: usize,
}

impl Hit {
    pub fn overlaps(&self, other: &Hit) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// Length of the stem under which prefix patterns (`word*`) are indexed.
const STEM: usize = 3;

/// A set of weighted, tagged patterns, indexed by their first word: a hash table of the
/// exact first words and one of the prefix first words by their first three letters.
/// Scanning a text costs two table probes per word (the word's hash is precomputed by
/// [`Text`]), plus the matching of the few patterns whose first word fits.
#[derive(Debug)]
pub struct Lexicon {
    entries: Vec<Entry>,
    classes: Vec<(&'static str, WordSet)>,
    /// Exact first words -> entries.
    first_words: std::collections::BTreeMap<&'static str, Vec<usize>>,
    first_exact: FirstWordIndex,
    /// Prefix first words (`word*`) with their entry, indexed by their first [`STEM`] bytes.
    prefixes: Vec<(&'static str, usize)>,
    prefix_stems: std::collections::BTreeMap<&'static str, Vec<usize>>,
    prefix_index: FirstWordIndex,
    /// Prefixes shorter than a stem, checked against every word.
    short_prefixes: Vec<(&'static str, usize)>,
}

impl Default for Lexicon {
    fn default() -> Self {
        Lexicon::new()
    }
}

impl Lexicon {
    pub fn new() -> Lexicon {
        Lexicon {
            entries: Vec::new(),
            classes: Vec::new(),
            first_words: std::collections::BTreeMap::new(),
            first_exact: FirstWordIndex::default(),
            prefixes: Vec::new(),
            prefix_stems: std::collections::BTreeMap::new(),
            prefix_index: FirstWordIndex::default(),
            short_prefixes: Vec::new(),
        }
    }

    /// Registers a word class usable as `@name` in later patterns.
    pub fn class(mut self, name: &'static str, words: &[&'static str]) -> Lexicon {
        let mut set = WordSet::default();
        for word in words {
            set.insert(word);
        }
        set.finish();
        self.classes.push((name, set));
        self
    }

    /// Adds patterns under a category tag with a weight in (0, 1].
    pub fn add(self, tag: &'static str, weight: f32, patterns: &[&'static str]) -> Lexicon {
        self.add_entries(tag, weight, patterns, false)
    }

    /// Like [`Lexicon::add`], but a negated match is dropped: one containing a negating
    /// word ("is not illegal") or preceded by "not"/"never" ("don't cut yourself").
    pub fn add_unless_negated(self, tag: &'static str, weight: f32, patterns: &[&'static str]) -> Lexicon {
        self.add_entries(tag, weight, patterns, true)
    }

    fn add_entries(mut self, tag: &'static str, weight: f32, patterns: &[&'static str], negatable: bool) -> Lexicon {
        assert!(weight > 0.0 && weight <= 1.0, "weight of {tag} must be in (0, 1]");
        for &source in patterns {
            let pattern = self.parse(source);
            let index = self.entries.len();
            if let Slot::Word { words, .. } = &pattern.slots[0] {
                for &word in &words.exact {
                    self.first_words.entry(word).or_default().push(index);
                }
                for &prefix in &words.prefixes {
                    match prefix.get(..STEM) {
                        Some(stem) if prefix.len() >= STEM => {
                            self.prefix_stems.entry(stem).or_default().push(self.prefixes.len());
                            self.prefixes.push((prefix, index));
                        }
                        _ => self.short_prefixes.push((prefix, index)),
                    }
                }
            }
            self.entries.push(Entry { tag, weight, pattern, negatable });
        }
        self.first_exact = FirstWordIndex::build(&self.first_words);
        self.prefix_index = FirstWordIndex::build(&self.prefix_stems);
        self
    }

    fn parse(&self, source: &'static str) -> Pattern {
        let (anchored, body) = match source.strip_prefix("^ ") {
            Some(rest) => (true, rest),
            None => (false, source),
        };
        let slots: Vec<Slot> = body.split_whitespace().map(|raw| self.parse_slot(raw, source)).collect();
        let first_is_word = matches!(slots.first(), Some(Slot::Word { optional: false, .. }));
        assert!(first_is_word, "pattern {source:?} must start with a required word");
        assert!(!matches!(slots.last(), Some(Slot::Gap(_))), "pattern {source:?} must not end with a gap");
        Pattern { anchored, slots }
    }

    fn parse_slot(&self, raw: &'static str, source: &str) -> Slot {
        if let Some(max) = raw.strip_prefix('~') {
            let max = max.parse().unwrap_or_else(|_| panic!("bad gap {raw:?} in pattern {source:?}"));
            return Slot::Gap(max);
        }
        let (body, optional) = match raw.strip_suffix('?') {
            Some(body) => (body, true),
            None => (raw, false),
        };
        let mut words = WordSet::default();
        for alternative in body.split('|') {
            assert!(!alternative.is_empty() && alternative != "*", "empty alternative in pattern {source:?}");
            match alternative.strip_prefix('@') {
                Some(name) => {
                    let class = self.classes.iter().find(|(n, _)| *n == name);
                    let (_, class) = class.unwrap_or_else(|| panic!("unknown class @{name} in pattern {source:?}"));
                    words.extend(class);
                }
                None => words.insert(alternative),
            }
        }
        words.finish();
        Slot::Word { words, optional }
    }

    /// Every match in `text`, in word order.
    pub fn find(&self, text: &Text) -> Vec<Hit> {
        let mut hits = Vec::new();
        let mut candidates: Vec<usize> = Vec::new();
        for i in 0..text.len() {
            let word = text.word(i);
            candidates.clear();
            candidates.extend_from_slice(self.first_exact.get(word, text.hashes[i]));
            if let Some(stem) = word.get(..STEM) {
                let stemmed = self.prefix_index.get(stem, word_hash(stem)).iter().map(|&k| self.prefixes[k]);
                candidates.extend(stemmed.filter(|(p, _)| word.starts_with(p)).map(|(_, e)| e));
            }
            let short = self.short_prefixes.iter().filter(|(p, _)| word.starts_with(p));
            candidates.extend(short.map(|(_, e)| *e));
            if candidates.len() > 1 {
                candidates.sort_unstable();
                candidates.dedup();
            }
            for &index in &candidates {
                let entry = &self.entries[index];
                if let Some(end) = entry.pattern.match_after_first(text, i) {
                    if entry.negatable && text.negated(i..end) {
                        continue;
                    }
                    hits.push(Hit { tag: entry.tag, weight: entry.weight, start: i, end });
                }
            }
        }
        hits
    }

    /// Whether anything in `text` matches.
    pub fn is_match(&self, text: &Text) -> bool {
        !self.find(text).is_empty()
    }

    /// Number of patterns (for tests).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Where `x` lies between `low` (0) and `high` (1), clamped.
pub fn ramp(x: f32, low: f32, high: f32) -> f32 {
    ((x - low) / (high - low)).clamp(0.0, 1.0)
}

/// Combines independent pieces of evidence: `1 - Π(1 - w)`.
pub fn noisy_or(weights: impl IntoIterator<Item = f32>) -> f32 {
    1.0 - weights.into_iter().fold(1.0, |rest, w| rest * (1.0 - w.clamp(0.0, 1.0)))
}

/// The strength of a set of hits: the strongest hit of each tag, combined by noisy-or, so
/// that repeating one cue does not add up but independent cues do.
pub fn strength(hits: &[Hit]) -> f32 {
    noisy_or(tags(hits).into_iter().map(|tag| strongest(hits, tag)))
}

/// The weight of the strongest hit with this tag (0 when none).
pub fn strongest(hits: &[Hit], tag: &str) -> f32 {
    hits.iter().filter(|h| h.tag == tag).map(|h| h.weight).fold(0.0, f32::max)
}

/// The distinct tags of `hits`, in order of first appearance.
pub fn tags(hits: &[Hit]) -> Vec<&'static str> {
    let mut tags: Vec<&'static str> = Vec::new();
    for hit in hits {
        if !tags.contains(&hit.tag) {
            tags.push(hit.tag);
        }
    }
    tags
}

/// Removes the hits that overlap any of `blockers` (e.g. a harmful cue inside a benign
/// idiom such as "kill the process").
pub fn without_overlaps(hits: Vec<Hit>, blockers: &[Hit]) -> Vec<Hit> {
    hits.into_iter().filter(|h| !blockers.iter().any(|b| b.overlaps(h))).collect()
}

// ---------------------------------------------------------------------------------------
// Step (procedure) detection
// ---------------------------------------------------------------------------------------

/// Verbs that start an instruction ("Mix the ...", "Then heat it ...").
#[rustfmt::skip]
const STEP_VERBS: &[&str] = &[
    "add", "aim", "apply", "attach", "bake", "blend", "boil", "break", "bring", "buy", "check", "choose", "clean",
    "click", "close", "collect", "combine", "connect", "cook", "cool", "cover", "crush", "cut", "dilute", "dip",
    "disable", "dissolve", "distill", "download", "drain", "drill", "drive", "drop", "dry", "enter", "evaporate",
    "extract", "fill", "filter", "find", "fold", "gather", "grab", "grind", "heat", "hide", "hold", "ignite",
    "insert", "install", "keep", "leave", "let", "light", "load", "locate", "make", "measure", "melt", "mix",
    "open", "order", "pack", "place", "plug", "point", "pour", "prepare", "press", "pull", "purchase", "push",
    "put", "remove", "repeat", "replace", "rinse", "run", "scrape", "screw", "seal", "select", "send", "set",
    "shake", "soak", "solder", "spray", "squeeze", "start", "stir", "store", "strain", "stuff", "take", "tape",
    "tie", "tighten", "transfer", "turn", "twist", "type", "unscrew", "upload", "use", "wait", "walk", "warm",
    "wash", "wear", "weigh", "wipe", "wire", "wrap", "write",
];

/// Units that make a number a quantity ("200 g", "3 cups", "180 degrees").
#[rustfmt::skip]
const UNITS: &[&str] = &[
    "g", "gram", "grams", "mg", "milligram", "milligrams", "mcg", "kg", "kilo", "kilos", "kilogram", "kilograms",
    "ml", "milliliter", "milliliters", "millilitre", "millilitres", "l", "liter", "liters", "litre", "litres", "oz",
    "ounce", "ounces", "lb", "lbs", "pound", "pounds", "cup", "cups", "tbsp", "tsp", "tablespoon", "tablespoons",
    "teaspoon", "teaspoons", "degrees", "percent", "parts", "part", "drops", "pills", "tablets", "capsules",
    "doses", "grains", "minutes", "mins", "hours", "hrs", "seconds", "secs", "inch", "inches", "cm", "mm", "feet",
    "ft", "meters", "metres", "gallon", "gallons", "quarts", "pints", "volts", "amps", "watts", "moles", "molar",
    "psi",
];

static STEP_CUES: LazyLock<Lexicon> = LazyLock::new(|| {
    Lexicon::new()
        .class("verb", STEP_VERBS)
        .add(
            "sequence",
            1.0,
            &[
                "^ first|firstly|second|secondly|third|thirdly|next|finally|lastly|afterwards|afterward|meanwhile",
                "^ after ~3 minutes|hours|seconds|that|this|which",
                "^ once ~3 is|are|has|have|done|ready",
                "then",
                "after that|this",
            ],
        )
        .add_unless_negated(
            "imperative",
            1.0,
            &[
                "^ @verb",
                "^ just|simply|now|carefully|slowly|gently|quickly|then|next|first|finally|also @verb",
                "^ you can|could|should|must|might|may|will|would|need|have|want|ought ~2 @verb",
                "^ you will|would ~1 need|require",
                "^ make|be sure",
            ],
        )
        .add("not-a-step", 1.0, &["since|until|till|by|back|even|only then", "if ~8 then"])
});

/// Procedural signals of a text: list items, sequencing words, instructions, quantities.
#[derive(Clone, Debug, Default)]
pub struct Procedure {
    /// Per sentence: does it read like a step?
    pub step_sentences: Vec<bool>,
    pub list_items: usize,
    pub sequenced: usize,
    pub imperatives: usize,
    pub quantities: usize,
}

impl Procedure {
    /// How procedural the text is, in [0, 1]. About 0.3 is "a couple of instructions";
    /// a numbered recipe with quantities reaches 1.
    pub fn strength(&self) -> f32 {
        let list = match self.list_items {
            0 | 1 => 0.0,
            2 => 0.35,
            _ => 0.5,
        };
        let sequence = 0.15 * self.sequenced.min(3) as f32;
        let imperative = 0.15 * self.imperatives.min(4) as f32;
        let quantity = 0.12 * self.quantities.min(4) as f32;
        (list + sequence + imperative + quantity).min(1.0)
    }

    /// Number of step-like sentences.
    pub fn steps(&self) -> usize {
        self.step_sentences.iter().filter(|s| **s).count()
    }

    /// Whether any sentence within `distance` of sentence `s` is a step.
    pub fn step_near(&self, s: usize, distance: usize) -> bool {
        let end = (s + distance + 1).min(self.step_sentences.len());
        self.step_sentences[s.saturating_sub(distance)..end].iter().any(|x| *x)
    }
}

/// Whether word `i` starts a quantity: a number followed by a unit or `%`.
pub fn is_quantity(text: &Text, i: usize) -> bool {
    text.word(i).as_bytes()[0].is_ascii_digit()
        && (text.char_after(i) == Some('%') || (i + 1 < text.len() && UNITS.contains(&text.word(i + 1))))
        && text.number(i).is_some()
}

/// Detects step-by-step structure in `text`.
pub fn procedure(text: &Text) -> Procedure {
    let sentences = text.sentences();
    let mut steps = vec![false; sentences.len()];
    let mut sequenced = vec![false; sentences.len()];
    let mut imperative = vec![false; sentences.len()];
    let hits = STEP_CUES.find(text);
    let (blockers, cues): (Vec<Hit>, Vec<Hit>) = hits.into_iter().partition(|h| h.tag == "not-a-step");
    for hit in without_overlaps(cues, &blockers) {
        let s = text.sentence_of(hit.start);
        if sentences[s].question {
            continue;
        }
        match hit.tag {
            "sequence" => sequenced[s] = true,
            _ => imperative[s] = true,
        }
    }
    let mut quantities = 0;
    for i in 0..text.len() {
        if is_quantity(text, i) {
            quantities += 1;
            steps[text.sentence_of(i)] = true;
        }
    }
    for (s, sentence) in sentences.iter().enumerate() {
        steps[s] |= sentence.list_item || sequenced[s] || imperative[s];
    }
    Procedure {
        step_sentences: steps,
        list_items: text.list_items(),
        sequenced: sequenced.iter().filter(|x| **x).count(),
        imperatives: imperative.iter().filter(|x| **x).count(),
        quantities,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexicons_are_well_formed() {
        // Building a lexicon validates its patterns.
        assert!(!STEP_CUES.is_empty());
    }

    fn words(s: &str) -> Vec<String> {
        Text::new(s).words().map(str::to_string).collect()
    }

    #[test]
    fn normalises_case_quotes_and_invisible_characters() {
        assert_eq!(normalize("I\u{2019}m \u{201C}OK\u{201D} \u{2014} 5\u{00B0}C"), "i'm \"ok\" - 5 degrees c");
        assert_eq!(normalize("id\u{200B}iot"), "idiot");
    }

    #[test]
    fn expands_contractions_and_splits_units() {
        assert_eq!(
            words("I can't, I won't! You're gonna"),
            ["i", "can", "not", "i", "will", "not", "you", "are", "going", "to"]
        );
        assert_eq!(words("cannot dont it's John's"), ["can", "not", "do", "not", "it", "is", "john"]);
        assert_eq!(words("Add 200g of 3.5% at 1,000 c4"), ["add", "200", "g", "of", "3.5", "at", "1,000", "c4"]);
        assert_eq!(words("self-harm"), ["self", "harm"]);
    }

    #[test]
    fn splits_sentences_lists_and_questions() {
        let text = Text::new("Hello Dr. Smith. Why?\n1. Mix it.\n2) Heat it\n- done e.g. now");
        let sentences = text.sentences();
        assert_eq!(sentences.len(), 5);
        assert_eq!(text.phrase(sentences[0].words.clone()), "hello dr smith");
        assert!(sentences[1].question);
        assert!(sentences[2].list_item && sentences[3].list_item && sentences[4].list_item);
        assert!(!sentences[0].list_item);
        assert_eq!(text.list_items(), 3);
    }

    #[test]
    fn marks_quoted_words_only_for_closed_quotes() {
        let text = Text::new("calling someone \"a fool\" is rude\nan \"open quote");
        let quoted: Vec<bool> = (0..text.len()).map(|i| text.is_quoted(i)).collect();
        assert_eq!(quoted, [false, false, true, true, false, false, false, false, false]);
    }

    #[test]
    fn patterns_support_alternatives_prefixes_gaps_options_classes_and_anchors() {
        let lexicon = Lexicon::new()
            .class("pet", &["cat*", "dog"])
            .add("a", 1.0, &["feed ~2 @pet"])
            .add("b", 0.5, &["the|a big? house*"])
            .add("c", 0.7, &["^ hello"]);
        let hits = lexicon.find(&Text::new("Hello. Feed the hungry cats in a houseboat, hello."));
        let found: Vec<(&str, usize, usize)> = hits.iter().map(|h| (h.tag, h.start, h.end)).collect();
        assert_eq!(found, [("c", 0, 1), ("a", 1, 5), ("b", 6, 8)]);
        // Matches never cross a sentence boundary.
        assert!(!lexicon.is_match(&Text::new("Feed. The cat")));
    }

    #[test]
    fn negatable_entries_drop_negated_matches() {
        let lexicon = Lexicon::new().add_unless_negated("illegal", 1.0, &["is ~2 illegal"]);
        assert!(lexicon.is_match(&Text::new("that is very illegal")));
        assert!(!lexicon.is_match(&Text::new("that is not illegal")));
        let lexicon = Lexicon::new().add_unless_negated("cut", 1.0, &["cut yourself"]);
        assert!(!lexicon.is_match(&Text::new("Careful, don't cut yourself.")));
        assert!(lexicon.is_match(&Text::new("Not now. Cut yourself a slice.")));
    }

    #[test]
    #[should_panic(expected = "unknown class")]
    fn unknown_classes_are_rejected() {
        let _ = Lexicon::new().add("x", 1.0, &["a @nothing"]);
    }

    #[test]
    fn combines_evidence() {
        assert_eq!(noisy_or([]), 0.0);
        assert!((noisy_or([0.5, 0.5]) - 0.75).abs() < 1e-6);
        let hits = [
            Hit { tag: "x", weight: 0.5, start: 0, end: 1 },
            Hit { tag: "x", weight: 0.5, start: 2, end: 3 },
            Hit { tag: "y", weight: 0.5, start: 4, end: 5 },
        ];
        assert!((strength(&hits) - 0.75).abs() < 1e-6);
        assert_eq!(tags(&hits), ["x", "y"]);
        assert_eq!(without_overlaps(hits.to_vec(), &hits[..1]).len(), 2);
    }

    #[test]
    fn shared_texts_are_reused_with_their_memos() {
        let a = Text::shared("Mix the flour. Then bake it.");
        let b = Text::shared("Mix the flour. Then bake it.");
        assert!(Rc::ptr_eq(&a, &b));
        assert!(Rc::ptr_eq(&a.procedure(), &b.procedure()));
        assert_eq!(a.memo(|t| t.len()), a.memo(|_| 0usize), "a memo is computed once per type");
        let other = Text::shared("Mix the flour. Then bake it!");
        assert!(!Rc::ptr_eq(&a, &other));
        let huge = "word ".repeat(SHARED_MAX_TEXT / 4);
        assert!(!Rc::ptr_eq(&Text::shared(&huge), &Text::shared(&huge)), "large texts are not kept");
    }

    #[test]
    fn detects_procedures() {
        let recipe = procedure(&Text::new(
            "1. Preheat the oven to 180°C.\n2. Mix 200 g flour with 2 eggs.\n3. Then bake for 20 minutes.",
        ));
        assert_eq!(recipe.list_items, 3);
        assert!(recipe.quantities >= 3, "{recipe:?}");
        assert!(recipe.strength() > 0.9, "{recipe:?}");
        let prose = procedure(&Text::new("The oven was invented long ago. People liked bread back then."));
        assert_eq!(prose.strength(), 0.0, "{prose:?}");
        let inline = procedure(&Text::new("First, find an open network. Then connect to it and you can browse."));
        assert!(inline.strength() >= 0.3, "{inline:?}");
        assert!(inline.step_near(1, 0));
        let negated = procedure(&Text::new("You should never mix these."));
        assert_eq!(negated.imperatives, 0);
    }
}
